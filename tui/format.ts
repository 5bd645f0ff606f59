// Pure display helpers for the TUI. No I/O, no clock: callers pass `now`.
// (Kept local so the TUI does not depend on src/cli/format.ts being written in
// the same order; the labels match the product page: "Unlimited", "Never expires".)
import type { Quota } from "../src/gen/aisa/v1/types.js";

export const UNLIMITED = "Unlimited";
export const NEVER_EXPIRES = "Never expires";

/** How quota units convert to money for display (WhoAmI.quota_per_unit / currency). */
export interface Money {
  /** Units per currency unit, e.g. 500000 per USD. */
  readonly quotaPerUnit: number;
  /** ISO currency code, e.g. "USD". */
  readonly currency: string;
}

export const DEFAULT_MONEY: Money = { quotaPerUnit: 500_000, currency: "USD" };

const SYMBOLS: Readonly<Record<string, string>> = { USD: "$", EUR: "€", GBP: "£", CNY: "¥", JPY: "¥" };

/** Builds Money from WhoAmI's fields, falling back to the documented default. */
export function toMoney(quotaPerUnit: string | undefined, currency: string | undefined): Money {
  const qpu = Number(quotaPerUnit);
  return {
    quotaPerUnit: Number.isFinite(qpu) && qpu > 0 ? qpu : DEFAULT_MONEY.quotaPerUnit,
    currency: currency || DEFAULT_MONEY.currency,
  };
}

function withSymbol(text: string, currency: string, negative: boolean): string {
  const sym = SYMBOLS[currency];
  const sign = negative ? "-" : "";
  return sym ? `${sign}${sym}${text}` : `${sign}${text} ${currency}`;
}

/**
 * A currency amount. `compact` keeps it short for table cells ("$1.2k").
 * Amounts below one cent but above zero show as "<$0.01" rather than "$0.00".
 */
export function formatAmount(amount: number, currency: string, compact = false): string {
  const neg = amount < 0;
  const abs = Math.abs(amount);
  if (abs > 0 && abs < 0.005) return `<${withSymbol("0.01", currency, neg)}`;
  if (compact && abs >= 1_000_000) return withSymbol(`${trimZeros((abs / 1_000_000).toFixed(2))}M`, currency, neg);
  if (compact && abs >= 10_000) return withSymbol(`${trimZeros((abs / 1_000).toFixed(1))}k`, currency, neg);
  const text = abs.toLocaleString("en-US", { minimumFractionDigits: 2, maximumFractionDigits: 2 });
  return withSymbol(text, currency, neg);
}

function trimZeros(s: string): string {
  return s.includes(".") ? s.replace(/\.?0+$/, "") : s;
}

/** Units (an int64 decimal string or a number) as an approximate currency amount. */
export function unitsToAmount(units: string | number, money: Money): number {
  return Number(units) / money.quotaPerUnit;
}

/** "≈ $1.00" for a number of units. */
export function formatUnitsMoney(units: string | number, money: Money, compact = false): string {
  return `≈ ${formatAmount(unitsToAmount(units, money), money.currency, compact)}`;
}

/** Integer with thousands separators: "1,250,000". Works on int64 strings of any size. */
export function formatInteger(units: string | number): string {
  const s = String(units);
  const neg = s.startsWith("-");
  const digits = neg ? s.slice(1) : s;
  if (!/^\d+$/.test(digits)) return s;
  return (neg ? "-" : "") + digits.replace(/\B(?=(\d{3})+(?!\d))/g, ",");
}

/** The Remaining / Total cell: "Unlimited" or "≈ $0.50 / $1.00". */
export function formatQuota(quota: Quota | undefined, money: Money): string {
  if (!quota || quota.unlimited) return UNLIMITED;
  const rem = formatAmount(unitsToAmount(quota.remaining, money), money.currency, true);
  const tot = formatAmount(unitsToAmount(quota.total, money), money.currency, true);
  return `≈ ${rem} / ${tot}`;
}

const MINUTE = 60_000;
const HOUR = 60 * MINUTE;
const DAY = 24 * HOUR;

/** Compact relative time: "in 29d", "3h ago", "just now". */
export function formatRelative(at: Date, now: number): string {
  const delta = at.getTime() - now;
  const abs = Math.abs(delta);
  if (abs < MINUTE) return "just now";
  let text: string;
  if (abs < HOUR) text = `${Math.floor(abs / MINUTE)}m`;
  else if (abs < DAY) text = `${Math.floor(abs / HOUR)}h`;
  else if (abs < 365 * DAY) text = `${Math.floor(abs / DAY)}d`;
  else text = `${Math.floor(abs / (365 * DAY))}y`;
  return delta > 0 ? `in ${text}` : `${text} ago`;
}

/** "2026-12-27" (UTC). */
export function formatDate(at: Date | undefined): string {
  return at ? at.toISOString().slice(0, 10) : "—";
}

/** "2026-12-27 10:00:00Z" (UTC). */
export function formatDateTime(at: Date | undefined): string {
  return at ? `${at.toISOString().slice(0, 19).replace("T", " ")}Z` : "—";
}

/** The Expires cell: "Never expires", else relative + absolute ("in 29d · 2026-12-27"). */
export function formatExpires(at: Date | undefined, now: number): string {
  if (!at) return NEVER_EXPIRES;
  return `${formatRelative(at, now)} · ${formatDate(at)}`;
}

export function isExpired(at: Date | undefined, now: number): boolean {
  return at !== undefined && at.getTime() <= now;
}

/**
 * A restriction list cell ("Unlimited" when empty). When the items do not fit
 * in `width`, as many as fit are shown followed by "+N".
 */
export function formatList(items: readonly string[], width: number): string {
  if (items.length === 0) return UNLIMITED;
  const full = items.join(", ");
  if (full.length <= width) return full;
  for (let n = items.length - 1; n >= 1; n--) {
    const text = `${items.slice(0, n).join(", ")} +${items.length - n}`;
    if (text.length <= width) return text;
  }
  return `${truncate(items[0] ?? "", Math.max(1, width - 4))} +${items.length - 1}`;
}

/** Cuts a string to `width` characters with an ellipsis. */
export function truncate(s: string, width: number): string {
  if (width <= 0) return "";
  return s.length <= width ? s : `${s.slice(0, Math.max(0, width - 1))}…`;
}

/** A per-second rate: "0", "0.25", "10.5", "1,250". */
export function formatRate(n: number): string {
  if (!Number.isFinite(n) || n <= 0) return "0";
  if (n >= 100) return formatInteger(Math.round(n));
  if (n >= 10) return trimZeros(n.toFixed(1));
  return trimZeros(n.toFixed(2)) === "0" ? "<0.01" : trimZeros(n.toFixed(2));
}

/**
 * A small currency amount for rates, with enough digits to be non-zero:
 * "$0.0025", "$1.20", "<$0.000001". (formatAmount rounds to cents.)
 */
export function formatSmallAmount(amount: number, currency: string): string {
  if (!Number.isFinite(amount) || amount === 0) return withSymbol("0", currency, false);
  const abs = Math.abs(amount);
  if (abs >= 0.01) return formatAmount(amount, currency, true);
  if (abs < 0.000001) return `<${withSymbol("0.000001", currency, amount < 0)}`;
  // Two significant digits; String() keeps decimal notation down to 1e-6.
  return withSymbol(String(Number(abs.toPrecision(2))), currency, amount < 0);
}

/** "≈ $0.0025" for a (fractional) number of units. */
export function formatUnitsMoneyRate(units: number, money: Money): string {
  return `≈ ${formatSmallAmount(units / money.quotaPerUnit, money.currency)}`;
}
