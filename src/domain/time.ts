// THE RFC 3339 timestamp parser (expiry in the service, the CLI's --since, the TUI form).
// Strict where Date.parse is lenient: "2027-02-30" is not rolled over to March 2, "T24:00:00"
// is not the next day, and the instant must lie in years 0001–9999 (what a protobuf
// Timestamp can hold) after the offset is applied. Imports nothing; callers make the error.

const SHAPE = /^(\d{4})-(\d{2})-(\d{2})[Tt ](\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,9}))?(?:([Zz])|([+-])(\d{2}):(\d{2}))$/;

/** 0001-01-01T00:00:00Z and 9999-12-31T23:59:59.999Z in epoch ms. */
export const MIN_TIMESTAMP_MS = -62135596800000;
export const MAX_TIMESTAMP_MS = 253402300799999;

function daysInMonth(year: number, month: number): number {
  if (month === 2) return (year % 4 === 0 && year % 100 !== 0) || year % 400 === 0 ? 29 : 28;
  return [4, 6, 9, 11].includes(month) ? 30 : 31;
}

export type Rfc3339Result = { ok: true; ms: number } | { ok: false; problem: string };

/**
 * Parses an RFC 3339 date-time ("2026-12-31T23:59:59Z", "2026-12-31T23:59:59.5+02:00").
 * Fractions beyond milliseconds are truncated. Leap seconds (":60") are refused.
 */
export function parseRfc3339(input: string): Rfc3339Result {
  const m = SHAPE.exec(input);
  if (!m) return { ok: false, problem: "is not an RFC 3339 time (2026-12-31T23:59:59Z)" };
  const [year, month, day, hour, minute, second] = m.slice(1, 7).map(Number) as [number, number, number, number, number, number];
  if (year < 1) return { ok: false, problem: "year must be 0001..9999" };
  if (month < 1 || month > 12) return { ok: false, problem: `month ${m[2]} is not 01..12` };
  const dim = daysInMonth(year, month);
  if (day < 1 || day > dim) return { ok: false, problem: `day ${m[3]} is not 01..${dim} in ${m[1]}-${m[2]}` };
  if (hour > 23) return { ok: false, problem: `hour ${m[4]} is not 00..23` };
  if (minute > 59) return { ok: false, problem: `minute ${m[5]} is not 00..59` };
  if (second > 59) return { ok: false, problem: `second ${m[6]} is not 00..59` };
  let offsetMin = 0;
  if (!m[8]) {
    const oh = Number(m[10]);
    const om = Number(m[11]);
    if (oh > 23 || om > 59) return { ok: false, problem: `offset ${m[9]}${m[10]}:${m[11]} is not within ±23:59` };
    offsetMin = (m[9] === "-" ? -1 : 1) * (oh * 60 + om);
  }
  const ms = Number((m[7] ?? "").padEnd(3, "0").slice(0, 3));
  const d = new Date(0);
  d.setUTCFullYear(year, month - 1, day);
  d.setUTCHours(hour, minute, second, ms);
  const t = d.getTime() - offsetMin * 60_000;
  if (t < MIN_TIMESTAMP_MS || t > MAX_TIMESTAMP_MS) return { ok: false, problem: "is outside years 0001..9999 (UTC)" };
  return { ok: true, ms: t };
}
