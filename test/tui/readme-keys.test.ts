// The README's key-binding reference and its picture of the Keys screen are generated from the
// code (`npm run docs`); these fail when either is stale.
import { expect } from "chai";
import { readFileSync } from "node:fs";
import { withKeybindings } from "../../tui/docs/keybindingsMarkdown.js";
import { keysScreen, withScreen } from "./readmeScreen.js";

describe("README key bindings", () => {
  const readme = (): string => readFileSync(new URL("../../README.md", import.meta.url), "utf8");
  it("match the binding table (run `npm run docs` after changing tui/keys/commands.ts)", () => {
    expect(readme()).to.equal(withKeybindings(readme()));
  });
  it("the Keys screen in the README is the one the App renders (run `npm run docs`)", async () => {
    const text = readme();
    expect(text).to.equal(withScreen(text, await keysScreen()));
  });
});
