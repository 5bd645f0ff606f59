// The in-memory hot index: what Check needs of every key, by secret hash.
//
// Why not a Map of key objects: 1M plain JS key objects peak near 1 GB and take
// seconds to build. Here a key is a *slot*: an index into parallel typed arrays,
// and the secret hash → slot map is an open-addressing table over an Int32Array
// (probe start = the first 4 bytes of the SHA-256, which are uniform). Only the
// rare parts (model and IP restrictions, rate limits and windows, grace-period
// secrets) live in sparse Maps keyed by slot. (Rate limits were three Int32 columns:
// 12 MB at 1M keys, most of them zeros, and a fresh object per Check to read them.)
// Nothing per request grows with the number of keys: a lookup is one hash probe and
// a 32-byte compare.
//
// Key ids live outside the JS heap too: 1M id strings and an id → slot Map were most of the
// heap at 1M keys (~48 MB, and ~2M objects every major GC walks). An id of up to ID_WIDTH
// ASCII characters (every generated id: "key_" + 20 base62) is packed, NUL-padded, into a
// fixed-width byte column, and id → slot is a second open-addressing table (probe start =
// FNV-1a of the id). Any other id (longer, non-ASCII, or containing NUL) is kept as a string
// in a sparse Map, marked by a NUL first byte. `idOf(slot)` builds the string on demand (one
// short allocation per Check); `hasId` compares without allocating.
//
// The index is engine-agnostic: the LevelDB engine fills it at start and after
// every committed write; a shared engine would fill it from its change feed.
import { NO_LIMITS, type RateLimits } from "../../domain/types.js";
import type { CidrRange } from "../../policy/types.js";
import type { HotKey, Restrictions } from "./hotKey.js";
import { RateWindow } from "./rateWindow.js";

const EMPTY = -1;
/** Slots whose id string idOf keeps (a power of two). */
const ID_CACHE = 1024;
const TOMBSTONE = -2;

const F_LIVE = 1;
const F_ENABLED = 2;
const F_UNLIMITED = 4;
/** The slot has an entry in #restrict / #rate: lookups of other slots skip those Maps. */
const F_RESTRICTED = 8;
const F_RATE = 16;
/** The slot has an entry in #limits (rpm, tpm or concurrency set). */
const F_LIMITS = 32;

interface PreviousSecret {
  hash: Uint8Array;
  expiresAt: number;
}

/** A key's persisted counters, as the index holds them. */
export interface HotCounters {
  remaining: number;
  used: number;
  /** Quota ever granted: initial total + changes + refills (credited − used = remaining). */
  credited: number;
  lastUsedAt: number | null;
}

/** Fixed width of a packed id (bytes); longer ids go to the overflow Map. */
const ID_WIDTH = 24;

/** FNV-1a (32-bit) of a string's UTF-16 code units (= its bytes, for a packed ASCII id). */
function idHash(id: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < id.length; i++) h = Math.imul(h ^ id.charCodeAt(i), 0x01000193);
  return h >>> 0;
}

/** Whether `id` can be packed: 1..ID_WIDTH characters, each 1..127. */
function packable(id: string): boolean {
  if (id.length === 0 || id.length > ID_WIDTH) return false;
  for (let i = 0; i < id.length; i++) {
    const c = id.charCodeAt(i);
    if (c === 0 || c > 127) return false;
  }
  return true;
}

/** A plain view of one slot (tests and diagnostics: compare two loads of the same data). */
export interface HotEntry {
  id: string;
  secretHash: string;
  prevSecretHash: string | null;
  prevSecretExpiresAt: number | null;
  enabled: boolean;
  unlimited: boolean;
  accountId: string;
  group: string;
  expiresAt: number | null;
  remaining: number;
  used: number;
  credited: number;
  reserved: number;
  open: number;
  lastUsedAt: number | null;
  limits: RateLimits;
  rated: boolean;
  models: string[] | null;
  ips: CidrRange[] | null;
}

export class HotIndex {
  #cap = 0;
  #count = 0;
  #free: number[] = [];
  #next = 0;

  // Hash table: secret hash → slot.
  #table = new Int32Array(0);
  #tableMask = 0;
  #tableUsed = 0; // live + tombstones

  // Per-slot columns.
  #hashes = new Uint8Array(0);
  /** Packed ids, ID_WIDTH bytes per slot, NUL-padded; first byte NUL = in #longIds. */
  #idBytes = new Uint8Array(0);
  /** A Buffer view of #idBytes (latin1 decoding). */
  #idBuf = Buffer.alloc(0);
  #flags = new Uint8Array(0);
  #accountIdx = new Int32Array(0);
  #groupIdx = new Int32Array(0);
  #expiresAt = new Float64Array(0);
  #remaining = new Float64Array(0);
  #used = new Float64Array(0);
  #credited = new Float64Array(0);
  #reserved = new Float64Array(0);
  #open = new Int32Array(0);
  #lastUsedAt = new Float64Array(0);
  #createdAt = new Float64Array(0);

  // Sparse.
  readonly #restrict = new Map<number, Restrictions>();
  readonly #rate = new Map<number, RateWindow>();
  /** Frozen limits of the slots with any (F_LIMITS); every other slot reads NO_LIMITS. */
  readonly #limits = new Map<number, RateLimits>();
  readonly #prev = new Map<number, PreviousSecret>();
  readonly #longIds = new Map<number, string>();

  // Id table: id → slot (open addressing, like the hash table).
  #idTable = new Int32Array(0);
  #idMask = 0;
  #idUsed = 0;

  // Interned strings (accounts and groups are few).
  readonly accountNames: string[] = [];
  readonly #accountIds = new Map<string, number>();
  readonly groupNames: string[] = [];
  readonly #groupIds = new Map<string, number>();

  constructor(initialCapacity = 1024) {
    this.#grow(Math.max(16, initialCapacity));
  }

  get size(): number {
    return this.#count;
  }

  // ---- interning -------------------------------------------------------

  accountIndex(id: string): number {
    let i = this.#accountIds.get(id);
    if (i === undefined) {
      i = this.accountNames.length;
      this.accountNames.push(id);
      this.#accountIds.set(id, i);
    }
    return i;
  }

  groupIndex(name: string): number {
    let i = this.#groupIds.get(name);
    if (i === undefined) {
      i = this.groupNames.length;
      this.groupNames.push(name);
      this.#groupIds.set(name, i);
    }
    return i;
  }

  // ---- capacity --------------------------------------------------------

  /**
   * Makes room for `n` keys before a bulk load (a hint: the index still grows past it), so the
   * load does not copy the columns and rehash both tables at every doubling on the way.
   */
  reserve(n: number): void {
    if (n > this.#cap) this.#grow(n + (n >> 4), n * 2);
  }

  #grow(cap: number, tableFor = cap * 2): void {
    const grow = <T extends Float64Array | Int32Array | Uint8Array>(old: T, make: (n: number) => T, per = 1): T => {
      const a = make(cap * per);
      a.set(old);
      return a;
    };
    this.#hashes = grow(this.#hashes, (n) => new Uint8Array(n), 32);
    this.#idBytes = grow(this.#idBytes, (n) => new Uint8Array(n), ID_WIDTH);
    this.#idBuf = Buffer.from(this.#idBytes.buffer, this.#idBytes.byteOffset, this.#idBytes.byteLength);
    this.#flags = grow(this.#flags, (n) => new Uint8Array(n));
    this.#accountIdx = grow(this.#accountIdx, (n) => new Int32Array(n));
    this.#groupIdx = grow(this.#groupIdx, (n) => new Int32Array(n));
    this.#expiresAt = grow(this.#expiresAt, (n) => new Float64Array(n));
    this.#remaining = grow(this.#remaining, (n) => new Float64Array(n));
    this.#used = grow(this.#used, (n) => new Float64Array(n));
    this.#credited = grow(this.#credited, (n) => new Float64Array(n));
    this.#reserved = grow(this.#reserved, (n) => new Float64Array(n));
    this.#open = grow(this.#open, (n) => new Int32Array(n));
    this.#lastUsedAt = grow(this.#lastUsedAt, (n) => new Float64Array(n));
    this.#createdAt = grow(this.#createdAt, (n) => new Float64Array(n));
    this.#cap = cap;
    this.#rehash(tableFor);
    this.#rehashIds(tableFor);
  }

  #rehashIds(tableSize: number): void {
    let size = 16;
    while (size < tableSize) size <<= 1;
    this.#idTable = new Int32Array(size).fill(EMPTY);
    this.#idMask = size - 1;
    this.#idUsed = 0;
    for (let s = 0; s < this.#next; s++) if (this.#flags[s]! & F_LIVE) this.#idInsert(this.#slotIdHash(s), s);
  }

  /** idHash of the id stored at `slot`, from its bytes. */
  #slotIdHash(slot: number): number {
    const b = this.#idBytes;
    const o = slot * ID_WIDTH;
    if (b[o] === 0) return idHash(this.#longIds.get(slot) ?? "");
    let h = 0x811c9dc5;
    for (let i = 0; i < ID_WIDTH; i++) {
      const c = b[o + i]!;
      if (c === 0) break;
      h = Math.imul(h ^ c, 0x01000193);
    }
    return h >>> 0;
  }

  #idInsert(h: number, slot: number): void {
    if ((this.#idUsed + 1) * 2 > this.#idTable.length) this.#rehashIds(this.#idTable.length * 2);
    let i = h & this.#idMask;
    for (;;) {
      const v = this.#idTable[i]!;
      if (v === EMPTY || v === TOMBSTONE) {
        if (v === EMPTY) this.#idUsed++;
        this.#idTable[i] = slot;
        return;
      }
      i = (i + 1) & this.#idMask;
    }
  }

  /** The id table position holding `id`, or -1. */
  #idFind(id: string, h = idHash(id)): number {
    let i = h & this.#idMask;
    for (;;) {
      const v = this.#idTable[i]!;
      if (v === EMPTY) return -1;
      if (v >= 0 && this.hasId(v, id)) return i;
      i = (i + 1) & this.#idMask;
    }
  }

  /** Whether `slot` holds the key `id` (or `id` from index `from` on; no allocation). */
  hasId(slot: number, id: string, from = 0): boolean {
    if (slot < 0 || slot >= this.#next || !(this.#flags[slot]! & F_LIVE)) return false;
    const b = this.#idBytes;
    const o = slot * ID_WIDTH;
    if (b[o] === 0) return this.#longIds.get(slot) === (from === 0 ? id : id.slice(from));
    const n = id.length - from;
    if (n > ID_WIDTH || n <= 0) return false;
    for (let i = 0; i < n; i++) if (b[o + i] !== id.charCodeAt(from + i)) return false;
    return n === ID_WIDTH || b[o + n] === 0;
  }

  /** The id of the key at `slot` ("" for a free slot). */
  idOf(slot: number): string {
    if (slot < 0 || slot >= this.#next || !(this.#flags[slot]! & F_LIVE)) return "";
    const b = this.#idBytes;
    const o = slot * ID_WIDTH;
    if (b[o] === 0) return this.#longIds.get(slot) ?? "";
    // The ids of recently read slots, kept (a Check reads its key's id on every lookup, and the
    // same keys come back): a string per Check was garbage (bench/README.md). Bounded (ID_CACHE
    // entries, direct-mapped by slot); #setId and remove forget a slot's entry.
    const c = slot & (ID_CACHE - 1);
    if (this.#idCacheSlot[c] === slot) return this.#idCache[c]!;
    let n = 0;
    while (n < ID_WIDTH && b[o + n] !== 0) n++;
    const id = this.#idBuf.toString("latin1", o, o + n);
    this.#idCacheSlot[c] = slot;
    this.#idCache[c] = id;
    return id;
  }

  /** idOf's cache: the slot each entry holds (-1: none), and its id. */
  readonly #idCacheSlot = new Int32Array(ID_CACHE).fill(-1);
  readonly #idCache: string[] = new Array<string>(ID_CACHE).fill("");

  #forgetId(slot: number): void {
    const c = slot & (ID_CACHE - 1);
    if (this.#idCacheSlot[c] === slot) {
      this.#idCacheSlot[c] = -1;
      this.#idCache[c] = "";
    }
  }

  #setId(slot: number, id: string): void {
    this.#forgetId(slot);
    const b = this.#idBytes;
    const o = slot * ID_WIDTH;
    b.fill(0, o, o + ID_WIDTH);
    if (packable(id)) {
      for (let i = 0; i < id.length; i++) b[o + i] = id.charCodeAt(i);
    } else {
      this.#longIds.set(slot, id);
    }
  }

  #rehash(tableSize: number): void {
    let size = 16;
    while (size < tableSize) size <<= 1;
    this.#table = new Int32Array(size).fill(EMPTY);
    this.#tableMask = size - 1;
    this.#tableUsed = 0;
    for (let s = 0; s < this.#next; s++) {
      if (this.#flags[s]! & F_LIVE) {
        this.#tableInsert(HotIndex.#startAt(this.#hashes, s * 32), s);
        const p = this.#prev.get(s);
        if (p) this.#tableInsert(HotIndex.#startAt(p.hash, 0), s);
      }
    }
  }

  // ---- hash table ------------------------------------------------------

  /** Probe start of the hash at `bytes[o..o+32)`: its first 4 bytes (no subarray allocation). */
  static #startAt(bytes: Uint8Array, o: number): number {
    return ((bytes[o]! << 24) | (bytes[o + 1]! << 16) | (bytes[o + 2]! << 8) | bytes[o + 3]!) >>> 0;
  }

  #matches(slot: number, hash: Uint8Array): boolean {
    const h = this.#hashes;
    const o = slot * 32;
    let same = true;
    for (let i = 0; i < 32; i++) {
      if (h[o + i] !== hash[i]) {
        same = false;
        break;
      }
    }
    if (same) return true;
    const p = this.#prev.get(slot);
    if (!p) return false;
    for (let i = 0; i < 32; i++) if (p.hash[i] !== hash[i]) return false;
    return true;
  }

  /** Inserts `slot` at the first free place from probe start `start` (see #startAt). */
  #tableInsert(start: number, slot: number): void {
    if ((this.#tableUsed + 1) * 2 > this.#table.length) this.#rehash(this.#table.length * 2);
    let i = start & this.#tableMask;
    for (;;) {
      const v = this.#table[i]!;
      if (v === EMPTY || v === TOMBSTONE) {
        if (v === EMPTY) this.#tableUsed++;
        this.#table[i] = slot;
        return;
      }
      i = (i + 1) & this.#tableMask;
    }
  }

  #tableFind(hash: Uint8Array): number {
    let i = HotIndex.#startAt(hash, 0) & this.#tableMask;
    for (;;) {
      const v = this.#table[i]!;
      if (v === EMPTY) return -1;
      if (v >= 0 && this.#matches(v, hash)) return i;
      i = (i + 1) & this.#tableMask;
    }
  }

  #tableRemove(hash: Uint8Array): void {
    const i = this.#tableFind(hash);
    if (i >= 0) this.#table[i] = TOMBSTONE;
  }

  // ---- reads -----------------------------------------------------------

  /** The slot of the key whose current (or in-grace previous) secret hashes to `hash`, or -1. */
  findByHash(hash: Uint8Array, now: number): number {
    const i = this.#tableFind(hash);
    if (i < 0) return -1;
    const slot = this.#table[i]!;
    const p = this.#prev.get(slot);
    if (p && now >= p.expiresAt) {
      // The grace period is over: a previous secret no longer works.
      let isPrev = true;
      for (let k = 0; k < 32; k++) if (p.hash[k] !== hash[k]) isPrev = false;
      if (isPrev) return -1;
    }
    return slot;
  }

  slotOf(id: string): number {
    const i = this.#idFind(id);
    return i < 0 ? -1 : this.#idTable[i]!;
  }

  isEnabled(slot: number): boolean {
    return (this.#flags[slot]! & F_ENABLED) !== 0;
  }
  isUnlimited(slot: number): boolean {
    return (this.#flags[slot]! & F_UNLIMITED) !== 0;
  }
  expiresAt(slot: number): number | null {
    const e = this.#expiresAt[slot]!;
    return Number.isNaN(e) ? null : e;
  }
  /** When the key was created (ms): what a listing in creation order sorts by, without its record. */
  createdAt(slot: number): number {
    return this.#createdAt[slot]!;
  }
  /** The interned index of the key's account (accountNames[i]). */
  accountIndexOf(slot: number): number {
    return this.#accountIdx[slot]!;
  }
  accountOf(slot: number): string {
    return this.accountNames[this.#accountIdx[slot]!]!;
  }
  groupOf(slot: number): string {
    return this.groupNames[this.#groupIdx[slot]!]!;
  }
  remaining(slot: number): number {
    return this.#remaining[slot]!;
  }
  used(slot: number): number {
    return this.#used[slot]!;
  }
  reserved(slot: number): number {
    return this.#reserved[slot]!;
  }
  credited(slot: number): number {
    return this.#credited[slot]!;
  }
  open(slot: number): number {
    return this.#open[slot]!;
  }
  lastUsedAt(slot: number): number | null {
    const v = this.#lastUsedAt[slot]!;
    return Number.isNaN(v) ? null : v;
  }
  /** The key's limits (frozen; shared NO_LIMITS for a key without any). */
  limits(slot: number): RateLimits {
    return this.#flags[slot]! & F_LIMITS ? this.#limits.get(slot)! : NO_LIMITS;
  }
  restrictions(slot: number): Restrictions | undefined {
    return this.#flags[slot]! & F_RESTRICTED ? this.#restrict.get(slot) : undefined;
  }
  /** The key's rate window if it has limits and has counted anything yet (reads). */
  rateWindow(slot: number): RateWindow | undefined {
    return this.#flags[slot]! & F_RATE ? this.#rate.get(slot) : undefined;
  }
  /**
   * The key's rate window, created on first use (writes), or undefined for a key without
   * rpm/tpm limits. Lazily: a window is ~1.2 KB, and keys with limits that see no traffic
   * (most of 1M) need none; an absent window reads as an empty one.
   */
  rateWindowForWrite(slot: number): RateWindow | undefined {
    if (!(this.#flags[slot]! & F_RATE)) return undefined;
    let w = this.#rate.get(slot);
    if (!w) this.#rate.set(slot, (w = new RateWindow()));
    return w;
  }
  /** Whether the key has rpm or tpm limits. */
  isRated(slot: number): boolean {
    return (this.#flags[slot]! & F_RATE) !== 0;
  }

  // ---- writes (called by the engine after a commit) ----------------------

  /** Inserts or replaces a key (by id). */
  upsert(k: HotKey, c: HotCounters): number {
    const h = idHash(k.id);
    const at = this.#idFind(k.id, h);
    let slot = at < 0 ? -1 : this.#idTable[at]!;
    // A new key's slot (never used, or freed by remove(), which clears its sparse entries) has
    // nothing in the sparse Maps: no deletes for it (three Map operations a key in a 1M-key load).
    const fresh = slot < 0;
    if (slot >= 0) {
      this.#tableRemove(this.#hashes.subarray(slot * 32, slot * 32 + 32));
      const p = this.#prev.get(slot);
      if (p) this.#tableRemove(p.hash);
      this.#prev.delete(slot);
    } else {
      slot = this.#free.pop() ?? this.#next++;
      if (slot >= this.#cap) this.#grow(this.#cap * 2);
      this.#setId(slot, k.id);
      // Insert before the slot is marked live: a rehash inside would otherwise add it twice.
      this.#idInsert(h, slot);
      this.#count++;
      this.#reserved[slot] = 0;
      this.#open[slot] = 0;
    }
    const hs = this.#hashes;
    const ho = slot * 32;
    const src = k.secretHash;
    for (let i = 0; i < 32; i++) hs[ho + i] = src[i] ?? 0;
    const restricted = k.restrictions.models !== null || k.restrictions.ips !== null;
    const rated = k.limits.rpm > 0 || k.limits.tpm > 0;
    const limited = rated || k.limits.concurrency > 0;
    this.#flags[slot] =
      F_LIVE | (k.enabled ? F_ENABLED : 0) | (k.unlimited ? F_UNLIMITED : 0) | (restricted ? F_RESTRICTED : 0) | (rated ? F_RATE : 0) | (limited ? F_LIMITS : 0);
    this.#accountIdx[slot] = this.accountIndex(k.accountId);
    this.#groupIdx[slot] = this.groupIndex(k.group);
    this.#expiresAt[slot] = k.expiresAt ?? NaN;
    this.#createdAt[slot] = k.createdAt;
    this.#remaining[slot] = c.remaining;
    this.#used[slot] = c.used;
    this.#credited[slot] = c.credited;
    this.#lastUsedAt[slot] = c.lastUsedAt ?? NaN;
    if (limited) this.#limits.set(slot, Object.freeze({ rpm: k.limits.rpm, tpm: k.limits.tpm, concurrency: k.limits.concurrency }));
    else if (!fresh) this.#limits.delete(slot);
    if (restricted) this.#restrict.set(slot, k.restrictions);
    else if (!fresh) this.#restrict.delete(slot);
    // A rated key's window is created on its first request (rateWindowForWrite); an update
    // keeps what it has counted.
    if (!rated && !fresh) this.#rate.delete(slot);
    this.#tableInsert(HotIndex.#startAt(hs, ho), slot);
    if (k.prevSecretHash) {
      const hash = Uint8Array.from(k.prevSecretHash);
      this.#prev.set(slot, { hash, expiresAt: k.prevSecretExpiresAt });
      this.#tableInsert(HotIndex.#startAt(hash, 0), slot);
    }
    return slot;
  }

  remove(id: string): void {
    const at = this.#idFind(id);
    if (at < 0) return;
    const slot = this.#idTable[at]!;
    this.#idTable[at] = TOMBSTONE;
    this.#tableRemove(this.#hashes.subarray(slot * 32, slot * 32 + 32));
    const p = this.#prev.get(slot);
    if (p) this.#tableRemove(p.hash);
    this.#prev.delete(slot);
    this.#restrict.delete(slot);
    this.#rate.delete(slot);
    this.#limits.delete(slot);
    this.#hashes.fill(0, slot * 32, slot * 32 + 32);
    this.#flags[slot] = 0;
    this.#idBytes.fill(0, slot * ID_WIDTH, slot * ID_WIDTH + ID_WIDTH);
    this.#longIds.delete(slot);
    this.#forgetId(slot);
    this.#free.push(slot);
    this.#count--;
  }

  /** Grants `delta` more (or less) quota: remaining and credited move together. */
  addQuota(slot: number, delta: number): void {
    this.#remaining[slot] = this.#remaining[slot]! + delta;
    this.#credited[slot] = this.#credited[slot]! + delta;
  }
  /** Sets remaining to `v`, crediting the difference (refill, unlimited → limited). */
  resetRemaining(slot: number, v: number): void {
    this.addQuota(slot, v - this.#remaining[slot]!);
  }
  /** Overwrites the persisted counters (recovery after a failed write). */
  setCounters(slot: number, c: { remaining: number; used: number; credited: number; lastUsedAt: number | null }): void {
    this.#remaining[slot] = c.remaining;
    this.#used[slot] = c.used;
    this.#credited[slot] = c.credited;
    this.#lastUsedAt[slot] = c.lastUsedAt ?? NaN;
  }
  /** Charges `units`: used always grows; remaining only for keys with a quota. */
  addUsage(slot: number, units: number, now: number): void {
    if (!this.isUnlimited(slot)) this.#remaining[slot] = this.#remaining[slot]! - units;
    this.#used[slot] = this.#used[slot]! + units;
    this.#lastUsedAt[slot] = now;
  }
  addReserved(slot: number, units: number, openDelta: number): void {
    this.#reserved[slot] = this.#reserved[slot]! + units;
    this.#open[slot] = this.#open[slot]! + openDelta;
  }
  touch(slot: number, now: number): void {
    this.#lastUsedAt[slot] = now;
  }
  isLive(slot: number): boolean {
    return slot >= 0 && (this.#flags[slot]! & F_LIVE) !== 0;
  }

  /** Every live slot, in slot order. */
  *slots(): IterableIterator<number> {
    for (let s = 0; s < this.#next; s++) if (this.#flags[s]! & F_LIVE) yield s;
  }

  /** Live keys per group (one pass over the slots: a load's group counts). */
  countByGroup(): Map<string, number> {
    const n = new Float64Array(this.groupNames.length);
    for (let s = 0; s < this.#next; s++) if (this.#flags[s]! & F_LIVE) n[this.#groupIdx[s]!]!++;
    const out = new Map<string, number>();
    for (let g = 0; g < n.length; g++) if (n[g]! > 0) out.set(this.groupNames[g]!, n[g]!);
    return out;
  }

  /** A plain copy of one live slot (tests and diagnostics). */
  entry(slot: number): HotEntry {
    const p = this.#prev.get(slot);
    const r = this.restrictions(slot);
    return {
      id: this.idOf(slot),
      secretHash: Buffer.from(this.#hashes.subarray(slot * 32, slot * 32 + 32)).toString("hex"),
      prevSecretHash: p ? Buffer.from(p.hash).toString("hex") : null,
      prevSecretExpiresAt: p ? p.expiresAt : null,
      enabled: this.isEnabled(slot),
      unlimited: this.isUnlimited(slot),
      accountId: this.accountOf(slot),
      group: this.groupOf(slot),
      expiresAt: this.expiresAt(slot),
      remaining: this.remaining(slot),
      used: this.used(slot),
      credited: this.credited(slot),
      reserved: this.reserved(slot),
      open: this.open(slot),
      lastUsedAt: this.lastUsedAt(slot),
      limits: this.limits(slot),
      rated: this.isRated(slot),
      models: r?.models ? [...r.models] : null,
      ips: r?.ips ? r.ips.map((x) => ({ ...x })) : null,
    };
  }
}
