// Alerts that reach people (issue 19 item 3): operator-configured webhook endpoints, the events
// that go to them, and their delivery.
//
// Events (`type`):
//   quota.threshold    a key's period quota crossed N % used (each endpoint's thresholds, default 50/80/100)
//   balance.threshold  an account spent N % of what was credited to it (same thresholds)
//   balance.low        an account's balance fell to or below the endpoint's balance_low (units; 0 = off)
//   key.expiring       a key expires within 24 h
//   key.disabled       a key was disabled
//   key.deleted        a key was deleted
//   ping               `webhooks test`
// Sources: the usage recorder's live events (service/usage.ts: its remaining figures, key
// events and key_expiring alerts), subscribed only while an endpoint exists.
//
// Delivery: POST <url> with a JSON body {id, type, created_at, data}, and
//   x-aisa-event-id, x-aisa-event-type, x-aisa-delivery-attempt,
//   x-aisa-timestamp: <unix seconds>,
//   x-aisa-signature: v1=<hex HMAC-SHA256(endpoint secret, "<timestamp>.<body>")>.
// A 2xx answer delivers; anything else (3xx included: redirects are not followed, so only the
// configured URL is ever called), a timeout or a connection error is retried with exponential
// backoff (base · 2^(attempt−1), capped, ±20 % jitter) up to maxAttempts, then `failed`.
// At least once: a delivery stays pending until a 2xx, across restarts (the queue is persisted
// in <data>/webhooks.json, written atomically). The event id is stable for the same fact
// (threshold events: target, threshold and period; see dedupKey), so a receiver de-duplicates
// by it — also when a restart re-detects a threshold. Only operators configure endpoints; no
// tenant-controlled destination is ever called.
//
// Threshold marks (which 50/80/100 % alerts a target already got in its period) live in the
// STORE (claimMark = Store.claimAlertMark, keyed by the event id, expiring after the period), not
// in memory: a restart neither re-sends them nor forgets them, and sidecars sharing one store
// send each once (the claim is atomic there). The claim comes before the delivery is queued, so
// that of two sidecars only the claimant queues it; the price is that a crash in the few ms
// between the claim and the queue's write (<data>/webhooks.json) loses that one alert.
// After a restart a sweep over every key and account (start(); only with claimMark) sends what
// crossed while the previous process could not see it (the live stream's last second).
//
// Endpoints on a shared store (a fleet on Redis; `endpoints` option): the endpoint set lives in
// the store, so every sidecar sends to the same endpoints whichever sidecar configured them;
// each sidecar re-reads it every refreshMs (and before every admin call on it). The delivery
// queue stays per sidecar in its webhooks.json: a sidecar delivers the events it detected (an
// alert is claimed once fleet-wide, above). On the first start on a shared store, endpoints
// still in the file are added to the store's set (by id) and the file keeps only the queue from
// then on (`endpointsShared`), so an endpoint removed through any sidecar stays removed. The
// embedded store keeps the endpoints in the file, as before.
import { createHash, createHmac, randomBytes } from "node:crypto";
import { chmod, readFile, rename, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { invalid, notFound, permissionDenied } from "../domain/errors.js";
import type { AccountState, KeyState, Principal } from "../domain/types.js";
import type { LiveEvent, UsageFilter } from "./usage.js";

import { DEFAULT_THRESHOLDS, WEBHOOK_EVENT_TYPES, type WebhookEventType } from "../domain/webhookInput.js";

export { DEFAULT_THRESHOLDS, WEBHOOK_EVENT_TYPES, type WebhookEventType };

export interface WebhookEndpoint {
  id: string;
  url: string;
  secret: string;
  /** Event types sent; empty = all. */
  events: WebhookEventType[];
  thresholds: number[];
  /** balance.low fires at or below this balance (units); 0 = off. */
  balanceLow: number;
  createdAt: number;
}

export interface WebhookEvent {
  id: string;
  type: WebhookEventType;
  created_at: string;
  data: Record<string, unknown>;
}

export type DeliveryState = "pending" | "delivered" | "failed";

export interface WebhookDelivery {
  id: string;
  endpointId: string;
  event: WebhookEvent;
  state: DeliveryState;
  attempts: number;
  nextAttemptAt: number;
  lastError: string;
  lastStatus: number;
  createdAt: number;
  finishedAt: number | null;
}

export interface WebhookOptions {
  /** The data directory: the state file is <dir>/webhooks.json. */
  dir: string;
  /**
   * The endpoint set shared by every sidecar on a shared store (the store's meta records); absent:
   * the endpoints are this sidecar's, in webhooks.json. read() resolves undefined when never written.
   */
  endpoints?: { read(): Promise<WebhookEndpoint[] | undefined>; write(endpoints: WebhookEndpoint[]): Promise<void> };
  /** How often shared endpoints are re-read (default 1000 ms). */
  refreshMs?: number;
  clock: () => number;
  log: (msg: string, err?: unknown) => void;
  getKey: (id: string) => Promise<KeyState | undefined>;
  getAccount: (id: string) => AccountState | undefined;
  /** The usage recorder's live stream (all accounts). */
  subscribe: (filter: UsageFilter, listener: (e: LiveEvent) => void) => () => void;
  /**
   * Persisted threshold marks (Store.claimAlertMark): resolves true when this call set the mark
   * (send the alert), false when it was already set (sent before a restart, or by another
   * sidecar). Absent: marks are memory only (a restart re-detects crossed thresholds under the
   * same event ids).
   */
  claimMark?: (id: string, expiresAt: number) => Promise<boolean>;
  /** When a key's current refill period ends (its marks expire after it); null: no refill. */
  periodEnd?: (keyId: string) => number | null;
  /** Every key, for the start-up sweep (only with claimMark). */
  scanKeys?: () => AsyncIterable<KeyState>;
  /** Every account, for the start-up sweep. */
  listAccounts?: () => AccountState[];
  timeoutMs?: number;
  maxAttempts?: number;
  backoffBaseMs?: number;
  backoffMaxMs?: number;
  /** Pending deliveries kept; past it the oldest pending is dropped (counted). */
  maxQueue?: number;
  /** Finished deliveries kept for `deliveries` (newest). */
  maxHistory?: number;
  /** How often due deliveries are looked for. */
  tickMs?: number;
  concurrency?: number;
}

const ALL: UsageFilter = { keyId: "", accountId: "", group: "", model: "" };

function hash(s: string): string {
  return createHash("sha256").update(s).digest("base64url").slice(0, 24);
}

/** The id of the event of one fact (`type` and its de-duplication key): the same fact, the same id. */
export function eventId(type: WebhookEventType, dedupKey: string): string {
  return `evt_${hash(`${type}|${dedupKey}`)}`;
}

/** How long a threshold mark without a period end (no refill; balances) is kept: ~13 months. */
const MARK_TTL_MS = 400 * 86_400_000;

/** The signature header's value for a body sent at `timestamp` (unix seconds). Receivers recompute it. */
export function signWebhook(secret: string, timestamp: number, body: string): string {
  return `v1=${createHmac("sha256", secret).update(`${timestamp}.${body}`).digest("hex")}`;
}

function validUrl(u: string): string {
  let url: URL;
  try {
    url = new URL(u);
  } catch {
    throw invalid("url", "is not an absolute URL");
  }
  if (url.protocol !== "https:" && url.protocol !== "http:") throw invalid("url", `must be http or https (got ${url.protocol})`);
  if (url.username || url.password) throw invalid("url", "must not carry credentials");
  if (u.length > 2048) throw invalid("url", "must be at most 2048 characters");
  return url.toString();
}

export class WebhookService {
  readonly #o: Required<Omit<WebhookOptions, "getKey" | "getAccount" | "subscribe" | "log" | "clock" | "dir" | "claimMark" | "periodEnd" | "scanKeys" | "listAccounts" | "endpoints">> & WebhookOptions;
  #refreshedAt = -Infinity;
  #refreshing: Promise<void> | undefined;
  #endpoints = new Map<string, WebhookEndpoint>();
  #deliveries: WebhookDelivery[] = [];
  #inFlight = new Set<string>();
  /** The attempts under way: stop() lets them finish (each is bounded by timeoutMs) so their outcome is saved. */
  #attempts = new Set<Promise<void>>();
  /** Threshold marks known to be set (claimed here, or found set in the store): no store call for them. */
  #fired = new Set<string>();
  /** Live observations under way (onLive from the stream), awaited by stop(). */
  #observing = new Set<Promise<void>>();
  /** The start-up sweep (start()), awaited by stop(). */
  #sweeping: Promise<void> = Promise.resolve();
  #dropped = 0;
  #unsubscribe: (() => void) | null = null;
  #timer: NodeJS.Timeout | null = null;
  #saving: Promise<void> = Promise.resolve();
  #dirty = false;
  #stopped = false;

  constructor(o: WebhookOptions) {
    this.#o = {
      timeoutMs: 5000,
      maxAttempts: 10,
      backoffBaseMs: 1000,
      backoffMaxMs: 600_000,
      maxQueue: 10_000,
      maxHistory: 1000,
      tickMs: 200,
      refreshMs: 1000,
      concurrency: 8,
      ...o,
    };
  }

  get #file(): string {
    return join(this.#o.dir, "webhooks.json");
  }

  /** How often tick() should run (the composition root's scheduler reads it). */
  get tickMs(): number {
    return this.#o.tickMs;
  }

  /**
   * Loads the endpoints and the persisted queue, starts delivering. With `{ timer: false }` the
   * caller runs tick() every tickMs itself (main.ts: a task on the service-layer Scheduler).
   */
  async start(opts: { timer?: boolean } = {}): Promise<void> {
    let fileEndpoints: WebhookEndpoint[] = [];
    try {
      const j = JSON.parse(await readFile(this.#file, "utf8")) as { endpoints?: WebhookEndpoint[]; endpointsShared?: boolean; deliveries?: WebhookDelivery[]; dropped?: number };
      if (!j.endpointsShared) fileEndpoints = j.endpoints ?? [];
      this.#deliveries = j.deliveries ?? [];
      this.#dropped = j.dropped ?? 0;
    } catch (err: any) {
      if (err?.code !== "ENOENT") throw new Error(`cannot read ${this.#file}: ${err?.message ?? err}`);
    }
    const shared = this.#o.endpoints;
    if (shared) {
      // First start on the shared store: this file's endpoints join the fleet's set, once.
      const there = (await shared.read()) ?? [];
      const add = fileEndpoints.filter((e) => !there.some((t) => t.id === e.id));
      if (add.length > 0) {
        await shared.write([...there, ...add]);
        this.#o.log(`webhooks: ${add.length} endpoint(s) of ${this.#file} moved to the shared store (every sidecar now sends to them); the file keeps only this sidecar's delivery queue`);
      }
      if (fileEndpoints.length > 0) this.#dirty = true; // rewritten without them
      for (const e of add.length > 0 ? [...there, ...add] : there) this.#endpoints.set(e.id, e);
      this.#refreshedAt = Date.now();
    } else {
      for (const e of fileEndpoints) this.#endpoints.set(e.id, e);
    }
    this.#deliveries = this.#deliveries.filter((d) => this.#endpoints.has(d.endpointId));
    if (this.#dirty) await this.#save();
    this.#syncSubscription();
    // Thresholds crossed while no process was watching (the live stream's last second before a
    // crash): one pass over every key and account, in the background. Marks keep it from re-sending.
    if (this.#o.claimMark && this.#o.scanKeys && this.#endpoints.size > 0) this.#sweeping = this.sweep().catch((err) => this.#o.log("webhook threshold sweep failed", err));
    if (opts.timer === false) return;
    this.#timer = setInterval(() => this.tick(), this.#o.tickMs);
    this.#timer.unref();
  }

  async stop(): Promise<void> {
    this.#stopped = true;
    if (this.#timer) clearInterval(this.#timer);
    this.#unsubscribe?.();
    this.#unsubscribe = null;
    await this.#sweeping;
    await Promise.allSettled([...this.#observing]);
    // A delivery answered while shutting down is saved as delivered, not sent again after the restart.
    await Promise.allSettled([...this.#attempts]);
    await this.#save();
  }

  // ---- admin ------------------------------------------------------------------------

  #operator(p: Principal): void {
    if (p.accountId !== null) throw permissionDenied("an account-scoped token cannot manage webhooks (only operators configure destinations)");
  }

  async create(p: Principal, input: { url: string; events?: string[]; thresholds?: number[]; balanceLow?: number }): Promise<WebhookEndpoint> {
    this.#operator(p);
    if (p.readOnly) throw permissionDenied("this token is read-only");
    const url = validUrl(input.url ?? "");
    const events = [...new Set(input.events ?? [])];
    events.forEach((e, i) => {
      if (!(WEBHOOK_EVENT_TYPES as readonly string[]).includes(e)) throw invalid(`events[${i}]`, `${JSON.stringify(e).slice(0, 40)} is not one of ${WEBHOOK_EVENT_TYPES.join(", ")}`);
    });
    const thresholds = [...new Set(input.thresholds && input.thresholds.length > 0 ? input.thresholds : DEFAULT_THRESHOLDS)].sort((a, b) => a - b);
    thresholds.forEach((t, i) => {
      if (!Number.isInteger(t) || t < 1 || t > 100) throw invalid(`thresholds[${i}]`, `must be an integer percent 1..100 (got ${t})`);
    });
    const balanceLow = input.balanceLow ?? 0;
    if (!Number.isSafeInteger(balanceLow) || balanceLow < 0) throw invalid("balance_low", `must be a non-negative integer (got ${balanceLow})`);
    await this.refresh();
    if (this.#endpoints.size >= 100) throw invalid("url", "at most 100 webhook endpoints");
    const e: WebhookEndpoint = {
      id: `whk_${randomBytes(9).toString("base64url")}`,
      url,
      secret: `whsec_${randomBytes(24).toString("base64url")}`,
      events: events as WebhookEventType[],
      thresholds,
      balanceLow,
      createdAt: this.#o.clock(),
    };
    this.#endpoints.set(e.id, e);
    await this.#o.endpoints?.write([...this.#endpoints.values()]);
    this.#syncSubscription();
    await this.#save();
    return e;
  }

  /**
   * Shared endpoints: re-reads the fleet's set (deliveries to an endpoint removed elsewhere are
   * dropped). A no-op for the embedded store's file endpoints. The admin calls run it first.
   */
  async refresh(): Promise<void> {
    const shared = this.#o.endpoints;
    if (!shared || this.#stopped) return;
    if (this.#refreshing) return this.#refreshing;
    this.#refreshing = (async () => {
      this.#refreshedAt = Date.now(); // a failed read is retried after refreshMs too, not every tick
      const list = (await shared.read()) ?? [];
      this.#endpoints = new Map(list.map((e) => [e.id, e]));
      const before = this.#deliveries.length;
      this.#deliveries = this.#deliveries.filter((d) => this.#endpoints.has(d.endpointId));
      if (this.#deliveries.length !== before) this.#dirty = true;
      this.#syncSubscription();
    })().finally(() => (this.#refreshing = undefined));
    return this.#refreshing;
  }

  list(p: Principal): WebhookEndpoint[] {
    this.#operator(p);
    return [...this.#endpoints.values()].sort((a, b) => a.createdAt - b.createdAt);
  }

  /** Delivery counts of an endpoint. */
  stats(id: string): { pending: number; delivered: number; failed: number; lastError: string } {
    let pending = 0;
    let delivered = 0;
    let failed = 0;
    let lastError = "";
    for (const d of this.#deliveries) {
      if (d.endpointId !== id) continue;
      if (d.state === "pending") pending++;
      else if (d.state === "delivered") delivered++;
      else failed++;
      if (d.lastError) lastError = d.lastError;
    }
    return { pending, delivered, failed, lastError };
  }

  get dropped(): number {
    return this.#dropped;
  }

  async remove(p: Principal, id: string): Promise<void> {
    this.#operator(p);
    if (p.readOnly) throw permissionDenied("this token is read-only");
    await this.refresh();
    if (!this.#endpoints.delete(id)) throw notFound("webhook", id);
    await this.#o.endpoints?.write([...this.#endpoints.values()]);
    this.#deliveries = this.#deliveries.filter((d) => d.endpointId !== id);
    this.#syncSubscription();
    await this.#save();
  }

  deliveries(p: Principal, q: { endpointId?: string; state?: string; limit?: number }): WebhookDelivery[] {
    this.#operator(p);
    if (q.endpointId && !this.#endpoints.has(q.endpointId)) throw notFound("webhook", q.endpointId);
    const limit = q.limit && q.limit > 0 ? Math.min(q.limit, 1000) : 100;
    return this.#deliveries
      .filter((d) => (!q.endpointId || d.endpointId === q.endpointId) && (!q.state || d.state === q.state))
      .slice(-limit)
      .reverse();
  }

  /** Queues a `ping` to one endpoint; returns its delivery. */
  async test(p: Principal, id: string): Promise<WebhookDelivery> {
    this.#operator(p);
    if (p.readOnly) throw permissionDenied("this token is read-only");
    await this.refresh();
    const e = this.#endpoints.get(id);
    if (!e) throw notFound("webhook", id);
    const ev = this.#event("ping", { webhook_id: id }, null);
    const d = this.#enqueue(e, ev)!;
    await this.#save();
    return d;
  }

  // ---- events -----------------------------------------------------------------------

  #event(type: WebhookEventType, data: Record<string, unknown>, dedupKey: string | null): WebhookEvent {
    const now = this.#o.clock();
    return { id: dedupKey === null ? `evt_${randomBytes(12).toString("base64url")}` : eventId(type, dedupKey), type, created_at: new Date(now).toISOString(), data };
  }

  #wants(e: WebhookEndpoint, type: WebhookEventType): boolean {
    return type === "ping" || e.events.length === 0 || e.events.includes(type);
  }

  /** Queues `ev` for `e` unless the same event is already queued or delivered there. */
  #enqueue(e: WebhookEndpoint, ev: WebhookEvent): WebhookDelivery | null {
    if (this.#deliveries.some((d) => d.endpointId === e.id && d.event.id === ev.id && d.state !== "failed")) return null;
    const now = this.#o.clock();
    const d: WebhookDelivery = { id: `dlv_${randomBytes(9).toString("base64url")}`, endpointId: e.id, event: ev, state: "pending", attempts: 0, nextAttemptAt: now, lastError: "", lastStatus: 0, createdAt: now, finishedAt: null };
    let pending = 0;
    for (const x of this.#deliveries) if (x.state === "pending") pending++;
    if (pending >= this.#o.maxQueue) {
      const i = this.#deliveries.findIndex((x) => x.state === "pending" && !this.#inFlight.has(x.id));
      if (i >= 0) {
        this.#deliveries.splice(i, 1);
        this.#dropped++;
        this.#o.log(`webhook queue full (${this.#o.maxQueue}): dropped the oldest pending delivery`);
      }
    }
    this.#deliveries.push(d);
    this.#dirty = true;
    return d;
  }

  /** Sends one event to every endpoint that wants it (per-endpoint filter `want`). */
  emit(type: WebhookEventType, data: Record<string, unknown>, dedupKey: string | null, want: (e: WebhookEndpoint) => boolean = () => true): void {
    let ev: WebhookEvent | null = null;
    for (const e of this.#endpoints.values()) {
      if (!this.#wants(e, type) || !want(e)) continue;
      ev ??= this.#event(type, data, dedupKey);
      this.#enqueue(e, ev);
    }
  }

  #syncSubscription(): void {
    if (this.#stopped) return;
    if (this.#endpoints.size > 0 && this.#unsubscribe === null) {
      this.#unsubscribe = this.#o.subscribe(ALL, (e) => {
        const p: Promise<void> = this.onLive(e)
          .catch((err) => this.#o.log("webhook event failed", err))
          .finally(() => this.#observing.delete(p));
        this.#observing.add(p);
      });
    } else if (this.#endpoints.size === 0 && this.#unsubscribe !== null) {
      this.#unsubscribe();
      this.#unsubscribe = null;
    }
  }

  /**
   * Every threshold at or below `cur` percent (of the endpoints that want `type`) whose mark is
   * not set yet: claimed (store), then sent to the endpoints with that threshold. The mark is the
   * event's id (target, threshold, period), so a mark and a receiver's de-duplication agree.
   */
  async #thresholds(target: string, cur: number, type: "quota.threshold" | "balance.threshold", data: (t: number) => Record<string, unknown>, period: string, expiresAt: number): Promise<void> {
    const all = new Set<number>();
    for (const e of this.#endpoints.values()) if (this.#wants(e, type)) for (const t of e.thresholds) if (t <= cur) all.add(t);
    for (const t of [...all].sort((a, b) => a - b)) {
      const dedup = `${target}|${t}|${period}`;
      const mark = eventId(type, dedup);
      if (this.#fired.has(mark)) continue;
      const mine = this.#o.claimMark ? await this.#o.claimMark(mark, expiresAt) : true;
      if (this.#fired.size >= 100_000) this.#fired.clear(); // bounded: a forgotten mark costs one store read
      this.#fired.add(mark);
      // Claimed: queued even while stopping (stop() awaits the observations under way, then saves).
      if (mine) this.emit(type, data(t), dedup, (e) => e.thresholds.includes(t));
    }
  }

  /** A key's quota thresholds (its period: the refill's start and the total). */
  async #keyThresholds(s: KeyState): Promise<void> {
    const total = s.record.quotaTotal;
    if (s.record.unlimited || !(total > 0)) return;
    const used = total - s.counters.remaining;
    const pct = Math.floor((Math.max(0, used) * 100) / total);
    if (pct <= 0) return;
    const period = String(s.counters.refilledAt ?? s.record.createdAt) + `|${total}`;
    const now = this.#o.clock();
    // A mark outlives its period by a day (then the period string differs anyway); without a refill, ~13 months.
    const end = this.#o.periodEnd?.(s.record.id) ?? null;
    const expiresAt = (end ?? now + MARK_TTL_MS) + 86_400_000;
    const id = s.record.id;
    await this.#thresholds(`key:${id}`, pct, "quota.threshold", (t) => ({ key_id: id, name: s.record.name, account_id: s.record.accountId, percent: t, total: String(total), remaining: String(s.counters.remaining) }), period, expiresAt);
  }

  /** An account's balance thresholds and low balance. */
  async #accountAlerts(id: string): Promise<void> {
    const a = this.#o.getAccount(id);
    if (!a) return;
    const c = a.counters;
    if (c.credited > 0) {
      const pct = Math.floor((Math.max(0, c.credited - c.balance) * 100) / c.credited);
      if (pct > 0) await this.#thresholds(`account:${id}`, pct, "balance.threshold", (t) => ({ account_id: id, percent: t, credited: String(c.credited), balance: String(c.balance) }), String(c.credited), this.#o.clock() + MARK_TTL_MS);
    }
    if (!this.#stopped) this.emit("balance.low", { account_id: id, balance: String(c.balance) }, `${id}|${c.credited}`, (ep) => ep.balanceLow > 0 && c.balance <= ep.balanceLow);
  }

  /** One second of live usage: thresholds, low balances, expiring, disabled and deleted keys. */
  async onLive(e: LiveEvent): Promise<void> {
    for (const a of e.alerts) {
      if (a.kind === "key_expiring" && a.expiresAt !== null) {
        this.emit("key.expiring", { key_id: a.targetId, expires_at: new Date(a.expiresAt).toISOString(), message: a.message }, `${a.targetId}|${a.expiresAt}`);
      }
    }
    for (const k of e.keyEvents) {
      if (k.kind !== "disabled" && k.kind !== "deleted") continue;
      const r = k.key?.record;
      this.emit(k.kind === "disabled" ? "key.disabled" : "key.deleted", { key_id: k.keyId, name: r?.name ?? null, account_id: r?.accountId ?? null }, `${k.keyId}|${k.kind}|${e.at}`);
    }
    const accounts = new Set<string>();
    for (const r of e.remaining) {
      const s = await this.#o.getKey(r.keyId);
      if (!s) continue;
      accounts.add(s.record.accountId);
      await this.#keyThresholds(s);
    }
    for (const id of accounts) await this.#accountAlerts(id);
    if (this.#dirty && !this.#stopped) await this.#save();
  }

  /**
   * One pass over every key and account: thresholds crossed (and not marked) are sent. start()
   * runs it after a restart; exposed for tests.
   */
  async sweep(): Promise<void> {
    const scan = this.#o.scanKeys;
    if (!scan || this.#endpoints.size === 0) return;
    const accounts = new Set<string>();
    for await (const s of scan()) {
      if (this.#stopped) return;
      accounts.add(s.record.accountId);
      await this.#keyThresholds(s);
    }
    for (const a of this.#o.listAccounts?.() ?? []) accounts.add(a.record.id);
    for (const id of accounts) {
      if (this.#stopped) return;
      await this.#accountAlerts(id);
    }
    if (this.#dirty && !this.#stopped) await this.#save();
  }

  // ---- delivery ---------------------------------------------------------------------

  /** Starts the deliveries that are due (up to the concurrency) and saves a changed queue. A no-op once stopped. */
  tick(): void {
    if (this.#stopped) return;
    const now = this.#o.clock();
    // Wall time, not the injected clock: how often to look, not a business time.
    if (this.#o.endpoints && !this.#refreshing && Date.now() - this.#refreshedAt >= this.#o.refreshMs) {
      this.refresh().catch((err) => this.#o.log("webhooks: cannot read the shared endpoints (the last ones read stay in use)", err));
    }
    for (const d of this.#deliveries) {
      if (this.#inFlight.size >= this.#o.concurrency) break;
      if (d.state !== "pending" || d.nextAttemptAt > now || this.#inFlight.has(d.id)) continue;
      const e = this.#endpoints.get(d.endpointId);
      if (!e) continue;
      this.#inFlight.add(d.id);
      const p: Promise<void> = this.#attempt(e, d)
        .catch((err) => this.#o.log("webhook delivery failed", err))
        .finally(() => {
          this.#inFlight.delete(d.id);
          this.#attempts.delete(p);
        });
      this.#attempts.add(p);
    }
    if (this.#dirty) void this.#save();
  }

  async #attempt(e: WebhookEndpoint, d: WebhookDelivery): Promise<void> {
    const body = JSON.stringify(d.event);
    const ts = Math.floor(this.#o.clock() / 1000);
    d.attempts++;
    let error = "";
    let status = 0;
    try {
      const res = await fetch(e.url, {
        method: "POST",
        redirect: "manual",
        signal: AbortSignal.timeout(this.#o.timeoutMs),
        headers: {
          "content-type": "application/json",
          "user-agent": "aisa-authz-webhooks/1",
          "x-aisa-event-id": d.event.id,
          "x-aisa-event-type": d.event.type,
          "x-aisa-delivery-attempt": String(d.attempts),
          "x-aisa-timestamp": String(ts),
          "x-aisa-signature": signWebhook(e.secret, ts, body),
        },
        body,
      });
      status = res.status;
      await res.body?.cancel().catch(() => {});
      if (status < 200 || status > 299) error = `HTTP ${status}`;
    } catch (err: any) {
      error = err?.name === "TimeoutError" ? `timeout after ${this.#o.timeoutMs} ms` : String(err?.cause?.code ?? err?.message ?? err).slice(0, 200);
    }
    const now = this.#o.clock();
    d.lastStatus = status;
    if (error === "") {
      d.state = "delivered";
      d.lastError = "";
      d.finishedAt = now;
    } else {
      d.lastError = error;
      if (d.attempts >= this.#o.maxAttempts) {
        d.state = "failed";
        d.finishedAt = now;
        this.#o.log(`webhook ${e.id}: delivery ${d.id} (${d.event.type}) failed after ${d.attempts} attempts: ${error}`);
      } else {
        const backoff = Math.min(this.#o.backoffMaxMs, this.#o.backoffBaseMs * 2 ** (d.attempts - 1));
        d.nextAttemptAt = now + Math.round(backoff * (0.8 + Math.random() * 0.4));
      }
    }
    this.#trimHistory();
    await this.#save();
  }

  #trimHistory(): void {
    let finished = 0;
    for (const d of this.#deliveries) if (d.state !== "pending") finished++;
    if (finished <= this.#o.maxHistory) return;
    let excess = finished - this.#o.maxHistory;
    this.#deliveries = this.#deliveries.filter((d) => d.state === "pending" || excess-- <= 0);
  }

  // ---- persistence ------------------------------------------------------------------

  /** Writes the state file (atomically: temp file + rename, mode 0600); serialised. */
  #save(): Promise<void> {
    this.#dirty = true;
    this.#saving = this.#saving.then(() => this.#flush());
    return this.#saving;
  }

  async #flush(): Promise<void> {
    if (!this.#dirty) return;
    this.#dirty = false;
    const tmp = `${this.#file}.tmp`;
    // Shared endpoints are the store's: the file keeps only this sidecar's queue.
    const body = JSON.stringify(this.#o.endpoints ? { endpointsShared: true, deliveries: this.#deliveries, dropped: this.#dropped } : { endpoints: [...this.#endpoints.values()], deliveries: this.#deliveries, dropped: this.#dropped });
    try {
      await writeFile(tmp, body, { mode: 0o600 });
      await chmod(tmp, 0o600);
      await rename(tmp, this.#file);
    } catch (err) {
      this.#dirty = true;
      this.#o.log(`cannot write ${this.#file}`, err);
    }
  }
}
