// The API Keys page as its users read it, in the TUI: effective models (key ∩ group),
// Expired, spendable quota, one money rule, the selection that follows the key id,
// backspace bursts, wide characters.
import { expect } from "chai";
import { render } from "ink-testing-library";
import { Text } from "ink";
import { KeyStatus, type Key } from "../../src/gen/aisa/v1/types.js";
import { KeypressProvider, toKeyEvents, useKeypress } from "../../tui/keys/keypress.js";
import { moveSelection, resolveSelection, TOP, type SelectionList } from "../../tui/state/selection.js";
import { useState, type ReactNode } from "react";
import { FakeAdminApi, makeGroup, makeKey, T0, usageEvent } from "./fakeApi.js";
import { delay, KEY, renderApp, tableRows, type Driven } from "./render.js";
import { textWidth } from "../../src/display/format.js";

function list(ids: readonly string[], all: readonly string[] = ids): SelectionList {
  return {
    count: ids.length,
    positionOf: (id) => ids.indexOf(id),
    at: (p) => (ids[p] === undefined ? undefined : { id: ids[p] as string, name: `name-${ids[p]}` }),
    exists: (id) => all.includes(id),
  };
}

const firstCell = (row: string): string => row.trim().replace(/^[›●] /, "").split(/\s+/)[0] ?? "";

describe("issue 17 (TUI): the selection is a key id (pure)", () => {
  it("binds to the key under the cursor, then follows it when a key is inserted above", () => {
    let sel = resolveSelection(TOP, list(["a", "b", "c"])).next;
    sel = moveSelection(sel, 1, list(["a", "b", "c"]));
    expect(sel.id).to.equal("b");
    const r = resolveSelection(sel, list(["new", "a", "b", "c"]));
    expect(r.index).to.equal(2);
    expect(r.gone).to.equal(null);
  });
  it("follows the key across a re-sort", () => {
    const sel = moveSelection(resolveSelection(TOP, list(["a", "b", "c"])).next, "bottom", list(["a", "b", "c"]));
    expect(resolveSelection(sel, list(["c", "b", "a"])).index).to.equal(0);
  });
  it("says when the selected key disappeared, and falls back to the row it was on", () => {
    const sel = moveSelection(resolveSelection(TOP, list(["a", "b", "c"])).next, 1, list(["a", "b", "c"]));
    const r = resolveSelection(sel, list(["a", "c"]));
    expect(r.gone).to.equal("name-b");
    expect(r.index).to.equal(1);
    expect(r.next.id).to.equal("c");
  });
  it("a key only hidden by the search is not 'gone'", () => {
    const sel = moveSelection(resolveSelection(TOP, list(["a", "b", "c"])).next, 1, list(["a", "b", "c"]));
    expect(resolveSelection(sel, list(["a", "c"], ["a", "b", "c"])).gone).to.equal(null);
  });
});

describe("issue 17 (TUI): key bursts", () => {
  const key = { ctrl: false, meta: false, shift: false, backspace: false, delete: false } as never;
  it("six backspaces read together are six backspaces", () => {
    expect(toKeyEvents("\x7f".repeat(6), key).map((e) => e.special)).to.deep.equal(Array(6).fill("backspace"));
  });
  it("text and backspaces in one read keep their order", () => {
    expect(toKeyEvents("ab\x7fc\b\b", key)).to.deep.equal([
      { input: "ab", ctrl: false },
      { input: "", special: "backspace", ctrl: false },
      { input: "c", ctrl: false },
      { input: "", special: "backspace", ctrl: false },
      { input: "", special: "backspace", ctrl: false },
    ]);
  });

  function Field(): ReactNode {
    const [text, setText] = useState("abcdefgh");
    useKeypress(
      (ev) => {
        if (ev.special === "backspace") setText((t) => t.slice(0, -1));
        else if (!ev.special) setText((t) => t + ev.input);
        return true;
      },
      { priority: 0, acceptsPaste: true },
    );
    return <Text>[{text}]</Text>;
  }
  it("a text field applies every backspace of a burst (through Ink)", async () => {
    const r = render(
      <KeypressProvider>
        <Field />
      </KeypressProvider>,
    );
    await delay(30);
    r.stdin.write("\x7f".repeat(6));
    await delay(80);
    expect(r.lastFrame()).to.equal("[ab]");
    r.stdin.write("xy\x7fz");
    await delay(80);
    expect(r.lastFrame()).to.equal("[abxz]");
    r.unmount();
  });
});

describe("issue 17 (TUI): the API Keys page as users read it", () => {
  let ui: Driven | undefined;
  afterEach(() => ui?.unmount());

  function groupRestricted(): FakeAdminApi {
    const groups = [makeGroup("default", 1), { ...makeGroup("mini", 1), models: ["gpt-4o-mini"] }];
    const keys = [
      makeKey(1, { name: "open" }),
      makeKey(2, { name: "grouped", group: "mini", groupModels: ["gpt-4o-mini"], effectiveModels: ["gpt-4o-mini"], modelsRestricted: true }),
      makeKey(3, { name: "expired", expiresAt: new Date(T0 - 60_000), expired: true }),
      makeKey(4, { name: "reserved", quota: { unlimited: false, total: "3000", remaining: "3000", used: "0", reserved: "3000" } }),
    ];
    return new FakeAdminApi({ keys, groups });
  }

  it("shows a group's model restriction, Expired, and the spendable quota", async () => {
    ui = await renderApp(groupRestricted(), { columns: 160 });
    const rows = tableRows(ui.frame());
    const by = new Map(rows.map((r) => [firstCell(r), r]));
    expect(by.get("grouped")).to.match(/Unlimited\s+default|gpt-4o-mini/);
    expect(by.get("grouped")).to.include("gpt-4o-mini");
    expect(by.get("open")).to.match(/Unlimited\s+Unlimited/);
    expect(by.get("expired")).to.match(/expired\s+Expired\s/);
    // 3,000 units all reserved: nothing can be spent; one money rule ($0.006, not ≈ $0.01).
    expect(by.get("reserved")).to.include("≈ $0.00 / $0.006 (R)");
  });

  it("the model filter uses the effective models; the status filter selects Expired", async () => {
    const api = groupRestricted();
    api.prices = [{ model: "flat-model", inputPerMillion: "1", outputPerMillion: "1", perRequest: "0" }];
    ui = await renderApp(api, { columns: 160 });
    await ui.press("f");
    await ui.waitFor((x) => x.includes("Status"));
    // status: any → enabled → disabled → expired
    await ui.press(KEY.right, KEY.right, KEY.right);
    let f = await ui.waitFor((x) => x.includes("1 of 4 keys"));
    expect(tableRows(f).map(firstCell)).to.deep.equal(["expired"]);
    await ui.press(KEY.right); // back to any
    await ui.waitFor((x) => x.includes("4 of 4 keys"));
    // Model: any → flat-model. The key whose GROUP allows only gpt-4o-mini is not listed.
    await ui.press(KEY.down, KEY.down, KEY.down, KEY.down, KEY.right);
    f = await ui.waitFor((x) => x.includes("3 of 4 keys"));
    expect(tableRows(f).map(firstCell)).to.not.include("grouped");
    await ui.press(KEY.right); // gpt-4o-mini: every key may use it
    await ui.waitFor((x) => x.includes("4 of 4 keys"));
    await ui.press(KEY.esc);
    await ui.waitFor((x) => !x.includes("Filters"));
  });

  it("the cursor stays on the same key when a key is inserted above it, and says when it is gone", async () => {
    const api = new FakeAdminApi({ keys: [0, 1, 2].map((i) => makeKey(i, { name: `svc-${i}`, createdAt: new Date(T0 - (10 - i) * 1000) })) });
    ui = await renderApp(api);
    await ui.waitFor(() => api.openStreams.length === 1);
    await ui.press("j");
    await ui.waitFor((x) => tableRows(x).some((r) => r.startsWith("› svc-1")));
    // A reload with a key created above: the cursor stays on svc-1.
    api.keys.unshift(makeKey(9, { name: "new-top" }));
    await ui.press("R");
    let f = await ui.waitFor((x) => x.includes("4 of 4 keys"));
    expect(tableRows(f).find((r) => r.startsWith("›"))).to.match(/^› svc-1/);
    // Someone else deletes svc-1: the status line says so.
    const gone = api.keys.find((k) => k.name === "svc-1") as Key;
    api.emit(usageEvent(T0, { keyEvents: [{ keyId: gone.id, kind: "deleted", key: undefined }] }));
    f = await ui.waitFor((x) => x.includes("is gone"));
    expect(f).to.include('The selected key "svc-1" is gone (deleted)');
  });

  it("backspace bursts edit the search line", async () => {
    ui = await renderApp(new FakeAdminApi({ keys: [makeKey(1, { name: "alpha" }), makeKey(2, { name: "beta" })] }));
    await ui.press("/");
    await ui.type("betaxxxx");
    await ui.waitFor((x) => x.includes("0 of 2 keys"));
    await ui.press("\x7f".repeat(4));
    await ui.waitFor((x) => x.includes("1 of 2 keys"));
  });

  it("wide characters keep the columns aligned", async () => {
    const api = new FakeAdminApi({ keys: [makeKey(1, { name: "日本語のキー" }), makeKey(2, { name: "🔑 prod" }), makeKey(3, { name: "plain" })] });
    ui = await renderApp(api, { columns: 120 });
    const rows = tableRows(ui.frame());
    const statusAt = rows.map((r) => textWidth(r.slice(0, r.indexOf("Enabled"))));
    expect(new Set(statusAt).size, rows.join("\n")).to.equal(1);
  });

  it("80×24: the help bar keeps ? help and q quit, the header its balance, the form its expiry options", async () => {
    ui = await renderApp(new FakeAdminApi({ keys: [makeKey(1, { name: "a" })] }), { columns: 80, rows: 24 });
    const f = ui.frame();
    const lines = f.split("\n");
    expect(lines.at(-1)).to.include("? help").and.include("q quit");
    expect(lines[0]).to.include("balance ≈ $10.00");
    for (const l of lines) expect(textWidth(l), l).to.be.at.most(80);
    await ui.press("n");
    const form = await ui.waitFor((x) => x.includes("Create a key"));
    const expiry = form.split("\n").find((l) => l.includes("Expiration Time")) ?? "";
    expect(expiry).to.include("1mo").and.include("Exact").and.not.include("…");
    expect(form).to.include("Basic Information").and.include("Quota Settings").and.include("Access Restrictions");
  });

  it("4. the Groups view counts the loaded keys (no stale Keys column) and shows the ledger's per-group charges", async () => {
    const api = new FakeAdminApi({ keys: [makeKey(1, { name: "a", group: "prod" })], groups: [makeGroup("default", 0), makeGroup("prod", 0)] });
    api.charges = new Map([["prod", 1_500_000n]]);
    ui = await renderApp(api, { columns: 120 });
    await ui.press("2");
    let f = await ui.waitFor((x) => /prod\s+1\s/.test(x) && x.includes("$3.00"));
    expect(f).to.include("as usage --by group");
    // A key created elsewhere (live event) moves the count without R.
    api.emit(usageEvent(T0, { keyEvents: [{ keyId: "key_new", kind: "created", key: makeKey(77, { id: "key_new", name: "b", group: "prod" }) }] }));
    f = await ui.waitFor((x) => /prod\s+2\s/.test(x));
  });

  it("12. the group status line does not follow to the Usage view", async () => {
    ui = await renderApp(new FakeAdminApi({ keys: [makeKey(1, { name: "a" })] }), { columns: 120 });
    await ui.press("2");
    await ui.waitFor((x) => x.includes("Used (all time)"));
    await ui.press(KEY.enter);
    await ui.waitFor((x) => x.includes("Showing the keys of group default"));
    await ui.press("3");
    await ui.waitFor((x) => !x.includes("Showing the keys of group"));
  });

  it("9. accounts: an Account column, a header balance that follows the account filter, and the account in the create form", async () => {
    const acme = { id: "acme", name: "Acme", balance: "1500000", createdAt: new Date(T0), reserved: "0", credited: "1500000", charged: "0", timezone: "UTC" };
    const api = new FakeAdminApi({ keys: [makeKey(1, { name: "mine" }), makeKey(2, { name: "theirs", accountId: "acme" })] });
    api.accounts = [...api.accounts, acme];
    ui = await renderApp(api, { columns: 160, rows: 40 });
    let f = ui.frame();
    expect(tableRows(f).find((r) => r.includes("theirs"))).to.include("acme");
    expect(f.split("\n")[0]).to.include("account default balance");
    await ui.press("f", KEY.down, KEY.down, KEY.right, KEY.right);
    f = await ui.waitFor((x) => x.includes("account:acme") || x.split("\n")[0]?.includes("account acme") === true);
    await ui.press(KEY.esc);
    f = await ui.waitFor((x) => x.split("\n")[0]?.includes("account acme balance ≈ $3.00") === true);
    await ui.press(KEY.esc); // clear the filter
    await ui.press("n");
    await ui.waitFor((x) => x.includes("Create a key"));
    await ui.type("for acme");
    await ui.press(KEY.tab, KEY.right);
    await ui.waitFor((x) => /Account\s+‹ acme ›/.test(x));
    await ui.press(KEY.ctrlS);
    await ui.waitFor(() => api.keys.some((k) => k.name === "for acme"));
    expect(api.keys.find((k) => k.name === "for acme")?.accountId).to.equal("acme");
  });

  it("KeyStatus is unchanged for a disabled key", () => {
    expect(makeKey(1, { status: KeyStatus.KEY_STATUS_DISABLED }).status).to.equal(KeyStatus.KEY_STATUS_DISABLED);
  });
});

describe("issue 17 (TUI): small things", () => {
  it("12. inside tmux with set-clipboard external, OSC 52 is not claimed, and the note says what to set", async () => {
    const { tmuxClipboardProblem } = await import("../../tui/clipboard.js");
    expect(tmuxClipboardProblem({ TMUX: "/tmp/tmux-1/default,1,0" }, () => "external")).to.include("tmux set -g set-clipboard on");
    expect(tmuxClipboardProblem({ TMUX: "/tmp/tmux-1/default,1,0" }, () => "on")).to.equal(null);
    expect(tmuxClipboardProblem({}, () => "external")).to.equal(null);
  });

  it("12. the bulk delete dialog says the count must be typed as soon as Delete is focused", async () => {
    const api = new FakeAdminApi({ keys: [0, 1, 2, 3].map((i) => makeKey(i, { name: `k${i}` })) });
    const ui = await renderApp(api);
    await ui.press("a", "d");
    await ui.waitFor((x) => x.includes("Delete keys"));
    await ui.press(KEY.tab);
    await ui.waitFor((x) => x.includes("type 4 first"));
    ui.unmount();
  });
});

describe("issue 17 (TUI): the screen state reducer (no Ink)", () => {
  it("esc clears the search, then the filters, then the marks, saying which", async () => {
    const { INITIAL_UI, uiReducer } = await import("../../tui/state/appState.js");
    let s = uiReducer(uiReducer(INITIAL_UI, { type: "search.open" }), { type: "search.key", ev: { input: "abc", ctrl: false } });
    s = uiReducer(s, { type: "filters", filters: { ...s.filters, group: "prod" } });
    s = uiReducer(s, { type: "mark.toggle", id: "k1" });
    s = uiReducer(s, { type: "back" });
    expect([s.query.value, s.status?.text]).to.deep.equal(["", "Search cleared"]);
    s = uiReducer(s, { type: "back" });
    expect([s.filters.group, s.status?.text]).to.deep.equal([null, "Filters cleared"]);
    s = uiReducer(s, { type: "back" });
    expect([s.marks.size, s.status?.text]).to.deep.equal([0, "Marks cleared"]);
    expect(uiReducer(s, { type: "back" })).to.equal(s);
  });
  it("a new search or filter starts at the top; moving the text cursor keeps the selection", async () => {
    const { INITIAL_UI, uiReducer } = await import("../../tui/state/appState.js");
    const on = { ...INITIAL_UI, query: { value: "ab", cursor: 2 }, sel: { id: "k9", index: 5, name: "n" } };
    expect(uiReducer(on, { type: "search.key", ev: { input: "x", ctrl: false } }).sel.id).to.equal(null);
    expect(uiReducer(on, { type: "search.key", ev: { input: "", special: "left", ctrl: false } }).sel.id).to.equal("k9");
    expect(uiReducer(on, { type: "filters", filters: INITIAL_UI.filters }).sel.id).to.equal(null);
  });
  it("opening a group shows its keys; its status line does not follow to another view", async () => {
    const { INITIAL_UI, uiReducer } = await import("../../tui/state/appState.js");
    let s = uiReducer({ ...INITIAL_UI, view: "groups" }, { type: "group.open", group: "prod" });
    expect([s.view, s.filters.group, s.status?.text]).to.deep.equal(["keys", "prod", "Showing the keys of group prod (esc clears)"]);
    s = uiReducer(s, { type: "view", view: "usage" });
    expect(s.status).to.equal(null);
    expect(uiReducer({ ...INITIAL_UI, status: { text: "Saved", tone: "ok" } }, { type: "view", view: "next" }).status?.text).to.equal("Saved");
  });
  it("marking all visible keys twice unmarks them", async () => {
    const { INITIAL_UI, uiReducer } = await import("../../tui/state/appState.js");
    let s = uiReducer(INITIAL_UI, { type: "mark.all", ids: ["a", "b"] });
    expect([...s.marks]).to.deep.equal(["a", "b"]);
    s = uiReducer(s, { type: "mark.all", ids: ["a", "b"] });
    expect(s.marks.size).to.equal(0);
    expect(s.status?.text).to.equal("Unmarked 2 keys");
  });
});

describe("issue 17 (TUI and CLI): 8. the page's own words", () => {
  const expiring = makeKey(1, { name: "exp", group: "prod", createdAt: new Date(T0 - 86_400_000), expiresAt: new Date(Date.UTC(2026, 11, 27, 10, 30)) });
  const PAGE_WORDS = ["Token Grouping", "Available Models", "IP Whitelist", "Creation Time", "Expiration Time"];

  it("keys get: the page's labels; Creation Time with the time, Expiration Time exact", async () => {
    const { keyFields } = await import("../../src/cli/views.js");
    const text = keyFields(expiring, { quotaPerUnit: "500000", currency: "USD" }, T0);
    const fields = new Map(text.split("\n").map((l) => /^\s*([^:]+):\s+(.*?)\s*$/.exec(l)?.slice(1, 3) as [string, string]).filter(Boolean));
    for (const w of [...PAGE_WORDS, "Remaining / Total Quota", "Model Restrictions"]) expect(fields.has(w), w).to.equal(true);
    expect(fields.get("Creation Time")).to.equal("2026-11-26 12:00 UTC");
    expect(fields.get("Expiration Time")).to.equal("in 30d (2026-12-27 10:30 UTC)");
  });

  it("the TUI's form, table and key details use the same words and times", async () => {
    const ui = await renderApp(new FakeAdminApi({ keys: [expiring] }), { columns: 160, rows: 40 });
    try {
      const row = tableRows(ui.frame())[0] ?? "";
      expect(row).to.include("2026-11-26 12:00").and.include("2026-12-27 10:30");
      await ui.press(KEY.enter);
      const details = await ui.waitFor((x) => x.includes("Creation Time"));
      for (const w of PAGE_WORDS) expect(details, w).to.include(w);
      expect(details).to.include("2026-11-26 12:00 UTC").and.include("(2026-12-27 10:30 UTC)");
      await ui.press(KEY.esc, "n");
      const form = await ui.waitFor((x) => x.includes("Create a key"));
      for (const w of ["Basic Information", "Token Grouping", "Expiration Time", "Quota Settings", "Quota", "Unlimited Quota", "Access Restrictions", "Model Restrictions", "IP Whitelist"]) {
        expect(form, w).to.include(w);
      }
    } finally {
      ui.unmount();
    }
  });
});
