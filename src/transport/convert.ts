// Pure conversions between aisa.v1 protobuf messages and domain records.
import type { AccountState, AuditRecord, GroupBudget, GroupRecord, KeyState, PriceRecord, RefillPeriod as DomainRefill, TokenRecord } from "../domain/types.js";
import type { GroupWithCount } from "../store/types.js";
import type { KeyFacts } from "../domain/keyView.js";
import { formatRatioPpm } from "../domain/units.js";
import { invalid } from "../domain/errors.js";
import { KeyStatus, RefillPeriod, type Account, type AuditEntry, type Budget, type Group, type Key, type Price, type Token } from "../gen/aisa/v1/types.js";
import type { KeySpec } from "../gen/aisa/v1/admin.js";
import type { KeySpecInput } from "../service/admin.js";

const date = (ms: number | null): Date | undefined => (ms === null ? undefined : new Date(ms));

const REFILL_TO_PROTO: Record<DomainRefill, RefillPeriod> = {
  none: RefillPeriod.REFILL_PERIOD_NONE,
  daily: RefillPeriod.REFILL_PERIOD_DAILY,
  weekly: RefillPeriod.REFILL_PERIOD_WEEKLY,
  monthly: RefillPeriod.REFILL_PERIOD_MONTHLY,
};

export function refillFromProto(r: RefillPeriod | undefined, field = "spec.refill"): DomainRefill | undefined {
  switch (r) {
    case RefillPeriod.REFILL_PERIOD_NONE:
      return "none";
    case RefillPeriod.REFILL_PERIOD_DAILY:
      return "daily";
    case RefillPeriod.REFILL_PERIOD_WEEKLY:
      return "weekly";
    case RefillPeriod.REFILL_PERIOD_MONTHLY:
      return "monthly";
    case undefined:
    case RefillPeriod.REFILL_PERIOD_UNSPECIFIED:
      return undefined;
    default:
      // A value this server does not know (a newer client's enum, junk on the wire) is an
      // error, not "none": silently dropping a refill the caller asked for loses quota.
      throw invalid(field, `unknown refill period ${Number(r)}; expected REFILL_PERIOD_NONE, _DAILY, _WEEKLY or _MONTHLY`);
  }
}

export function keyToProto(s: KeyState, facts: KeyFacts): Key {
  const r = s.record;
  const c = s.counters;
  return {
    id: r.id,
    name: r.name,
    accountId: r.accountId,
    group: r.group,
    status: r.status === "enabled" ? KeyStatus.KEY_STATUS_ENABLED : KeyStatus.KEY_STATUS_DISABLED,
    quota: {
      unlimited: r.unlimited,
      total: String(r.unlimited ? 0 : r.quotaTotal),
      remaining: String(r.unlimited ? 0 : c.remaining),
      used: String(c.used),
      reserved: String(c.reserved),
    },
    expiresAt: date(r.expiresAt),
    models: [...r.models],
    ips: [...r.ips],
    createdAt: date(r.createdAt),
    updatedAt: date(r.updatedAt),
    lastUsedAt: date(c.lastUsedAt),
    limits: { ...r.limits },
    refill: REFILL_TO_PROTO[r.refill],
    refillEveryDays: r.refillEvery ?? 0,
    refillAnchor: r.refillAnchor ?? 0,
    metadata: { ...r.metadata },
    maskedKey: r.masked,
    previousSecretExpiresAt: date(r.prevSecretExpiresAt),
    refilledAt: date(c.refilledAt),
    effectiveModels: [...facts.effectiveModels],
    modelsRestricted: facts.modelsRestricted,
    groupModels: [...facts.groupModels],
    expired: facts.expired,
  };
}

export function specFromProto(spec: KeySpec | undefined): KeySpecInput {
  const s = spec ?? ({} as Partial<KeySpec>);
  return {
    name: s.name,
    group: s.group,
    expires: s.expires,
    quota: s.quota,
    unlimited: s.unlimited,
    models: s.models ?? [],
    ips: s.ips ?? [],
    limits: s.limits,
    refill: refillFromProto(s.refill),
    refillEvery: s.refillEveryDays,
    refillAnchor: s.refillAnchor,
    metadata: s.metadata ?? {},
  };
}

export function accountToProto(a: AccountState): Account {
  return {
    id: a.record.id,
    name: a.record.name,
    balance: String(a.counters.balance),
    createdAt: new Date(a.record.createdAt),
    reserved: String(a.counters.reserved),
    credited: String(a.counters.credited),
    charged: String(a.counters.charged),
    timezone: a.record.timezone ?? "UTC",
  };
}

export function budgetToProto(b: GroupBudget): Budget {
  return { units: String(b.units), period: REFILL_TO_PROTO[b.period], everyDays: b.every ?? 0, anchor: b.anchor ?? 0, timezone: b.timezone ?? "UTC" };
}

/** A Budget message as the service reads it (checked there); undefined when absent. */
export function budgetFromProto(b: Budget | undefined): { units: string; period: DomainRefill | undefined; every: number; anchor: number; timezone: string } | undefined {
  if (b === undefined) return undefined;
  return { units: b.units, period: refillFromProto(b.period, "budget.period"), every: b.everyDays, anchor: b.anchor, timezone: b.timezone };
}

export function groupToProto(g: GroupRecord & { keyCount?: number; budgetUse?: GroupWithCount["budgetUse"] }): Group {
  const out: Group = {
    name: g.name,
    description: g.description,
    priceRatio: formatRatioPpm(g.ratioPpm),
    models: [...g.models],
    keyCount: String(g.keyCount ?? 0),
    createdAt: new Date(g.createdAt),
    accounts: [...(g.accounts ?? [])],
    budgetSpent: String(g.budgetUse?.spent ?? 0),
    budgetReserved: String(g.budgetUse?.reserved ?? 0),
  };
  if (g.budget) out.budget = budgetToProto(g.budget);
  if (g.budgetUse) out.budgetResetsAt = new Date(g.budgetUse.resetsAt);
  return out;
}

export function tokenToProto(t: TokenRecord): Token {
  return { id: t.id, name: t.name, accountId: t.accountId ?? "", readOnly: t.readOnly, createdAt: new Date(t.createdAt) };
}

export function auditToProto(a: AuditRecord): AuditEntry {
  return { id: a.id, at: new Date(a.at), actor: a.actor, action: a.action, target: a.target, beforeJson: a.before, afterJson: a.after, detail: a.detail };
}

export function priceToProto(p: PriceRecord): Price {
  const opt = (v: number | undefined) => (v === undefined ? undefined : String(v));
  return {
    model: p.model,
    inputPerMillion: String(p.inputPerMillion),
    outputPerMillion: String(p.outputPerMillion),
    perRequest: String(p.perRequest),
    cacheReadPerMillion: opt(p.cacheReadPerMillion),
    cacheWritePerMillion: opt(p.cacheWritePerMillion),
    reasoningPerMillion: opt(p.reasoningPerMillion),
  };
}
