// The Redis engine's start-up load (RedisStore #load: chunks of many accounts in flight, decoded
// straight into the book) stays exact: a sidecar that opens on a real redis-server holding
// thousands of keys over many accounts — one account larger than a load chunk, keys with refills,
// limits, lists, expiries, a rotation's grace secret, changed counters and record versions, and
// deleted keys (tombstones) — answers every live key's lookup with its counters and none of the
// deleted ones; and changes committed through another sidecar while the load runs are not lost —
// also changes that land between a chunk's two reads (the projections' HSCAN and the counters'
// HMGET: not atomic together), made there deterministically through the store's loadStep hook.
import { randomBytes } from "node:crypto";
import { expect } from "chai";
import type { KeyRecord } from "../../src/domain/types.js";
import { generateKeySecret, hashSecret, hashSecretBytes } from "../../src/keys/secrets.js";
import { RedisStore } from "../../src/store/redis/redisStore.js";
import { makeKey } from "../contract/store.contract.js";
import { requireRedis, startRedis } from "../helpers/redis.js";

const NOW = Date.UTC(2026, 10, 27, 12, 0, 0);
const actor = { actor: "operator", action: "Test", target: "t" };

/** A key with a mix of what the projection carries, by its position. */
function keyOf(account: string, i: number): { record: KeyRecord; secret: string } {
  const over: Partial<KeyRecord> = { accountId: account, name: `k ${account} ${i}`, quotaTotal: 1000 + i };
  if (i % 7 === 1) Object.assign(over, { unlimited: true, quotaTotal: 0 });
  if (i % 5 === 2) over.refill = "monthly";
  if (i % 11 === 3) over.limits = { rpm: 60, tpm: 10_000, concurrency: 3 };
  if (i % 13 === 4) Object.assign(over, { models: ["m-a", "m-b"], ips: ["10.0.0.0/8"] });
  if (i % 17 === 5) over.expiresAt = NOW + 86_400_000;
  if (i % 19 === 6) over.status = "disabled";
  if (i % 23 === 7) Object.assign(over, { prevSecretHash: hashSecret(generateKeySecret()), prevSecretExpiresAt: NOW + 3_600_000 });
  return makeKey(over);
}

describe("RedisStore load: thousands of keys over many accounts, with changes during the load", function () {
  this.timeout(120_000);
  let server: Awaited<ReturnType<typeof startRedis>> | undefined;
  const stores: RedisStore[] = [];

  before(async function () {
    requireRedis(this);
    server = await startRedis();
  });
  after(async () => {
    await Promise.all(stores.map((s) => s.close()));
    await server?.cleanup();
  });

  async function open(prefix: string): Promise<RedisStore> {
    const s = new RedisStore({ url: server!.url, prefix, clock: () => NOW, callTimeoutMs: 5000 });
    stores.push(s);
    await s.open(NOW);
    return s;
  }

  it("a sidecar opening on 6,000 keys (one account of 2,500: several chunks) answers every live key with its counters and no deleted one; changes through another sidecar during its load all arrive", async () => {
    const prefix = `L${randomBytes(5).toString("hex")}:`;
    const a = await open(prefix);
    const accounts = ["big", ...Array.from({ length: 35 }, (_, i) => `acct-${i}`)];
    const live = new Map<string, { id: string; secret: string }>();
    for (const id of accounts) {
      await a.insertAccount({ id, name: id, createdAt: NOW }, 1_000_000, actor);
      const n = id === "big" ? 2500 : 100;
      const keys = Array.from({ length: n }, (_, i) => keyOf(id, i));
      await a.importKeys(
        keys.map((k) => k.record),
        actor,
      );
      for (const k of keys) live.set(k.record.id, { id: k.record.id, secret: k.secret });
    }
    const ids = [...live.keys()];
    // Counters and record versions that are not the defaults: a quota set on every 9th key
    // (version 2), a second change on every 27th (version 3).
    const changed = ids.filter((_, i) => i % 9 === 0);
    for (let i = 0; i < changed.length; i += 200) {
      await a.updateKeys(changed.slice(i, i + 200), (c) => ({ record: { ...c.record, name: `${c.record.name}*`, updatedAt: NOW + 1 }, remainingSet: 500 + (c.record.quotaTotal % 97) }), () => actor);
    }
    const twice = ids.filter((_, i) => i % 27 === 0);
    await a.updateKeys(twice, (c) => ({ record: { ...c.record, name: `${c.record.name}+`, updatedAt: NOW + 2 }, remainingDelta: 3 }), () => actor);
    // Deleted keys leave tombstones: every 31st.
    const deleted = new Set(ids.filter((_, i) => i % 31 === 5));
    await a.deleteKeys([...deleted], () => {}, () => actor);
    for (const id of deleted) live.delete(id);

    // B opens while A keeps committing: deletes, disables, quota changes and new keys, in the
    // big account and in small ones, until B's open has returned; then one last marker change.
    const b = new RedisStore({ url: server!.url, prefix, clock: () => NOW, callTimeoutMs: 5000 });
    stores.push(b);
    let opened = false;
    const opening = b.open(NOW).finally(() => (opened = true));
    const pool = [...live.keys()].filter((id) => !changed.includes(id));
    let during = 0;
    const disabled = new Set<string>();
    while (!opened || during < 30) {
      const step = during % 4;
      const id = pool[(during * 37) % pool.length]!;
      if (step === 0 && live.has(id)) {
        await a.deleteKeys([id], () => {}, () => actor);
        live.delete(id);
        deleted.add(id);
      } else if (step === 1 && live.has(id)) {
        await a.updateKeys([id], (c) => ({ record: { ...c.record, status: "disabled", updatedAt: NOW + 3 } }), () => actor);
        disabled.add(id);
      } else if (step === 2 && live.has(id)) {
        await a.updateKeys([id], (c) => ({ record: { ...c.record, updatedAt: NOW + 4 }, remainingSet: 4242 }), () => actor);
      } else {
        const k = keyOf(during % 2 === 0 ? "big" : "acct-3", 10_000 + during);
        await a.insertKey(k.record, actor);
        live.set(k.record.id, { id: k.record.id, secret: k.secret });
      }
      during++;
    }
    await opening;
    await a.adjustBalance("acct-0", 31_337, actor);
    for (let i = 0; i < 500 && b.getAccount("acct-0")?.counters.balance !== 1_000_000 + 31_337; i++) await new Promise((r) => setTimeout(r, 10));
    expect(b.getAccount("acct-0")?.counters.balance, "the marker change reached B").to.equal(1_000_000 + 31_337);

    // B's book equals A's (the writer's, which applied every commit's engine values), key by key.
    expect(b.book.index.size).to.equal(live.size);
    expect(b.book.dump()).to.deep.equal(a.book.dump());
    expect(b.book.groupKeyCounts()).to.deep.equal(a.book.groupKeyCounts());
    // Every live key answers its lookup with its own id and counters; no deleted key answers.
    for (const { id, secret } of live.values()) {
      const snap = b.lookup(hashSecretBytes(secret), NOW);
      expect(snap?.key.id, `key ${id}`).to.equal(id);
      const want = a.book.keyCounters(id);
      expect(b.book.keyCounters(id), `counters of ${id}`).to.deep.equal(want);
      if (disabled.has(id)) expect(snap!.key.enabled, `${id} disabled during the load`).to.equal(false);
    }
    for (const id of deleted) expect(b.book.hasKey(id), `deleted key ${id}`).to.equal(false);
    // B re-checks each key's record version with Redis on reserve: a version B missed would refuse
    // a valid key (KEY_INVALID). One reserve per changed key (the quota set, versions 2 and 3) passes.
    for (const id of changed.filter((x) => live.has(x) && !disabled.has(x)).slice(0, 40)) {
      const snap = b.lookup(hashSecretBytes(live.get(id)!.secret), NOW)!;
      if (!snap.key.enabled || (snap.key.expiresAt !== null && snap.key.expiresAt <= NOW)) continue;
      const r = await b.reserve({ handle: snap.handle, keyId: id, units: 1, now: NOW, ttlMs: 60_000 });
      expect(r.ok, `reserve on ${id}`).to.equal(true);
    }
  });

  it("changes committed between a chunk's two reads (projections, then counters) — deletes, counter and record changes, new keys — all arrive: the loaded book equals the writer's key by key", async () => {
    const prefix = `S${randomBytes(5).toString("hex")}:`;
    const a = await open(prefix);
    const accounts = ["big", "acct-0", "acct-1", "acct-2"];
    const live = new Map<string, string>();
    for (const id of accounts) {
      await a.insertAccount({ id, name: id, createdAt: NOW }, 1_000_000, actor);
      const keys = Array.from({ length: id === "big" ? 2500 : 60 }, (_, i) => keyOf(id, i));
      await a.importKeys(
        keys.map((k) => k.record),
        actor,
      );
      for (const k of keys) live.set(k.record.id, k.secret);
    }
    // In every chunk, between its HSCAN and its HMGET, A (the writer) deletes the chunk's first
    // key, sets the second's remaining, disables the third (a record change: version + 1) with a
    // quota change, charges nothing but moves the fourth's counters by a delta, and adds a key.
    const deleted = new Set<string>();
    const touched = new Set<string>();
    let steps = 0;
    let added = 0;
    const b = new RedisStore({
      url: server!.url,
      prefix,
      clock: () => NOW,
      callTimeoutMs: 5000,
      loadStep: async (account, ids) => {
        steps++;
        const [d, r, x, q] = ids.filter((id) => live.has(id) && !touched.has(id));
        if (d) {
          await a.deleteKeys([d], () => {}, () => actor);
          live.delete(d);
          deleted.add(d);
        }
        if (r) await a.updateKeys([r], (c) => ({ record: { ...c.record, updatedAt: NOW + 1 }, remainingSet: 777 }), () => actor);
        if (x) await a.updateKeys([x], (c) => ({ record: { ...c.record, status: "disabled", quotaTotal: c.record.quotaTotal + 5, updatedAt: NOW + 2 } }), () => actor);
        if (q) await a.updateKeys([q], (c) => ({ record: { ...c.record, updatedAt: NOW + 3 }, remainingDelta: -11 }), () => actor);
        for (const id of [r, x, q]) if (id) touched.add(id);
        const k = keyOf(account, 20_000 + added++);
        await a.insertKey(k.record, actor);
        live.set(k.record.id, k.secret);
      },
    });
    stores.push(b);
    await b.open(NOW);
    expect(steps, "the big account loads in several chunks").to.be.greaterThan(accounts.length);
    await a.adjustBalance("acct-0", 4242, actor);
    for (let i = 0; i < 500 && b.getAccount("acct-0")?.counters.balance !== 1_000_000 + 4242; i++) await new Promise((r) => setTimeout(r, 10));
    expect(b.getAccount("acct-0")?.counters.balance, "the marker change reached B").to.equal(1_000_000 + 4242);

    expect(b.book.index.size).to.equal(live.size);
    expect(b.book.dump()).to.deep.equal(a.book.dump());
    expect(b.book.groupKeyCounts()).to.deep.equal(a.book.groupKeyCounts());
    for (const id of deleted) expect(b.book.hasKey(id), `deleted key ${id}`).to.equal(false);
    for (const id of touched) expect(b.book.keyCounters(id), `counters of ${id}`).to.deep.equal(a.book.keyCounters(id));
    // The record versions B holds are Redis's: a reserve on every changed key that is still
    // enabled passes (a stale version would be KEY_INVALID).
    let reserved = 0;
    for (const id of touched) {
      const snap = b.lookup(hashSecretBytes(live.get(id)!), NOW)!;
      expect(snap.key.id).to.equal(id);
      if (!snap.key.enabled || (snap.key.expiresAt !== null && snap.key.expiresAt <= NOW)) continue;
      const r = await b.reserve({ handle: snap.handle, keyId: id, units: 1, now: NOW, ttlMs: 60_000 });
      expect(r.ok, `reserve on ${id}`).to.equal(true);
      reserved++;
    }
    expect(reserved).to.be.greaterThan(0);
  });

  it("hashes shrunk mid-scan (a peer deletes most of an account's keys between two chunks) make HSCAN return keys twice: each is loaded once, the group counts equal the writer's", async () => {
    // Redis resizes a hash's table down when it falls under 10 % full (the fields move to the smaller
    // table step by step, one per write to the hash); HSCAN's cursor, continued on the smaller table,
    // returns again the fields of the bucket group it was in the middle of (a few, or none: the hash
    // seed is random per redis-server). Eight accounts of 1,100 keys (two chunks each) give it eight
    // chances per load (~2 keys twice per account); a load where no key came twice is redone.
    const accounts = Array.from({ length: 8 }, (_, i) => `acct-${i}`);
    let dups = 0;
    for (let attempt = 0; attempt < 3 && dups === 0; attempt++) {
      const prefix = `D${randomBytes(5).toString("hex")}:`;
      const a = await open(prefix);
      await a.insertGroup({ name: "team", description: "", ratioPpm: 1_000_000, models: [], createdAt: NOW }, actor);
      const idsOf = new Map<string, string[]>();
      for (const acct of accounts) {
        await a.insertAccount({ id: acct, name: acct, createdAt: NOW }, 1_000_000, actor);
        const keys = Array.from({ length: 1100 }, (_, i) => makeKey({ accountId: acct, name: `k ${i}`, group: i % 2 ? "team" : "default" }).record);
        await a.importKeys(keys, actor);
        idsOf.set(acct, keys.map((k) => k.id));
      }
      const sightings = new Map<string, number>();
      const shrunk = new Set<string>();
      const b = new RedisStore({
        url: server!.url,
        prefix,
        clock: () => NOW,
        callTimeoutMs: 5000,
        loadStep: async (account, ids) => {
          for (const id of ids) sightings.set(id, (sightings.get(id) ?? 0) + 1);
          if (shrunk.has(account)) return;
          shrunk.add(account);
          // Keep the last 200 keys this chunk saw (of 1,100 in a 2,048-bucket table: the buckets just
          // before the cursor), and rename them: writes to the hash, each a step of its move to the
          // smaller table.
          const kept = new Set(ids.slice(-200));
          const gone = idsOf.get(account)!.filter((id) => !kept.has(id));
          for (let i = 0; i < gone.length; i += 500) await a.deleteKeys(gone.slice(i, i + 500), () => {}, () => actor);
          await a.updateKeys([...kept], (c) => ({ record: { ...c.record, name: `${c.record.name}*`, updatedAt: NOW + 1 } }), () => actor);
        },
      });
      stores.push(b);
      await b.open(NOW);
      dups += [...sightings.values()].filter((n) => n > 1).length;
      await a.adjustBalance("acct-0", 1, actor);
      for (let i = 0; i < 500 && b.getAccount("acct-0")?.counters.balance !== 1_000_001; i++) await new Promise((r) => setTimeout(r, 10));
      expect(b.getAccount("acct-0")?.counters.balance, "the marker change reached B").to.equal(1_000_001);
      expect(a.book.index.size).to.equal(accounts.length * 200);
      expect(b.book.index.size).to.equal(accounts.length * 200);
      expect(b.book.groupKeyCounts()).to.deep.equal(a.book.groupKeyCounts());
      expect(Object.values(b.book.groupKeyCounts()).reduce((x, y) => x + y, 0)).to.equal(accounts.length * 200);
      expect(b.book.dump()).to.deep.equal(a.book.dump());
    }
    expect(dups, "HSCAN returned some key twice").to.be.greaterThan(0);
    console.log(`      HSCAN over shrunk hashes: ${dups} key(s) returned twice; each loaded once, group counts equal the writer's`);
  });
});
