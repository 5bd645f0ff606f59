// Parsers for CLI option values. Each throws UsageError with a message that
// names what was wrong; range checks that the server owns (quota >= 0, expiry
// in the future, CIDR syntax, …) are left to the server so there is one rule.
// Pure except for the clock passed in.

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

/** "k=v" pairs into a map; "" alone clears. */
export function parseMeta(pairs: readonly string[]): Record<string, string> {
  const out: Record<string, string> = {};
  for (const p of pairs) {
    if (p === "" && pairs.length === 1) return {};
    const i = p.indexOf("=");
    if (i <= 0) throw new UsageError(`--meta: ${JSON.stringify(p)} is not key=value`);
    out[p.slice(0, i)] = p.slice(i + 1);
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
  if (/^\d{4}-\d{2}-\d{2}([Tt ]\d{2}:\d{2}(:\d{2}(\.\d+)?)?([Zz]|[+-]\d{2}:\d{2}))?$/.test(s)) {
    const t = Date.parse(s);
    if (Number.isFinite(t)) return new Date(t);
  }
  throw new UsageError(`--since: ${JSON.stringify(value)} is not a duration (24h, 7d) or an RFC 3339 time (2026-01-31T00:00:00Z)`);
}
