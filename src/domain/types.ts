// Domain records of aisa-authz. Plain data: no I/O, no gRPC types.
//
// Units: every amount is an integer number of quota units held in a JS number.
// Amounts stay within Number.MAX_SAFE_INTEGER (2^53 − 1): addExact() (domain/units.ts) refuses
// any operation that would take a counter or charge past it. Times are Unix epoch
// milliseconds; null means "none".

export type KeyStatus = "enabled" | "disabled";
export type RefillPeriod = "none" | "daily" | "weekly" | "monthly";

export interface RateLimits {
  /** Requests per rolling minute; 0 = none. */
  rpm: number;
  /** Tokens (input + output) per rolling minute; 0 = none. */
  tpm: number;
  /** Open reservations at once; 0 = none. */
  concurrency: number;
}

export const NO_LIMITS: RateLimits = Object.freeze({ rpm: 0, tpm: 0, concurrency: 0 });

/** A key's settings, as stored. Counters live in KeyCounters. */
export interface KeyRecord {
  id: string;
  name: string;
  accountId: string;
  group: string;
  status: KeyStatus;
  unlimited: boolean;
  /** Quota total in units (0 when unlimited). */
  quotaTotal: number;
  expiresAt: number | null;
  /** Allowed models; empty = all. */
  models: string[];
  /** Allowed IPs/CIDRs, normalised; empty = any. */
  ips: string[];
  createdAt: number;
  updatedAt: number;
  limits: RateLimits;
  /** Refill period, counted in the account's time zone (domain/refill.ts). */
  refill: RefillPeriod;
  /** daily: every N days (absent = 1). */
  refillEvery?: number;
  /** The period's anchor (PeriodSpec.anchor; absent = the default). */
  refillAnchor?: number;
  metadata: Record<string, string>;
  /** SHA-256 of the current secret, hex. The lookup index. */
  secretHash: string;
  /** The current secret encrypted with AES-256-GCM, base64(iv|tag|ciphertext). */
  secretEnc: string;
  /** Masked secret: prefix + "…" + last 4. */
  masked: string;
  /** SHA-256 of the previous secret while its rotation grace period runs. */
  prevSecretHash: string | null;
  prevSecretExpiresAt: number | null;
}

/** A key's mutable counters. */
export interface KeyCounters {
  /** Quota left in units; may go negative (overdraft after an admitted request). */
  remaining: number;
  /** Units charged since creation. */
  used: number;
  /** Units held by open reservations (memory only, never persisted). */
  reserved: number;
  lastUsedAt: number | null;
  refilledAt: number | null;
}

/** A key as the admin API returns it: settings plus counters. */
export interface KeyState {
  record: KeyRecord;
  counters: KeyCounters;
}

export interface AccountRecord {
  id: string;
  name: string;
  createdAt: number;
  /** IANA time zone the account's keys' refill periods are counted in; absent (older records too) = UTC. */
  timezone?: string;
}

export interface AccountCounters {
  balance: number;
  credited: number;
  charged: number;
  /** Units held by open reservations (memory only). */
  reserved: number;
}

export interface AccountState {
  record: AccountRecord;
  counters: AccountCounters;
}

export interface GroupRecord {
  name: string;
  description: string;
  /** Billing multiplier in parts per million (1_000_000 = 1.0). */
  ratioPpm: number;
  /** Allowed models for the group's keys; empty = all. */
  models: string[];
  createdAt: number;
  /**
   * Accounts whose account-scoped tokens may put their own keys into this group (set by
   * operators only). Absent or empty = none: only operators assign the group.
   */
  accounts?: string[];
  /** A spend cap per period for all the group's keys together; absent (older records too) = none. */
  budget?: GroupBudget;
}

/**
 * A group's spend cap: at most `units` charged to its keys per period (domain/refill.ts), in
 * `timezone` (IANA; absent = UTC). The used part resets at each boundary.
 */
export interface GroupBudget {
  units: number;
  period: Exclude<RefillPeriod, "none">;
  /** daily: every N days (absent = 1). */
  every?: number;
  /** As PeriodSpec.anchor (absent = the default anchor). */
  anchor?: number;
  timezone?: string;
}

/** A group budget's counters (what the engine stores apart from the record, `gctr`). */
export interface GroupBudgetCounters {
  /** Units charged to the group's keys since `since`. */
  spent: number;
  /** The instant the current period's spending is counted from (its start, or the budget's). */
  since: number;
}

export interface TokenRecord {
  id: string;
  name: string;
  /** null = operator token. */
  accountId: string | null;
  readOnly: boolean;
  /** SHA-256 of the token secret, hex. */
  secretHash: string;
  createdAt: number;
}

export interface AuditRecord {
  id: string;
  at: number;
  actor: string;
  action: string;
  target: string;
  /** The account the entry is about (key mutations and reveals); absent on other entries and older ones. */
  account?: string;
  /** JSON without secrets; "" when not applicable. */
  before: string;
  after: string;
  detail: string;
}

export interface PriceRecord {
  model: string;
  inputPerMillion: number;
  outputPerMillion: number;
  perRequest: number;
  /** Units per 10^6 input tokens read from the prompt cache; absent = inputPerMillion. */
  cacheReadPerMillion?: number;
  /** Units per 10^6 input tokens written to the prompt cache; absent = inputPerMillion. */
  cacheWritePerMillion?: number;
  /** Units per 10^6 reasoning output tokens; absent = outputPerMillion. */
  reasoningPerMillion?: number;
}

/** Who is calling the admin API. */
export interface Principal {
  tokenId: string;
  /** null = operator (sees everything). */
  accountId: string | null;
  readOnly: boolean;
}

export const DEFAULT_ACCOUNT = "default";
export const DEFAULT_GROUP = "default";
