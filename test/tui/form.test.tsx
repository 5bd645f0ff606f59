// The create/edit form: validation as you type, currency hint, quick expiry
// options, server errors inline, the secret shown once. Plus the pure model.
import { expect } from "chai";
import { ApiError } from "../../tui/client.js";
import { DEFAULT_MONEY } from "../../src/display/format.js";
import {
  buildSpec,
  buildUpdate,
  checkForm,
  fieldOfServerError,
  initialValues,
  parseQuota,
  validateIp,
  type FormContext,
} from "../../tui/state/keyForm.js";
import { FakeAdminApi, makeKey, T0 } from "./fakeApi.js";
import { KEY, renderApp, type Driven } from "./render.js";

/** The form's line for a field label. */
function line(frame: string, label: string): string {
  return frame.split("\n").find((l) => l.includes(label)) ?? "";
}

describe("tui: key form", () => {
  let ui: Driven | undefined;
  afterEach(() => ui?.unmount());

  async function openCreate(api = new FakeAdminApi({ keys: [makeKey(1)] })): Promise<Driven> {
    ui = await renderApp(api, { rows: 30 });
    await ui.press("n");
    await ui.waitFor((f) => f.includes("Create a key"));
    return ui;
  }

  it("flags a bad IP on its line as you type, and clears it when fixed", async () => {
    const u = await openCreate();
    // name → group → expiry → quota → unlimited → models → ips
    await u.press(KEY.tab, KEY.tab, KEY.tab, KEY.tab, KEY.tab, KEY.tab);
    await u.type("10.0.0.1");
    let f = await u.waitFor((x) => /10\.0\.0\.1\s+✓/.test(x));
    await u.press(KEY.enter);
    await u.type("010.1.2.3");
    f = await u.waitFor((x) => /010\.1\.2\.3\s+✗/.test(x));
    expect(f).to.include("four plain decimal parts");
    expect(f).to.match(/✗ line 2: 010\.1\.2\.3/);
    await u.press(KEY.enter);
    await u.type("2001:db8::/129");
    f = await u.waitFor((x) => /2001:db8::\/129\s+✗/.test(x));
    expect(f).to.include("not a valid CIDR");
    for (let i = 0; i < "/129".length; i++) await u.press(KEY.backspace);
    await u.type("/32");
    f = await u.waitFor((x) => /2001:db8::\/32\s+✓/.test(x));
    expect(f).to.match(/010\.1\.2\.3\s+✗/);
  });

  it("shows the quota's currency equivalent as you type and turns Unlimited off", async () => {
    const u = await openCreate();
    await u.press(KEY.tab, KEY.tab, KEY.tab);
    expect(line(u.frame(), "Unlimited ")).to.include("[x] Unlimited quota");
    await u.type("25");
    let f = await u.waitFor((x) => /25\s+≈ \$0\.00005/.test(line(x, "Quota  ")));
    expect(line(f, "Unlimited ")).to.include("[ ] Unlimited quota");
    await u.type("0000");
    f = await u.waitFor((x) => /250000\s+≈ \$0\.50/.test(line(x, "Quota  ")));
    await u.type("0");
    await u.waitFor((x) => /2500000\s+≈ \$5\.00/.test(line(x, "Quota  ")));
    await u.press(...Array<string>(7).fill(KEY.backspace));
    await u.type("$3");
    f = await u.waitFor((x) => /\$3\s+= 1,500,000 units/.test(line(x, "Quota  ")));
    expect(f).not.to.include("✗");
  });

  it("offers the quick expiry options and validates an exact time", async () => {
    const u = await openCreate();
    await u.press(KEY.tab, KEY.tab);
    // → cycles through the quick options, then the exact time, and wraps around.
    for (const label of ["Never expires", "One month", "One day", "One hour", "Exact time (RFC 3339)", "Never expires"]) {
      await u.waitFor((x) => line(x, "Expiration").includes(`‹ ${label} ›`));
      await u.press(KEY.right);
    }
    await u.press(KEY.left, KEY.left);
    await u.waitFor((x) => line(x, "Expiration").includes("‹ Exact time (RFC 3339) ›") && /Exact time {3,}/.test(x));
    await u.press(KEY.tab);
    await u.type("2020-01-01T00:00:00Z");
    const past = await u.waitFor((x) => x.includes("must be in the future"));
    expect(past).to.match(/Exact time {3,}2020-01-01T00:00:00Z/);
    await u.press(...Array<string>(20).fill(KEY.backspace));
    await u.type("tomorrow");
    await u.waitFor((x) => x.includes("not an RFC 3339 time") && /Exact time {3,}tomorrow/.test(x));
  });

  it("creates a key, sends the spec, and shows the full secret once", async () => {
    const api = new FakeAdminApi({ keys: [makeKey(1)] });
    const u = await openCreate(api);
    await u.type("my app");
    await u.press(KEY.tab, KEY.right); // group: prod
    await u.press(KEY.tab, KEY.right, KEY.right); // expiry: One day
    await u.press(KEY.tab);
    await u.type("$1");
    await u.press(KEY.tab, KEY.tab);
    await u.type("gpt-4o, gpt-4o-mini");
    await u.press(KEY.tab);
    await u.type("10.0.0.0/8");
    await u.press(KEY.ctrlS);
    const f = await u.waitFor((x) => x.includes("Key created: my app"));
    const created = api.calls.find((c) => c.method === "createKey");
    expect(created?.args[0]).to.deep.include({
      name: "my app",
      group: "prod",
      expires: "1d",
      quota: "500000",
      unlimited: false,
      models: ["gpt-4o", "gpt-4o-mini"],
      ips: ["10.0.0.0/8"],
    });
    const secret = /sk-FAKE\d+/.exec(f)?.[0];
    expect(secret).to.be.a("string");
    await u.press(KEY.enter);
    const after = await u.waitFor((x) => !x.includes("Key created"));
    expect(after).to.include("my app");
    expect(after).not.to.include(secret as string);
  });

  it("copies the new key from the secret dialog", async () => {
    const copied: string[] = [];
    const api = new FakeAdminApi();
    ui = await renderApp(api, { clipboard: { copy: (t) => (copied.push(t), Promise.resolve({ methods: ["OSC 52"] })) } });
    await ui.press("n");
    await ui.type("k");
    await ui.press(KEY.ctrlS);
    await ui.waitFor((x) => x.includes("Key created"));
    await ui.press("c");
    await ui.waitFor((x) => x.includes("Copied via OSC 52"));
    expect(copied).to.have.length(1);
    expect(copied[0]).to.match(/^sk-FAKE/);
  });

  it("picks model restrictions from the priced models", async () => {
    const api = new FakeAdminApi({ keys: [makeKey(1)] });
    const u = await openCreate(api);
    await u.type("m");
    await u.press(KEY.tab, KEY.tab, KEY.tab, KEY.tab, KEY.tab, KEY.ctrlP);
    let f = await u.waitFor((x) => x.includes("Models (0 checked; none = all models)"));
    expect(f).to.include("[ ] gpt-4o");
    await u.press("j", KEY.space);
    f = await u.waitFor((x) => x.includes("[x] gpt-4o-mini"));
    await u.press(KEY.enter);
    f = await u.waitFor((x) => line(x, "Model Restrictions").includes("gpt-4o-mini"));
    await u.press(KEY.ctrlS);
    await u.waitFor((x) => x.includes("Key created: m"));
    expect(api.calls.find((c) => c.method === "createKey")?.args[0]).to.deep.include({ models: ["gpt-4o-mini"] });
  });

  it("shows a server error at the field its message names", async () => {
    const api = new FakeAdminApi({ keys: [makeKey(1)] });
    api.nextError = new ApiError("INVALID_ARGUMENT", "spec.name: already used by another key");
    const u = await openCreate(api);
    await u.type("dup");
    await u.press(KEY.ctrlS);
    const f = await u.waitFor((x) => x.includes("server: INVALID_ARGUMENT: spec.name: already used"));
    const lines = f.split("\n");
    const nameAt = lines.findIndex((l) => l.includes("Name"));
    expect(lines[nameAt + 1]).to.include("server: INVALID_ARGUMENT");
    expect(f).to.include("Create a key");
  });

  it("refuses to submit with errors and says why", async () => {
    const api = new FakeAdminApi();
    const u = await openCreate(api);
    await u.press(KEY.ctrlS);
    const f = await u.waitFor((x) => x.includes("fix the fields marked in red"));
    expect(line(f, "✗")).to.include("required");
    expect(api.calls.some((c) => c.method === "createKey")).to.equal(false);
  });

  it("edits only the changed fields", async () => {
    const api = new FakeAdminApi({ keys: [makeKey(1, { name: "old", ips: ["10.0.0.0/8"] })] });
    ui = await renderApp(api);
    await ui.press("e");
    await ui.waitFor((x) => x.includes("Edit key old"));
    await ui.type("er");
    await ui.press(KEY.ctrlS);
    await ui.waitFor((x) => x.includes('Saved "older" (name)'));
    const upd = api.calls.find((c) => c.method === "updateKey");
    expect(upd?.args[2]).to.deep.equal(["name"]);
  });
});

describe("tui: key form model", () => {
  const ipCases: { ip: string; ok: boolean }[] = [
    { ip: "203.0.113.7", ok: true },
    { ip: "10.0.0.0/8", ok: true },
    { ip: "::1", ok: true },
    { ip: "2001:db8::/32", ok: true },
    { ip: "::ffff:1.2.3.4", ok: true },
    { ip: "1.2.3", ok: false },
    { ip: "010.0.0.1", ok: false },
    { ip: "0x7f.1", ok: false },
    { ip: "10.0.0.0/33", ok: false },
    { ip: "fe80::1%eth0", ok: false },
    { ip: "example.com", ok: false },
  ];
  for (const c of ipCases) {
    it(`${c.ok ? "accepts" : "rejects"} ${c.ip}`, () => expect(validateIp(c.ip) === null).to.equal(c.ok));
  }

  const quotaCases: { text: string; units: string | null; error: boolean }[] = [
    { text: "", units: null, error: false },
    { text: "500000", units: "500000", error: false },
    { text: "1_000_000", units: "1000000", error: false },
    { text: "$2.5", units: "1250000", error: false },
    { text: "3 USD", units: "1500000", error: false },
    { text: "-5", units: null, error: true },
    { text: "abc", units: null, error: true },
    { text: "99999999999999999999", units: null, error: true },
  ];
  for (const c of quotaCases) {
    it(`parses quota ${JSON.stringify(c.text)}`, () => {
      const q = parseQuota(c.text, DEFAULT_MONEY);
      expect(q.units).to.equal(c.units);
      expect(q.error !== null).to.equal(c.error);
    });
  }

  const ctx: FormContext = { now: T0, money: DEFAULT_MONEY, groups: ["default", "prod"], pricedModels: ["gpt-4o"] };

  it("warns (does not block) on models without a price", () => {
    const c = checkForm({ ...initialValues(), name: "x", models: "gpt-4o, mystery" }, ctx);
    expect(c.errors).to.deep.equal({});
    expect(c.warnings.models).to.include("mystery");
  });

  it("builds the create spec with the quick expiry value", () => {
    const spec = buildSpec({ ...initialValues(), name: "x", expiry: "1mo" }, ctx);
    expect(spec).to.deep.include({ name: "x", group: "default", expires: "1mo", unlimited: true, quota: "0", models: [], ips: [] });
  });

  it("masks only changed fields on update (quota when leaving Unlimited)", () => {
    const key = makeKey(1, { name: "a", expiresAt: new Date(T0 + 86_400_000) });
    const v = { ...initialValues(key), unlimited: false, quota: "100" };
    expect(buildUpdate(key, v, ctx).mask).to.deep.equal(["unlimited", "quota"]);
    expect(buildUpdate(key, initialValues(key), ctx).mask).to.deep.equal([]);
  });

  const errCases: { msg: string; field: string | null }[] = [
    { msg: "INVALID_ARGUMENT: spec.ips[1]: not an address", field: "ips" },
    { msg: "spec.name: must not be empty", field: "name" },
    { msg: "INVALID_ARGUMENT: spec.expires: must be in the future", field: "expiry" },
    { msg: "NOT_FOUND: group \"x\" not found", field: "group" },
    { msg: "UNAVAILABLE: store unavailable", field: null },
  ];
  for (const c of errCases) {
    it(`maps server error ${JSON.stringify(c.msg)} to ${c.field ?? "the form"}`, () =>
      expect(fieldOfServerError(c.msg, initialValues())).to.equal(c.field));
  }
});
