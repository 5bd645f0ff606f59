// The CLI's --json shapes. Field names are the proto field names (snake_case);
// int64 values are JSON numbers when they fit in a double exactly (strings
// otherwise); timestamps are RFC 3339 strings, null when unset; enums are
// lower-case words ("enabled", "daily"). Pure.
import type { WhoAmIResponse } from "../gen/aisa/v1/admin.js";
import { keyUsabilityOf, spendable } from "../display/format.js";
import {
  KeyStatus,
  RefillPeriod,
  type Account,
  type AuditEntry,
  type Group,
  type Key,
  type Price,
  type Quota,
  type RateLimits,
  type Token,
} from "../gen/aisa/v1/types.js";

export type Json = null | boolean | number | string | Json[] | { [k: string]: Json };

/** An int64 (string from ts-proto) as a JSON number when safe, else the string. */
export function int64(v: string | number | undefined): number | string {
  if (v === undefined || v === "") return 0;
  const n = Number(v);
  return Number.isSafeInteger(n) ? n : String(v);
}

export function time(d: Date | undefined): string | null {
  return d && !Number.isNaN(d.getTime()) ? d.toISOString() : null;
}

export function keyStatusWord(s: KeyStatus): string {
  switch (s) {
    case KeyStatus.KEY_STATUS_ENABLED:
      return "enabled";
    case KeyStatus.KEY_STATUS_DISABLED:
      return "disabled";
    default:
      return "unspecified";
  }
}

export function refillWord(p: RefillPeriod): string {
  switch (p) {
    case RefillPeriod.REFILL_PERIOD_DAILY:
      return "daily";
    case RefillPeriod.REFILL_PERIOD_WEEKLY:
      return "weekly";
    case RefillPeriod.REFILL_PERIOD_MONTHLY:
      return "monthly";
    default:
      return "none";
  }
}

/** `spendable` = remaining minus reserved: what Check can still admit (0 fields when unlimited). */
export function quotaJson(q: Quota | undefined): Json {
  return {
    unlimited: q?.unlimited ?? false,
    total: int64(q?.total),
    remaining: int64(q?.remaining),
    spendable: q && !q.unlimited ? int64(spendable(q).toString()) : 0,
    used: int64(q?.used),
    reserved: int64(q?.reserved),
  };
}

export function limitsJson(l: RateLimits | undefined): Json {
  return { rpm: l?.rpm ?? 0, tpm: l?.tpm ?? 0, concurrency: l?.concurrency ?? 0 };
}

/**
 * `status` is what a person needs — "enabled", "disabled" or "expired" (cannot be used,
 * whatever the stored status); `enabled` is the stored switch, `expired` the expiry's verdict.
 * `effective_models` are the models Check allows (key ∩ group; only when models_restricted).
 */
export function keyJson(k: Key, now: number): { [k: string]: Json } {
  return {
    id: k.id,
    name: k.name,
    account_id: k.accountId,
    group: k.group,
    status: keyUsabilityOf(k, now),
    enabled: k.status === KeyStatus.KEY_STATUS_ENABLED,
    expired: keyUsabilityOf(k, now) === "expired",
    quota: quotaJson(k.quota),
    expires_at: time(k.expiresAt),
    models: [...k.models],
    group_models: [...k.groupModels],
    models_restricted: k.modelsRestricted,
    effective_models: [...k.effectiveModels],
    ips: [...k.ips],
    created_at: time(k.createdAt),
    updated_at: time(k.updatedAt),
    last_used_at: time(k.lastUsedAt),
    limits: limitsJson(k.limits),
    refill: refillWord(k.refill),
    refill_every_days: k.refillEveryDays ?? 0,
    refill_anchor: k.refillAnchor ?? 0,
    metadata: { ...k.metadata },
    masked_key: k.maskedKey,
    previous_secret_expires_at: time(k.previousSecretExpiresAt),
    refilled_at: time(k.refilledAt),
  };
}

export function accountJson(a: Account): { [k: string]: Json } {
  return {
    id: a.id,
    name: a.name,
    balance: int64(a.balance),
    reserved: int64(a.reserved),
    credited: int64(a.credited),
    charged: int64(a.charged),
    created_at: time(a.createdAt),
    timezone: a.timezone || "UTC",
  };
}

export function groupJson(g: Group): { [k: string]: Json } {
  return {
    name: g.name,
    description: g.description,
    price_ratio: g.priceRatio,
    models: [...g.models],
    key_count: int64(g.keyCount),
    created_at: time(g.createdAt),
    accounts: [...g.accounts],
    budget: g.budget
      ? {
          units: int64(g.budget.units),
          period: refillWord(g.budget.period),
          every_days: g.budget.everyDays,
          anchor: g.budget.anchor,
          timezone: g.budget.timezone || "UTC",
          spent: int64(g.budgetSpent),
          reserved: int64(g.budgetReserved),
          resets_at: time(g.budgetResetsAt),
        }
      : null,
  };
}

export function tokenJson(t: Token): { [k: string]: Json } {
  return { id: t.id, name: t.name, account_id: t.accountId, read_only: t.readOnly, created_at: time(t.createdAt) };
}

function parsedOrNull(s: string): Json {
  if (!s) return null;
  try {
    return JSON.parse(s) as Json;
  } catch {
    return s;
  }
}

export function auditJson(e: AuditEntry): { [k: string]: Json } {
  return {
    id: e.id,
    at: time(e.at),
    actor: e.actor,
    action: e.action,
    target: e.target,
    before: parsedOrNull(e.beforeJson),
    after: parsedOrNull(e.afterJson),
    detail: e.detail,
  };
}

export function priceJson(p: Price): { [k: string]: Json } {
  return {
    model: p.model,
    input_per_million: int64(p.inputPerMillion),
    output_per_million: int64(p.outputPerMillion),
    per_request: int64(p.perRequest),
    // Only when set: an unset rate is the input (or output) rate.
    ...(p.cacheReadPerMillion !== undefined ? { cache_read_per_million: int64(p.cacheReadPerMillion) } : {}),
    ...(p.cacheWritePerMillion !== undefined ? { cache_write_per_million: int64(p.cacheWritePerMillion) } : {}),
    ...(p.reasoningPerMillion !== undefined ? { reasoning_per_million: int64(p.reasoningPerMillion) } : {}),
  };
}

export function whoAmIJson(w: WhoAmIResponse, address: string): { [k: string]: Json } {
  return {
    token_id: w.tokenId,
    account_id: w.accountId,
    read_only: w.readOnly,
    quota_per_unit: int64(w.quotaPerUnit),
    currency: w.currency,
    server_version: w.serverVersion,
    address,
  };
}
