// Parsers for CLI option values. Each throws UsageError with a message that
// names what was wrong; range checks that the server owns (quota >= 0, expiry
// in the future, CIDR syntax, …) are left to the server so there is one rule.
// Pure except for the clock passed in.
import { parseRfc3339 } from "../domain/time.js";
import { quoteText, textProblem } from "../domain/text.js";
import { RefillPeriod } from "../gen/aisa/v1/types.js";

/** Bad command-line input: exit code 2. */
export class UsageError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "UsageError";
  }
}

/** An integer written in decimal, kept as a string (int64 on the wire). Sign allowed. */
export function parseInt64(value: string, what: string): string {
  const s = value.trim();
  if (!/^[+-]?\d+$/.test(s)) throw new UsageError(`${what}: ${JSON.stringify(value)} is not an integer`);
  const n = BigInt(s);
  if (n > 9223372036854775807n || n < -9223372036854775808n) throw new UsageError(`${what}: ${value} is out of range`);
  return n.toString();
}

/** A positive integer amount (credit/debit), as a string. */
export function parsePositiveInt64(value: string, what: string): string {
  const s = parseInt64(value, what);
  if (BigInt(s) <= 0n) throw new UsageError(`${what}: must be a positive integer (got ${value})`);
  return s;
}

/** An int32 such as a rate limit or page size. */
export function parseInt32(value: string, what: string): number {
  const s = value.trim();
  if (!/^[+-]?\d+$/.test(s)) throw new UsageError(`${what}: ${JSON.stringify(value)} is not an integer`);
  const n = Number(s);
  if (n > 2147483647 || n < -2147483648) throw new UsageError(`${what}: ${value} is out of range`);
  return n;
}

/**
 * A comma-separated list: "a,b" → ["a","b"], "" → [] (clears). Items are
 * trimmed; empty items inside a non-empty list are kept so the server can name
 * them (a typo like "a,,b" must not silently widen access).
 */
export function parseList(value: string): string[] {
  if (value.trim() === "") return [];
  return value.split(",").map((s) => s.trim());
}

/**
 * Text the server will store (a name, a reason, a description, metadata): the server's rules
 * (src/domain/text.ts: no control, invisible or bidi characters, no secrets), checked before
 * any call. The message never repeats the value.
 */
export function parseText(value: string, what: string): string {
  const problem = textProblem(value);
  if (problem) throw new UsageError(`${what}: ${problem}`);
  return value;
}

/** "k=v" pairs into a map; "" alone clears. */
export function parseMeta(pairs: readonly string[]): Record<string, string> {
  const out: Record<string, string> = {};
  for (const p of pairs) {
    if (p === "" && pairs.length === 1) return {};
    const i = p.indexOf("=");
    if (i <= 0) throw new UsageError(`--meta: ${quoteText(p)} is not key=value`);
    const k = parseText(p.slice(0, i), "--meta key");
    out[k] = parseText(p.slice(i + 1), `--meta ${quoteText(k)}`);
  }
  return out;
}

const UNIT_SECONDS: Record<string, number> = { s: 1, m: 60, h: 3600, d: 86400, w: 604800 };

/** "0", "90", "30s", "15m", "1h", "1h30m", "2d" → seconds. */
export function parseDurationSeconds(value: string, what: string): number {
  const s = value.trim();
  if (/^\d+$/.test(s)) return Number(s);
  if (!/^(\d+[smhdw])+$/.test(s)) throw new UsageError(`${what}: ${JSON.stringify(value)} is not a duration like 0, 30m, 1h, 1h30m, 2d`);
  let total = 0;
  for (const m of s.matchAll(/(\d+)([smhdw])/g)) total += Number(m[1]) * (UNIT_SECONDS[m[2] as string] ?? 0);
  if (!Number.isSafeInteger(total)) throw new UsageError(`${what}: ${value} is too long`);
  return total;
}

/** "--since": a duration back from now ("24h", "7d") or an RFC 3339 time. */
export function parseSince(value: string, now: number): Date {
  const s = value.trim();
  if (/^(\d+[smhdw])+$/.test(s)) return new Date(now - parseDurationSeconds(s, "--since") * 1000);
  const m = /^(\d{4}-\d{2}-\d{2})(?:([Tt ]\d{2}:\d{2})(:\d{2}(?:\.\d+)?)?([Zz]|[+-]\d{2}:\d{2}))?$/.exec(s);
  if (m) {
    // A date alone is its midnight UTC, a time without seconds is at :00; then THE strict parser.
    const r = parseRfc3339(m[2] === undefined ? `${m[1]}T00:00:00Z` : `${m[1]}${m[2]}${m[3] ?? ":00"}${m[4]}`);
    if (!r.ok) throw new UsageError(`--since: ${quoteText(value)} ${r.problem}`);
    return new Date(r.ms);
  }
  throw new UsageError(`--since: ${JSON.stringify(value)} is not a duration (24h, 7d) or an RFC 3339 time (2026-01-31T00:00:00Z)`);
}

const PERIOD_WORDS: Record<string, RefillPeriod> = {
  none: RefillPeriod.REFILL_PERIOD_NONE,
  daily: RefillPeriod.REFILL_PERIOD_DAILY,
  weekly: RefillPeriod.REFILL_PERIOD_WEEKLY,
  monthly: RefillPeriod.REFILL_PERIOD_MONTHLY,
};
const WEEKDAYS = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];

/** A period flag: none (where `allowNone`), daily, weekly, monthly or "<N>d" (every N days, a daily period with every_days N). */
export function parsePeriodFlag(v: string, what: string, allowNone = false): { period: RefillPeriod; everyDays: number } {
  const s = v.trim().toLowerCase();
  const p = PERIOD_WORDS[s];
  if (p !== undefined && (allowNone || p !== RefillPeriod.REFILL_PERIOD_NONE)) return { period: p, everyDays: 0 };
  const m = /^(\d{1,3})d$/.exec(s);
  if (m) return { period: RefillPeriod.REFILL_PERIOD_DAILY, everyDays: Number(m[1]) };
  throw new UsageError(`${what}: ${JSON.stringify(v)} is not ${allowNone ? "none, " : ""}daily, weekly, monthly or <N>d (every N days, e.g. 14d)`);
}

/**
 * An anchor flag for `period`: a day of the month 1..31 (monthly; short months clamp), a weekday
 * mon..sun or 1..7 (weekly), a date YYYY-MM-DD (every N days: the day cycles count from), as the
 * number the API takes (Budget.anchor, KeySpec.refill_anchor).
 */
export function parseAnchorFlag(v: string, period: RefillPeriod, everyDays: number, what: string): number {
  const s = v.trim().toLowerCase();
  if (everyDays > 1) {
    const t = Date.parse(`${s}T00:00:00Z`);
    if (!/^\d{4}-\d{2}-\d{2}$/.test(s) || Number.isNaN(t) || new Date(t).toISOString().slice(0, 10) !== s) throw new UsageError(`${what}: ${JSON.stringify(v)} is not a date YYYY-MM-DD (the day every-N-days periods count from)`);
    return Math.floor(t / 86_400_000);
  }
  if (period === RefillPeriod.REFILL_PERIOD_WEEKLY && /^[a-z]+$/.test(s)) {
    const w = WEEKDAYS.indexOf(s.slice(0, 3));
    if (w >= 0) return w + 1;
  }
  return parseInt32(s, what);
}
