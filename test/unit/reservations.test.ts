// The reservation slab: id format, lookups (and what must find nothing), creation order
// through removals, slot reuse and growth.
import { expect } from "chai";
import { RESERVATION_KEY_AT, ReservationSlab } from "../../src/store/book/reservations.js";

const order = (s: ReservationSlab): number[] => {
  const out: number[] = [];
  for (let r = s.first(); r !== -1; r = s.after(r)) out.push(r);
  return out;
};

describe("ReservationSlab", () => {
  it("ids keep the format rsv_ + 20 base62 + . + key id, and find their slot", () => {
    const s = new ReservationSlab(16);
    const ids = ["key_0123456789ABCDEFGHij", "k.with.dots", "ü"].map((k, i) => s.add(i, k, 7, 10 + i, 1000 + i));
    ids.forEach((id, i) => {
      expect(id).to.match(/^rsv_[0-9A-Za-z]{20}\./);
      expect(id.slice(RESERVATION_KEY_AT)).to.equal(["key_0123456789ABCDEFGHij", "k.with.dots", "ü"][i]);
      const r = s.find(id);
      expect(r).to.be.at.least(0);
      expect([s.keySlot(r), s.account(r), s.units(r), s.expiresAt(r)]).to.deep.equal([i, 7, 10 + i, 1000 + i]);
    });
    expect(s.size).to.equal(3);
  });

  it("ids written through the scratch buffer (issue 18) are each their own string: every key id shape, 5,000 ids held at once", () => {
    const s = new ReservationSlab(16);
    const shapes = ["key_0123456789ABCDEFGHij", "", "k", "ü", "ÿ\u0080x", "日本", "key_😀", "z".repeat(64), "z".repeat(65), "a.b.c"];
    const made: [string, string][] = [];
    for (let i = 0; i < 5000; i++) {
      const k = shapes[i % shapes.length]! + (i % 20 < 10 ? "" : String(i));
      made.push([s.add(i, k, 1, 1, 1000), k]);
    }
    const seen = new Set<string>();
    made.forEach(([id, k], i) => {
      expect(id).to.match(/^rsv_[0-9A-Za-z]{20}\./);
      expect(id.slice(RESERVATION_KEY_AT), `key id ${JSON.stringify(k)}`).to.equal(k);
      expect(id.length).to.equal(RESERVATION_KEY_AT + k.length);
      expect(s.keySlot(s.find(id))).to.equal(i);
      seen.add(id.slice(0, RESERVATION_KEY_AT));
    });
    expect(seen.size, "a slot and nonce per id").to.equal(5000);
  });

  const bad: [string, (id: string) => string][] = [
    ["another nonce", (id) => id.slice(0, 10) + (id[10] === "a" ? "b" : "a") + id.slice(11)],
    ["another slot", (id) => id.slice(0, 8) + (id[8] === "1" ? "2" : "1") + id.slice(9)],
    ["no prefix", (id) => "rsx_" + id.slice(4)],
    ["no dot", (id) => id.slice(0, 24) + "x" + id.slice(25)],
    ["truncated", (id) => id.slice(0, 24)],
    ["a non-base62 slot", (id) => id.slice(0, 4) + "!" + id.slice(5)],
    ["empty", () => ""],
  ];
  for (const [name, forge] of bad) {
    it(`finds nothing for ${name}`, () => {
      const s = new ReservationSlab(16);
      s.add(0, "a", 0, 1, 1);
      const id = s.add(1, "key_x", 0, 1, 1);
      expect(s.find(forge(id))).to.equal(-1);
    });
  }

  it("a removed reservation's id finds nothing, also after its slot is reused", () => {
    const s = new ReservationSlab(16);
    const keep = s.add(0, "a", 0, 1, 1);
    const id = s.add(1, "b", 0, 1, 1);
    const r = s.find(id);
    s.remove(r);
    expect(s.find(id)).to.equal(-1);
    const again = s.add(2, "b", 0, 1, 1);
    expect(s.find(again)).to.equal(r); // the slot is reused ...
    expect(s.find(id)).to.equal(-1); // ... with a new nonce
    expect(s.find(keep)).to.be.at.least(0);
    s.remove(r);
    s.remove(r); // twice is a no-op
    expect(s.size).to.equal(1);
  });

  it("keeps creation order through removals at the head, middle and tail, and through growth", () => {
    const s = new ReservationSlab(16);
    const ids = Array.from({ length: 100 }, (_, i) => s.add(i, `k${i}`, 0, 1, i));
    const slotOf = (i: number) => s.find(ids[i]!);
    const want = ids.map((_, i) => i);
    for (const i of [0, 50, 99, 1, 98, 49, 51]) {
      s.remove(slotOf(i));
      want.splice(want.indexOf(i), 1);
    }
    expect(order(s).map((r) => s.keySlot(r))).to.deep.equal(want);
    const more = s.add(1000, "new", 0, 1, 0);
    expect(s.keySlot(order(s).at(-1)!)).to.equal(1000);
    expect(s.find(more)).to.equal(order(s).at(-1));
    for (const i of want) s.remove(slotOf(i));
    s.remove(s.find(more));
    expect(s.size).to.equal(0);
    expect(s.first()).to.equal(-1);
    // Empty: numbering starts over.
    const first = s.add(5, "x", 0, 1, 0);
    expect(s.find(first)).to.equal(0);
    expect(order(s)).to.deep.equal([0]);
  });

  it("takes the lowest free slot, so open reservations gather at the bottom", () => {
    const s = new ReservationSlab(16);
    const ids = Array.from({ length: 10 }, (_, i) => s.add(i, `k${i}`, 0, 1, i));
    for (const i of [7, 2, 9, 4]) s.remove(s.find(ids[i]!));
    const got = [0, 1, 2, 3].map(() => s.find(s.add(0, "n", 0, 1, 0)));
    expect(got).to.deep.equal([2, 4, 7, 9]);
    expect(s.find(s.add(0, "n", 0, 1, 0))).to.equal(10);
  });

  it("never grows past its maximum capacity", () => {
    const s = new ReservationSlab(16, 40);
    for (let i = 0; i < 40; i++) s.add(i, "k", 0, 1, i);
    expect(s.capacity).to.equal(40);
    expect(() => s.add(0, "k", 0, 1, 0)).to.throw(RangeError);
    s.remove(s.first());
    s.add(0, "k", 0, 1, 0); // a freed slot is reused
    expect([s.size, s.capacity]).to.deep.equal([40, 40]);
  });

  it("compact() gives the slots of an expired burst back and keeps every open id, its data and the order", () => {
    const s = new ReservationSlab(16);
    const burst = Array.from({ length: 5000 }, (_, i) => s.add(i, `b${i}`, 1, 2, i));
    expect(s.capacity).to.equal(8192);
    expect(s.compact()).to.equal(false); // full
    // A trickle while the burst expires oldest first: the new ones take the lowest free slots.
    const live: string[] = [];
    for (let i = 0; i < 5000; i++) {
      s.remove(s.find(burst[i]!));
      if (i % 100 === 0) live.push(s.add(100_000 + i, `t${i}`, 3, 4, 10_000 + i));
    }
    expect(s.size).to.equal(50);
    expect(s.compact()).to.equal(true);
    expect(s.capacity).to.be.at.most(128);
    expect(s.compact()).to.equal(false); // nothing more to give back
    live.forEach((id, j) => {
      const r = s.find(id);
      expect(r).to.be.at.least(0);
      expect([s.keySlot(r), s.account(r), s.units(r), s.expiresAt(r)]).to.deep.equal([100_000 + j * 100, 3, 4, 10_000 + j * 100]);
    });
    expect(order(s).map((r) => s.keySlot(r))).to.deep.equal(live.map((_, j) => 100_000 + j * 100));
    for (const id of burst) expect(s.find(id)).to.equal(-1);
    // And it grows again for the next burst, free slots first.
    const more = Array.from({ length: 1000 }, (_, i) => s.add(i, "m", 0, 1, 20_000 + i));
    expect(new Set(more.map((id) => s.find(id))).size).to.equal(1000);
    expect(s.size).to.equal(1050);
    for (const id of live) expect(s.find(id)).to.be.at.least(0);
  });

  it("compact() keeps the columns while an open reservation sits high", () => {
    const s = new ReservationSlab(16);
    const ids = Array.from({ length: 1000 }, (_, i) => s.add(i, "k", 0, 1, i));
    for (let i = 0; i < 999; i++) s.remove(s.find(ids[i]!));
    expect(s.compact()).to.equal(false);
    expect(s.capacity).to.equal(1024);
    expect(s.find(ids[999]!)).to.equal(999);
  });
});
