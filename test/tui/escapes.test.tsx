// Terminal escape injection in the TUI: stored text with an OSC title, an OSC 52 clipboard
// write, a C1 CSI or an RTL override (data from before the input rules) is rendered as
// visible escapes in the table, the details, the groups view and server error messages —
// never as the raw sequence. Plus the pure wrapper (displaySafe) and the form's text rules.
import { expect } from "chai";
import { ApiError } from "../../tui/client.js";
import { DEFAULT_MONEY } from "../../src/display/format.js";
import { displaySafe } from "../../tui/safeApi.js";
import { checkForm, initialValues, type FormContext } from "../../tui/state/keyForm.js";
import { FakeAdminApi, makeGroup, makeKey, T0 } from "./fakeApi.js";
import { KEY, renderApp, type Driven } from "./render.js";

const OSC_TITLE = "hi\x1b]2;PWNED\x07\x1b[41m";
const OSC_CLIPBOARD = "\x1b]52;c;ZXZpbA==\x07";
/** What must never reach the terminal from data: BEL, an OSC introducer, the data's SGR, C1 controls, bidi controls. */
const RAW = /\x07|\x1b\]|\x1b\[41m|[\u0080-\u009f\u202A-\u202E\u2066-\u2069\u200B]/;

function evilApi(): FakeAdminApi {
  return new FakeAdminApi({
    keys: [
      makeKey(1, {
        name: `evil${OSC_TITLE}`,
        models: ["gpt\u009b2J"],
        metadata: { note: OSC_TITLE, [`k${OSC_CLIPBOARD}`]: "a\u202Eb" },
      }),
    ],
    groups: [{ ...makeGroup("default", 1), description: `team ${OSC_CLIPBOARD}` }, makeGroup("prod")],
    accounts: [{ id: "default", name: `Default\u009b2J`, balance: "5000000", createdAt: new Date(T0), reserved: "0", credited: "5000000", charged: "0", timezone: "UTC" }],
  });
}

describe("tui: stored escapes are shown, never executed", () => {
  let ui: Driven | undefined;
  afterEach(() => ui?.unmount());

  it("the key table shows the name's escapes visibly", async () => {
    ui = await renderApp(evilApi(), { columns: 200 });
    const f = await ui.waitFor((x) => x.includes("evilhi\\x1b"));
    expect(f).not.to.match(RAW);
  });

  it("the details view shows name, models and metadata (keys and values) escaped", async () => {
    ui = await renderApp(evilApi(), { columns: 200, rows: 40 });
    await ui.waitFor((x) => x.includes("evilhi"));
    await ui.press(KEY.enter);
    const f = await ui.waitFor((x) => x.includes("note=hi\\x1b]2;PWNED\\x07\\x1b[41m"));
    expect(f).to.include("gpt\\x9b2J");
    expect(f).to.include("k\\x1b]52;c;ZXZpbA==\\x07=a\\u202eb");
    expect(f).not.to.match(RAW);
  });

  it("the groups view shows the description's OSC 52 escaped", async () => {
    ui = await renderApp(evilApi(), { columns: 200 });
    await ui.waitFor((x) => x.includes("evilhi"));
    await ui.press("2");
    const f = await ui.waitFor((x) => x.includes("team \\x1b]52;c;"));
    expect(f).not.to.match(RAW);
  });

  it("a server error echoing input with escapes is shown escaped in the form", async () => {
    const api = evilApi();
    ui = await renderApp(api, { columns: 160 });
    await ui.waitFor((x) => x.includes("evilhi"));
    await ui.press("n");
    await ui.waitFor((x) => x.includes("Create a key"));
    await ui.type("ok");
    api.nextError = new ApiError("INVALID_ARGUMENT", `spec.group: group "x${OSC_TITLE}\u202E" does not exist`);
    await ui.press(KEY.ctrlS);
    const f = await ui.waitFor((x) => x.includes("does not exist"));
    expect(f).to.include("xhi\\x1b]2;PWNED");
    expect(f).not.to.match(RAW);
  });
});

describe("tui: displaySafe (every string the sidecar sends)", () => {
  it("escapes strings at any depth, including object keys, and keeps Dates", () => {
    const at = new Date(T0);
    const v = { a: [`x${OSC_TITLE}`, "clean"], m: { [`k\x1b`]: "v\u202E" }, at, n: 5 };
    const out = displaySafe(v);
    expect(out).to.deep.equal({ a: ["xhi\\x1b]2;PWNED\\x07\\x1b[41m", "clean"], m: { "k\\x1b": "v\\u202e" }, at, n: 5 });
    expect(out.at).to.equal(at);
    expect(v.a[0]).to.equal(`x${OSC_TITLE}`, "the input is not mutated");
  });
  it("returns the same objects when nothing needs escaping (no copies of a clean 100k-key list)", () => {
    const keys = [makeKey(1), makeKey(2)];
    expect(displaySafe(keys)).to.equal(keys);
  });
});

describe("tui: the form applies the server's text rules and the strict time parser", () => {
  const ctx: FormContext = { now: T0, money: DEFAULT_MONEY, groups: ["default"], pricedModels: [] };
  const cases: { name: string; values: Record<string, unknown>; field: "name" | "models" | "expiresAt"; error: string }[] = [
    { name: "a name with U+202E", values: { name: "invoice\u202Egpj" }, field: "name", error: "must not contain invisible or bidirectional formatting characters (U+202E at 7)" },
    { name: "a name with a zero-width space", values: { name: "a\u200Bb" }, field: "name", error: "(U+200B at 1)" },
    { name: "a name with U+2028", values: { name: "a\u2028b" }, field: "name", error: "line or paragraph separators (U+2028 at 1)" },
    { name: "a model with a zero-width joiner", values: { name: "n", models: "gpt-4o, gpt\u200D-4o" }, field: "models", error: "model 2: must not contain invisible or bidirectional formatting characters (U+200D at 3)" },
    { name: "a pasted secret as a model (not echoed)", values: { name: "n", models: `sk-${"A".repeat(43)}` }, field: "models", error: "model 1: looks like an API key or admin token" },
    { name: "February 30", values: { name: "n", expiry: "exact", expiresAt: "2027-02-30T00:00:00Z" }, field: "expiresAt", error: "day 30 is not 01..28 in 2027-02" },
    { name: "T24:00:00", values: { name: "n", expiry: "exact", expiresAt: "2027-01-01T24:00:00Z" }, field: "expiresAt", error: "hour 24 is not 00..23" },
  ];
  for (const c of cases) {
    it(`refuses ${c.name}`, () => {
      const errors = checkForm({ ...initialValues(), ...c.values }, ctx).errors;
      expect(errors[c.field]).to.include(c.error);
      expect(errors[c.field]).not.to.include("A".repeat(20));
    });
  }
});
