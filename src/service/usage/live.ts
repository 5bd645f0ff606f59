// LIVE usage: while someone listens, each second's deltas (total, per key, per group), key
// events (admin changes, "quota_exhausted"), alerts (alerts.ts) and the remaining quota of
// the keys charged that second, built once per distinct filter and sent to its subscribers.
// Live state is kept only while someone listens.
import type { AccountState, KeyState } from "../../domain/types.js";
import type { ConsumeRecord } from "../../store/types.js";
import { accountBalanceStep, expiresSoon, expiringAlert, keyQuotaStep, type LiveAlert } from "./alerts.js";
import { addCounters, copyCounters, matchesKey, zeroCounters, type Owner, type UsageCounters, type UsageFilter } from "./counters.js";
import type { UsageRecorderStore } from "./history.js";
import type { LiveBus, LiveSecond } from "./bus.js";

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

/** On a shared store (a fleet): whose traffic a fleet-wide event holds. */
export interface LiveFleet {
  /** Sidecars counted: this one and the others heard from in the last few seconds. */
  sidecars: number;
  /** This sidecar cannot hear the others (the bus is down): the event holds its own traffic only. */
  othersMissing: boolean;
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
  /** Set on fleet-wide events (subscribe's `fleet` option on a shared store). */
  fleet?: LiveFleet;
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
    ...(a.fleet || b.fleet ? { fleet: mergeFleet(a.fleet, b.fleet) } : {}),
  };
}

function mergeFleet(a: LiveFleet | undefined, b: LiveFleet | undefined): LiveFleet {
  return { sidecars: Math.max(a?.sidecars ?? 0, b?.sidecars ?? 0), othersMissing: !!a?.othersMissing || !!b?.othersMissing };
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
  fleet: boolean;
  /** Not yet sent an event: its first one carries every key_expiring alert its group already sent. */
  fresh: boolean;
}

interface FilterGroup {
  filter: UsageFilter;
  /** Fleet-wide: also the other sidecars' traffic, key events and the alerts it raised. */
  fleet: boolean;
  subs: Set<Subscriber>;
  /** key_expiring alerts already sent to this group's subscribers: key id → expiresAt. */
  expiringSent: Map<string, number>;
}

function filterKey(f: UsageFilter, fleet: boolean): string {
  return JSON.stringify([f.keyId, f.accountId, f.group, f.model, fleet]);
}

interface Expiring extends Owner {
  expiresAt: number;
}

/** `local`: raised by this sidecar's own traffic or admin calls (else only fleet-wide groups get it). */
type AlertRec = LiveAlert & { keyId: string; accountId: string; group: string; local: boolean };

/** A sidecar heard from within this long counts in LiveFleet.sidecars. */
const HEARD_MS = 3000;

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
  // ---- the fleet (a shared store with a bus; see bus.ts) ----
  readonly #bus: LiveBus | undefined;
  /** Subscribers of fleet-wide groups: the bus is subscribed while there are some. */
  #fleetSubs = 0;
  #busUnsubscribe: (() => void) | undefined;
  /** The other sidecars' traffic received since the last tick. */
  #remote: SecondAcc;
  /** Other sidecars heard from: sender → when. */
  readonly #heard = new Map<string, number>();

  constructor(opts: { store: UsageRecorderStore; clock: () => number; onError: (err: unknown) => void; from: number; bus?: LiveBus }) {
    this.#store = opts.store;
    this.#clock = opts.clock;
    this.#onError = opts.onError;
    this.#bus = opts.bus;
    this.#acc = newAcc(opts.from);
    this.#remote = newAcc(opts.from);
  }

  /** Whether anyone listens, here or (on a fleet) on another sidecar: nothing is accumulated otherwise. */
  get listening(): boolean {
    return this.#subs.size > 0 || this.#publishing;
  }

  /** Another sidecar watches the fleet: this one's seconds are published. */
  get #publishing(): boolean {
    return this.#bus?.wanted ?? false;
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
    if (!this.listening) return;
    this.#acc.keyEvents.push({ keyId: e.keyId, kind: e.kind, key: e.key, ...(owner ?? { accountId: "", group: "" }) });
  }

  // ---- subscribers ----------------------------------------------------------------------

  /**
   * Calls `listener` once a second with that second's usage matching `filter`
   * (already scoped: see scopeFilter). Returns the unsubscribe function.
   * `fleet`: on a shared store with a bus, also the other sidecars' traffic (WatchUsage); else
   * this sidecar's own (the webhooks: each sidecar sends what its own traffic raised).
   */
  subscribe(filter: UsageFilter, listener: (e: LiveEvent) => void, opts: { fleet?: boolean } = {}): () => void {
    if (this.#stopped) return noop;
    const f = { ...filter };
    const fleet = !!opts.fleet && this.#bus !== undefined;
    const gk = filterKey(f, fleet);
    let group = this.#groups.get(gk);
    if (!group) this.#groups.set(gk, (group = { filter: f, fleet, subs: new Set(), expiringSent: new Map() }));
    const sub: Subscriber = { filter: f, fleet, listener, group, fresh: true };
    this.#subs.add(sub);
    group.subs.add(sub);
    if (this.#subs.size === 1) {
      // Live state starts now (nothing is accumulated while nobody listens, unless it is being published).
      if (!this.#publishing) this.#acc = newAcc(this.#clock());
      this.#lastExpiryScan = 0;
    }
    if (fleet && ++this.#fleetSubs === 1) {
      this.#remote = newAcc(this.#clock());
      this.#busUnsubscribe = this.#bus!.subscribe((s, sender) => this.#mergeRemote(s, sender));
    }
    return () => {
      if (!this.#subs.delete(sub)) return;
      group.subs.delete(sub);
      if (group.subs.size === 0 && this.#groups.get(gk) === group) this.#groups.delete(gk);
      if (fleet && --this.#fleetSubs === 0) this.#stopFleet();
      if (this.#subs.size === 0) this.#clearLive();
    };
  }

  #stopFleet(): void {
    this.#busUnsubscribe?.();
    this.#busUnsubscribe = undefined;
    this.#remote = newAcc(this.#clock());
    this.#heard.clear();
  }

  /** Another sidecar's second (from the bus): added to what the next tick delivers to fleet-wide groups. */
  #mergeRemote(s: LiveSecond, sender: string): void {
    if (this.#fleetSubs === 0) return;
    this.#heard.set(sender, this.#clock());
    const r = this.#remote;
    for (const [keyId, accountId, group, model, c] of s.t) {
      const k = `${keyId}\u0000${accountId}\u0000${group}\u0000${model}`;
      let t = r.tuples.get(k);
      if (!t) r.tuples.set(k, (t = { keyId, accountId, group, model, c: zeroCounters() }));
      addCounters(t.c, c);
    }
    for (const [id, units] of s.c) r.charged.set(id, (r.charged.get(id) ?? 0) + units);
    for (const [id, units] of s.a) r.accounts.set(id, (r.accounts.get(id) ?? 0) + units);
    for (const [keyId, kind, accountId, group] of s.e) r.keyEvents.push({ keyId, kind, accountId, group });
  }

  /** Drops every subscriber; resolves once the tick under way has delivered. */
  async stop(): Promise<void> {
    this.#stopped = true;
    this.#subs.clear();
    this.#groups.clear();
    if (this.#fleetSubs > 0) this.#stopFleet();
    this.#fleetSubs = 0;
    this.#clearLive();
    await this.#liveChain;
  }

  #clearLive(): void {
    if (!this.#publishing) this.#acc = newAcc(this.#clock());
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
    const bus = this.#bus;
    if (this.#subs.size === 0 && !this.#publishing) {
      bus?.poll();
      return;
    }
    const acc = this.#acc;
    this.#acc = newAcc(now);
    if (bus) {
      if (this.#publishing) bus.publish(toSecond(acc, now));
      else bus.poll();
    }
    if (this.#subs.size === 0) return;
    const remote = this.#remote;
    this.#remote = newAcc(now);
    let fleet: LiveFleet | undefined;
    if (bus && this.#fleetSubs > 0) {
      for (const [id, t] of this.#heard) if (now - t > HEARD_MS) this.#heard.delete(id);
      fleet = { sidecars: 1 + this.#heard.size, othersMissing: !bus.healthy };
    }
    const scan = now - this.#lastExpiryScan >= 60_000;
    if (scan) this.#lastExpiryScan = now;
    this.#liveChain = this.#liveChain
      .then(async () => {
        if (scan) await this.#scanExpiring().catch((err) => this.#onError(err));
        await this.#emit(acc, remote, now, fleet);
      })
      .catch((err) => this.#onError(err));
  }

  /** Resolves when the ticks so far have delivered. */
  delivered(): Promise<void> {
    return this.#liveChain;
  }

  /**
   * Builds and delivers the second: `acc` is this sidecar's, `remote` the other sidecars' (empty
   * unless fleet-wide groups listen). Alerts, "quota_exhausted" and remaining quotas are computed
   * once over both (the store is shared, so every sidecar reads the same state); groups that are
   * not fleet-wide get only those raised by this sidecar's own traffic, as without a fleet.
   */
  async #emit(acc: SecondAcc, remote: SecondAcc, at: number, fleet: LiveFleet | undefined): Promise<void> {
    if (this.#subs.size === 0) return;
    const charged = new Map(acc.charged);
    for (const [id, u] of remote.charged) charged.set(id, (charged.get(id) ?? 0) + u);
    const chargedAccounts = new Map(acc.accounts);
    for (const [id, u] of remote.accounts) chargedAccounts.set(id, (chargedAccounts.get(id) ?? 0) + u);
    const wanted = new Set(charged.keys());
    for (const e of remote.keyEvents) if (e.kind !== "deleted") wanted.add(e.keyId);
    const states = new Map<string, KeyState>();
    await Promise.all(
      [...wanted].map(async (id) => {
        // A key that cannot be read now (a shared store past its deadline) loses its remaining
        // quota and alerts for this second, not the second's counters.
        const s = await this.#store.getKey(id).catch((err: unknown) => (this.#onError(err), undefined));
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

    type Local = { local: boolean };
    const events: (LiveKeyEvent & Owner & Local)[] = acc.keyEvents.map((e) => ({ ...e, local: true }));
    for (const e of remote.keyEvents) events.push({ ...e, key: e.kind === "deleted" ? undefined : states.get(e.keyId), local: false });
    const alerts: AlertRec[] = [];
    const remaining: (LiveRemaining & Owner & Local)[] = [];
    for (const [id, units] of charged) {
      const s = states.get(id);
      if (!s) continue;
      const r = s.record;
      const owner = { accountId: r.accountId, group: r.group };
      const local = acc.charged.has(id);
      const balance = accountOf(r.accountId)?.counters.balance ?? 0;
      remaining.push({ keyId: id, remaining: r.unlimited ? 0 : s.counters.remaining, unlimited: r.unlimited, accountBalance: balance, ...owner, local });
      if (r.unlimited) {
        this.#keyLevel.delete(id);
        this.#exhausted.delete(id);
        continue;
      }
      const prevLevel = this.#keyLevel.get(id);
      const step = keyQuotaStep(id, s, units, prevLevel === undefined ? undefined : { level: prevLevel, exhausted: this.#exhausted.has(id) });
      for (const a of step.alerts) alerts.push({ ...a, keyId: id, ...owner, local });
      this.#keyLevel.set(id, step.level);
      if (step.ranOut) events.push({ keyId: id, kind: "quota_exhausted", key: s, ...owner, local });
      if (step.exhausted) this.#exhausted.add(id);
      else this.#exhausted.delete(id);
    }
    for (const [id, units] of chargedAccounts) {
      const a = accountOf(id);
      if (!a) continue;
      const step = accountBalanceStep(id, a, units, this.#accountLevel.get(id));
      const local = acc.accounts.has(id);
      for (const al of step.alerts) alerts.push({ ...al, keyId: "", accountId: id, group: "", local });
      this.#accountLevel.set(id, step.level);
    }

    const now = this.#clock();
    // One event per distinct filter, shared by every subscriber with that filter: the cost of a
    // second grows with the number of filters, not of streams.
    for (const group of [...this.#groups.values()]) {
      const f = group.filter;
      const ev: LiveEvent = { from: acc.from, at, total: zeroCounters(), byKey: [], byGroup: [], keyEvents: [], alerts: [], remaining: [] };
      if (group.fleet && fleet) ev.fleet = { ...fleet };
      const byKey = new Map<string, LiveRow>();
      const byGroup = new Map<string, LiveRow>();
      const sources = group.fleet ? [acc.tuples, remote.tuples] : [acc.tuples];
      for (const tuples of sources) {
        for (const t of tuples.values()) {
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
      }
      ev.byKey = [...byKey.values()];
      ev.byGroup = [...byGroup.values()];
      // Key events, alerts and remaining quotas are not per model: a model filter does not restrict them.
      for (const e of events) if ((group.fleet || e.local) && matchesKey(f, e.keyId, e)) ev.keyEvents.push({ keyId: e.keyId, kind: e.kind, key: e.key });
      for (const a of alerts) {
        if (!group.fleet && !a.local) continue;
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
        if ((group.fleet || r.local) && matchesKey(f, r.keyId, r)) ev.remaining.push({ keyId: r.keyId, remaining: r.remaining, unlimited: r.unlimited, accountBalance: r.accountBalance });
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

/** This sidecar's second as sent on the bus (bus.ts). */
export function toSecond(acc: { from: number; tuples: Map<string, Tuple>; charged: Map<string, number>; accounts: Map<string, number>; keyEvents: (LiveKeyEvent & Owner)[] }, at: number): LiveSecond {
  return {
    v: 1,
    from: acc.from,
    at,
    t: [...acc.tuples.values()].map((t) => [t.keyId, t.accountId, t.group, t.model, t.c]),
    c: [...acc.charged],
    a: [...acc.accounts],
    e: acc.keyEvents.flatMap((e) => (e.kind === "quota_exhausted" ? [] : [[e.keyId, e.kind, e.accountId, e.group] as [string, AdminKeyEventKind, string, string]])),
  };
}
