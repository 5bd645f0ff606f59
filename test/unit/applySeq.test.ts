// The book's apply step with the engine's per-account sequence (book/applyChange.ts): a sidecar
// on Redis gets absolute counters from its own script replies and from the change feed, over two
// connections, so an older value can arrive after a newer one. Whatever the order, the book ends
// on the newest values; values without a sequence (the embedded engine) always apply.
import { expect } from "chai";
import { createHash } from "node:crypto";
import { applyChanges } from "../../src/store/book/applyChange.js";
import { KeyBook } from "../../src/store/book/keyBook.js";
import type { HotKey } from "../../src/store/book/hotKey.js";
import { NO_RESTRICTIONS } from "../../src/store/keyProjection.js";
import type { BookChange } from "../../src/store/types.js";

const hash = (s: string) => createHash("sha256").update(s).digest();

const hotKey = (id: string): HotKey => ({
  id, secretHash: hash(id), prevSecretHash: null, prevSecretExpiresAt: NaN, accountId: "acct", group: "default", enabled: true,
  unlimited: false, expiresAt: null, quotaTotal: 100, createdAt: 0, refill: "none", limits: { rpm: 0, tpm: 0, concurrency: 0 }, restrictions: NO_RESTRICTIONS,
});

function book(): KeyBook {
  const b = new KeyBook();
  b.tables.loadTables([[{ id: "acct", name: "A", createdAt: 0 }, { balance: 1000, credited: 1000, charged: 0 }]], [{ name: "default", description: "", ratioPpm: 1_000_000, models: [], createdAt: 0 }], [], []);
  for (const id of ["key_1", "key_2"]) b.loadKey(hotKey(id), { remaining: 100, used: 0, credited: 100, lastUsedAt: null, refilledAt: null });
  b.endKeyLoad();
  return b;
}

/** key_1 charged 1 unit per step (seq 1..3), key_2 charged once (seq 4): each step's absolute counters. */
const kc = (id: string, used: number, seq?: number): BookChange => ({ kind: "keyCounters", id, counters: { remaining: 100 - used, used, credited: 100, lastUsedAt: null, refilledAt: null, seq } });
const ac = (charged: number, seq?: number): BookChange => ({ kind: "accountCounters", id: "acct", counters: { balance: 1000 - charged, credited: 1000, charged, seq } });
const steps: BookChange[][] = [
  [kc("key_1", 1, 1), ac(1, 1)],
  [kc("key_1", 2, 2), ac(2, 2)],
  [kc("key_1", 3, 3), ac(3, 3)],
  [kc("key_2", 1, 4), ac(4, 4)],
];

/** Every order of the four steps. */
function permutations<T>(xs: readonly T[]): T[][] {
  if (xs.length <= 1) return [xs.slice()];
  return xs.flatMap((x, i) => permutations([...xs.slice(0, i), ...xs.slice(i + 1)]).map((p) => [x, ...p]));
}

describe("applyChange: counters with the engine's per-account sequence", () => {
  for (const order of permutations([0, 1, 2, 3])) {
    it(`steps applied in the order ${order.join(" ")} end on the newest: key_1 used 3, key_2 used 1, charged 4`, () => {
      const b = book();
      for (const i of order) applyChanges(b, steps[i]!, 0);
      expect(b.keyCounters("key_1")).to.include({ remaining: 97, used: 3 });
      expect(b.keyCounters("key_2")).to.include({ remaining: 99, used: 1 });
      expect(b.tables.accountCounters("acct")).to.deep.equal({ balance: 996, credited: 1000, charged: 4 });
    });
  }

  it("a key's counters are kept per key: a newer commit of another key does not block an older reply of this one", () => {
    const b = book();
    // key_2's charge (seq 5) arrives over the feed first; this sidecar's own reply for key_1 (seq 4) after it.
    applyChanges(b, [kc("key_2", 1, 5), ac(5, 5)], 0);
    applyChanges(b, [kc("key_1", 4, 4), ac(4, 4)], 0);
    expect(b.keyCounters("key_1")).to.include({ used: 4 });
    expect(b.keyCounters("key_2")).to.include({ used: 1 });
    expect(b.tables.accountCounters("acct").charged).to.equal(5);
  });

  it("the same sequence applies again (a read at that sequence: nothing moved since); no sequence always applies", () => {
    const b = book();
    applyChanges(b, [kc("key_1", 2, 7)], 0);
    applyChanges(b, [kc("key_1", 2, 7)], 0);
    expect(b.keyCounters("key_1")).to.include({ used: 2 });
    applyChanges(b, [kc("key_1", 1)], 0);
    expect(b.keyCounters("key_1")).to.include({ used: 1 });
  });

  it("an account record with older counters keeps the record and the newer counters", () => {
    const b = book();
    applyChanges(b, [ac(9, 9)], 0);
    applyChanges(b, [{ kind: "account", record: { id: "acct", name: "Renamed", createdAt: 0 }, counters: { balance: 1000, credited: 1000, charged: 0, seq: 2 } }], 0);
    expect(b.tables.account("acct")!.record.name).to.equal("Renamed");
    expect(b.tables.accountCounters("acct").charged).to.equal(9);
  });

  it("forgetSeqs (a reload from a Redis restored to an older state): lower sequences apply again", () => {
    const b = book();
    applyChanges(b, [kc("key_1", 5, 50), ac(5, 50)], 0);
    b.forgetSeqs();
    applyChanges(b, [kc("key_1", 1, 3), ac(1, 3)], 0);
    expect(b.keyCounters("key_1")).to.include({ used: 1 });
    expect(b.tables.accountCounters("acct").charged).to.equal(1);
  });

  it("a removed key's slot forgets its sequence: a new key there takes its own account's (lower) sequence", () => {
    const b = book();
    applyChanges(b, [kc("key_2", 1, 90)], 0);
    b.removeKeys(["key_2"]);
    const k: HotKey = {
      id: "key_3", secretHash: hash("key_3"), prevSecretHash: null, prevSecretExpiresAt: NaN, accountId: "acct", group: "default", enabled: true,
      unlimited: false, expiresAt: null, quotaTotal: 100, createdAt: 0, refill: "none", limits: { rpm: 0, tpm: 0, concurrency: 0 }, restrictions: NO_RESTRICTIONS,
    };
    b.loadKey(k, { remaining: 100, used: 0, credited: 100, lastUsedAt: null, refilledAt: null });
    applyChanges(b, [kc("key_3", 2, 1)], 0);
    expect(b.keyCounters("key_3")).to.include({ used: 2 });
  });
});

// A reload (Redis unreachable for a while, the feed trimmed past this sidecar's position) forgets
// the sequences, then takes the ones it reads with the counters: a reply or feed entry older than
// the reloaded state — on a cluster a peer's feed entry may land after a later commit's — is
// dropped as before the reload, instead of leaving stale counters until the next change.
describe("applyChange after a reload: the book holds the sequences the load read", () => {
  it("a feed entry older than the reloaded counters is dropped (key and account)", () => {
    const b = book();
    applyChanges(b, [kc("key_1", 5, 50), ac(5, 50)], 0);
    b.forgetSeqs();
    b.beginKeyReload();
    // What the load read: account at sequence 52, key_1 used 7 at 52.
    expect(b.acceptAccountSeq("acct", 52)).to.equal(true);
    b.tables.loadTables([[{ id: "acct", name: "A", createdAt: 0 }, { balance: 993, credited: 1000, charged: 7 }]], [{ name: "default", description: "", ratioPpm: 1_000_000, models: [], createdAt: 0 }], [], []);
    b.loadKey(hotKey("key_1"), { remaining: 93, used: 7, credited: 100, lastUsedAt: null, refilledAt: null }, 52);
    b.endKeyLoad();
    // The commit at 51, arriving late.
    applyChanges(b, [kc("key_1", 6, 51), ac(6, 51)], 0);
    expect(b.keyCounters("key_1")).to.include({ used: 7 });
    expect(b.tables.accountCounters("acct").charged).to.equal(7);
    // A later one applies.
    applyChanges(b, [kc("key_1", 8, 53), ac(8, 53)], 0);
    expect(b.keyCounters("key_1")).to.include({ used: 8 });
    expect(b.tables.accountCounters("acct").charged).to.equal(8);
  });

  it("counters a feed entry brought while the load's read was on the wire stay when newer than the load's", () => {
    const b = book();
    b.forgetSeqs();
    b.beginKeyReload();
    applyChanges(b, [kc("key_1", 9, 60)], 0);
    b.loadKey(hotKey("key_1"), { remaining: 93, used: 7, credited: 100, lastUsedAt: null, refilledAt: null }, 58);
    expect(b.keyCounters("key_1")).to.include({ used: 9 });
    applyChanges(b, [kc("key_1", 8, 59)], 0);
    expect(b.keyCounters("key_1")).to.include({ used: 9 });
    // Not newer: the load's values (and sequence) win.
    b.loadKey(hotKey("key_2"), { remaining: 96, used: 4, credited: 100, lastUsedAt: null, refilledAt: null }, 58);
    applyChanges(b, [kc("key_2", 3, 57)], 0);
    expect(b.keyCounters("key_2")).to.include({ used: 4 });
  });
});
