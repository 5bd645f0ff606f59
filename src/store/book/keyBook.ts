// The key book: what a sidecar holds in memory of keys, accounts, groups, tokens and prices, and
// every rule that reads or moves it — engine-independent. An engine (LevelDB today, a shared one
// next) persists and reloads; the book decides. Every method is synchronous, so each one is an
// atomic step on this process's memory: a reservation re-checks and holds in one step, a charge
// settles and moves the counters in one step. (What a shared engine must additionally make
// atomic across sidecars is stated in store/types.ts.)
//
// Accounts, groups, tokens and prices are its tables (tables.ts).
//
// Protocol with the engine: admin mutations are validated against the book (check*), written
// by the engine, then applied to the book (put*/remove*) once durable; counter moves
// (charge, refill, balance) happen in the book first and the engine's batch carries the
// absolute values the book reports (keyCounters/accountCounters), so batches committing in
// submission order leave disk equal to memory.
import type { KeyRecord, KeyState } from "../../domain/types.js";
import { alreadyExists, notFound } from "../../domain/errors.js";
import { keyPeriod, nextBoundary, refillDue, refillStateOf, samePeriod, trackFrom, UTC, type RefillKey, type RefillState } from "../../domain/refill.js";
import { admit, budgetAvailable } from "../../policy/admit.js";
import type { RateView } from "../../policy/types.js";
import { HotIndex, type HotCounters, type HotEntry } from "./hotIndex.js";
import { BookTables, copyGroup, type BudgetState } from "./tables.js";
import type { HotKey } from "./hotKey.js";
import { RESERVATION_KEY_AT, ReservationSlab } from "./reservations.js";
import type { GroupWithCount, HotSnapshot, ReserveRequest, ReserveResult } from "../types.js";

/** A key's counters as an engine stores them (what keyCounters reports). */
export interface KeyCounterValues {
  remaining: number;
  used: number;
  /** Quota ever granted (initial + changes + refills); credited − used = remaining. */
  credited: number;
  lastUsedAt: number | null;
  refilledAt: number | null;
}

/** What a deleted key leaves behind (its tombstone): where its late Consumes are charged. */
export interface DeletedKey {
  accountId: string;
  group: string;
  /** The group's ratio at deletion (used if the group is gone by the time of the charge). */
  ratioPpm: number;
  deletedAt: number;
}

/** One key of the book as plain data (tests: a load from the projection equals one from the records). */
export interface HotDumpEntry extends HotEntry {
  refill: { period: string; every: number; anchor: number; tz: string; total: number; since: number; next: number } | null;
}

/** Default cap on open reservations (~51 MB of slab at ~51 B a reservation). */
export const DEFAULT_MAX_RESERVATIONS = 1_000_000;

const NO_RATE: RateView = Object.freeze({ requestsInWindow: 0, tokensInWindow: 0, open: 0, windowResetMs: 0 });

/** A key without a rate window reads as an empty one (shared, frozen: lookup reads it only). */
const NO_WINDOW_READ = Object.freeze({ requests: 0, tokens: 0, resetMs: 0 });

export class KeyBook {
  readonly index = new HotIndex();
  /** Accounts, groups, tokens and prices (tables.ts). */
  readonly tables = new BookTables();
  readonly #groupCounts = new Map<string, number>();
  /** Open reservations (typed arrays; reservations.ts), at most #maxReservations. */
  readonly #reservations: ReservationSlab;
  readonly #maxReservations: number;
  /** Reservations released early because the book was at its cap (a counter; metrics). */
  reservationsEvicted = 0;
  /**
   * Called when a reservation opened with a tag (reserve's `tag`) closes — settled, released,
   * expired, evicted or its key removed — with its key's slot (still live) and units. The Redis
   * engine's leases count their open reservations by it (store/redis/lease.ts).
   */
  onTaggedClose: ((keySlot: number, units: number) => void) | undefined;
  // Reservations are kept in creation order. While every new one expires no earlier than
  // the one before (one TTL, a clock that does not step back), that is also expiry order
  // and the once-a-second sweep stops at the first live one instead of visiting them all
  // (at thousands of Checks a second and a 10-minute TTL, hundreds of thousands).
  #reservationsInExpiryOrder = true;
  #lastReservationExpiry = -Infinity;
  /** reserve()'s view of a key's rate window, reused (reserve is synchronous and allocates nothing on this). */
  readonly #rateScratch: RateView = { requestsInWindow: 0, tokensInWindow: 0, open: 0, windowResetMs: 0 };
  readonly #refills = new Map<string, RefillState>();
  /** The group budget each open reservation holds units against (only reservations of budgeted groups). */
  readonly #reservationBudget = new Map<number, BudgetState>();
  /**
   * Keys whose delete is submitted but not yet applied, with their tombstones. A Consume in
   * that window charges the account only, like one after it: its write commits after the
   * delete's, and a key-counter write there would outlive the key.
   */
  readonly #deleting = new Map<string, DeletedKey>();
  /**
   * The engine's per-account sequence (FeedKeyCounters.seq) of the newest account counters the
   * book applied, per account, and of the newest key counters, per key slot (allocated at the
   * first one: an engine without sequences never pays for it). Counters arrive over two paths —
   * this sidecar's own script replies and the change feed — and a reply may arrive after a feed
   * entry of a later commit; older values than the ones applied are dropped (applyChange.ts).
   */
  readonly #accountSeq = new Map<string, number>();
  #keySeq: Float64Array | undefined;
  /** Key sequences acceptKeySeq recorded since the last forgetSeqs (0: a load need not compare). */
  #keySeqsAccepted = 0;

  /**
   * @param maxReservations open reservations held at most (AISA_MAX_RESERVATIONS). A Check
   * that would open one more releases the oldest first, as if its TTL had ended: under a load
   * that never consumes (Envoy ext_authz alone) the slab holds rate × TTL reservations, and
   * the cap bounds that memory instead of denying traffic.
   */
  constructor(opts: { maxReservations?: number } = {}) {
    // A reservation id names its slot in 5 base62 digits (reservations.ts): 62^5 slots at most.
    this.#maxReservations = Math.min(62 ** 5, Math.max(1, opts.maxReservations ?? DEFAULT_MAX_RESERVATIONS));
    this.#reservations = new ReservationSlab(1024, this.#maxReservations);
  }

  // ---- reads -------------------------------------------------------------------------

  hasKey(id: string): boolean {
    return this.index.slotOf(id) >= 0;
  }

  /** A key's state: its record with the book's counters. */
  keyState(record: KeyRecord): KeyState {
    const ix = this.index;
    const slot = ix.slotOf(record.id);
    return {
      record,
      counters: {
        remaining: slot >= 0 ? ix.remaining(slot) : record.quotaTotal,
        used: slot >= 0 ? ix.used(slot) : 0,
        reserved: slot >= 0 ? ix.reserved(slot) : 0,
        lastUsedAt: slot >= 0 ? ix.lastUsedAt(slot) : null,
        refilledAt: this.#refills.get(record.id)?.since ?? null,
      },
    };
  }

  /** The absolute counter values of a live key, as its engine stores them. */
  keyCounters(id: string, refilledAt: number | null = this.#refills.get(id)?.since ?? null): KeyCounterValues {
    const ix = this.index;
    const slot = ix.slotOf(id);
    return { remaining: ix.remaining(slot), used: ix.used(slot), credited: ix.credited(slot), lastUsedAt: ix.lastUsedAt(slot), refilledAt };
  }

  listGroups(accountId?: string): GroupWithCount[] {
    let counts: ReadonlyMap<string, number> = this.#groupCounts;
    if (accountId !== undefined) {
      const mine = new Map<string, number>();
      for (const slot of this.index.slots()) {
        if (this.index.accountOf(slot) !== accountId) continue;
        const g = this.index.groupOf(slot);
        mine.set(g, (mine.get(g) ?? 0) + 1);
      }
      counts = mine;
    }
    return this.tables
      .groupEntries()
      .map((g) => {
        const out: GroupWithCount = { ...copyGroup(g.record), keyCount: counts.get(g.record.name) ?? 0 };
        if (g.budget) out.budgetUse = { spent: g.budget.spent, reserved: g.budget.reserved, resetsAt: g.budget.track.next };
        return out;
      })
      .sort((a, b) => (a.name < b.name ? -1 : 1));
  }

  keysInGroup(name: string): number {
    return this.#groupCounts.get(name) ?? 0;
  }

  get openReservations(): number {
    return this.#reservations.size;
  }

  /** Slots the reservation slab holds now (its memory is ~51 B a slot). */
  get reservationCapacity(): number {
    return this.#reservations.capacity;
  }

  // ---- admin checks (before the engine writes) ----------------------------------------

  /** A new key: its account and group exist, its id is free. */
  checkNewKey(record: KeyRecord): void {
    if (!this.tables.hasAccount(record.accountId)) throw notFound("account", record.accountId);
    if (!this.tables.hasGroup(record.group)) throw notFound("group", record.group);
    if (this.index.slotOf(record.id) >= 0) throw alreadyExists("key", record.id);
  }

  /** A changed key: its account and group exist. */
  checkKeyChange(record: KeyRecord): void {
    if (!this.tables.hasGroup(record.group)) throw notFound("group", record.group);
    if (!this.tables.hasAccount(record.accountId)) throw notFound("account", record.accountId);
  }

  // ---- applying committed records ------------------------------------------------------

  /** A new key (insert, import, load): indexed with its counters, its refill tracked from `refillSince`. */
  addKey(k: HotKey, counters: HotCounters, refillSince: number): void {
    this.index.upsert(k, counters);
    this.#trackRefill(k, refillSince);
    this.#groupCounts.set(k.group, (this.#groupCounts.get(k.group) ?? 0) + 1);
  }

  /** A key's new record (its counters stay); `previousGroup` is the group it was in. */
  updateKey(k: HotKey, refillSince: number, previousGroup: string): void {
    const ix = this.index;
    const slot = ix.slotOf(k.id);
    ix.upsert(k, { remaining: ix.remaining(slot), used: ix.used(slot), credited: ix.credited(slot), lastUsedAt: ix.lastUsedAt(slot) });
    this.#trackRefill(k, refillSince);
    if (previousGroup !== k.group) {
      this.#groupCounts.set(previousGroup, (this.#groupCounts.get(previousGroup) ?? 1) - 1);
      this.#groupCounts.set(k.group, (this.#groupCounts.get(k.group) ?? 0) + 1);
    }
  }

  /** The time zone a key's periods are counted in: its account's (UTC by default). */
  #zoneOf(accountId: string): string {
    return this.tables.account(accountId)?.record.timezone ?? UTC;
  }

  /**
   * When a key's refill period starts (or goes on) with this change: its current start when its
   * period stays the same, else now — THE mid-period rule (domain/refill.ts): a refill added or
   * changed (kind, N, anchor) starts at the change, keeps the quota left as it is, and refills
   * first at the new period's next boundary (no free refill, nothing already spent re-counted).
   */
  refillSinceFor(record: KeyRecord, now: number): number {
    const r = this.#refills.get(record.id);
    const p = keyPeriod(record);
    return r && p && samePeriod(r.period, r.tz, p, this.#zoneOf(record.accountId)) ? r.since : now;
  }

  /** Whether a change to `record` starts a refill period (its counters must then be written with it). */
  refillStarts(record: KeyRecord): boolean {
    const p = keyPeriod(record);
    if (p === null) return false;
    const r = this.#refills.get(record.id);
    return !r || !samePeriod(r.period, r.tz, p, this.#zoneOf(record.accountId));
  }

  /**
   * A key's counters as committed elsewhere (the change feed, applyChange.ts): absolute values,
   * its refill period's start included; its open reservations stay.
   */
  setKeyCounters(id: string, c: KeyCounterValues): void {
    const slot = this.index.slotOf(id);
    if (slot < 0) return;
    this.index.setCounters(slot, c);
    const r = this.#refills.get(id);
    if (r && c.refilledAt !== null && c.refilledAt !== r.since) {
      r.since = c.refilledAt;
      r.next = nextBoundary(r.period, r.tz, c.refilledAt);
    }
  }

  /**
   * Whether account counters at the engine's sequence `seq` are not older than the ones the book
   * applied last (and so are to be applied); records `seq`. Undefined: always (no sequence).
   */
  acceptAccountSeq(id: string, seq: number | undefined): boolean {
    if (seq === undefined) return true;
    const last = this.#accountSeq.get(id);
    if (last !== undefined && seq < last) return false;
    this.#accountSeq.set(id, seq);
    return true;
  }

  /** The same for a live key's counters (its account's sequence); false for a key the book does not hold. */
  acceptKeySeq(id: string, seq: number | undefined): boolean {
    if (seq === undefined) return true;
    const slot = this.index.slotOf(id);
    if (slot < 0) return false;
    const held = this.#keySeq && slot < this.#keySeq.length ? this.#keySeq[slot]! : 0;
    if (seq < held) return false;
    this.#setKeySeq(slot, seq);
    this.#keySeqsAccepted++;
    return true;
  }

  #setKeySeq(slot: number, seq: number): void {
    let a = this.#keySeq;
    if (!a || slot >= a.length) {
      const grown = new Float64Array(Math.max(1024, slot + 1, (a?.length ?? 0) * 2));
      if (a) grown.set(a);
      this.#keySeq = a = grown;
    }
    a[slot] = seq;
  }

  /** Forgets the sequences (before a reload: an engine restored from an older state counts lower again). */
  forgetSeqs(): void {
    this.#accountSeq.clear();
    this.#keySeq?.fill(0);
    this.#keySeqsAccepted = 0;
  }

  #forgetKeySeq(slot: number): void {
    if (this.#keySeq && slot >= 0 && slot < this.#keySeq.length) this.#keySeq[slot] = 0;
  }

  /** Moves a key's remaining quota (an admin change, before its write). */
  changeQuota(id: string, set: number | undefined, delta: number | undefined): void {
    const slot = this.index.slotOf(id);
    if (set !== undefined) this.index.resetRemaining(slot, set);
    if (delta) this.index.addQuota(slot, delta);
  }

  /** The tombstone a deleted key leaves. */
  tombstoneOf(record: Pick<KeyRecord, "accountId" | "group">, now: number): DeletedKey {
    return { accountId: record.accountId, group: record.group, ratioPpm: this.tables.ratioOf(record.group), deletedAt: now };
  }

  /** Keys whose delete is being written: Consumes charge their accounts only from now on. */
  beginDelete(tombs: ReadonlyMap<string, DeletedKey>): void {
    for (const [id, t] of tombs) this.#deleting.set(id, t);
  }

  endDelete(ids: Iterable<string>): void {
    for (const id of ids) this.#deleting.delete(id);
  }

  /** The tombstone of a key whose delete is being written, if any. */
  deleting(id: string): DeletedKey | undefined {
    return this.#deleting.get(id);
  }

  /** Removes deleted keys, their open reservations first (one pass, while the slots still hold them). */
  removeKeys(ids: readonly string[]): void {
    const slots = new Set(ids.map((id) => this.index.slotOf(id)));
    this.#dropReservationsOf(slots);
    for (const id of ids) {
      const slot = this.index.slotOf(id);
      const group = this.index.groupOf(slot);
      this.#forgetKeySeq(slot);
      this.index.remove(id);
      this.#refills.delete(id);
      this.#groupCounts.set(group, (this.#groupCounts.get(group) ?? 1) - 1);
    }
  }

  /** Deletes a group (it has no keys). */
  deleteGroup(name: string): void {
    this.tables.deleteGroup(name);
    this.#groupCounts.delete(name);
  }

  // ---- loading (an engine's open, or its reload after a failed write) --------------------

  /** Before the keys are loaded again: refill states are rebuilt by the load (group counts by endKeyLoad). */
  beginKeyReload(): void {
    this.#refills.clear();
  }

  /**
   * A loaded key (open or reload): an existing slot keeps its reservations. Idempotent per key: a
   * second sighting of an id in one load (Redis's HSCAN returns a field twice when the hash is
   * resized mid-scan) replaces the first — index, refill state — and adds nothing; group counts
   * are counted once, from the index, by endKeyLoad. `seq`: the engine's sequence of the
   * account at these counters (Redis); counters older than the ones the book applied since the
   * load began (a change-feed entry or a reply that arrived first) are not taken, and the key
   * keeps `seq` (or the newer one), so an older value arriving later is dropped (applyChange.ts).
   */
  loadKey(k: HotKey, c: KeyCounterValues | undefined, seq?: number): void {
    const ix = this.index;
    let counters: HotCounters = c ?? { remaining: k.quotaTotal, used: 0, credited: k.quotaTotal, lastUsedAt: null };
    let since = c?.refilledAt ?? k.createdAt;
    if (seq !== undefined) {
      const held = this.#keySeqsAccepted !== 0 ? ix.slotOf(k.id) : -1;
      if (held >= 0 && held < this.#keySeq!.length && this.#keySeq![held]! > seq) {
        counters = { remaining: ix.remaining(held), used: ix.used(held), credited: ix.credited(held), lastUsedAt: ix.lastUsedAt(held) };
        since = this.#refills.get(k.id)?.since ?? since;
        seq = undefined;
      }
    }
    // (KeyCounterValues is a HotCounters.)
    const slot = ix.upsert(k, counters);
    if (k.refill !== "none") this.#trackRefill(k, since);
    else if (this.#refills.size !== 0) this.#refills.delete(k.id);
    if (seq !== undefined) this.#setKeySeq(slot, seq);
  }

  /** After a load's keys (open or reload): each group's keys counted once, from the index. */
  endKeyLoad(): void {
    this.#groupCounts.clear();
    for (const [group, n] of this.index.countByGroup()) this.#groupCounts.set(group, n);
  }

  /** After a reload: keys the engine no longer holds leave, with their open reservations. */
  removeKeysNotIn(ids: ReadonlySet<string>): void {
    const gone = new Set<number>();
    for (const slot of this.index.slots()) if (!ids.has(this.index.idOf(slot))) gone.add(slot);
    if (gone.size === 0) return;
    this.#dropReservationsOf(gone);
    for (const slot of gone) {
      this.#forgetKeySeq(slot);
      this.index.remove(this.index.idOf(slot));
    }
  }

  // ---- the hot path ------------------------------------------------------------------

  /** Everything Check needs of the key with this secret hash, or undefined. */
  lookup(secretHash: Uint8Array, now: number): HotSnapshot | undefined {
    const ix = this.index;
    const slot = ix.findByHash(secretHash, now);
    if (slot < 0) return undefined;
    const r = ix.restrictions(slot);
    const account = this.tables.account(ix.accountOf(slot));
    const group = this.tables.group(ix.groupOf(slot));
    const w = ix.rateWindow(slot);
    let rate = NO_RATE;
    const open = ix.open(slot);
    if (w || open) {
      const read = w ? w.read(now) : NO_WINDOW_READ;
      rate = { requestsInWindow: read.requests, tokensInWindow: read.tokens, open, windowResetMs: read.resetMs };
    }
    return {
      handle: slot,
      key: {
        id: ix.idOf(slot),
        accountId: ix.accountOf(slot),
        group: ix.groupOf(slot),
        enabled: ix.isEnabled(slot),
        expiresAt: ix.expiresAt(slot),
        models: r ? r.models : null,
        ips: r ? r.ips : null,
        unlimited: ix.isUnlimited(slot),
        quotaAvailable: ix.remaining(slot) - ix.reserved(slot),
        limits: ix.limits(slot),
      },
      group: group?.policy,
      account: account ? { available: account.counters.balance - account.counters.reserved } : undefined,
      rate,
    };
  }

  /**
   * Re-checks the money rule (policy/admit.ts) on the counters as they are and holds `units`, in one step.
   * `admitted`: a shared engine already re-checked and held on the engine (its authority): the book
   * only records the hold (its cache of its own reservations), without checking again.
   */
  reserve(req: ReserveRequest, admitted = false, tag = 0): ReserveResult {
    const ix = this.index;
    const slot = req.handle;
    if (!ix.hasId(slot, req.keyId)) return { ok: false, reason: "KEY_INVALID", retryAfterMs: 0 };
    const account = this.tables.account(ix.accountOf(slot));
    const units = req.units;
    const rate = this.#rateScratch;
    const w = ix.rateWindow(slot);
    if (w) {
      const read = w.read(req.now);
      rate.requestsInWindow = read.requests;
      rate.tokensInWindow = read.tokens;
      rate.windowResetMs = read.resetMs;
    } else {
      rate.requestsInWindow = 0;
      rate.tokensInWindow = 0;
      rate.windowResetMs = 0;
    }
    rate.open = ix.open(slot);
    const budget = this.tables.budget(ix.groupOf(slot));
    const denial = admitted
      ? null
      : admit(
          units,
          account ? account.counters.balance - account.counters.reserved : NaN,
          ix.isUnlimited(slot),
          ix.remaining(slot) - ix.reserved(slot),
          ix.limits(slot),
          rate,
          budgetAvailable(budget),
        );
    if (denial !== null || !account) return { ok: false, reason: denial?.reason ?? "ACCOUNT_BALANCE_EXHAUSTED", retryAfterMs: denial?.retryAfterMs ?? 0 };
    // All checks passed in this same synchronous step: hold the units.
    // The key id rides in the reservation id, so a Consume whose reservation
    // already expired (or outlived a restart) still finds what to charge.
    ix.addReserved(slot, units, 1);
    account.counters.reserved += units;
    ix.rateWindowForWrite(slot)?.addRequest(req.now);
    ix.touch(slot, req.now);
    const expiresAt = req.now + req.ttlMs;
    if (expiresAt < this.#lastReservationExpiry) this.#reservationsInExpiryOrder = false;
    else this.#lastReservationExpiry = expiresAt;
    if (this.#reservations.size >= this.#maxReservations) {
      // At the cap: the oldest reservation gives back its hold now rather than at its TTL.
      // Its id still names its key, so a late Consume of it charges like one after expiry.
      this.#dropReservation(this.#reservations.first());
      this.reservationsEvicted++;
    }
    const id = this.#reservations.add(slot, req.keyId, ix.accountIndexOf(slot), units, expiresAt, tag);
    if (budget) {
      budget.reserved += units;
      this.#reservationBudget.set(this.#reservations.find(id), budget);
    }
    return {
      ok: true,
      reservationId: id,
      units,
      keyRemaining: ix.isUnlimited(slot) ? 0 : ix.remaining(slot) - ix.reserved(slot),
      accountBalance: account.counters.balance - account.counters.reserved,
    };
  }

  /** The slab slot of the open reservation `id` (its key id included), or -1. */
  #liveReservation(id: string): number {
    const r = this.#reservations.find(id);
    return r >= 0 && this.index.hasId(this.#reservations.keySlot(r), id, RESERVATION_KEY_AT) ? r : -1;
  }

  #dropReservation(r: number): void {
    const rs = this.#reservations;
    const slot = rs.keySlot(r);
    const units = rs.units(r);
    const a = this.tables.account(this.index.accountNames[rs.account(r)]!);
    const budget = this.#reservationBudget.get(r);
    if (budget) {
      budget.reserved -= units;
      this.#reservationBudget.delete(r);
    }
    if (rs.tag(r) !== 0) this.onTaggedClose?.(slot, units);
    rs.remove(r);
    // A reservation's key is live: removeKeys drops a key's reservations before its slot goes.
    if (this.index.isLive(slot)) this.index.addReserved(slot, -units, -1);
    if (a) a.counters.reserved -= units;
  }

  #dropReservationsOf(slots: ReadonlySet<number>): void {
    const rs = this.#reservations;
    for (let r = rs.first(); r !== -1; ) {
      const next = rs.after(r);
      if (slots.has(rs.keySlot(r))) this.#dropReservation(r);
      r = next;
    }
  }

  /** The tag an open reservation was opened with (reserve's `tag`); undefined when it is not open. */
  reservationTag(reservationId: string): number | undefined {
    const r = this.#liveReservation(reservationId);
    return r < 0 ? undefined : this.#reservations.tag(r);
  }

  /** The units an open reservation holds (its estimate); undefined when it is not open. */
  reservationUnits(reservationId: string): number | undefined {
    const r = this.#liveReservation(reservationId);
    return r < 0 ? undefined : this.#reservations.units(r);
  }

  release(reservationId: string): boolean {
    const r = this.#liveReservation(reservationId);
    if (r < 0) return false;
    this.#dropReservation(r);
    return true;
  }

  /** Releases reservations whose TTL passed (Consume never came). */
  releaseExpired(now: number): number {
    let n = 0;
    const rs = this.#reservations;
    for (let r = rs.first(); r !== -1; ) {
      const next = rs.after(r);
      if (rs.expiresAt(r) <= now) {
        this.#dropReservation(r);
        n++;
      } else if (this.#reservationsInExpiryOrder) break; // every later one expires later
      r = next;
    }
    if (this.#reservations.size === 0) {
      this.#reservationsInExpiryOrder = true;
      this.#lastReservationExpiry = -Infinity;
    }
    this.#reservations.compact(); // memory back after a burst
    return n;
  }

  // ---- Consume (the steps themselves: charge.ts) ------------------------------------------

  /** Settles the open reservation `reservationId` if it is one of the key in `slot`'s (a charge). */
  settle(reservationId: string, slot: number): void {
    const r = this.#liveReservation(reservationId);
    if (r >= 0 && this.#reservations.keySlot(r) === slot) this.#dropReservation(r);
  }

  /** What a key's next refill grants (its total), or undefined when it has no refill. */
  refillTotal(id: string): number | undefined {
    return this.#refills.get(id)?.total;
  }

  // ---- refill (domain/refill.ts) -----------------------------------------------------------

  #trackRefill(rec: Pick<HotKey, "id" | "accountId"> & RefillKey, since: number): void {
    const r = refillStateOf(rec, since, this.#zoneOf(rec.accountId));
    if (r === null) this.#refills.delete(rec.id);
    else this.#refills.set(rec.id, r);
  }

  /** When the key's quota is next refilled (its tracked boundary, in its account's zone); null = no refill. */
  nextRefillAt(id: string): number | null {
    return this.#refills.get(id)?.next ?? null;
  }

  /**
   * An account's time zone changed (its record in the tables is already the new one). THE
   * mid-period rule (domain/refill.ts), as for a changed refill period: every key of the account
   * with a refill restarts its tracking at `now` in the new zone — the quota left stays as it is
   * (no free refill, nothing spent re-counted) and the first refill comes at the new zone's next
   * boundary. The engine applies refills already due under the old zone first (refillDue: the
   * tick may not have run yet), so none is lost. Returns the ids whose refill start moved: the
   * engine writes their counters with the account record.
   */
  retimeAccountKeys(accountId: string, now: number): string[] {
    const tz = this.#zoneOf(accountId);
    const ids: string[] = [];
    for (const [id, r] of this.#refills) {
      if (r.tz === tz) continue;
      const slot = this.index.slotOf(id);
      if (slot < 0 || this.index.accountOf(slot) !== accountId) continue;
      this.#refills.set(id, trackFrom(r.period, tz, r.total, now));
      ids.push(id);
    }
    return ids;
  }

  /** When a group's budget next resets (its tracked boundary, in the budget's zone); null = no budget. */
  groupBudgetResetAt(name: string): number | null {
    return this.tables.budget(name)?.track.next ?? null;
  }

  /** Refills every key whose period turned; returns their ids (the engine writes their counters). */
  refillDue(now: number): string[] {
    const ids: string[] = [];
    for (const [id, r] of this.#refills) {
      const start = refillDue(r, now);
      if (start === null) continue;
      const slot = this.index.slotOf(id);
      if (slot < 0 || this.#deleting.has(id)) continue; // (a counter write would outlive the key)
      this.index.resetRemaining(slot, r.total);
      r.since = start;
      r.next = nextBoundary(r.period, r.tz, start);
      ids.push(id);
    }
    return ids;
  }

  /**
   * Resets every group budget whose period turned: spent := 0 from the new period's start
   * (charges after it count against the new period). Returns their names (the engine writes
   * their counters). Open reservations stay held.
   */
  resetBudgetsDue(now: number): string[] {
    const names: string[] = [];
    for (const g of this.tables.groupEntries()) {
      const b = g.budget;
      if (!b) continue;
      const start = refillDue(b.track, now);
      if (start === null) continue;
      b.spent = 0;
      b.track.since = start;
      b.track.next = nextBoundary(b.track.period, b.track.tz, start);
      names.push(g.record.name);
    }
    return names;
  }

  // ---- inspection (tests) ----------------------------------------------------------------

  /** Every key as plain data, by id, with its refill state. */
  dump(): HotDumpEntry[] {
    const out: HotDumpEntry[] = [];
    for (const slot of this.index.slots()) {
      const e = this.index.entry(slot);
      const r = this.#refills.get(e.id);
      out.push({ ...e, refill: r ? { period: r.period.kind, every: r.period.every, anchor: r.period.anchor, tz: r.tz, total: r.total, since: r.since, next: r.next } : null });
    }
    return out.sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
  }

  /** Keys per group, as the book counts them. */
  groupKeyCounts(): Record<string, number> {
    return Object.fromEntries([...this.#groupCounts].filter(([, n]) => n !== 0).sort(([a], [b]) => (a < b ? -1 : 1)));
  }
}
