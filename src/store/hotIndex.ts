// The in-memory hot index: what Check needs of every key, by secret hash.
//
// Why not a Map of key objects: 1M plain JS key objects peak near 1 GB and take
// seconds to build. Here a key is a *slot*: an index into parallel typed arrays,
// and the secret hash → slot map is an open-addressing table over an Int32Array
// (probe start = the first 4 bytes of the SHA-256, which are uniform). Only the
// rare parts (model and IP restrictions, rate windows, grace-period secrets)
// live in sparse Maps keyed by slot. Nothing per request grows with the number
// of keys: a lookup is one hash probe and a 32-byte compare.
//
// The index is engine-agnostic: the LevelDB engine fills it at start and after
// every committed write; a shared engine would fill it from its change feed.
import type { KeyRecord, RateLimits } from "../domain/types.js";
import type { CidrRange } from "../policy/types.js";

const EMPTY = -1;
const TOMBSTONE = -2;

const F_LIVE = 1;
const F_ENABLED = 2;
const F_UNLIMITED = 4;
/** The slot has an entry in #restrict / #rate: lookups of other slots skip those Maps. */
const F_RESTRICTED = 8;
const F_RATE = 16;

/** Sliding one-minute window in one-second buckets. */
export class RateWindow {
  readonly requests = new Uint32Array(60);
  readonly tokens = new Float64Array(60);
  /** The epoch second the bucket at `second % 60` was last reset for. */
  readonly stamps = new Float64Array(60);

  #bucket(nowMs: number): number {
    const sec = Math.floor(nowMs / 1000);
    const i = sec % 60;
    if (this.stamps[i] !== sec) {
      this.stamps[i] = sec;
      this.requests[i] = 0;
      this.tokens[i] = 0;
    }
    return i;
  }

  addRequest(nowMs: number): void {
    this.requests[this.#bucket(nowMs)]! += 1;
  }

  addTokens(nowMs: number, n: number): void {
    this.tokens[this.#bucket(nowMs)]! += n;
  }

  /** Requests and tokens in the last 60 s, and ms until the oldest counted bucket leaves. */
  read(nowMs: number): { requests: number; tokens: number; resetMs: number } {
    const sec = Math.floor(nowMs / 1000);
    let requests = 0;
    let tokens = 0;
    let oldest = Infinity;
    for (let i = 0; i < 60; i++) {
      const s = this.stamps[i]!;
      if (s > sec - 60 && s <= sec) {
        requests += this.requests[i]!;
        tokens += this.tokens[i]!;
        if ((this.requests[i]! > 0 || this.tokens[i]! > 0) && s < oldest) oldest = s;
      }
    }
    const resetMs = oldest === Infinity ? 0 : (oldest + 60) * 1000 - nowMs;
    return { requests, tokens, resetMs: Math.max(0, resetMs) };
  }
}

export interface Restrictions {
  models: ReadonlySet<string> | null;
  ips: readonly CidrRange[] | null;
}

interface PreviousSecret {
  hash: Uint8Array;
  expiresAt: number;
}

/** The key fields the index holds, from a KeyRecord plus compiled restrictions. */
export interface HotKeyInput {
  record: KeyRecord;
  restrictions: Restrictions;
  remaining: number;
  used: number;
  /** Quota ever granted: initial total + changes + refills (credited − used = remaining). */
  credited: number;
  lastUsedAt: number | null;
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
  /** A Buffer view of #hashes, to decode hex into it without allocating. */
  #hashesBuf = Buffer.alloc(0);
  readonly ids: string[] = [];
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
  #rpm = new Int32Array(0);
  #tpm = new Int32Array(0);
  #conc = new Int32Array(0);

  // Sparse.
  readonly #restrict = new Map<number, Restrictions>();
  readonly #rate = new Map<number, RateWindow>();
  readonly #prev = new Map<number, PreviousSecret>();
  readonly #byId = new Map<string, number>();

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

  #grow(cap: number): void {
    const grow = <T extends Float64Array | Int32Array | Uint8Array>(old: T, make: (n: number) => T, per = 1): T => {
      const a = make(cap * per);
      a.set(old);
      return a;
    };
    this.#hashes = grow(this.#hashes, (n) => new Uint8Array(n), 32);
    this.#hashesBuf = Buffer.from(this.#hashes.buffer, this.#hashes.byteOffset, this.#hashes.byteLength);
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
    this.#rpm = grow(this.#rpm, (n) => new Int32Array(n));
    this.#tpm = grow(this.#tpm, (n) => new Int32Array(n));
    this.#conc = grow(this.#conc, (n) => new Int32Array(n));
    this.#cap = cap;
    this.#rehash(cap * 2);
  }

  #rehash(tableSize: number): void {
    let size = 16;
    while (size < tableSize) size <<= 1;
    this.#table = new Int32Array(size).fill(EMPTY);
    this.#tableMask = size - 1;
    this.#tableUsed = 0;
    for (let s = 0; s < this.#next; s++) {
      if (this.#flags[s]! & F_LIVE) {
        this.#tableInsert(this.#hashes.subarray(s * 32, s * 32 + 32), s);
        const p = this.#prev.get(s);
        if (p) this.#tableInsert(p.hash, s);
      }
    }
  }

  // ---- hash table ------------------------------------------------------

  static #start(hash: Uint8Array): number {
    return ((hash[0]! << 24) | (hash[1]! << 16) | (hash[2]! << 8) | hash[3]!) >>> 0;
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

  #tableInsert(hash: Uint8Array, slot: number): void {
    if ((this.#tableUsed + 1) * 2 > this.#table.length) this.#rehash(this.#table.length * 2);
    let i = HotIndex.#start(hash) & this.#tableMask;
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
    let i = HotIndex.#start(hash) & this.#tableMask;
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
    return this.#byId.get(id) ?? -1;
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
  limits(slot: number): RateLimits {
    return { rpm: this.#rpm[slot]!, tpm: this.#tpm[slot]!, concurrency: this.#conc[slot]! };
  }
  restrictions(slot: number): Restrictions | undefined {
    return this.#flags[slot]! & F_RESTRICTED ? this.#restrict.get(slot) : undefined;
  }
  rateWindow(slot: number): RateWindow | undefined {
    return this.#flags[slot]! & F_RATE ? this.#rate.get(slot) : undefined;
  }

  // ---- writes (called by the engine after a commit) ----------------------

  /** Inserts or replaces a key (by id). */
  upsert(k: HotKeyInput): number {
    const r = k.record;
    let slot = this.#byId.get(r.id) ?? -1;
    if (slot >= 0) {
      this.#tableRemove(this.#hashes.subarray(slot * 32, slot * 32 + 32));
      const p = this.#prev.get(slot);
      if (p) this.#tableRemove(p.hash);
      this.#prev.delete(slot);
    } else {
      slot = this.#free.pop() ?? this.#next++;
      if (slot >= this.#cap) this.#grow(this.#cap * 2);
      this.#byId.set(r.id, slot);
      this.ids[slot] = r.id;
      this.#count++;
      this.#reserved[slot] = 0;
      this.#open[slot] = 0;
    }
    this.#hashesBuf.fill(0, slot * 32, slot * 32 + 32);
    this.#hashesBuf.write(r.secretHash, slot * 32, 32, "hex");
    const restricted = k.restrictions.models !== null || k.restrictions.ips !== null;
    const rated = r.limits.rpm > 0 || r.limits.tpm > 0;
    this.#flags[slot] = F_LIVE | (r.status === "enabled" ? F_ENABLED : 0) | (r.unlimited ? F_UNLIMITED : 0) | (restricted ? F_RESTRICTED : 0) | (rated ? F_RATE : 0);
    this.#accountIdx[slot] = this.accountIndex(r.accountId);
    this.#groupIdx[slot] = this.groupIndex(r.group);
    this.#expiresAt[slot] = r.expiresAt ?? NaN;
    this.#remaining[slot] = k.remaining;
    this.#used[slot] = k.used;
    this.#credited[slot] = k.credited;
    this.#lastUsedAt[slot] = k.lastUsedAt ?? NaN;
    this.#rpm[slot] = r.limits.rpm;
    this.#tpm[slot] = r.limits.tpm;
    this.#conc[slot] = r.limits.concurrency;
    if (restricted) this.#restrict.set(slot, k.restrictions);
    else this.#restrict.delete(slot);
    if (rated) {
      if (!this.#rate.has(slot)) this.#rate.set(slot, new RateWindow());
    } else {
      this.#rate.delete(slot);
    }
    this.#tableInsert(this.#hashes.subarray(slot * 32, slot * 32 + 32), slot);
    if (r.prevSecretHash && r.prevSecretExpiresAt !== null) {
      const hash = Uint8Array.from(Buffer.from(r.prevSecretHash, "hex"));
      this.#prev.set(slot, { hash, expiresAt: r.prevSecretExpiresAt });
      this.#tableInsert(hash, slot);
    }
    return slot;
  }

  remove(id: string): void {
    const slot = this.#byId.get(id);
    if (slot === undefined) return;
    this.#tableRemove(this.#hashes.subarray(slot * 32, slot * 32 + 32));
    const p = this.#prev.get(slot);
    if (p) this.#tableRemove(p.hash);
    this.#prev.delete(slot);
    this.#restrict.delete(slot);
    this.#rate.delete(slot);
    this.#hashes.fill(0, slot * 32, slot * 32 + 32);
    this.#flags[slot] = 0;
    this.#byId.delete(id);
    this.ids[slot] = "";
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
}
