// The Redis engine (fleet mode, issue 15) runs the storage contract unchanged against one Redis
// and against a 3-master Redis Cluster the test creates, each test in its own key prefix.
// Peers are second RedisStores on the same Redis and prefix (another sidecar); `follow` is a
// peer's subscription to the change feed.
import { randomBytes } from "node:crypto";
import { expect } from "chai";
import { StoreUnavailableError } from "../../src/domain/errors.js";
import { generateKeySecret, hashSecret, hashSecretBytes } from "../../src/keys/secrets.js";
import { RedisStore } from "../../src/store/redis/redisStore.js";
import { ConsumeService } from "../../src/service/consume.js";
import { cmpId } from "../../src/store/redis/feed.js";
import { RedisKeys } from "../../src/store/redis/keys.js";
import type { ChangeBatch, Store } from "../../src/store/types.js";
import { requireRedis, startRedis, startRedisCluster } from "../helpers/redis.js";
import { makeKey, runStoreContract, type StoreHarness } from "./store.contract.js";

export const NOW = Date.UTC(2026, 10, 27, 12, 0, 0);

/** A harness on the Redis at `url()`: every fresh store gets its own prefix. */
export function redisHarness(url: () => string): () => Promise<StoreHarness> {
  return async () => {
    const clock = () => NOW;
    const open: RedisStore[] = [];
    const prefixOf = new WeakMap<Store, string>();
    const openAt = async (prefix: string): Promise<RedisStore> => {
      const s = new RedisStore({ url: url(), prefix, clock, callTimeoutMs: 2000, leaseMs: Number(process.env["AISA_TEST_REDIS_LEASE_MS"] ?? 0) });
      open.push(s);
      await s.open(clock());
      prefixOf.set(s, prefix);
      return s;
    };
    const followers = new Map<Store, { last: string }>();
    return {
      fresh: () => openAt(`t${randomBytes(6).toString("hex")}:`),
      async reopen(store) {
        await store.close();
        return openAt(prefixOf.get(store)!);
      },
      peer: (store) => openAt(prefixOf.get(store)!),
      async follow(store, apply: (batch: ChangeBatch) => void) {
        const peer = await openAt(prefixOf.get(store)!);
        const seen = { last: peer.changes.position() };
        followers.set(store, seen);
        const stop = peer.changes.subscribe(seen.last, (b) => {
          seen.last = b.position;
          apply(b);
        });
        return () => {
          stop();
          void peer.close();
        };
      },
      async caughtUp(store) {
        const seen = followers.get(store);
        if (!seen) return;
        const want = store.changes.position();
        for (let i = 0; i < 300 && cmpId(seen.last, want) < 0; i++) await new Promise((r) => setTimeout(r, 10));
      },
      async cleanup() {
        await Promise.all(open.map((s) => s.close()));
      },
    };
  };
}

describe("RedisStore on one Redis", function () {
  this.timeout(30_000);
  let server: Awaited<ReturnType<typeof startRedis>> | undefined;
  before(async function () {
    requireRedis(this);
    server = await startRedis();
  });
  after(async () => {
    await server?.cleanup();
  });
  runStoreContract("RedisStore, one Redis", redisHarness(() => server!.url));
});

describe("RedisStore on a 3-master Redis Cluster", function () {
  this.timeout(60_000);
  let cluster: Awaited<ReturnType<typeof startRedisCluster>> | undefined;
  before(async function () {
    requireRedis(this);
    cluster = await startRedisCluster();
  });
  after(async () => {
    await cluster?.cleanup();
  });
  runStoreContract("RedisStore, Redis Cluster", redisHarness(() => cluster!.url));
});

describe("RedisStore: a fleet of stores on one Redis", function () {
  this.timeout(30_000);
  let server: Awaited<ReturnType<typeof startRedis>> | undefined;
  let now = NOW;
  const clock = () => now;
  let stores: RedisStore[] = [];
  const actor = { actor: "operator", action: "Test", target: "t" };

  before(async function () {
    requireRedis(this);
    server = await startRedis();
  });
  after(async () => {
    await server?.cleanup();
  });
  beforeEach(() => {
    now = NOW;
  });
  afterEach(async () => {
    await Promise.all(stores.map((s) => s.close()));
    stores = [];
  });

  /** `n` stores (sidecars) on one fresh prefix. */
  async function fleet(n: number, opts: { callTimeoutMs?: number; prefix?: string } = {}): Promise<RedisStore[]> {
    const prefix = opts.prefix ?? `f${randomBytes(6).toString("hex")}:`;
    const out: RedisStore[] = [];
    for (let i = 0; i < n; i++) {
      const s = new RedisStore({ url: server!.url, prefix, clock, callTimeoutMs: opts.callTimeoutMs ?? 2000 });
      stores.push(s);
      await s.open(clock());
      out.push(s);
    }
    return out;
  }

  async function until(cond: () => boolean, what: string): Promise<void> {
    for (let i = 0; i < 300 && !cond(); i++) await new Promise((r) => setTimeout(r, 10));
    expect(cond(), what).to.equal(true);
  }

  it("a balance adjusted, an account created and a key created through A show on B (the feed carries the account counters)", async () => {
    const [a, b] = await fleet(2);
    await a!.adjustBalance("default", 12_345, actor);
    await a!.insertAccount({ id: "acct-x", name: "X", createdAt: NOW }, 77, actor);
    const k = makeKey({ accountId: "acct-x" });
    await a!.insertKey(k.record, actor);
    await until(() => b!.getAccount("default")?.counters.balance === 12_345, "default's balance on B");
    await until(() => b!.getAccount("acct-x")?.counters.balance === 77, "acct-x's balance on B");
    await until(() => b!.lookup(hashSecretBytes(k.secret), NOW)?.account?.available === 77, "the key's account as B's lookup sees it");
  });

  it("a Consume through ConsumeService is one round trip on Redis; a replay still gets its first answer after its key was deleted and its price removed", async () => {
    const [a, b] = await fleet(2);
    await a!.adjustBalance("default", 1_000_000, actor);
    await a!.setPrice({ model: "m-priced", inputPerMillion: 1_000_000, outputPerMillion: 1_000_000, perRequest: 0 }, actor);
    const k = makeKey({ quotaTotal: 100_000 });
    await a!.insertKey(k.record, actor);
    await until(() => b!.book.hasKey(k.record.id) && b!.getPrice("m-priced") !== undefined, "B has the key and the price");
    const svcA = new ConsumeService({ store: a!, clock: () => NOW });
    const svcB = new ConsumeService({ store: b!, clock: () => NOW });
    const req = { requestId: "one-trip", target: { keyId: k.record.id }, model: "m-priced", inputTokens: 300, outputTokens: 200, units: 0 };
    const before = a!.roundTrips;
    const first = await svcA.consume(req);
    expect(a!.roundTrips - before, "round trips of one Consume").to.equal(1);
    expect(first).to.deep.include({ replayed: false });
    expect(first.record.units).to.equal(500);
    // The same request through the other sidecar: the first answer, nothing charged again.
    expect(await svcB.consume(req)).to.deep.equal({ record: first.record, replayed: true });
    // Key deleted and price removed since: a replay is still answered, not refused.
    await a!.deleteKeys([k.record.id], () => {}, () => actor);
    await a!.deletePrice("m-priced", actor);
    await until(() => !b!.book.hasKey(k.record.id) && b!.getPrice("m-priced") === undefined, "B saw the delete");
    expect(await svcB.consume(req)).to.deep.equal({ record: first.record, replayed: true });
    // A new request for that key is refused as before.
    let err: unknown;
    try {
      await svcB.consume({ ...req, requestId: "after-delete" });
    } catch (e) {
      err = e;
    }
    expect((err as { code?: string }).code).to.be.oneOf(["FAILED_PRECONDITION", "NOT_FOUND"]);
    expect(b!.getAccount("default")!.counters.charged).to.equal(500);
  });

  it("two stores racing reserve on one key never over-admit: quota for exactly 25 of 2 × 40", async () => {
    const [a, b] = await fleet(2);
    await a!.adjustBalance("default", 1_000_000, actor);
    const k = makeKey({ quotaTotal: 250 });
    await a!.insertKey(k.record, actor);
    await until(() => b!.lookup(hashSecretBytes(k.secret), NOW) !== undefined, "the key reaches B");
    const race = (s: RedisStore) =>
      Array.from({ length: 40 }, async () => {
        const snap = s.lookup(hashSecretBytes(k.secret), NOW)!;
        return s.reserve({ handle: snap.handle, keyId: k.record.id, units: 10, now: NOW, ttlMs: 60_000 });
      });
    const results = await Promise.all([...race(a!), ...race(b!)]);
    expect(results.filter((r) => r.ok)).to.have.length(25);
    expect(results.filter((r) => !r.ok && r.reason === "KEY_QUOTA_EXHAUSTED")).to.have.length(55);
  });

  it("after Checks and Consumes raced through three stores, a quiet period leaves every store's book on Redis's remaining and balance (no reply overtaken by a feed entry sticks)", async () => {
    const fl = await fleet(3);
    const [a] = fl;
    await a!.adjustBalance("default", 1_000_000, actor);
    const k = makeKey({ quotaTotal: 300 });
    await a!.insertKey(k.record, actor);
    await until(() => fl.every((s) => s.book.hasKey(k.record.id)), "the key reaches every store");
    let n = 0;
    // 48 clients: Check on one store, Consume (1 or 2 units) through the next, until refused.
    await Promise.all(
      Array.from({ length: 48 }, async (_, c) => {
        for (;;) {
          const s = fl[c % 3]!;
          const r = await s.reserve({ handle: s.lookup(hashSecretBytes(k.secret), NOW)!.handle, keyId: k.record.id, units: 2, now: NOW, ttlMs: 60_000 });
          if (!r.ok) return;
          const t = fl[(c + 1) % 3]!;
          const ref = t.resolveConsumeTarget({ kind: "reservation", id: r.reservationId }, NOW)!;
          await t.consume({ requestId: `q-${c}-${n++}`, keyId: ref.keyId, reservationId: ref.reservationId, model: "m", inputTokens: 1, outputTokens: 1, units: 1 + (n % 2), now: NOW });
        }
      }),
    );
    const truth = (await a!.getKey(k.record.id))!.counters.remaining;
    const charged = 300 - truth;
    await until(() => fl.every((s) => s.book.keyCounters(k.record.id).remaining === truth && s.getAccount("default")!.counters.charged === charged), "every book on Redis's figures");
  });

  it("a key disabled through store A is refused by store B's very next reserve (whether or not B's book heard of it yet: the engine re-checks the key's state)", async () => {
    const [a, b] = await fleet(2);
    await a!.adjustBalance("default", 1000, actor);
    const k = makeKey();
    await a!.insertKey(k.record, actor);
    await until(() => b!.lookup(hashSecretBytes(k.secret), NOW) !== undefined, "the key reaches B");
    const snap = b!.lookup(hashSecretBytes(k.secret), NOW)!;
    expect(snap.key.enabled).to.equal(true);
    await a!.updateKeys([k.record.id], (c) => ({ record: { ...c.record, status: "disabled" } }), () => actor);
    const r = await b!.reserve({ handle: snap.handle, keyId: k.record.id, units: 1, now: NOW, ttlMs: 60_000 });
    expect(r).to.deep.include({ ok: false, reason: "KEY_INVALID" });
    // …and B's book catches up (the feed, or the resync the refusal started).
    await until(() => b!.lookup(hashSecretBytes(k.secret), NOW)?.key.enabled === false, "B sees the disable");
  });

  it("a key deleted or rotated (no grace) through A: B's very next Check with the old secret is refused", async () => {
    const [a, b] = await fleet(2);
    await a!.adjustBalance("default", 1000, actor);
    const k = makeKey();
    const r2 = makeKey();
    await a!.insertKey(k.record, actor);
    await a!.insertKey(r2.record, actor);
    await until(() => b!.lookup(hashSecretBytes(r2.secret), NOW) !== undefined, "the keys reach B");
    const snapK = b!.lookup(hashSecretBytes(k.secret), NOW)!;
    await a!.deleteKeys([k.record.id], () => {}, () => actor);
    await a!.updateKeys([r2.record.id], (c) => ({ record: { ...c.record, secretHash: hashSecret(generateKeySecret()), prevSecretHash: null, prevSecretExpiresAt: null } }), () => actor);
    // A snapshot B took before the delete: the engine refuses it (or B's book already dropped it).
    expect(await b!.reserve({ handle: snapK.handle, keyId: k.record.id, units: 1, now: NOW, ttlMs: 60_000 })).to.deep.include({ ok: false, reason: "KEY_INVALID" });
    // The next Check with the rotated-away secret: refused at lookup once B's book has the new record,
    // at reserve (the record's version moved on) while it has not.
    const snapR = b!.lookup(hashSecretBytes(r2.secret), NOW);
    if (snapR) expect(await b!.reserve({ handle: snapR.handle, keyId: r2.record.id, units: 1, now: NOW, ttlMs: 60_000 })).to.deep.include({ ok: false, reason: "KEY_INVALID" });
    await until(() => b!.lookup(hashSecretBytes(r2.secret), NOW) === undefined, "B drops the old secret");
  });

  it("a dead store's reservation comes back after its TTL with nobody sweeping (the next reserve's lazy sweep)", async () => {
    const [a, b] = await fleet(2);
    await a!.adjustBalance("default", 1000, actor);
    const k = makeKey({ quotaTotal: 100 });
    await a!.insertKey(k.record, actor);
    const snapA = a!.lookup(hashSecretBytes(k.secret), NOW)!;
    expect((await a!.reserve({ handle: snapA.handle, keyId: k.record.id, units: 100, now: NOW, ttlMs: 5000 })).ok).to.equal(true);
    await a!.close(); // dies holding it: nothing released, no scheduler anywhere
    await until(() => b!.lookup(hashSecretBytes(k.secret), NOW) !== undefined, "the key reaches B");
    const snapB = b!.lookup(hashSecretBytes(k.secret), NOW)!;
    expect(await b!.reserve({ handle: snapB.handle, keyId: k.record.id, units: 100, now: NOW + 4999, ttlMs: 5000 })).to.deep.include({ ok: false, reason: "KEY_QUOTA_EXHAUSTED" });
    expect((await b!.reserve({ handle: snapB.handle, keyId: k.record.id, units: 100, now: NOW + 5000, ttlMs: 5000 })).ok).to.equal(true);
  });

  it("a Consume replayed through the other store returns the first record (replayed), charged once", async () => {
    const [a, b] = await fleet(2);
    await a!.adjustBalance("default", 1000, actor);
    const k = makeKey({ quotaTotal: 500 });
    await a!.insertKey(k.record, actor);
    const snap = a!.lookup(hashSecretBytes(k.secret), NOW)!;
    const r = await a!.reserve({ handle: snap.handle, keyId: k.record.id, units: 50, now: NOW, ttlMs: 60_000 });
    const rid = r.ok ? r.reservationId : "";
    const first = await a!.consume({ requestId: "req-1", keyId: k.record.id, reservationId: rid, model: "m", inputTokens: 10, outputTokens: 20, units: 40, now: NOW + 1 });
    expect(first.replayed).to.equal(false);
    expect(first.record).to.deep.include({ reservationId: rid, keyRemaining: 460, accountBalance: 960 });
    await until(() => b!.book.hasKey(k.record.id), "the key reaches B");
    expect(await b!.findConsume("req-1")).to.deep.equal(first.record);
    // B resolves A's reservation id (it never saw it) and settles nothing twice.
    const ref = b!.resolveConsumeTarget({ kind: "reservation", id: rid }, NOW)!;
    const again = await b!.consume({ requestId: "req-1", keyId: ref.keyId, reservationId: ref.reservationId, model: "m", inputTokens: 10, outputTokens: 20, units: 40, now: NOW + 2 });
    expect(again.replayed).to.equal(true);
    expect(again.record).to.deep.equal(first.record);
    await until(() => b!.getAccount("default")!.counters.balance === 960, "B's book shows one charge");
    expect((await b!.getKey(k.record.id))!.counters).to.deep.include({ remaining: 460, used: 40 });
    const ledger: unknown[] = [];
    for await (const e of b!.scanLedger()) ledger.push(e);
    expect(ledger).to.deep.equal([first.record]);
  });

  it("a reservation opened on A is settled by a Consume through B (the engine holds it, not A's book)", async () => {
    const [a, b] = await fleet(2);
    await a!.adjustBalance("default", 100, actor);
    const k = makeKey({ quotaTotal: 100 });
    await a!.insertKey(k.record, actor);
    await until(() => b!.book.hasKey(k.record.id), "the key reaches B");
    const snap = a!.lookup(hashSecretBytes(k.secret), NOW)!;
    const r = await a!.reserve({ handle: snap.handle, keyId: k.record.id, units: 100, now: NOW, ttlMs: 60_000 });
    const ref = b!.resolveConsumeTarget({ kind: "reservation", id: r.ok ? r.reservationId : "" }, NOW)!;
    await b!.consume({ requestId: "req-x", keyId: ref.keyId, reservationId: ref.reservationId, model: "m", inputTokens: 1, outputTokens: 1, units: 30, now: NOW });
    // The 100 held are released by the settlement: 70 of quota and balance are free again at once.
    const snapB = b!.lookup(hashSecretBytes(k.secret), NOW)!;
    expect(await b!.reserve({ handle: snapB.handle, keyId: k.record.id, units: 70, now: NOW, ttlMs: 60_000 })).to.deep.include({ ok: true, keyRemaining: 0, accountBalance: 0 });
  });

  it("deleteGroup through B is refused while a key A just put in the group is unknown to B's book (the engine's records decide), and allowed once the key left it", async () => {
    const [a, b] = await fleet(2);
    await a!.insertGroup({ name: "team", description: "", ratioPpm: 1_000_000, models: [], createdAt: NOW }, actor);
    await until(() => b!.getGroup("team") !== undefined, "B has the group");
    b!.changes.stopAll(); // B's book hears nothing more
    const k = makeKey({ group: "team" });
    await a!.insertKey(k.record, actor);
    expect(b!.book.hasKey(k.record.id), "B's book has not seen the key").to.equal(false);
    let err: unknown;
    try {
      await b!.deleteGroup("team", actor);
    } catch (e) {
      err = e;
    }
    expect(err).to.include({ code: "FAILED_PRECONDITION", message: 'group "team" is used by 1 key(s); move or delete them first' });
    expect(a!.getGroup("team")).to.not.equal(undefined);
    await a!.updateKeys([k.record.id], (c) => ({ record: { ...c.record, group: "default" } }), () => actor);
    await b!.deleteGroup("team", actor);
    await until(() => a!.getGroup("team") === undefined, "A saw the delete");
  });

  it("importKeys never resets a key that exists on the engine (B's book has not seen it): ALREADY_EXISTS, its batch unwritten, the counters kept; new keys start as insertKey starts them", async () => {
    const [a, b] = await fleet(2);
    await a!.adjustBalance("default", 1000, actor);
    const k = makeKey({ quotaTotal: 500 });
    await a!.insertKey(k.record, actor);
    await a!.consume({ requestId: "spent", keyId: k.record.id, reservationId: "", model: "m", inputTokens: 1, outputTokens: 1, units: 120, now: NOW });
    const spent = (await a!.getKey(k.record.id))!.counters;
    expect(spent).to.deep.include({ remaining: 380, used: 120 });
    b!.changes.stopAll(); // B's book hears nothing more
    const fresh = makeKey({ quotaTotal: 70 });
    let err: unknown;
    try {
      await b!.importKeys([fresh.record, k.record], actor);
    } catch (e) {
      err = e;
    }
    expect(err).to.include({ code: "ALREADY_EXISTS" });
    expect((await a!.getKey(k.record.id))!.counters).to.deep.equal(spent);
    expect(await a!.getKey(fresh.record.id), "the refused batch wrote nothing").to.equal(undefined);
    expect(await b!.importKeys([fresh.record], actor)).to.equal(1);
    await until(() => a!.book.hasKey(fresh.record.id), "A has the imported key");
    expect((await a!.getKey(fresh.record.id))!.counters).to.deep.include({ remaining: 70, used: 0 });
    expect((await a!.getKey(k.record.id))!.counters).to.deep.equal(spent);
  });

  it("a reload takes the counter sequences it read: a feed entry older than the reloaded state (a peer's, landing late) leaves no stale counters", async () => {
    const prefix = `f${randomBytes(6).toString("hex")}:`;
    const [a, b] = await fleet(2, { prefix });
    const n = new RedisKeys(prefix);
    await a!.adjustBalance("default", 1000, actor);
    const k = makeKey({ quotaTotal: 100 });
    const id = k.record.id;
    await a!.insertKey(k.record, actor);
    const charge = (requestId: string, units: number) => a!.consume({ requestId, keyId: id, reservationId: "", model: "m", inputTokens: 1, outputTokens: 1, units, now: NOW });
    await charge("first", 10);
    // What the first charge's feed entry carried (key and account counters, the account's sequence).
    const [r, u, c, sq, cr, ch] = ["r:", "u:", "c:", "sq", "cr", "ch"].map((f) => server!.cli(["HGET", n.a("default"), f.endsWith(":") ? f + id : f]).trim());
    await charge("second", 5);
    await until(() => b!.book.keyCounters(id).used === 15, "B has the second charge");
    // B reloads its book: its feed connection lost (as when Redis was unreachable or trimmed the feed).
    const loads = b!.loads;
    for (const line of server!.cli(["CLIENT", "LIST"]).split("\n")) if (/ cmd=xread/.test(line)) server!.cli(["CLIENT", "KILL", "ID", /id=(\d+)/.exec(line)![1]!]);
    await until(() => b!.loads > loads, "B reloaded");
    // The first charge's counters arrive again, late, from a peer (on a cluster a peer's feed entry may land after a later commit's).
    server!.cli(["XADD", n.g("feed"), "*", "s", "peer", "kc", `${id} ${r} ${u} ${c} ${NOW}  ${sq}`, "a", "default", "ac", `${cr} ${ch} ${sq}`]);
    await a!.insertAccount({ id: "marker", name: "after the late entry", createdAt: NOW }, 0, actor);
    await until(() => b!.getAccount("marker") !== undefined, "B applied the feed past the late entry");
    expect(u).to.equal("10");
    expect(b!.book.keyCounters(id)).to.include({ used: 15, remaining: 85 });
    expect(b!.getAccount("default")!.counters).to.include({ charged: 15, balance: 985 });
  });

  it("a balance adjusted through A reaches B's book (absolute counters in the feed)", async () => {
    const [a, b] = await fleet(2);
    await a!.adjustBalance("default", 70, actor);
    await a!.adjustBalance("default", -20, actor);
    await until(() => b!.getAccount("default")!.counters.balance === 50, "B sees 50");
    expect(b!.getAccount("default")!.counters).to.deep.include({ credited: 50, charged: 0 });
  });

  it("updateKeys over keys of two accounts: one commit; the peer's book gets each key's engine counters", async () => {
    const [a, b] = await fleet(2);
    await a!.insertAccount({ id: "acme", name: "Acme", createdAt: NOW }, 100, actor);
    const k1 = makeKey({ quotaTotal: 100 });
    const k2 = makeKey({ quotaTotal: 200, accountId: "acme" });
    await a!.insertKey(k1.record, actor);
    await a!.insertKey(k2.record, actor);
    const out = await a!.updateKeys([k1.record.id, k2.record.id], (c) => ({ record: { ...c.record, name: "both" }, remainingDelta: 5 }), () => actor);
    expect(out.map((s) => s.counters.remaining)).to.deep.equal([105, 205]);
    await until(() => b!.book.hasKey(k2.record.id) && b!.book.keyCounters(k2.record.id).remaining === 205, "B has both");
    expect(b!.book.keyCounters(k1.record.id)).to.deep.include({ remaining: 105, credited: 105 });
    expect(b!.book.keyCounters(k2.record.id)).to.deep.include({ remaining: 205, credited: 205 });
  });

  it("usage buckets are summed across stores, not overwritten; each store reads back its own", async () => {
    const [a, b] = await fleet(2);
    const bucket = (units: number) => ({ gran: "m" as const, dim: "model" as const, id: "m1", start: NOW, requests: units, denied: 0, denies: {}, inputTokens: 0, outputTokens: 0, units, consumed: 0 });
    await a!.putUsageBuckets([bucket(3)]);
    await b!.putUsageBuckets([bucket(4)]);
    await a!.putUsageBuckets([bucket(5)]); // A's absolute value grew from 3 to 5
    expect((await a!.getUsageBuckets([bucket(0)]))[0]?.units).to.equal(5);
    expect((await b!.getUsageBuckets([bucket(0)]))[0]?.units).to.equal(4);
    const rows = await a!.queryUsageBuckets({ gran: "m", dim: "model", since: NOW, until: NOW + 60_000 });
    expect(rows.map((r) => [r.id, r.units, r.requests])).to.deep.equal([["m1", 9, 9]]);
    expect(await a!.pruneUsage({ m: NOW + 1, h: 0, d: 0 }, 10)).to.equal(1);
    expect(await b!.queryUsageBuckets({ gran: "m", dim: "model", since: 0, until: NOW + 60_000 })).to.deep.equal([]);
  });

  /**
   * A store with the 50 ms default deadline (the subject of the test) on a key set up through a
   * store with a long one: this machine may be busy, and only the call under test is to miss it.
   */
  async function shortDeadlineStore(): Promise<{ a: RedisStore; k: ReturnType<typeof makeKey> }> {
    const prefix = `f${randomBytes(6).toString("hex")}:`;
    const [setup] = await fleet(1, { prefix });
    await setup!.adjustBalance("default", 1000, actor);
    const k = makeKey();
    await setup!.insertKey(k.record, actor);
    const [a] = await fleet(1, { prefix, callTimeoutMs: 50 });
    return { a: a!, k };
  }

  /** A reserve through the 50 ms store once it serves again; a deadline missed on a loaded machine is retried (not the subject). */
  async function reservesAgain(a: RedisStore, k: ReturnType<typeof makeKey>): Promise<void> {
    for (let i = 0; ; i++) {
      try {
        const r = await a.reserve({ handle: a.lookup(hashSecretBytes(k.secret), NOW)!.handle, keyId: k.record.id, units: 1, now: NOW, ttlMs: 60_000 });
        expect(r.ok).to.equal(true);
        return;
      } catch (e) {
        if (!(e instanceof StoreUnavailableError) || i >= 20) throw e;
        await new Promise((r) => setTimeout(r, 50));
      }
    }
  }

  it("one missed deadline (Redis holds every client for 800 ms: CLIENT PAUSE) fails that call only: the probe finds Redis alive and the store stays SERVING", async () => {
    const { a, k } = await shortDeadlineStore();
    const health: string[] = [];
    a.onHealth((h) => health.push(h));
    const snap = a.lookup(hashSecretBytes(k.secret), NOW)!;
    // 800 ms: 16× the deadline, so the call is sent well inside the pause even on a busy machine;
    // and shorter than the probe's own deadline (max(1 s, 4 × 50 ms)), which it must meet.
    const paused = Date.now();
    await server!.pauseClients(800);
    let err: unknown;
    try {
      await a.reserve({ handle: snap.handle, keyId: k.record.id, units: 1, now: NOW, ttlMs: 60_000 });
    } catch (e) {
      err = e;
    }
    expect(err).to.be.instanceOf(StoreUnavailableError);
    await new Promise((r) => setTimeout(r, Math.max(0, paused + 800 + 500 - Date.now()))); // the pause ended; the probe answered
    expect(health).to.deep.equal([]);
    expect(a.health()).to.equal("SERVING");
    await reservesAgain(a, k);
  });

  it("a group budget shared by two stores is never over-admitted (the hold on the group's slot comes first)", async () => {
    const [a, b] = await fleet(2);
    await a!.adjustBalance("default", 1_000_000, actor);
    await a!.insertGroup({ name: "team", description: "", ratioPpm: 1_000_000, models: [], createdAt: NOW, budget: { units: 300, period: "monthly" } }, actor);
    const keys = [makeKey({ group: "team", quotaTotal: 10_000 }), makeKey({ group: "team", quotaTotal: 10_000 })];
    for (const k of keys) await a!.insertKey(k.record, actor);
    await until(() => keys.every((k) => b!.book.hasKey(k.record.id)) && b!.getGroup("team") !== undefined, "B has the group and keys");
    const race = (s: RedisStore, k: (typeof keys)[number]) =>
      Array.from({ length: 20 }, async () => {
        const snap = s.lookup(hashSecretBytes(k.secret), NOW)!;
        return s.reserve({ handle: snap.handle, keyId: k.record.id, units: 10, now: NOW, ttlMs: 60_000 });
      });
    const results = await Promise.all([...race(a!, keys[0]!), ...race(b!, keys[1]!)]);
    expect(results.filter((r) => r.ok)).to.have.length(30);
    expect(results.filter((r) => !r.ok && r.reason === "GROUP_BUDGET_EXHAUSTED")).to.have.length(10);
  });

  it("redis-server killed (kill -9) and restarted on its AOF: NOT_SERVING meanwhile, then SERVING; an acknowledged Consume survives and replays", async () => {
    const own = await startRedis();
    try {
      const s = new RedisStore({ url: own.url, prefix: "k:", clock, callTimeoutMs: 200 });
      stores.push(s);
      await s.open(clock());
      await s.adjustBalance("default", 1000, actor);
      const k = makeKey();
      await s.insertKey(k.record, actor);
      const first = await s.consume({ requestId: "acked", keyId: k.record.id, reservationId: "", model: "m", inputTokens: 1, outputTokens: 1, units: 25, now: NOW });
      await own.kill();
      let err: unknown;
      try {
        await s.consume({ requestId: "while-down", keyId: k.record.id, reservationId: "", model: "m", inputTokens: 1, outputTokens: 1, units: 1, now: NOW });
      } catch (e) {
        err = e;
      }
      expect(err).to.be.instanceOf(StoreUnavailableError);
      await until(() => s.health() === "NOT_SERVING", "not serving");
      await own.start();
      for (let i = 0; i < 100 && s.health() !== "SERVING"; i++) await new Promise((r) => setTimeout(r, 50));
      expect(s.health()).to.equal("SERVING");
      const again = await s.consume({ requestId: "acked", keyId: k.record.id, reservationId: "", model: "m", inputTokens: 1, outputTokens: 1, units: 25, now: NOW });
      expect(again).to.deep.equal({ record: first.record, replayed: true });
      expect(s.getAccount("default")!.counters.balance).to.equal(975);
    } finally {
      await Promise.all(stores.map((x) => x.close()));
      stores = [];
      await own.cleanup();
    }
  });

  it("Redis stopped (SIGSTOP): calls fail within the deadline with StoreUnavailableError and health is NOT_SERVING; SIGCONT: it recovers", async () => {
    const { a, k } = await shortDeadlineStore();
    const health: string[] = [];
    a.onHealth((h) => health.push(h));
    const snap = a.lookup(hashSecretBytes(k.secret), NOW)!;
    server!.signal("SIGSTOP");
    try {
      const t0 = Date.now();
      let err: unknown;
      try {
        await a.reserve({ handle: snap.handle, keyId: k.record.id, units: 1, now: NOW, ttlMs: 60_000 });
      } catch (e) {
        err = e;
      }
      const took = Date.now() - t0;
      expect(err).to.be.instanceOf(StoreUnavailableError);
      // At its deadline (50 ms), not when Redis comes back: scheduling slack on a loaded 2-core machine aside.
      expect(took).to.be.below(1000);
      // One missed deadline fails that call only; the PING that follows (deadline max(1 s, 4×))
      // finds Redis silent and takes the store down.
      await until(() => a.health() === "NOT_SERVING", "NOT_SERVING after the probe");
      expect(a.needsRecovery).to.equal(true);
      let consumeErr: unknown;
      try {
        await a.consume({ requestId: "during-stop", keyId: k.record.id, reservationId: "", model: "m", inputTokens: 1, outputTokens: 1, units: 1, now: NOW });
      } catch (e) {
        consumeErr = e;
      }
      expect(consumeErr).to.be.instanceOf(StoreUnavailableError);
    } finally {
      server!.signal("SIGCONT");
    }
    await until(() => a.health() === "SERVING", "serving again");
    expect(health).to.deep.equal(["NOT_SERVING", "SERVING"]);
    await reservesAgain(a, k);
  });
});
