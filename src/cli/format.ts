// Pure display helpers with the API Keys page's labels ("Enabled", "Unlimited",
// "Never expires", …). Shared by the CLI and the TUI: no console, no I/O, no
// clock (callers pass `now`). All times are shown in UTC.
import { KeyStatus, RefillPeriod, type Quota, type RateLimits } from "../gen/aisa/v1/types.js";
import { terminalSafe } from "../domain/text.js";

export const UNLIMITED = "Unlimited";
export const NEVER_EXPIRES = "Never expires";

type IntLike = string | number | bigint;

function toBig(v: IntLike | undefined): bigint {
  if (v === undefined || v === "") return 0n;
  if (typeof v === "bigint") return v;
  if (typeof v === "number") return BigInt(Math.trunc(v));
  const s = v.trim();
  return /^-?\d+$/.test(s) ? BigInt(s) : 0n;
}

/** 1234567 → "1,234,567" (exact for any int64). */
export function formatAmount(units: IntLike): string {
  const n = toBig(units);
  const neg = n < 0n;
  const digits = (neg ? -n : n).toString().replace(/\B(?=(\d{3})+(?!\d))/g, ",");
  return neg ? `-${digits}` : digits;
}

const SYMBOLS: Record<string, string> = { USD: "$", EUR: "€", GBP: "£", JPY: "¥", CNY: "¥" };

/** |a / b| rounded half up to `decimals` places, as a decimal string (b > 0). */
function divToDecimal(a: bigint, b: bigint, decimals: number): string {
  const scale = 10n ** BigInt(decimals);
  const q = (a * scale * 2n + b) / (2n * b);
  if (decimals === 0) return q.toString();
  const s = q.toString().padStart(decimals + 1, "0");
  return `${s.slice(0, -decimals)}.${s.slice(-decimals)}`;
}

/**
 * The currency amount of `units`, e.g. (750000, 500000, "USD") → "≈ $1.50".
 * Two decimals, more (up to 6) for tiny non-zero amounts. "" when
 * quotaPerUnit is not positive (nothing sensible to show).
 */
export function formatUnits(units: IntLike, quotaPerUnit: IntLike, currency: string): string {
  const money = formatMoney(units, quotaPerUnit, currency);
  return money ? `≈ ${money}` : "";
}

/** Like formatUnits without the "≈ " prefix: "$1.50", "-$0.25", "12.00 CHF". "" if quotaPerUnit <= 0. */
export function formatMoney(units: IntLike, quotaPerUnit: IntLike, currency: string): string {
  const qpu = toBig(quotaPerUnit);
  if (qpu <= 0n) return "";
  const n = toBig(units);
  const abs = n < 0n ? -n : n;
  let text = divToDecimal(abs, qpu, 2);
  for (let d = 3; d <= 6 && abs !== 0n && /^0\.0+$/.test(text); d++) text = divToDecimal(abs, qpu, d);
  const [int = "0", frac] = text.split(".");
  const grouped = `${int.replace(/\B(?=(\d{3})+(?!\d))/g, ",")}${frac !== undefined ? `.${frac}` : ""}`;
  const sign = n < 0n ? "-" : "";
  const code = currency.trim().toUpperCase();
  const symbol = SYMBOLS[code];
  if (symbol) return `${sign}${symbol}${grouped}`;
  return code ? `${sign}${grouped} ${code}` : `${sign}${grouped}`;
}

/** "750,000 (≈ $1.50)", or just "750,000" when no conversion is known. */
export function formatBalance(units: IntLike, quotaPerUnit: IntLike, currency: string): string {
  const money = formatUnits(units, quotaPerUnit, currency);
  return money ? `${formatAmount(units)} (${money})` : formatAmount(units);
}

/**
 * The page's "Remaining / Total Quota": "Unlimited", or
 * "375,000 / 750,000 (≈ $0.75 / $1.50)".
 */
export function formatQuota(quota: Quota | undefined, quotaPerUnit: IntLike, currency: string): string {
  if (!quota || quota.unlimited) return UNLIMITED;
  const units = `${formatAmount(quota.remaining)} / ${formatAmount(quota.total)}`;
  const a = formatMoney(quota.remaining, quotaPerUnit, currency);
  const b = formatMoney(quota.total, quotaPerUnit, currency);
  return a && b ? `${units} (≈ ${a} / ${b})` : units;
}

/** "2026-12-01 10:00 UTC"; `none` when unset. */
export function formatTime(date: Date | undefined, none = "-"): string {
  if (!date || Number.isNaN(date.getTime())) return none;
  const iso = date.toISOString();
  return `${iso.slice(0, 10)} ${iso.slice(11, 16)} UTC`;
}

/** A short distance, rounded to its largest unit: "45s", "12m", "5h", "3d", "2mo", "1y". */
export function formatDuration(ms: number): string {
  const s = Math.round(Math.abs(ms) / 1000);
  if (s < 60) return `${s}s`;
  const m = Math.round(s / 60);
  if (m < 60) return `${m}m`;
  const h = Math.round(s / 3600);
  if (h < 24) return `${h}h`;
  const d = Math.round(s / 86400);
  if (d < 60) return `${d}d`;
  if (d < 730) return `${Math.round(d / 30)}mo`;
  return `${Math.round(d / 365)}y`;
}

/** "in 3d" / "3d ago" / "just now". */
export function formatRelative(date: Date, now: Date | number): string {
  const diff = date.getTime() - (typeof now === "number" ? now : now.getTime());
  if (Math.abs(diff) < 1000) return "just now";
  return diff > 0 ? `in ${formatDuration(diff)}` : `${formatDuration(diff)} ago`;
}

/** The page's Expiration Time: "Never expires", "in 3d (2026-12-01 10:00 UTC)", "expired 2h ago (…)". */
export function formatExpiry(date: Date | undefined, now: Date | number): string {
  if (!date) return NEVER_EXPIRES;
  const t = typeof now === "number" ? now : now.getTime();
  if (date.getTime() <= t) return `expired ${formatDuration(t - date.getTime())} ago (${formatTime(date)})`;
  return `${formatRelative(date, t)} (${formatTime(date)})`;
}

/** True when the key has an expiry at or before `now`. */
export function isExpired(date: Date | undefined, now: Date | number): boolean {
  return !!date && date.getTime() <= (typeof now === "number" ? now : now.getTime());
}

/** Last used: "never" or "5m ago (2026-… UTC)". */
export function formatLastUsed(date: Date | undefined, now: Date | number): string {
  if (!date) return "never";
  return `${formatRelative(date, now)} (${formatTime(date)})`;
}

/** The page's Status: "Enabled" / "Disabled". */
export function formatStatus(s: KeyStatus): string {
  switch (s) {
    case KeyStatus.KEY_STATUS_ENABLED:
      return "Enabled";
    case KeyStatus.KEY_STATUS_DISABLED:
      return "Disabled";
    default:
      return "Unknown";
  }
}

/** The page's Available Models: "Unlimited" (all models) or "a, b". */
export function maskedModels(models: readonly string[] | undefined): string {
  return models && models.length > 0 ? models.join(", ") : UNLIMITED;
}

/** The page's IP Restrictions: "Unlimited" (any address) or "10.0.0.0/8, 2001:db8::/32". */
export function maskedIps(ips: readonly string[] | undefined): string {
  return ips && ips.length > 0 ? ips.join(", ") : UNLIMITED;
}

/** "None" / "Daily" / "Weekly" / "Monthly". */
export function formatRefill(p: RefillPeriod): string {
  switch (p) {
    case RefillPeriod.REFILL_PERIOD_DAILY:
      return "Daily";
    case RefillPeriod.REFILL_PERIOD_WEEKLY:
      return "Weekly";
    case RefillPeriod.REFILL_PERIOD_MONTHLY:
      return "Monthly";
    default:
      return "None";
  }
}

/** "60 rpm · 10,000 tpm · 4 concurrent", or "None". */
export function formatLimits(l: RateLimits | undefined): string {
  if (!l) return "None";
  const parts: string[] = [];
  if (l.rpm) parts.push(`${formatAmount(l.rpm)} rpm`);
  if (l.tpm) parts.push(`${formatAmount(l.tpm)} tpm`);
  if (l.concurrency) parts.push(`${formatAmount(l.concurrency)} concurrent`);
  return parts.length ? parts.join(" · ") : "None";
}

/** "env=prod, team=ml", or "-" when empty. */
export function formatMetadata(md: Record<string, string> | undefined): string {
  const entries = Object.entries(md ?? {}).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
  return entries.length ? entries.map(([k, v]) => `${k}=${v}`).join(", ") : "-";
}

/** Display width of a string (code points; good enough for the labels used here). */
export function textWidth(s: string): number {
  return [...s].length;
}

function pad(s: string, width: number): string {
  return s + " ".repeat(Math.max(0, width - textWidth(s)));
}

/** An aligned table: header row, then rows; columns separated by two spaces. No trailing spaces. */
export function renderTable(headers: readonly string[], rows0: readonly (readonly string[])[]): string {
  // Every cell is made terminal-safe (a stored name with ESC or a newline shows as `\x1b`, `\n`).
  const rows = rows0.map((r) => r.map(terminalSafe));
  const widths = headers.map((h, i) => Math.max(textWidth(h), ...rows.map((r) => textWidth(r[i] ?? ""))));
  const line = (cells: readonly string[]) =>
    cells
      .map((c, i) => (i === cells.length - 1 ? c : pad(c, widths[i] ?? 0)))
      .join("  ")
      .trimEnd();
  return [line(headers), ...rows.map(line)].join("\n") + "\n";
}

/** A key-value view: "Label:  value" lines with the values aligned. */
export function renderFields(fields0: readonly (readonly [string, string])[]): string {
  const fields = fields0.map(([k, v]) => [k, terminalSafe(v)] as const);
  const width = Math.max(0, ...fields.map(([k]) => textWidth(k) + 1));
  return fields.map(([k, v]) => `${pad(`${k}:`, width)}  ${v}`.trimEnd()).join("\n") + "\n";
}
