// Budget-slice leases of the Redis engine (issue 15; the design: redisStore.ts, "Leases"). This
// file is the sidecar's side of them: what it holds of each lease (pure bookkeeping, no I/O), the
// local rule that admits a Check from a lease, and how big a slice to ask for. The Redis side is
// the lease / shrink / reserveq functions of the BATCH script (scripts.ts).
//
// Invariant (exactness): for every lease, the units Redis holds for it are at least `total` here
// (its open local reservations + its unused slice) as long as the lease is valid on Redis, and
// this sidecar admits from a lease only before `validUntil` (send time of the grant or renew +
// TTL − margin), i.e. before Redis can have dropped it. Every change keeps it:
//   a local admission moves units from the slice to an open reservation (total unchanged);
//   a local release or expiry moves them back (unchanged);
//   a Consume lowers total by the reservation's units BEFORE its shrink item goes to Redis (Redis
//     then lowers its hold by the same; if the item never runs, Redis holds more: still safe),
//     and the reservation leaves `openUnits` when the book settles it (until then the slice is
//     smaller by its units: safe);
// Lease-backed reservations are the book's own (reservations.ts slab, tag 1): the book reports
// each one that closes (KeyBook.onTaggedClose), so no id is kept here (ids kept for seconds
// would be old-generation garbage at thousands of Checks a second).
//   a grant / renew / return sends keep = total (open + slice; only `open` when returning), and
//     Redis sets the hold to keep + extra; the reply sets total = hold − what Consumes shrank
//     since it was sent (those ran after it on Redis: one connection keeps the order).

/** Defaults: the lease's TTL on Redis, and how much earlier the sidecar stops using it. */
export const DEFAULT_LEASE_MARGIN_MS = 250;
/** A slice smaller than this many requests' worth is not worth a lease (the key stays pass-through). */
export const MIN_SLICE_REQUESTS = 4;
/** Pass-through Checks of a key in the current rate window before a lease is asked for. */
export const GRANT_AFTER_CHECKS = 4;

export type LeaseState = "live" | "off";

/** The book's tag of a reservation admitted from a lease (KeyBook.reserve's `tag`). */
export const LEASED_TAG = 1;

export class Lease {
  /** Units this sidecar may count on Redis holding for it: open local reservations + unused slice. */
  total = 0;
  /** Units of its open local reservations (book reservations with tag LEASED_TAG). */
  openUnits = 0;
  /** Units Consumes shrank the lease by since it was created (a renew's reply subtracts those after it). */
  shrunk = 0;
  /** Local clock: admit from the lease only before this. */
  validUntil = 0;
  /** Local clock: renew from here on (while the key is used). */
  renewAt = 0;
  /** A grant / renew / return is on its way. */
  inflight = false;
  /** Turned off while a call was on its way: give the slice back when it answers. */
  returnAfter = false;
  /** live: admits; off: recalled, returned, expired or the key changed (open reservations still settle). */
  state: LeaseState = "off";
  /** Rate window: Checks and units of the key since `windowStart` (local and pass-through). */
  windowStart = 0;
  checks = 0;
  units = 0;
  /** The previous window's figures (the slice is sized from them). */
  lastChecks = 0;
  lastUnits = 0;

  constructor(
    readonly keyId: string,
    readonly account: string,
    /** Its id on Redis: "L:<sid>:<keyId>". */
    readonly lid: string,
  ) {}

  get free(): number {
    return this.total - this.openUnits;
  }

  /** Whether a Check of `units` may be admitted from the lease now (no Redis call). */
  admits(now: number, units: number): boolean {
    return this.state === "live" && now < this.validUntil && this.total - this.openUnits >= units;
  }

  /** Records a Check of the key (rate window of `windowMs`). */
  noteCheck(now: number, units: number, windowMs: number): void {
    if (now - this.windowStart >= windowMs) {
      const stale = now - this.windowStart >= 2 * windowMs;
      this.lastChecks = stale ? 0 : this.checks;
      this.lastUnits = stale ? 0 : this.units;
      this.windowStart = now;
      this.checks = 0;
      this.units = 0;
    }
    this.checks++;
    this.units += units;
  }

  /** Checks in the current and the previous window (is the key busy enough for a lease?). */
  recentChecks(now: number, windowMs: number): number {
    if (now - this.windowStart >= 2 * windowMs) return 0;
    if (now - this.windowStart >= windowMs) return this.checks;
    return this.checks + this.lastChecks;
  }

  /**
   * The slice to ask for: the units of the key's Checks in the current and the previous window
   * (windows of TTL / 2: about its rate × the TTL), at least `min`; 0 when the key was not used in
   * the last two windows (the lease goes back).
   */
  want(now: number, windowMs: number, min: number): number {
    if (now - this.windowStart >= 2 * windowMs) return 0;
    const units = now - this.windowStart >= windowMs ? this.units : this.units + this.lastUnits;
    return units > 0 ? Math.max(min, units) : 0;
  }

  /** The smallest slice worth a lease: MIN_SLICE_REQUESTS Checks of the recent average size. */
  minSlice(): number {
    const checks = this.checks + this.lastChecks;
    const units = this.units + this.lastUnits;
    return Math.max(1, Math.ceil((checks > 0 ? units / checks : 1) * MIN_SLICE_REQUESTS));
  }

  /** A local reservation from the lease opened. */
  opened(units: number): void {
    this.openUnits += units;
  }

  /** A local reservation from the lease closed (the book's report): unless charged (settling), its units are back in the slice. */
  closed(units: number): void {
    this.openUnits -= units;
  }

  /** A Consume charges a lease-backed reservation: its units leave the lease (the shrink item follows). */
  settling(units: number): void {
    this.total -= units;
    this.shrunk += units;
  }
}

/** Counters of the lease machinery (metrics, bench, tests). */
export interface LeaseStats {
  /** Checks admitted from a lease (no Redis call). */
  local: number;
  /** Checks sent to Redis as today (a reserve item). */
  passThrough: number;
  /** Pass-through Checks retried because a lease was recalled for them. */
  recallRetries: number;
  granted: number;
  renewed: number;
  returned: number;
  recalled: number;
}

export function newLeaseStats(): LeaseStats {
  return { local: 0, passThrough: 0, recallRetries: 0, granted: 0, renewed: 0, returned: 0, recalled: 0 };
}
