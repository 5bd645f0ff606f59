// Expiry input: "never" (or empty), "1h", "1d", "1mo", or an RFC 3339 time.
// Pure: `now` is passed in. The quick options are the API Keys page's
// "Never expires / One hour / One day / One month".
import { invalid } from "./errors.js";
import { parseRfc3339 } from "./time.js";
import { quoteText } from "./text.js";
import { EXPIRY_AMOUNT_MAX } from "./limits.js";

const RFC3339_SHAPE = /^\d{4}-\d{2}-\d{2}[Tt ]/;

/** Adds calendar months in UTC, clamping the day (Jan 31 + 1mo = Feb 28/29). */
export function addMonthsUtc(ms: number, months: number): number {
  const d = new Date(ms);
  const day = d.getUTCDate();
  d.setUTCDate(1);
  d.setUTCMonth(d.getUTCMonth() + months);
  const last = new Date(Date.UTC(d.getUTCFullYear(), d.getUTCMonth() + 1, 0)).getUTCDate();
  d.setUTCDate(Math.min(day, last));
  return d.getTime();
}

/** Returns the expiry in epoch ms, or null for never. Throws INVALID_ARGUMENT naming `field`. */
export function parseExpiry(input: string, now: number, field = "expires"): number | null {
  const s = input.trim();
  if (s === "" || s.toLowerCase() === "never") return null;
  const rel = /^(\d+)(h|d|mo|m|w)$/.exec(s);
  if (rel) {
    const n = Number(rel[1]);
    if (n <= 0) throw invalid(field, `${quoteText(s)} must be a positive duration`);
    // A duration, just too long: say so (not "not a duration").
    if (!(n <= EXPIRY_AMOUNT_MAX)) {
      throw invalid(field, `${quoteText(s)} is too long: at most ${EXPIRY_AMOUNT_MAX} of a unit (${EXPIRY_AMOUNT_MAX}d, ${EXPIRY_AMOUNT_MAX}mo); for a later time give an RFC 3339 time`);
    }
    switch (rel[2]) {
      case "m":
        return now + n * 60_000;
      case "h":
        return now + n * 3_600_000;
      case "d":
        return now + n * 86_400_000;
      case "w":
        return now + n * 7 * 86_400_000;
      default:
        return addMonthsUtc(now, n);
    }
  }
  if (!RFC3339_SHAPE.test(s)) {
    throw invalid(field, `${quoteText(s)} is not "never", a duration (1h, 1d, 1mo) or an RFC 3339 time (2026-12-31T23:59:59Z)`);
  }
  const r = parseRfc3339(s);
  if (!r.ok) throw invalid(field, `${quoteText(s)}: ${r.problem}`);
  const t = r.ms;
  if (t <= now) throw invalid(field, `${quoteText(s)} is in the past`);
  return t;
}
