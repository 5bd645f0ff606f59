// Usage history storage (issue 13 #8): buckets are indexed so that a query reads what it
// returns — a small account's query does not scan the other tenants' history — the old layout
// is migrated on open (idempotent, marker last), and every granularity has a bounded
// retention, pruned in small batches by the once-a-second tick. Reads are counted through the
// store's usageEntriesRead stat, never timed.
import { expect } from "chai";
import { Level } from "level";
import type { Principal } from "../../src/domain/types.js";
import { bucketStart, GRAN_MS, PRUNE_BATCH, UsageRecorder, zeroCounters, type Dim, type Gran } from "../../src/service/usage.js";
import { LevelStore } from "../../src/store/level/levelStore.js";
import type { UsageBucket } from "../../src/store/types.js";
import { removeDir, tempDir } from "../helpers/tmp.js";
import { makeKey } from "./store.contract.js";

const T = (iso: string) => Date.parse(iso);
const OPERATOR: Principal = { tokenId: "operator", accountId: null, readOnly: false };
const actor = { actor: "operator", action: "Test", target: "t" };

function bucket(gran: Gran, dim: Dim, id: string, start: number, over: Partial<UsageBucket> = {}): UsageBucket {
  return { gran, dim, id, start, ...zeroCounters(), requests: 1, ...over };
}

describe("usage history storage: index, migration, retention (issue 13 #8)", function () {
  this.timeout(60_000);
  let dir: string;
  let now: number;
  const clock = () => now;
  let store: LevelStore;
  const recorders: UsageRecorder[] = [];
  const recorder = (opts: Partial<ConstructorParameters<typeof UsageRecorder>[0]> = {}) => {
    const r = new UsageRecorder({ store, clock, ...opts });
    recorders.push(r);
    return r;
  };

  beforeEach(async () => {
    dir = await tempDir();
    now = T("2026-06-10T12:30:00Z");
    store = new LevelStore({ dir, clock });
    await store.open(now);
  });
  afterEach(async () => {
    for (const r of recorders.splice(0)) await r.stop().catch(() => {});
    await store.close();
    await removeDir(dir);
  });

  /** Other tenants' history: `accounts` × `keys` key rows and the account rows, hourly over the last `hours` and daily over `days`. */
  async function otherTenants(accounts: number, keys: number, hours: number, days: number): Promise<number> {
    let batch: UsageBucket[] = [];
    let n = 0;
    const put = async (b: UsageBucket) => {
      batch.push(b);
      n++;
      if (batch.length >= 5000) {
        await store.putUsageBuckets(batch);
        batch = [];
      }
    };
    for (let a = 0; a < accounts; a++) {
      const acct = `other${a}`;
      for (let h = 0; h < hours; h++) {
        const start = bucketStart("h", now) - h * GRAN_MS.h;
        await put(bucket("h", "account", acct, start));
        for (let k = 0; k < keys; k++) await put(bucket("h", "key", `key_${acct}_${k}`, start, { account: acct }));
      }
      for (let d = 0; d < days; d++) {
        const start = bucketStart("d", now) - d * GRAN_MS.d;
        await put(bucket("d", "account", acct, start));
        for (let k = 0; k < keys; k++) await put(bucket("d", "key", `key_${acct}_${k}`, start, { account: acct }));
      }
    }
    if (batch.length) await store.putUsageBuckets(batch);
    return n;
  }

  it("a small account's 24-hour query reads only its own entries, whatever the other tenants stored", async () => {
    const others = await otherTenants(40, 5, 48, 100);
    // The small account: 3 admitted requests in the last 24 h (3 hours), 2 more 3 days ago.
    const r = recorder();
    const who = { keyId: "key_small", accountId: "small", group: "g" };
    const at = [now - 30 * 60_000, now - 5 * 3_600_000, now - 20 * 3_600_000, now - 3 * 86_400_000, now - 3 * 86_400_000 - 3_600_000];
    for (const t of at) r.recordDecision("ALLOWED", who, "m1", t);
    await r.flush();

    const small: Principal = { tokenId: "tok_small", accountId: "small", readOnly: true };
    const q = async (gran: Gran, groupBy: Dim, p: Principal, since = now - 86_400_000) => {
      const before = store.usageEntriesRead;
      const res = await r.query({ gran, groupBy, since }, p);
      return { res, read: store.usageEntriesRead - before };
    };

    const byKey = await q("h", "key", small);
    expect(byKey.res.rows.map((x) => [x.id, x.counters.requests])).to.deep.equal([
      ["key_small", 1],
      ["key_small", 1],
      ["key_small", 1],
    ]);
    expect(byKey.read, `entries read of ${others} other tenants' buckets`).to.equal(3);

    const byAccount = await q("h", "account", small);
    expect(byAccount.res.total.requests).to.equal(3);
    expect(byAccount.read).to.equal(3);

    // Days: the 24-hour range overlaps today and yesterday's bucket; the key's rows there.
    const days = await q("d", "key", small);
    expect(days.res.total.requests).to.equal(3);
    expect(days.read).to.equal(days.res.rows.length);

    // An account with no history reads nothing at all.
    const empty = await q("h", "key", { tokenId: "tok_e", accountId: "empty", readOnly: true });
    expect(empty.res.rows).to.deep.equal([]);
    expect(empty.read).to.equal(0);

    // The operator's query over every account reads the asked time range only: the 24 (or 25)
    // hour buckets of each account, not the 48 hours × 40 accounts nor any day bucket.
    const all = await q("h", "account", OPERATOR);
    const inRange = all.res.rows.length;
    expect(all.read).to.equal(inRange);
    expect(inRange).to.be.within(40 * 24 + 3, 40 * 25 + 3);
  });

  it("a key filter reads the key's account range, not every key's history", async () => {
    await otherTenants(20, 5, 24, 0);
    const key = makeKey({ accountId: "default" });
    await store.insertKey(key.record, actor);
    const r = recorder();
    r.recordDecision("ALLOWED", { keyId: key.record.id, accountId: "default", group: "default" }, "m1", now - 60_000);
    await r.flush();
    const before = store.usageEntriesRead;
    const res = await r.query({ gran: "h", groupBy: "key", filter: { keyId: key.record.id } }, OPERATOR);
    expect(res.total.requests).to.equal(1);
    expect(store.usageEntriesRead - before).to.equal(1);
  });

  it("migrates the old layout on open: every bucket kept, key rows indexed by their key's account; interrupted runs resume; schema and marker last", async () => {
    const key = makeKey({ accountId: "default" });
    await store.insertKey(key.record, actor);
    await store.close();

    const h = bucketStart("h", now);
    const d = bucketStart("d", now);
    const old: UsageBucket[] = [
      bucket("h", "key", key.record.id, h, { requests: 7 }),
      bucket("h", "key", key.record.id, h - GRAN_MS.h, { requests: 2 }),
      bucket("d", "key", key.record.id, d, { requests: 9 }),
      bucket("h", "key", "key_deleted_long_ago", h, { requests: 4 }),
      bucket("h", "account", "default", h, { requests: 11 }),
      bucket("m", "group", "default", bucketStart("m", now), { requests: 3 }),
      bucket("d", "model", "m1", d, { requests: 13 }),
    ];
    const oldKey = (b: UsageBucket) => `${b.gran}|${b.dim}|${b.id}|${b.start.toString(16).padStart(12, "0")}`;
    const writeOld = async (buckets: UsageBucket[], opts: { alsoNew?: UsageBucket[] } = {}) => {
      const db = new Level<string, unknown>(`${dir}/db`, { valueEncoding: "json" });
      const usage = db.sublevel<string, unknown>("usage", { valueEncoding: "json" });
      const meta = db.sublevel<string, unknown>("meta", { valueEncoding: "json" });
      await usage.clear();
      for (const b of buckets) await usage.put(oldKey(b), b);
      // What an interrupted migration left: some buckets already moved, their old entries gone.
      // (A migration batch writes both entries of a bucket, or neither.)
      for (const b of opts.alsoNew ?? []) {
        const hex = b.start.toString(16).padStart(12, "0");
        await usage.put(`t|${b.gran}|${b.dim}|${hex}|${b.id}`, { ...b, account: "default" });
        await usage.put(`a|${b.gran}|${b.dim}|default|${hex}|${b.id}`, { ...b, account: "default" });
      }
      await meta.del("usage");
      await meta.put("schema", 2);
      await db.close();
    };
    const readRaw = async () => {
      const db = new Level<string, unknown>(`${dir}/db`, { valueEncoding: "json" });
      const keys: string[] = [];
      for await (const k of db.sublevel<string, unknown>("usage", { valueEncoding: "json" }).keys()) keys.push(k);
      const meta = db.sublevel<string, unknown>("meta", { valueEncoding: "json" });
      const out = { keys, schema: await meta.get("schema"), usage: await meta.get("usage") };
      await db.close();
      return out;
    };
    const verify = async () => {
      const all = async (gran: Gran, dim: Dim, account?: string) =>
        (await store.queryUsageBuckets({ gran, dim, account, since: 0, until: Number.MAX_SAFE_INTEGER })).map((b) => [b.id, b.start, b.requests]);
      expect(await all("h", "key")).to.deep.equal([
        [key.record.id, h - GRAN_MS.h, 2],
        [key.record.id, h, 7],
        ["key_deleted_long_ago", h, 4],
      ]);
      expect(await all("h", "key", "default")).to.deep.equal([
        [key.record.id, h - GRAN_MS.h, 2],
        [key.record.id, h, 7],
      ]);
      expect(await all("d", "key", "default")).to.deep.equal([[key.record.id, d, 9]]);
      expect(await all("h", "account", "default")).to.deep.equal([["default", h, 11]]);
      expect(await all("h", "account")).to.deep.equal([["default", h, 11]]);
      expect(await all("m", "group")).to.deep.equal([["default", bucketStart("m", now), 3]]);
      expect(await all("d", "model")).to.deep.equal([["m1", d, 13]]);
      // Through the recorder, as an account token sees it.
      const r = recorder();
      const res = await r.query({ gran: "h", groupBy: "key", since: h - GRAN_MS.h }, { tokenId: "t", accountId: "default", readOnly: true });
      expect(res.total.requests).to.equal(9);
      await r.stop();
      recorders.pop();
    };

    await writeOld(old);
    store = new LevelStore({ dir, clock });
    await store.open(now);
    await verify();
    await store.close();
    const after = await readRaw();
    expect(after.schema).to.equal(4);
    expect(after.usage).to.equal(2);
    expect(after.keys.filter((k) => !k.startsWith("t|") && !k.startsWith("a|")), "no old-layout entry left").to.deep.equal([]);
    // 7 time-ordered entries + 5 account entries (3 key rows of a known key, 1 account row… and the group/model/deleted-key rows have none).
    expect(after.keys.filter((k) => k.startsWith("t|"))).to.have.length(7);
    expect(after.keys.filter((k) => k.startsWith("a|"))).to.have.length(4);

    // Opening again changes nothing (the marker is there).
    store = new LevelStore({ dir, clock });
    await store.open(now);
    await verify();
    await store.close();
    expect((await readRaw()).keys).to.deep.equal(after.keys);

    // Interrupted migrations (no marker, schema still 2) are redone: the same result, whether
    // some new entries were written and the old ones are all still there, or the old ones of
    // the moved buckets were already gone.
    for (const leftOver of [old, old.slice(3)]) {
      await writeOld(leftOver, { alsoNew: old.slice(0, 3) });
      store = new LevelStore({ dir, clock });
      await store.open(now);
      await verify();
      await store.close();
      expect((await readRaw()).keys).to.deep.equal(after.keys);
    }
    store = new LevelStore({ dir, clock });
    await store.open(now);
  });

  it("retention: every granularity is pruned past its (configured) age, oldest first, at most PRUNE_BATCH a call", async () => {
    const retentionMs = { m: 2 * 3_600_000, h: 3 * 86_400_000, d: 10 * 86_400_000 };
    const r = recorder({ retentionMs });
    const expired: UsageBucket[] = [];
    const kept: UsageBucket[] = [];
    // 1,200 minute buckets of one key over the last 20 h: those older than 2 h expire.
    for (let i = 0; i < 1200; i++) {
      const start = bucketStart("m", now) - i * GRAN_MS.m;
      (now - start > retentionMs.m ? expired : kept).push(bucket("m", "key", "key_a", start, { account: "acct" }));
    }
    for (let i = 0; i < 6; i++) {
      const start = bucketStart("h", now) - i * GRAN_MS.d;
      (start < now - retentionMs.h ? expired : kept).push(bucket("h", "group", "g", start));
    }
    for (let i = 0; i < 15; i++) {
      const start = bucketStart("d", now) - i * GRAN_MS.d;
      (start < now - retentionMs.d ? expired : kept).push(bucket("d", "account", "acct", start));
    }
    await store.putUsageBuckets([...expired, ...kept]);
    expect(expired.length).to.be.greaterThan(PRUNE_BATCH * 2);

    const counts: number[] = [];
    for (;;) {
      const n = await r.prune();
      counts.push(n);
      if (n === 0) break;
    }
    expect(counts.every((n) => n <= PRUNE_BATCH)).to.equal(true);
    expect(counts.reduce((a, b) => a + b, 0)).to.equal(expired.length);
    const left = async (gran: Gran, dim: Dim, account?: string) => (await store.queryUsageBuckets({ gran, dim, account, since: 0, until: Number.MAX_SAFE_INTEGER })).length;
    expect(await left("m", "key")).to.equal(kept.filter((b) => b.gran === "m").length);
    expect(await left("m", "key", "acct"), "the account index pruned with it").to.equal(kept.filter((b) => b.gran === "m").length);
    expect(await left("h", "group")).to.equal(kept.filter((b) => b.gran === "h").length);
    expect(await left("d", "account")).to.equal(kept.filter((b) => b.gran === "d").length);
    expect(await left("d", "account", "acct")).to.equal(kept.filter((b) => b.gran === "d").length);

    // Time moves on (the injected clock): what was kept expires in turn.
    now += 11 * 86_400_000;
    while ((await r.prune()) > 0);
    for (const [g, dim] of [["m", "key"], ["h", "group"], ["d", "account"]] as const) expect(await left(g, dim), `${g} ${dim}`).to.equal(0);
  });

  it("the recorder's tick prunes by itself", async () => {
    const r = recorder({ retentionMs: { m: 3_600_000 }, tickMs: 10 });
    const old = Array.from({ length: 1100 }, (_, i) => bucket("m", "model", "m1", bucketStart("m", now) - (120 + i) * GRAN_MS.m));
    await store.putUsageBuckets(old);
    r.start();
    const left = async () => (await store.queryUsageBuckets({ gran: "m", dim: "model", since: 0, until: Number.MAX_SAFE_INTEGER })).length;
    while ((await left()) > 0) await new Promise((res) => setTimeout(res, 20));
    expect(await left()).to.equal(0);
  });
});
