// LIVE usage: while someone listens, each second's deltas (total, per key, per group), key
// events (admin changes, "quota_exhausted"), alerts (alerts.ts) and the remaining quota of
// the keys charged that second, built once per distinct filter and sent to its subscribers.
// Live state is kept only while someone listens.
import type { AccountState, KeyState } from "../../domain/types.js";
import type { ConsumeRecord } from "../../store/types.js";
import { accountBalanceStep, expiresSoon, expiringAlert, keyQuotaStep, type LiveAlert } from "./alerts.js";
import { addCounters, copyCounters, matchesKey, zeroCounters, type Owner, type UsageCounters, type UsageFilter } from "./counters.js";
import type { UsageRecorderStore } from "./history.js";

/** A merged live event keeps at most this many key events and alerts (the newest). */
const MAX_MERGED_EVENTS = 10_000;

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

function newAcc(from: number): SecondAcc {
  return { from, tuples: new Map(), charged: new Map(), accounts: new Map(), keyEvents: [] };
}

export class LiveHub {
  readonly #store: UsageRecorderStore;
  readonly #clock: () => number;
  readonly #onError: (err: unknown) => void;

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
  #stopped = false;

  constructor(opts: { store: UsageRecorderStore; clock: () => number; onError: (err: unknown) => void; from: number }) {
    this.#store = opts.store;
    this.#clock = opts.clock;
    this.#onError = opts.onError;
    this.#acc = newAcc(opts.from);
  }

  /** Whether anyone listens (nothing is accumulated otherwise). */
  get listening(): boolean {
    return this.#subs.size > 0;
  }

  get subscribers(): number {
    return this.#subs.size;
  }

  // ---- accumulation (sync, hot path; only while listening) ---------------------------

  /** Adds a recorded decision or charge to this second's (key, account, group, model) tuple. */
  record(keyId: string, accountId: string, group: string, model: string, apply: (c: UsageCounters) => void): void {
    const k = `${keyId}\u0000${accountId}\u0000${group}\u0000${model}`;
    let t = this.#acc.tuples.get(k);
    if (!t) this.#acc.tuples.set(k, (t = { keyId, accountId, group, model, c: zeroCounters() }));
    apply(t.c);
  }

  /** Units charged to a key (and its account) this second: their alerts and remaining quota. */
  charged(r: ConsumeRecord): void {
    const acc = this.#acc;
    acc.charged.set(r.keyId, (acc.charged.get(r.keyId) ?? 0) + r.units);
    if (r.accountId) acc.accounts.set(r.accountId, (acc.accounts.get(r.accountId) ?? 0) + r.units);
  }

  /** A key changed through the admin API; `owner` as known. Its expiry is tracked even while nobody listens. */
  keyEvent(e: AdminKeyEvent, owner: Owner | undefined): void {
    const rec = e.key?.record;
    if (e.kind === "deleted") this.#expiring.delete(e.keyId);
    else if (rec) this.#noteExpiry(rec.id, rec.expiresAt, rec);
    if (this.#subs.size === 0) return;
    this.#acc.keyEvents.push({ keyId: e.keyId, kind: e.kind, key: e.key, ...(owner ?? { accountId: "", group: "" }) });
  }

  // ---- subscribers ----------------------------------------------------------------------

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
      this.#acc = newAcc(this.#clock());
      this.#lastExpiryScan = 0;
    }
    return () => {
      if (!this.#subs.delete(sub)) return;
      group.subs.delete(sub);
      if (group.subs.size === 0 && this.#groups.get(gk) === group) this.#groups.delete(gk);
      if (this.#subs.size === 0) this.#clearLive();
    };
  }

  /** Drops every subscriber; resolves once the tick under way has delivered. */
  async stop(): Promise<void> {
    this.#stopped = true;
    this.#subs.clear();
    this.#groups.clear();
    this.#clearLive();
    await this.#liveChain;
  }

  #clearLive(): void {
    this.#acc = newAcc(this.#clock());
    this.#keyLevel.clear();
    this.#exhausted.clear();
    this.#accountLevel.clear();
  }

  #noteExpiry(keyId: string, expiresAt: number | null, o: Owner): void {
    if (expiresSoon(expiresAt, this.#clock())) this.#expiring.set(keyId, { expiresAt, accountId: o.accountId, group: o.group });
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
        if (expiresSoon(r.expiresAt, now)) next.set(r.id, { expiresAt: r.expiresAt, accountId: r.accountId, group: r.group });
      }
      this.#expiring = next;
    } finally {
      this.#expiryScanning = false;
    }
  }

  // ---- the second's event ------------------------------------------------------------------

  /** Closes the second ending at `now` and delivers it (asynchronously, in order). */
  tick(now: number): void {
    if (this.#subs.size === 0) return;
    const acc = this.#acc;
    this.#acc = newAcc(now);
    const scan = now - this.#lastExpiryScan >= 60_000;
    if (scan) this.#lastExpiryScan = now;
    this.#liveChain = this.#liveChain
      .then(async () => {
        if (scan) await this.#scanExpiring().catch((err) => this.#onError(err));
        await this.#emit(acc, now);
      })
      .catch((err) => this.#onError(err));
  }

  /** Resolves when the ticks so far have delivered. */
  delivered(): Promise<void> {
    return this.#liveChain;
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
      const prevLevel = this.#keyLevel.get(id);
      const step = keyQuotaStep(id, s, units, prevLevel === undefined ? undefined : { level: prevLevel, exhausted: this.#exhausted.has(id) });
      for (const a of step.alerts) alerts.push({ ...a, keyId: id, ...owner });
      this.#keyLevel.set(id, step.level);
      if (step.ranOut) events.push({ keyId: id, kind: "quota_exhausted", key: s, ...owner });
      if (step.exhausted) this.#exhausted.add(id);
      else this.#exhausted.delete(id);
    }
    for (const [id, units] of acc.accounts) {
      const a = accountOf(id);
      if (!a) continue;
      const step = accountBalanceStep(id, a, units, this.#accountLevel.get(id));
      for (const al of step.alerts) alerts.push({ ...al, keyId: "", accountId: id, group: "" });
      this.#accountLevel.set(id, step.level);
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
        const alert = expiringAlert(id, x.expiresAt, now);
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
