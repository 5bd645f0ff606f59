// Inputs and outputs of the one pure policy function (evaluatePolicy).
// Everything here is plain data computed by the caller; the policy does no I/O
// and reads no clock (`now` is an input).
import type { PriceRecord, RateLimits } from "../domain/types.js";
import type { DenyReason } from "./reasons.js";

/** A parsed CIDR: address bytes (4 or 16) and prefix length. IPv4-mapped IPv6 is stored as IPv4. */
export interface CidrRange {
  bytes: Uint8Array;
  prefix: number;
}

/** What the transport extracted from a request (Envoy or aisa.v1 Check). */
export interface AuthInput {
  /** The raw credential, or null when the request carries none. */
  credential: string | null;
  /**
   * Normalised client IP bytes (4 for IPv4 incl. IPv4-mapped, 16 for IPv6), or null when unknown (pipe peer, unparsable).
   * Read-only: the Envoy transport hands out one frozen array per address (domain/ip.ts parseClientIpShared).
   */
  clientIp: ArrayLike<number> | null;
  /**
   * The model the upstream will act on, or null: on APIs that route by path (Azure OpenAI
   * deployments, Gemini, Vertex AI, Bedrock) the path's, else the JSON body's `model` (aisa.v1
   * Check: the caller's). Only when neither names one, a client-declared x-aisa-model header
   * (then `modelDeclared`).
   */
  model: string | null;
  /**
   * `model` comes only from a header the client wrote and the upstream never reads
   * (x-aisa-model): good enough to price and label an unrestricted key's request, not to pass
   * a model restriction (MODEL_REQUIRED).
   */
  modelDeclared: boolean;
  /**
   * The request's model sources disagree (path vs body, or a header vs either) or the path is
   * ambiguous (dot segments, backslashes, …): the policy denies MODEL_MISMATCH.
   */
  modelConflict: boolean;
  /** max_tokens (or max_output_tokens / max_completion_tokens) of the body, or null. */
  maxTokens: number | null;
  /** Caller-provided cost estimate in units (aisa.v1 Check), or null. */
  estimatedUnits: number | null;
  /** Set when the request is malformed (no attributes, no http, …): the policy denies MALFORMED_REQUEST. */
  malformed: string | null;
}

/** What the policy needs of a key: a compact view served from memory. */
export interface PolicyKey {
  id: string;
  accountId: string;
  group: string;
  enabled: boolean;
  expiresAt: number | null;
  /** Allowed models; null = all. */
  models: ReadonlySet<string> | null;
  /** Allowed client ranges; null = any. */
  ips: readonly CidrRange[] | null;
  unlimited: boolean;
  /** Quota left after open reservations: remaining − reserved. */
  quotaAvailable: number;
  limits: RateLimits;
}

export interface PolicyGroup {
  /** Billing multiplier, parts per million. */
  ratioPpm: number;
  /** Allowed models; null = all. */
  models: ReadonlySet<string> | null;
  /** The group's spend cap and its live counters; null or absent = no budget. */
  budget?: BudgetView | null;
}

/** A group budget as the policy reads it (live: the book moves these counters). */
export interface BudgetView {
  readonly units: number;
  /** Charged to the group's keys in the current period. */
  readonly spent: number;
  /** Held by open reservations of the group's keys. */
  readonly reserved: number;
}

export interface PolicyAccount {
  /** Balance left after open reservations: balance − reserved. */
  available: number;
}

/** Rate-limit usage of the key in the current window, read by the caller. */
export interface RateView {
  /** Requests admitted in the last 60 s. */
  requestsInWindow: number;
  /** Tokens consumed in the last 60 s. */
  tokensInWindow: number;
  /** Open reservations. */
  open: number;
  /** Milliseconds until the oldest request/token leaves the window (for retry-after). */
  windowResetMs: number;
}

export interface PolicyConfig {
  /** Deny a model with no price (true) or charge defaultEstimateUnits for it (false). */
  denyUnpricedModels: boolean;
  /** Estimate when nothing better is known (no max_tokens, no price), in units. */
  defaultEstimateUnits: number;
  /** Input tokens assumed for the estimate. */
  inputEstimateTokens: number;
  /** Output tokens assumed when the request sets no max_tokens. */
  defaultMaxTokens: number;
}

export interface PolicyInput {
  now: number;
  request: AuthInput;
  /** The key found by the credential's hash; undefined = unknown or deleted. */
  key: PolicyKey | undefined;
  group: PolicyGroup | undefined;
  account: PolicyAccount | undefined;
  /** The price of the request's model; undefined = no price (or no model). */
  price: PriceRecord | undefined;
  rate: RateView;
  config: PolicyConfig;
}

export type Verdict =
  | { allowed: true; reason: "ALLOWED"; estimateUnits: number }
  | { allowed: false; reason: DenyReason; retryAfterMs: number };
