// The live usage model, pure: ring buffers, sparkline math, rates, ranking,
// bounded memory, the alerts feed; and how key events and remaining quotas
// change the key list.
import { expect } from "chai";
import { KeyStatus } from "../../src/gen/aisa/v1/types.js";
import { DEFAULT_MONEY, formatRate, formatUnitsMoneyRate } from "../../src/display/format.js";
import { applyKeyEvents, RemainingOverlay } from "../../tui/state/liveKeys.js";
import {
  FEED_CAP,
  KEY_SERIES_CAP,
  resample,
  SecondRing,
  sparkline,
  sparkWidth,
  UsageModel,
  WINDOW_SECONDS,
} from "../../tui/state/usage.js";
import { splitRows } from "../../tui/components/UsageView.js";
import { counters, makeKey, row, T0, usageEvent } from "./fakeApi.js";

const S0 = T0 / 1000;

describe("tui: live usage model", () => {
  describe("SecondRing", () => {
    const cases: { name: string; ops: [number, number][]; end?: number; values: number[]; sum: number }[] = [
      { name: "empty", ops: [], values: [0, 0, 0, 0], sum: 0 },
      { name: "one second", ops: [[10, 5]], values: [0, 0, 0, 5], sum: 5 },
      { name: "adds within a second", ops: [[10, 5], [10, 2]], values: [0, 0, 0, 7], sum: 7 },
      { name: "a gap reads as zeros", ops: [[10, 1], [12, 3]], values: [0, 1, 0, 3], sum: 4 },
      { name: "old seconds fall out", ops: [[10, 1], [11, 2], [12, 3], [13, 4], [14, 5]], values: [2, 3, 4, 5], sum: 14 },
      { name: "a gap longer than the ring clears it", ops: [[10, 1], [11, 2], [100, 9]], values: [0, 0, 0, 9], sum: 9 },
      { name: "late seconds inside the window land in place", ops: [[10, 1], [12, 3], [11, 2]], values: [0, 1, 2, 3], sum: 6 },
      { name: "late seconds outside the window are dropped", ops: [[10, 1], [5, 50]], values: [0, 0, 0, 1], sum: 1 },
      { name: "read at a later end (series idle since)", ops: [[10, 1], [11, 2]], end: 13, values: [1, 2, 0, 0], sum: 3 },
      { name: "read far past the head", ops: [[10, 1]], end: 20, values: [0, 0, 0, 0], sum: 0 },
    ];
    for (const c of cases) {
      it(c.name, () => {
        const r = new SecondRing(4);
        for (const [s, v] of c.ops) r.add(s, v);
        const end = c.end ?? r.head;
        expect(r.values(end)).to.deep.equal(c.values);
        expect(r.sum(end)).to.equal(c.sum);
      });
    }

    it("keeps a fixed size however long it runs", () => {
      const r = new SecondRing(60);
      for (let s = 0; s < 10_000; s++) r.add(s, 1);
      expect(r.values()).to.have.length(60);
      expect(r.sum()).to.equal(60);
    });

    it("rejects a size that is not a positive integer", () => {
      expect(() => new SecondRing(0)).to.throw(RangeError);
      expect(() => new SecondRing(1.5)).to.throw(RangeError);
    });
  });

  describe("sparklines", () => {
    const cases = [
      { values: [], want: "" },
      { values: [0, 0, 0], want: "   " },
      { values: [1, 2, 3, 4, 5, 6, 7, 8], want: "▁▂▃▄▅▆▇█" },
      { values: [0, 8, 4, 0.01], want: " █▄▁" },
      { values: [5, 5, 5], want: "███" },
      { values: [-1, Number.NaN, 2], want: "  █" },
    ];
    for (const c of cases) it(`sparkline(${JSON.stringify(c.values)})`, () => expect(sparkline(c.values)).to.equal(c.want));

    it("scales to a given maximum", () => expect(sparkline([1, 2], 16)).to.equal("▁▁"));

    const resamples = [
      { values: [1, 2, 3, 4], width: 2, want: [3, 7] },
      { values: [1, 2, 3, 4], width: 4, want: [1, 2, 3, 4] },
      { values: [1, 2, 3, 4], width: 8, want: [1, 2, 3, 4] },
      { values: [1, 1, 1, 1, 1, 1], width: 4, want: [1, 2, 1, 2] },
    ];
    for (const c of resamples) {
      it(`resample to ${c.width} keeps the total`, () => {
        const got = resample(c.values, c.width);
        expect(got).to.deep.equal(c.want);
        expect(got.reduce((a, b) => a + b, 0)).to.equal(c.values.reduce((a, b) => a + b, 0));
      });
    }

    const widths = [
      { available: 200, want: 60 },
      { available: 60, want: 60 },
      { available: 59, want: 30 },
      { available: 26, want: 20 },
      { available: 14, want: 12 },
      { available: 1, want: 1 },
      { available: 0, want: 0 },
    ];
    for (const c of widths) it(`sparkWidth(${c.available}) = ${c.want}`, () => expect(sparkWidth(c.available)).to.equal(c.want));
  });

  describe("UsageModel", () => {
    const tick = (m: UsageModel, i: number, o: Parameters<typeof usageEvent>[1] = {}) => m.apply(usageEvent(T0 + i * 1000, o));

    it("computes last-second and window rates", () => {
      const m = new UsageModel();
      for (let i = 0; i < 10; i++) {
        tick(m, i, { total: counters({ requests: i + 1, denied: { KEY_DISABLED: 1 }, input: 100, output: 50, units: 1000 }) });
      }
      const s = m.snapshot();
      expect(s.covered).to.equal(10);
      expect(s.last).to.deep.equal({ requests: 10, denied: 1, tokens: 150, units: 1000 });
      expect(s.window.requests).to.equal(55 / 10);
      expect(s.window.units).to.equal(1000);
      expect(s.sums.units).to.equal(10_000);
      expect(s.reasons).to.deep.equal([{ reason: "KEY_DISABLED", count: 10, perSecond: 1 }]);
      expect(s.total).to.have.length(WINDOW_SECONDS);
      expect(s.total.slice(-3)).to.deep.equal([8, 9, 10]);
    });

    it("keeps the window to the last 60 seconds", () => {
      const m = new UsageModel();
      for (let i = 0; i < 150; i++) tick(m, i, { total: counters({ requests: i < 90 ? 100 : 1 }) });
      const s = m.snapshot();
      expect(s.covered).to.equal(60);
      expect(s.sums.requests).to.equal(60);
      expect(s.window.requests).to.equal(1);
    });

    it("averages a merged event over the seconds it covers", () => {
      const m = new UsageModel();
      const at = T0 + 10_000;
      m.apply(usageEvent(at, { total: counters({ requests: 30 }), byKey: [{ bucketStart: new Date(at - 3000), id: "k1", counters: counters({ requests: 30 }) }] }));
      expect(m.snapshot().last.requests).to.equal(10);
    });

    it("ranks top keys by spend, then by requests", () => {
      const m = new UsageModel();
      const names: Record<string, string> = { a: "alpha", b: "beta", c: "gamma", d: "delta" };
      for (let i = 0; i < 5; i++) {
        const at = T0 + i * 1000;
        m.apply(
          usageEvent(at, {
            byKey: [
              row(at, "a", counters({ requests: 1, units: 100 })),
              row(at, "b", counters({ requests: 1, units: 300 })),
              row(at, "c", counters({ requests: 9 })),
              row(at, "d", counters({ requests: 2 })),
            ],
          }),
          { nameOf: (id) => names[id] },
        );
      }
      const s = m.snapshot("units", 3);
      expect(s.topKeys.map((r) => r.name)).to.deep.equal(["beta", "alpha", "gamma"]);
      expect(s.keyCount).to.equal(4);
      expect(s.topKeys[0]?.sums.units).to.equal(1500);
      expect(s.topKeys[0]?.rates.units).to.equal(300);
      expect(s.topKeys[0]?.series.slice(-5)).to.deep.equal([300, 300, 300, 300, 300]);
    });

    it("drops keys idle for a whole window from the ranking", () => {
      const m = new UsageModel();
      m.apply(usageEvent(T0, { byKey: [row(T0, "old", counters({ requests: 5 }))] }));
      for (let i = 1; i <= 61; i++) tick(m, i, { byKey: [row(T0 + i * 1000, "new", counters({ requests: 1 }))] });
      expect(m.snapshot().topKeys.map((r) => r.id)).to.deep.equal(["new"]);
    });

    it("caps per-key series at the most active keys", () => {
      const m = new UsageModel();
      // A heavy key, then waves of one-off keys.
      for (let i = 0; i < 20; i++) {
        const at = T0 + i * 1000;
        const byKey = [row(at, "heavy", counters({ requests: 1, units: 1_000_000 }))];
        for (let j = 0; j < 150; j++) byKey.push(row(at, `k${i}-${j}`, counters({ requests: 1, units: j })));
        m.apply(usageEvent(at, { byKey }));
        expect(m.trackedKeys).to.be.at.most(KEY_SERIES_CAP);
      }
      expect(m.trackedKeys).to.equal(KEY_SERIES_CAP);
      expect(m.snapshot("units", 1).topKeys[0]?.id).to.equal("heavy");
    });

    it("takes only the most active rows of a huge second", () => {
      const m = new UsageModel();
      const byKey = Array.from({ length: 5000 }, (_, j) => row(T0, `k${j}`, counters({ units: j })));
      m.apply(usageEvent(T0, { byKey }));
      expect(m.trackedKeys).to.equal(KEY_SERIES_CAP);
      expect(m.snapshot("units", 1).topKeys[0]?.id).to.equal("k4999");
    });

    it("lists alerts and key events newest first, up to FEED_CAP", () => {
      const m = new UsageModel();
      tick(m, 0, { alerts: [{ kind: "key_quota", targetId: "k1", percent: 50, message: "key k1 (a) has used 50% of its quota", expiresAt: undefined }] });
      tick(m, 1, { keyEvents: [{ keyId: "k1", kind: "disabled", key: makeKey(1, { name: "a" }) }] });
      const added = tick(m, 2, {
        alerts: [
          { kind: "account_balance", targetId: "default", percent: 100, message: "account default has used 100%", expiresAt: undefined },
          { kind: "key_expiring", targetId: "k2", percent: 0, message: "key k2 expires in about 3 h", expiresAt: new Date(T0) },
        ],
      });
      expect(added.map((e) => e.label)).to.deep.equal(["expiring", "balance 100%"]);
      const feed = m.snapshot().feed;
      expect(feed.map((e) => e.label)).to.deep.equal(["expiring", "balance 100%", "disabled", "quota 50%"]);
      expect(feed.map((e) => e.tone)).to.deep.equal(["warn", "error", "warn", "warn"]);
      expect(feed[2]?.text).to.equal('key "a" (k1) was disabled');
      for (let i = 3; i < 300; i++) tick(m, i, { keyEvents: [{ keyId: `k${i}`, kind: "deleted", key: undefined }] });
      expect(m.snapshot().feed).to.have.length(FEED_CAP);
      expect(m.snapshot().feed[0]?.targetId).to.equal("k299");
      m.clearFeed();
      expect(m.snapshot().feed).to.have.length(0);
    });

    it("names a deleted key by what the caller knew", () => {
      const m = new UsageModel();
      const added = tick(m, 0, { keyEvents: [{ keyId: "k9", kind: "deleted", key: undefined }] });
      expect(added[0]?.text).to.equal("key k9 was deleted");
      const named = m.apply(usageEvent(T0 + 1000, { keyEvents: [{ keyId: "k9", kind: "deleted", key: undefined }] }), { nameOf: () => "nine" });
      expect(named[0]?.text).to.equal('key "nine" (k9) was deleted');
    });

    it("moves forward even when the sidecar's clock does not", () => {
      const m = new UsageModel();
      m.apply(usageEvent(T0 + 5000, { total: counters({ requests: 1 }) }));
      m.apply(usageEvent(T0, { total: counters({ requests: 2 }) }));
      expect(m.head).to.equal(S0 + 6);
      expect(m.snapshot().total.slice(-2)).to.deep.equal([1, 2]);
    });
  });

  describe("key list updates", () => {
    const k1 = makeKey(1, { updatedAt: new Date(T0) });
    const k2 = makeKey(2, { updatedAt: new Date(T0) });
    const k3 = makeKey(3, { createdAt: new Date(T0 + 5000), updatedAt: new Date(T0 + 5000), name: "new" });
    const disabled1 = { ...k1, status: KeyStatus.KEY_STATUS_DISABLED, updatedAt: new Date(T0 + 1000) };
    const stale1 = { ...k1, name: "stale", updatedAt: new Date(T0 - 1000) };
    const cases = [
      { name: "no events", events: [], want: [k1, k2], same: true },
      { name: "disabled replaces the key", events: [{ keyId: k1.id, kind: "disabled", key: disabled1 }], want: [disabled1, k2] },
      { name: "deleted removes the key", events: [{ keyId: k2.id, kind: "deleted", key: undefined }], want: [k1] },
      { name: "created adds the key first", events: [{ keyId: k3.id, kind: "created", key: k3 }], want: [k3, k1, k2] },
      { name: "an older state does not overwrite a newer one", events: [{ keyId: k1.id, kind: "updated", key: stale1 }], want: [k1, k2], same: true },
      { name: "deleting an unknown key changes nothing", events: [{ keyId: "nope", kind: "deleted", key: undefined }], want: [k1, k2], same: true },
      {
        name: "the last event of a key wins",
        events: [
          { keyId: k1.id, kind: "disabled", key: disabled1 },
          { keyId: k1.id, kind: "deleted", key: undefined },
        ],
        want: [k2],
      },
    ];
    for (const c of cases) {
      it(c.name, () => {
        const keys = [k1, k2];
        const out = applyKeyEvents(keys, c.events);
        expect(out).to.deep.equal(c.want);
        if (c.same) expect(out).to.equal(keys);
      });
    }

    it("overlays the live Remaining only on the key object it was seen against", () => {
      const limited = makeKey(1, { quota: { unlimited: false, total: "1000", remaining: "900", used: "100", reserved: "0" } });
      const unlimited = makeKey(2);
      const byId = new Map([limited, unlimited].map((k) => [k.id, k]));
      const o = new RemainingOverlay();
      o.record(
        [
          { keyId: limited.id, remaining: "400", unlimited: false, accountBalance: "0" },
          { keyId: unlimited.id, remaining: "0", unlimited: true, accountBalance: "0" },
        ],
        (id) => byId.get(id),
      );
      const live = o.apply(limited);
      expect(live.quota?.remaining).to.equal("400");
      expect(o.apply(limited)).to.equal(live); // cached: memoised rows stay memoised
      expect(o.apply(unlimited)).to.equal(unlimited);
      // The key was replaced (an edit, a reload): its own quota wins, and prune forgets the entry.
      const edited = { ...limited, quota: { unlimited: false, total: "5000", remaining: "5000", used: "0", reserved: "0" } };
      expect(o.apply(edited)).to.equal(edited);
      o.prune((id) => (id === edited.id ? edited : undefined));
      expect(o.size).to.equal(0);
    });
  });

  describe("formatting", () => {
    const rates = [
      { n: 0, want: "0" },
      { n: 0.001, want: "<0.01" },
      { n: 0.25, want: "0.25" },
      { n: 2, want: "2" },
      { n: 13.125, want: "13.1" },
      { n: 1250.4, want: "1,250" },
    ];
    for (const c of rates) it(`formatRate(${c.n})`, () => expect(formatRate(c.n)).to.equal(c.want));
    // Units per second at 500,000 units per USD: the one money rule (src/display/format.ts).
    const amounts = [
      { n: 0, want: "≈ $0.00" },
      { n: 1250, want: "≈ $0.0025" },
      { n: 617.28, want: "≈ $0.0012" },
      { n: 0.05, want: "≈ <$0.000001" },
      { n: 750_000, want: "≈ $1.50" },
      { n: -700, want: "≈ -$0.0014" },
    ];
    for (const c of amounts) it(`formatUnitsMoneyRate(${c.n})`, () => expect(formatUnitsMoneyRate(c.n, DEFAULT_MONEY)).to.equal(c.want));
  });

  describe("Usage view layout", () => {
    const cases = [
      { rows: 12, want: { keys: 5, groups: 2, feed: 5 }, has: { keys: 10, groups: 2, feed: 10 } },
      { rows: 12, want: { keys: 9, groups: 2, feed: 1 }, has: { keys: 10, groups: 2, feed: 0 } },
      { rows: 12, want: { keys: 1, groups: 1, feed: 10 }, has: { keys: 0, groups: 0, feed: 50 } },
      { rows: 2, want: { keys: 1, groups: 1, feed: 1 }, has: { keys: 5, groups: 5, feed: 5 } },
    ];
    for (const c of cases) {
      it(`splits ${c.rows} rows for ${JSON.stringify(c.has)}`, () => {
        const got = splitRows(c.rows, c.has);
        expect(got).to.deep.equal(c.want);
        expect(got.keys + got.groups + got.feed).to.equal(Math.max(3, c.rows));
      });
    }
  });
});
