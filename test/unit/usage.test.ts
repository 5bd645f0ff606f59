// Usage aggregation: bucket math, thresholds, query source selection, live
// event merging and the write pump, and the recorder against a real LevelStore
// in a temp dir with an injected clock (flush, restart mid-bucket, late
// records after eviction, pruning).
import { expect } from "chai";
import { Writable } from "node:stream";
import { SidecarError } from "../../src/domain/errors.js";
import type { Principal } from "../../src/domain/types.js";
import {
  bucketStart,
  crossedThresholds,
  mergeLiveEvents,
  quotaLevel,
  sourceDim,
  UsageRecorder,
  zeroCounters,
  type Dim,
  type LiveEvent,
  type UsageCounters,
  type UsageFilter,
} from "../../src/service/usage.js";
import { randomBytes } from "node:crypto";
import { SecretBox } from "../../src/keys/secrets.js";
import { AdminService } from "../../src/service/admin.js";
import { LevelStore } from "../../src/store/level/levelStore.js";
import type { ConsumeRecord } from "../../src/store/types.js";
import { LivePump } from "../../src/transport/usage.js";
import { PRUNE_BATCH, PRUNE_IDLE_MS } from "../../src/service/usage/history.js";
import { removeDir, tempDir } from "../helpers/tmp.js";

const T = (iso: string) => Date.parse(iso);
const OPERATOR: Principal = { tokenId: "operator", accountId: null, readOnly: false };
const counters = (p: Partial<UsageCounters>): UsageCounters => ({ ...zeroCounters(), ...p });

describe("usage: bucket math", () => {
  const cases: [string, "m" | "h" | "d", string, string][] = [
    ["minute, mid-minute", "m", "2026-03-29T01:30:45.123Z", "2026-03-29T01:30:00.000Z"],
    ["minute, on the boundary", "m", "2026-03-29T01:31:00.000Z", "2026-03-29T01:31:00.000Z"],
    ["minute, 1 ms before the boundary", "m", "2026-03-29T01:30:59.999Z", "2026-03-29T01:30:00.000Z"],
    ["hour", "h", "2026-03-29T01:59:59.999Z", "2026-03-29T01:00:00.000Z"],
    ["day is the UTC day (a European DST switch changes nothing)", "d", "2026-03-29T23:59:59.999Z", "2026-03-29T00:00:00.000Z"],
    ["day, leap day", "d", "2028-02-29T12:00:00.000Z", "2028-02-29T00:00:00.000Z"],
    ["day, on midnight", "d", "2027-01-01T00:00:00.000Z", "2027-01-01T00:00:00.000Z"],
    ["before 1970", "h", "1969-12-31T23:30:00.000Z", "1969-12-31T23:00:00.000Z"],
  ];
  for (const [name, gran, at, want] of cases) {
    it(`bucketStart ${name}`, () => {
      expect(new Date(bucketStart(gran, T(at))).toISOString()).to.equal(want);
    });
  }

  const levels: [number, number, number][] = [
    [0, 1000, 0],
    [499, 1000, 0],
    [500, 1000, 50],
    [799, 1000, 50],
    [800, 1000, 80],
    [999, 1000, 80],
    [1000, 1000, 100],
    [1500, 1000, 100], // overdraft
    [1, 3, 0], // 33 %
    [2, 3, 50], // 66 %: exact integer comparison
    [0, 0, 100], // a zero quota is spent from the start
    [-5, 1000, 0], // refilled above the total
  ];
  for (const [used, total, want] of levels) {
    it(`quotaLevel(${used}, ${total}) = ${want}`, () => expect(quotaLevel(used, total)).to.equal(want));
  }

  const crossings: [number, number, number[]][] = [
    [0, 50, [50]],
    [0, 100, [50, 80, 100]],
    [50, 80, [80]],
    [80, 80, []],
    [100, 50, []], // refilled: nothing is raised going down
  ];
  for (const [from, to, want] of crossings) {
    it(`crossedThresholds(${from}, ${to}) = [${want.join(", ")}]`, () => expect(crossedThresholds(from, to)).to.deep.equal(want));
  }
});

describe("usage: which stored dimension answers a query", () => {
  const f = (p: Partial<UsageFilter>): UsageFilter => ({ keyId: "", accountId: "", group: "", model: "", ...p });
  const ok: [string, Partial<UsageFilter>, Dim, Dim][] = [
    ["no filter, by key", {}, "key", "key"],
    ["no filter, by account", {}, "account", "account"],
    ["no filter, by group", {}, "group", "group"],
    ["no filter, by model", {}, "model", "model"],
    ["a model, by model", { model: "m" }, "model", "model"],
    ["a key, by account", { keyId: "k" }, "account", "key"],
    ["a key, by group", { keyId: "k" }, "group", "key"],
    ["an account, by account", { accountId: "a" }, "account", "account"],
    ["an account, by group: key rows", { accountId: "a" }, "group", "key"],
    ["a group, by group", { group: "g" }, "group", "group"],
    ["a group, by account: key rows", { group: "g" }, "account", "key"],
    ["an account and a group, by key", { accountId: "a", group: "g" }, "key", "key"],
  ];
  for (const [name, filter, by, want] of ok) {
    it(`${name} → ${want} rows`, () => expect(sourceDim(f(filter), by)).to.equal(want));
  }
  const bad: [string, Partial<UsageFilter>, Dim, string][] = [
    ["a model and an account", { model: "m", accountId: "a" }, "model", "filter.model"],
    ["a model, by key", { model: "m" }, "key", "group_by"],
    ["an account, by model", { accountId: "a" }, "model", "group_by"],
    ["a key, by model", { keyId: "k" }, "model", "group_by"],
  ];
  for (const [name, filter, by, field] of bad) {
    it(`${name}: INVALID_ARGUMENT naming ${field}`, () => {
      expect(() => sourceDim(f(filter), by))
        .to.throw(SidecarError)
        .that.satisfies((e: SidecarError) => e.code === "INVALID_ARGUMENT" && e.publicMessage.startsWith(field));
    });
  }
});

function liveEvent(from: number, at: number, p: Partial<LiveEvent> = {}): LiveEvent {
  return { from, at, total: zeroCounters(), byKey: [], byGroup: [], keyEvents: [], alerts: [], remaining: [], ...p };
}

describe("usage: merging live events (backpressure)", () => {
  it("sums counters and rows, appends events and alerts, keeps the latest remaining", () => {
    const a = liveEvent(1000, 2000, {
      total: counters({ requests: 2, denied: 1, denies: { RATE_LIMITED: 1 } }),
      byKey: [{ id: "k1", counters: counters({ requests: 2 }) }],
      byGroup: [{ id: "g", counters: counters({ requests: 2 }) }],
      keyEvents: [{ keyId: "k1", kind: "disabled" }],
      remaining: [{ keyId: "k1", remaining: 10, unlimited: false, accountBalance: 100 }],
    });
    const b = liveEvent(2000, 3000, {
      total: counters({ requests: 1, denied: 2, denies: { RATE_LIMITED: 1, KEY_DISABLED: 1 }, units: 7 }),
      byKey: [
        { id: "k1", counters: counters({ requests: 1 }) },
        { id: "k2", counters: counters({ units: 7 }) },
      ],
      alerts: [{ kind: "key_quota", targetId: "k2", percent: 50, message: "", expiresAt: null }],
      remaining: [{ keyId: "k1", remaining: 3, unlimited: false, accountBalance: 93 }],
    });
    const m = mergeLiveEvents(a, b);
    expect([m.from, m.at]).to.deep.equal([1000, 3000]);
    expect(m.total).to.deep.equal(counters({ requests: 3, denied: 3, denies: { RATE_LIMITED: 2, KEY_DISABLED: 1 }, units: 7 }));
    expect(m.byKey).to.deep.equal([
      { id: "k1", counters: counters({ requests: 3 }) },
      { id: "k2", counters: counters({ units: 7 }) },
    ]);
    expect(m.byGroup).to.deep.equal([{ id: "g", counters: counters({ requests: 2 }) }]);
    expect(m.keyEvents.map((e) => e.kind)).to.deep.equal(["disabled"]);
    expect(m.alerts.map((x) => x.percent)).to.deep.equal([50]);
    expect(m.remaining).to.deep.equal([{ keyId: "k1", remaining: 3, unlimited: false, accountBalance: 93 }]);
    // Inputs are not modified.
    expect(a.total.requests).to.equal(2);
    expect(a.byKey[0]!.counters.requests).to.equal(2);
  });

  it("LivePump: while a write has not drained, later seconds merge into one message", async () => {
    const written: { total?: { requests: string } }[] = [];
    const held: (() => void)[] = [];
    const out = new Writable({
      objectMode: true,
      highWaterMark: 1,
      write(chunk, _enc, cb) {
        written.push(chunk);
        held.push(cb);
      },
    });
    const pump = new LivePump(out, () => ({ effectiveModels: [], modelsRestricted: false, groupModels: [], expired: false }));
    const second = (i: number) => liveEvent(i * 1000, (i + 1) * 1000, { total: counters({ requests: i }) });
    pump.push(second(1));
    expect(pump.blocked).to.equal(true);
    pump.push(second(2));
    pump.push(second(3));
    pump.push(second(4));
    expect(written.map((w) => w.total!.requests)).to.deep.equal(["1"]);
    held.shift()!(); // the client reads: 'drain'
    await new Promise((r) => setImmediate(r));
    expect(written.map((w) => w.total!.requests)).to.deep.equal(["1", "9"]);
    held.shift()!();
    await new Promise((r) => setImmediate(r));
    pump.push(second(5));
    expect(written.map((w) => w.total!.requests)).to.deep.equal(["1", "9", "5"]);
    pump.stop();
    pump.push(second(6));
    held.shift()!();
    await new Promise((r) => setImmediate(r));
    expect(written).to.have.length(3);
  });
});

describe("usage: the recorder on a real LevelStore", function () {
  this.timeout(20_000);
  let dir: string;
  let store: LevelStore;
  let now: number;
  const clock = () => now;
  const open: UsageRecorder[] = [];
  const recorder = () => {
    const r = new UsageRecorder({ store, clock });
    open.push(r);
    return r;
  };
  const consumeRec = (p: Partial<ConsumeRecord>): ConsumeRecord => ({
    requestId: "r",
    keyId: "key_a",
    accountId: "acct",
    group: "g",
    model: "m1",
    inputTokens: 0,
    outputTokens: 0,
    units: 0,
    at: now,
    reservationId: "",
    keyRemaining: 0,
    keyUnlimited: true,
    accountBalance: 0,
    ...p,
  });
  const who = { keyId: "key_a", accountId: "acct", group: "g" };
  const stored = async (gran: "m" | "h" | "d", dim: Dim, id: string) => store.queryUsageBuckets({ gran, dim, id, since: 0, until: Number.MAX_SAFE_INTEGER });

  beforeEach(async () => {
    dir = await tempDir();
    now = T("2026-05-04T10:00:59.900Z");
    store = new LevelStore({ dir, clock });
    await store.open(now);
  });
  afterEach(async () => {
    for (const r of open.splice(0)) await r.stop().catch(() => {});
    await store.close();
    await removeDir(dir);
  });

  it("aggregates into minute/hour/day buckets per dimension; queries merge memory before and after the flush", async () => {
    const r = recorder();
    r.recordDecision("ALLOWED", who, "m1");
    r.recordConsume(consumeRec({ inputTokens: 10, outputTokens: 5, units: 100 }));
    now += 200; // 10:01:00.100 — the next minute, the same hour
    r.recordDecision("RATE_LIMITED", who, "m1");
    r.recordDecision("KEY_INVALID", { keyId: "", accountId: "", group: "" }, "m1"); // unknown key: model row only
    const q = (groupBy: Dim, gran: "m" | "h" | "d", filter: Partial<UsageFilter> = {}) => r.query({ groupBy, gran, filter, since: T("2026-05-04T00:00:00Z") }, OPERATOR);
    const check = async () => {
      const m = await q("key", "m");
      expect(m.rows.map((x) => [new Date(x.start).toISOString(), x.id, x.counters])).to.deep.equal([
        ["2026-05-04T10:00:00.000Z", "key_a", counters({ requests: 1, inputTokens: 10, outputTokens: 5, units: 100, consumed: 1 })],
        ["2026-05-04T10:01:00.000Z", "key_a", counters({ denied: 1, denies: { RATE_LIMITED: 1 } })],
      ]);
      const h = await q("account", "h");
      expect(h.rows.map((x) => [x.id, x.counters])).to.deep.equal([
        ["acct", counters({ requests: 1, denied: 1, denies: { RATE_LIMITED: 1 }, inputTokens: 10, outputTokens: 5, units: 100, consumed: 1 })],
      ]);
      const model = await q("model", "d");
      expect(model.total).to.deep.equal(counters({ requests: 1, denied: 2, denies: { RATE_LIMITED: 1, KEY_INVALID: 1 }, inputTokens: 10, outputTokens: 5, units: 100, consumed: 1 }));
      const byGroup = await q("group", "h", { accountId: "acct" });
      expect(byGroup.rows.map((x) => x.id)).to.deep.equal(["g"]);
      expect((await q("key", "d", { accountId: "other" })).rows).to.deep.equal([]);
    };
    await check(); // from memory
    expect(await stored("h", "key", "key_a")).to.deep.equal([]);
    await r.flush();
    expect((await stored("h", "key", "key_a")).map((b) => b.requests + b.denied)).to.deep.equal([2]);
    await check(); // stored + memory, not doubled
    // Dimensions with an empty id are never written.
    expect(await store.queryUsageBuckets({ gran: "d", dim: "key", id: "", since: 0, until: Number.MAX_SAFE_INTEGER })).to.deep.equal([]);
  });

  it("denies naming a model with no price count under (unpriced); admitted requests keep their model", async () => {
    const r = new UsageRecorder({ store, clock, isPriced: (m) => m === "m1" });
    open.push(r);
    r.recordDecision("KEY_INVALID", { keyId: "", accountId: "", group: "" }, "made-up-1");
    r.recordDecision("MODEL_NOT_PRICED", who, "made-up-2");
    r.recordDecision("KEY_INVALID", { keyId: "", accountId: "", group: "" }, "m1");
    r.recordDecision("ALLOWED", who, "m2"); // admitted (a default price): billed, so named
    const q = await r.query({ groupBy: "model", gran: "d" }, OPERATOR);
    expect(q.rows.map((x) => [x.id, x.counters.requests, x.counters.denied])).to.deep.equal([
      ["(unpriced)", 0, 2],
      ["m1", 0, 1],
      ["m2", 1, 0],
    ]);
  });

  it("a restart mid-bucket neither loses nor double counts: unseeded buckets add to what is stored", async () => {
    const r1 = recorder();
    r1.recordConsume(consumeRec({ units: 100 }));
    await r1.stop(); // flushes
    now += 30; // same minute, hour and day; a new process
    const r2 = recorder();
    r2.recordConsume(consumeRec({ units: 7 }));
    // Before r2 flushes, the query adds its deltas to the stored value.
    const before = await r2.query({ gran: "m", since: now - 60_000 }, OPERATOR);
    expect(before.total.units).to.equal(107);
    await r2.flush();
    for (const gran of ["m", "h", "d"] as const) {
      for (const [dim, id] of [
        ["key", "key_a"],
        ["account", "acct"],
        ["group", "g"],
        ["model", "m1"],
      ] as const) {
        const b = await stored(gran, dim, id);
        expect(b.map((x) => [x.units, x.consumed]), `${gran}/${dim}`).to.deep.equal([[107, 2]]);
      }
    }
    // Once seeded, later flushes write absolute values from memory.
    r2.recordConsume(consumeRec({ units: 1 }));
    await r2.flush();
    expect((await stored("m", "key", "key_a")).map((x) => x.units)).to.deep.equal([108]);
    expect((await r2.query({ gran: "m", since: now - 60_000 }, OPERATOR)).total.units).to.equal(108);
  });

  it("a record landing in a bucket already evicted from memory is re-seeded, not overwritten", async () => {
    const r = recorder();
    now += 200; // 10:01:00.100: a minute that started after the recorder did (so it starts seeded)
    const at = now;
    r.recordConsume(consumeRec({ units: 5 }));
    await r.flush();
    now += 5 * 60_000; // long past the minute's end and its grace period
    r.recordConsume(consumeRec({ units: 1, at: now }));
    await r.flush(); // evicts the old minute bucket
    r.recordConsume(consumeRec({ units: 2, at })); // a late record for the old minute
    await r.flush();
    expect((await stored("m", "key", "key_a")).map((x) => [new Date(x.start).toISOString(), x.units])).to.deep.equal([
      ["2026-05-04T10:01:00.000Z", 7],
      ["2026-05-04T10:06:00.000Z", 1],
    ]);
    expect((await stored("h", "key", "key_a")).map((x) => x.units)).to.deep.equal([8]);
  });

  it("prunes minute buckets after 48 h, hour buckets after 90 days and day buckets after 2 years (defaults)", async () => {
    const r = recorder();
    r.recordConsume(consumeRec({ units: 1 }));
    await r.flush();
    now += 47 * 3_600_000;
    expect(await r.prune()).to.equal(0);
    now += 2 * 3_600_000; // 49 h
    expect(await r.prune()).to.equal(4); // the four minute buckets
    expect(await stored("m", "key", "key_a")).to.deep.equal([]);
    expect(await stored("h", "key", "key_a")).to.have.length(1);
    now += 91 * 86_400_000;
    expect(await r.prune()).to.equal(4);
    expect(await stored("d", "key", "key_a")).to.have.length(1);
    now += 640 * 86_400_000; // past 730 days
    expect(await r.prune()).to.equal(4);
    expect(await stored("d", "key", "key_a")).to.deep.equal([]);
    // The account's own index went with them: its query finds nothing.
    expect(await store.queryUsageBuckets({ gran: "d", dim: "key", account: "acct", since: 0, until: Number.MAX_SAFE_INTEGER })).to.deep.equal([]);
  });

  it("the tick prunes every second while batches come back full, then once a minute once caught up", async () => {
    const r = recorder();
    // 600 keys: 603 minute buckets (each key's, and the account's, group's and model's), more than one prune batch (PRUNE_BATCH 500).
    for (let i = 0; i < 600; i++) r.recordConsume(consumeRec({ requestId: `r${i}`, keyId: `key_${i}`, units: 1 }));
    await r.flush();
    const real = store.pruneUsage.bind(store);
    const pruned: number[] = [];
    let last: Promise<number> | undefined;
    store.pruneUsage = (before, limit) => (last = real(before, limit).then((n) => (pruned.push(n), n)));
    const tick = async (): Promise<void> => {
      last = undefined;
      r.tick();
      if (last) await last;
      await r.flush();
      await new Promise((resolve) => setImmediate(resolve)); // the tick's own .then / .finally
    };
    now += 49 * 3_600_000;
    await tick();
    expect(pruned).to.deep.equal([PRUNE_BATCH]);
    now += 1000;
    await tick();
    expect(pruned).to.deep.equal([PRUNE_BATCH, 103]);
    now += 1000;
    await tick(); // caught up: no pass for a minute
    now += PRUNE_IDLE_MS - 2000;
    await tick();
    expect(pruned).to.deep.equal([PRUNE_BATCH, 103]);
    now += 1000;
    await tick();
    expect(pruned).to.deep.equal([PRUNE_BATCH, 103, 0]);
    expect(await stored("m", "key", "key_0")).to.deep.equal([]);
  });

  it("live: a subscriber gets the second's deltas filtered, nothing is accumulated without one", async () => {
    const r = recorder();
    r.recordDecision("ALLOWED", who, "m1"); // nobody listens: not in any live event
    const got: LiveEvent[] = [];
    const off = r.subscribe({ keyId: "", accountId: "acct", group: "", model: "" }, (e) => got.push(e));
    r.recordDecision("ALLOWED", who, "m1");
    r.recordDecision("ALLOWED", { keyId: "key_b", accountId: "other", group: "g" }, "m1");
    r.recordDecision("KEY_MISSING", { keyId: "", accountId: "", group: "" }, null);
    await r.tickLive();
    expect(got).to.have.length(1);
    expect(got[0]!.total).to.deep.equal(counters({ requests: 1 }));
    expect(got[0]!.byKey.map((x) => x.id)).to.deep.equal(["key_a"]);
    off();
    expect(r.subscribers).to.equal(0);
    await r.tickLive();
    expect(got).to.have.length(1);
  });
  it("live alerts: crossings within one second, first sight after a restart of listening, re-arming after a quota raise", async () => {
    const r = recorder();
    const admin = new AdminService({ store, box: new SecretBox(randomBytes(32)), clock, operatorTokenHash: "x", events: (e) => r.keyEvent(e) });
    const acct = await admin.createAccount(OPERATOR, { id: "alerts", name: "Alerts", initialBalance: 10_000 });
    expect(acct.counters.balance).to.equal(10_000);
    const { key } = await admin.createKey(OPERATOR, { name: "k", quota: 1000 }, "alerts");
    const id = key.record.id;
    let n = 0;
    const charge = async (units: number) => {
      const out = await store.consume({ requestId: `u${++n}`, keyId: id, reservationId: "", model: "", inputTokens: 0, outputTokens: 0, units, now });
      r.recordConsume(out.record);
    };
    const got: LiveEvent[] = [];
    const listen = () => r.subscribe({ keyId: "", accountId: "alerts", group: "", model: "" }, (e) => got.push(e));
    const second = async () => {
      got.length = 0;
      await r.tickLive();
      expect(got).to.have.length(1);
      const e = got[0]!;
      return {
        alerts: e.alerts.map((a) => `${a.kind}:${a.targetId === id ? "key" : a.targetId}:${a.percent}`),
        events: e.keyEvents.map((k) => k.kind),
        remaining: e.remaining.map((x) => [x.remaining, x.accountBalance]),
      };
    };

    let off = listen();
    await charge(600);
    await charge(250); // 85 %: 50 and 80 in the same second
    expect(await second()).to.deep.equal({ alerts: ["key_quota:key:50", "key_quota:key:80"], events: [], remaining: [[150, 9150]] });
    off();
    // Listening again: the key is first seen at 85 %; only what this second crosses is raised.
    off = listen();
    await charge(50); // 90 %
    expect((await second()).alerts).to.deep.equal([]);
    await charge(150); // 105 %: exhausted (overdraft), account at 1050 of 10000
    expect(await second()).to.deep.equal({ alerts: ["key_quota:key:100"], events: ["quota_exhausted"], remaining: [[-50, 8950]] });
    await charge(1);
    expect(await second()).to.deep.equal({ alerts: [], events: [], remaining: [[-51, 8949]] });
    // Raising the quota re-arms: 1051 of 3000 used is 35 %, crossing 50 % alerts again.
    await admin.updateKey(OPERATOR, id, { quota: 3000 }, ["quota"]);
    await charge(1);
    expect(await second()).to.deep.equal({ alerts: [], events: ["updated"], remaining: [[1948, 8948]] });
    await charge(500);
    expect((await second()).alerts).to.deep.equal(["key_quota:key:50"]);
    // 3500 more: the key passes 80 and 100 % again (re-armed), the account 50 % (5052 of 10000).
    await charge(3500);
    const last = await second();
    expect(last.alerts).to.deep.equal(["key_quota:key:80", "key_quota:key:100", "account_balance:alerts:50"]);
    expect(last.events).to.deep.equal(["quota_exhausted"]);
    off();
  });
});
