// The live usage model behind the Usage view: what WatchUsage streamed, kept
// in fixed-size per-second ring buffers. Pure (no clock, no I/O): time is the
// `at` of the events, so the window ends at the last second received.
//
// Memory is bounded whatever the traffic: every series is a ring of
// WINDOW_SECONDS slots; per-key and per-group series are capped (the most
// active ones are kept: spend, then requests, then recency); deny reasons are
// capped; the alerts feed keeps the newest FEED_CAP entries.
import type { Alert, KeyEvent, UsageCounters, UsageEvent, UsageRow } from "../client.js";

/** The rolling window, in seconds (one slot per second). */
export const WINDOW_SECONDS = 60;
/** Per-key series kept (top by recent activity). */
export const KEY_SERIES_CAP = 200;
/** Per-group series kept. */
export const GROUP_SERIES_CAP = 200;
/** Deny reasons tracked (the server's reason table is far smaller). */
export const REASON_CAP = 64;
/** Alerts and key events kept, newest first. */
export const FEED_CAP = 100;

function mod(a: number, n: number): number {
  return ((a % n) + n) % n;
}

/**
 * A fixed-size ring of per-second values. Slot `s mod size` holds second `s`;
 * moving the head forward zeroes the seconds skipped, so a gap (no traffic, a
 * reconnect) reads as zeros and nothing older than `size` seconds survives.
 */
export class SecondRing {
  readonly size: number;
  readonly #buf: Float64Array;
  /** The newest second written, or null when empty. */
  #head: number | null = null;

  constructor(size = WINDOW_SECONDS) {
    if (!Number.isInteger(size) || size <= 0) throw new RangeError(`ring size must be a positive integer, got ${size}`);
    this.size = size;
    this.#buf = new Float64Array(size);
  }

  get head(): number | null {
    return this.#head;
  }

  /** Adds `value` to second `second` (seconds older than the window are dropped). */
  add(second: number, value: number): void {
    if (this.#head === null) {
      this.#head = second;
    } else if (second > this.#head) {
      const gap = Math.min(this.size, second - this.#head);
      for (let i = 1; i <= gap; i++) this.#buf[mod(this.#head + i, this.size)] = 0;
      this.#head = second;
    } else if (second <= this.#head - this.size) {
      return;
    }
    this.#buf[mod(second, this.size)] += value;
  }

  /** The value of one second (0 outside the window ending at the head). */
  at(second: number): number {
    const h = this.#head;
    if (h === null || second > h || second <= h - this.size) return 0;
    return this.#buf[mod(second, this.size)] as number;
  }

  /** The `size` seconds ending at `end` (default: the head), oldest first. */
  values(end: number | null = this.#head): number[] {
    const out = new Array<number>(this.size).fill(0);
    if (end === null) return out;
    for (let i = 0; i < this.size; i++) out[i] = this.at(end - this.size + 1 + i);
    return out;
  }

  /** Sum of the `size` seconds ending at `end`. */
  sum(end: number | null = this.#head): number {
    if (end === null) return 0;
    let s = 0;
    for (let i = 0; i < this.size; i++) s += this.at(end - i);
    return s;
  }
}

// ---- sparklines ------------------------------------------------------------------

export const SPARK_BARS = "▁▂▃▄▅▆▇█";

/**
 * One character per value: blank for zero (no activity), else ▁…█ scaled to
 * `max` (default: the largest value), so any activity shows at least ▁.
 */
export function sparkline(values: readonly number[], max?: number): string {
  const top = max ?? values.reduce((m, v) => (v > m ? v : m), 0);
  let out = "";
  for (const v of values) {
    if (!(v > 0) || !(top > 0)) out += " ";
    else out += SPARK_BARS[Math.min(7, Math.max(0, Math.ceil((v / top) * 8) - 1))];
  }
  return out;
}

/** Sums consecutive values into `width` columns (width >= values: unchanged). */
export function resample(values: readonly number[], width: number): number[] {
  const n = values.length;
  if (width >= n || width <= 0) return [...values];
  const out = new Array<number>(width).fill(0);
  for (let i = 0; i < width; i++) {
    const from = Math.floor((i * n) / width);
    const to = Math.floor(((i + 1) * n) / width);
    for (let j = from; j < to; j++) out[i] += values[j] as number;
  }
  return out;
}

/** The widest sparkline that fits in `available` columns with whole seconds per column (a divisor of `n`). */
export function sparkWidth(available: number, n = WINDOW_SECONDS): number {
  for (let w = Math.min(n, Math.floor(available)); w >= 1; w--) if (n % w === 0) return w;
  return 0;
}

// ---- counters ----------------------------------------------------------------------

export type Metric = "requests" | "denied" | "tokens" | "units";
export const METRICS: readonly Metric[] = ["requests", "denied", "tokens", "units"];

/** The counters of one second (or a window), as plain numbers. */
export interface Counts {
  readonly requests: number;
  readonly denied: number;
  readonly tokens: number;
  readonly units: number;
}

export const ZERO_COUNTS: Counts = { requests: 0, denied: 0, tokens: 0, units: 0 };

function num(s: string | undefined): number {
  const n = Number(s ?? 0);
  return Number.isFinite(n) ? n : 0;
}

export function countsOf(c: UsageCounters | undefined): Counts {
  if (!c) return ZERO_COUNTS;
  return { requests: num(c.requests), denied: num(c.denied), tokens: num(c.inputTokens) + num(c.outputTokens), units: num(c.units) };
}

/** Per-second series of the four metrics. */
class Series {
  readonly rings: Readonly<Record<Metric, SecondRing>> = {
    requests: new SecondRing(),
    denied: new SecondRing(),
    tokens: new SecondRing(),
    units: new SecondRing(),
  };
  /** The last second with activity. */
  last = 0;

  add(second: number, c: Counts): void {
    for (const m of METRICS) if (c[m] !== 0) this.rings[m].add(second, c[m]);
    if (c.requests !== 0 || c.denied !== 0 || c.tokens !== 0 || c.units !== 0) this.last = Math.max(this.last, second);
  }

  sums(end: number): Counts {
    return {
      requests: this.rings.requests.sum(end),
      denied: this.rings.denied.sum(end),
      tokens: this.rings.tokens.sum(end),
      units: this.rings.units.sum(end),
    };
  }
}

/** More active first: spend, then requests (admitted + denied), then recency. */
function moreActive(a: { sums: Counts; last: number }, b: { sums: Counts; last: number }): number {
  return (
    b.sums.units - a.sums.units ||
    b.sums.requests + b.sums.denied - (a.sums.requests + a.sums.denied) ||
    b.sums.tokens - a.sums.tokens ||
    b.last - a.last
  );
}

/** Series per id (key or group), capped at `cap` by activity in the window. */
class SeriesMap {
  readonly #cap: number;
  readonly #map = new Map<string, Series>();

  constructor(cap: number) {
    this.#cap = cap;
  }

  get size(): number {
    return this.#map.size;
  }

  has(id: string): boolean {
    return this.#map.has(id);
  }

  get(id: string): Series | undefined {
    return this.#map.get(id);
  }

  entries(): IterableIterator<[string, Series]> {
    return this.#map.entries();
  }

  delete(id: string): void {
    this.#map.delete(id);
  }

  /** Adds one second of rows; then drops the least active series beyond the cap. */
  addRows(second: number, rows: readonly UsageRow[]): void {
    // A huge second (thousands of keys) only ever needs its most active rows.
    let take = rows.map((r) => ({ id: r.id, c: countsOf(r.counters) })).filter((r) => r.id !== "");
    if (take.length > this.#cap) {
      take = take
        .map((r) => ({ ...r, sums: r.c, last: second }))
        .sort(moreActive)
        .slice(0, this.#cap);
    }
    for (const r of take) {
      let s = this.#map.get(r.id);
      if (!s) {
        s = new Series();
        this.#map.set(r.id, s);
      }
      s.add(second, r.c);
    }
    if (this.#map.size > this.#cap) {
      const ranked = [...this.#map].map(([id, s]) => ({ id, sums: s.sums(second), last: s.last })).sort(moreActive);
      for (const r of ranked.slice(this.#cap)) this.#map.delete(r.id);
    }
  }
}

// ---- the feed (alerts and key events) ----------------------------------------------

export type FeedTone = "info" | "warn" | "error";

export interface FeedEntry {
  /** Unique within the model (React key). */
  readonly seq: number;
  /** The event's `at` (epoch ms). */
  readonly at: number;
  readonly source: "alert" | "key";
  /** "key_quota", "account_balance", "key_expiring", or a key event kind. */
  readonly kind: string;
  /** The key or account id. */
  readonly targetId: string;
  /** A short label: "quota 80%", "disabled", "expiring". */
  readonly label: string;
  readonly text: string;
  readonly tone: FeedTone;
}

/** An alert's text naming its key the way the table does: `key "alpha" (key_…)`, not the id alone. */
function nameKeyInAlert(a: Alert, name: string | undefined): string {
  const text = a.message || `${a.kind} ${a.targetId} ${a.percent}%`;
  if (!a.kind.startsWith("key_") || !name || text.includes(name)) return text;
  const bare = `key ${a.targetId}`;
  return text.includes(bare) ? text.replace(bare, `key ${JSON.stringify(name)} (${a.targetId})`) : `${text} (${JSON.stringify(name)})`;
}

function alertLabel(a: Alert): string {
  switch (a.kind) {
    case "key_quota":
      return `quota ${a.percent}%`;
    case "account_balance":
      return `balance ${a.percent}%`;
    case "key_expiring":
      return "expiring";
    default:
      return a.kind;
  }
}

function alertTone(a: Alert): FeedTone {
  if (a.kind === "key_expiring") return "warn";
  if (a.percent >= 100) return "error";
  return "warn";
}

const KEY_EVENT_TONE: Readonly<Record<string, FeedTone>> = {
  deleted: "error",
  quota_exhausted: "error",
  disabled: "warn",
  rotated: "warn",
};

const KEY_EVENT_LABEL: Readonly<Record<string, string>> = { quota_exhausted: "exhausted" };

const KEY_EVENT_TEXT: Readonly<Record<string, string>> = {
  created: "was created",
  updated: "was updated",
  enabled: "was enabled",
  disabled: "was disabled",
  deleted: "was deleted",
  rotated: "was rotated (new secret)",
  quota_exhausted: "has exhausted its quota",
};

// ---- the model ---------------------------------------------------------------------

export interface Rates {
  readonly requests: number;
  readonly denied: number;
  readonly tokens: number;
  readonly units: number;
}

export interface RankedRow {
  readonly id: string;
  readonly name: string;
  /** Sums over the window. */
  readonly sums: Counts;
  /** Averages per second over the covered window. */
  readonly rates: Rates;
  /** Oldest first, WINDOW_SECONDS values of the chosen metric. */
  readonly series: readonly number[];
}

export interface UsageSnapshot {
  /** The last second received (epoch s), null before the first event. */
  readonly head: number | null;
  /** Seconds of the window that the stream covered (1..WINDOW_SECONDS; 0 before the first event). */
  readonly covered: number;
  /** Per second, over the last event (a merged event is averaged over its seconds). */
  readonly last: Rates;
  /** Per second, over the covered window. */
  readonly window: Rates;
  /** Sums over the window. */
  readonly sums: Counts;
  /** Denies per second over the window, by reason, most first. */
  readonly reasons: readonly { readonly reason: string; readonly perSecond: number; readonly count: number }[];
  /** Last-second denies by reason. */
  readonly lastReasons: readonly { readonly reason: string; readonly count: number }[];
  /** The chosen metric over the window, oldest first. */
  readonly total: readonly number[];
  /** Keys by spend in the window (then requests), at most `topN`. */
  readonly topKeys: readonly RankedRow[];
  /** Tracked keys (before topN). */
  readonly keyCount: number;
  readonly groups: readonly RankedRow[];
  readonly feed: readonly FeedEntry[];
  /** On a fleet (a shared store): whose traffic the last event held; null for a sidecar with its own store. */
  readonly fleet: { readonly sidecars: number; readonly othersMissing: boolean } | null;
}

function rates(c: Counts, seconds: number): Rates {
  const d = Math.max(1, seconds);
  return { requests: c.requests / d, denied: c.denied / d, tokens: c.tokens / d, units: c.units / d };
}

export interface ApplyOptions {
  /** A display name for a key id (the loaded keys); the id when unknown. */
  readonly nameOf?: (keyId: string) => string | undefined;
}

export class UsageModel {
  readonly #total = new Series();
  readonly #reasons = new Map<string, SecondRing>();
  readonly #keys = new SeriesMap(KEY_SERIES_CAP);
  readonly #groups = new SeriesMap(GROUP_SERIES_CAP);
  /** Names of tracked keys, learned when their rows arrive (kept after a delete). */
  readonly #names = new Map<string, string>();
  #feed: FeedEntry[] = [];
  #seq = 0;
  #head: number | null = null;
  /** The first second of the current stream of seconds (for the covered window). */
  #since: number | null = null;
  #last: Counts = ZERO_COUNTS;
  #lastSpan = 1;
  #lastReasons: { reason: string; count: number }[] = [];
  #events = 0;
  #fleet: { sidecars: number; othersMissing: boolean } | null = null;

  /** Events applied so far. */
  get events(): number {
    return this.#events;
  }

  get head(): number | null {
    return this.#head;
  }

  /** Tracked per-key series (bounded by KEY_SERIES_CAP). */
  get trackedKeys(): number {
    return this.#keys.size;
  }

  get trackedGroups(): number {
    return this.#groups.size;
  }

  /** Applies one streamed second (or several merged seconds); returns the feed entries it added, newest first. */
  apply(ev: UsageEvent, opts: ApplyOptions = {}): FeedEntry[] {
    this.#events++;
    this.#fleet = ev.fleet ? { sidecars: ev.fleet.sidecars, othersMissing: ev.fleet.othersMissing } : null;
    const atMs = ev.at ? ev.at.getTime() : this.#head !== null ? (this.#head + 1) * 1000 : 0;
    let second = Math.floor(atMs / 1000);
    // Seconds only move forward (a sidecar restarted with another clock still reads as a sequence).
    if (this.#head !== null && second <= this.#head) second = this.#head + 1;
    // A slow reader gets merged seconds: the rows then start earlier than one second ago.
    const from = ev.byKey[0]?.bucketStart ?? ev.byGroup[0]?.bucketStart;
    const span = from ? Math.max(1, Math.min(WINDOW_SECONDS, Math.round((atMs - from.getTime()) / 1000))) : 1;
    if (this.#head === null || second - this.#head > WINDOW_SECONDS) this.#since = second - span + 1;
    this.#head = second;

    const total = countsOf(ev.total);
    this.#total.add(second, total);
    this.#last = total;
    this.#lastSpan = span;
    const denies = ev.total?.deniesByReason ?? {};
    this.#lastReasons = Object.entries(denies)
      .map(([reason, n]) => ({ reason, count: num(n) }))
      .filter((r) => r.count > 0)
      .sort((a, b) => b.count - a.count || (a.reason < b.reason ? -1 : 1));
    for (const { reason, count } of this.#lastReasons) {
      let ring = this.#reasons.get(reason);
      if (!ring) {
        if (this.#reasons.size >= REASON_CAP) continue;
        ring = new SecondRing();
        this.#reasons.set(reason, ring);
      }
      ring.add(second, count);
    }
    // Reasons idle for a whole window are forgotten (keeps the map to what is shown).
    for (const [reason, ring] of this.#reasons) if (ring.sum(second) === 0) this.#reasons.delete(reason);

    this.#keys.addRows(second, ev.byKey);
    this.#groups.addRows(second, ev.byGroup);
    for (const r of ev.byKey) {
      const name = opts.nameOf?.(r.id);
      if (name !== undefined && this.#keys.has(r.id)) this.#names.set(r.id, name);
    }
    for (const e of ev.keyEvents) if (e.key && this.#keys.has(e.keyId)) this.#names.set(e.keyId, e.key.name);
    for (const id of this.#names.keys()) if (!this.#keys.has(id)) this.#names.delete(id);

    const added: FeedEntry[] = [];
    for (const e of ev.keyEvents) added.push(this.#keyEntry(atMs, e, opts));
    for (const a of ev.alerts) {
      added.push({
        seq: this.#seq++,
        at: atMs,
        source: "alert",
        kind: a.kind,
        targetId: a.targetId,
        label: alertLabel(a),
        text: nameKeyInAlert(a, opts.nameOf?.(a.targetId) ?? this.#names.get(a.targetId)),
        tone: alertTone(a),
      });
    }
    added.reverse();
    if (added.length > 0) this.#feed = [...added, ...this.#feed].slice(0, FEED_CAP);
    return added;
  }

  #keyEntry(at: number, e: KeyEvent, opts: ApplyOptions): FeedEntry {
    const name = e.key?.name ?? opts.nameOf?.(e.keyId) ?? this.#names.get(e.keyId);
    const who = name ? `key ${JSON.stringify(name)} (${e.keyId})` : `key ${e.keyId}`;
    return {
      seq: this.#seq++,
      at,
      source: "key",
      kind: e.kind,
      targetId: e.keyId,
      label: KEY_EVENT_LABEL[e.kind] ?? e.kind,
      text: `${who} ${KEY_EVENT_TEXT[e.kind] ?? e.kind}`,
      tone: KEY_EVENT_TONE[e.kind] ?? "info",
    };
  }

  /** Empties the alerts and key events feed. */
  clearFeed(): void {
    this.#feed = [];
  }

  get feedSize(): number {
    return this.#feed.length;
  }

  /** The snapshot's `last`, alone (cheap: whether the header's figures changed). */
  lastRates(): Rates {
    return rates(this.#last, this.#lastSpan);
  }

  /** What the view shows. `topN` bounds the ranked lists; `metric` picks the series. */
  snapshot(metric: Metric = "requests", topN = 20, nameOf?: (keyId: string) => string | undefined): UsageSnapshot {
    const head = this.#head;
    const covered = head === null || this.#since === null ? 0 : Math.min(WINDOW_SECONDS, head - this.#since + 1);
    const end = head ?? 0;
    const sums = head === null ? ZERO_COUNTS : this.#total.sums(end);
    const rank = (map: SeriesMap, names: boolean): { rows: RankedRow[]; count: number } => {
      if (head === null) return { rows: [], count: 0 };
      const all = [...map.entries()]
        .map(([id, s]) => ({ id, s, sums: s.sums(end), last: s.last }))
        .filter((r) => r.sums.requests + r.sums.denied + r.sums.tokens + r.sums.units > 0)
        .sort((a, b) => moreActive(a, b) || (a.id < b.id ? -1 : 1));
      return {
        count: all.length,
        rows: all.slice(0, topN).map((r) => ({
          id: r.id,
          name: names ? (nameOf?.(r.id) ?? this.#names.get(r.id) ?? r.id) : r.id,
          sums: r.sums,
          rates: rates(r.sums, covered),
          series: r.s.rings[metric].values(end),
        })),
      };
    };
    const keys = rank(this.#keys, true);
    const reasons = [...this.#reasons]
      .map(([reason, ring]) => ({ reason, count: ring.sum(end) }))
      .filter((r) => r.count > 0)
      .sort((a, b) => b.count - a.count || (a.reason < b.reason ? -1 : 1))
      .map((r) => ({ ...r, perSecond: r.count / Math.max(1, covered) }));
    return {
      head,
      covered,
      last: this.lastRates(),
      window: rates(sums, covered),
      sums,
      reasons,
      lastReasons: this.#lastReasons,
      total: this.#total.rings[metric].values(head),
      topKeys: keys.rows,
      keyCount: keys.count,
      groups: rank(this.#groups, false).rows,
      feed: this.#feed,
      fleet: this.#fleet,
    };
  }
}
