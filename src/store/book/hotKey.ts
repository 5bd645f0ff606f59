// What the hot index holds of one key, shared by the index (hotIndex.ts) and the on-disk
// projection (keyProjection.ts): a module of its own, so neither imports the other.
import type { RateLimits, RefillPeriod } from "../../domain/types.js";
import type { CidrRange } from "../../policy/types.js";

/** A key's model and IP lists compiled for the policy (null = unrestricted). */
export interface Restrictions {
  models: ReadonlySet<string> | null;
  ips: readonly CidrRange[] | null;
}

/** What the hot index needs of a key (from a KeyRecord or a projection). */
export interface HotKey {
  id: string;
  /** 32 bytes (may be a view into a buffer the caller owns: copy to keep). */
  secretHash: Uint8Array;
  /** The grace-period secret's hash, with its expiry, or null. */
  prevSecretHash: Uint8Array | null;
  prevSecretExpiresAt: number;
  accountId: string;
  group: string;
  enabled: boolean;
  unlimited: boolean;
  expiresAt: number | null;
  quotaTotal: number;
  createdAt: number;
  refill: RefillPeriod;
  /** The refill period's N (daily: every N days) and anchor; 1 and 0 by default (domain/refill.ts). */
  refillEvery?: number;
  refillAnchor?: number;
  limits: RateLimits;
  restrictions: Restrictions;
}
