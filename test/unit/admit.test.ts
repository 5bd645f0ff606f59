import { expect } from "chai";
import { admit, MIN_RETRY_AFTER_MS } from "../../src/policy/admit.js";
import { NO_LIMITS, type RateLimits } from "../../src/domain/types.js";
import type { RateView } from "../../src/policy/types.js";

const idle: RateView = { requestsInWindow: 0, tokensInWindow: 0, open: 0, windowResetMs: 0 };
const lim = (l: Partial<RateLimits>): RateLimits => ({ ...NO_LIMITS, ...l });

describe("admit: the one admission money rule (Check's verdict and every engine's reserve)", () => {
  const cases: { name: string; args: Parameters<typeof admit>; want: ReturnType<typeof admit> | { reason: string; retryAfterMs: number } }[] = [
    { name: "allows when balance and quota cover the units", args: [10, 10, false, 10, NO_LIMITS, idle], want: null },
    { name: "denies ACCOUNT_BALANCE_EXHAUSTED for an unknown account (NaN)", args: [1, NaN, true, 0, NO_LIMITS, idle], want: { reason: "ACCOUNT_BALANCE_EXHAUSTED", retryAfterMs: 0 } },
    { name: "denies ACCOUNT_BALANCE_EXHAUSTED for 0 units on an empty account", args: [0, 0, true, 0, NO_LIMITS, idle], want: { reason: "ACCOUNT_BALANCE_EXHAUSTED", retryAfterMs: 0 } },
    { name: "denies ACCOUNT_BALANCE_EXHAUSTED when the balance does not cover the units", args: [11, 10, true, 0, NO_LIMITS, idle], want: { reason: "ACCOUNT_BALANCE_EXHAUSTED", retryAfterMs: 0 } },
    { name: "balance is checked before quota", args: [11, 10, false, 0, NO_LIMITS, idle], want: { reason: "ACCOUNT_BALANCE_EXHAUSTED", retryAfterMs: 0 } },
    { name: "denies KEY_QUOTA_EXHAUSTED when the quota does not cover the units", args: [5, 10, false, 4, NO_LIMITS, idle], want: { reason: "KEY_QUOTA_EXHAUSTED", retryAfterMs: 0 } },
    { name: "an unlimited key ignores its quota", args: [5, 10, true, 0, NO_LIMITS, idle], want: null },
    { name: "RATE_LIMITED by rpm waits for the window, at least the minimum", args: [1, 10, true, 0, lim({ rpm: 2 }), { ...idle, requestsInWindow: 2, windowResetMs: 200 }], want: { reason: "RATE_LIMITED", retryAfterMs: MIN_RETRY_AFTER_MS } },
    { name: "RATE_LIMITED by tpm rounds the window's wait up", args: [1, 10, true, 0, lim({ tpm: 100 }), { ...idle, tokensInWindow: 100, windowResetMs: 4500.2 }], want: { reason: "RATE_LIMITED", retryAfterMs: 4501 } },
    { name: "RATE_LIMITED by concurrency waits the minimum", args: [1, 10, true, 0, lim({ concurrency: 1 }), { ...idle, open: 1 }], want: { reason: "RATE_LIMITED", retryAfterMs: MIN_RETRY_AFTER_MS } },
    { name: "several tripped limits: the longest wait", args: [1, 10, true, 0, lim({ rpm: 1, concurrency: 1 }), { ...idle, requestsInWindow: 1, open: 1, windowResetMs: 30_000 }], want: { reason: "RATE_LIMITED", retryAfterMs: 30_000 } },
    { name: "a limit under its bound allows", args: [1, 10, true, 0, lim({ rpm: 2, tpm: 100, concurrency: 2 }), { requestsInWindow: 1, tokensInWindow: 99, open: 1, windowResetMs: 5 }], want: null },
  ];
  for (const c of cases) it(c.name, () => expect(admit(...c.args)).to.deep.equal(c.want));
});
