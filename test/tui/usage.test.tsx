// Live usage in the app, against the fake API's WatchUsage: the Usage view
// (rates, denies by reason, sparklines, top keys, alerts), live Remaining and
// key events in the key table, alert flashes, and the stream's lifecycle
// (one stream, cancelled on unmount, reopened after the sidecar ends it).
import { expect } from "chai";
import { KeyStatus, type Key } from "../../src/gen/aisa/v1/types.js";
import { ApiError, type UsageEvent } from "../../tui/client.js";
import { SPARK_BARS } from "../../tui/state/usage.js";
import { counters, FakeAdminApi, makeGroup, makeKey, row, T0, usageEvent } from "./fakeApi.js";
import { delay, KEY, renderApp, tableRows, type Driven } from "./render.js";

const limited = (i: number, name: string, remaining: string, o: Partial<Key> = {}): Key =>
  makeKey(i, { name, quota: { unlimited: false, total: "1000000", remaining, used: "0", reserved: "0" }, updatedAt: new Date(T0), ...o });

function sampleKeys(): Key[] {
  return [limited(1, "alpha", "1000000"), makeKey(2, { name: "beta" }), makeKey(3, { name: "gamma", group: "prod" })];
}

/** One second of traffic: alpha spends most, beta less, gamma only requests (and denies). */
function traffic(keys: readonly Key[], i: number): UsageEvent {
  const at = T0 + i * 1000;
  const [a, b, g] = keys as [Key, Key, Key];
  return usageEvent(at, {
    total: counters({ requests: 12, denied: { KEY_DISABLED: 2, KEY_QUOTA_EXHAUSTED: 1 }, input: 300, output: 100, units: 5000 }),
    byKey: [
      row(at, b.id, counters({ requests: 2, units: 1000 })),
      row(at, a.id, counters({ requests: 4, units: 4000 })),
      row(at, g.id, counters({ requests: 6, denied: { KEY_DISABLED: 2 } })),
    ],
    byGroup: [row(at, "default", counters({ requests: 6, units: 5000 })), row(at, "prod", counters({ requests: 6 }))],
  });
}

async function streaming(api: FakeAdminApi, opts: Parameters<typeof renderApp>[1] = {}): Promise<Driven> {
  const ui = await renderApp(api, opts);
  await ui.waitFor(() => api.openStreams.length === 1);
  return ui;
}

function linesWith(frame: string, re: RegExp): string[] {
  return frame.split("\n").filter((l) => re.test(l));
}

describe("tui: live usage", () => {
  let ui: Driven | undefined;
  afterEach(() => ui?.unmount());

  it("shows rates, denies by reason and a sparkline for the last second and the window", async () => {
    const api = new FakeAdminApi({ keys: sampleKeys() });
    ui = await streaming(api, { columns: 120, rows: 40 });
    for (let i = 0; i < 10; i++) api.emit(traffic(api.keys, i));
    await ui.press("3");
    const f = await ui.waitFor((x) => x.includes("Last 10 s"));
    expect(f).to.match(/Last 1 s\s+12 req\/s · 3 denied\/s · 400 tokens\/s · 5,000 units\/s ≈ \$0\.01\/s/);
    expect(f).to.match(/Last 10 s\s+12 req\/s · 3 denied\/s · 400 tokens\/s · 5,000 units\/s/);
    expect(f).to.include("50,000 units ≈ $0.10");
    expect(f).to.match(/Denies\/s\s+KEY_DISABLED 2 · KEY_QUOTA_EXHAUSTED 1/);
    // The whole stream: 50 idle seconds (blank), then 10 full ones (█).
    const spark = linesWith(f, /^requests\/s /)[0] ?? "";
    expect(spark).to.include(`${" ".repeat(50)}${"█".repeat(10)} max 12`);
    expect(f).to.include("● live · last 10 s · 3 active keys");
  });

  it("ranks top keys by spend with a sparkline each, and groups", async () => {
    const api = new FakeAdminApi({ keys: sampleKeys() });
    ui = await streaming(api, { columns: 120, rows: 40 });
    for (let i = 0; i < 4; i++) api.emit(traffic(api.keys, i));
    // alpha idles for the last second: its sparkline ends blank.
    const at = T0 + 4000;
    api.emit(usageEvent(at, { byKey: [row(at, (api.keys[1] as Key).id, counters({ requests: 1, units: 1 }))] }));
    await ui.press("3");
    const f = await ui.waitFor((x) => x.includes("Last 5 s"));
    const ranked = linesWith(f, /^\s*\d+ \S.*≈/);
    expect(ranked.map((l) => l.trim().split(/\s+/)[1])).to.deep.equal(["alpha", "beta", "gamma", "default", "prod"]);
    const alpha = ranked[0] as string;
    expect(alpha).to.match(/ {55}████ {2,}16,000\s+≈ \$0\.03\s+3\.2\s+0\s*$/);
    const gamma = ranked[2] as string;
    expect(gamma).to.match(/0\s+≈ \$0\.00\s+4\.8\s+1\.6\s*$/);
    for (const l of ranked) expect([...l].some((c) => SPARK_BARS.includes(c))).to.equal(true);
  });

  it("cycles the sparkline metric with m", async () => {
    const api = new FakeAdminApi({ keys: sampleKeys() });
    ui = await streaming(api, { columns: 120, rows: 40 });
    api.emit(traffic(api.keys, 0));
    await ui.press("3");
    await ui.waitFor((x) => /^requests\/s /m.test(x));
    await ui.press("m");
    await ui.waitFor((x) => /^denied\/s /m.test(x) && x.includes("sparklines: denied/s"));
    await ui.press("m", "m");
    await ui.waitFor((x) => /^units\/s /m.test(x));
    await ui.press("m");
    await ui.waitFor((x) => /^requests\/s /m.test(x));
  });

  it("lists alerts and key events as they arrive, newest first; c clears them", async () => {
    const api = new FakeAdminApi({ keys: sampleKeys() });
    ui = await streaming(api, { columns: 120, rows: 40 });
    await ui.press("3");
    await ui.waitFor((x) => x.includes("Waiting for the first second"));
    await ui.press("c");
    await ui.waitFor((x) => x.includes("clear alerts: no alerts"));
    const alpha = api.keys[0] as Key;
    api.emit(
      usageEvent(T0, {
        alerts: [{ kind: "key_quota", targetId: alpha.id, percent: 50, message: `key ${alpha.id} (alpha) has used 50% of its quota`, expiresAt: undefined }],
      }),
    );
    await ui.waitFor((x) => x.includes("quota 50%"));
    api.emit(
      usageEvent(T0 + 1000, {
        alerts: [{ kind: "key_expiring", targetId: alpha.id, percent: 0, message: `key ${alpha.id} expires in about 3 h`, expiresAt: new Date(T0 + 3 * 3_600_000) }],
        keyEvents: [{ keyId: alpha.id, kind: "quota_exhausted", key: { ...alpha, updatedAt: new Date(T0 + 1000) } }],
      }),
    );
    const f = await ui.waitFor((x) => x.includes("expiring"));
    const feed = f.split("\n").slice(f.split("\n").findIndex((l) => l.startsWith("Alerts and key events")) + 1);
    // The expiry alert names the key as the table does, not by id only.
    expect(feed[0]).to.match(/^12:00:01 expiring\s+key "alpha" \(key_0+1\) expires in about 3 h/);
    expect(feed[1]).to.match(/^12:00:01 exhausted\s+key "alpha" \(key_0+1\) has exhausted its quota/);
    expect(feed[2]).to.match(/^12:00:00 quota 50%\s+key key_0+1 \(alpha\) has used 50% of its quota/);
    expect(f).to.include("Alerts and key events (newest first, 3)");
    await ui.press("c");
    await ui.waitFor((x) => x.includes("Alerts and key events (newest first, 0)") && x.includes("Alerts cleared"));
  });

  it("updates the Remaining column live and the account balance in the header", async () => {
    const api = new FakeAdminApi({ keys: sampleKeys() });
    ui = await streaming(api);
    expect(tableRows(ui.frame())[0]).to.include("≈ $2.00 / $2.00");
    const alpha = api.keys[0] as Key;
    api.emit(usageEvent(T0, { remaining: [{ keyId: alpha.id, remaining: "200000", unlimited: false, accountBalance: "4000000" }] }));
    const f = await ui.waitFor((x) => tableRows(x)[0]?.includes("≈ $0.40 / $2.00") === true);
    expect(f.split("\n")[0]).to.include("balance ≈ $8.00 (4,000,000 units)");
    expect(api.calls.filter((c) => c.method === "listKeys")).to.have.length(1);
    // The details view shows the live value too.
    await ui.press(KEY.enter);
    await ui.waitFor((x) => x.includes("200,000"));
  });

  it("draws no new frame for an event that changes nothing on the Keys view", async () => {
    let commits = 0;
    const api = new FakeAdminApi({ keys: sampleKeys() });
    ui = await streaming(api, { columns: 120, rows: 30, onCommit: () => commits++ });
    const idle = (i: number): UsageEvent => usageEvent(T0 + i * 1000);
    api.emit(idle(0));
    await ui.waitFor((x) => x.split("\n")[0]?.includes("0 req/s") === true);
    await delay(50);
    const settled = commits;
    // Idle seconds: the header still reads 0 req/s, no alert, no Remaining changed.
    for (let i = 1; i <= 5; i++) {
      api.emit(idle(i));
      await delay(20);
    }
    expect(commits).to.equal(settled);
    // A second with traffic changes the header's figures: drawn.
    api.emit(traffic(api.keys, 6));
    await ui.waitFor((x) => x.split("\n")[0]?.includes("12 req/s") === true);
    expect(commits).to.be.greaterThan(settled);
    // Live Remaining alone (the header's figures unchanged) is drawn too.
    api.emit(traffic(api.keys, 7));
    await delay(50);
    const before = commits;
    const alpha = api.keys[0] as Key;
    api.emit(usageEvent(T0 + 8000, { total: traffic(api.keys, 8).total, remaining: [{ keyId: alpha.id, remaining: "200000", unlimited: false, accountBalance: "4000000" }] }));
    await ui.waitFor((x) => tableRows(x)[0]?.includes("≈ $0.40 / $2.00") === true);
    expect(commits).to.be.greaterThan(before);
    // The Usage view, opened after skipped events, shows every second the model applied.
    for (let i = 9; i <= 12; i++) api.emit(idle(i));
    await ui.press("3");
    await ui.waitFor((x) => x.includes("Last 13 s"));
  });

  it("draws a live Remaining change only for a row on screen; an off-screen key shows its value when it scrolls in", async () => {
    let commits = 0;
    const keys = Array.from({ length: 40 }, (_, i) => limited(i, `k-${String(i).padStart(2, "0")}`, "1000000"));
    const api = new FakeAdminApi({ keys });
    ui = await streaming(api, { columns: 120, rows: 20, onCommit: () => commits++ });
    api.emit(usageEvent(T0));
    const first = await ui.waitFor((x) => tableRows(x).length > 3);
    const shown = tableRows(first).map((r) => r.replace(/^[›● ]+/, "").split(/\s+/)[0]!);
    const offScreen = keys.filter((k) => !shown.includes(k.name)).at(-1)!;
    const onScreen = keys.find((k) => k.name === shown[1])!;
    expect(offScreen, "a key far from the window").to.not.equal(undefined);
    const change = (k: Key, remaining: string, i: number) => api.emit(usageEvent(T0 + i * 1000, { remaining: [{ keyId: k.id, remaining, unlimited: false, accountBalance: "4000000" }] }));
    // A row on screen (this also brings the header's live balance, which stays the same below).
    change(onScreen, "300000", 1);
    await ui.waitFor((x) => tableRows(x).some((r) => r.includes(onScreen.name) && r.includes("≈ $0.60 / $2.00")));
    await delay(50);
    const settled = commits;
    change(offScreen, "200000", 2);
    await delay(60);
    expect(commits, "an off-screen Remaining change").to.equal(settled);
    change(onScreen, "100000", 3);
    await ui.waitFor((x) => tableRows(x).some((r) => r.includes(onScreen.name) && r.includes("≈ $0.20 / $2.00")));
    expect(commits).to.be.greaterThan(settled);
    // The off-screen key, found by search, shows the value recorded while it was hidden.
    await ui.press("/");
    await ui.type(offScreen.name);
    await ui.waitFor((x) => tableRows(x).some((r) => r.includes(offScreen.name) && r.includes("≈ $0.40 / $2.00")));
  });

  it("applies key events to the table without a reload", async () => {
    const api = new FakeAdminApi({ keys: sampleKeys() });
    ui = await streaming(api);
    const [alpha, beta] = api.keys as [Key, Key];
    const created = makeKey(9, { name: "zeta", createdAt: new Date(T0 + 2000), updatedAt: new Date(T0 + 2000) });
    api.emit(
      usageEvent(T0, {
        keyEvents: [
          { keyId: alpha.id, kind: "disabled", key: { ...alpha, status: KeyStatus.KEY_STATUS_DISABLED, updatedAt: new Date(T0 + 1) } },
          { keyId: beta.id, kind: "deleted", key: undefined },
          { keyId: created.id, kind: "created", key: created },
        ],
      }),
    );
    const f = await ui.waitFor((x) => x.includes("3 of 3 keys") && !x.includes("beta"));
    const rows = tableRows(f);
    expect(rows.map((r) => r.trim().replace(/^› /, "").split(/\s+/)[0])).to.deep.equal(["zeta", "alpha", "gamma"]);
    expect(rows[1]).to.match(/^› alpha\s+Disabled/); // the cursor stayed on alpha
    expect(api.calls.filter((c) => c.method === "listKeys")).to.have.length(1);
  });

  it("flashes alerts in the status line on the Keys screen", async () => {
    const api = new FakeAdminApi({ keys: sampleKeys() });
    ui = await streaming(api);
    api.emit(
      usageEvent(T0, {
        alerts: [
          { kind: "account_balance", targetId: "default", percent: 80, message: "account default has used 80% of its credited balance", expiresAt: undefined },
          { kind: "key_quota", targetId: "k", percent: 100, message: "key k has used 100% of its quota", expiresAt: undefined },
        ],
      }),
    );
    const f = await ui.waitFor((x) => x.includes("⚠ "));
    const status = f.split("\n").at(-2) ?? "";
    expect(status).to.include("⚠ key k has used 100% of its quota (+1 more: 3 shows all)");
  });

  it("shows live rates in the header and live columns in the Groups view", async () => {
    const api = new FakeAdminApi({ keys: sampleKeys(), groups: [makeGroup("default", 2), makeGroup("prod", 1)] });
    ui = await streaming(api, { columns: 120, rows: 30 });
    for (let i = 0; i < 3; i++) api.emit(traffic(api.keys, i));
    await ui.waitFor((x) => (x.split("\n")[0] ?? "").includes("12 req/s ≈ $0.01/s"));
    await ui.press("2");
    const f = await ui.waitFor((x) => x.includes("2 groups"));
    expect(f).to.match(/Req\/s\s+Last 60 s/);
    expect(linesWith(f, /^[› ] default/)[0], f).to.match(/default\s+2\s+2\s+1\s+6 {10,}█ /);
  });

  it("cycles Keys, Groups and Usage with tab; 3 opens Usage", async () => {
    const api = new FakeAdminApi({ keys: sampleKeys() });
    ui = await streaming(api);
    await ui.press(KEY.tab);
    await ui.waitFor((x) => x.includes("groups") && x.includes("Used (all time)"));
    await ui.press(KEY.tab);
    await ui.waitFor((x) => x.includes("Top keys by spend"));
    expect(ui.frame().split("\n").at(-1)).to.match(/m metric\s+c clear alerts\s+tab view/);
    await ui.press(KEY.tab);
    await ui.waitFor((x) => x.includes("3 of 3 keys"));
    await ui.press("3");
    await ui.waitFor((x) => x.includes("Top keys by spend"));
    await ui.press("1");
    await ui.waitFor((x) => x.includes("3 of 3 keys"));
  });

  it("keeps one stream across screens and cancels it on unmount", async () => {
    const api = new FakeAdminApi({ keys: sampleKeys() });
    ui = await streaming(api);
    await ui.press("3", "2", "1", "3", KEY.tab);
    await ui.waitFor((x) => x.includes("3 of 3 keys"));
    expect(api.streams).to.have.length(1);
    ui.unmount();
    ui = undefined;
    expect(api.streams.map((s) => s.cancelled)).to.deep.equal([true]);
    expect(api.openStreams).to.have.length(0);
  });

  it("reopens the stream after the sidecar ends it", async () => {
    const api = new FakeAdminApi({ keys: sampleKeys() });
    ui = await streaming(api);
    await ui.press("3");
    api.endAll();
    await ui.waitFor(() => api.streams.length === 2 && api.openStreams.length === 1);
    api.emit(traffic(api.keys, 0));
    await ui.waitFor((x) => x.includes("● live"));
    expect(api.calls.filter((c) => c.method === "listKeys")).to.have.length(1);
  });

  it("hands a lost connection to the reconnect banner, then streams again", async () => {
    const api = new FakeAdminApi({ keys: sampleKeys() });
    ui = await streaming(api);
    api.emit(traffic(api.keys, 0));
    api.down = true;
    api.endAll(new ApiError("UNAVAILABLE", "Connection dropped"));
    await ui.waitFor((x) => x.includes("Sidecar unreachable"));
    expect(api.openStreams).to.have.length(0);
    api.down = false;
    await ui.waitFor((x) => !x.includes("unreachable") && api.openStreams.length === 1);
    api.emit(traffic(api.keys, 1));
    await ui.press("3");
    // The window kept what arrived before the restart.
    await ui.waitFor((x) => x.includes("● live") && x.includes("Last 2 s"));
    expect(api.streams.filter((s) => !s.cancelled && s.ended)).to.have.length(1);
  });

  it("restarts a stream that goes silent", async () => {
    const api = new FakeAdminApi({ keys: sampleKeys() });
    ui = await streaming(api, { usageStallMs: 50 });
    await ui.waitFor(() => api.streams.length >= 2, 2000);
    expect(api.streams[0]?.cancelled).to.equal(true);
    expect(api.openStreams.length).to.be.at.most(1);
  });

  it("says so when the sidecar has no WatchUsage", async () => {
    const api = new FakeAdminApi({ keys: sampleKeys() });
    ui = await streaming(api);
    api.endAll(new ApiError("UNIMPLEMENTED", "unknown method"));
    await ui.press("3");
    await ui.waitFor((x) => x.includes("Live usage unavailable: this sidecar has no WatchUsage"));
    expect(api.openStreams).to.have.length(0);
  });

  it("asks an account-scoped token's stream unfiltered (the server scopes it)", async () => {
    const api = new FakeAdminApi({ keys: sampleKeys(), who: { tokenId: "tok_a", accountId: "default" } });
    ui = await streaming(api);
    expect(api.streams[0]?.filter).to.deep.equal({});
  });

  const sizes = [
    { columns: 80, rows: 24 },
    { columns: 100, rows: 30 },
    { columns: 160, rows: 50 },
  ];
  for (const size of sizes) {
    it(`fits the Usage view in ${size.columns}×${size.rows}`, async () => {
      const api = new FakeAdminApi({ keys: sampleKeys() });
      ui = await streaming(api, size);
      for (let i = 0; i < 70; i++) {
        const ev = traffic(api.keys, i);
        if (i % 10 === 0) ev.alerts.push({ kind: "key_quota", targetId: "k", percent: 50, message: `alert ${i} ${"x".repeat(150)}`, expiresAt: undefined });
        api.emit(ev);
      }
      await ui.press("3");
      const f = await ui.waitFor((x) => x.includes("Last 60 s"));
      const lines = f.split("\n");
      for (const l of lines) expect([...l].length, l).to.be.at.most(size.columns);
      expect(lines.length).to.be.at.most(size.rows - 1);
      for (const want of ["Last 1 s", "Denies/s", "Top keys by spend", "alpha", "Groups", "Alerts and key events", "alert 60"]) expect(f).to.include(want);
      expect(lines.at(-1)).to.include("m metric");
    });
  }
});
