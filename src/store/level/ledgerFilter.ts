// Which request ids the ledger cannot hold: a Bloom filter over every id written to it, so a
// Consume with a fresh id skips the ledger read it makes for replay detection (a LevelDB
// getMany per tick: a hop through the thread pool before the charge, and ~10 % of the
// sidecar's CPU under ConsumeBatch; bench/README.md, "Where a slow ConsumeBatch's time goes").
//
// Never a false negative: `lacks(id)` is true only when the id was never added, and every id is
// added before its ledger entry is submitted (ledger.ts) and, for the entries already on disk, by
// a scan of the ledger's keys that starts with the store. Until that scan has finished (or when
// it failed, or the filter reached its memory bound) `lacks` answers false for every id and each
// Consume reads the ledger as before. A false positive only costs that read (~0.15 % of fresh
// ids, measured: 194 reads in 125,694 Consumes).
//
// Scalable: stages of doubling capacity (the newest takes the adds, a lookup asks every stage),
// so no size has to be known in advance and nothing is rehashed; 16 bits and 7 probes per id
// (~2 MB per million ids). (A stage's bits are a power of two, its capacity doubles from 65,536:
// 16 bits per id exactly. Fewer bits would fit more ids per MB, at a false-positive rate — a
// ledger read, and a Consume a batch late — nearer 1 %, the p99 of a Consume.)
// Blocked: an id's 7 bits of a stage lie in one 64-byte block (one cache line to miss, not 7;
// the stages of a busy sidecar are megabytes), at a slightly higher false-positive rate.

import { DEFAULT_LEDGER_FILTER_MB } from "../../config/config.js";

const BITS_PER_ID = 16;
const PROBES = 7;
const FIRST_CAPACITY = 1 << 16;
/** Bytes all stages may hold unless told otherwise (32 MB: 8 stages, ~16.7M ids); past it the filter stops answering (every id is read). */
export const LEDGER_FILTER_MAX_BYTES = DEFAULT_LEDGER_FILTER_MB * 2 ** 20;

/** 32-bit words per block (512 bits, 64 bytes). */
const BLOCK_WORDS = 16;

interface Stage {
  bits: Uint32Array;
  /** Blocks in the stage − 1 (a power of two minus one). */
  mask: number;
  capacity: number;
  count: number;
}

export class LedgerFilter {
  readonly #stages: Stage[] = [];
  #bytes = 0;
  #ready = false;
  #overflowed = false;
  readonly #maxBytes: number;
  readonly #onFull: ((ids: number, bytes: number) => void) | undefined;

  /** `onFull`: called once, when an add finds the bound reached (the filter stops answering). */
  constructor(maxBytes = LEDGER_FILTER_MAX_BYTES, onFull?: (ids: number, bytes: number) => void) {
    this.#maxBytes = maxBytes;
    this.#onFull = onFull;
    this.#grow(FIRST_CAPACITY);
  }

  /** The scan of the ledger's existing ids finished: `lacks` may answer true from now. */
  markReady(): void {
    this.#ready = true;
  }

  /** Answering: ready and within its memory bound. */
  get answering(): boolean {
    return this.#ready && !this.#overflowed;
  }

  /** It reached its memory bound: it no longer answers, until the store reopens with a larger one. */
  get full(): boolean {
    return this.#overflowed;
  }

  /** Ids added (counting repeats). */
  get size(): number {
    let n = 0;
    for (const s of this.#stages) n += s.count;
    return n;
  }

  get bytes(): number {
    return this.#bytes;
  }

  add(id: string): void {
    if (this.#overflowed) return;
    let s = this.#stages[this.#stages.length - 1]!;
    if (s.count >= s.capacity) {
      if (!this.#grow(s.capacity * 2)) return;
      s = this.#stages[this.#stages.length - 1]!;
    }
    hash(id);
    const bits = s.bits;
    const base = (H1 & s.mask) * BLOCK_WORDS;
    let h = H2;
    for (let i = 0; i < PROBES; i++) {
      const b = h & 511;
      bits[base + (b >>> 5)]! |= 1 << (b & 31);
      h = (h + H3) >>> 0;
    }
    s.count++;
  }

  /** True only if `id` was never added (and the filter is answering). */
  lacks(id: string): boolean {
    if (!this.#ready || this.#overflowed) return false;
    hash(id);
    for (let j = 0; j < this.#stages.length; j++) {
      const s = this.#stages[j]!;
      const bits = s.bits;
      const base = (H1 & s.mask) * BLOCK_WORDS;
      let h = H2;
      let all = true;
      for (let i = 0; i < PROBES; i++) {
        const b = h & 511;
        if ((bits[base + (b >>> 5)]! & (1 << (b & 31))) === 0) {
          all = false;
          break;
        }
        h = (h + H3) >>> 0;
      }
      if (all) return false;
    }
    return true;
  }

  #grow(capacity: number): boolean {
    let bitCount = BLOCK_WORDS * 32;
    while (bitCount < capacity * BITS_PER_ID) bitCount *= 2;
    const bytes = bitCount / 8;
    if (this.#bytes + bytes > this.#maxBytes) {
      // From here on an add could not be recorded: stop answering for good (no false negatives).
      this.#overflowed = true;
      this.#onFull?.(this.size, this.#bytes);
      return false;
    }
    this.#stages.push({ bits: new Uint32Array(bitCount / 32), mask: bitCount / (BLOCK_WORDS * 32) - 1, capacity, count: 0 });
    this.#bytes += bytes;
    return true;
  }
}

// Two 32-bit hashes of one pass over the id's UTF-16 code units (FNV-1a and a multiply-xorshift):
// H1's low bits pick the block; inside it the probes are H2 + i·H3 (Kirsch–Mitzenmacher), H3 odd
// from H1's high bits. Module state: no allocation per call.
let H1 = 0;
let H2 = 0;
let H3 = 1;
function hash(s: string): void {
  let a = 0x811c9dc5;
  let b = 0x9747b28c ^ s.length;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    a = Math.imul(a ^ c, 0x01000193);
    b = Math.imul(b ^ c, 0x5bd1e995);
    b ^= b >>> 15;
  }
  a ^= a >>> 16;
  a = Math.imul(a, 0x85ebca6b);
  a ^= a >>> 13;
  b = Math.imul(b ^ (b >>> 16), 0xc2b2ae35);
  b ^= b >>> 16;
  H1 = a >>> 0;
  H2 = b >>> 0;
  H3 = ((a >>> 20) | 1) >>> 0; // odd: the 7 probes of a 512-bit block never repeat
}
