// One binding table drives dispatch, the help bar and the help screen.
import { expect } from "chai";
import { render } from "ink-testing-library";
import { HelpBar } from "../../tui/components/HelpBar.js";
import { HelpScreen } from "../../tui/components/HelpScreen.js";
import {
  COMMAND_IDS,
  COMMANDS,
  helpBarItems,
  matchCommand,
  parseChord,
  type CommandSpec,
  type CommandTable,
  type KeyEvent,
} from "../../tui/keys/commands.js";
import { FakeAdminApi, makeKey } from "./fakeApi.js";
import { KEY, renderApp, type Driven } from "./render.js";

/** The KeyEvent a chord of the table stands for. */
function eventOf(chord: string): KeyEvent {
  const c = parseChord(chord);
  if (c.special) return { input: c.special === "space" ? " " : "", special: c.special, ctrl: false };
  return { input: c.input ?? "", ctrl: c.ctrl === true };
}

describe("tui: the binding table", () => {
  it("gives every command a description, a short label and at least one key", () => {
    for (const id of COMMAND_IDS) {
      const spec = COMMANDS[id];
      expect(spec.description, id).to.match(/\S/);
      expect(spec.short, id).to.match(/\S/);
      expect(spec.keys.length, id).to.be.greaterThan(0);
    }
  });

  it("dispatches every key of every command to that command within its scope (no shadowing)", () => {
    for (const id of COMMAND_IDS) {
      for (const chord of COMMANDS[id].keys) {
        expect(matchCommand([COMMANDS[id].scope], eventOf(chord)), `${id} ${chord}`).to.equal(id);
      }
    }
  });

  it("lists every command's description on the help screen", () => {
    const { lastFrame, unmount } = render(<HelpScreen width={200} height={200} scroll={0} />);
    const f = lastFrame() ?? "";
    for (const id of COMMAND_IDS) expect(f, id).to.include(COMMANDS[id].description);
    unmount();
  });

  it("derives the help bar and the help screen from the same table", () => {
    const probe: CommandSpec = {
      keys: ["<c-z>"],
      description: "Probe description only in this table",
      short: "probe-short",
      tag: "General",
      scope: "keys",
      displayOnScreen: true,
      disabledReason: () => "probe is off",
    };
    const table: CommandTable = { ...COMMANDS, probe };
    const bar = render(<HelpBar scopes={["keys"]} width={400} table={table} />);
    const screen = render(<HelpScreen width={200} height={200} scroll={0} table={table} />);
    expect(bar.lastFrame()).to.include("ctrl+z probe-short");
    expect(screen.lastFrame()).to.include("ctrl+z");
    expect(screen.lastFrame()).to.include("Probe description only in this table");
    // Every item of the bar is a command of the table, with its first key.
    for (const item of helpBarItems(["keys"], undefined, table)) {
      const spec = table[item.id] as CommandSpec;
      expect(bar.lastFrame()).to.include(`${item.key} ${spec.short}`);
    }
    // And the default bar shows exactly the displayOnScreen commands of its scopes.
    const ids = helpBarItems(["keys", "list", "global"]).map((i) => i.id);
    const want = COMMAND_IDS.filter((id) => COMMANDS[id].displayOnScreen && ["keys", "list", "global"].includes(COMMANDS[id].scope));
    expect(ids).to.deep.equal(want);
    bar.unmount();
    screen.unmount();
  });

  describe("in the app", () => {
    let ui: Driven | undefined;
    afterEach(() => ui?.unmount());

    it("opens help with ? and closes it with esc", async () => {
      ui = await renderApp(new FakeAdminApi({ keys: [makeKey(1)] }), { rows: 40 });
      const bar = ui.frame().split("\n").at(-1) ?? "";
      for (const item of helpBarItems(["keys", "list", "global"]).slice(0, 5)) expect(bar).to.include(`${item.key} ${item.short}`);
      await ui.press("?");
      const f = await ui.waitFor((x) => x.includes("Help: every key binding"));
      expect(f).to.include(COMMANDS["nav.up"].description);
      await ui.press("j", "j", "j");
      await ui.press(KEY.esc);
      await ui.waitFor((x) => !x.includes("Help: every key binding"));
    });
  });
});
