// npm run docs: regenerates the README's key-binding reference from the TUI's binding table.
import { readFileSync, writeFileSync } from "node:fs";
import { withKeybindings } from "../tui/docs/keybindingsMarkdown.js";

const path = new URL("../README.md", import.meta.url);
const before = readFileSync(path, "utf8");
const after = withKeybindings(before);
writeFileSync(path, after);
console.log(before === after ? "README key bindings already up to date" : "README key bindings regenerated");
