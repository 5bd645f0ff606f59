// THE admission money rule: may `units` be held against this account balance, this key quota,
// this group budget and these limits, right now? Check's verdict (evaluate.ts, on what lookup read) and every
// engine's reservation (AuthzStore.reserve, re-checked inside the engine's atomic step) both
// call it, so the two can never disagree on what "enough" means or on a retry-after.
//
// Pure and allocation-free on allow and on the balance and quota denials (the hot path calls it
// twice per admitted request): the caller passes numbers it already holds and a RateView.
import type { RateLimits } from "../domain/types.js";
import type { BudgetView, RateView } from "./types.js";

/** The shortest retry-after of a RATE_LIMITED denial (and the wait for a concurrency slot). */
export const MIN_RETRY_AFTER_MS = 1000;

/** Why `units` may not be held. retryAfterMs is 0 except for RATE_LIMITED. */
export interface AdmitDenial {
  readonly reason: "ACCOUNT_BALANCE_EXHAUSTED" | "KEY_QUOTA_EXHAUSTED" | "GROUP_BUDGET_EXHAUSTED" | "RATE_LIMITED";
  readonly retryAfterMs: number;
}

const BALANCE: AdmitDenial = Object.freeze({ reason: "ACCOUNT_BALANCE_EXHAUSTED", retryAfterMs: 0 });
const QUOTA: AdmitDenial = Object.freeze({ reason: "KEY_QUOTA_EXHAUSTED", retryAfterMs: 0 });
const GROUP: AdmitDenial = Object.freeze({ reason: "GROUP_BUDGET_EXHAUSTED", retryAfterMs: 0 });

/**
 * null when `units` may be held; otherwise the first failing check, in this order: account
 * balance, key quota, group budget, rate limits.
 *  - `accountAvailable` is balance − reserved; NaN when the account is unknown (denied).
 *  - `groupAvailable` is the group budget's units − spent − reserved; Infinity when the key's
 *    group has no budget (policy/types.ts budgetAvailable).
 *  - Balance, quota and group budget must be strictly positive AND cover `units`, so 0 units
 *    cannot slip through on an empty account.
 *  - Every tripped limit contributes its wait; the longest is the honest retry-after (waiting
 *    for the shortest would only be denied again), never below MIN_RETRY_AFTER_MS.
 * The balance and quota denials are shared frozen objects.
 */
export function admit(
  units: number,
  accountAvailable: number,
  unlimited: boolean,
  quotaAvailable: number,
  limits: RateLimits,
  rate: RateView,
  groupAvailable: number = Infinity,
): AdmitDenial | null {
  if (!(accountAvailable > 0) || accountAvailable < units) return BALANCE;
  if (!unlimited && (!(quotaAvailable > 0) || quotaAvailable < units)) return QUOTA;
  if (groupAvailable !== Infinity && (!(groupAvailable > 0) || groupAvailable < units)) return GROUP;
  let wait = -1;
  if (limits.rpm > 0 && rate.requestsInWindow >= limits.rpm) wait = Math.max(wait, finiteOrZero(rate.windowResetMs));
  if (limits.tpm > 0 && rate.tokensInWindow >= limits.tpm) wait = Math.max(wait, finiteOrZero(rate.windowResetMs));
  if (limits.concurrency > 0 && rate.open >= limits.concurrency) wait = Math.max(wait, MIN_RETRY_AFTER_MS);
  if (wait >= 0) return { reason: "RATE_LIMITED", retryAfterMs: Math.max(MIN_RETRY_AFTER_MS, Math.ceil(wait)) };
  return null;
}

function finiteOrZero(x: number): number {
  return Number.isFinite(x) && x > 0 ? x : 0;
}

/** What is left of a group's budget for a new reservation: Infinity when it has none. */
export function budgetAvailable(b: BudgetView | null | undefined): number {
  return b ? b.units - b.spent - b.reserved : Infinity;
}
