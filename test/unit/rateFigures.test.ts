// The x-ratelimit figures and the deny body's `limit` (src/policy/rateFigures.ts, denyShape.ts): pure.
import { expect } from "chai";
import { denyBody } from "../../src/policy/denyShape.js";
import { limitHit, NO_FIGURES, rateFigures, rateHeaders, resetHeaderValue } from "../../src/policy/rateFigures.js";
import { nextReset } from "../../src/domain/nextReset.js";

const rate = (over: Partial<{ requestsInWindow: number; tokensInWindow: number; open: number; windowResetMs: number }> = {}) => ({ requestsInWindow: 0, tokensInWindow: 0, open: 0, windowResetMs: 0, ...over });

describe("rate figures (issue 19 item 4)", () => {
  it("no rpm and no tpm: the shared empty figures, no headers", () => {
    expect(rateFigures({ rpm: 0, tpm: 0, concurrency: 5 }, rate(), true)).to.equal(NO_FIGURES);
    expect(rateHeaders(NO_FIGURES)).to.deep.equal([]);
  });

  it("an admitted request counts itself; an empty window resets 60 s after it", () => {
    const f = rateFigures({ rpm: 10, tpm: 0, concurrency: 0 }, rate(), true);
    expect(f.requests).to.deep.equal({ limit: 10, remaining: 9, resetMs: 60_000 });
    expect(f.tokens).to.equal(null);
    const g = rateFigures({ rpm: 10, tpm: 1000, concurrency: 0 }, rate({ requestsInWindow: 4, tokensInWindow: 1200, windowResetMs: 12_345.2 }), false);
    expect(g.requests).to.deep.equal({ limit: 10, remaining: 6, resetMs: 12_346 });
    expect(g.tokens).to.deep.equal({ limit: 1000, remaining: 0, resetMs: 12_346 });
    expect(rateHeaders(g)).to.deep.equal([
      ["x-ratelimit-limit-requests", "10"],
      ["x-ratelimit-remaining-requests", "6"],
      ["x-ratelimit-reset-requests", "13s"],
      ["x-ratelimit-limit-tokens", "1000"],
      ["x-ratelimit-remaining-tokens", "0"],
      ["x-ratelimit-reset-tokens", "13s"],
    ]);
    expect(resetHeaderValue(0)).to.equal("0s");
  });

  it("which limit a deny hit, in admit()'s order; money denials say waiting does not help", () => {
    const limits = { rpm: 5, tpm: 100, concurrency: 2 };
    expect(limitHit("RATE_LIMITED", limits, rate({ requestsInWindow: 5, tokensInWindow: 200, open: 2 }), 4100, 0)).to.deep.equal({ name: "requests_per_minute", limit: 5, remaining: 0, resetSeconds: 5 });
    expect(limitHit("RATE_LIMITED", limits, rate({ tokensInWindow: 200 }), 1000, 0)!.name).to.equal("tokens_per_minute");
    expect(limitHit("RATE_LIMITED", limits, rate({ open: 2 }), 1000, 0)!.name).to.equal("concurrency");
    expect(limitHit("KEY_QUOTA_EXHAUSTED", limits, rate(), 0, -40)).to.deep.equal({ name: "key_quota", limit: null, remaining: 0, resetSeconds: null });
    expect(limitHit("ACCOUNT_BALANCE_EXHAUSTED", limits, rate(), 0, 10)!.remaining).to.equal(null);
    // A group budget deny: when it resets (whole seconds up, at least 1), never the group's figures.
    expect(limitHit("GROUP_BUDGET_EXHAUSTED", limits, rate(), 0, 10, 3_600_500)).to.deep.equal({ name: "group_budget", limit: null, remaining: null, resetSeconds: 3601 });
    expect(limitHit("GROUP_BUDGET_EXHAUSTED", limits, rate(), 0, 10, 20)!.resetSeconds).to.equal(1);
    expect(limitHit("GROUP_BUDGET_EXHAUSTED", limits, rate(), 0, 10)!.resetSeconds).to.equal(null);
    expect(limitHit("ACCOUNT_BALANCE_EXHAUSTED", limits, rate(), 0, 10, 5000)!.resetSeconds, "a balance never resets by waiting").to.equal(null);
    expect(limitHit("KEY_INVALID", limits, rate(), 0, 10)).to.equal(null);
  });

  it("the deny body carries error.limit in every dialect, and is unchanged without one", () => {
    const hit = limitHit("RATE_LIMITED", { rpm: 1, tpm: 0, concurrency: 0 }, rate({ requestsInWindow: 1 }), 30_000, 0)!;
    expect(JSON.parse(denyBody("RATE_LIMITED", "openai", hit).body).error.limit).to.deep.equal({ name: "requests_per_minute", limit: 1, remaining: 0, reset_seconds: 30 });
    expect(JSON.parse(denyBody("RATE_LIMITED", "anthropic", hit).body).error.limit.name).to.equal("requests_per_minute");
    expect(JSON.parse(denyBody("RATE_LIMITED", "google", hit).body).error.limit.reset_seconds).to.equal(30);
    expect(denyBody("RATE_LIMITED", "openai").body).to.not.include("limit\"");
  });

  it("next reset: the start of the next UTC day, ISO week (Monday) or month; none without a refill", () => {
    const t = Date.UTC(2028, 1, 29, 13, 0); // Tuesday 29 Feb 2028 (leap day)
    expect(nextReset({ refill: "daily", unlimited: false }, t)).to.equal(Date.UTC(2028, 2, 1));
    expect(nextReset({ refill: "weekly", unlimited: false }, t)).to.equal(Date.UTC(2028, 2, 6));
    expect(nextReset({ refill: "monthly", unlimited: false }, t)).to.equal(Date.UTC(2028, 2, 1));
    expect(nextReset({ refill: "monthly", unlimited: false }, Date.UTC(2027, 11, 31, 23, 59))).to.equal(Date.UTC(2028, 0, 1));
    expect(nextReset({ refill: "none", unlimited: false }, t)).to.equal(null);
    expect(nextReset({ refill: "daily", unlimited: true }, t)).to.equal(null);
  });
});
