// Usage history, live usage and alerts (issue 4, sections 5–7). No gRPC types.
//
// UsageRecorder is a small facade over service/usage/: counters.ts (the counters, buckets
// and filters, pure), history.ts (recording into buckets, flush, seed, evict, prune),
// query.ts (sourceDim, scoping, the rows), live.ts (the live hub: subscribers and each
// second's event) and alerts.ts (thresholds, running out, expiring keys; pure). This
// comment states the rules they implement together.
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
//
// FLEET. On a shared store (Redis) the recorder has a LiveBus (usage/bus.ts): while a
// fleet-wide subscriber (WatchUsage) listens on any sidecar, every sidecar publishes its raw
// second (tuples, charges, admin key events) once a second, and the watching sidecars add the
// others' seconds to what their fleet-wide subscribers get (never their own: tagged by sender).
// Alerts and "quota_exhausted" are computed by the watching sidecar over the fleet's charges
// (the store is shared). Non-fleet subscribers (the webhooks) keep this sidecar's own traffic,
// so an admin event or a threshold is sent once, by the sidecar that saw it. Bus down → events
// carry fleet.othersMissing until it is back (Pub/Sub is at-most-once: seconds lost meanwhile
// are not replayed; the history buckets are exact).
import type { Principal } from "../domain/types.js";
import { addSaturating } from "../domain/units.js";
import type { Reason } from "../policy/reasons.js";
import type { ConsumeRecord } from "../store/types.js";
import { addKind, type Gran, type Owner, type UsageCounters, type UsageFilter } from "./usage/counters.js";
import { UsageHistory, type UsageRecorderStore } from "./usage/history.js";
import { LiveHub, type AdminKeyEvent, type LiveEvent } from "./usage/live.js";
import type { LiveBus } from "./usage/bus.js";
import { queryUsage, scopeFilter, type UsageQuery, type UsageQueryResult } from "./usage/query.js";

export { addCounters, bucketStart, GRAN_MS, zeroCounters, type Dim, type Gran, type UsageCounters, type UsageFilter } from "./usage/counters.js";
export { DEFAULT_RETENTION_MS, PRUNE_BATCH } from "./usage/history.js";
export { sourceDim, type UsageQuery, type UsageQueryResult, type UsageRow } from "./usage/query.js";
export { mergeLiveEvents, type LiveEvent, type LiveFleet } from "./usage/live.js";
export type { LiveBus, LiveSecond } from "./usage/bus.js";
export { crossedThresholds, quotaLevel } from "./usage/alerts.js";

/** The model row of denied requests naming a model with no price (see the file comment). */
const UNPRICED_MODEL = "(unpriced)";

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
  /** A shared store's live bus (see FLEET above); none for a sidecar with its own store. */
  bus?: LiveBus;
}

const noop = () => {};
const admit = (c: UsageCounters) => {
  c.requests += 1;
};

export class UsageRecorder {
  readonly #store: UsageRecorderStore;
  readonly #clock: () => number;
  readonly #tickMs: number;
  readonly #isPriced: (model: string) => boolean;
  readonly #history: UsageHistory;
  readonly #live: LiveHub;
  #timer: NodeJS.Timeout | undefined;
  #stopped = false;

  constructor(opts: UsageRecorderOptions) {
    this.#store = opts.store;
    this.#clock = opts.clock;
    const onError = opts.onError ?? noop;
    this.#tickMs = opts.tickMs ?? 1000;
    this.#isPriced = opts.isPriced ?? (() => true);
    this.#history = new UsageHistory({ store: opts.store, clock: opts.clock, onError, retentionMs: opts.retentionMs });
    this.#live = new LiveHub({ store: opts.store, clock: opts.clock, onError, from: this.#history.startedAt, bus: opts.bus });
  }

  /** Starts its own once-a-second timer (tests, tools); the sidecar's scheduler calls tick() instead. */
  start(): void {
    if (this.#timer || this.#stopped) return;
    this.#timer = setInterval(() => this.tick(), this.#tickMs);
    this.#timer.unref();
  }

  /** How often tick() should run (ms). */
  get tickMs(): number {
    return this.#tickMs;
  }

  /** The once-a-second step: closes the live second, flushes the buckets touched, prunes a batch. */
  tick(): void {
    if (this.#stopped) return;
    this.#live.tick(this.#clock());
    this.#history.tick();
  }

  /** Stops the timer, drops the subscribers and flushes everything recorded. */
  async stop(): Promise<void> {
    this.#stopped = true;
    if (this.#timer) clearInterval(this.#timer);
    this.#timer = undefined;
    await this.#live.stop();
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
    if (this.#live.listening && r.keyId) this.#live.charged(r);
  }

  /** A key changed through the admin API (the AdminService event sink). */
  keyEvent(e: AdminKeyEvent): void {
    const rec = e.key?.record;
    if (rec) this.#history.setOwner(e.keyId, { accountId: rec.accountId, group: rec.group });
    this.#live.keyEvent(e, this.#history.knownOwner(e.keyId));
  }

  #record(at: number, keyId: string, accountId: string, group: string, model: string, apply: (c: UsageCounters) => void): void {
    this.#history.record(at, keyId, accountId, group, model, apply);
    if (this.#live.listening) this.#live.record(keyId, accountId, group, model, apply);
  }

  // ---- history -------------------------------------------------------------------

  /** Writes every bucket touched since the last flush (absolute values). Serialised. */
  flush(): Promise<void> {
    return this.#history.flush();
  }

  /** Deletes up to `limit` buckets past their retention (the tick does it every second); returns how many. */
  prune(limit?: number): Promise<number> {
    return this.#history.prune(limit);
  }

  // ---- query ---------------------------------------------------------------------

  /** The account and (current) group of a key: from what was recorded, else from the store. */
  keyOwner(keyId: string): Promise<Owner | undefined> {
    return this.#history.keyOwner(keyId);
  }

  /** The filter normalised and restricted to what the principal may see (query.ts). */
  scopeFilter(filter: Partial<UsageFilter> | undefined, p: Principal): Promise<UsageFilter> {
    return scopeFilter(this.#history, filter, p);
  }

  query(q: UsageQuery, p: Principal): Promise<UsageQueryResult> {
    return queryUsage(this.#history, this.#store, this.#clock(), q, p);
  }

  // ---- live -------------------------------------------------------------------------

  /**
   * Calls `listener` once a second with that second's usage matching `filter`
   * (already scoped: see scopeFilter). Returns the unsubscribe function. `fleet`: the whole
   * fleet's traffic on a shared store (WatchUsage), else this sidecar's own (see FLEET above).
   */
  subscribe(filter: UsageFilter, listener: (e: LiveEvent) => void, opts: { fleet?: boolean } = {}): () => void {
    return this.#live.subscribe(filter, listener, opts);
  }

  get subscribers(): number {
    return this.#live.subscribers;
  }

  /** Runs one live tick now (tests; normally once a second). Resolves when delivered. */
  async tickLive(): Promise<void> {
    this.#live.tick(this.#clock());
    await this.#live.delivered();
  }
}
