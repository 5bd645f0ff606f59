// The Redis engine's batching (issue 15): the Checks and Consumes of one event-loop turn go to
// Redis as one BATCH call (per account on a cluster), each item exactly as if it ran alone after
// the ones before it. On one Redis and on a 3-master cluster: a turn of 200 reserves against a
// quota of exactly 100 admits exactly 100 in ⌈200/64⌉ calls; a batch past its deadline fails
// every item and leaves no hold once the releases ran; the same request id twice in one batch is
// charged once; the 2^53 guard refuses a Consume on Redis exactly as on the embedded store.
import { randomBytes } from "node:crypto";
import { expect } from "chai";
import { SidecarError, StoreUnavailableError } from "../../src/domain/errors.js";
import { hashSecretBytes } from "../../src/keys/secrets.js";
import { LevelStore } from "../../src/store/level/levelStore.js";
import { RedisConn, script } from "../../src/store/redis/conn.js";
import { RedisKeys } from "../../src/store/redis/keys.js";
import { BATCH_MAX, RedisStore } from "../../src/store/redis/redisStore.js";
import { BATCH } from "../../src/store/redis/scripts.js";
import type { ReserveResult, Store } from "../../src/store/types.js";
import { REDIS_TARGETS, requireRedis, type RedisTarget } from "../helpers/redis.js";
import { removeDir, tempDir } from "../helpers/tmp.js";
import { makeKey } from "./store.contract.js";

const NOW = Date.UTC(2026, 11, 6, 12);
const MAX = Number.MAX_SAFE_INTEGER;
const actor = { actor: "operator", action: "Test", target: "t" };

const targets = REDIS_TARGETS;

for (const t of targets) {
  describe(`RedisStore batching on ${t.name}`, function () {
    this.timeout(60_000);
    let target: RedisTarget | undefined;
    let stores: RedisStore[] = [];
    const clock = () => NOW;

    before(async function () {
      requireRedis(this);
      target = await t.start();
    });
    after(async () => {
      await target?.cleanup();
    });
    afterEach(async () => {
      await Promise.all(stores.map((s) => s.close()));
      stores = [];
    });

    async function open(opts: { callTimeoutMs?: number } = {}): Promise<{ store: RedisStore; prefix: string }> {
      const prefix = `b${randomBytes(6).toString("hex")}:`;
      const store = new RedisStore({ url: target!.url, prefix, clock, callTimeoutMs: opts.callTimeoutMs ?? 2000 });
      stores.push(store);
      await store.open(clock());
      // The store's change-feed subscription makes one call on the store's connection once its own
      // connection is up (the gap probe): a loaded machine got there during a test, one round trip
      // more than the test's. A peer's commit reaching the store's book means it is past that.
      const peer = new RedisStore({ url: target!.url, prefix, clock, callTimeoutMs: 2000 });
      stores.push(peer);
      await peer.open(clock());
      await peer.insertAccount({ id: "feed-live", name: "feed-live", createdAt: NOW }, 0, actor);
      await until(() => store.getAccount("feed-live") !== undefined, "the store's change feed is live");
      return { store, prefix };
    }

    /** redis-cli on the node that holds `key` (-c follows a cluster's redirect). */
    const cli = (args: string[]) => target!.nodes[0]!.cli(["-c", ...args]).trim();

    async function until(cond: () => boolean, what: string): Promise<void> {
      for (let i = 0; i < 300 && !cond(); i++) await new Promise((r) => setTimeout(r, 10));
      expect(cond(), what).to.equal(true);
    }

    it(`200 reserves in one turn against a quota of exactly 100 (keys of two accounts): exactly 100 held, in ⌈200/${BATCH_MAX}⌉ calls`, async () => {
      const { store } = await open();
      await store.adjustBalance("default", 1_000_000, actor);
      await store.insertAccount({ id: "acct-b", name: "B", createdAt: NOW }, 1_000_000, actor);
      const k1 = makeKey({ quotaTotal: 50 });
      const k2 = makeKey({ quotaTotal: 50, accountId: "acct-b" });
      await store.insertKey(k1.record, actor);
      await store.insertKey(k2.record, actor);
      const calls0 = store.roundTrips;
      const batches0 = store.batchCalls;
      const results: Promise<ReserveResult>[] = [];
      for (let i = 0; i < 200; i++) {
        const k = i % 2 === 0 ? k1 : k2;
        const snap = store.lookup(hashSecretBytes(k.secret), NOW)!;
        results.push(Promise.resolve(store.reserve({ handle: snap.handle, keyId: k.record.id, units: 1, now: NOW, ttlMs: 60_000 })));
      }
      const out = await Promise.all(results);
      expect(out.filter((r) => r.ok)).to.have.length(100);
      expect(out.filter((r) => !r.ok && r.reason === "KEY_QUOTA_EXHAUSTED")).to.have.length(100);
      // One Redis: 200 items in calls of 64; a cluster: per account (100 each → 2 calls each).
      expect(store.batchCalls - batches0).to.equal(4);
      expect(store.roundTrips - calls0).to.equal(4);
      const held = await Promise.all([k1, k2].map((k) => store.getKey(k.record.id)));
      expect(held.map((k) => k!.counters.remaining)).to.deep.equal([50, 50]);
    });

    it("Checks and Consumes of one turn, each as if alone: a settled reservation frees its units for a later item of the same batch", async () => {
      const { store } = await open();
      await store.adjustBalance("default", 1_000, actor);
      const k = makeKey({ quotaTotal: 10 });
      await store.insertKey(k.record, actor);
      const snap = store.lookup(hashSecretBytes(k.secret), NOW)!;
      const first = await store.reserve({ handle: snap.handle, keyId: k.record.id, units: 10, now: NOW, ttlMs: 60_000 });
      if (!first.ok) throw new Error(first.reason);
      const calls0 = store.roundTrips;
      // One turn: the Consume settles the 10 held for 4 (6 free again), then two Checks of 4: one fits.
      const consumed = store.consume({ requestId: "r-1", keyId: k.record.id, reservationId: first.reservationId, model: "m", inputTokens: 1, outputTokens: 1, units: 4, now: NOW });
      const c1 = Promise.resolve(store.reserve({ handle: snap.handle, keyId: k.record.id, units: 4, now: NOW, ttlMs: 60_000 }));
      const c2 = Promise.resolve(store.reserve({ handle: snap.handle, keyId: k.record.id, units: 4, now: NOW, ttlMs: 60_000 }));
      const [rec, r1, r2] = await Promise.all([consumed, c1, c2]);
      // One call for the turn (a cluster adds the Consume's request-id pointer and feed entry on {g}).
      expect(store.roundTrips - calls0, "calls for the turn").to.equal(store.cluster ? 3 : 1);
      expect(rec.record).to.include({ units: 4, keyRemaining: 6 });
      expect([r1.ok, r2.ok]).to.deep.equal([true, false]);
      expect(r2).to.include({ reason: "KEY_QUOTA_EXHAUSTED" });
    });

    it("the same request id twice in one turn is charged once (the second answers the first record)", async () => {
      const { store } = await open();
      await store.adjustBalance("default", 1_000, actor);
      const k = makeKey({ quotaTotal: 100 });
      await store.insertKey(k.record, actor);
      const req = { requestId: "dup", keyId: k.record.id, reservationId: "", model: "m", inputTokens: 1, outputTokens: 2, units: 7, now: NOW };
      const calls0 = store.roundTrips;
      const [a, b] = await Promise.all([store.consume(req), store.consume(req)]);
      expect(store.roundTrips - calls0).to.equal(store.cluster ? 3 : 1);
      expect(a.replayed).to.equal(false);
      expect(b).to.deep.equal({ record: a.record, replayed: true });
      expect((await store.getKey(k.record.id))!.counters).to.include({ remaining: 93, used: 7 });
      expect(store.getAccount("default")!.counters.charged).to.equal(7);
    });

    it("the BATCH script itself: two Consume items with one request id in one call → one charge, the second a replay of the first", async () => {
      const { store, prefix } = await open();
      await store.adjustBalance("default", 1_000, actor);
      const k = makeKey({ quotaTotal: 100 });
      await store.insertKey(k.record, actor);
      const n = new RedisKeys(prefix);
      const keys = [n.a("default"), n.a("default", "rsv"), n.a("default", "rd"), n.a("default", `rw:${k.record.id}`), n.a("default", "i:twice"), n.a("default", "led")];
      const json = JSON.stringify({ requestId: "twice", keyId: k.record.id, units: 7 });
      const item = ["C", "1", "2", "3", "4", "5", "6", "0", "0", "0", String(NOW), k.record.id, "", "7", "3", "0", "0", "60000", json, "test", "1000", "default", "", "0", ""];
      const conn = new RedisConn(target!.url, 2000, () => {});
      await conn.connect();
      try {
        const rows: unknown[][] = await conn.eval(script(BATCH), keys, [...item, ...item]);
        expect(rows.map((r) => Number(r[0]))).to.deep.equal([1, 2]);
        expect(rows[1]![1]).to.equal(json);
        expect(cli(["HGET", n.a("default"), `u:${k.record.id}`])).to.equal("7");
        expect(cli(["HGET", n.a("default"), "ch"])).to.equal("7");
        expect(cli(["XLEN", n.a("default", "led")])).to.equal("1");
      } finally {
        await conn.close();
      }
    });

    it("a batch past its deadline (CLIENT PAUSE): every item fails UNAVAILABLE and, once the releases ran, no hold remains", async () => {
      // Set up through a store with a long deadline (this machine may be busy); the 50 ms one only sends the batch.
      const { store: setup, prefix } = await open();
      await setup.adjustBalance("default", 1_000, actor);
      const k = makeKey({ quotaTotal: 1_000 });
      await setup.insertKey(k.record, actor);
      const store = new RedisStore({ url: target!.url, prefix, clock, callTimeoutMs: 50 });
      stores.push(store);
      await store.open(clock());
      const snap = store.lookup(hashSecretBytes(k.secret), NOW)!;
      const batches0 = store.batchCalls;
      // 800 ms, on every node at once from this process (redis-cli started per node, one after
      // another, took most of a shorter pause on a busy machine): 16× the deadline, so the batch is
      // sent well inside it; and shorter than the probe's own deadline (1 s), which must be met.
      await Promise.all(target!.nodes.map((node) => node.pauseClients(800)));
      const out = await Promise.allSettled(Array.from({ length: 10 }, () => Promise.resolve(store.reserve({ handle: snap.handle, keyId: k.record.id, units: 5, now: NOW, ttlMs: 60_000 }))));
      expect(store.batchCalls - batches0, "the ten Checks: one call").to.equal(1);
      expect(out.map((r) => r.status)).to.deep.equal(Array(10).fill("rejected"));
      for (const r of out) expect((r as PromiseRejectedResult).reason).to.be.instanceOf(StoreUnavailableError);
      expect(store.openReservations).to.equal(0);
      // The reserves ran when the pause ended (the call was sent), the releases after them.
      const n = new RedisKeys(prefix);
      await until(() => cli(["HGET", n.a("default"), "held"]) === "0" && cli(["HLEN", n.a("default", "rd")]) === "0", "no hold left on Redis");
      expect(cli(["HGET", n.a("default"), `h:${k.record.id}`])).to.equal("0");
      expect(cli(["HGET", n.a("default"), `o:${k.record.id}`])).to.equal("0");
    });

    it("a Consume that would take a counter past 2^53 − 1 is refused as on the embedded store (the same message), nothing charged", async () => {
      const { store } = await open();
      const dir = await tempDir();
      const level = new LevelStore({ dir, clock });
      await level.open(NOW);
      try {
        const outcomes = async (s: Store) => {
          const big = makeKey({ id: "key_big", quotaTotal: MAX });
          const small = makeKey({ id: "key_small", quotaTotal: 10 });
          await s.insertKey(big.record, actor);
          await s.insertKey(small.record, actor);
          const c = (keyId: string, requestId: string, units: number) => ({ requestId, keyId, reservationId: "", model: "m", inputTokens: 0, outputTokens: 0, units, now: NOW });
          const out: string[] = [];
          for (const [keyId, rid, units] of [
            ["key_big", "fill", MAX - 5],
            ["key_big", "key-past", 6], // the key's used units: MAX + 1
            ["key_small", "account-past", 6], // the account's charged units: MAX + 1
            ["key_small", "fits", 5],
          ] as const) {
            try {
              const r = await s.consume(c(keyId, rid, units));
              out.push(`ok ${r.record.units}`);
            } catch (e) {
              out.push(e instanceof SidecarError ? `${e.code} ${e.message}` : String(e));
            }
          }
          const ks = await Promise.all(["key_big", "key_small"].map((id) => s.getKey(id)));
          out.push(`used ${ks.map((k) => k!.counters.used).join(" ")}; charged ${s.getAccount("default")!.counters.charged}`);
          return out;
        };
        const onRedis = await outcomes(store);
        expect(onRedis).to.deep.equal(await outcomes(level));
        expect(onRedis[1]).to.match(/^INVALID_ARGUMENT units: key key_big's used units would be 9007199254740992/);
        expect(onRedis[2]).to.match(/^INVALID_ARGUMENT units: the account's charged units would be 9007199254740992/);
        expect(onRedis[4]).to.equal(`used ${MAX - 5} 5; charged ${MAX}`);
      } finally {
        await level.close();
        await removeDir(dir);
      }
    });
  });
}
