// 100k keys: only the visible window is rendered, navigation reaches both
// ends, and search/filters narrow the list ("n of m"). Plus the pure filter.
import { expect } from "chai";
import { KeyStatus, type Key } from "../../src/gen/aisa/v1/types.js";
import { allowsModel, matchesStatusFilter } from "../../src/domain/keyView.js";
import { filterKeys, hiddenMarkCount, indexKeys, KeyFilterCache, NO_FILTERS, type KeyFilters } from "../../tui/state/keyIndex.js";
import { FakeAdminApi, makeKey, T0 } from "./fakeApi.js";
import { KEY, renderApp, tableRows, type Driven } from "./render.js";

const N = 100_000;

describe("tui: windowed key list (100k keys)", function () {
  this.timeout(60_000);
  let ui: Driven | undefined;
  let keys: Key[];
  before(() => {
    keys = Array.from({ length: N }, (_, i) =>
      makeKey(i, { status: i % 10 === 0 ? KeyStatus.KEY_STATUS_DISABLED : KeyStatus.KEY_STATUS_ENABLED }),
    );
  });
  afterEach(() => ui?.unmount());

  it("renders only the rows that fit, and moves to the end and back", async () => {
    ui = await renderApp(new FakeAdminApi({ keys }), { rows: 30 });
    const f = ui.frame();
    expect(f).to.include("100,000 of 100,000 keys");
    const rows = tableRows(f);
    // 30 rows - 1 spare - header, tabs, status, help bar - table header
    expect(rows.length).to.equal(30 - 1 - 4 - 1);
    expect(rows[0]).to.include("key-0 ");
    expect(f).not.to.include("key-99999");

    await ui.press("G");
    const end = await ui.waitFor((x) => x.includes("key-99999"));
    expect(tableRows(end).length).to.equal(24);
    expect(tableRows(end).at(-1)).to.match(/^› key-99999/);
    expect(end).not.to.include("key-0 ");

    await ui.press("g", "j", "j", KEY.down);
    const top = await ui.waitFor((x) => tableRows(x)[3]?.startsWith("› key-3 ") === true);
    expect(tableRows(top)[0]).to.include("key-0 ");
  });

  it("pages with PgDn/PgUp without rendering more rows", async () => {
    ui = await renderApp(new FakeAdminApi({ keys }), { rows: 30 });
    await ui.press(KEY.pageDown);
    const f = await ui.waitFor((x) => tableRows(x).some((r) => r.startsWith("› ")) && !x.includes("› key-0 "));
    expect(tableRows(f).length).to.equal(24);
    await ui.press(KEY.pageUp);
    await ui.waitFor((x) => x.includes("› key-0 "));
  });

  it("narrows as you type after / and shows n of m", async () => {
    ui = await renderApp(new FakeAdminApi({ keys }), { rows: 30 });
    await ui.press("/");
    await ui.type("key-9999");
    // key-9999 and key-99990..key-99999
    const f = await ui.waitFor((x) => /(^|[^\d,])11 of 100,000 keys/.test(x));
    expect(tableRows(f).length, f).to.equal(11);
    await ui.press(KEY.enter);
    await ui.waitFor((x) => x.includes("/key-9999"));
    await ui.press(KEY.esc);
    await ui.waitFor((x) => x.includes("100,000 of 100,000 keys"));
  });

  it("filters by status from the filter menu", async () => {
    ui = await renderApp(new FakeAdminApi({ keys }), { rows: 40 });
    await ui.press("f", KEY.right);
    await ui.waitFor((x) => x.includes("90,000 of 100,000 keys") && x.includes("status:enabled"));
    await ui.press(KEY.right);
    await ui.waitFor((x) => x.includes("10,000 of 100,000 keys") && x.includes("status:disabled"));
    await ui.press(KEY.esc, KEY.esc);
    await ui.waitFor((x) => x.includes("100,000 of 100,000 keys"));
  });
});

describe("tui: filterKeys", () => {
  const now = T0;
  const ks = [
    makeKey(1, { name: "Prod-API" }),
    makeKey(2, { name: "staging", group: "stage", status: KeyStatus.KEY_STATUS_DISABLED }),
    makeKey(3, { name: "expired", expiresAt: new Date(now - 1) }),
    makeKey(4, { name: "gpt-only", models: ["gpt-4o"], accountId: "acme" }),
    makeKey(5, { name: "later", expiresAt: new Date(now + 1000) }),
  ];
  const index = indexKeys(ks);
  const names = (q: string, f: Partial<KeyFilters>): string[] =>
    filterKeys(index, q, { ...NO_FILTERS, ...f }, now).map((i) => (ks[i] as Key).name);

  const cases: { name: string; q: string; f: Partial<KeyFilters>; want: string[] }[] = [
    { name: "no search, no filters", q: "", f: {}, want: ["Prod-API", "staging", "expired", "gpt-only", "later"] },
    { name: "search is case-insensitive over names", q: "prod", f: {}, want: ["Prod-API"] },
    { name: "search matches ids", q: "key_00000000000000000004", f: {}, want: ["gpt-only"] },
    { name: "status disabled", q: "", f: { status: "disabled" }, want: ["staging"] },
    { name: "group", q: "", f: { group: "stage" }, want: ["staging"] },
    { name: "account", q: "", f: { accountId: "acme" }, want: ["gpt-only"] },
    { name: "expired", q: "", f: { expired: "expired" }, want: ["expired"] },
    { name: "not expired", q: "", f: { expired: "active" }, want: ["Prod-API", "staging", "gpt-only", "later"] },
    { name: "model includes unrestricted keys", q: "", f: { model: "o3" }, want: ["Prod-API", "staging", "expired", "later"] },
    { name: "search and filter combine", q: "a", f: { status: "enabled", expired: "active" }, want: ["Prod-API", "later"] },
  ];
  for (const c of cases) it(c.name, () => expect(names(c.q, c.f)).to.deep.equal(c.want));

  it("counts marked keys hidden by the filter", () => {
    const visible = filterKeys(index, "", { ...NO_FILTERS, status: "disabled" }, now);
    const marks = new Set([(ks[0] as Key).id, (ks[1] as Key).id, (ks[2] as Key).id]);
    expect(hiddenMarkCount(marks, index, visible)).to.equal(2);
  });
});

describe("tui: KeyFilterCache (typing narrows from the previous result)", () => {
  const ks = Array.from({ length: 500 }, (_, i) => makeKey(i, { status: i % 7 === 0 ? KeyStatus.KEY_STATUS_DISABLED : KeyStatus.KEY_STATUS_ENABLED }));
  const index = indexKeys(ks);
  it("gives filterKeys' answer for every query typed, erased, changed, and with filters", async () => {
    const { KeyFilterCache } = await import("../../tui/state/keyIndex.js");
    const cache = new KeyFilterCache();
    const filters: KeyFilters = { ...NO_FILTERS, status: "enabled" };
    const steps: [string, KeyFilters][] = [
      ["", NO_FILTERS], ["k", NO_FILTERS], ["ke", NO_FILTERS], ["key-4", NO_FILTERS], ["key-49", NO_FILTERS], ["key-4", NO_FILTERS],
      ["key-49", filters], ["key-499", filters], ["KEY-49 ", filters], ["key-1", filters], ["key-1", NO_FILTERS], ["", NO_FILTERS],
    ];
    for (const [q, f] of steps) expect(cache.filter(index, q, f, T0), `${JSON.stringify(q)} ${f.status}`).to.deep.equal(filterKeys(index, q, f, T0));
  });

  it("a backspace returns the shorter query's kept result, and no search and no filter is every row without a pass", () => {
    const cache = new KeyFilterCache();
    expect(cache.filter(index, "", NO_FILTERS, T0)).to.equal(index.all);
    const k4 = cache.filter(index, "key-4", NO_FILTERS, T0);
    const k49 = cache.filter(index, "key-49", NO_FILTERS, T0);
    expect(k49.length).to.be.lessThan(k4.length);
    expect(cache.filter(index, "key-4", NO_FILTERS, T0)).to.equal(k4);
    // The clock does not matter without a filter that reads it.
    expect(cache.filter(index, "key-4", NO_FILTERS, T0 + 60_000)).to.equal(k4);
    expect(cache.filter(index, "", NO_FILTERS, T0)).to.equal(index.all);
  });
});

/** The search and filters as the page states them, from the key objects (no index, no cache). */
function reference(ks: readonly Key[], query: string, f: KeyFilters, now: number): number[] {
  const q = query.trim().toLowerCase();
  const out: number[] = [];
  ks.forEach((k, i) => {
    const expired = k.expiresAt !== undefined && k.expiresAt.getTime() <= now;
    if (q && !k.name.toLowerCase().includes(q) && !k.id.toLowerCase().includes(q)) return;
    if (f.status !== "any" && !matchesStatusFilter(f.status, k.status === KeyStatus.KEY_STATUS_ENABLED, expired)) return;
    if (f.group !== null && k.group !== f.group) return;
    if (f.accountId !== null && k.accountId !== f.accountId) return;
    if (f.expired !== "any" && expired !== (f.expired === "expired")) return;
    if (f.model !== null && !allowsModel({ models: k.effectiveModels, restricted: k.modelsRestricted }, f.model)) return;
    out.push(i);
  });
  return out;
}

describe("tui: KeyFilterCache over random typing (characters, backspaces, clears, filters, clock)", () => {
  // A seeded generator: the same sequences on every run.
  let seed = 0x9e3779b9;
  const rand = (): number => {
    seed = (seed + 0x6d2b79f5) | 0;
    let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  const pick = <T,>(xs: readonly T[]): T => xs[Math.floor(rand() * xs.length)] as T;
  const now0 = T0;
  // Few letters, so queries of several characters still match many keys.
  const letters = [..."abAB-1 "];
  const ks = Array.from({ length: 2000 }, (_, i) =>
    makeKey(i, {
      name: Array.from({ length: 3 + Math.floor(rand() * 6) }, () => pick(letters)).join(""),
      status: rand() < 0.2 ? KeyStatus.KEY_STATUS_DISABLED : KeyStatus.KEY_STATUS_ENABLED,
      expiresAt: rand() < 0.3 ? new Date(now0 + Math.floor((rand() - 0.5) * 200_000)) : undefined,
      group: pick(["default", "prod"]),
      accountId: pick(["default", "acme"]),
      models: rand() < 0.3 ? [pick(["gpt-4o", "o3"])] : [],
    }),
  );
  const index = indexKeys(ks);
  const filterChoices: readonly Partial<KeyFilters>[] = [{}, { status: "enabled" }, { status: "disabled" }, { status: "expired" }, { expired: "active" }, { group: "prod" }, { accountId: "acme", status: "enabled" }, { model: "o3" }];

  for (let run = 0; run < 20; run++) {
    it(`sequence ${run}: every step gives the reference's rows`, () => {
      const cache = new KeyFilterCache();
      let q = "";
      let filters: KeyFilters = NO_FILTERS;
      let now = now0;
      for (let step = 0; step < 300; step++) {
        const r = rand();
        if (r < 0.5) q += pick(letters);
        else if (r < 0.75) q = q.slice(0, -1);
        else if (r < 0.8) q = "";
        else if (r < 0.85) q = q.slice(0, Math.floor(rand() * (q.length + 1))) + pick(letters); // edit in the middle
        else if (r < 0.93) filters = { ...NO_FILTERS, ...pick(filterChoices) }; // a new filters object, maybe the same filters
        else now += Math.floor(rand() * 60_000); // the clock ticks: keys expire
        expect([...cache.filter(index, q, filters, now)], `step ${step}: ${JSON.stringify(q)} ${JSON.stringify(filters)} at +${now - now0} ms`).to.deep.equal(reference(ks, q, filters, now));
      }
    });
  }
});
