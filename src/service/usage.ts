// Usage history, live usage and alerts (issue 4, sections 5–7). No gRPC types.
//
// HISTORY. UsageRecorder aggregates in memory every Check decision (requests
// admitted, denies by reason) and every charged Consume (input and output
// tokens, units, calls) into minute, hour and day buckets (UTC starts) for
// each of four dimensions: key, account, group and model. A dimension whose
// id is empty is skipped (a deny for an unknown key has no key, account or
// group: it counts in its model's row only — and in the live totals).
// Model names come from clients, so a DENIED request naming a model that has
// no price is counted under the model "(unpriced)": nobody can grow the
// history (day buckets are kept two years) by sending made-up names. Admitted
// requests and charged Consumes keep their model's name (they are billed).
//
// Once a second the buckets touched since the last flush are written as
// ABSOLUTE values (UsageStore.putUsageBuckets replaces what is stored). A
// bucket that may already be on disk — it started before this recorder did
// (a restart mid-bucket), or it was evicted from memory and is touched again
// late — starts "unseeded": memory then holds only the deltas seen since, and
// before its first flush the stored value is read and added in one
// synchronous step, after which memory holds the absolute value. So a restart
// neither loses nor double counts what was flushed; stop() flushes. What was
// never flushed (under a second's worth, on kill -9) is lost: these are
// aggregates, the ledger is the billing truth. Buckets past their retention
// (minute 48 h, hour 90 days, day 2 years by default; UsageRecorderOptions.retentionMs)
// are pruned by the once-a-second tick, at most PRUNE_BATCH a tick.
//
// STORAGE. The store indexes buckets by granularity, dimension and time, and
// key and account rows also by account (UsageStore): a query restricted to an
// account (every account-scoped token's) reads only that account's rows in the
// asked range, and an operator's query over all accounts reads the range of
// time it asks for — never the whole history of every tenant. Key rows are
// written with their account (from what was recorded).
//
// QUERY SEMANTICS. Each stored bucket has ONE dimension: a key row does not
// know models, a model row does not know keys or accounts. A query therefore
// reads one "source" dimension and, for key rows, attributes each key to its
// account and group through a keyId → {account, group} map (learnt from what
// was recorded and from admin events, else looked up in the store; a key's
// account never changes, its group is the current one). See sourceDim():
//   - a model filter, or group_by model: model rows only. They cannot be
//     restricted to a key, account or group (INVALID_ARGUMENT) — so an
//     account-scoped token, always restricted to its account, cannot group by
//     model;
//   - a key filter, or group_by key: key rows (filtered by id, account, group);
//   - group_by account: account rows; with a group filter, key rows of that
//     group summed per account;
//   - group_by group: group rows; with an account filter, key rows of that
//     account summed per (current) group.
// A bucket is returned when it overlaps [since, until): since is rounded down
// to the bucket boundary. Keys deleted before this process started cannot be
// attributed (their rows drop out of account/group-filtered key queries; the
// account and group rows still count them).
//
// LIVE. subscribe(filter, listener): every second the listener gets that
// second's deltas (total, per key, per group), key events (admin changes and
// "quota_exhausted"), alerts (key quota and account balance crossing 50/80/100
// %, keys expiring within 24 h) and the remaining quota of the keys charged
// in that second. Live state is kept only while someone listens.
import { invalid, notFound, SidecarError } from "../domain/errors.js";
import type { AccountState, KeyState, Principal } from "../domain/types.js";
import { addSaturating } from "../domain/units.js";
import type { Reason } from "../policy/reasons.js";
import type { AdminStore, ConsumeRecord, UsageBucket, UsageStore } from "../store/types.js";

export type Gran = UsageBucket["gran"];
export type Dim = UsageBucket["dim"];

export const GRANS: readonly Gran[] = ["m", "h", "d"];
export const DIMS: readonly Dim[] = ["key", "account", "group", "model"];
export const GRAN_MS: Readonly<Record<Gran, number>> = Object.freeze({ m: 60_000, h: 3_600_000, d: 86_400_000 });
/** Alert thresholds, in percent of a key's quota or an account's credited balance used. */
export const THRESHOLDS = [50, 80, 100] as const;
const DAY_MS = 86_400_000;
/** A bucket stays in memory this long after it ends (late Consume records land in it without a re-read). */
const EVICT_GRACE_MS = 60_000;
/** Seed reads run this many at a time. */
const SEED_PARALLEL = 64;
/** Default retention per granularity (UsageRecorderOptions.retentionMs). */
export const DEFAULT_RETENTION_MS: Readonly<Record<Gran, number>> = Object.freeze({ m: 48 * 3_600_000, h: 90 * DAY_MS, d: 730 * DAY_MS });
/** Expired buckets deleted per tick, at most (a small batch: the tick also flushes). */
export const PRUNE_BATCH = 500;
/** A query answers at most this many rows (RESOURCE_EXHAUSTED beyond). */
export const MAX_QUERY_ROWS = 50_000;
/** The model row of denied requests naming a model with no price (see the file comment). */
export const UNPRICED_MODEL = "(unpriced)";
/** A merged live event keeps at most this many key events and alerts (the newest). */
export const MAX_MERGED_EVENTS = 10_000;

export interface UsageCounters {
  requests: number;
  denied: number;
  denies: Record<string, number>;
  inputTokens: number;
  outputTokens: number;
  units: number;
  consumed: number;
  /**
   * The token kinds (parts of inputTokens / outputTokens), kept only once not 0: absent in
   * buckets from before kinds were kept, and in buckets without any (read as 0).
   */
  cacheReadTokens?: number;
  cacheWriteTokens?: number;
  reasoningTokens?: number;
}

/** `into.kind += n` for a token kind, leaving the field absent while it stays 0. */
function addKind(into: UsageCounters, kind: "cacheReadTokens" | "cacheWriteTokens" | "reasoningTokens", n: number | undefined): void {
  if (n) into[kind] = addSaturating(into[kind] ?? 0, n);
}

export function zeroCounters(): UsageCounters {
  return { requests: 0, denied: 0, denies: {}, inputTokens: 0, outputTokens: 0, units: 0, consumed: 0 };
}

/** into += c (mutates and returns `into`). */
// Sums saturate at 2^53 − 1 instead of silently dropping units (they are aggregates; the
// ledger holds every charge exactly).
export function addCounters<T extends UsageCounters>(into: T, c: UsageCounters): T {
  into.requests = addSaturating(into.requests, c.requests);
  into.denied = addSaturating(into.denied, c.denied);
  for (const [r, n] of Object.entries(c.denies)) into.denies[r] = addSaturating(into.denies[r] ?? 0, n);
  into.inputTokens = addSaturating(into.inputTokens, c.inputTokens);
  into.outputTokens = addSaturating(into.outputTokens, c.outputTokens);
  into.units = addSaturating(into.units, c.units);
  into.consumed = addSaturating(into.consumed, c.consumed);
  addKind(into, "cacheReadTokens", c.cacheReadTokens);
  addKind(into, "cacheWriteTokens", c.cacheWriteTokens);
  addKind(into, "reasoningTokens", c.reasoningTokens);
  return into;
}

function copyCounters(c: UsageCounters): UsageCounters {
  const out: UsageCounters = { requests: c.requests, denied: c.denied, denies: { ...c.denies }, inputTokens: c.inputTokens, outputTokens: c.outputTokens, units: c.units, consumed: c.consumed };
  addKind(out, "cacheReadTokens", c.cacheReadTokens);
  addKind(out, "cacheWriteTokens", c.cacheWriteTokens);
  addKind(out, "reasoningTokens", c.reasoningTokens);
  return out;
}

function copyBucket(b: UsageBucket): UsageBucket {
  return { gran: b.gran, dim: b.dim, id: b.id, start: b.start, ...copyCounters(b) };
}

/** Start (UTC) of the bucket of granularity `gran` containing `t`. */
export function bucketStart(gran: Gran, t: number): number {
  const size = GRAN_MS[gran];
  return Math.floor(t / size) * size;
}

/** The highest threshold reached when `used` of `total` is spent (0 = none). A total <= 0 is reached at once. */
export function quotaLevel(used: number, total: number): 0 | 50 | 80 | 100 {
  if (total <= 0) return used >= 0 ? 100 : 0;
  for (let i = THRESHOLDS.length - 1; i >= 0; i--) {
    const t = THRESHOLDS[i]!;
    if (used * 100 >= t * total) return t;
  }
  return 0;
}

/** Thresholds crossed going from level `from` to level `to` (none when going down). */
export function crossedThresholds(from: number, to: number): number[] {
  return THRESHOLDS.filter((t) => t > from && t <= to);
}

export interface UsageFilter {
  keyId: string;
  accountId: string;
  group: string;
  model: string;
}

/**
 * Which stored dimension answers a query (see the file comment). Throws
 * INVALID_ARGUMENT for combinations the one-dimensional buckets cannot answer.
 */
export function sourceDim(f: UsageFilter, groupBy: Dim): Dim {
  const narrowed = f.keyId !== "" || f.accountId !== "" || f.group !== "";
  const why = "usage by model is kept server-wide only, not per key, account or group (an account-scoped token is always restricted to its account)";
  if (f.model !== "") {
    if (narrowed) throw invalid("filter.model", `cannot be combined with a key, account or group filter: ${why}`);
    if (groupBy !== "model") throw invalid("group_by", "with a model filter, rows can only be grouped by model");
    return "model";
  }
  if (groupBy === "model") {
    if (narrowed) throw invalid("group_by", `cannot group by model with a key, account or group filter: ${why}`);
    return "model";
  }
  if (groupBy === "key" || f.keyId !== "") return "key";
  if (groupBy === "account") return f.group !== "" ? "key" : "account";
  return f.accountId !== "" ? "key" : "group";
}

export interface UsageQuery {
  filter?: Partial<UsageFilter>;
  /** Default "key". */
  groupBy?: Dim;
  /** Default "h". */
  gran?: Gran;
  /** Default: 24 hours before now. */
  since?: number;
  /** Default: now. */
  until?: number;
}

export interface UsageRow {
  /** Bucket start (epoch ms). */
  start: number;
  /** Key id, account id, group or model, per groupBy ("" when a deleted key cannot be attributed). */
  id: string;
  counters: UsageCounters;
}

export interface UsageQueryResult {
  rows: UsageRow[];
  total: UsageCounters;
}

// ---- live -----------------------------------------------------------------

export type AdminKeyEventKind = "created" | "updated" | "enabled" | "disabled" | "deleted" | "rotated";

/** What the admin service reports after a successful key mutation ("deleted": the state before). */
export interface AdminKeyEvent {
  keyId: string;
  kind: AdminKeyEventKind;
  key?: KeyState;
}

export interface LiveKeyEvent {
  keyId: string;
  kind: AdminKeyEventKind | "quota_exhausted";
  /** The key after the change (before it, for "deleted"; the transport does not send that one). */
  key?: KeyState;
}

export interface LiveAlert {
  kind: "key_quota" | "account_balance" | "key_expiring";
  targetId: string;
  /** 50, 80 or 100 for quota/balance alerts; 0 for key_expiring. */
  percent: number;
  message: string;
  /** key_expiring: when the key expires. */
  expiresAt: number | null;
}

export interface LiveRemaining {
  keyId: string;
  /** Remaining quota (settled charges; open reservations not subtracted); 0 if unlimited. */
  remaining: number;
  unlimited: boolean;
  /** The key's account balance (credited − charged). */
  accountBalance: number;
}

export interface LiveRow {
  id: string;
  counters: UsageCounters;
}

/** One second (or, merged under backpressure, several) of live usage. */
export interface LiveEvent {
  /** Start of the span covered. */
  from: number;
  /** End of the span covered. */
  at: number;
  total: UsageCounters;
  byKey: LiveRow[];
  byGroup: LiveRow[];
  keyEvents: LiveKeyEvent[];
  alerts: LiveAlert[];
  remaining: LiveRemaining[];
}

function mergeRows(a: LiveRow[], b: LiveRow[]): LiveRow[] {
  const m = new Map<string, LiveRow>();
  for (const r of a) m.set(r.id, { id: r.id, counters: copyCounters(r.counters) });
  for (const r of b) {
    const cur = m.get(r.id);
    if (cur) addCounters(cur.counters, r.counters);
    else m.set(r.id, { id: r.id, counters: copyCounters(r.counters) });
  }
  return [...m.values()];
}

/** Merges two consecutive live events into one covering both (a first). Pure. */
export function mergeLiveEvents(a: LiveEvent, b: LiveEvent): LiveEvent {
  const remaining = new Map<string, LiveRemaining>();
  for (const r of a.remaining) remaining.set(r.keyId, r);
  for (const r of b.remaining) remaining.set(r.keyId, r); // the later state wins
  return {
    from: a.from,
    at: b.at,
    total: addCounters(copyCounters(a.total), b.total),
    byKey: mergeRows(a.byKey, b.byKey),
    byGroup: mergeRows(a.byGroup, b.byGroup),
    keyEvents: [...a.keyEvents, ...b.keyEvents].slice(-MAX_MERGED_EVENTS),
    alerts: [...a.alerts, ...b.alerts].slice(-MAX_MERGED_EVENTS),
    remaining: [...remaining.values()],
  };
}

/** The store operations the recorder uses. */
export type UsageRecorderStore = UsageStore & Pick<AdminStore, "getKey" | "getAccount" | "scanKeys">;

export interface UsageRecorderOptions {
  store: UsageRecorderStore;
  clock: () => number;
  /** Background failures (flush, prune, scans). */
  onError?: (err: unknown) => void;
  /** Default 1000. */
  tickMs?: number;
  /** Whether a model has a price (denies naming other models count under UNPRICED_MODEL). Default: every model. */
  isPriced?: (model: string) => boolean;
  /** How long buckets of each granularity are kept (ms); DEFAULT_RETENTION_MS for those not given. */
  retentionMs?: Partial<Record<Gran, number>>;
}

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

interface Owner {
  accountId: string;
  group: string;
}

interface Tuple extends Owner {
  keyId: string;
  model: string;
  c: UsageCounters;
}

/** One second's live accumulation. */
interface SecondAcc {
  from: number;
  tuples: Map<string, Tuple>;
  /** Keys charged: units charged this second. */
  charged: Map<string, number>;
  /** Accounts charged: units charged this second. */
  accounts: Map<string, number>;
  keyEvents: (LiveKeyEvent & Owner)[];
}

interface Subscriber {
  filter: UsageFilter;
  listener: (e: LiveEvent) => void;
  /** The subscribers with the same filter: each second's event is built once for all of them. */
  group: FilterGroup;
  /** Not yet sent an event: its first one carries every key_expiring alert its group already sent. */
  fresh: boolean;
}

interface FilterGroup {
  filter: UsageFilter;
  subs: Set<Subscriber>;
  /** key_expiring alerts already sent to this group's subscribers: key id → expiresAt. */
  expiringSent: Map<string, number>;
}

function filterKey(f: UsageFilter): string {
  return JSON.stringify([f.keyId, f.accountId, f.group, f.model]);
}

interface Expiring extends Owner {
  expiresAt: number;
}

type AlertRec = LiveAlert & { keyId: string; accountId: string; group: string };

const noop = () => {};
const admit = (c: UsageCounters) => {
  c.requests += 1;
};

function matchesKey(f: UsageFilter, keyId: string, o: Owner): boolean {
  return (!f.keyId || f.keyId === keyId) && (!f.accountId || f.accountId === o.accountId) && (!f.group || f.group === o.group);
}

function percentText(n: number, total: number): string {
  return `${n.toLocaleString("en-US")} of ${total.toLocaleString("en-US")} units`;
}

export class UsageRecorder {
  readonly #store: UsageRecorderStore;
  readonly #clock: () => number;
  readonly #onError: (err: unknown) => void;
  readonly #tickMs: number;
  readonly #isPriced: (model: string) => boolean;
  readonly #retention: Readonly<Record<Gran, number>>;
  readonly #startedAt: number;

  // History.
  readonly #entries = new Map<string, Entry>();
  readonly #slots: Record<Dim, Map<string, Slot>> = { key: new Map(), account: new Map(), group: new Map(), model: new Map() };
  #dirty: Entry[] = [];
  readonly #owners = new Map<string, Owner>();
  #flushChain: Promise<void> = Promise.resolve();
  #flushQueued = false;
  /** A failing store is reported once per streak of failed flushes, not every second. */
  #flushFailing = false;
  #queries = 0;
  #lastEvict = 0;
  #pruning = false;

  // Live.
  readonly #subs = new Set<Subscriber>();
  /** Subscribers by filter (filterKey). */
  readonly #groups = new Map<string, FilterGroup>();
  #acc: SecondAcc;
  #liveChain: Promise<void> = Promise.resolve();
  readonly #keyLevel = new Map<string, number>();
  readonly #exhausted = new Set<string>();
  readonly #accountLevel = new Map<string, number>();
  #expiring = new Map<string, Expiring>();
  #lastExpiryScan = 0;
  #expiryScanning = false;

  #timer: NodeJS.Timeout | undefined;
  #stopped = false;

  constructor(opts: UsageRecorderOptions) {
    this.#store = opts.store;
    this.#clock = opts.clock;
    this.#onError = opts.onError ?? noop;
    this.#tickMs = opts.tickMs ?? 1000;
    this.#isPriced = opts.isPriced ?? (() => true);
    this.#retention = { ...DEFAULT_RETENTION_MS, ...opts.retentionMs };
    this.#startedAt = this.#clock();
    this.#acc = this.#newAcc(this.#startedAt);
  }

  /** Starts the once-a-second flush / live tick (and the hourly prune). */
  start(): void {
    if (this.#timer || this.#stopped) return;
    this.#timer = setInterval(() => this.#tick(), this.#tickMs);
    this.#timer.unref();
  }

  /** Stops the timers, drops the subscribers and flushes everything recorded. */
  async stop(): Promise<void> {
    this.#stopped = true;
    if (this.#timer) clearInterval(this.#timer);
    this.#timer = undefined;
    this.#subs.clear();
    this.#groups.clear();
    this.#clearLive();
    await this.#liveChain;
    await this.flush();
  }

  // ---- recording (sync, hot path) ----------------------------------------------

  /** A Check decision. `who` ids are "" for an unknown key. */
  recordDecision(reason: Reason, who: { keyId: string; accountId: string; group: string }, model: string | null, at = this.#clock()): void {
    if (reason === "ALLOWED") {
      this.#record(at, who.keyId, who.accountId, who.group, model ?? "", admit);
    } else {
      const m = !model ? "" : this.#isPriced(model) ? model : UNPRICED_MODEL;
      this.#record(at, who.keyId, who.accountId, who.group, m, (c) => {
        c.denied += 1;
        c.denies[reason] = (c.denies[reason] ?? 0) + 1;
      });
    }
  }

  /** A charged (not replayed) Consume. */
  recordConsume(r: ConsumeRecord): void {
    this.#record(r.at, r.keyId, r.accountId, r.group, r.model, (c) => {
      c.inputTokens = addSaturating(c.inputTokens, r.inputTokens);
      c.outputTokens = addSaturating(c.outputTokens, r.outputTokens);
      c.units = addSaturating(c.units, r.units);
      c.consumed += 1;
      addKind(c, "cacheReadTokens", r.cacheReadTokens);
      addKind(c, "cacheWriteTokens", r.cacheWriteTokens);
      addKind(c, "reasoningTokens", r.reasoningTokens);
    });
    if (this.#subs.size && r.keyId) {
      const acc = this.#acc;
      acc.charged.set(r.keyId, (acc.charged.get(r.keyId) ?? 0) + r.units);
      if (r.accountId) acc.accounts.set(r.accountId, (acc.accounts.get(r.accountId) ?? 0) + r.units);
    }
  }

  /** A key changed through the admin API (the AdminService event sink). */
  keyEvent(e: AdminKeyEvent): void {
    const rec = e.key?.record;
    if (rec) this.#owners.set(e.keyId, { accountId: rec.accountId, group: rec.group });
    if (e.kind === "deleted") this.#expiring.delete(e.keyId);
    else if (rec) this.#noteExpiry(rec.id, rec.expiresAt, rec);
    if (this.#subs.size === 0) return;
    const owner = this.#owners.get(e.keyId) ?? { accountId: "", group: "" };
    this.#acc.keyEvents.push({ keyId: e.keyId, kind: e.kind, key: e.key, ...owner });
  }

  #record(at: number, keyId: string, accountId: string, group: string, model: string, apply: (c: UsageCounters) => void): void {
    if (keyId && accountId) {
      const o = this.#owners.get(keyId);
      if (!o || o.accountId !== accountId || o.group !== group) this.#owners.set(keyId, { accountId, group });
    }
    if (keyId) this.#touch("key", keyId, at, apply);
    if (accountId) this.#touch("account", accountId, at, apply);
    if (group) this.#touch("group", group, at, apply);
    if (model) this.#touch("model", model, at, apply);
    if (this.#subs.size) {
      const k = `${keyId}\u0000${accountId}\u0000${group}\u0000${model}`;
      let t = this.#acc.tuples.get(k);
      if (!t) this.#acc.tuples.set(k, (t = { keyId, accountId, group, model, c: zeroCounters() }));
      apply(t.c);
    }
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

  // ---- flushing ------------------------------------------------------------------

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

  #tick(): void {
    const now = this.#clock();
    this.#liveTick(now);
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
    if (!this.#pruning) {
      this.#pruning = true;
      this.prune()
        .catch((err) => this.#onError(err))
        .finally(() => (this.#pruning = false));
    }
  }

  // ---- query ---------------------------------------------------------------------

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

  /**
   * Normalises a filter and restricts it to what the principal may see: an
   * account token gets its own account forced, and NOT_FOUND for another
   * account or for a key that is not (known to be) its own.
   */
  async scopeFilter(filter: Partial<UsageFilter> | undefined, p: Principal): Promise<UsageFilter> {
    const f: UsageFilter = {
      keyId: (filter?.keyId ?? "").trim(),
      accountId: (filter?.accountId ?? "").trim(),
      group: (filter?.group ?? "").trim(),
      model: (filter?.model ?? "").trim(),
    };
    if (p.accountId !== null) {
      if (f.accountId && f.accountId !== p.accountId) throw notFound("account", f.accountId);
      f.accountId = p.accountId;
      if (f.keyId) {
        const o = await this.keyOwner(f.keyId);
        if (!o || o.accountId !== p.accountId) throw notFound("key", f.keyId);
      }
    }
    return f;
  }

  async query(q: UsageQuery, p: Principal): Promise<UsageQueryResult> {
    const now = this.#clock();
    const gran = q.gran ?? "h";
    const groupBy = q.groupBy ?? "key";
    if (!GRANS.includes(gran)) throw invalid("granularity", `unknown granularity ${JSON.stringify(gran)}`);
    if (!DIMS.includes(groupBy)) throw invalid("group_by", `unknown dimension ${JSON.stringify(groupBy)}`);
    const until = q.until ?? now;
    const since = q.since ?? now - DAY_MS;
    if (!Number.isFinite(since)) throw invalid("since", "is not a valid time");
    if (!Number.isFinite(until)) throw invalid("until", "is not a valid time");
    if (since >= until) throw invalid("until", "must be after since");
    const f = await this.scopeFilter(q.filter, p);
    const source = sourceDim(f, groupBy);
    const direct = source === "key" ? f.keyId : source === "account" ? f.accountId : source === "group" ? f.group : f.model;
    const lo = bucketStart(gran, since);
    // Whose rows: an account filter reads that account's own index range; a key filter its
    // owner's (an operator's filter on a key of unknown owner reads the time range).
    let account: string | undefined;
    if (source === "key" || source === "account") {
      if (f.accountId) account = f.accountId;
      else if (f.keyId) account = (await this.keyOwner(f.keyId).catch(() => undefined))?.accountId;
    }

    // Stored buckets, then memory over them in one synchronous step: a seeded
    // entry is the absolute value, an unseeded one adds its deltas.
    const merged = new Map<string, UsageBucket>();
    this.#queries++;
    try {
      const stored = await this.#store.queryUsageBuckets({ gran, dim: source, account, id: direct || undefined, since: lo, until });
      for (const b of stored) if (!direct || b.id === direct) merged.set(`${b.start}|${b.id}`, copyBucket(b));
      for (const e of this.#entries.values()) {
        const b = e.b;
        if (b.gran !== gran || b.dim !== source || b.start < lo || b.start >= until || (direct && b.id !== direct)) continue;
        const k = `${b.start}|${b.id}`;
        const cur = merged.get(k);
        if (e.loaded || !cur) merged.set(k, copyBucket(b));
        else addCounters(cur, b);
      }
    } finally {
      this.#queries--;
    }

    // Key rows: attribute to account and group, filter, relabel per groupBy.
    let label: (b: UsageBucket) => string | undefined = (b) => b.id;
    if (source === "key" && (f.accountId || f.group || groupBy !== "key")) {
      const ids = [...new Set([...merged.values()].map((b) => b.id))];
      const owners = new Map<string, Owner | undefined>();
      await Promise.all(ids.map(async (id) => owners.set(id, await this.keyOwner(id).catch(() => undefined))));
      label = (b) => {
        const o = owners.get(b.id);
        if (f.accountId && o?.accountId !== f.accountId) return undefined;
        if (f.group && o?.group !== f.group) return undefined;
        return groupBy === "key" ? b.id : groupBy === "account" ? (o?.accountId ?? "") : (o?.group ?? "");
      };
    }
    const rows = new Map<string, UsageRow>();
    for (const b of merged.values()) {
      const id = label(b);
      if (id === undefined) continue;
      const k = `${b.start}|${id}`;
      const row = rows.get(k);
      if (row) addCounters(row.counters, b);
      else rows.set(k, { start: b.start, id, counters: copyCounters(b) });
    }
    if (rows.size > MAX_QUERY_ROWS) {
      throw new SidecarError("RESOURCE_EXHAUSTED", `the query matches ${rows.size} rows (at most ${MAX_QUERY_ROWS}): narrow the range, use a coarser granularity or filter`);
    }
    const out = [...rows.values()].sort((a, b) => a.start - b.start || (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
    const total = zeroCounters();
    for (const r of out) addCounters(total, r.counters);
    return { rows: out, total };
  }

  // ---- live -------------------------------------------------------------------------

  /**
   * Calls `listener` once a second with that second's usage matching `filter`
   * (already scoped: see scopeFilter). Returns the unsubscribe function.
   */
  subscribe(filter: UsageFilter, listener: (e: LiveEvent) => void): () => void {
    if (this.#stopped) return noop;
    const f = { ...filter };
    const gk = filterKey(f);
    let group = this.#groups.get(gk);
    if (!group) this.#groups.set(gk, (group = { filter: f, subs: new Set(), expiringSent: new Map() }));
    const sub: Subscriber = { filter: f, listener, group, fresh: true };
    this.#subs.add(sub);
    group.subs.add(sub);
    if (this.#subs.size === 1) {
      // Live state starts now (nothing is accumulated while nobody listens).
      this.#acc = this.#newAcc(this.#clock());
      this.#lastExpiryScan = 0;
    }
    return () => {
      if (!this.#subs.delete(sub)) return;
      group.subs.delete(sub);
      if (group.subs.size === 0 && this.#groups.get(gk) === group) this.#groups.delete(gk);
      if (this.#subs.size === 0) this.#clearLive();
    };
  }

  get subscribers(): number {
    return this.#subs.size;
  }

  #newAcc(from: number): SecondAcc {
    return { from, tuples: new Map(), charged: new Map(), accounts: new Map(), keyEvents: [] };
  }

  #clearLive(): void {
    this.#acc = this.#newAcc(this.#clock());
    this.#keyLevel.clear();
    this.#exhausted.clear();
    this.#accountLevel.clear();
  }

  #noteExpiry(keyId: string, expiresAt: number | null, o: Owner): void {
    const now = this.#clock();
    if (expiresAt !== null && expiresAt > now && expiresAt - now <= DAY_MS) this.#expiring.set(keyId, { expiresAt, accountId: o.accountId, group: o.group });
    else this.#expiring.delete(keyId);
  }

  async #scanExpiring(): Promise<void> {
    if (this.#expiryScanning) return;
    this.#expiryScanning = true;
    try {
      const now = this.#clock();
      const next = new Map<string, Expiring>();
      for await (const s of this.#store.scanKeys()) {
        const r = s.record;
        if (r.expiresAt !== null && r.expiresAt > now && r.expiresAt - now <= DAY_MS) next.set(r.id, { expiresAt: r.expiresAt, accountId: r.accountId, group: r.group });
      }
      this.#expiring = next;
    } finally {
      this.#expiryScanning = false;
    }
  }

  #liveTick(now: number): void {
    if (this.#subs.size === 0) return;
    const acc = this.#acc;
    this.#acc = this.#newAcc(now);
    const scan = now - this.#lastExpiryScan >= 60_000;
    if (scan) this.#lastExpiryScan = now;
    this.#liveChain = this.#liveChain
      .then(async () => {
        if (scan) await this.#scanExpiring().catch((err) => this.#onError(err));
        await this.#emit(acc, now);
      })
      .catch((err) => this.#onError(err));
  }

  /** Runs one live tick now (tests; normally once a second). Resolves when delivered. */
  async tickLive(): Promise<void> {
    this.#liveTick(this.#clock());
    await this.#liveChain;
  }

  async #emit(acc: SecondAcc, at: number): Promise<void> {
    if (this.#subs.size === 0) return;
    const states = new Map<string, KeyState>();
    await Promise.all(
      [...acc.charged.keys()].map(async (id) => {
        const s = await this.#store.getKey(id);
        if (s) states.set(id, s);
      }),
    );
    const accounts = new Map<string, AccountState>();
    const accountOf = (id: string) => {
      if (!accounts.has(id)) {
        const a = this.#store.getAccount(id);
        if (a) accounts.set(id, a);
      }
      return accounts.get(id);
    };

    const events: (LiveKeyEvent & Owner)[] = [...acc.keyEvents];
    const alerts: AlertRec[] = [];
    const remaining: (LiveRemaining & Owner)[] = [];
    for (const [id, units] of acc.charged) {
      const s = states.get(id);
      if (!s) continue;
      const r = s.record;
      const owner = { accountId: r.accountId, group: r.group };
      const balance = accountOf(r.accountId)?.counters.balance ?? 0;
      remaining.push({ keyId: id, remaining: r.unlimited ? 0 : s.counters.remaining, unlimited: r.unlimited, accountBalance: balance, ...owner });
      if (r.unlimited) {
        this.#keyLevel.delete(id);
        this.#exhausted.delete(id);
        continue;
      }
      const total = r.quotaTotal;
      const rem = s.counters.remaining;
      const level = quotaLevel(total - rem, total);
      let prev = this.#keyLevel.get(id);
      let wasExhausted = this.#exhausted.has(id);
      if (prev === undefined) {
        // First sight since listening began: where was it before this second's charges?
        const before = rem + units;
        prev = quotaLevel(total - before, total);
        wasExhausted = before <= 0;
      }
      for (const t of crossedThresholds(prev, level)) {
        alerts.push({
          kind: "key_quota",
          targetId: id,
          percent: t,
          message: `key ${id} (${r.name}) has used ${t}% of its quota: ${percentText(total - rem, total)}`,
          expiresAt: null,
          keyId: id,
          ...owner,
        });
      }
      this.#keyLevel.set(id, level);
      if (rem <= 0 && !wasExhausted) events.push({ keyId: id, kind: "quota_exhausted", key: s, ...owner });
      if (rem <= 0) this.#exhausted.add(id);
      else this.#exhausted.delete(id);
    }
    for (const [id, units] of acc.accounts) {
      const a = accountOf(id);
      if (!a) continue;
      const { credited, charged } = a.counters;
      const level = quotaLevel(charged, credited);
      const prev = this.#accountLevel.get(id) ?? quotaLevel(charged - units, credited);
      for (const t of crossedThresholds(prev, level)) {
        alerts.push({
          kind: "account_balance",
          targetId: id,
          percent: t,
          message: `account ${id} has used ${t}% of its credited balance: ${percentText(charged, credited)}`,
          expiresAt: null,
          keyId: "",
          accountId: id,
          group: "",
        });
      }
      this.#accountLevel.set(id, level);
    }

    const now = this.#clock();
    // One event per distinct filter, shared by every subscriber with that filter: the cost of a
    // second grows with the number of filters, not of streams.
    for (const group of [...this.#groups.values()]) {
      const f = group.filter;
      const ev: LiveEvent = { from: acc.from, at, total: zeroCounters(), byKey: [], byGroup: [], keyEvents: [], alerts: [], remaining: [] };
      const byKey = new Map<string, LiveRow>();
      const byGroup = new Map<string, LiveRow>();
      for (const t of acc.tuples.values()) {
        if ((f.keyId && f.keyId !== t.keyId) || (f.accountId && f.accountId !== t.accountId) || (f.group && f.group !== t.group) || (f.model && f.model !== t.model)) continue;
        addCounters(ev.total, t.c);
        if (t.keyId) {
          const row = byKey.get(t.keyId);
          if (row) addCounters(row.counters, t.c);
          else byKey.set(t.keyId, { id: t.keyId, counters: copyCounters(t.c) });
        }
        if (t.group) {
          const row = byGroup.get(t.group);
          if (row) addCounters(row.counters, t.c);
          else byGroup.set(t.group, { id: t.group, counters: copyCounters(t.c) });
        }
      }
      ev.byKey = [...byKey.values()];
      ev.byGroup = [...byGroup.values()];
      // Key events, alerts and remaining quotas are not per model: a model filter does not restrict them.
      for (const e of events) if (matchesKey(f, e.keyId, e)) ev.keyEvents.push({ keyId: e.keyId, kind: e.kind, key: e.key });
      for (const a of alerts) {
        const ok = a.kind === "account_balance" ? !f.keyId && !f.group && (!f.accountId || f.accountId === a.targetId) : matchesKey(f, a.keyId, a);
        if (ok) ev.alerts.push({ kind: a.kind, targetId: a.targetId, percent: a.percent, message: a.message, expiresAt: a.expiresAt });
      }
      // key_expiring alerts: once per (key, expiry) to the group; a subscriber that joined since
      // the group's last event also gets the ones sent before it joined (one extra event, shared).
      const earlier: LiveAlert[] = [];
      for (const [id, x] of this.#expiring) {
        if (x.expiresAt <= now || !matchesKey(f, id, x)) continue;
        const hours = Math.max(1, Math.round((x.expiresAt - now) / 3_600_000));
        const alert: LiveAlert = {
          kind: "key_expiring",
          targetId: id,
          percent: 0,
          message: `key ${id} expires in ${hours === 1 && x.expiresAt - now < 3_600_000 ? "less than an hour" : `about ${hours} h`} (${new Date(x.expiresAt).toISOString()})`,
          expiresAt: x.expiresAt,
        };
        if (group.expiringSent.get(id) === x.expiresAt) {
          earlier.push(alert);
          continue;
        }
        group.expiringSent.set(id, x.expiresAt);
        ev.alerts.push(alert);
      }
      for (const r of remaining) {
        if (matchesKey(f, r.keyId, r)) ev.remaining.push({ keyId: r.keyId, remaining: r.remaining, unlimited: r.unlimited, accountBalance: r.accountBalance });
      }
      let freshEv: LiveEvent | undefined;
      for (const sub of [...group.subs]) {
        let out = ev;
        if (sub.fresh) {
          sub.fresh = false;
          if (earlier.length) out = freshEv ??= { ...ev, alerts: [...ev.alerts, ...earlier] };
        }
        try {
          sub.listener(out);
        } catch (err) {
          this.#onError(err);
        }
      }
    }
  }
}
