// The storage contract: every Store implementation (LevelDB now, a shared
// engine later) must pass this suite unchanged.
import { expect } from "chai";
import type { KeyRecord } from "../../src/domain/types.js";
import { SidecarError } from "../../src/domain/errors.js";
import { generateId, generateKeySecret, hashSecret, hashSecretBytes, maskSecret } from "../../src/keys/secrets.js";
import type { BookChange, ChangeBatch, KeyIndexView, Store } from "../../src/store/types.js";
import { KeyBook } from "../../src/store/book/keyBook.js";
import { applyChanges } from "../../src/store/book/applyChange.js";
import { hotKeyOf } from "../../src/store/keyProjection.js";

export interface StoreHarness {
  /** A new, empty store, opened. */
  fresh(): Promise<Store>;
  /** Closes `store` and opens the same data again. */
  reopen(store: Store): Promise<Store>;
  cleanup(): Promise<void>;
  /**
   * A second sidecar's store on the same data, opened (shared engines only). Absent for an
   * engine that is one process's only writer (LevelDB): its change feed delivers nothing.
   */
  peer?(store: Store): Promise<Store>;
  /**
   * Calls `apply` with every batch `store` commits from now on, as the change feed carries it to
   * another sidecar (a shared engine: a peer's subscription; LevelDB: its own publication,
   * SingleWriterFeed.onPublish). Returns the unsubscribe function.
   */
  follow(store: Store, apply: (batch: ChangeBatch) => void): Promise<() => void>;
  /**
   * Resolves once every batch `store` committed so far reached the follower (a shared engine's feed
   * is asynchronous). Absent where follow delivers synchronously (LevelDB).
   */
  caughtUp?(store: Store): Promise<void>;
}

const NOW = Date.UTC(2026, 10, 27, 12, 0, 0);
const actor = { actor: "operator", action: "Test", target: "t" };

export function makeKey(over: Partial<KeyRecord> = {}, secret = generateKeySecret()): { record: KeyRecord; secret: string } {
  const id = over.id ?? generateId("key_");
  return {
    secret,
    record: {
      id,
      name: "test key",
      accountId: "default",
      group: "default",
      status: "enabled",
      unlimited: false,
      quotaTotal: 1000,
      expiresAt: null,
      models: [],
      ips: [],
      createdAt: NOW,
      updatedAt: NOW,
      limits: { rpm: 0, tpm: 0, concurrency: 0 },
      refill: "none",
      metadata: {},
      secretHash: hashSecret(secret),
      secretEnc: "c2VhbGVk",
      masked: maskSecret(secret),
      prevSecretHash: null,
      prevSecretExpiresAt: null,
      ...over,
    },
  };
}

async function expectCode(p: Promise<unknown>, code: string): Promise<void> {
  try {
    await p;
  } catch (err) {
    expect(err).to.be.instanceOf(SidecarError);
    expect((err as SidecarError).code).to.equal(code);
    return;
  }
  expect.fail(`expected ${code}`);
}

export function runStoreContract(name: string, makeHarness: () => Promise<StoreHarness>): void {
  describe(`Store contract: ${name}`, () => {
    let h: StoreHarness;
    let store: Store;

    beforeEach(async () => {
      h = await makeHarness();
      store = await h.fresh();
    });

    afterEach(async () => {
      await store.close();
      await h.cleanup();
    });

    it("starts with the default account and the default group", () => {
      expect(store.getAccount("default")?.record.id).to.equal("default");
      expect(store.getGroup("default")?.ratioPpm).to.equal(1_000_000);
      expect(store.health()).to.equal("SERVING");
    });

    it("inserts a key, finds it by id and by secret hash, and persists it across a reopen", async () => {
      const { record, secret } = makeKey({ quotaTotal: 500 });
      const s = await store.insertKey(record, actor);
      expect(s.counters.remaining).to.equal(500);
      expect((await store.getKey(record.id))?.record.name).to.equal("test key");
      const snap = store.lookup(hashSecretBytes(secret), NOW);
      expect(snap?.key.id).to.equal(record.id);
      expect(snap?.key.quotaAvailable).to.equal(500);
      store = await h.reopen(store);
      expect((await store.getKey(record.id))?.record.id).to.equal(record.id);
      expect(store.lookup(hashSecretBytes(secret), NOW)?.key.id).to.equal(record.id);
    });

    it("orders key ids by creation time from memory exactly as the records order them, with the index-only filters, across changes and a reopen", async () => {
      await store.insertAccount({ id: "acme", name: "Acme", createdAt: NOW }, 1000, actor);
      await store.insertGroup({ name: "team-a", description: "", ratioPpm: 1_000_000, models: [], createdAt: NOW }, actor);
      const ids: string[] = [];
      for (let i = 0; i < 40; i++) {
        // Ties in creation time (i % 7), two accounts, two groups, some disabled, some expired.
        const { record } = makeKey({
          createdAt: NOW - (i % 7) * 1000,
          accountId: i % 3 === 0 ? "acme" : "default",
          group: i % 4 === 0 ? "team-a" : "default",
          status: i % 5 === 0 ? "disabled" : "enabled",
          expiresAt: i % 6 === 0 ? NOW - 1 : i % 6 === 1 ? NOW + 60_000 : null,
        });
        await store.insertKey(record, actor);
        ids.push(record.id);
      }
      await store.updateKeys([ids[1]!, ids[2]!], (c) => ({ record: { ...c.record, status: c.record.status === "enabled" ? "disabled" : "enabled", group: "team-a" } }), () => actor);
      await store.deleteKeys([ids[3]!], () => {}, () => actor);
      const filters: [string, (v: KeyIndexView) => boolean][] = [
        ["all", () => true],
        ["enabled", (v) => v.enabled],
        ["team-a, unexpired", (v) => v.group === "team-a" && (v.expiresAt === null || v.expiresAt > NOW)],
      ];
      const check = async (): Promise<void> => {
        const records: KeyRecord[] = [];
        for await (const k of store.scanKeys()) records.push(k.record);
        expect(records).to.have.length(39);
        for (const account of [undefined, "acme", "default"]) {
          for (const [name, keep] of filters) {
            for (const newestFirst of [true, false]) {
              const want = records
                .filter((r) => (account === undefined || r.accountId === account) && keep({ enabled: r.status === "enabled", expiresAt: r.expiresAt, group: r.group }))
                .sort((a, b) => (newestFirst ? b.createdAt - a.createdAt : a.createdAt - b.createdAt) || (a.id < b.id ? -1 : 1))
                .map((r) => r.id);
              expect(store.keyIdsByCreation(account, newestFirst, keep), `${account ?? "all"} / ${name} / ${newestFirst ? "newest" : "oldest"} first`).to.deep.equal(want);
            }
          }
        }
      };
      await check();
      store = await h.reopen(store);
      await check();
    });

    it("rejects a key for an unknown group or account and writes nothing", async () => {
      const a = makeKey({ group: "nope" });
      await expectCode(store.insertKey(a.record, actor), "NOT_FOUND");
      const b = makeKey({ accountId: "nope" });
      await expectCode(store.insertKey(b.record, actor), "NOT_FOUND");
      expect(await store.getKey(a.record.id)).to.equal(undefined);
      expect(store.lookup(hashSecretBytes(a.secret), NOW)).to.equal(undefined);
      expect(await store.listAudit({ limit: 10 })).to.have.length(0);
    });

    it("updates several keys all-or-none: one unknown id aborts the whole call", async () => {
      const a = makeKey();
      await store.insertKey(a.record, actor);
      await expectCode(
        store.updateKeys([a.record.id, "key_missing"], (c) => ({ record: { ...c.record, status: "disabled" } }), () => actor),
        "NOT_FOUND",
      );
      expect((await store.getKey(a.record.id))?.record.status).to.equal("enabled");
      expect(store.lookup(hashSecretBytes(a.secret), NOW)?.key.enabled).to.equal(true);
    });

    it("aborts an update when the change function throws, writing nothing", async () => {
      const a = makeKey();
      const b = makeKey();
      await store.insertKey(a.record, actor);
      await store.insertKey(b.record, actor);
      const before = (await store.listAudit({ limit: 100 })).length;
      await expectCode(
        store.updateKeys(
          [a.record.id, b.record.id],
          (c) => {
            if (c.record.id === b.record.id) throw new SidecarError("NOT_FOUND", "no");
            return { record: { ...c.record, name: "changed" } };
          },
          () => actor,
        ),
        "NOT_FOUND",
      );
      expect((await store.getKey(a.record.id))?.record.name).to.equal("test key");
      expect((await store.listAudit({ limit: 100 })).length).to.equal(before);
    });

    it("applies a disable to the hot index as soon as the update resolves", async () => {
      const a = makeKey();
      await store.insertKey(a.record, actor);
      await store.updateKeys([a.record.id], (c) => ({ record: { ...c.record, status: "disabled" } }), () => actor);
      expect(store.lookup(hashSecretBytes(a.secret), NOW)?.key.enabled).to.equal(false);
    });

    it("moves remaining by the delta of a quota change (spent stays spent)", async () => {
      const a = makeKey({ quotaTotal: 100 });
      await store.insertKey(a.record, actor);
      const [after] = await store.updateKeys([a.record.id], (c) => ({ record: { ...c.record, quotaTotal: 150 }, remainingDelta: 50 }), () => actor);
      expect(after!.counters.remaining).to.equal(150);
      store = await h.reopen(store);
      expect((await store.getKey(a.record.id))?.counters.remaining).to.equal(150);
    });

    it("deletes keys atomically; a deleted key's secret stops working at once", async () => {
      const a = makeKey();
      const b = makeKey();
      await store.insertKey(a.record, actor);
      await store.insertKey(b.record, actor);
      await expectCode(store.deleteKeys([a.record.id, "key_missing"], () => {}, () => actor), "NOT_FOUND");
      expect(await store.getKey(a.record.id)).to.not.equal(undefined);
      await store.deleteKeys([a.record.id, b.record.id], () => {}, () => actor);
      expect(await store.getKey(a.record.id)).to.equal(undefined);
      expect(store.lookup(hashSecretBytes(a.secret), NOW)).to.equal(undefined);
      store = await h.reopen(store);
      expect(store.lookup(hashSecretBytes(b.secret), NOW)).to.equal(undefined);
    });

    it("keeps a deleted key chargeable by reservation or key id: the charge lands on its account (also after a reopen)", async () => {
      await store.adjustBalance("default", 10_000, actor);
      const a = makeKey({ quotaTotal: 5000 });
      await store.insertKey(a.record, actor);
      const snap = store.lookup(hashSecretBytes(a.secret), NOW)!;
      const r = await store.reserve({ handle: snap.handle, keyId: a.record.id, units: 100, now: NOW, ttlMs: 60_000 });
      expect(r.ok).to.equal(true);
      const rsv = r.ok ? r.reservationId : "";
      await store.deleteKeys([a.record.id], () => {}, () => actor);
      expect(store.resolveConsumeTarget({ kind: "reservation", id: rsv }, NOW)).to.equal(undefined);
      const ref = await store.resolveDeletedTarget({ kind: "reservation", id: rsv });
      expect(ref).to.deep.include({ keyId: a.record.id, accountId: "default", group: "default", deleted: true });
      const out = await store.consume({ requestId: "after-delete", keyId: a.record.id, reservationId: "", model: "m", inputTokens: 1, outputTokens: 1, units: 70, now: NOW });
      expect(out.record).to.deep.include({ accountId: "default", units: 70 });
      expect(store.getAccount("default")!.counters).to.deep.include({ balance: 10_000 - 70, charged: 70, reserved: 0 });
      store = await h.reopen(store);
      expect(await store.resolveDeletedTarget({ kind: "key", id: a.record.id })).to.deep.include({ accountId: "default" });
      expect(await store.resolveDeletedTarget({ kind: "key", id: "key_never" })).to.equal(undefined);
      expect(await store.resolveDeletedTarget({ kind: "secret", hash: hashSecretBytes(a.secret) })).to.equal(undefined);
      await store.consume({ requestId: "after-reopen", keyId: a.record.id, reservationId: "", model: "m", inputTokens: 1, outputTokens: 1, units: 30, now: NOW });
      expect(store.getAccount("default")!.counters).to.deep.include({ balance: 10_000 - 100, charged: 100 });
    });

    it("keeps a rotated key's previous secret working only during its grace period", async () => {
      const a = makeKey();
      await store.insertKey(a.record, actor);
      const next = generateKeySecret();
      await store.updateKeys(
        [a.record.id],
        (c) => ({ record: { ...c.record, secretHash: hashSecret(next), prevSecretHash: c.record.secretHash, prevSecretExpiresAt: NOW + 60_000 } }),
        () => actor,
      );
      expect(store.lookup(hashSecretBytes(next), NOW)?.key.id).to.equal(a.record.id);
      expect(store.lookup(hashSecretBytes(a.secret), NOW + 59_999)?.key.id).to.equal(a.record.id);
      expect(store.lookup(hashSecretBytes(a.secret), NOW + 60_000)).to.equal(undefined);
      store = await h.reopen(store);
      expect(store.lookup(hashSecretBytes(a.secret), NOW)?.key.id).to.equal(a.record.id);
      // A rotation without grace drops the old secret at once.
      const third = generateKeySecret();
      await store.updateKeys(
        [a.record.id],
        (c) => ({ record: { ...c.record, secretHash: hashSecret(third), prevSecretHash: null, prevSecretExpiresAt: null } }),
        () => actor,
      );
      expect(store.lookup(hashSecretBytes(next), NOW)).to.equal(undefined);
      expect(store.lookup(hashSecretBytes(a.secret), NOW)).to.equal(undefined);
      expect(store.lookup(hashSecretBytes(third), NOW)?.key.id).to.equal(a.record.id);
    });

    it("adjusts balances atomically and persists them", async () => {
      await store.adjustBalance("default", 1000, actor);
      await Promise.all(Array.from({ length: 50 }, () => store.adjustBalance("default", -10, actor)));
      expect(store.getAccount("default")?.counters.balance).to.equal(500);
      store = await h.reopen(store);
      const a = store.getAccount("default")!;
      expect(a.counters.balance).to.equal(500);
      expect(a.counters.credited - a.counters.charged).to.equal(500);
      await expectCode(store.adjustBalance("nope", 1, actor), "NOT_FOUND");
    });

    it("updateAccount: name and zone change atomically with an audit entry; a zone change keeps the quota left and restarts its keys' refill at the change (also after a reopen)", async () => {
      await store.insertAccount({ id: "acme", name: "Acme", createdAt: NOW }, 1000, actor);
      const k = makeKey({ accountId: "acme", refill: "daily" });
      await store.insertKey(k.record, actor);
      await store.updateKeys([k.record.id], (c) => ({ record: c.record, remainingDelta: -300 }), () => actor);
      const a = await store.updateAccount("acme", (r) => ({ ...r, name: "Acme KK", timezone: "Asia/Tokyo" }), (before, after) => ({ ...actor, action: "UpdateAccount", target: "acme", before, after }));
      expect(a.record).to.deep.include({ id: "acme", name: "Acme KK", timezone: "Asia/Tokyo" });
      expect(a.counters.balance).to.equal(1000);
      const st = (await store.getKey(k.record.id))!;
      expect(st.counters.remaining, "no free refill").to.equal(700);
      expect(st.counters.refilledAt, "the period restarts at the change (the store's clock)").to.be.a("number");
      const next = store.nextRefillAt?.(k.record.id);
      if (next !== undefined) expect(new Date(next!).getUTCHours(), "a Tokyo midnight").to.equal(15);
      expect((await store.listAudit({ target: "acme", limit: 1 }))[0]).to.deep.include({ action: "UpdateAccount" });
      store = await h.reopen(store);
      expect(store.getAccount("acme")!.record).to.deep.include({ name: "Acme KK", timezone: "Asia/Tokyo" });
      const again = (await store.getKey(k.record.id))!;
      expect(again.counters).to.deep.include({ remaining: 700, refilledAt: st.counters.refilledAt });
      if (next !== undefined) expect(store.nextRefillAt?.(k.record.id)).to.equal(next);
      await expectCode(store.updateAccount("nope", (r) => r, () => actor), "NOT_FOUND");
    });

    it("claimAlertMark: set once (concurrent claims: exactly one wins), kept across a reopen, claimable again once expired; bad ids refused", async () => {
      const HOUR = 3_600_000;
      // Marks expire on the store's clock: far past and far future are on either side of it whatever it is.
      const FUTURE = Date.UTC(2100, 0, 1);
      const PAST = Date.UTC(2000, 0, 1);
      expect(await store.claimAlertMark("evt_a", FUTURE)).to.equal(true);
      expect(await store.claimAlertMark("evt_a", FUTURE + HOUR)).to.equal(false);
      const race = await Promise.all(Array.from({ length: 16 }, () => store.claimAlertMark("evt_race", FUTURE)));
      expect(race.filter(Boolean)).to.have.length(1);
      expect(await store.claimAlertMark("evt_old", PAST)).to.equal(true);
      store = await h.reopen(store);
      expect(await store.claimAlertMark("evt_a", FUTURE), "durable across a reopen").to.equal(false);
      expect(await store.claimAlertMark("evt_race", FUTURE)).to.equal(false);
      expect(await store.claimAlertMark("evt_old", FUTURE), "an expired mark is claimed again").to.equal(true);
      expect(await store.claimAlertMark("evt_old", FUTURE)).to.equal(false);
      for (const bad of ["", "x".repeat(201), "evt a", "evt\n", "ü"]) {
        let err: unknown;
        await store.claimAlertMark(bad, FUTURE).catch((e) => (err = e));
        expect(err, JSON.stringify(bad)).to.be.instanceOf(TypeError);
      }
    });

    it("never reserves past the key quota under concurrency: quota for 10 → exactly 10 of 64", async () => {
      await store.adjustBalance("default", 1_000_000, actor);
      const a = makeKey({ quotaTotal: 100 });
      await store.insertKey(a.record, actor);
      const results = await Promise.all(
        Array.from({ length: 64 }, async () => {
          const snap = store.lookup(hashSecretBytes(a.secret), NOW)!;
          return store.reserve({ handle: snap.handle, keyId: a.record.id, units: 10, now: NOW, ttlMs: 60_000 });
        }),
      );
      expect(results.filter((r) => r.ok)).to.have.length(10);
      expect(results.filter((r) => !r.ok && r.reason === "KEY_QUOTA_EXHAUSTED")).to.have.length(54);
    });

    it("never reserves past the account balance across keys", async () => {
      await store.adjustBalance("default", 50, actor);
      const keys = [makeKey({ unlimited: true, quotaTotal: 0 }), makeKey({ unlimited: true, quotaTotal: 0 })];
      for (const k of keys) await store.insertKey(k.record, actor);
      let ok = 0;
      for (let i = 0; i < 20; i++) {
        const k = keys[i % 2]!;
        const snap = store.lookup(hashSecretBytes(k.secret), NOW)!;
        const r = await store.reserve({ handle: snap.handle, keyId: k.record.id, units: 10, now: NOW, ttlMs: 60_000 });
        if (r.ok) ok++;
        else expect(r.reason).to.equal("ACCOUNT_BALANCE_EXHAUSTED");
      }
      expect(ok).to.equal(5);
    });

    it("releases a reservation explicitly and after its TTL", async () => {
      await store.adjustBalance("default", 100, actor);
      const a = makeKey({ quotaTotal: 100 });
      await store.insertKey(a.record, actor);
      const snap = store.lookup(hashSecretBytes(a.secret), NOW)!;
      const r1 = await store.reserve({ handle: snap.handle, keyId: a.record.id, units: 60, now: NOW, ttlMs: 1000 });
      expect(r1.ok).to.equal(true);
      expect(store.lookup(hashSecretBytes(a.secret), NOW)!.key.quotaAvailable).to.equal(40);
      expect(store.release(r1.ok ? r1.reservationId : "")).to.equal(true);
      expect(store.lookup(hashSecretBytes(a.secret), NOW)!.key.quotaAvailable).to.equal(100);
      const r2 = await store.reserve({ handle: snap.handle, keyId: a.record.id, units: 60, now: NOW, ttlMs: 1000 });
      expect(r2.ok).to.equal(true);
      (store as unknown as { releaseExpired(now: number): number }).releaseExpired?.(NOW + 1000);
      expect(store.lookup(hashSecretBytes(a.secret), NOW)!.key.quotaAvailable).to.equal(100);
    });

    it("enforces the concurrency limit with open reservations", async () => {
      await store.adjustBalance("default", 1000, actor);
      const a = makeKey({ unlimited: true, quotaTotal: 0, limits: { rpm: 0, tpm: 0, concurrency: 2 } });
      await store.insertKey(a.record, actor);
      const snap = store.lookup(hashSecretBytes(a.secret), NOW)!;
      const rs = await Promise.all(Array.from({ length: 3 }, () => store.reserve({ handle: snap.handle, keyId: a.record.id, units: 1, now: NOW, ttlMs: 60_000 })));
      expect(rs.map((r) => r.ok)).to.deep.equal([true, true, false]);
      expect(rs[2]!.ok ? "" : rs[2]!.reason).to.equal("RATE_LIMITED");
    });

    it("refuses to delete a group that keys use, and the default group", async () => {
      await store.insertGroup({ name: "team-a", description: "", ratioPpm: 1_500_000, models: [], createdAt: NOW }, actor);
      const a = makeKey({ group: "team-a" });
      await store.insertKey(a.record, actor);
      expect(store.listGroups().find((g) => g.name === "team-a")?.keyCount).to.equal(1);
      // Counted for one account: only its keys.
      expect(store.listGroups("default").find((g) => g.name === "team-a")?.keyCount).to.equal(1);
      expect(store.listGroups("other").find((g) => g.name === "team-a")?.keyCount).to.equal(0);
      await expectCode(store.deleteGroup("team-a", actor), "FAILED_PRECONDITION");
      await expectCode(store.deleteGroup("default", actor), "FAILED_PRECONDITION");
      await store.deleteKeys([a.record.id], () => {}, () => actor);
      await store.deleteGroup("team-a", actor);
      expect(store.getGroup("team-a")).to.equal(undefined);
    });

    it("stores prices and tokens and finds tokens by hash", async () => {
      await store.setPrice({ model: "gpt-4o-mini", inputPerMillion: 75_000, outputPerMillion: 300_000, perRequest: 0 }, actor);
      const hash = hashSecret("aat-test");
      await store.insertToken({ id: "tok_1", name: "t", accountId: "default", readOnly: false, secretHash: hash, createdAt: NOW }, actor);
      store = await h.reopen(store);
      expect(store.getPrice("gpt-4o-mini")?.outputPerMillion).to.equal(300_000);
      expect(store.findTokenByHash(hash)?.id).to.equal("tok_1");
      await store.deleteToken("tok_1", actor);
      expect(store.findTokenByHash(hash)).to.equal(undefined);
      await store.deletePrice("gpt-4o-mini", actor);
      expect(store.listPrices()).to.have.length(0);
    });

    it("lists the audit entries about one account's keys only, paging over them alone", async () => {
      const e = (target: string, extra: Record<string, unknown> = {}) => ({ actor: "operator", action: "UpdateKey", target, ...extra });
      await store.appendAudit([
        e("key_a0", { account: "acme" }),
        e("key_a1", { account: "acme" }),
        e("key_b1", { account: "beta" }),
        { actor: "operator", action: "CreditAccount", target: "acme" },
        e("key_a2", { account: "acme" }),
        e("key_b2", { account: "beta" }),
        e("key_a3", { account: "acme", actor: "tok_1" }),
      ]);
      const page1 = await store.listAudit({ account: "acme", limit: 2 });
      expect(page1.map((x) => x.target)).to.deep.equal(["key_a3", "key_a2"]);
      const page2 = await store.listAudit({ account: "acme", limit: 2, before: page1[1]!.id });
      expect(page2.map((x) => x.target)).to.deep.equal(["key_a1", "key_a0"]);
      expect(await store.listAudit({ account: "acme", limit: 2, before: page2[1]!.id })).to.deep.equal([]);
      expect((await store.listAudit({ account: "beta", limit: 10 })).map((x) => x.target)).to.deep.equal(["key_b2", "key_b1"]);
      expect((await store.listAudit({ account: "acme", limit: 10, actor: "tok_1" })).map((x) => x.target)).to.deep.equal(["key_a3"]);
      expect((await store.listAudit({ account: "acme", limit: 10, target: "key_a1" })).map((x) => x.target)).to.deep.equal(["key_a1"]);
      expect(page1[0]!.account).to.equal("acme");
    });

    it("writes one audit entry per mutation, newest first, without secret material", async () => {
      const a = makeKey();
      await store.insertKey(a.record, { actor: "operator", action: "CreateKey", target: a.record.id });
      await store.updateKeys([a.record.id], (c) => ({ record: { ...c.record, name: "renamed" } }), () => ({ actor: "tok_x", action: "UpdateKey", target: a.record.id, before: a.record, after: a.record }));
      const entries = await store.listAudit({ limit: 10 });
      expect(entries.map((e) => e.action)).to.deep.equal(["UpdateKey", "CreateKey"]);
      expect(entries[0]!.actor).to.equal("tok_x");
      const text = JSON.stringify(entries);
      expect(text).to.not.include(a.secret);
      expect(text).to.not.include(a.record.secretHash);
      expect(text).to.not.include("secretEnc");
      expect(await store.listAudit({ limit: 10, target: "nothing" })).to.have.length(0);
    });

    it("maintenance steps (the scheduler runs them): expired reservations released, nothing to recover while serving", async () => {
      const { record, secret } = makeKey();
      await store.insertKey(record, actor);
      await store.adjustBalance("default", 10_000, actor);
      const snap = store.lookup(hashSecretBytes(secret), NOW)!;
      const r = await store.reserve({ handle: snap.handle, keyId: record.id, units: 10, now: NOW, ttlMs: 1000 });
      expect(r.ok).to.equal(true);
      expect(store.needsRecovery).to.equal(false);
      expect(store.releaseExpired(NOW + 500)).to.equal(0);
      expect(store.releaseExpired(NOW + 1000)).to.equal(1);
      store.refill(NOW + 1000); // no refill configured: nothing moves
      expect((await store.getKey(record.id))!.counters.remaining).to.equal(1000);
    });

    it("change feed: never delivers this sidecar's own commits; a peer's commits arrive with absolute values (shared engines)", async () => {
      const seen: BookChange[] = [];
      const from = store.changes.position();
      const unsubscribe = store.changes.subscribe(from, (b) => seen.push(...b.changes));
      try {
        const { record } = makeKey();
        await store.insertKey(record, actor);
        await store.adjustBalance("default", 5, actor);
        expect(seen, "own commits").to.deep.equal([]);
        if (!h.peer) return; // a single-writer engine: nothing else commits
        const peer = await h.peer(store);
        try {
          const other = makeKey();
          await peer.insertKey(other.record, actor);
          for (let i = 0; i < 100 && !seen.some((c) => c.kind === "key" && c.record.id === other.record.id); i++) await new Promise((r) => setTimeout(r, 20));
          const c = seen.find((x) => x.kind === "key" && x.record.id === other.record.id);
          expect(c, "the peer's key").to.not.equal(undefined);
          if (c?.kind === "key") expect(c.counters.remaining).to.equal(1000);
        } finally {
          await peer.close();
        }
      } finally {
        unsubscribe();
      }
    });
    it("change feed applied: a second key book loaded from the store and following its feed ends equal to it (every BookChange variant)", async () => {
      // Another sidecar: load what the store holds, then apply the feed from there on.
      const book = new KeyBook();
      for (const a of store.listAccounts()) book.tables.putAccount(a.record, a.counters);
      for (const { keyCount: _n, budgetUse: _u, ...g } of store.listGroups()) book.tables.putGroup(g, NOW);
      for (const t of store.listTokens()) book.tables.putToken(t);
      for (const p of store.listPrices()) book.tables.putPrice(p);
      for await (const k of store.scanKeys()) book.addKey(hotKeyOf(k.record), { ...k.counters, credited: k.counters.remaining + k.counters.used }, NOW);
      const kinds = new Set<string>();
      const stop = await h.follow(store, (b) => {
        for (const c of b.changes) kinds.add(c.kind);
        applyChanges(book, b.changes, NOW);
      });
      try {
        await store.insertAccount({ id: "acme", name: "Acme", createdAt: NOW }, 1000, actor);
        await store.adjustBalance("acme", 500, actor);
        await store.insertGroup({ name: "team", description: "", ratioPpm: 1_000_000, models: [], createdAt: NOW, budget: { units: 400, period: "monthly" } }, actor);
        const k1 = makeKey({ accountId: "acme", group: "team" });
        const k2 = makeKey({ refill: "daily" });
        await store.insertKey(k1.record, actor);
        await store.insertKey(k2.record, actor);
        await store.updateKeys([k1.record.id], (c) => ({ record: { ...c.record, name: "renamed", quotaTotal: 1500 }, remainingDelta: 500 }), () => actor);
        const k3 = makeKey({ accountId: "acme", refill: "weekly" });
        await store.insertKey(k3.record, actor);
        await store.updateAccount("acme", (a) => ({ ...a, timezone: "America/New_York" }), () => actor);
        const snap = store.lookup(hashSecretBytes(k1.secret), NOW)!;
        const r = await store.reserve({ handle: snap.handle, keyId: k1.record.id, units: 50, now: NOW, ttlMs: 60_000 });
        expect(r.ok).to.equal(true);
        await store.consume({ requestId: "fed-1", keyId: k1.record.id, reservationId: r.ok ? r.reservationId : "", model: "m", inputTokens: 3, outputTokens: 4, units: 40, now: NOW + 1 });
        await store.updateGroup("team", (g) => ({ ...g, ratioPpm: 2_000_000, budget: { units: 900, period: "weekly" } }), () => actor);
        await store.insertGroup({ name: "gone", description: "", ratioPpm: 1_000_000, models: [], createdAt: NOW }, actor);
        await store.deleteGroup("gone", actor);
        await store.insertToken({ id: "tok_fed", name: "t", accountId: "acme", readOnly: true, secretHash: "ab".repeat(32), createdAt: NOW }, actor);
        await store.insertToken({ id: "tok_gone", name: "t", accountId: null, readOnly: false, secretHash: "cd".repeat(32), createdAt: NOW }, actor);
        await store.deleteToken("tok_gone", actor);
        await store.setPrice({ model: "m", inputPerMillion: 1, outputPerMillion: 2, perRequest: 0 }, actor);
        await store.setPrice({ model: "m", inputPerMillion: 3, outputPerMillion: 4, perRequest: 5 }, actor);
        await store.setPrice({ model: "old", inputPerMillion: 1, outputPerMillion: 1, perRequest: 0 }, actor);
        await store.deletePrice("old", actor);
        await store.deleteKeys([k2.record.id], () => {}, () => actor);
        await store.consume({ requestId: "fed-2", keyId: k2.record.id, reservationId: "", model: "m", inputTokens: 1, outputTokens: 1, units: 7, now: NOW + 2 });
        await h.caughtUp?.(store);

        for (const kind of ["key", "keyCounters", "keyDeleted", "account", "accountCounters", "group", "groupBudget", "groupDeleted", "token", "tokenDeleted", "price", "priceDeleted"]) expect(kinds, kind).to.include(kind);
        const mine = (s: { remaining: number; used: number; lastUsedAt: number | null }) => ({ remaining: s.remaining, used: s.used, lastUsedAt: s.lastUsedAt });
        const ids: string[] = [];
        for await (const k of store.scanKeys()) {
          ids.push(k.record.id);
          expect(mine(book.keyState(k.record).counters), k.record.id).to.deep.equal(mine(k.counters));
        }
        expect(book.dump().map((e) => e.id)).to.deep.equal(ids.sort());
        expect(book.hasKey(k2.record.id)).to.equal(false);
        if (store.nextRefillAt) expect(book.nextRefillAt(k3.record.id), "a zone change re-tracks the follower's refill").to.equal(store.nextRefillAt(k3.record.id));
        expect(book.tables.listAccounts()).to.deep.equal(store.listAccounts());
        expect(book.listGroups()).to.deep.equal(store.listGroups());
        expect(book.tables.listTokens()).to.deep.equal(store.listTokens());
        expect(book.tables.listPrices()).to.deep.equal(store.listPrices());
      } finally {
        stop();
      }
    });
  });
}
