// The hot index's id column and id → slot table: packed ids and the ones kept as strings,
// removal and slot reuse, growth and rehashing (with and without a reserve hint).
import { expect } from "chai";
import { createHash } from "node:crypto";
import { HotIndex } from "../../src/store/book/hotIndex.js";
import { NO_RESTRICTIONS } from "../../src/store/keyProjection.js";
import type { HotKey } from "../../src/store/book/hotKey.js";

function key(id: string, over: Partial<HotKey> = {}): HotKey {
  return {
    id,
    secretHash: createHash("sha256").update(id).digest(),
    prevSecretHash: null,
    prevSecretExpiresAt: NaN,
    accountId: "default",
    group: "default",
    enabled: true,
    unlimited: false,
    expiresAt: null,
    quotaTotal: 10,
    createdAt: 0,
    refill: "none",
    limits: { rpm: 0, tpm: 0, concurrency: 0 },
    restrictions: NO_RESTRICTIONS,
    ...over,
  };
}
const counters = { remaining: 10, used: 0, credited: 10, lastUsedAt: null };
const hashOf = (id: string) => createHash("sha256").update(id).digest();

describe("HotIndex ids", () => {
  const ids = [
    ["a generated id", "key_0123456789ABCDEFGHij"],
    ["a short id", "k"],
    ["24 characters exactly", "x".repeat(24)],
    ["25 characters (kept as a string)", "y".repeat(25)],
    ["non-ASCII (kept as a string)", "key_ünï"],
    ["with a NUL (kept as a string)", "key_\u0000z"],
    ["empty (kept as a string)", ""],
    ["a prefix of another id", "key_0123456789ABCDEFGHi"],
  ] as const;

  it("idOf keeps recent ids (issue 18) and never answers a slot's former id: removal, reuse by another id, 100,000 keys", () => {
    const ix = new HotIndex(16);
    ix.upsert(key("key_first"), counters);
    const slot = ix.slotOf("key_first");
    expect(ix.idOf(slot)).to.equal("key_first");
    expect(ix.idOf(slot), "the same string, kept").to.equal("key_first");
    ix.remove("key_first");
    expect(ix.idOf(slot)).to.equal("");
    ix.upsert(key("key_second"), counters);
    expect(ix.slotOf("key_second"), "the freed slot, reused").to.equal(slot);
    expect(ix.idOf(slot)).to.equal("key_second");
    ix.remove("key_second");
    ix.upsert(key("x".repeat(30)), counters); // kept as a string, same slot
    expect(ix.idOf(slot)).to.equal("x".repeat(30));
    const big = new HotIndex(1024);
    for (let i = 0; i < 100_000; i++) big.upsert(key(`key_${i}`), counters);
    for (let i = 0; i < 100_000; i += 7) expect(big.idOf(big.slotOf(`key_${i}`))).to.equal(`key_${i}`);
    for (let i = 0; i < 100_000; i += 3) big.remove(`key_${i}`);
    for (let i = 0; i < 100_000; i += 3) big.upsert(key(`new_${i}`), counters);
    for (let i = 0; i < 100_000; i++) {
      const id = i % 3 === 0 ? `new_${i}` : `key_${i}`;
      expect(big.idOf(big.slotOf(id))).to.equal(id);
    }
  });

  for (const [name, id] of ids) {
    it(`finds, names and removes ${name}`, () => {
      const ix = new HotIndex(16);
      for (const [, other] of ids) ix.upsert(key(other), counters);
      const slot = ix.slotOf(id);
      expect(slot).to.be.at.least(0);
      expect(ix.idOf(slot)).to.equal(id);
      expect(ix.hasId(slot, id)).to.equal(true);
      expect(ix.findByHash(hashOf(id), 0)).to.equal(slot);
      for (const [, other] of ids) if (other !== id) expect(ix.hasId(slot, other)).to.equal(false);
      ix.remove(id);
      expect(ix.slotOf(id)).to.equal(-1);
      expect(ix.hasId(slot, id)).to.equal(false);
      expect(ix.idOf(slot)).to.equal("");
      expect(ix.findByHash(hashOf(id), 0)).to.equal(-1);
      for (const [, other] of ids) if (other !== id) expect(ix.idOf(ix.slotOf(other))).to.equal(other);
      expect(ix.size).to.equal(ids.length - 1);
    });
  }

  it("an upsert of a known id replaces the key in its slot", () => {
    const ix = new HotIndex(16);
    const s = ix.upsert(key("key_a"), counters);
    const s2 = ix.upsert(key("key_a", { enabled: false, secretHash: hashOf("other") }), counters);
    expect(s2).to.equal(s);
    expect(ix.size).to.equal(1);
    expect(ix.isEnabled(s)).to.equal(false);
    expect(ix.findByHash(hashOf("key_a"), 0)).to.equal(-1);
    expect(ix.findByHash(hashOf("other"), 0)).to.equal(s);
  });

  for (const reserve of [0, 5000, 100]) {
    it(`keeps every id through growth and removals (reserve hint ${reserve})`, () => {
      const ix = new HotIndex(16);
      if (reserve) ix.reserve(reserve);
      const n = 5000;
      const all = Array.from({ length: n }, (_, i) => (i % 97 === 0 ? `long-key-id-number-${i}-${"z".repeat(10)}` : `key_${String(i).padStart(20, "0")}`));
      for (const id of all) ix.upsert(key(id), counters);
      for (let i = 0; i < n; i += 3) ix.remove(all[i]!);
      // Freed slots are reused; the new keys get their own ids.
      for (let i = 0; i < n; i += 3) ix.upsert(key(`re_${i}`), counters);
      for (let i = 0; i < n; i++) {
        const gone = i % 3 === 0;
        expect(ix.slotOf(all[i]!) >= 0).to.equal(!gone);
        if (!gone) expect(ix.idOf(ix.slotOf(all[i]!))).to.equal(all[i]);
        if (gone) expect(ix.idOf(ix.slotOf(`re_${i}`))).to.equal(`re_${i}`);
      }
      expect(ix.size).to.equal(n);
      expect([...ix.slots()].map((s) => ix.idOf(s)).sort()).to.deep.equal([...all.filter((_, i) => i % 3 !== 0), ...all.flatMap((_, i) => (i % 3 === 0 ? [`re_${i}`] : []))].sort());
    });
  }
});

describe("HotIndex rate limits (sparse)", () => {
  it("reads back each key's limits, and nothing for a key without any", () => {
    const ix = new HotIndex(16);
    const none = ix.upsert(key("key_none"), counters);
    const all = ix.upsert(key("key_all", { limits: { rpm: 60, tpm: 100_000, concurrency: 4 } }), counters);
    const conc = ix.upsert(key("key_conc", { limits: { rpm: 0, tpm: 0, concurrency: 2 } }), counters);
    expect(ix.limits(none)).to.deep.equal({ rpm: 0, tpm: 0, concurrency: 0 });
    expect(ix.isRated(none)).to.equal(false);
    expect(ix.limits(all)).to.deep.equal({ rpm: 60, tpm: 100_000, concurrency: 4 });
    expect(ix.isRated(all)).to.equal(true);
    // Concurrency alone is a limit, not a rate: no rate window.
    expect(ix.limits(conc)).to.deep.equal({ rpm: 0, tpm: 0, concurrency: 2 });
    expect(ix.isRated(conc)).to.equal(false);
    expect(ix.rateWindowForWrite(conc)).to.equal(undefined);
    // What a reader gets cannot change the index.
    expect(Object.isFrozen(ix.limits(all))).to.equal(true);
    expect(Object.isFrozen(ix.limits(none))).to.equal(true);
  });

  it("an update sets, changes and clears them; a reused slot does not inherit them", () => {
    const ix = new HotIndex(16);
    const s = ix.upsert(key("key_a", { limits: { rpm: 5, tpm: 6, concurrency: 7 } }), counters);
    ix.upsert(key("key_a", { limits: { rpm: 1, tpm: 0, concurrency: 0 } }), counters);
    expect(ix.limits(s)).to.deep.equal({ rpm: 1, tpm: 0, concurrency: 0 });
    ix.upsert(key("key_a"), counters);
    expect(ix.limits(s)).to.deep.equal({ rpm: 0, tpm: 0, concurrency: 0 });
    expect(ix.isRated(s)).to.equal(false);
    ix.upsert(key("key_a", { limits: { rpm: 9, tpm: 9, concurrency: 9 } }), counters);
    ix.remove("key_a");
    const reused = ix.upsert(key("key_b"), counters);
    expect(reused).to.equal(s);
    expect(ix.limits(reused)).to.deep.equal({ rpm: 0, tpm: 0, concurrency: 0 });
    expect(ix.entry(reused).limits).to.deep.equal({ rpm: 0, tpm: 0, concurrency: 0 });
  });
});
