// npm run docs: regenerates the README's key-binding reference from the TUI's binding table,
// and its picture of the Keys screen from the real App (test/tui/readmeScreen.tsx).
import { readFileSync, writeFileSync } from "node:fs";
import { withKeybindings } from "../tui/docs/keybindingsMarkdown.js";
import { keysScreen, withScreen } from "../test/tui/readmeScreen.js";

const path = new URL("../README.md", import.meta.url);
const before = readFileSync(path, "utf8");
const after = withScreen(withKeybindings(before), await keysScreen());
writeFileSync(path, after);
console.log(before === after ? "README key bindings and screen already up to date" : "README key bindings and screen regenerated");
process.exit(0);
