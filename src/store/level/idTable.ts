// A table of request ids → small counts (0 = absent) that allocates nothing once it has grown to
// its working size: open addressing with linear probing, and deletion by backward shift (no
// tombstones). Ledger.ts keeps its per-Consume bookkeeping here (ids in flight, ids being read,
// ids known absent).
//
// Why not a Map or Set: V8's ordered hash tables shrink when a quarter full and grow when full,
// and every resize allocates a new table. A set of ids in flight swings between empty and full
// each time a group-committed batch settles (all its Consumes leave at once), so a Map of them
// was reallocated every few batches; the Map object lives in old space, so each new table (and
// the ids and inputs it held) was promoted by the next scavenge. A sampling heap profile that
// keeps only what minor GCs did not collect (durable Consume, 128 in flight) showed ~410 B
// promoted per Consume, ~165 B of it the Map's tables and most of the rest what they held
// (bench/README.md, "Consume without GC tails", second pass).

/** FNV-1a over the UTF-16 code units. */
function hashOf(id: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < id.length; i++) h = Math.imul(h ^ id.charCodeAt(i), 0x01000193);
  return h >>> 0;
}

export class IdTable {
  #keys: (string | undefined)[];
  #counts: Int32Array;
  #hashes: Uint32Array;
  #mask: number;
  #size = 0;

  constructor(initialCapacity = 256) {
    let cap = 16;
    while (cap < initialCapacity) cap *= 2;
    this.#keys = new Array<string | undefined>(cap).fill(undefined);
    this.#counts = new Int32Array(cap);
    this.#hashes = new Uint32Array(cap);
    this.#mask = cap - 1;
  }

  /** Ids held. */
  get size(): number {
    return this.#size;
  }

  /** Slots (grows, never shrinks: the working size is kept). */
  get capacity(): number {
    return this.#mask + 1;
  }

  #find(id: string, h: number): number {
    const keys = this.#keys;
    for (let i = h & this.#mask; ; i = (i + 1) & this.#mask) {
      const k = keys[i];
      if (k === undefined) return -1 - i;
      if (this.#hashes[i] === h && k === id) return i;
    }
  }

  /** The id's count (0: not held). */
  get(id: string): number {
    const i = this.#find(id, hashOf(id));
    return i >= 0 ? this.#counts[i]! : 0;
  }

  has(id: string): boolean {
    return this.#find(id, hashOf(id)) >= 0;
  }

  /** Sets the id's count; 0 removes it. */
  set(id: string, count: number): void {
    if (!Number.isInteger(count) || count < 0 || count > 0x7fffffff) throw new RangeError(`IdTable.set: count ${count} is not a whole number in [0, 2^31)`);
    const h = hashOf(id);
    const i = this.#find(id, h);
    if (i >= 0) {
      if (count === 0) this.#removeAt(i);
      else this.#counts[i] = count;
      return;
    }
    if (count === 0) return;
    if ((this.#size + 1) * 2 > this.capacity) {
      this.#grow();
      this.#put(id, h, count);
    } else this.#putAt(-1 - i, id, h, count);
  }

  /** Adds one to the id's count. */
  add(id: string): void {
    this.set(id, this.get(id) + 1);
  }

  /** Removes the id; whether it was held. */
  delete(id: string): boolean {
    const i = this.#find(id, hashOf(id));
    if (i < 0) return false;
    this.#removeAt(i);
    return true;
  }

  clear(): void {
    if (this.#size === 0) return;
    this.#keys.fill(undefined);
    this.#counts.fill(0);
    this.#size = 0;
  }

  #put(id: string, h: number, count: number): void {
    const keys = this.#keys;
    let i = h & this.#mask;
    while (keys[i] !== undefined) i = (i + 1) & this.#mask;
    this.#putAt(i, id, h, count);
  }

  #putAt(i: number, id: string, h: number, count: number): void {
    this.#keys[i] = id;
    this.#hashes[i] = h;
    this.#counts[i] = count;
    this.#size++;
  }

  /** Empties slot i, then moves back every later id of its probe run that may take it (no tombstones). */
  #removeAt(i: number): void {
    const keys = this.#keys;
    const mask = this.#mask;
    let hole = i;
    for (let j = (i + 1) & mask; keys[j] !== undefined; j = (j + 1) & mask) {
      const home = this.#hashes[j]! & mask;
      // j's id may move to the hole when its home is not in (hole, j] (cyclically).
      if ((j > hole && (home <= hole || home > j)) || (j < hole && home <= hole && home > j)) {
        keys[hole] = keys[j];
        this.#hashes[hole] = this.#hashes[j]!;
        this.#counts[hole] = this.#counts[j]!;
        hole = j;
      }
    }
    keys[hole] = undefined;
    this.#counts[hole] = 0;
    this.#size--;
  }

  #grow(): void {
    const keys = this.#keys;
    const counts = this.#counts;
    const hashes = this.#hashes;
    const cap = keys.length * 2;
    this.#keys = new Array<string | undefined>(cap).fill(undefined);
    this.#counts = new Int32Array(cap);
    this.#hashes = new Uint32Array(cap);
    this.#mask = cap - 1;
    this.#size = 0;
    for (let i = 0; i < keys.length; i++) {
      const k = keys[i];
      if (k !== undefined) this.#put(k, hashes[i]!, counts[i]!);
    }
  }
}
