// THE admission policy: one pure function from what the caller gathered to a verdict.
// No I/O, no clock (`input.now`), no exceptions for any input shape the types allow.
// Both edges (Envoy ext_authz and aisa.v1 Check) call it; the reason table (reasons.ts)
// turns its verdict into wire codes.
import type { PriceRecord } from "../domain/types.js";
import { ipInRanges } from "../domain/ip.js";
import { DEFAULT_RATIO_PPM } from "../domain/units.js";
import { admit, budgetAvailable } from "./admit.js";
import { REASONS, type DenyReason } from "./reasons.js";
import type { PolicyConfig, PolicyInput, Verdict } from "./types.js";

const MILLION = 1_000_000;
/** tokens × (units per million tokens) × ppm → units: divide by 10^6 · 10^6. */
const SCALE = 1_000_000_000_000;
const SCALE_N = 1_000_000_000_000n;

// Deny verdicts without retry information never vary: share one frozen object per reason
// instead of allocating on every denied request.
const DENY = Object.freeze(
  Object.fromEntries(
    REASONS.filter((r): r is DenyReason => r !== "ALLOWED").map((reason) => [reason, Object.freeze({ allowed: false as const, reason, retryAfterMs: 0 })]),
  ),
) as Readonly<Record<DenyReason, Verdict>>;

/**
 * ceil(n / d) for d > 0, exact for any sign of n (BigInt division truncates toward zero,
 * which is already the ceiling for negative quotients).
 */
export function ceilDiv(n: bigint, d: bigint): bigint {
  const q = n / d;
  return n > 0n && q * d !== n ? q + 1n : q;
}

/** A non-negative safe integer from a number that should be one (prices may be fractional by mistake: round up). */
function units(x: number): number {
  if (!(x > 0)) return 0; // also NaN
  const c = Math.ceil(x);
  return c > Number.MAX_SAFE_INTEGER ? Number.MAX_SAFE_INTEGER : c;
}

/**
 * The reservation for a priced request, in units:
 *   ceil( (perRequest + (inputTokens·inputPerMillion + outputTokens·outputPerMillion) / 10^6) · ratioPpm / 10^6 )
 * computed as ONE exact rational and rounded up once, with integers only — no float ever
 * reaches the ledger. outputTokens is the request's max_tokens, or config.defaultMaxTokens.
 * Fast path in doubles while every intermediate stays below 2^53 (then they are exact);
 * BigInt otherwise. The result saturates at Number.MAX_SAFE_INTEGER (it will then exceed any
 * balance and be denied, which is the right answer for an absurd max_tokens).
 */
export function estimateUnits(
  price: PriceRecord,
  maxTokens: number | null,
  ratioPpm: number,
  config: Pick<PolicyConfig, "inputEstimateTokens" | "defaultMaxTokens">,
): number {
  const perRequest = units(price.perRequest);
  const inPerM = units(price.inputPerMillion);
  const outPerM = units(price.outputPerMillion);
  const inTokens = units(config.inputEstimateTokens);
  const outTokens = maxTokens !== null && maxTokens >= 0 ? units(maxTokens) : units(config.defaultMaxTokens);
  const ratio = units(ratioPpm);

  // Exact in doubles iff each product and sum is a safe integer: a true value above 2^53
  // rounds to >= 2^53, which isSafeInteger rejects, so a passing check implies exactness.
  const a = perRequest * MILLION;
  const b = inTokens * inPerM;
  const c = outTokens * outPerM;
  const sum = a + b + c;
  const num = sum * ratio;
  if (
    Number.isSafeInteger(a) &&
    Number.isSafeInteger(b) &&
    Number.isSafeInteger(c) &&
    Number.isSafeInteger(sum) &&
    Number.isSafeInteger(num)
  ) {
    // Exact ceil-division of a safe integer by 10^12: the float quotient is at most one off,
    // and q·SCALE <= num + SCALE stays exact; correct the remainder into [0, SCALE).
    let q = Math.floor(num / SCALE);
    let r = num - q * SCALE;
    if (r < 0) {
      q -= 1;
      r += SCALE;
    } else if (r >= SCALE) {
      q += 1;
      r -= SCALE;
    }
    return r > 0 ? q + 1 : q;
  }
  const exact = ceilDiv(
    (BigInt(perRequest) * 1_000_000n + BigInt(inTokens) * BigInt(inPerM) + BigInt(outTokens) * BigInt(outPerM)) *
      BigInt(ratio),
    SCALE_N,
  );
  return exact > BigInt(Number.MAX_SAFE_INTEGER) ? Number.MAX_SAFE_INTEGER : Number(exact);
}

/**
 * Decides one request. The first failing check decides, in this order:
 * malformed, credential, key, enabled, expiry, client IP, model (sources agree / required /
 * allowed / priced),
 * account balance, key quota, rate limits. On allow, returns the units to reserve.
 *
 * Conventions the caller must know:
 *  - key.ips / key.models / group.models: null = unrestricted; an EMPTY list restricts to
 *    nothing (fail closed), it does not mean "any".
 *  - An unknown group (dangling reference) counts as ratio 1.0 (DEFAULT_RATIO_PPM) with no model list.
 *  - Balance, quota and rate limits: admit() (admit.ts), the rule reserve() applies too.
 *  - Returned deny verdicts without retry information are shared frozen objects.
 */
export function evaluatePolicy(input: PolicyInput): Verdict {
  const req = input.request;
  if (req.malformed !== null) return DENY.MALFORMED_REQUEST;
  if (req.credential === null) return DENY.KEY_MISSING;
  const key = input.key;
  if (key === undefined) return DENY.KEY_INVALID;
  if (!key.enabled) return DENY.KEY_DISABLED;
  if (key.expiresAt !== null && input.now >= key.expiresAt) return DENY.KEY_EXPIRED;
  if (key.ips !== null && (req.clientIp === null || !ipInRanges(req.clientIp, key.ips))) {
    return DENY.IP_NOT_ALLOWED;
  }

  const group = input.group;
  const keyModels = key.models;
  const groupModels = group === undefined ? null : group.models;
  const model = req.model;
  // Sources that disagree: whichever the upstream acts on, a check of "the" model could be
  // checking the wrong one. Denied for every key (pricing and usage need one model too).
  if (req.modelConflict) return DENY.MODEL_MISMATCH;
  if (keyModels !== null || groupModels !== null) {
    // A model only the client declared (a header the upstream never reads) proves nothing.
    if (model === null || req.modelDeclared) return DENY.MODEL_REQUIRED;
    if ((keyModels !== null && !keyModels.has(model)) || (groupModels !== null && !groupModels.has(model))) {
      return DENY.MODEL_NOT_ALLOWED;
    }
  }
  const price = input.price;
  const config = input.config;
  if (model !== null && price === undefined && config.denyUnpricedModels) return DENY.MODEL_NOT_PRICED;

  let estimate: number;
  const callerEstimate = req.estimatedUnits;
  if (callerEstimate !== null && callerEstimate > 0) {
    estimate = units(callerEstimate);
  } else if (price !== undefined) {
    estimate = estimateUnits(price, req.maxTokens, group === undefined ? DEFAULT_RATIO_PPM : group.ratioPpm, config);
  } else {
    estimate = units(config.defaultEstimateUnits);
  }

  // The money rule (balance, quota, limits) is the one every engine's reserve() applies too.
  const account = input.account;
  const denial = admit(estimate, account === undefined ? NaN : account.available, key.unlimited, key.quotaAvailable, key.limits, input.rate, budgetAvailable(group?.budget));
  if (denial !== null) {
    return denial.retryAfterMs === 0 ? DENY[denial.reason] : { allowed: false, reason: denial.reason, retryAfterMs: denial.retryAfterMs };
  }

  return { allowed: true, reason: "ALLOWED", estimateUnits: estimate };
}
