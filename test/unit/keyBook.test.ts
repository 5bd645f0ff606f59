// The key book without any engine: Check's verdict (evaluatePolicy on lookup's snapshot) and the
// book's reserve apply the same money rule (policy/admit.ts), so they agree on every state; a
// charge moves key and account together; a deleted key's reservations go with it.
import { expect } from "chai";
import { createHash } from "node:crypto";
import { evaluatePolicy } from "../../src/policy/evaluate.js";
import type { AuthInput, PolicyConfig } from "../../src/policy/types.js";
import { KeyBook } from "../../src/store/book/keyBook.js";
import { charge } from "../../src/store/book/charge.js";
import type { HotKey } from "../../src/store/book/hotKey.js";
import { NO_RESTRICTIONS } from "../../src/store/keyProjection.js";

const NOW = Date.UTC(2026, 11, 6, 12);
const hash = (s: string) => createHash("sha256").update(s).digest();
const config: PolicyConfig = { denyUnpricedModels: false, defaultEstimateUnits: 0, inputEstimateTokens: 0, defaultMaxTokens: 0 };
const request = (units: number): AuthInput => ({ credential: "sk-x", clientIp: null, model: null, modelDeclared: false, modelConflict: false, maxTokens: null, estimatedUnits: units, malformed: null });

function book(balance: number, quota: number | null, limits = { rpm: 0, tpm: 0, concurrency: 0 }): KeyBook {
  const b = new KeyBook();
  b.tables.loadTables([[{ id: "acct", name: "A", createdAt: 0 }, { balance, credited: balance, charged: 0 }]], [{ name: "default", description: "", ratioPpm: 1_000_000, models: [], createdAt: 0 }], [], []);
  const k: HotKey = {
    id: "key_1", secretHash: hash("sk-x"), prevSecretHash: null, prevSecretExpiresAt: NaN, accountId: "acct", group: "default", enabled: true,
    unlimited: quota === null, expiresAt: null, quotaTotal: quota ?? 0, createdAt: 0, refill: "none", limits, restrictions: NO_RESTRICTIONS,
  };
  b.loadKey(k, { remaining: quota ?? 0, used: 0, credited: quota ?? 0, lastUsedAt: null, refilledAt: null });
  return b;
}

describe("KeyBook: one money rule for Check and reserve, no engine", () => {
  const cases: { name: string; balance: number; quota: number | null; units: number; limits?: { rpm: number; tpm: number; concurrency: number }; open?: number }[] = [
    { name: "enough of both", balance: 100, quota: 100, units: 10 },
    { name: "balance short", balance: 5, quota: 100, units: 10 },
    { name: "quota short", balance: 100, quota: 5, units: 10 },
    { name: "an empty account and 1 unit", balance: 0, quota: null, units: 1 },
    { name: "unlimited key", balance: 100, quota: null, units: 100 },
    { name: "concurrency full", balance: 100, quota: 100, units: 1, limits: { rpm: 0, tpm: 0, concurrency: 1 }, open: 1 },
    { name: "rpm full", balance: 100, quota: 100, units: 1, limits: { rpm: 2, tpm: 0, concurrency: 0 }, open: 2 },
  ];
  for (const c of cases) {
    it(`Check and reserve agree: ${c.name}`, () => {
      const b = book(c.balance, c.quota, c.limits);
      // Fill the window / concurrency slots with reservations first (units 0: they hold no money).
      for (let i = 0; i < (c.open ?? 0); i++) expect(b.reserve({ handle: b.lookup(hash("sk-x"), NOW)!.handle, keyId: "key_1", units: 0, now: NOW, ttlMs: 60_000 }).ok).to.equal(c.balance > 0);
      const snap = b.lookup(hash("sk-x"), NOW)!;
      const verdict = evaluatePolicy({ now: NOW, request: request(c.units), key: snap.key, group: snap.group, account: snap.account, price: undefined, rate: snap.rate, config });
      const r = b.reserve({ handle: snap.handle, keyId: "key_1", units: c.units, now: NOW, ttlMs: 60_000 });
      expect(r.ok ? "ALLOWED" : r.reason).to.equal(verdict.reason);
      if (!r.ok && !verdict.allowed) expect(r.retryAfterMs).to.equal(verdict.retryAfterMs);
    });
  }

  it("a charge settles its reservation and moves key and account together", () => {
    const b = book(1000, 500);
    const r = b.reserve({ handle: b.lookup(hash("sk-x"), NOW)!.handle, keyId: "key_1", units: 100, now: NOW, ttlMs: 60_000 });
    if (!r.ok) throw new Error(r.reason);
    const rec = charge(b, { requestId: "req-1", keyId: "key_1", reservationId: r.reservationId, model: "m", inputTokens: 1, outputTokens: 1, units: 60, now: NOW });
    expect([rec.keyRemaining, rec.accountBalance, b.openReservations]).to.deep.equal([440, 940, 0]);
    expect(b.keyCounters("key_1")).to.include({ remaining: 440, used: 60, credited: 500 });
    expect(b.tables.accountCounters("acct")).to.deep.equal({ balance: 940, credited: 1000, charged: 60 });
  });

  it("removing a key releases its open reservations' hold on the account", () => {
    const b = book(1000, 500);
    b.reserve({ handle: b.lookup(hash("sk-x"), NOW)!.handle, keyId: "key_1", units: 100, now: NOW, ttlMs: 60_000 });
    b.removeKeys(["key_1"]);
    expect([b.openReservations, b.tables.account("acct")!.counters.reserved, b.lookup(hash("sk-x"), NOW)]).to.deep.equal([0, 0, undefined]);
  });
});

// A load sees a key more than once when Redis's HSCAN returns a field twice (the hash resized
// mid-scan; test/integration/fleetLoad.test.ts makes Redis do it): the second sighting replaces
// the first and adds nothing — one key in the index, counted once in its (latest) group, with the
// latest refill state.
describe("KeyBook: a load is idempotent per key", () => {
  const hot = (id: string, group: string, refill: HotKey["refill"] = "none"): HotKey => ({
    id, secretHash: hash(id), prevSecretHash: null, prevSecretExpiresAt: NaN, accountId: "acct", group, enabled: true,
    unlimited: false, expiresAt: null, quotaTotal: 100, createdAt: 0, refill, limits: { rpm: 0, tpm: 0, concurrency: 0 }, restrictions: NO_RESTRICTIONS,
  });
  const counters = (used: number) => ({ remaining: 100 - used, used, credited: 100, lastUsedAt: null, refilledAt: null });
  const tables = (b: KeyBook) =>
    b.tables.loadTables([[{ id: "acct", name: "A", createdAt: 0 }, { balance: 0, credited: 0, charged: 0 }]], ["default", "team"].map((name) => ({ name, description: "", ratioPpm: 1_000_000, models: [], createdAt: 0 })), [], []);

  for (const reload of [false, true]) {
    it(`a key loaded twice in one ${reload ? "reload" : "first load"}: one key, counted once, in its last sighting's group with its last counters and refill`, () => {
      const b = new KeyBook();
      tables(b);
      if (reload) {
        for (const id of ["key_1", "key_2", "key_3"]) b.loadKey(hot(id, "default"), counters(0));
        b.endKeyLoad();
        b.beginKeyReload();
      }
      b.loadKey(hot("key_1", "default", "monthly"), counters(1));
      b.loadKey(hot("key_2", "team"), counters(0));
      b.loadKey(hot("key_3", "team"), counters(0));
      // The second sightings: key_2 unchanged, key_1 moved to "team" (and its refill gone) between the two.
      b.loadKey(hot("key_2", "team"), counters(0));
      b.loadKey(hot("key_1", "team"), counters(2));
      b.endKeyLoad();
      expect(b.index.size).to.equal(3);
      expect(b.groupKeyCounts()).to.deep.equal({ team: 3 });
      expect(b.keysInGroup("team")).to.equal(3);
      expect(b.listGroups().map((g) => [g.name, g.keyCount])).to.deep.equal([["default", 0], ["team", 3]]);
      expect(b.keyCounters("key_1")).to.include({ used: 2, remaining: 98 });
      expect(b.nextRefillAt("key_1")).to.equal(null);
    });
  }

  it("a reload's group counts are the index's: keys added and removed while it ran count once", () => {
    const b = new KeyBook();
    tables(b);
    for (const id of ["key_1", "key_2"]) b.loadKey(hot(id, "team"), counters(0));
    b.endKeyLoad();
    b.beginKeyReload();
    b.loadKey(hot("key_1", "team"), counters(0));
    // A change feed entry while the reload runs: a new key (its chunk sees it too) and a delete.
    b.addKey(hot("key_9", "team"), counters(0), 0);
    b.loadKey(hot("key_9", "team"), counters(0));
    b.removeKeys(["key_2"]);
    b.endKeyLoad();
    expect(b.groupKeyCounts()).to.deep.equal({ team: 2 });
  });
});
