// Budget-slice leases on the Redis engine (issue 15; redisStore.ts "Leases", lease.ts): a busy
// key's Checks are admitted from a slice of its quota and balance held on Redis, without a round
// trip, and it stays exact. Several RedisStore instances (sidecars) on one real Redis and on a
// 3-master cluster, with a real clock (leases expire in real time).
import { randomBytes } from "node:crypto";
import { expect } from "chai";
import { hashSecretBytes } from "../../src/keys/secrets.js";
import { RedisKeys } from "../../src/store/redis/keys.js";
import { RedisStore } from "../../src/store/redis/redisStore.js";
import type { ReserveResult } from "../../src/store/types.js";
import { REDIS_TARGETS, requireRedis, type RedisTarget } from "../helpers/redis.js";
import { makeKey } from "./store.contract.js";

const actor = { actor: "operator", action: "Test", target: "t" };
const LEASE_MS = 1000;

const targets = REDIS_TARGETS;

type Key = ReturnType<typeof makeKey>;

/** One Check through `store` as the data plane makes it (lookup, then reserve). */
function check(store: RedisStore, k: Key, units = 1): Promise<ReserveResult> {
  const now = Date.now();
  const snap = store.lookup(hashSecretBytes(k.secret), now);
  if (!snap) return Promise.resolve({ ok: false, reason: "KEY_INVALID", retryAfterMs: 0 });
  return Promise.resolve(store.reserve({ handle: snap.handle, keyId: k.record.id, units, now, ttlMs: 60_000 }));
}

function consume(store: RedisStore, k: Key, requestId: string, reservationId: string, units = 1) {
  return store.consume({ requestId, keyId: k.record.id, reservationId, model: "m", inputTokens: 1, outputTokens: 1, units, now: Date.now() });
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

for (const t of targets) {
  describe(`RedisStore leases on ${t.name}`, function () {
    this.timeout(120_000);
    let target: RedisTarget | undefined;
    let stores: RedisStore[] = [];
    let timers: NodeJS.Timeout[] = [];

    before(async function () {
      requireRedis(this);
      target = await t.start();
    });
    after(async () => {
      await target?.cleanup();
    });
    afterEach(async () => {
      for (const t of timers) clearInterval(t);
      timers = [];
      await Promise.all(stores.map((s) => s.close()));
      stores = [];
    });

    /** `n` stores (sidecars) of one fleet (one prefix), leasing on. */
    async function fleet(n: number, leaseMs = LEASE_MS): Promise<{ stores: RedisStore[]; prefix: string }> {
      const prefix = `l${randomBytes(6).toString("hex")}:`;
      const out: RedisStore[] = [];
      for (let i = 0; i < n; i++) {
        const s = new RedisStore({ url: target!.url, prefix, clock: Date.now, callTimeoutMs: 2000, leaseMs });
        stores.push(s);
        await s.open(Date.now());
        // The scheduler's "leases" step, as main.ts runs it.
        timers.push(setInterval(() => s.leaseTick(Date.now()), s.leaseTickMs));
        out.push(s);
      }
      return { stores: out, prefix };
    }

    const cli = (args: string[]) => target!.nodes[0]!.cli(["-c", ...args]).trim();

    /** The key as every store's book sees it (after the change feed delivered it). */
    async function known(all: RedisStore[], k: Key): Promise<void> {
      for (let i = 0; i < 500 && !all.every((s) => s.lookup(hashSecretBytes(k.secret), Date.now())); i++) await sleep(10);
    }

    /** Clients spread over the stores race Check → Consume until each is refused once. */
    async function race(all: RedisStore[], k: Key, tag: string, clients = 24) {
      let admitted = 0;
      const reasons: string[] = [];
      await Promise.all(
        Array.from({ length: clients }, async (_, c) => {
          const s = all[c % all.length]!;
          for (let n = 0; ; n++) {
            const r = await check(s, k);
            if (!r.ok) {
              reasons.push(r.reason);
              return;
            }
            admitted++;
            await consume(all[(c + 1) % all.length]!, k, `${tag}-${c}-${n}`, r.reservationId);
          }
        }),
      );
      return { admitted, reasons: [...new Set(reasons)] };
    }

    /** Checks on `store` until it admits from a lease (a grant came back). */
    async function leaseOn(store: RedisStore, k: Key, tag: string): Promise<void> {
      for (let n = 0; n < 400 && store.leaseStats.local === 0; n++) {
        const r = await check(store, k);
        if (r.ok) await consume(store, k, `${tag}-${n}`, r.reservationId);
        else await sleep(2);
      }
      expect(store.leaseStats.local, "Checks admitted from a lease").to.be.greaterThan(0);
    }

    it("three stores race on a key quota of exactly 100 and an account balance of exactly 50: exactly 100 and 50 admitted, counters exact, Checks admitted from leases", async () => {
      const { stores: all } = await fleet(3);
      await all[0]!.adjustBalance("default", 1_000_000, actor);
      const k = makeKey({ quotaTotal: 100 });
      await all[1]!.insertKey(k.record, actor);
      await known(all, k);
      const q = await race(all, k, "quota");
      expect(q.admitted).to.equal(100);
      expect(q.reasons).to.deep.equal(["KEY_QUOTA_EXHAUSTED"]);

      await all[2]!.insertAccount({ id: "acct-fifty", name: "Fifty", createdAt: Date.now() }, 50, actor);
      // The key goes in through another store: once the change feed brought it the account (a loaded machine takes a while).
      for (let i = 0; i < 500 && !all[0]!.getAccount("acct-fifty"); i++) await sleep(10);
      const u = makeKey({ unlimited: true, accountId: "acct-fifty" });
      await all[0]!.insertKey(u.record, actor);
      await known(all, u);
      const b = await race(all, u, "balance");
      expect(b.admitted).to.equal(50);
      expect(b.reasons).to.deep.equal(["ACCOUNT_BALANCE_EXHAUSTED"]);

      const local = all.reduce((n, s) => n + s.leaseStats.local, 0);
      expect(local, "Checks admitted from leases").to.be.greaterThan(0);
      // Every hold is gone once the leases are returned (close) and the counters are exact.
      const reader = all[0]!;
      expect((await reader.getKey(k.record.id))!.counters).to.include({ remaining: 0, used: 100 });
      console.log(`      leases: ${local} of 150 admitted Checks were local; recall retries ${all.reduce((x, s) => x + s.leaseStats.recallRetries, 0)}`);
    });

    it("a Check admitted from a lease, and its release, make no Redis call; a Consume of it is one shrink item in the Consume's batch", async () => {
      // A long TTL: no renewal falls inside the calls counted here.
      const { stores: all } = await fleet(1, 20_000);
      const [a] = all as [RedisStore];
      await a.adjustBalance("default", 1_000_000, actor);
      const k = makeKey({ quotaTotal: 10_000 });
      await a.insertKey(k.record, actor);
      await leaseOn(a, k, "calls");
      const calls0 = a.roundTrips;
      const local0 = a.leaseStats.local;
      const r1 = await check(a, k);
      const r2 = await check(a, k);
      if (!r1.ok || !r2.ok) throw new Error("refused");
      expect(a.release(r1.reservationId)).to.equal(true);
      expect(a.roundTrips - calls0, "Redis calls for two leased Checks and a release").to.equal(0);
      expect(a.leaseStats.local - local0).to.equal(2);
      const before = (await a.getKey(k.record.id))!.counters.used;
      const calls1 = a.roundTrips;
      await consume(a, k, "calls-consume", r2.reservationId, 3);
      expect(a.roundTrips - calls1, "the Consume and its shrink: one call").to.equal(a.cluster ? 3 : 1);
      expect((await a.getKey(k.record.id))!.counters.used).to.equal(before + 3);
    });

    it("a store that vanished without returning its lease holds the units only until the lease TTL (a Check that needs them waits for it, then is admitted)", async () => {
      const { stores: all, prefix } = await fleet(2);
      const [a, b] = all as [RedisStore, RedisStore];
      await a.adjustBalance("default", 1_000_000, actor);
      const k = makeKey({ quotaTotal: 200 });
      await a.insertKey(k.record, actor);
      await known(all, k);
      await leaseOn(a, k, "vanish");
      const names = new RedisKeys(prefix);
      const held = Number(cli(["HGET", names.a("default"), `h:${k.record.id}`]));
      expect(held, "units A's lease holds").to.be.greaterThan(0);
      await a.close(false);
      const remaining = (await b.getKey(k.record.id))!.counters.remaining;
      // B asks for everything that is left: refused while A's lease holds part of it, retried, admitted once it expired.
      const r = await check(b, k, remaining);
      expect(r.ok, JSON.stringify(r)).to.equal(true);
      expect(b.leaseStats.recallRetries).to.be.greaterThan(0);
      expect(cli(["HGET", names.a("default"), `h:${k.record.id}`])).to.equal(String(remaining));
    });

    it("a lessee that is still running gives its slice back on a recall: another store's Check that needs the units is admitted", async () => {
      const { stores: all, prefix } = await fleet(2, 3000);
      const [a, b] = all as [RedisStore, RedisStore];
      await a.adjustBalance("default", 1_000_000, actor);
      const k = makeKey({ quotaTotal: 200 });
      await a.insertKey(k.record, actor);
      await known(all, k);
      await leaseOn(a, k, "recall");
      const lid = `L:${a.sid}:${k.record.id}`;
      const names = new RedisKeys(prefix);
      expect(Number(cli(["ZSCORE", names.a("default", "ls"), lid])), "A's lease on Redis").to.be.greaterThan(Date.now());
      const remaining = (await b.getKey(k.record.id))!.counters.remaining;
      const r = await check(b, k, remaining);
      expect(r.ok, JSON.stringify(r)).to.equal(true);
      expect(b.leaseStats.recallRetries, "B's Check waited for a recall").to.be.greaterThan(0);
      expect(a.leaseStats.recalled, `A saw the recall: ${JSON.stringify(a.leaseStats)}`).to.be.greaterThan(0);
    });

    for (const stalled of [false, true]) {
      it(`disable through A while B holds a lease${stalled ? " and B's change feed is stalled" : ""}: B's next Check after the admin call returned is refused${stalled ? " (the call waited for B's lease to expire on Redis)" : ""}`, async () => {
        const { stores: all, prefix } = await fleet(2);
        const [a, b] = all as [RedisStore, RedisStore];
        await a.adjustBalance("default", 1_000_000, actor);
        const k = makeKey({ quotaTotal: 1_000_000 });
        await a.insertKey(k.record, actor);
        await known(all, k);
        await leaseOn(b, k, "disable");
        const lid = `L:${b.sid}:${k.record.id}`;
        const names = new RedisKeys(prefix);
        expect(Number(cli(["ZSCORE", names.a("default", "ls"), lid])), "B's lease on Redis").to.be.greaterThan(Date.now());
        if (stalled) b.changes.stopAll();
        await a.updateKeys(
          [k.record.id],
          (cur) => ({ record: { ...cur.record, status: "disabled", updatedAt: Date.now() } }),
          () => actor,
        );
        if (stalled) {
          // A returned only once B's lease could no longer be used: expired on Redis's side.
          const score = cli(["ZSCORE", names.a("default", "ls"), lid]);
          expect(score === "" || Number(score) <= Date.now(), `B's lease still live: ${score}`).to.equal(true);
        }
        const r = await check(b, k);
        expect(r.ok, JSON.stringify(r)).to.equal(false);
        if (!stalled) expect(b.lookup(hashSecretBytes(k.secret), Date.now())!.key.enabled).to.equal(false);
      });
    }
  });
}
