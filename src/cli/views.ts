// Human-readable views of admin resources (tables and key-value blocks), built
// from the pure helpers in format.ts. Pure: `now` and display settings are passed in.
import type { WhoAmIResponse } from "../gen/aisa/v1/admin.js";
import { RefillPeriod, type Account, type AuditEntry, type Budget, type Group, type Key, type Price, type Token } from "../gen/aisa/v1/types.js";
import { describePeriod, periodSpec } from "../domain/refill.js";
import type { Display } from "./context.js";
import {
  formatInteger,
  formatBalance,
  formatExpiry,
  formatLastUsed,
  formatLimits,
  formatMetadata,
  formatKeyStatus,
  formatQuota,
  formatRefill,
  formatTime,
  availableModels,
  effectiveModelsText,
  maskedIps,
  maskedModels,
  renderFields,
  renderTable,
} from "../display/format.js";

export const KEY_HEADERS = ["ID", "NAME", "STATUS", "REMAINING / TOTAL QUOTA", "GROUP", "KEY", "AVAILABLE MODELS", "IP RESTRICTIONS", "CREATION TIME", "EXPIRATION TIME"];

export function keyRow(k: Key, d: Display, now: number): string[] {
  return [
    k.id,
    k.name,
    formatKeyStatus(k, now),
    formatQuota(k.quota, d.quotaPerUnit, d.currency),
    k.group,
    k.maskedKey,
    effectiveModelsText(k),
    maskedIps(k.ips),
    formatTime(k.createdAt),
    formatExpiry(k.expiresAt, now),
  ];
}

/**
 * Fitted to `width`: the ID column is never cut (other commands take it); long cells are cut
 * with "…"; when that is not enough, Creation Time, IP Restrictions, Key, Group and Available
 * Models are left out in that order (`keys get` shows everything).
 */
export function keysTable(keys: readonly Key[], d: Display, now: number, width?: number): string {
  return renderTable(KEY_HEADERS, keys.map((k) => keyRow(k, d, now)), { width, shrinkable: [1, 3, 4, 6, 7, 9], drop: [8, 7, 5, 4, 6] });
}

export function keyFields(k: Key, d: Display, now: number): string {
  const fields: [string, string][] = [
    ["Name", k.name],
    ["ID", k.id],
    ["Status", formatKeyStatus(k, now)],
    ["Remaining / Total Quota", formatQuota(k.quota, d.quotaPerUnit, d.currency)],
    ["Used", formatBalance(k.quota?.used ?? "0", d.quotaPerUnit, d.currency)],
    ["Token Grouping", k.group],
    ["Account", k.accountId],
    ["Key", k.maskedKey],
    ["Available Models", availableModels(k)],
    ["Model Restrictions", k.models.length ? `${maskedModels(k.models)} (key)` : "None (key)"],
    ["IP Whitelist", maskedIps(k.ips)],
    ["Rate limits", formatLimits(k.limits)],
    ["Refill", refillText(k)],
    ["Metadata", formatMetadata(k.metadata)],
    ["Creation Time", formatTime(k.createdAt)],
    ["Expiration Time", formatExpiry(k.expiresAt, now)],
    ["Last used", formatLastUsed(k.lastUsedAt, now)],
  ];
  if (k.quota?.reserved && k.quota.reserved !== "0")
    fields.splice(5, 0, ["Reserved", `${formatBalance(k.quota.reserved, d.quotaPerUnit, d.currency)}, held by requests in flight`]);
  if (k.previousSecretExpiresAt) fields.push(["Previous key works until", formatExpiry(k.previousSecretExpiresAt, now).replace(/^expired/, "stopped")]);
  if (k.refilledAt) fields.push(["Last refill", formatTime(k.refilledAt)]);
  return renderFields(fields);
}

export function accountsTable(accounts: readonly Account[], d: Display): string {
  return renderTable(
    ["ID", "NAME", "BALANCE", "RESERVED", "CREATED"],
    accounts.map((a) => [a.id, a.name, formatBalance(a.balance, d.quotaPerUnit, d.currency), formatInteger(a.reserved), formatTime(a.createdAt)]),
  );
}

export function accountFields(a: Account, d: Display): string {
  return renderFields([
    ["ID", a.id],
    ["Name", a.name],
    ["Balance", formatBalance(a.balance, d.quotaPerUnit, d.currency)],
    ["Reserved", formatBalance(a.reserved, d.quotaPerUnit, d.currency)],
    ["Credited", formatBalance(a.credited, d.quotaPerUnit, d.currency)],
    ["Charged", formatBalance(a.charged, d.quotaPerUnit, d.currency)],
    ["Time zone", a.timezone || "UTC"],
    ["Created", formatTime(a.createdAt)],
  ]);
}

export function groupsTable(groups: readonly Group[]): string {
  return renderTable(
    ["NAME", "DESCRIPTION", "PRICE RATIO", "MODELS", "KEYS", "BUDGET", "CREATED"],
    groups.map((g) => [g.name, g.description || "-", g.priceRatio || "1", maskedModels(g.models), formatInteger(g.keyCount), budgetCell(g), formatTime(g.createdAt)]),
  );
}

/** A key's refill for people: "None", or its period with its anchor ("monthly on day 15"). */
function refillText(k: Key): string {
  if (k.refill !== RefillPeriod.REFILL_PERIOD_DAILY && k.refill !== RefillPeriod.REFILL_PERIOD_WEEKLY && k.refill !== RefillPeriod.REFILL_PERIOD_MONTHLY) return formatRefill(k.refill);
  const kind = k.refill === RefillPeriod.REFILL_PERIOD_WEEKLY ? "weekly" : k.refill === RefillPeriod.REFILL_PERIOD_DAILY ? "daily" : "monthly";
  return `${describePeriod(periodSpec(kind, k.refillEveryDays ?? 0, k.refillAnchor ?? 0))} (account's time zone)`;
}

/** A budget's period for people: "monthly on day 15, Europe/Berlin". */
export function budgetPeriodText(b: Budget): string {
  const kind = b.period === RefillPeriod.REFILL_PERIOD_WEEKLY ? "weekly" : b.period === RefillPeriod.REFILL_PERIOD_DAILY ? "daily" : "monthly";
  const p = describePeriod(periodSpec(kind, b.everyDays, b.anchor));
  return b.timezone && b.timezone !== "UTC" ? `${p}, ${b.timezone}` : `${p} (UTC)`;
}

/** The BUDGET column: "550/1,000 monthly" or "-". */
function budgetCell(g: Group): string {
  if (!g.budget) return "-";
  const kind = g.budget.period === RefillPeriod.REFILL_PERIOD_WEEKLY ? "weekly" : g.budget.period === RefillPeriod.REFILL_PERIOD_DAILY ? (g.budget.everyDays > 1 ? `${g.budget.everyDays}d` : "daily") : "monthly";
  // Without budget_resets_at the use is not ours to see (an account token): the cap only.
  return g.budgetResetsAt ? `${formatInteger(g.budgetSpent)}/${formatInteger(g.budget.units)} ${kind}` : `cap ${formatInteger(g.budget.units)} ${kind}`;
}

export function groupFields(g: Group): string {
  return renderFields([
    ["Name", g.name],
    ["Description", g.description || "-"],
    ["Price ratio", g.priceRatio || "1"],
    ["Available Models", maskedModels(g.models)],
    ["Open to accounts", g.accounts.length ? g.accounts.join(", ") : "- (operators assign it)"],
    ...(g.budget
      ? ([
          ["Budget", `${formatInteger(g.budget.units)} units ${budgetPeriodText(g.budget)}`],
          ["Budget spent", g.budgetResetsAt ? `${formatInteger(g.budgetSpent)} (+${formatInteger(g.budgetReserved)} held), resets ${formatTime(g.budgetResetsAt)}` : "- (operators only)"],
        ] as [string, string][])
      : ([["Budget", "- (none)"]] as [string, string][])),
    ["Created", formatTime(g.createdAt)],
  ]);
}

function tokenScope(t: { accountId: string }): string {
  return t.accountId ? `account ${t.accountId}` : "all accounts (operator)";
}

export function tokensTable(tokens: readonly Token[]): string {
  return renderTable(
    ["ID", "NAME", "SCOPE", "ACCESS", "CREATED"],
    tokens.map((t) => [t.id, t.name, tokenScope(t), t.readOnly ? "read-only" : "read-write", formatTime(t.createdAt)]),
  );
}

export function tokenFields(t: Token): string {
  return renderFields([
    ["ID", t.id],
    ["Name", t.name],
    ["Scope", tokenScope(t)],
    ["Access", t.readOnly ? "read-only" : "read-write"],
    ["Created", formatTime(t.createdAt)],
  ]);
}

export function pricesTable(prices: readonly Price[], d: Display): string {
  const money = (v: string) => formatBalance(v, d.quotaPerUnit, d.currency);
  // The cache and reasoning columns only when a price listed sets one of them; an unset rate
  // is its side's (input or output) rate.
  const kinds = prices.some((p) => p.cacheReadPerMillion !== undefined || p.cacheWritePerMillion !== undefined || p.reasoningPerMillion !== undefined);
  const kind = (v: string | undefined, side: string) => (v === undefined ? `= ${side}` : money(v));
  return renderTable(
    ["MODEL", "INPUT / 1M TOKENS", "OUTPUT / 1M TOKENS", "PER REQUEST", ...(kinds ? ["CACHE READ / 1M", "CACHE WRITE / 1M", "REASONING / 1M"] : [])],
    prices.map((p) => [
      p.model,
      money(p.inputPerMillion),
      money(p.outputPerMillion),
      money(p.perRequest),
      ...(kinds ? [kind(p.cacheReadPerMillion, "input"), kind(p.cacheWritePerMillion, "input"), kind(p.reasoningPerMillion, "output")] : []),
    ]),
  );
}

export function auditTable(entries: readonly AuditEntry[]): string {
  return renderTable(
    ["TIME", "ACTOR", "ACTION", "TARGET", "DETAIL"],
    entries.map((e) => [formatTime(e.at), e.actor, e.action, e.target, e.detail || ""]),
  );
}

export function whoAmIFields(w: WhoAmIResponse, address: string): string {
  return renderFields([
    ["Token", w.tokenId],
    ["Scope", tokenScope(w)],
    ["Access", w.readOnly ? "read-only" : "read-write"],
    ["Quota per unit", `${formatInteger(w.quotaPerUnit)} units = 1 ${w.currency || "currency unit"}`],
    ["Server version", w.serverVersion || "-"],
    ["Admin address", address],
  ]);
}
