// Integer quota units and decimal ratios. No floating point touches a balance.
import { invalid } from "./errors.js";

export const MAX_UNITS = Number.MAX_SAFE_INTEGER;

/** Parses an int64 (string or number) into a safe integer, naming the field on error. */
export function parseUnits(v: string | number | bigint | undefined, field: string, opts: { min?: number; allowNegative?: boolean } = {}): number {
  if (v === undefined || v === "") return 0;
  const s = String(v).trim();
  if (!/^-?\d+$/.test(s)) throw invalid(field, `${JSON.stringify(s)} is not an integer`);
  const n = Number(s);
  if (!Number.isSafeInteger(n)) throw invalid(field, `${s} is out of range (|n| <= ${MAX_UNITS})`);
  const min = opts.min ?? (opts.allowNegative ? -MAX_UNITS : 0);
  if (n < min) throw invalid(field, n < 0 && !opts.allowNegative ? `must not be negative (got ${s})` : `must be >= ${min} (got ${s})`);
  return n;
}

/**
 * a + b, exactly, or INVALID_ARGUMENT naming `field` when the result would leave the range
 * of exact integers (|n| <= 2^53 − 1): THE guard of every counter and charge. Past it a JS
 * number silently drops units, so an operation that would get there is refused whole.
 */
export function addExact(a: number, b: number, field: string, what: string): number {
  const r = a + b;
  if (!Number.isSafeInteger(r)) {
    throw invalid(field, `${what} would be ${BigInt(a) + BigInt(b)}, past ${r < 0 ? "-" : ""}${MAX_UNITS} (2^53 − 1), the largest amount kept exactly; nothing was changed`);
  }
  return r;
}

/** a + b held within ±(2^53 − 1): for aggregates (usage buckets), which the ledger backs exactly. */
export function addSaturating(a: number, b: number): number {
  const r = a + b;
  return r > MAX_UNITS ? MAX_UNITS : r < -MAX_UNITS ? -MAX_UNITS : r;
}

/** The largest group price ratio, in ppm (1000.0). */
/** A group ratio of 1.0, in parts per million (also the ratio of an unknown group). */
export const DEFAULT_RATIO_PPM = 1_000_000;
export const MAX_RATIO_PPM = 1000 * 1_000_000;

/** "1", "0.8", "1.25" → parts per million. At most 6 fractional digits; 0 < r <= 1000. */
export function parseRatioPpm(input: string, field: string): number {
  const s = input.trim() === "" ? "1" : input.trim();
  const m = /^(\d{1,4})(?:\.(\d{1,6}))?$/.exec(s);
  if (!m) throw invalid(field, `${JSON.stringify(input)} is not a decimal like 1, 0.8 or 1.25 (at most 6 decimals)`);
  const ppm = Number(m[1]) * 1_000_000 + Number((m[2] ?? "").padEnd(6, "0"));
  if (ppm <= 0 || ppm > MAX_RATIO_PPM) throw invalid(field, `must be > 0 and <= 1000 (got ${s})`);
  return ppm;
}

/** parts per million → shortest decimal string. */
export function formatRatioPpm(ppm: number): string {
  const int = Math.floor(ppm / 1_000_000);
  const frac = (ppm % 1_000_000).toString().padStart(6, "0").replace(/0+$/, "");
  return frac ? `${int}.${frac}` : `${int}`;
}
