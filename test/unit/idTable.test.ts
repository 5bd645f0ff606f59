// IdTable (store/level/idTable.ts): the ledger's per-Consume bookkeeping of request ids, an open
// addressing table with backward-shift deletion. Checked against a Map over random operations
// on ids drawn from small pools (so ids come back, probe runs collide, wrap around the end of
// the table and are broken by deletions), through several growths.
import { expect } from "chai";
import { IdTable } from "../../src/store/level/idTable.js";
import { rng } from "../helpers/rng.js";

describe("IdTable", () => {
  for (const [pool, seed] of [
    [12, 1],
    [40, 7],
    [300, 42],
    [3000, 99],
  ] as const) {
    it(`holds what a Map holds over 40,000 random set/add/delete/clear on ${pool} ids`, () => {
      const r = rng(seed);
      const t = new IdTable(16);
      const m = new Map<string, number>();
      // Ids of every length from 0 up, some non-ASCII, some sharing long prefixes.
      const ids = Array.from({ length: pool }, (_, i) => (i % 7 === 0 ? `é-${i}` : i % 5 === 0 ? "req-" + "x".repeat(i % 40) + i : `tail-${i}`)).concat([""]);
      for (let n = 0; n < 40_000; n++) {
        const id = ids[Math.floor(r() * ids.length)]!;
        const op = r();
        if (op < 0.4) {
          t.add(id);
          m.set(id, (m.get(id) ?? 0) + 1);
        } else if (op < 0.55) {
          const c = Math.floor(r() * 3);
          t.set(id, c);
          if (c === 0) m.delete(id);
          else m.set(id, c);
        } else if (op < 0.9995) {
          expect(t.delete(id)).to.equal(m.delete(id));
        } else {
          t.clear();
          m.clear();
        }
        if (n % (pool < 100 ? 97 : 1999) === 0) for (const x of ids) expect(t.get(x), `count of ${JSON.stringify(x)} after op ${n}`).to.equal(m.get(x) ?? 0);
        expect(t.has(id)).to.equal(m.has(id));
        expect(t.size).to.equal(m.size);
      }
      for (const x of ids) expect(t.get(x)).to.equal(m.get(x) ?? 0);
    });
  }

  it("grows past its initial capacity and keeps every id", () => {
    const t = new IdTable(16);
    for (let i = 0; i < 10_000; i++) t.add(`id-${i}`);
    expect(t.size).to.equal(10_000);
    expect(t.capacity).to.be.at.least(20_000);
    for (let i = 0; i < 10_000; i++) expect(t.get(`id-${i}`)).to.equal(1);
    for (let i = 0; i < 10_000; i += 2) t.delete(`id-${i}`);
    for (let i = 0; i < 10_000; i++) expect(t.has(`id-${i}`)).to.equal(i % 2 === 1);
    expect(t.size).to.equal(5_000);
  });

  it("refuses a count that is not a whole number in [0, 2^31), naming it", () => {
    const t = new IdTable();
    expect(() => t.set("a", -1)).to.throw(RangeError, /count -1/);
    expect(() => t.set("a", 1.5)).to.throw(RangeError, /count 1.5/);
    expect(() => t.set("a", 2 ** 31)).to.throw(RangeError, /count 2147483648/);
    expect(t.size).to.equal(0);
  });
});
