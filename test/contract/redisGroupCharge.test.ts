// A group budget on Redis is never under-charged by a sidecar that dies between a Consume's two
// calls (the account's charge, then the group's: two slots on a cluster; redisStore.ts "GROUP",
// store/redis/groupCharge.ts). The window is opened with the store's test hook (groupChargeHook:
// a throw there is the sidecar dying after the account's script and before the group's call);
// Redis is real (one redis-server, and a 3-master cluster), nothing mocked. Budgets are read
// straight from Redis (the group's hash), the outbox too.
import { randomBytes } from "node:crypto";
import { expect } from "chai";
import { hashSecretBytes } from "../../src/keys/secrets.js";
import { RedisConn } from "../../src/store/redis/conn.js";
import { encodeGroupCharge } from "../../src/store/redis/groupCharge.js";
import { RedisKeys } from "../../src/store/redis/keys.js";
import { RedisPortable } from "../../src/store/redis/portable.js";
import { RedisStore } from "../../src/store/redis/redisStore.js";
import { REDIS_TARGETS, requireRedis, type RedisTarget } from "../helpers/redis.js";
import { makeKey } from "./store.contract.js";

const NOW = Date.UTC(2026, 10, 27, 12, 0, 0);
const actor = { actor: "operator", action: "Test", target: "t" };

for (const shape of REDIS_TARGETS) {
  describe(`RedisStore group budget charges survive a crash between the two calls (${shape.name})`, function () {
    this.timeout(60_000);
    let target: RedisTarget | undefined;
    let conn: RedisConn | undefined;
    let stores: RedisStore[] = [];
    let now = NOW;
    const clock = () => now;

    before(async function () {
      requireRedis(this);
      target = await shape.start();
      conn = new RedisConn(target.url, 5000, () => {});
      await conn.connect();
    });
    after(async () => {
      await conn?.close();
      await target?.cleanup();
    });
    beforeEach(() => {
      now = NOW;
    });
    afterEach(async () => {
      await Promise.all(stores.map((s) => s.close()));
      stores = [];
    });

    /** A store (a sidecar) on `prefix`; `fail`: request ids whose Consume dies between the two calls; `pause`: awaited there. */
    const open = async (prefix: string, opts: { fail?: Set<string>; pause?: Map<string, Promise<void>>; graceMs?: number; errors?: unknown[] } = {}) => {
      const s = new RedisStore({
        url: target!.url,
        prefix,
        clock,
        onError: (e) => opts.errors?.push(e),
        callTimeoutMs: 5000,
        groupRecoveryGraceMs: opts.graceMs,
        groupChargeHook: async (rid) => {
          if (opts.fail?.has(rid)) throw new Error(`test: the sidecar dies before the group charge of ${rid}`);
          await opts.pause?.get(rid);
        },
      });
      stores.push(s);
      await s.open(now);
      return s;
    };

    /** A fresh prefix with a group "team" (budget 1000, daily), a funded account and a key in the group. */
    const setup = async (opts: Parameters<typeof open>[1] = {}) => {
      const prefix = `gc${randomBytes(5).toString("hex")}:`;
      const a = await open(prefix, opts);
      await a.adjustBalance("default", 1_000_000, actor);
      await a.insertGroup({ name: "team", description: "", ratioPpm: 1_000_000, models: [], createdAt: NOW, budget: { units: 1000, period: "daily" } }, actor);
      const k = makeKey({ group: "team", quotaTotal: 100_000 });
      await a.insertKey(k.record, actor);
      const n = new RedisKeys(prefix);
      const budget = async () => {
        const [spent, held] = (await conn!.call(n.gb("team", "b"), ["HMGET", n.gb("team", "b"), "spent", "held"])) as (string | null)[];
        return { spent: Number(spent ?? 0), held: Number(held ?? 0) };
      };
      const outbox = async () => ((await conn!.call(n.a("default", "gob"), ["ZRANGE", n.a("default", "gob"), "0", "-1"])) as unknown[]).map(String);
      /** Check (holds on the group's slot, then the account's) and Consume through `s`. */
      const spend = async (s: RedisStore, requestId: string, units: number) => {
        const r = await s.reserve({ handle: s.lookup(hashSecretBytes(k.secret), now)!.handle, keyId: k.record.id, units: 100, now, ttlMs: 60_000 });
        if (!r.ok) throw new Error(`reserve refused: ${r.reason}`);
        return s.consume({ requestId, keyId: k.record.id, reservationId: r.reservationId, model: "m", inputTokens: 1, outputTokens: 1, units, now });
      };
      return { prefix, a, k, n, budget, outbox, spend };
    };

    const until = async (what: string, ok: () => Promise<boolean>) => {
      for (let i = 0; i < 200; i++) {
        if (await ok()) return;
        await new Promise((r) => setTimeout(r, 25));
      }
      throw new Error(`timed out: ${what}`);
    };

    it("a Consume that dies after the account's charge: the outbox owes it, another sidecar's recovery charges the budget exactly once; a replay and further passes charge nothing more", async () => {
      const fail = new Set(["crash-1"]);
      const { prefix, a, k, budget, outbox, spend } = await setup({ fail });
      let err: unknown;
      try {
        await spend(a, "crash-1", 60);
      } catch (e) {
        err = e;
      }
      expect(String(err)).to.match(/dies before the group charge/);
      // The window: the account and ledger are charged, the budget is not (its hold still stands).
      expect(a.getAccount("default")!.counters.charged).to.equal(60);
      expect(await budget()).to.deep.equal({ spent: 0, held: 100 });
      expect(await outbox(), "the debt, written with the account's charge").to.have.length(1);

      const b = await open(prefix);
      expect(await b.recoverGroupCharges(now + 1000), "younger than the grace period: left to its own sidecar").to.equal(0);
      expect(await b.recoverGroupCharges(now + 5001)).to.equal(1);
      expect(await budget(), "charged once, the hold settled").to.deep.equal({ spent: 60, held: 0 });
      expect(await outbox()).to.deep.equal([]);
      await until("B's book has the charge", async () => b.listGroups().find((g) => g.name === "team")!.budgetUse!.spent === 60);

      // A replay of the request id (the client's retry) answers the first record and charges nothing.
      fail.clear();
      const again = await a.consume({ requestId: "crash-1", keyId: k.record.id, reservationId: "", model: "m", inputTokens: 1, outputTokens: 1, units: 60, now });
      expect(again.replayed).to.equal(true);
      expect(await b.recoverGroupCharges(now + 10_000)).to.equal(0);
      expect(await a.recoverGroupCharges(now + 10_000)).to.equal(0);
      expect(await budget()).to.deep.equal({ spent: 60, held: 0 });

      // The normal path: charged at once; out of the outbox with the account's next batch, or on an
      // idle sidecar with its maintenance step (no round trip of its own on the Consume's path).
      await spend(a, "fine-1", 40);
      expect(await budget()).to.deep.equal({ spent: 100, held: 0 });
      expect(await outbox(), "applied, not yet taken out").to.have.length(1);
      a.refill(now);
      await until("the outbox emptied", async () => (await outbox()).length === 0);

      // Something in the outbox that is not a charge (written by hand, another version): named and dropped, nothing charged.
      const errors: unknown[] = [];
      const c = await open(prefix, { errors });
      const n = new RedisKeys(prefix);
      await conn!.call(n.a("default", "gob"), ["ZADD", n.a("default", "gob"), String(now), '["x","team","lots",0,""]']);
      expect(await c.recoverGroupCharges(now + 10_000)).to.equal(0);
      expect(errors.map(String)).to.deep.equal([`Error: group charge recovery: account default's outbox holds ${JSON.stringify('["x","team","lots",0,""]')}, not a group charge; dropped`]);
      expect(await outbox()).to.deep.equal([]);
      expect(await budget()).to.deep.equal({ spent: 100, held: 0 });
    });

    it("a charge applied twice counts once: recovery racing a late normal charge, and a recovery of an entry the normal path already applied", async () => {
      let go!: () => void;
      const pause = new Map([["late-1", new Promise<void>((r) => (go = r))]]);
      const { prefix, a, k, budget, outbox, spend } = await setup({ pause });
      const b = await open(prefix, { graceMs: 0 });
      const consumed = spend(a, "late-1", 70);
      try {
        await until("the account's charge committed (the debt is in the outbox)", async () => (await outbox()).length === 1);
        // A's second call is held back; B's recovery applies the debt first.
        expect(await b.recoverGroupCharges(now)).to.equal(1);
        expect(await budget()).to.deep.equal({ spent: 70, held: 0 });
      } finally {
        go();
      }
      expect((await consumed).replayed).to.equal(false);
      expect(await budget(), "A's late charge found the request's mark").to.deep.equal({ spent: 70, held: 0 });
      expect(await b.recoverGroupCharges(now)).to.equal(0);

      // The other order: the normal path applied, then died before taking the entry out of the
      // outbox (the entry is put back, as that crash leaves it): recovery adds nothing.
      await spend(a, "normal-1", 30);
      expect(await budget()).to.deep.equal({ spent: 100, held: 0 });
      // The account's next Check carries the entry's removal.
      await a.reserve({ handle: a.lookup(hashSecretBytes(k.secret), now)!.handle, keyId: k.record.id, units: 1, now, ttlMs: 60_000 });
      await until("the outbox emptied", async () => (await outbox()).length === 0);
      const n = new RedisKeys(prefix);
      const member = encodeGroupCharge({ requestId: "normal-1", group: "team", units: 30, at: now, reservationId: "" });
      await conn!.call(n.a("default", "gob"), ["ZADD", n.a("default", "gob"), String(now), member]);
      expect(await b.recoverGroupCharges(now)).to.equal(0);
      expect(await budget()).to.deep.equal({ spent: 100, held: 1 });
      expect(await outbox()).to.deep.equal([]);
    });

    it("a debt whose budget period is over (reset since the request) adds nothing to the new period; the lock lets one sidecar recover at a time", async () => {
      const fail = new Set(["before-midnight"]);
      const { prefix, a, budget, outbox, spend } = await setup({ fail });
      await spend(a, "counted", 10);
      await spend(a, "before-midnight", 50).catch(() => {});
      expect(await outbox()).to.have.length(1);
      // The fleet lock: while another holds it, a pass does nothing (undefined) and leaves the outbox.
      const n = new RedisKeys(prefix);
      await conn!.call(n.g("gclock"), ["SET", n.g("gclock"), "someone", "PX", "60000"]);
      // Past the day's end: the maintenance step resets the budget (its recovery tick finds the lock taken).
      now = Date.UTC(2026, 10, 28, 0, 0, 1);
      a.refill(now);
      await until("the budget reset on Redis", async () => (await budget()).spent === 0);
      const b = await open(prefix);
      expect(await b.recoverGroupCharges(now)).to.equal(undefined);
      expect(await outbox()).to.have.length(1);
      await conn!.call(n.g("gclock"), ["DEL", n.g("gclock")]);
      expect(await b.recoverGroupCharges(now), "the period the request happened in is over").to.equal(0);
      expect(await budget()).to.deep.equal({ spent: 0, held: 0 });
      expect(await outbox()).to.deep.equal([]);
      // A debt of the current period still counts.
      fail.add("after-midnight");
      await spend(a, "after-midnight", 20).catch(() => {});
      expect(await b.recoverGroupCharges(now + 5001)).to.equal(1);
      expect(await budget()).to.deep.include({ spent: 20 });
    });

    it("migrate's export counts what the outboxes still owe: a crashed Consume's debt once, not one already applied, not one of a period that is over", async () => {
      const fail = new Set(["crashed"]);
      const { prefix, a, n, budget, outbox, spend } = await setup({ fail });
      await spend(a, "crashed", 60).catch(() => {});
      await spend(a, "applied", 25);
      // Both in the outbox: the crashed one owed, the applied one waiting to be taken out (its mark is live).
      expect(await outbox()).to.have.length(2);
      expect(await budget()).to.deep.equal({ spent: 25, held: 100 });
      // A debt from before the budget's period began (written by hand, as an older period's crash leaves it).
      const old = encodeGroupCharge({ requestId: "yesterday", group: "team", units: 7, at: NOW - 86_400_000, reservationId: "" });
      await conn!.call(n.a("default", "gob"), ["ZADD", n.a("default", "gob"), String(NOW - 86_400_000), old]);

      const exported = async () => {
        const p = await RedisPortable.open(target!.url, prefix, 86_400_000, clock);
        try {
          for await (const chunk of p.exportState()) if (chunk.kind === "groups") return chunk.items.find((g) => g.record.name === "team")!.budget;
        } finally {
          await p.close();
        }
        return undefined;
      };
      expect(await exported(), "spent 25 + the crashed 60").to.deep.include({ spent: 85 });
      // Only read: the outbox and the budget are as they were.
      expect(await outbox()).to.have.length(3);
      expect(await budget()).to.deep.equal({ spent: 25, held: 100 });

      // Once the recovery pass applied the debt, the export counts it once (from spent, not the outbox).
      const b = await open(prefix, { graceMs: 0 });
      expect(await b.recoverGroupCharges(now)).to.equal(1);
      expect(await budget()).to.deep.equal({ spent: 85, held: 0 });
      expect(await exported()).to.deep.include({ spent: 85 });
    });
  });
}
