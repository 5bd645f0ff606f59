// THE period rule: when a refill (a key's quota) or a reset (a group's budget) is due. A period
// is daily, weekly, monthly or every N days, counted in calendar days of an IANA time zone
// (default UTC), with an anchor: the weekday a week starts on, the day of the month a month
// starts on (short months clamp: "the 31st" is Feb 28/29, Apr 30), the date an N-day cycle
// counts from. Pure: `now` is always passed in; zone offsets come from Intl (Node's full ICU).
//
// A day starts at the zone's local midnight; where a DST change skips midnight, at the first
// instant of that date. So a "day" may last 23 or 25 hours, and a period boundary is never
// skipped or doubled by a DST change.
//
// Mid-period changes (one rule, README "Periods and group budgets"): a period that is added or
// changed (kind, N, anchor, zone) starts being tracked at the moment of the change — the
// quota or budget already used stays used, nothing is refilled then, and the first refill or
// reset comes at the next boundary of the new period. Tracking state is {since, next}:
// `since` is the instant the current quota belongs to, `next` the boundary after it.
import type { RefillPeriod } from "./types.js";

export const DAY_MS = 86_400_000;
export const UTC = "UTC";
/** Largest N of "every N days". */
export const MAX_EVERY_DAYS = 366;

/** A period: its kind and, where they matter, its length in days and its anchor. */
export interface PeriodSpec {
  kind: Exclude<RefillPeriod, "none">;
  /**
   * daily: the length in days (1 = every day; N > 1 = every N days, counted from the anchor).
   * Ignored by the other kinds.
   */
  every: number;
  /**
   * daily with every > 1: the civil day (days since 1970-01-01) cycles count from (0 = that day);
   * weekly: ISO weekday the week starts on, 1 Monday … 7 Sunday (0 = Monday);
   * monthly: day of the month, 1..31, clamped to short months (0 = the 1st).
   */
  anchor: number;
}

/** A period as a key's record or group's budget names it, with the defaults filled in. */
export function periodSpec(kind: Exclude<RefillPeriod, "none">, every = 1, anchor = 0): PeriodSpec {
  return { kind, every: kind === "daily" && every > 1 ? every : 1, anchor };
}

// ---- time zones (Intl) -------------------------------------------------------------------

const formatters = new Map<string, Intl.DateTimeFormat>();

function formatter(tz: string): Intl.DateTimeFormat {
  let f = formatters.get(tz);
  if (!f) {
    f = new Intl.DateTimeFormat("en-US", { timeZone: tz, hourCycle: "h23", year: "numeric", month: "numeric", day: "numeric", hour: "numeric", minute: "numeric", second: "numeric" });
    formatters.set(tz, f);
  }
  return f;
}

/** The canonical name of an IANA time zone ("utc" → "UTC", "Europe/Kiev" stays itself), or null when unknown. */
export function canonicalTimeZone(tz: string): string | null {
  if (typeof tz !== "string" || tz === "" || tz.length > 64) return null;
  try {
    return new Intl.DateTimeFormat("en-US", { timeZone: tz }).resolvedOptions().timeZone;
  } catch {
    return null;
  }
}

/** Local wall-clock fields of instant `t` in zone `tz` (milliseconds dropped). */
function wall(tz: string, t: number): { y: number; m: number; d: number; h: number; mi: number; s: number } {
  if (tz === UTC) {
    const x = new Date(t);
    return { y: x.getUTCFullYear(), m: x.getUTCMonth() + 1, d: x.getUTCDate(), h: x.getUTCHours(), mi: x.getUTCMinutes(), s: x.getUTCSeconds() };
  }
  const out = { y: 0, m: 0, d: 0, h: 0, mi: 0, s: 0 };
  for (const p of formatter(tz).formatToParts(t)) {
    if (p.type === "year") out.y = Number(p.value);
    else if (p.type === "month") out.m = Number(p.value);
    else if (p.type === "day") out.d = Number(p.value);
    else if (p.type === "hour") out.h = Number(p.value);
    else if (p.type === "minute") out.mi = Number(p.value);
    else if (p.type === "second") out.s = Number(p.value);
  }
  return out;
}

/** The zone's offset from UTC at instant `t`, in ms (local = t + offset). */
export function zoneOffsetMs(tz: string, t: number): number {
  if (tz === UTC) return 0;
  const w = wall(tz, t);
  const local = Date.UTC(w.y, w.m - 1, w.d, w.h, w.mi, w.s);
  return local - (t - (((t % 1000) + 1000) % 1000));
}

/** The civil day (days since 1970-01-01) instant `t` falls on in zone `tz`. */
export function civilDay(tz: string, t: number): number {
  const w = wall(tz, t);
  return Math.floor(Date.UTC(w.y, w.m - 1, w.d) / DAY_MS);
}

/**
 * The first instant of civil day `day` in zone `tz`: local midnight, or where a DST change
 * skips midnight, the instant the clocks jump (the first that shows that date).
 */
export function dayStart(tz: string, day: number): number {
  const utc = day * DAY_MS;
  if (tz === UTC) return utc;
  let best = Infinity;
  // The offset in force at local midnight is the one before or after any change near it.
  for (const probe of [utc - DAY_MS, utc, utc + DAY_MS]) {
    const c = utc - zoneOffsetMs(tz, probe);
    if (c < best && civilDay(tz, c) === day) best = c;
  }
  return best;
}

// ---- civil calendar ------------------------------------------------------------------------

function ymd(day: number): { y: number; m: number; d: number } {
  const x = new Date(day * DAY_MS);
  return { y: x.getUTCFullYear(), m: x.getUTCMonth() + 1, d: x.getUTCDate() };
}

function dayOf(y: number, m: number, d: number): number {
  return Math.floor(Date.UTC(y, m - 1, d) / DAY_MS);
}

function daysInMonth(y: number, m: number): number {
  return new Date(Date.UTC(y, m, 0)).getUTCDate();
}

/** The civil day month (y, m) starts on for a monthly anchor (clamped to the month's length). */
function monthBoundary(y: number, m: number, anchor: number): number {
  const a = anchor >= 1 && anchor <= 31 ? anchor : 1;
  return dayOf(y, m, Math.min(a, daysInMonth(y, m)));
}

function mod(a: number, n: number): number {
  return ((a % n) + n) % n;
}

/** [first civil day of the period containing civil day `day`, first civil day of the next one). */
export function periodDays(p: PeriodSpec, day: number): [number, number] {
  if (p.kind === "daily") {
    if (p.every <= 1) return [day, day + 1];
    const start = day - mod(day - p.anchor, p.every);
    return [start, start + p.every];
  }
  if (p.kind === "weekly") {
    const weekday = mod(day + 3, 7) + 1; // 1970-01-01 was a Thursday (4)
    const first = p.anchor >= 1 && p.anchor <= 7 ? p.anchor : 1;
    const start = day - mod(weekday - first, 7);
    return [start, start + 7];
  }
  const { y, m } = ymd(day);
  let sy = y;
  let sm = m;
  if (day < monthBoundary(y, m, p.anchor)) {
    sm = m === 1 ? 12 : m - 1;
    sy = m === 1 ? y - 1 : y;
  }
  const ny = sm === 12 ? sy + 1 : sy;
  const nm = sm === 12 ? 1 : sm + 1;
  return [monthBoundary(sy, sm, p.anchor), monthBoundary(ny, nm, p.anchor)];
}

/** [start, end) of the period containing instant `now`, in zone `tz`. */
export function periodBounds(p: PeriodSpec, tz: string, now: number): [number, number] {
  const [a, b] = periodDays(p, civilDay(tz, now));
  const start = dayStart(tz, a);
  // The first instant of a day may lie (DST) a little before the day's midnight: `now` in that
  // sliver already belongs to the next period.
  const end = dayStart(tz, b);
  if (now >= end) return periodBounds(p, tz, end + 1);
  return [start, end];
}

/** Start of the period containing `now` (UTC unless a zone is given). */
export function periodStart(p: PeriodSpec | Exclude<RefillPeriod, "none">, now: number, tz: string = UTC): number {
  return periodBounds(typeof p === "string" ? periodSpec(p) : p, tz, now)[0];
}

/** The boundary after `now`: when the next period begins. */
export function nextBoundary(p: PeriodSpec, tz: string, now: number): number {
  return periodBounds(p, tz, now)[1];
}

// ---- tracking (keys' refills, groups' budget resets) ---------------------------------------

/** A key with a refill period (or a group with a budget): its period and where it stands. */
export interface RefillState {
  period: PeriodSpec;
  tz: string;
  total: number;
  /** The instant the current quota belongs to (the last refill, or the start of tracking). */
  since: number;
  /** The next boundary after `since`: no refill is due before it. */
  next: number;
}

/**
 * The start of the period the quota must now be refilled for, or null while `now` is still
 * before the next boundary. A refill sets remaining := total; the difference is credited, so
 * charges made before that instant stay in `used` and charges after it count against the new
 * period — none is lost. After a long pause (several boundaries passed) one refill is due,
 * for the period containing `now`.
 */
export function refillDue(r: Pick<RefillState, "period" | "tz" | "next">, now: number): number | null {
  if (now < r.next) return null;
  return periodBounds(r.period, r.tz, now)[0];
}

/** The state after a refill (or the start of tracking) at `since`. */
export function trackFrom(period: PeriodSpec, tz: string, total: number, since: number): RefillState {
  return { period, tz, total, since, next: nextBoundary(period, tz, since) };
}

/** Whether two periods (with their zones) have the same boundaries: a change that keeps them keeps tracking as it is. */
export function samePeriod(a: PeriodSpec, atz: string, b: PeriodSpec, btz: string): boolean {
  return a.kind === b.kind && a.every === b.every && a.anchor === b.anchor && atz === btz;
}

/** What a key's record says of its refill. */
export interface RefillKey {
  refill: RefillPeriod;
  unlimited: boolean;
  quotaTotal: number;
  refillEvery?: number | undefined;
  refillAnchor?: number | undefined;
}

/** The period of a key's record, or null when it has none (none, or unlimited). */
export function keyPeriod(k: RefillKey): PeriodSpec | null {
  if (k.refill === "none" || k.unlimited) return null;
  return periodSpec(k.refill, k.refillEvery ?? 1, k.refillAnchor ?? 0);
}

/** A key's refill state from `since` on: null when it has no refill (none, or unlimited). */
export function refillStateOf(k: RefillKey, since: number, tz: string = UTC): RefillState | null {
  const p = keyPeriod(k);
  return p === null ? null : trackFrom(p, tz, k.quotaTotal, since);
}

/** A period for people: "daily", "every 14 days from 2026-01-05", "monthly on day 15", "weekly from Sunday". */
export function describePeriod(p: PeriodSpec): string {
  if (p.kind === "daily") return p.every > 1 ? `every ${p.every} days from ${new Date(p.anchor * DAY_MS).toISOString().slice(0, 10)}` : "daily";
  if (p.kind === "weekly") return p.anchor >= 2 && p.anchor <= 7 ? `weekly from ${["", "Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"][p.anchor]}` : "weekly";
  return p.anchor >= 2 ? `monthly on day ${p.anchor}` : "monthly";
}
