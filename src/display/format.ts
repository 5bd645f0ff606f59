// THE display rules of the API Keys page, shared by the CLI (src/cli/views.ts) and the TUI
// (tui/): the page's labels ("Enabled", "Unlimited", "Never expires", …), money, quotas,
// times, column widths. Pure: no console, no I/O, no clock (callers pass `now`). All times
// are shown in UTC. Money is exact integer arithmetic (bigint) everywhere: no float ever
// decides what a balance or a quota reads as.
import { RefillPeriod, type Key, type Quota, type RateLimits } from "../gen/aisa/v1/types.js";
import { KeyStatus } from "../gen/aisa/v1/types.js";
import { terminalSafe } from "../domain/text.js";
import { isExpiredAt, keyUsability, spendableUnits, USABILITY_LABEL, type KeyUsability } from "../domain/keyView.js";

export const UNLIMITED = "Unlimited";
export const NEVER_EXPIRES = "Never expires";

export type IntLike = string | number | bigint;

function toBig(v: IntLike | undefined): bigint {
  if (v === undefined || v === "") return 0n;
  if (typeof v === "bigint") return v;
  if (typeof v === "number") return Number.isFinite(v) ? BigInt(Math.trunc(v)) : 0n;
  const s = v.trim();
  return /^-?\d+$/.test(s) ? BigInt(s) : 0n;
}

function group3(digits: string): string {
  return digits.replace(/\B(?=(\d{3})+(?!\d))/g, ",");
}

/** 1234567 → "1,234,567" (exact for any int64). */
export function formatInteger(units: IntLike): string {
  const n = toBig(units);
  const neg = n < 0n;
  const digits = group3((neg ? -n : n).toString());
  return neg ? `-${digits}` : digits;
}

// ---- money ------------------------------------------------------------------------------

/** How quota units convert to money for display (WhoAmI.quota_per_unit / currency). */
export interface Money {
  /** Units per currency unit, e.g. 500000 per USD. */
  readonly quotaPerUnit: IntLike;
  /** ISO currency code, e.g. "USD". */
  readonly currency: string;
}

export const DEFAULT_MONEY: Money = { quotaPerUnit: 500_000, currency: "USD" };

/** Money from WhoAmI's fields, falling back to the documented default (500000 per USD). */
export function toMoney(quotaPerUnit: string | undefined, currency: string | undefined): Money {
  const qpu = toBig(quotaPerUnit);
  return { quotaPerUnit: qpu > 0n ? qpu.toString() : DEFAULT_MONEY.quotaPerUnit, currency: currency || DEFAULT_MONEY.currency };
}

export const CURRENCY_SYMBOLS: Readonly<Record<string, string>> = { USD: "$", EUR: "€", GBP: "£", JPY: "¥", CNY: "¥" };

/** a / b rounded half up (a >= 0, b > 0). */
function divRound(a: bigint, b: bigint): bigint {
  return (a * 2n + b) / (2n * b);
}

/** `q` hundredths-or-finer as a decimal string with `decimals` places. */
function fixed(q: bigint, decimals: number): string {
  if (decimals === 0) return group3(q.toString());
  const s = q.toString().padStart(decimals + 1, "0");
  return `${group3(s.slice(0, -decimals))}.${s.slice(-decimals)}`;
}

/**
 * THE money rule, for `abs` units (>= 0) at `qpu` units per currency unit:
 *  - a cent or more: two decimals, rounded half up ("1,234.50"); with `compact`,
 *    10,000 and more as "12.3k", a million and more as "1.25M";
 *  - below a cent but not zero: two significant digits, at most six decimals, no trailing
 *    zeros ("0.003", "0.0014", "0.000002") — so 1,500 and 3,000 units read "0.003" and "0.006",
 *    never one of them as a rounded cent;
 *  - below 0.000001: "<0.000001"; zero: "0.00".
 */
function moneyDigits(abs: bigint, qpu: bigint, compact: boolean): string {
  if (abs === 0n) return "0.00";
  if (abs * 100n >= qpu) {
    if (compact && abs >= qpu * 1_000_000n) return `${trimZeros(fixed(divRound(abs * 100n, qpu * 1_000_000n), 2))}M`;
    if (compact && abs >= qpu * 10_000n) return `${trimZeros(fixed(divRound(abs * 10n, qpu * 1000n), 1))}k`;
    return fixed(divRound(abs * 100n, qpu), 2);
  }
  for (let d = 3; d <= 6; d++) {
    const q = divRound(abs * 10n ** BigInt(d), qpu);
    if (q >= 10n || d === 6) {
      if (q === 0n) return "<0.000001";
      // Two significant digits reached (or six decimals): cut the zeros a sub-cent amount does not need.
      return q >= 10n ** BigInt(d - 2) ? fixed(divRound(abs * 100n, qpu), 2) : trimZeros(fixed(q, d));
    }
  }
  return "0.00";
}

function trimZeros(s: string): string {
  return s.includes(".") ? s.replace(/\.?0+$/, "") : s;
}

export interface MoneyOptions {
  /** Short table-cell form: "$12.3k", "$1.25M". */
  readonly compact?: boolean;
}

/** The currency amount of `units`: "$1.50", "-$0.0014", "12.00 CHF", "$0.003". "" when quotaPerUnit <= 0. */
export function formatMoney(units: IntLike, quotaPerUnit: IntLike, currency: string, opts: MoneyOptions = {}): string {
  const qpu = toBig(quotaPerUnit);
  if (qpu <= 0n) return "";
  const n = toBig(units);
  const text = moneyDigits(n < 0n ? -n : n, qpu, opts.compact === true);
  const less = text.startsWith("<");
  const body = less ? text.slice(1) : text;
  const sign = n < 0n ? "-" : "";
  const code = currency.trim().toUpperCase();
  const symbol = CURRENCY_SYMBOLS[code];
  const amount = symbol ? `${sign}${symbol}${body}` : code ? `${sign}${body} ${code}` : `${sign}${body}`;
  return less ? `<${amount}` : amount;
}

/** "≈ $1.50" — an amount of units as money ("" when no conversion is known). */
export function formatUnits(units: IntLike, quotaPerUnit: IntLike, currency: string, opts: MoneyOptions = {}): string {
  const money = formatMoney(units, quotaPerUnit, currency, opts);
  return money ? `≈ ${money}` : "";
}

/** formatUnits with a Money. */
export function formatUnitsMoney(units: IntLike, money: Money, compact = false): string {
  return formatUnits(units, money.quotaPerUnit, money.currency, { compact });
}

/**
 * A fractional number of units (a per-second rate) as money, by the same rule: the rate is
 * scaled to micro-units and rounded once, then formatted exactly. "≈ $0.0025".
 */
export function formatUnitsMoneyRate(units: number, money: Money): string {
  if (!Number.isFinite(units)) return formatUnitsMoney(0, money);
  const micro = BigInt(Math.round(units * 1_000_000));
  return formatUnits(micro, toBig(money.quotaPerUnit) * 1_000_000n, money.currency, { compact: true });
}

/** "750,000 (≈ $1.50)", or just "750,000" when no conversion is known. */
export function formatBalance(units: IntLike, quotaPerUnit: IntLike, currency: string): string {
  const money = formatUnits(units, quotaPerUnit, currency);
  return money ? `${formatInteger(units)} (${money})` : formatInteger(units);
}

// ---- quota ------------------------------------------------------------------------------

/** The units a key can still spend (remaining minus open reservations), exact. */
export function spendable(quota: Quota): bigint {
  return spendableUnits(toBig(quota.remaining), toBig(quota.reserved));
}

function reservedOf(quota: Quota): bigint {
  return toBig(quota.reserved);
}

/**
 * The page's "Quota" (remaining / total), where remaining is what can still be SPENT —
 * remaining minus what open reservations hold (Check admits against that) — with the
 * reserved part named: "Unlimited", "375,000 / 750,000 (≈ $0.75 / $1.50)",
 * "0 / 3,000 (≈ $0.00 / $0.006) · 3,000 reserved".
 */
export function formatQuota(quota: Quota | undefined, quotaPerUnit: IntLike, currency: string): string {
  if (!quota || quota.unlimited) return quota && reservedOf(quota) > 0n ? `${UNLIMITED} · ${formatInteger(reservedOf(quota))} reserved` : UNLIMITED;
  const left = spendable(quota);
  const units = `${formatInteger(left)} / ${formatInteger(quota.total)}`;
  const a = formatMoney(left, quotaPerUnit, currency);
  const b = formatMoney(quota.total, quotaPerUnit, currency);
  const text = a && b ? `${units} (≈ ${a} / ${b})` : units;
  return reservedOf(quota) > 0n ? `${text} · ${formatInteger(reservedOf(quota))} reserved` : text;
}

/** The same for a narrow table cell: "≈ $0.50 / $1.00", "≈ $0.00 / $0.01 (R)" when some is reserved. */
export function formatQuotaCell(quota: Quota | undefined, money: Money): string {
  if (!quota || quota.unlimited) return UNLIMITED;
  const rem = formatMoney(spendable(quota), money.quotaPerUnit, money.currency, { compact: true });
  const tot = formatMoney(quota.total, money.quotaPerUnit, money.currency, { compact: true });
  return `≈ ${rem} / ${tot}${reservedOf(quota) > 0n ? " (R)" : ""}`;
}

// ---- times ------------------------------------------------------------------------------

/** "2026-12-01 10:00 UTC"; `none` when unset. */
export function formatTime(date: Date | undefined, none = "-"): string {
  if (!date || Number.isNaN(date.getTime())) return none;
  const iso = date.toISOString();
  return `${iso.slice(0, 10)} ${iso.slice(11, 16)} UTC`;
}

/** "2026-12-01 10:00" (UTC, for table cells); `none` when unset. */
export function formatTimeShort(date: Date | undefined, none = "—"): string {
  if (!date || Number.isNaN(date.getTime())) return none;
  const iso = date.toISOString();
  return `${iso.slice(0, 10)} ${iso.slice(11, 16)}`;
}

/** "2026-12-27 10:00:00Z" (UTC, to the second). */
export function formatDateTime(at: Date | undefined): string {
  return at ? `${at.toISOString().slice(0, 19).replace("T", " ")}Z` : "—";
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
  if (isExpired(date, t)) return `expired ${formatDuration(t - date.getTime())} ago (${formatTime(date)})`;
  return `${formatRelative(date, t)} (${formatTime(date)})`;
}

/** The Expiration Time table cell: "Never expires", "in 29d · 2026-12-27 10:00", "expired 2026-…". */
export function formatExpiryCell(date: Date | undefined, now: number): string {
  if (!date) return NEVER_EXPIRES;
  return isExpired(date, now) ? `expired ${formatTimeShort(date)}` : `${formatRelative(date, now)} · ${formatTimeShort(date)}`;
}

/** True when the key has an expiry at or before `now` (src/domain/keyView.ts). */
export function isExpired(date: Date | undefined, now: Date | number): boolean {
  return isExpiredAt(date?.getTime(), typeof now === "number" ? now : now.getTime());
}

/** Last used: "never" or "5m ago (2026-… UTC)". */
export function formatLastUsed(date: Date | undefined, now: Date | number): string {
  if (!date) return "never";
  return `${formatRelative(date, now)} (${formatTime(date)})`;
}

// ---- key fields -------------------------------------------------------------------------

/** Whether a key can be used at `now`: expired keys are "expired" whatever their stored status. */
export function keyUsabilityOf(k: Pick<Key, "status" | "expiresAt" | "expired">, now: number): KeyUsability {
  return keyUsability(k.status === KeyStatus.KEY_STATUS_ENABLED, k.expired || isExpired(k.expiresAt, now));
}

/** The page's Status: "Enabled" / "Disabled" / "Expired" (cannot be used). */
export function formatKeyStatus(k: Pick<Key, "status" | "expiresAt" | "expired">, now: number): string {
  return USABILITY_LABEL[keyUsabilityOf(k, now)];
}

/** The TUI's colour per status. */
export const USABILITY_COLOR: Readonly<Record<KeyUsability, string>> = { enabled: "green", disabled: "red", expired: "yellow" };

/** A stored status alone: "Enabled" / "Disabled". */
export function formatStatus(s: KeyStatus): string {
  switch (s) {
    case KeyStatus.KEY_STATUS_ENABLED:
      return "Enabled";
    case KeyStatus.KEY_STATUS_DISABLED:
      return "Disabled";
    case KeyStatus.KEY_STATUS_EXPIRED:
      return "Expired";
    default:
      return "Unknown";
  }
}

/** A model list: "Unlimited" (all models) or "a, b". */
export function maskedModels(models: readonly string[] | undefined): string {
  return models && models.length > 0 ? models.join(", ") : UNLIMITED;
}

/** The key's models as Check applies them (key ∩ group): "Unlimited", "a, b", "None (…)". */
export function effectiveModelsText(k: Pick<Key, "models" | "effectiveModels" | "modelsRestricted">): string {
  if (!k.modelsRestricted) return UNLIMITED;
  return k.effectiveModels.length > 0 ? k.effectiveModels.join(", ") : "None (key and group lists share no model)";
}

/**
 * The page's Available Models with where each limit comes from:
 * "Unlimited", "gpt-4o (key)", "gpt-4o-mini (group default)", "gpt-4o (key ∩ group prod)".
 */
export function availableModels(k: Pick<Key, "models" | "effectiveModels" | "modelsRestricted" | "groupModels" | "group">): string {
  const text = effectiveModelsText(k);
  if (!k.modelsRestricted) return text;
  const byKey = k.models.length > 0;
  const byGroup = k.groupModels.length > 0;
  const from = byKey && byGroup ? `key ∩ group ${k.group}` : byGroup ? `group ${k.group}` : "key";
  return `${text} (${from})`;
}

/** The page's IP Whitelist: "Unlimited" (any address) or "10.0.0.0/8, 2001:db8::/32". */
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
  if (l.rpm) parts.push(`${formatInteger(l.rpm)} rpm`);
  if (l.tpm) parts.push(`${formatInteger(l.tpm)} tpm`);
  if (l.concurrency) parts.push(`${formatInteger(l.concurrency)} concurrent`);
  return parts.length ? parts.join(" · ") : "None";
}

/** "env=prod, team=ml", or "-" when empty. */
export function formatMetadata(md: Record<string, string> | undefined): string {
  const entries = Object.entries(md ?? {}).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
  return entries.length ? entries.map(([k, v]) => `${k}=${v}`).join(", ") : "-";
}

/** A per-second rate: "0", "0.25", "10.5", "1,250". */
export function formatRate(n: number): string {
  if (!Number.isFinite(n) || n <= 0) return "0";
  if (n >= 100) return formatInteger(Math.round(n));
  if (n >= 10) return trimZeros(n.toFixed(1));
  return trimZeros(n.toFixed(2)) === "0" ? "<0.01" : trimZeros(n.toFixed(2));
}

// ---- widths -----------------------------------------------------------------------------

const segmenter = new Intl.Segmenter("en", { granularity: "grapheme" });
const ZERO_WIDTH = /^[\p{Mn}\p{Me}\p{Cf}]+$/u;
const EMOJI_PRESENTATION = /\p{Emoji_Presentation}|\p{Extended_Pictographic}\uFE0F/u;

/** East Asian Wide and Fullwidth ranges (the ones terminals draw two cells wide). */
function isWide(cp: number): boolean {
  return (
    (cp >= 0x1100 && cp <= 0x115f) ||
    (cp >= 0x2e80 && cp <= 0x303e) ||
    (cp >= 0x3041 && cp <= 0x33ff) ||
    (cp >= 0x3400 && cp <= 0x4dbf) ||
    (cp >= 0x4e00 && cp <= 0x9fff) ||
    (cp >= 0xa000 && cp <= 0xa4cf) ||
    (cp >= 0xa960 && cp <= 0xa97f) ||
    (cp >= 0xac00 && cp <= 0xd7a3) ||
    (cp >= 0xf900 && cp <= 0xfaff) ||
    (cp >= 0xfe10 && cp <= 0xfe19) ||
    (cp >= 0xfe30 && cp <= 0xfe6f) ||
    (cp >= 0xff00 && cp <= 0xff60) ||
    (cp >= 0xffe0 && cp <= 0xffe6) ||
    (cp >= 0x1b000 && cp <= 0x1b2ff) ||
    (cp >= 0x1f200 && cp <= 0x1f2ff) ||
    (cp >= 0x20000 && cp <= 0x3fffd)
  );
}

function graphemeWidth(g: string): number {
  if (ZERO_WIDTH.test(g)) return 0;
  if (EMOJI_PRESENTATION.test(g)) return 2;
  return isWide(g.codePointAt(0) ?? 0) ? 2 : 1;
}

function isAscii(s: string): boolean {
  for (let i = 0; i < s.length; i++) if (s.charCodeAt(i) > 0x7e) return false;
  return true;
}

/** Terminal columns of `s` (graphemes; CJK and emoji take two columns, marks none). */
export function textWidth(s: string): number {
  if (isAscii(s)) return s.length;
  let w = 0;
  for (const { segment } of segmenter.segment(s)) w += graphemeWidth(segment);
  return w;
}

/** Cuts `s` to at most `width` columns, ending in "…" when cut. */
export function truncate(s: string, width: number): string {
  if (width <= 0) return "";
  if (textWidth(s) <= width) return s;
  let out = "";
  let w = 0;
  for (const { segment } of segmenter.segment(s)) {
    const gw = graphemeWidth(segment);
    if (w + gw > width - 1) break;
    out += segment;
    w += gw;
  }
  return `${out}…`;
}

/** Pads `s` with spaces to `width` columns. */
export function padEnd(s: string, width: number): string {
  return s + " ".repeat(Math.max(0, width - textWidth(s)));
}

/** Cuts or pads `s` to exactly `width` columns. */
export function fit(s: string, width: number): string {
  return padEnd(truncate(s, width), width);
}

/**
 * A restriction list cell ("Unlimited" when empty). When the items do not fit in `width`, as
 * many as fit are shown followed by "+N".
 */
export function formatList(items: readonly string[], width: number): string {
  if (items.length === 0) return UNLIMITED;
  const full = items.join(", ");
  if (textWidth(full) <= width) return full;
  for (let n = items.length - 1; n >= 1; n--) {
    const text = `${items.slice(0, n).join(", ")} +${items.length - n}`;
    if (textWidth(text) <= width) return text;
  }
  return `${truncate(items[0] ?? "", Math.max(1, width - 4))} +${items.length - 1}`;
}

// ---- tables -----------------------------------------------------------------------------

export interface TableOptions {
  /** Terminal width to fit the table in (undefined = no limit, e.g. output to a pipe). */
  readonly width?: number;
  /** Columns that may be cut to fit (default: every column but the first). Never cut below their header. */
  readonly shrinkable?: readonly number[];
  /** Columns left out, in this order, when cutting is not enough (default: none). */
  readonly drop?: readonly number[];
}

const MIN_CELL = 8;

/**
 * An aligned table: header row, then rows; columns separated by two spaces. No trailing
 * spaces. Widths are terminal columns (CJK and emoji count two). With `width`, the widest
 * shrinkable columns are cut (with "…") until a line fits.
 */
export function renderTable(headers: readonly string[], rows0: readonly (readonly string[])[], opts: TableOptions = {}): string {
  // Every cell is made terminal-safe (a stored name with ESC or a newline shows as `\x1b`, `\n`).
  const rows = rows0.map((r) => r.map(terminalSafe));
  const widths = headers.map((h, i) => Math.max(textWidth(h), ...rows.map((r) => textWidth(r[i] ?? ""))));
  if (opts.width !== undefined && opts.width > 0) {
    // Leave out whole columns (least important first) while even their floors do not fit.
    const floorOf = (i: number) => ((opts.shrinkable ?? headers.map((_, j) => j).slice(1)).includes(i) ? Math.max(MIN_CELL, textWidth(headers[i] ?? "")) : (widths[i] ?? 0));
    const keep = headers.map((_, i) => i);
    const minTotal = () => keep.reduce((n, i) => n + floorOf(i), 0) + 2 * (keep.length - 1);
    for (const d of opts.drop ?? []) {
      if (minTotal() <= opts.width) break;
      const at = keep.indexOf(d);
      if (at >= 0) keep.splice(at, 1);
    }
    if (keep.length < headers.length) {
      const remap = new Map(keep.map((old, i) => [old, i]));
      const shrink = (opts.shrinkable ?? headers.map((_, j) => j).slice(1)).flatMap((i) => (remap.has(i) ? [remap.get(i) as number] : []));
      return renderTable(
        keep.map((i) => headers[i] ?? ""),
        rows.map((r) => keep.map((i) => r[i] ?? "")),
        { width: opts.width, shrinkable: shrink },
      );
    }
    const shrinkable = new Set(opts.shrinkable ?? headers.map((_, i) => i).slice(1));
    const floor = (i: number) => Math.max(MIN_CELL, textWidth(headers[i] ?? ""));
    const total = () => widths.reduce((a, b) => a + b, 0) + 2 * (widths.length - 1);
    while (total() > opts.width) {
      let widest = -1;
      for (const i of shrinkable) if ((widths[i] ?? 0) > floor(i) && (widest < 0 || (widths[i] ?? 0) > (widths[widest] ?? 0))) widest = i;
      if (widest < 0) break;
      widths[widest] = Math.max(floor(widest), (widths[widest] ?? 0) - Math.max(1, total() - opts.width));
    }
  }
  const line = (cells: readonly string[]) =>
    cells
      .map((c, i) => {
        const w = widths[i] ?? 0;
        const cut = truncate(c, w);
        return i === cells.length - 1 ? cut : padEnd(cut, w);
      })
      .join("  ")
      .trimEnd();
  return [line(headers), ...rows.map(line)].join("\n") + "\n";
}

/** A key-value view: "Label:  value" lines with the values aligned. */
export function renderFields(fields0: readonly (readonly [string, string])[]): string {
  const fields = fields0.map(([k, v]) => [k, terminalSafe(v)] as const);
  const width = Math.max(0, ...fields.map(([k]) => textWidth(k) + 1));
  return fields.map(([k, v]) => `${padEnd(`${k}:`, width)}  ${v}`.trimEnd()).join("\n") + "\n";
}

// ---- quota input ------------------------------------------------------------------------

/** A quota typed by a person: units ("3000", "3,000") or a currency amount ("$5", "5 USD"). */
export interface ParsedQuota {
  /** Units as an int64 decimal string, or null (empty or invalid). */
  readonly units: string | null;
  /** The text was a currency amount (a hint then shows the units). */
  readonly fromAmount: boolean;
  readonly error: string | null;
}

const INT64_MAX = 9_223_372_036_854_775_807n;

/**
 * THE quota input rule of the CLI (`--quota`) and the TUI form: a whole number of units
 * (digits, "_" or "," separators), or an amount in the display currency — "$5", "$0.25",
 * "5 USD", "5usd" — converted exactly (rounded half up to a unit) at quotaPerUnit.
 */
export function parseQuotaInput(text: string, money: Money): ParsedQuota {
  const t = text.trim();
  if (t === "") return { units: null, fromAmount: false, error: null };
  if (/^\d[\d_,]*$/.test(t)) {
    const n = BigInt(t.replace(/[_,]/g, ""));
    if (n > INT64_MAX) return { units: null, fromAmount: false, error: "too large" };
    return { units: n.toString(), fromAmount: false, error: null };
  }
  const code = money.currency.trim().toUpperCase();
  const sym = CURRENCY_SYMBOLS[code] ?? "";
  let amountText: string | null = null;
  if (sym && t.startsWith(sym)) amountText = t.slice(sym.length).trim();
  else if (code && t.toUpperCase().endsWith(code)) amountText = t.slice(0, -code.length).trim();
  const qpu = toBig(money.quotaPerUnit);
  if (amountText !== null && qpu > 0n && /^\d[\d_,]*(\.\d+)?$/.test(amountText)) {
    const [int = "0", frac = ""] = amountText.replace(/[_,]/g, "").split(".");
    const scale = 10n ** BigInt(frac.length);
    const units = (BigInt(int + frac) * qpu * 2n + scale) / (2n * scale);
    if (units > INT64_MAX) return { units: null, fromAmount: true, error: "too large" };
    return { units: units.toString(), fromAmount: true, error: null };
  }
  return { units: null, fromAmount: false, error: `a whole number of units, or an amount like ${sym ? `${sym}5` : `5 ${code}`}` };
}
