// Usage HISTORY: minute, hour and day buckets per key, account, group and model, kept in
// memory and flushed once a second as absolute values (see service/usage.ts for the rules:
// seeding after a restart or an eviction, retention, what a kill -9 loses).
import type { AdminStore, UsageBucket, UsageStore } from "../../store/types.js";
import { addCounters, bucketStart, copyBucket, DAY_MS, GRAN_MS, zeroCounters, type Dim, type Gran, type Owner, type UsageCounters } from "./counters.js";

/** A bucket stays in memory this long after it ends (late Consume records land in it without a re-read). */
const EVICT_GRACE_MS = 60_000;
/** Seed reads run this many at a time. */
const SEED_PARALLEL = 64;
/** Default retention per granularity (UsageRecorderOptions.retentionMs). */
export const DEFAULT_RETENTION_MS: Readonly<Record<Gran, number>> = Object.freeze({ m: 48 * 3_600_000, h: 90 * DAY_MS, d: 730 * DAY_MS });
/** Expired buckets deleted per tick, at most (a small batch: the tick also flushes). */
export const PRUNE_BATCH = 500;
/**
 * Once a prune pass finds fewer than a batch (caught up), the next one waits this long: the
 * shortest retention is hours, and a pass over nothing still opens an iterator per granularity
 * and dimension (5–9 % of the main thread under Check load in a CPU profile when it ran every second).
 */
export const PRUNE_IDLE_MS = 60_000;

/** The store operations the recorder uses. */
export type UsageRecorderStore = UsageStore & Pick<AdminStore, "getKey" | "getAccount" | "scanKeys">;

interface Entry {
  b: UsageBucket;
  /** True once `b` is the absolute value (seeded from the store, or known to be new). */
  loaded: boolean;
  /** Changed since its last flush (then it is in #dirty). */
  dirty: boolean;
}

/** The newest bucket of each granularity of one (dim, id): the hot path's shortcut past string keys. */
interface Slot {
  m: Entry | undefined;
  h: Entry | undefined;
  d: Entry | undefined;
}

/** Which buckets a query reads (one granularity and dimension, starts in [lo, until), one id or all). */
export interface BucketSelection {
  gran: Gran;
  dim: Dim;
  lo: number;
  until: number;
  /** "" = every id. */
  direct: string;
}

const noop = () => {};

export class UsageHistory {
  readonly #store: UsageRecorderStore;
  readonly #clock: () => number;
  readonly #onError: (err: unknown) => void;
  readonly #retention: Readonly<Record<Gran, number>>;
  readonly #startedAt: number;

  readonly #entries = new Map<string, Entry>();
  readonly #slots: Record<Dim, Map<string, Slot>> = { key: new Map(), account: new Map(), group: new Map(), model: new Map() };
  #dirty: Entry[] = [];
  /** keyId → account and (current) group: from what was recorded, admin events and store look-ups. */
  readonly #owners = new Map<string, Owner>();
  #flushChain: Promise<void> = Promise.resolve();
  #flushQueued = false;
  /** A failing store is reported once per streak of failed flushes, not every second. */
  #flushFailing = false;
  #queries = 0;
  #lastEvict = 0;
  #pruning = false;
  #nextPruneAt = 0;

  constructor(opts: { store: UsageRecorderStore; clock: () => number; onError: (err: unknown) => void; retentionMs?: Partial<Record<Gran, number>> }) {
    this.#store = opts.store;
    this.#clock = opts.clock;
    this.#onError = opts.onError;
    this.#retention = { ...DEFAULT_RETENTION_MS, ...opts.retentionMs };
    this.#startedAt = this.#clock();
  }

  get startedAt(): number {
    return this.#startedAt;
  }

  // ---- owners ----------------------------------------------------------------------

  /** The owner known in memory (recorded or learnt), without a store look-up. */
  knownOwner(keyId: string): Owner | undefined {
    return this.#owners.get(keyId);
  }

  setOwner(keyId: string, o: Owner): void {
    this.#owners.set(keyId, o);
  }

  /** The account and (current) group of a key: from what was recorded, else from the store. */
  async keyOwner(keyId: string): Promise<Owner | undefined> {
    const known = this.#owners.get(keyId);
    if (known) return known;
    const s = await this.#store.getKey(keyId);
    if (!s) return undefined;
    const o = { accountId: s.record.accountId, group: s.record.group };
    this.#owners.set(keyId, o);
    return o;
  }

  // ---- recording (sync, hot path) ----------------------------------------------------

  /** Applies `apply` to every bucket of the key, account, group and model (each when not "") containing `at`. */
  record(at: number, keyId: string, accountId: string, group: string, model: string, apply: (c: UsageCounters) => void): void {
    if (keyId && accountId) {
      const o = this.#owners.get(keyId);
      if (!o || o.accountId !== accountId || o.group !== group) this.#owners.set(keyId, { accountId, group });
    }
    if (keyId) this.#touch("key", keyId, at, apply);
    if (accountId) this.#touch("account", accountId, at, apply);
    if (group) this.#touch("group", group, at, apply);
    if (model) this.#touch("model", model, at, apply);
  }

  /** Applies `apply` to the minute, hour and day buckets of (dim, id) containing `at`. */
  #touch(dim: Dim, id: string, at: number, apply: (c: UsageCounters) => void): void {
    const slots = this.#slots[dim];
    let slot = slots.get(id);
    if (!slot) slots.set(id, (slot = { m: undefined, h: undefined, d: undefined }));
    let e = slot.m;
    if (e === undefined || at < e.b.start || at >= e.b.start + 60_000) e = this.#slotEntry(slot, "m", dim, id, at);
    this.#apply(e, apply);
    e = slot.h;
    if (e === undefined || at < e.b.start || at >= e.b.start + 3_600_000) e = this.#slotEntry(slot, "h", dim, id, at);
    this.#apply(e, apply);
    e = slot.d;
    if (e === undefined || at < e.b.start || at >= e.b.start + 86_400_000) e = this.#slotEntry(slot, "d", dim, id, at);
    this.#apply(e, apply);
  }

  #apply(e: Entry, apply: (c: UsageCounters) => void): void {
    apply(e.b);
    if (!e.dirty) {
      e.dirty = true;
      this.#dirty.push(e);
    }
  }

  /** The entry of the bucket containing `at`; it becomes the slot's when it is newer (a late record does not move the slot back). */
  #slotEntry(slot: Slot, gran: Gran, dim: Dim, id: string, at: number): Entry {
    const e = this.#entry(gran, dim, id, bucketStart(gran, at));
    const cur = slot[gran];
    if (!cur || e.b.start > cur.b.start) slot[gran] = e;
    return e;
  }

  #entry(gran: Gran, dim: Dim, id: string, start: number): Entry {
    const k = `${gran}|${dim}|${id}|${start}`;
    let e = this.#entries.get(k);
    if (!e) {
      // New to memory. It may be on disk already when it started before this
      // recorder did, or when it was evicted (its grace period is over): then
      // memory holds deltas until the flush seeds it from the store.
      const fresh = start > this.#startedAt && this.#clock() < start + GRAN_MS[gran] + EVICT_GRACE_MS;
      e = { b: { gran, dim, id, start, ...zeroCounters() }, loaded: fresh, dirty: false };
      this.#entries.set(k, e);
    }
    return e;
  }

  // ---- reading ------------------------------------------------------------------------

  /**
   * The buckets of `sel`: the stored ones (`read`), then memory over them in one synchronous
   * step — a seeded entry is the absolute value, an unseeded one adds its deltas. Nothing is
   * evicted while `read` runs. Keyed by `${start}|${id}`; the buckets are copies.
   */
  async merged(sel: BucketSelection, read: () => Promise<UsageBucket[]>): Promise<Map<string, UsageBucket>> {
    const { gran, dim, lo, until, direct } = sel;
    const merged = new Map<string, UsageBucket>();
    this.#queries++;
    try {
      const stored = await read();
      for (const b of stored) if (!direct || b.id === direct) merged.set(`${b.start}|${b.id}`, copyBucket(b));
      for (const e of this.#entries.values()) {
        const b = e.b;
        if (b.gran !== gran || b.dim !== dim || b.start < lo || b.start >= until || (direct && b.id !== direct)) continue;
        const k = `${b.start}|${b.id}`;
        const cur = merged.get(k);
        if (e.loaded || !cur) merged.set(k, copyBucket(b));
        else addCounters(cur, b);
      }
    } finally {
      this.#queries--;
    }
    return merged;
  }

  // ---- flushing -----------------------------------------------------------------------

  /** Writes every bucket touched since the last flush (absolute values). Serialised. */
  flush(): Promise<void> {
    const run = this.#flushChain.then(() => this.#flushOnce());
    this.#flushChain = run.catch(noop);
    return run;
  }

  async #flushOnce(): Promise<void> {
    const batch = this.#dirty;
    this.#dirty = [];
    for (const e of batch) e.dirty = false;
    if (batch.length) {
      try {
        await this.#seed(batch.filter((e) => !e.loaded));
        await this.#store.putUsageBuckets(
          batch.map((e) => {
            const b = copyBucket(e.b);
            // Key rows are indexed by account too: the key's, from what was recorded.
            if (b.dim === "key") {
              const account = this.#owners.get(b.id)?.accountId;
              if (account) b.account = account;
            }
            return b;
          }),
        );
      } catch (err) {
        // Values are absolute: writing them again later is always right.
        for (const e of batch) {
          if (!e.dirty) {
            e.dirty = true;
            this.#dirty.push(e);
          }
        }
        throw err;
      }
    }
    this.#evict();
  }

  /** Adds the stored value to each unseeded entry (which holds only deltas), making it absolute. */
  async #seed(entries: Entry[]): Promise<void> {
    for (let i = 0; i < entries.length; i += SEED_PARALLEL) {
      const chunk = entries.slice(i, i + SEED_PARALLEL);
      const stored = await this.#store.getUsageBuckets(chunk.map((e) => e.b));
      // One synchronous step per chunk: nothing is recorded between the read and the merge.
      chunk.forEach((e, j) => {
        const base = stored[j];
        if (base) addCounters(e.b, base);
        e.loaded = true;
      });
    }
  }

  /** Drops clean buckets whose grace period is over (every 10 s; never while a query merges memory). */
  #evict(): void {
    const now = this.#clock();
    if (this.#queries > 0 || now - this.#lastEvict < 10_000) return;
    this.#lastEvict = now;
    for (const [k, e] of this.#entries) {
      const b = e.b;
      if (!e.loaded || e.dirty || b.start + GRAN_MS[b.gran] + EVICT_GRACE_MS > now) continue;
      this.#entries.delete(k);
      // No slot may keep an evicted entry: a second entry for the same bucket would lose updates.
      const slots = this.#slots[b.dim];
      const slot = slots.get(b.id);
      if (slot?.[b.gran] === e) {
        slot[b.gran] = undefined;
        if (!slot.m && !slot.h && !slot.d) slots.delete(b.id);
      }
    }
  }

  /** Deletes up to `limit` buckets past their retention (the tick calls it every second); returns how many. */
  prune(limit = PRUNE_BATCH): Promise<number> {
    const now = this.#clock();
    const r = this.#retention;
    return this.#store.pruneUsage({ m: now - r.m, h: now - r.h, d: now - r.d }, limit);
  }

  /** The once-a-second step: a flush (unless one is queued) and a prune batch (unless one runs, or the last found nothing more to do less than PRUNE_IDLE_MS ago). */
  tick(): void {
    if (!this.#flushQueued) {
      this.#flushQueued = true;
      this.flush()
        .then(
          () => (this.#flushFailing = false),
          (err) => {
            if (!this.#flushFailing) this.#onError(err);
            this.#flushFailing = true;
          },
        )
        .finally(() => (this.#flushQueued = false));
    }
    if (!this.#pruning && this.#clock() >= this.#nextPruneAt) {
      this.#pruning = true;
      this.prune()
        .then(
          // A full batch: more is due, go on at the next tick; fewer: caught up.
          (n) => (this.#nextPruneAt = n >= PRUNE_BATCH ? 0 : this.#clock() + PRUNE_IDLE_MS),
          (err) => {
            this.#onError(err);
            this.#nextPruneAt = this.#clock() + PRUNE_IDLE_MS;
          },
        )
        .finally(() => (this.#pruning = false));
    }
  }
}
