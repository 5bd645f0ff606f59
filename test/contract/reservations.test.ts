// LevelStore reservations on the slab: what a reservation id resolves to, what it must not,
// deletes and TTL sweeps giving back what they held, on real LevelDB in a temp dir.
import { expect } from "chai";
import { hashSecretBytes } from "../../src/keys/secrets.js";
import { LevelStore } from "../../src/store/level/levelStore.js";
import { removeDir, tempDir } from "../helpers/tmp.js";
import { makeKey } from "./store.contract.js";

const NOW = Date.UTC(2026, 10, 27, 12, 0, 0);
const actor = { actor: "operator", action: "Test", target: "t" };

describe("LevelStore reservations", () => {
  let dir: string;
  let store: LevelStore;
  const a = makeKey({ quotaTotal: 1000 });
  const b = makeKey({ quotaTotal: 1000 });

  beforeEach(async () => {
    dir = await tempDir();
    store = new LevelStore({ dir, clock: () => NOW });
    await store.open(NOW);
    await store.adjustBalance("default", 10_000, actor);
    await store.insertKey(a.record, actor);
    await store.insertKey(b.record, actor);
  });
  afterEach(async () => {
    await store.close();
    await removeDir(dir);
  });

  const reserve = (k: typeof a, units: number, ttlMs = 60_000, now = NOW) => {
    const snap = store.lookup(hashSecretBytes(k.secret), now)!;
    const r = store.reserve({ handle: snap.handle, keyId: k.record.id, units, now, ttlMs });
    if (!r.ok) throw new Error(r.reason);
    return r.reservationId;
  };
  const available = (k: typeof a) => store.lookup(hashSecretBytes(k.secret), NOW)!.key.quotaAvailable;
  const accountAvailable = () => store.lookup(hashSecretBytes(a.secret), NOW)!.account!.available;

  it("a reservation id names its key, and Consume of it settles the hold", async () => {
    const id = reserve(a, 100);
    expect(id).to.match(new RegExp(`^rsv_[0-9A-Za-z]{20}\\.${a.record.id}$`));
    expect(store.resolveConsumeTarget({ kind: "reservation", id }, NOW)).to.include({ keyId: a.record.id, reservationId: id });
    expect(available(a)).to.equal(900);
    await store.consume({ requestId: "r1", keyId: a.record.id, reservationId: id, model: "m", inputTokens: 1, outputTokens: 1, units: 40, now: NOW });
    expect(available(a)).to.equal(960);
    expect(store.openReservations).to.equal(0);
    expect(store.release(id)).to.equal(false);
    // A settled reservation still names its key (the id carries it), as before a restart.
    expect(store.resolveConsumeTarget({ kind: "reservation", id }, NOW)).to.include({ keyId: a.record.id, reservationId: "" });
  });

  it("an id with another key's id in it releases nothing and settles nothing", async () => {
    const id = reserve(a, 100);
    const forged = id.slice(0, id.indexOf(".") + 1) + b.record.id;
    expect(store.release(forged)).to.equal(false);
    expect(store.resolveConsumeTarget({ kind: "reservation", id: forged }, NOW)).to.include({ keyId: b.record.id, reservationId: "" });
    await store.consume({ requestId: "r2", keyId: b.record.id, reservationId: forged, model: "m", inputTokens: 1, outputTokens: 1, units: 5, now: NOW });
    expect(available(a)).to.equal(900);
    expect(available(b)).to.equal(995);
    expect(store.openReservations).to.equal(1);
  });

  it("deleting a key drops its open reservations and gives the account back their units", async () => {
    reserve(a, 100);
    reserve(a, 50);
    const keepId = reserve(b, 10);
    expect(accountAvailable()).to.equal(10_000 - 160);
    await store.deleteKeys([a.record.id], () => {}, () => actor);
    expect(store.openReservations).to.equal(1);
    expect(store.lookup(hashSecretBytes(b.secret), NOW)!.account!.available).to.equal(10_000 - 10);
    // A new key in the freed slot starts with nothing reserved.
    const c = makeKey({ quotaTotal: 1000 });
    await store.insertKey(c.record, actor);
    expect(available(c)).to.equal(1000);
    expect(store.release(keepId)).to.equal(true);
    expect(store.lookup(hashSecretBytes(b.secret), NOW)!.account!.available).to.equal(10_000);
  });

  it("the TTL sweep releases exactly the expired ones, in and out of expiry order", () => {
    reserve(a, 1, 1000);
    reserve(a, 2, 2000);
    reserve(b, 4, 3000);
    expect(store.releaseExpired(NOW + 2000)).to.equal(2);
    expect(available(a)).to.equal(1000);
    expect(available(b)).to.equal(996);
    // A shorter TTL after a longer one: creation order is no longer expiry order.
    reserve(a, 8, 10_000);
    reserve(a, 16, 500);
    expect(store.releaseExpired(NOW + 600)).to.equal(1);
    expect(available(a)).to.equal(992);
    expect(store.releaseExpired(NOW + 10_000)).to.equal(2);
    expect(store.openReservations).to.equal(0);
    expect(accountAvailable()).to.equal(10_000);
  });

  it("rpm and tpm limits count from the first request (windows are created on first use), also across a key update", async () => {
    const k = makeKey({ unlimited: true, quotaTotal: 0, limits: { rpm: 3, tpm: 0, concurrency: 0 } });
    await store.insertKey(k.record, actor);
    const attempt = (now = NOW) => {
      const snap = store.lookup(hashSecretBytes(k.secret), now)!;
      return store.reserve({ handle: snap.handle, keyId: k.record.id, units: 1, now, ttlMs: 60_000 });
    };
    expect(store.lookup(hashSecretBytes(k.secret), NOW)!.rate.requestsInWindow).to.equal(0);
    expect([attempt().ok, attempt().ok].every(Boolean)).to.equal(true);
    await store.updateKeys([k.record.id], (c) => ({ record: { ...c.record, name: "renamed" } }), () => actor);
    expect(store.lookup(hashSecretBytes(k.secret), NOW)!.rate.requestsInWindow).to.equal(2);
    expect(attempt().ok).to.equal(true);
    const denied = attempt();
    expect(denied.ok ? "" : denied.reason).to.equal("RATE_LIMITED");
    expect(attempt(NOW + 61_000).ok).to.equal(true);
    // tpm: tokens come from Consume.
    await store.updateKeys([k.record.id], (c) => ({ record: { ...c.record, limits: { rpm: 0, tpm: 100, concurrency: 0 } } }), () => actor);
    await store.consume({ requestId: "t1", keyId: k.record.id, reservationId: "", model: "m", inputTokens: 60, outputTokens: 40, units: 1, now: NOW + 61_000 });
    const byTokens = attempt(NOW + 61_000);
    expect(byTokens.ok ? "" : byTokens.reason).to.equal("RATE_LIMITED");
  });

  it("many open reservations: every one settles to the unit", async () => {
    const big = [makeKey({ quotaTotal: 100_000 }), makeKey({ quotaTotal: 100_000 })];
    for (const k of big) await store.insertKey(k.record, actor);
    const ids = Array.from({ length: 5000 }, (_, i) => reserve(big[i % 2]!, 1 + (i % 2)));
    expect(store.openReservations).to.equal(5000);
    expect(available(big[0]!)).to.equal(100_000 - 2500);
    expect(available(big[1]!)).to.equal(100_000 - 5000);
    for (const id of ids.filter((_, i) => i % 3 === 0)) expect(store.release(id)).to.equal(true);
    expect(store.releaseExpired(NOW + 60_000)).to.equal(5000 - Math.ceil(5000 / 3));
    expect(store.openReservations).to.equal(0);
    expect(available(big[0]!)).to.equal(100_000);
    expect(available(big[1]!)).to.equal(100_000);
    expect(accountAvailable()).to.equal(10_000);
  });

  it("at AISA_MAX_RESERVATIONS a Check releases the oldest reservation early; a late Consume of it still charges", async () => {
    const cappedDir = await tempDir();
    const capped = new LevelStore({ dir: cappedDir, clock: () => NOW, maxReservations: 3 });
    await capped.open(NOW);
    try {
      await capped.adjustBalance("default", 10_000, actor);
      await capped.insertKey(a.record, actor);
      const hold = (units: number) => {
        const snap = capped.lookup(hashSecretBytes(a.secret), NOW)!;
        const r = capped.reserve({ handle: snap.handle, keyId: a.record.id, units, now: NOW, ttlMs: 60_000 });
        if (!r.ok) throw new Error(r.reason);
        return r.reservationId;
      };
      const avail = () => capped.lookup(hashSecretBytes(a.secret), NOW)!.key.quotaAvailable;
      const ids = [hold(1), hold(2), hold(4)];
      expect([capped.openReservations, capped.reservationsEvicted, avail()]).to.deep.equal([3, 0, 993]);
      ids.push(hold(8)); // the oldest (1 unit) goes
      expect([capped.openReservations, capped.reservationsEvicted, avail()]).to.deep.equal([3, 1, 986]);
      expect(capped.release(ids[0]!)).to.equal(false);
      expect(capped.release(ids[1]!)).to.equal(true);
      expect(capped.reservationCapacity).to.equal(16); // never past the initial slots here
      // The evicted id still names its key: Consume charges it (no hold to settle).
      expect(capped.resolveConsumeTarget({ kind: "reservation", id: ids[0]! }, NOW)).to.include({ keyId: a.record.id, reservationId: "" });
      await capped.consume({ requestId: "late", keyId: a.record.id, reservationId: ids[0]!, model: "m", inputTokens: 1, outputTokens: 1, units: 5, now: NOW });
      expect(avail()).to.equal(1000 - 5 - 12);
    } finally {
      await capped.close();
      await removeDir(cappedDir);
    }
  });

  it("the TTL sweep gives the slab's memory back after a burst (within two TTLs of its end)", () => {
    const ids = Array.from({ length: 20_000 }, () => reserve(a, 0, 1000));
    expect(store.reservationCapacity).to.be.at.least(20_000);
    // Opened while the burst is open: above it in the slab, and it outlives the burst.
    const during = reserve(b, 1, 1000, NOW + 500);
    expect(store.releaseExpired(NOW + 1000)).to.equal(20_000);
    expect(store.reservationCapacity).to.be.at.least(20_000);
    // After the burst: the lowest free slot.
    const after = reserve(b, 1, 1000, NOW + 1200);
    expect(store.releaseExpired(NOW + 1500)).to.equal(1);
    expect(store.reservationCapacity).to.be.at.most(1024);
    expect(store.release(ids[0]!)).to.equal(false);
    expect(store.release(during)).to.equal(false);
    expect(store.openReservations).to.equal(1);
    expect(store.release(after)).to.equal(true);
  });
});
