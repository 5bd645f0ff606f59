// THE refill rule: a key with a refill period gets its quota back to its total when a new
// period (UTC day, ISO week from Monday, or month) begins. Pure: the engine's key book tracks
// each key's state and applies what this says; the once-a-second scheduler passes `now`.
import type { RefillPeriod } from "./types.js";

/** A key with a refill period: its period, quota total and the period its quota belongs to. */
export interface RefillState {
  period: Exclude<RefillPeriod, "none">;
  total: number;
  /** Start of the period the current quota belongs to. */
  since: number;
}

/** Start (UTC) of the refill period containing `now`. */
export function periodStart(period: RefillState["period"], now: number): number {
  const d = new Date(now);
  const day = Date.UTC(d.getUTCFullYear(), d.getUTCMonth(), d.getUTCDate());
  if (period === "daily") return day;
  if (period === "weekly") return day - ((d.getUTCDay() + 6) % 7) * 86_400_000; // ISO weeks start on Monday
  return Date.UTC(d.getUTCFullYear(), d.getUTCMonth(), 1);
}

/**
 * The start of the period the key's quota must now be refilled for, or null when the quota
 * already belongs to the current period. A refill sets remaining := total; the difference is
 * credited, so charges made before that instant stay in `used` and charges after it count
 * against the new period — none is lost.
 */
export function refillDue(r: RefillState, now: number): number | null {
  const start = periodStart(r.period, now);
  return r.since >= start ? null : start;
}

/** A key's refill state from now on: null when it has no refill (none, or unlimited). */
export function refillStateOf(k: { refill: RefillPeriod; unlimited: boolean; quotaTotal: number }, since: number): RefillState | null {
  if (k.refill === "none" || k.unlimited) return null;
  return { period: k.refill, total: k.quotaTotal, since };
}
