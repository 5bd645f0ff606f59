// Open reservations in typed arrays (a slab), not in a Map of objects.
//
// Every allowed Check holds a reservation until Consume settles it or its TTL ends it (600 s
// by default). As a Map entry with an object and an id string each was ~220 B of heap that
// outlived every scavenge: at thousands of Checks a second the old generation grew by MB/s
// until a major GC, which then had hundreds of thousands of objects to walk (bench/README.md,
// "Open reservations cost GC"). Here a reservation is a slot in parallel typed arrays (~47 B,
// none of it GC-managed); the id string handed to the caller is garbage at once.
//
// The id keeps its format, "rsv_" + 20 base62 characters + "." + key id (the key id rides in
// it, so a Consume whose reservation expired or outlived a restart still finds its key). The
// first SLOT_CHARS of the 20 name the slot, the other NONCE_CHARS are random (89 bits, from a
// pooled CSPRNG buffer) and stored in the slot: a lookup decodes the slot and compares the
// nonce, so a stale, forged or pre-restart id finds nothing.
//
// Creation order is a doubly-linked list through the slots (prev/next columns), so removal is
// O(1) and the once-a-second TTL sweep walks from the oldest. The store decides whether it may
// stop at the first live one (while every new reservation expires no earlier than the one
// before, creation order is expiry order).
//
// Bounded and shrinking (issue 18, item 4). Under an Envoy-only load no Consume settles
// anything, so the slab holds Check rate × TTL reservations. The slab never grows past
// `maxCapacity` slots (the book evicts the oldest reservation before it adds past its cap,
// keyBook.ts). Free slots are a min-heap, so a new reservation takes the lowest free slot and
// the open ones gather at the bottom; once a burst has expired, compact() (run by the TTL
// sweep) cuts the columns down to the highest open slot: the memory goes back. Ids name
// slots, so no open reservation ever moves: the ones opened while a burst was open sit above
// it and hold the columns until they expire too, so the memory returns within two TTLs of the
// burst's end.
import { randomFillSync } from "node:crypto";
import { BASE62 as ALPHABET } from "../../keys/secrets.js";

const SLOT_CHARS = 5; // 62^5 ≈ 916M slots
const NONCE_CHARS = 15;
const ALPHABET_BYTES = Buffer.from(ALPHABET, "latin1");
/** base62 digit value by char code (-1 = not a digit). */
const DIGIT = new Int8Array(128).fill(-1);
for (let i = 0; i < 62; i++) DIGIT[ALPHABET.charCodeAt(i)] = i;
const PREFIX = "rsv_";
const NAME_END = PREFIX.length + SLOT_CHARS + NONCE_CHARS; // index of the "."
/** Where the key id starts in a reservation id. */
export const RESERVATION_KEY_AT = NAME_END + 1;
const NIL = -1;

// Nonce characters from a pooled CSPRNG buffer (a randomBytes() call per Check was ~6 µs of
// the hot path). Unbiased: bytes >= 248 (= 4 · 62) are skipped.
const pool = Buffer.allocUnsafe(4096);
let poolPos = pool.length;
function randomDigit(): number {
  for (;;) {
    if (poolPos === pool.length) {
      randomFillSync(pool);
      poolPos = 0;
    }
    const b = pool[poolPos++]!;
    if (b < 248) return ALPHABET_BYTES[b % 62]!;
  }
}

/** Where reservationId writes an id: "rsv_", the slot, the nonce, "." and a key id of up to 64 latin1 characters. */
const ID_SCRATCH = Buffer.alloc(RESERVATION_KEY_AT + 64);
ID_SCRATCH.write(PREFIX, 0, "latin1");
ID_SCRATCH[NAME_END] = 46; // "."

/**
 * "rsv_" + the slot in SLOT_CHARS base62 digits + the nonce + "." + keyId, as one flat string:
 * written into one scratch buffer and read out once (the concatenations made a short string per
 * slot digit and a rope of five parts per Check: bench/README.md). A key id longer than the
 * scratch, or with a character past latin1, is concatenated as before (the same string).
 */
function reservationId(slot: number, nonce: Uint8Array, at: number, keyId: string): string {
  const b = ID_SCRATCH;
  for (let i = PREFIX.length + SLOT_CHARS - 1, v = slot; i >= PREFIX.length; i--, v = Math.floor(v / 62)) b[i] = ALPHABET_BYTES[v % 62]!;
  for (let i = 0; i < NONCE_CHARS; i++) b[PREFIX.length + SLOT_CHARS + i] = nonce[at + i]!;
  const n = keyId.length;
  if (n > b.length - RESERVATION_KEY_AT) return b.toString("latin1", 0, RESERVATION_KEY_AT) + keyId;
  for (let i = 0; i < n; i++) {
    const c = keyId.charCodeAt(i);
    if (c > 0xff) return b.toString("latin1", 0, RESERVATION_KEY_AT) + keyId;
    b[RESERVATION_KEY_AT + i] = c;
  }
  return b.toString("latin1", 0, RESERVATION_KEY_AT + n);
}

/**
 * The key id a reservation id names (whether or not the reservation is still open), or
 * undefined when `id` is not shaped like a reservation id.
 */
export function reservationKeyId(id: string): string | undefined {
  const dot = id.indexOf(".");
  return id.startsWith(PREFIX) && dot >= 0 && dot + 1 < id.length ? id.slice(dot + 1) : undefined;
}

export class ReservationSlab {
  readonly #initial: number;
  readonly #max: number;
  #cap = 0;
  #next = 0; // slots below this have been used
  #size = 0;
  /** Free slots below #next, a binary min-heap of #freeTop entries. */
  #free = new Int32Array(0);
  #freeTop = 0;
  /** -1 = free slot. */
  #keySlot = new Int32Array(0);
  #account = new Int32Array(0);
  #units = new Float64Array(0);
  #expiresAt = new Float64Array(0);
  /** The opener's mark (0 = none; the Redis engine marks reservations admitted from a lease). */
  #tag = new Uint8Array(0);
  #nonce = new Uint8Array(0);
  #prev = new Int32Array(0);
  #nextInOrder = new Int32Array(0);
  #head = NIL;
  #tail = NIL;

  /**
   * @param initialCapacity slots allocated up front (and the floor compact() shrinks to)
   * @param maxCapacity slots the columns may grow to; the caller keeps size at or below it
   */
  constructor(initialCapacity = 1024, maxCapacity = 2 ** 30) {
    this.#initial = Math.max(16, Math.min(initialCapacity, maxCapacity));
    this.#max = Math.max(this.#initial, maxCapacity);
    this.#resize(this.#initial);
  }

  get size(): number {
    return this.#size;
  }

  /** Slots the columns hold now (memory: ~51 B a slot). */
  get capacity(): number {
    return this.#cap;
  }

  /** Allocates every column at `cap` slots, keeping slots [0, min(cap, old cap)). */
  #resize(cap: number): void {
    const grow = <T extends Float64Array | Int32Array | Uint8Array>(old: T, make: (n: number) => T, per = 1): T => {
      const a = make(cap * per);
      a.set(old.length > cap * per ? old.subarray(0, cap * per) : old);
      return a;
    };
    this.#free = grow(this.#free, (n) => new Int32Array(n));
    this.#keySlot = grow(this.#keySlot, (n) => new Int32Array(n).fill(-1));
    this.#account = grow(this.#account, (n) => new Int32Array(n));
    this.#units = grow(this.#units, (n) => new Float64Array(n));
    this.#expiresAt = grow(this.#expiresAt, (n) => new Float64Array(n));
    this.#tag = grow(this.#tag, (n) => new Uint8Array(n));
    this.#nonce = grow(this.#nonce, (n) => new Uint8Array(n), NONCE_CHARS);
    this.#prev = grow(this.#prev, (n) => new Int32Array(n));
    this.#nextInOrder = grow(this.#nextInOrder, (n) => new Int32Array(n));
    this.#cap = cap;
  }

  #popFree(): number {
    const h = this.#free;
    const top = h[0]!;
    const n = --this.#freeTop;
    if (n > 0) {
      const last = h[n]!;
      let i = 0;
      for (;;) {
        let c = 2 * i + 1;
        if (c >= n) break;
        if (c + 1 < n && h[c + 1]! < h[c]!) c++;
        if (h[c]! >= last) break;
        h[i] = h[c]!;
        i = c;
      }
      h[i] = last;
    }
    return top;
  }

  #pushFree(s: number): void {
    const h = this.#free;
    let i = this.#freeTop++;
    while (i > 0) {
      const p = (i - 1) >> 1;
      if (h[p]! <= s) break;
      h[i] = h[p]!;
      i = p;
    }
    h[i] = s;
  }

  /** Opens a reservation (newest in creation order); returns its id. */
  add(keySlot: number, keyId: string, account: number, units: number, expiresAt: number, tag = 0): string {
    let s: number;
    if (this.#freeTop > 0) s = this.#popFree();
    else {
      if (this.#next >= this.#max) throw new RangeError(`reservation slab full (${this.#max} slots)`);
      s = this.#next++;
      if (s >= this.#cap) this.#resize(Math.min(this.#cap * 2, this.#max));
    }
    this.#keySlot[s] = keySlot;
    this.#account[s] = account;
    this.#units[s] = units;
    this.#expiresAt[s] = expiresAt;
    this.#tag[s] = tag;
    const o = s * NONCE_CHARS;
    for (let i = 0; i < NONCE_CHARS; i++) this.#nonce[o + i] = randomDigit();
    this.#prev[s] = this.#tail;
    this.#nextInOrder[s] = NIL;
    if (this.#tail === NIL) this.#head = s;
    else this.#nextInOrder[this.#tail] = s;
    this.#tail = s;
    this.#size++;
    return reservationId(s, this.#nonce, o, keyId);
  }

  /** The slot of the open reservation `id` names, or -1 (unknown, settled, expired, forged). */
  find(id: string): number {
    if (id.length <= NAME_END || id.charCodeAt(NAME_END) !== 46 /* . */ || !id.startsWith(PREFIX)) return -1;
    let s = 0;
    for (let i = PREFIX.length; i < PREFIX.length + SLOT_CHARS; i++) {
      const c = id.charCodeAt(i);
      const d = c < 128 ? DIGIT[c]! : -1;
      if (d < 0) return -1;
      s = s * 62 + d;
    }
    if (s >= this.#next || this.#keySlot[s]! < 0) return -1;
    const o = s * NONCE_CHARS;
    const at = PREFIX.length + SLOT_CHARS;
    for (let i = 0; i < NONCE_CHARS; i++) if (this.#nonce[o + i] !== id.charCodeAt(at + i)) return -1;
    return s;
  }

  keySlot(s: number): number {
    return this.#keySlot[s]!;
  }
  account(s: number): number {
    return this.#account[s]!;
  }
  units(s: number): number {
    return this.#units[s]!;
  }
  expiresAt(s: number): number {
    return this.#expiresAt[s]!;
  }
  tag(s: number): number {
    return this.#tag[s]!;
  }

  /** Closes the reservation in slot `s` (its id finds nothing from now on). */
  remove(s: number): void {
    if (this.#keySlot[s]! < 0) return;
    const p = this.#prev[s]!;
    const n = this.#nextInOrder[s]!;
    if (p === NIL) this.#head = n;
    else this.#nextInOrder[p] = n;
    if (n === NIL) this.#tail = p;
    else this.#prev[n] = p;
    this.#keySlot[s] = -1;
    this.#nonce.fill(0, s * NONCE_CHARS, s * NONCE_CHARS + NONCE_CHARS);
    this.#pushFree(s);
    this.#size--;
    if (this.#size === 0) {
      // Start over from slot 0: the slab stays compact for the next burst.
      this.#next = 0;
      this.#freeTop = 0;
    }
  }

  /**
   * Gives memory back after a burst: when at most a quarter of the slots are open and every
   * open one sits in the lower half, the columns shrink to a power of two (at least the
   * initial capacity) above the highest open slot. O(capacity); the TTL sweep calls it once a
   * second. Returns whether it shrank.
   */
  compact(): boolean {
    if (this.#cap <= this.#initial || this.#size * 4 > this.#cap) return false;
    let top = this.#next - 1;
    while (top >= 0 && this.#keySlot[top]! < 0) top--;
    let cap = this.#initial;
    while (cap < 2 * (top + 1)) cap *= 2;
    if (cap >= this.#cap) return false;
    // Slots above the highest open one go back to the bump pointer; the heap keeps the free
    // ones below it, in ascending order (a sorted array is a min-heap).
    this.#next = top + 1;
    this.#resize(cap);
    this.#freeTop = 0;
    for (let s = 0; s < this.#next; s++) if (this.#keySlot[s]! < 0) this.#free[this.#freeTop++] = s;
    return true;
  }

  /** The oldest open reservation's slot, or -1. */
  first(): number {
    return this.#head;
  }

  /** The next open reservation after slot `s` in creation order, or -1. */
  after(s: number): number {
    return this.#nextInOrder[s]!;
  }
}
