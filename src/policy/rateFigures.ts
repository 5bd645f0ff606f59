// What a Check says about the key's limits (issue 19 item 4): the x-ratelimit-* figures every
// LLM SDK already reads, and, for a deny, which limit was hit, what remains and when it
// resets. Pure: computed from the figures the policy already read (RateLimits, RateView); the
// edges render them (toCheckResponse.ts for Envoy, forwardAuth.ts, denyShape.ts for the body).
//
// Semantics (the sliding 60-second window of the key book):
//  - requests: limit = rpm, remaining = rpm − requests in the window (after this request when it
//    was admitted), reset = when the oldest request leaves the window (60 s after an admitted
//    request into an empty window);
//  - tokens: the same with tpm and the tokens consumed in the window;
//  - a limit of 0 (none) is not reported: no header, no figure.
import type { RateLimits } from "../domain/types.js";
import type { DenyReason } from "./reasons.js";
import type { RateView } from "./types.js";

export const WINDOW_MS = 60_000;

export interface LimitFigure {
  readonly limit: number;
  readonly remaining: number;
  /** Milliseconds until `remaining` grows again (0 = nothing in the window to wait for). */
  readonly resetMs: number;
}

export interface RateFigures {
  readonly requests: LimitFigure | null;
  readonly tokens: LimitFigure | null;
}

/** The limit a deny names in its JSON body. */
export type LimitName = "requests_per_minute" | "tokens_per_minute" | "concurrency" | "key_quota" | "group_budget" | "account_balance";

export interface LimitHit {
  readonly name: LimitName;
  /** The limit's size; null when it has none to state (quota and balance: the hot path holds only what is left). */
  readonly limit: number | null;
  /** What remains of it (units for quota; null for the account balance, which a key holder is not shown). */
  readonly remaining: number | null;
  /** Seconds until waiting helps; null when waiting alone does not (quota, balance: a top-up or a refill). */
  readonly resetSeconds: number | null;
}

export const NO_FIGURES: RateFigures = Object.freeze({ requests: null, tokens: null });

function figure(limit: number, used: number, resetMs: number, admitted: boolean): LimitFigure {
  const u = admitted ? used + 1 : used;
  const reset = Number.isFinite(resetMs) && resetMs > 0 ? resetMs : admitted ? WINDOW_MS : 0;
  return { limit, remaining: limit > u ? limit - u : 0, resetMs: Math.ceil(reset) };
}

/**
 * The request and token figures of a key with these limits at this window state. `rate` is the
 * window as read BEFORE this request; `admitted` counts this request in (tokens are counted at
 * Consume, so an admission changes only the request figure). Shared frozen NO_FIGURES when the
 * key has neither an rpm nor a tpm limit (the common case: nothing allocated).
 */
export function rateFigures(limits: RateLimits, rate: RateView, admitted: boolean): RateFigures {
  const rpm = limits.rpm;
  const tpm = limits.tpm;
  if (!(rpm > 0) && !(tpm > 0)) return NO_FIGURES;
  return {
    requests: rpm > 0 ? figure(rpm, rate.requestsInWindow, rate.windowResetMs, admitted) : null,
    tokens: tpm > 0 ? tokenFigure(tpm, rate) : null,
  };
}

function tokenFigure(tpm: number, rate: RateView): LimitFigure {
  const used = rate.tokensInWindow;
  const reset = Number.isFinite(rate.windowResetMs) && rate.windowResetMs > 0 ? Math.ceil(rate.windowResetMs) : 0;
  return { limit: tpm, remaining: tpm > used ? tpm - used : 0, resetMs: reset };
}

/**
 * Which limit a money or rate deny hit, for the deny body. RATE_LIMITED names the first limit
 * the window shows tripped (rpm, tpm, concurrency — admit()'s order), else requests per minute
 * when an rpm exists (a race decided it in the reservation step); `retryAfterMs` is the
 * verdict's. KEY_QUOTA_EXHAUSTED names the key's next refill, GROUP_BUDGET_EXHAUSTED the group
 * budget's next reset (`resetMs` from now; null: none) as its reset. null for every other reason.
 */
export function limitHit(
  reason: DenyReason,
  limits: RateLimits,
  rate: RateView,
  retryAfterMs: number,
  quotaAvailable: number,
  resetMs: number | null = null,
): LimitHit | null {
  // Waiting helps when a refill/reset is due: its seconds (at least 1: an overdue one is applied on the next tick).
  const reset = resetMs === null || !Number.isFinite(resetMs) ? null : Math.max(1, Math.ceil(resetMs / 1000));
  if (reason === "KEY_QUOTA_EXHAUSTED") return { name: "key_quota", limit: null, remaining: quotaAvailable > 0 ? quotaAvailable : 0, resetSeconds: reset };
  if (reason === "ACCOUNT_BALANCE_EXHAUSTED") return { name: "account_balance", limit: null, remaining: null, resetSeconds: null };
  // A group's budget is shared with other accounts' keys: its figures are not the key holder's
  // to read; when it resets is (the calendar boundary of the group's period, nothing more).
  if (reason === "GROUP_BUDGET_EXHAUSTED") return { name: "group_budget", limit: null, remaining: null, resetSeconds: reset };
  if (reason !== "RATE_LIMITED") return null;
  const seconds = Math.max(1, Math.ceil((Number.isFinite(retryAfterMs) ? retryAfterMs : 0) / 1000));
  if (limits.rpm > 0 && rate.requestsInWindow >= limits.rpm) return { name: "requests_per_minute", limit: limits.rpm, remaining: 0, resetSeconds: seconds };
  if (limits.tpm > 0 && rate.tokensInWindow >= limits.tpm) return { name: "tokens_per_minute", limit: limits.tpm, remaining: 0, resetSeconds: seconds };
  if (limits.concurrency > 0 && rate.open >= limits.concurrency) return { name: "concurrency", limit: limits.concurrency, remaining: 0, resetSeconds: seconds };
  if (limits.rpm > 0) return { name: "requests_per_minute", limit: limits.rpm, remaining: 0, resetSeconds: seconds };
  if (limits.tpm > 0) return { name: "tokens_per_minute", limit: limits.tpm, remaining: 0, resetSeconds: seconds };
  return { name: "concurrency", limit: limits.concurrency > 0 ? limits.concurrency : null, remaining: 0, resetSeconds: seconds };
}

/** A reset in whole seconds, rounded up (0 when nothing waits). */
export function resetSeconds(ms: number): number {
  return ms > 0 ? Math.ceil(ms / 1000) : 0;
}

/** A reset as the x-ratelimit-reset-* header value: whole seconds, rounded up ("0s" when nothing waits). */
export function resetHeaderValue(ms: number): string {
  return `${resetSeconds(ms)}s`;
}

/** The x-ratelimit-* headers of these figures, in a fixed order (lower-case names). */
export function rateHeaders(f: RateFigures): Array<[string, string]> {
  const out: Array<[string, string]> = [];
  const r = f.requests;
  if (r !== null) {
    out.push(["x-ratelimit-limit-requests", String(r.limit)], ["x-ratelimit-remaining-requests", String(r.remaining)], ["x-ratelimit-reset-requests", resetHeaderValue(r.resetMs)]);
  }
  const t = f.tokens;
  if (t !== null) {
    out.push(["x-ratelimit-limit-tokens", String(t.limit)], ["x-ratelimit-remaining-tokens", String(t.remaining)], ["x-ratelimit-reset-tokens", resetHeaderValue(t.resetMs)]);
  }
  return out;
}
