// The TUI's screen state and its actions without Ink: the reducer (tui/state/appState.ts), the
// selection rules it uses (tui/state/selection.ts) and the key actions against the fake API
// (tui/state/keyActions.ts). Nothing here renders; every rule App.tsx applies on a key press
// or a finished call is exercised as a plain function.
import { expect } from "chai";
import { KeyStatus, type Key } from "../../src/gen/aisa/v1/types.js";
import { toMoney } from "../../src/display/format.js";
import { ApiError } from "../../tui/client.js";
import type { KeyEvent } from "../../tui/keys/commands.js";
import { INITIAL_UI, isSearchKey, uiReducer, type UiAction, type UiState } from "../../tui/state/appState.js";
import { confirmDelete, keyActions } from "../../tui/state/keyActions.js";
import { indexKeys, NO_FILTERS } from "../../tui/state/keyIndex.js";
import { initialValues, type FormContext } from "../../tui/state/keyForm.js";
import { cursorOf, KeyList, targetKeys } from "../../tui/state/keyList.js";
import { syncSelection } from "../../tui/state/selection.js";
import { textAt } from "../../tui/state/textEdit.js";
import { FakeAdminApi, makeKey, T0 } from "./fakeApi.js";

/** The list as the shell builds it: every key visible, in order. */
function listOf(keys: readonly Key[], visible?: readonly number[]): KeyList {
  return new KeyList(indexKeys(keys), visible ?? keys.map((_, i) => i), new Map(keys.map((k) => [k.id, k])));
}

const keysNamed = (...names: string[]): Key[] => names.map((n, i) => makeKey(i, { id: `id-${n}`, name: n }));
const run = (s: UiState, ...actions: UiAction[]): UiState => actions.reduce(uiReducer, s);
const text = (input: string): KeyEvent => ({ input, ctrl: false });
const BACKSPACE: KeyEvent = { input: "", special: "backspace", ctrl: false };

/** What the shell's layout effect does when the list changes (App.tsx): sync only when it matters. */
function sync(s: UiState, list: KeyList, prev: KeyList | null): UiState {
  return syncSelection(s.sel, list, prev) === null ? s : uiReducer(s, { type: "sel.sync", list, prev });
}

describe("tui state: the selection follows its key (reducer, no Ink)", () => {
  const abc = keysNamed("a", "b", "c");

  it("a move binds the cursor to the key under it; a key inserted above keeps it there", () => {
    const before = listOf(abc);
    const s = run(INITIAL_UI, { type: "sel.move", move: 1, list: before });
    expect(s.sel.id).to.equal("id-b");
    const after = listOf([makeKey(9, { id: "id-new", name: "new" }), ...abc]);
    expect(cursorOf(s.sel, after).key?.name).to.equal("b");
    expect(cursorOf(sync(s, after, before).sel, after).row).to.equal(2);
  });

  it("an unbound cursor (never moved) binds to its key when data changes under it", () => {
    const before = listOf(abc);
    const after = listOf([makeKey(9, { id: "id-new", name: "new" }), ...abc]);
    const s = sync(INITIAL_UI, after, before);
    expect([s.sel.id, cursorOf(s.sel, after).row]).to.deep.equal(["id-a", 1]);
  });

  it("a search or filter the user changes starts at the top, and does not bind to the old top key", () => {
    const before = listOf(abc);
    let s = run(INITIAL_UI, { type: "sel.move", move: "bottom", list: before });
    s = run(s, { type: "search.open" }, { type: "search.key", ev: text("b") });
    expect(s.sel.id).to.equal(null);
    // The shell passes no previous list for a selection the user just reset (a new object).
    const narrowed = listOf(abc, [1]);
    expect(syncSelection(s.sel, narrowed, null)).to.equal(null);
    expect(cursorOf(s.sel, narrowed).key?.name).to.equal("b");
    const s2 = run(s, { type: "filters", filters: { ...NO_FILTERS, group: "x" } });
    expect(s2.sel).to.not.equal(s.sel);
  });

  it("says when the selected key was deleted elsewhere, and stays at its row", () => {
    const before = listOf(abc);
    let s = run(INITIAL_UI, { type: "sel.move", move: 1, list: before });
    s = sync(s, listOf([abc[0] as Key, abc[2] as Key]), null);
    expect(s.status?.text).to.equal('The selected key "b" is gone (deleted); the cursor is on "c"');
    expect(s.sel.id).to.equal("id-c");
  });

  it("a delete from this screen moves the cursor to the next key that stays, without a warning", () => {
    const before = listOf(keysNamed("a", "b", "c", "d"));
    let s = run(INITIAL_UI, { type: "sel.move", move: 1, list: before }, { type: "mark.toggle", id: "id-b" }, { type: "mark.toggle", id: "id-c" });
    s = uiReducer(s, { type: "deleted", ids: ["id-b", "id-c"], list: before });
    expect([s.sel.id, s.marks.size, s.status?.text]).to.deep.equal(["id-d", 0, "Deleted 2 keys"]);
    const after = listOf(keysNamed("a", "b", "c", "d").filter((k) => k.name === "a" || k.name === "d"));
    s = sync(s, after, before);
    expect([cursorOf(s.sel, after).key?.name, s.status?.text]).to.deep.equal(["d", "Deleted 2 keys"]);
  });

  it("deleting the last rows takes the key before; deleting every row leaves the cursor unbound", () => {
    const before = listOf(abc);
    const s = run(INITIAL_UI, { type: "sel.move", move: "bottom", list: before });
    expect(uiReducer(s, { type: "deleted", ids: ["id-c"], list: before }).sel.id).to.equal("id-b");
    expect(uiReducer(s, { type: "deleted", ids: ["id-a", "id-b", "id-c"], list: before }).sel.id).to.equal(null);
  });

  it("moves stop at both ends; an empty list leaves the selection alone", () => {
    const l = listOf(abc);
    expect(run(INITIAL_UI, { type: "sel.move", move: -5, list: l }).sel.id).to.equal("id-a");
    expect(run(INITIAL_UI, { type: "sel.move", move: 50, list: l }).sel.id).to.equal("id-c");
    expect(run(INITIAL_UI, { type: "sel.move", move: 1, list: listOf([]) })).to.equal(INITIAL_UI);
  });
});

describe("tui state: other screen rules (reducer, no Ink)", () => {
  it("every key of a burst edits the search text in order (six backspaces delete six)", () => {
    let s = run(INITIAL_UI, { type: "search.open" }, ...[..."abcdefgh"].map((c): UiAction => ({ type: "search.key", ev: text(c) })));
    s = run(s, ...Array.from({ length: 6 }, (): UiAction => ({ type: "search.key", ev: BACKSPACE })));
    expect(s.query.value).to.equal("ab");
    s = run(s, { type: "search.key", ev: text("xy") }, { type: "search.key", ev: BACKSPACE }, { type: "search.key", ev: text("z") });
    expect(s.query.value).to.equal("abxz");
  });

  it("arrows are not search keys (they move the list under the search line)", () => {
    expect(isSearchKey(textAt("ab"), { input: "", special: "down", ctrl: false })).to.equal(false);
    expect(isSearchKey(textAt("ab"), { input: "", special: "left", ctrl: false })).to.equal(true);
    expect(isSearchKey(textAt("ab"), BACKSPACE)).to.equal(true);
  });

  it("enter keeps the search, esc clears it", () => {
    const typed = run(INITIAL_UI, { type: "search.open" }, { type: "search.key", ev: text("ab") });
    expect(uiReducer(typed, { type: "search.close", clear: false })).to.include({ searching: false }).and.have.nested.property("query.value", "ab");
    expect(uiReducer(typed, { type: "search.close", clear: true }).query.value).to.equal("");
  });

  const cases: { name: string; from: Partial<UiState>; action: UiAction; want: Partial<UiState> }[] = [
    { name: "the group cursor stops at the last group", from: { groupCursor: 1 }, action: { type: "group.move", move: 5, count: 3 }, want: { groupCursor: 2 } },
    { name: "the group cursor goes to the top", from: { groupCursor: 2 }, action: { type: "group.move", move: "top", count: 3 }, want: { groupCursor: 0 } },
    { name: "a stale group cursor is clamped before it moves", from: { groupCursor: 9 }, action: { type: "group.move", move: -1, count: 3 }, want: { groupCursor: 1 } },
    { name: "help scrolls no further than its last page", from: { helpScroll: 8 }, action: { type: "help.scroll", move: 5, max: 10 }, want: { helpScroll: 10 } },
    { name: "help's end is its last page (one line up shows a new line)", from: { helpScroll: 0 }, action: { type: "help.scroll", move: "bottom", max: 10 }, want: { helpScroll: 10 } },
    { name: "help opens at its top", from: { helpScroll: 7 }, action: { type: "help.open" }, want: { helpScroll: 0, overlay: { kind: "help" } } },
    { name: "tab cycles Keys → Groups → Usage → Keys", from: { view: "usage" }, action: { type: "view", view: "next" }, want: { view: "keys" } },
    { name: "another view closes the search line", from: { searching: true }, action: { type: "view", view: "groups" }, want: { searching: false } },
    { name: "close returns to the screen", from: { overlay: { kind: "filters" } }, action: { type: "close" }, want: { overlay: { kind: "none" } } },
    { name: "busy shows the running call", from: {}, action: { type: "busy", label: "deleting" }, want: { busy: "deleting" } },
    { name: "ctrl+\\ clears the marks", from: { marks: new Set(["a"]) }, action: { type: "marks.clear" }, want: { marks: new Set() } },
  ];
  for (const c of cases) {
    it(c.name, () => {
      const s = uiReducer({ ...INITIAL_UI, ...c.from }, c.action);
      for (const [k, v] of Object.entries(c.want)) expect(s[k as keyof UiState], k).to.deep.equal(v);
    });
  }

  it("a delete asks about the marked keys and counts those the filter hides", () => {
    const ks = keysNamed("a", "b");
    expect(confirmDelete(ks, 2, 1)).to.deep.equal({ type: "open", overlay: { kind: "confirm", ids: ["id-a", "id-b"], hidden: 1, names: ["a", "b"] } });
    expect(confirmDelete(ks.slice(0, 1), 0, 3)).to.have.nested.property("overlay.hidden", 0);
  });

  it("the targets are the marked keys in list order, else the selected key", () => {
    const ks = keysNamed("a", "b", "c");
    const l = listOf(ks);
    expect(targetKeys(new Set(["id-c", "id-a"]), ks[1], l).map((k) => k.name)).to.deep.equal(["a", "c"]);
    expect(targetKeys(new Set(), ks[1], l).map((k) => k.name)).to.deep.equal(["b"]);
    expect(targetKeys(new Set(), undefined, l)).to.deep.equal([]);
  });
});

describe("tui state: key actions against the fake API (no Ink)", () => {
  /** The actions wired to a reducer and a key list, as App.tsx wires them to React. */
  function harness(api: FakeAdminApi, clipboard = { copy: () => Promise.resolve({ methods: [] as string[] }) }) {
    const h = { ui: INITIAL_UI, keys: [...api.keys] as readonly Key[], failed: [] as unknown[] };
    const actions = keyActions({
      api,
      clipboard,
      dispatch: (a) => {
        h.ui = uiReducer(h.ui, a);
      },
      updateKeys: (fn) => {
        h.keys = fn(h.keys);
      },
      fail: (err) => {
        h.failed.push(err);
        return err instanceof Error ? err.message : String(err);
      },
      list: () => listOf(h.keys),
    });
    return { h, actions };
  }
  const ctx: FormContext = { now: T0, money: toMoney("500000", "USD"), groups: ["default"], pricedModels: [], accounts: [] };

  it("toggle disables enabled keys, replaces them in the list and says so", async () => {
    const api = new FakeAdminApi({ keys: keysNamed("a", "b") });
    const { h, actions } = harness(api);
    await actions.toggle(h.keys);
    expect(h.keys.map((k) => k.status)).to.deep.equal([KeyStatus.KEY_STATUS_DISABLED, KeyStatus.KEY_STATUS_DISABLED]);
    expect([h.ui.status?.text, h.ui.busy]).to.deep.equal(["Disabled 2 keys", null]);
  });

  it("delete closes the dialog, removes the keys and their marks, and keeps the cursor on a key that stays", async () => {
    const api = new FakeAdminApi({ keys: keysNamed("a", "b", "c") });
    const { h, actions } = harness(api);
    h.ui = run(h.ui, { type: "sel.move", move: 1, list: listOf(h.keys) }, { type: "mark.toggle", id: "id-b" }, { type: "open", overlay: { kind: "confirm", ids: ["id-b"], hidden: 0, names: ["b"] } });
    await actions.remove(["id-b"]);
    expect(h.keys.map((k) => k.name)).to.deep.equal(["a", "c"]);
    expect([h.ui.overlay.kind, h.ui.marks.size, h.ui.sel.id, h.ui.status?.text]).to.deep.equal(["none", 0, "id-c", "Deleted 1 key"]);
  });

  it("create adds the key at the top and shows its secret once", async () => {
    const api = new FakeAdminApi({ keys: keysNamed("a") });
    const { h, actions } = harness(api);
    expect(await actions.submit({ kind: "create" }, { ...initialValues(), name: "new one" }, ctx)).to.equal(null);
    expect(h.keys[0]?.name).to.equal("new one");
    expect(h.ui.overlay).to.include({ kind: "secret", name: "new one" });
    expect(h.ui.status?.text).to.equal('Created "new one"');
  });

  it("an edit with no change closes the form without a call; a server error goes back to the form", async () => {
    const api = new FakeAdminApi({ keys: keysNamed("a") });
    const { h, actions } = harness(api);
    const key = h.keys[0] as Key;
    h.ui = uiReducer(h.ui, { type: "open", overlay: { kind: "edit", key } });
    expect(await actions.submit({ kind: "edit", key }, initialValues(key), ctx)).to.equal(null);
    expect([h.ui.overlay.kind, h.ui.status?.text, api.calls.some((c) => c.method === "updateKey")]).to.deep.equal(["none", "No changes", false]);
    api.nextError = new ApiError("INVALID_ARGUMENT", "name: too long");
    expect(await actions.submit({ kind: "edit", key }, { ...initialValues(key), name: "b" }, ctx)).to.include("too long");
  });

  it("copy without a working clipboard shows the secrets instead; with one it says how", async () => {
    const api = new FakeAdminApi({ keys: keysNamed("a") });
    let { h, actions } = harness(api);
    await actions.copy(["id-a"], false);
    expect(h.ui.overlay.kind).to.equal("reveal");
    ({ h, actions } = harness(api, { copy: () => Promise.resolve({ methods: ["OSC 52"] }) }));
    await actions.copy(["id-a"], false);
    expect([h.ui.overlay.kind, h.ui.status?.text]).to.deep.equal(["none", "Copied 1 key via OSC 52"]);
  });

  it("a call that fails becomes the status line, never an exception", async () => {
    const api = new FakeAdminApi({ keys: keysNamed("a") });
    const { h, actions } = harness(api);
    api.down = true;
    await actions.toggle(h.keys);
    expect([h.ui.status?.tone, h.ui.busy, h.failed.length]).to.deep.equal(["error", null, 1]);
  });
});
