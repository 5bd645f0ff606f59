// The README's key-binding reference is generated from the binding table.
import { expect } from "chai";
import { readFileSync } from "node:fs";
import { withKeybindings } from "../../tui/docs/keybindingsMarkdown.js";

describe("README key bindings", () => {
  it("match the binding table (run `npm run docs` after changing tui/keys/commands.ts)", () => {
    const readme = readFileSync(new URL("../../README.md", import.meta.url), "utf8");
    expect(readme).to.equal(withKeybindings(readme));
  });
});
