// The deny body in the client SDK's shape (src/policy/denyShape.ts): every reason in every
// dialect, and which routes get which dialect.
import { expect } from "chai";
import { denyBody, denyDialect, UNAVAILABLE, type Dialect } from "../../src/policy/denyShape.js";
import { REASONS, REASON_TABLE, type DenyReason } from "../../src/policy/reasons.js";
import { limitHit } from "../../src/policy/rateFigures.js";

describe("deny shapes (policy/denyShape.ts)", () => {
  const reasons = REASONS.filter((r): r is DenyReason => r !== "ALLOWED");

  for (const reason of reasons) {
    it(`${reason}: the reason's status and message in all three shapes`, () => {
      const info = REASON_TABLE[reason];
      const o = denyBody(reason, "openai");
      expect(o.status).to.equal(info.httpStatus);
      expect(JSON.parse(o.body)).to.deep.equal({ error: { message: info.message, type: info.errorType, code: info.errorCode, param: null } });
      const a = JSON.parse(denyBody(reason, "anthropic").body);
      expect(a.type).to.equal("error");
      expect(a.error.message).to.equal(info.message);
      expect(a.error.type).to.match(/_error$/);
      const g = JSON.parse(denyBody(reason, "google").body);
      expect(g.error.code).to.equal(info.httpStatus);
      expect(g.error.message).to.equal(info.message);
      expect(g.error.status).to.match(/^[A-Z_]+$/).and.not.equal("UNKNOWN");
    });
  }

  it("Anthropic's error types follow the status", () => {
    const type = (r: DenyReason) => JSON.parse(denyBody(r, "anthropic").body).error.type;
    expect(type("KEY_INVALID")).to.equal("authentication_error");
    expect(type("IP_NOT_ALLOWED")).to.equal("permission_error");
    expect(type("ACCOUNT_BALANCE_EXHAUSTED")).to.equal("billing_error");
    expect(type("RATE_LIMITED")).to.equal("rate_limit_error");
    expect(type("MALFORMED_REQUEST")).to.equal("invalid_request_error");
  });

  it("GROUP_BUDGET_EXHAUSTED: 429 insufficient_quota, its own message, the limit named without the group's figures", () => {
    const hit = limitHit("GROUP_BUDGET_EXHAUSTED", { rpm: 0, tpm: 0, concurrency: 0 }, { requestsInWindow: 0, tokensInWindow: 0, open: 0, windowResetMs: 0 }, 0, 5);
    const o = denyBody("GROUP_BUDGET_EXHAUSTED", "openai", hit);
    expect(o.status).to.equal(429);
    expect(JSON.parse(o.body).error).to.deep.include({ type: "insufficient_quota", code: "insufficient_quota", message: "The budget of this API key's group is exhausted for the current period." });
    expect(JSON.parse(o.body).error.limit).to.deep.equal({ name: "group_budget", limit: null, remaining: null, reset_seconds: null });
    expect(JSON.parse(denyBody("GROUP_BUDGET_EXHAUSTED", "anthropic").body).error.type).to.equal("rate_limit_error");
    expect(JSON.parse(denyBody("GROUP_BUDGET_EXHAUSTED", "google").body).error.status).to.equal("RESOURCE_EXHAUSTED");
  });

  it("UNAVAILABLE (not a verdict) renders as 503 in every shape", () => {
    for (const d of ["openai", "anthropic", "google"] as Dialect[]) expect(denyBody(UNAVAILABLE, d).status).to.equal(503);
    expect(JSON.parse(denyBody(UNAVAILABLE, "google").body).error.status).to.equal("UNAVAILABLE");
  });

  const none = () => false;
  const only = (name: string) => (n: string) => n === name;
  const cases: [string, string, (n: string) => boolean, Dialect][] = [
    ["OpenAI chat", "/v1/chat/completions", none, "openai"],
    ["OpenAI with a bearer", "/v1/embeddings?x=1", only("authorization"), "openai"],
    ["Azure (api-key)", "/openai/deployments/gpt-4o/chat/completions", only("api-key"), "openai"],
    ["Anthropic messages", "/v1/messages", none, "anthropic"],
    ["Anthropic count_tokens", "/v1/messages/count_tokens", none, "anthropic"],
    ["x-api-key anywhere", "/v1/chat/completions", only("x-api-key"), "anthropic"],
    ["anthropic-version", "/v1/models", only("anthropic-version"), "anthropic"],
    ["Gemini v1beta", "/v1beta/models/gemini-2.0-flash:generateContent", none, "google"],
    ["Gemini v1 verb", "/v1/models/gemini-2.0-flash:streamGenerateContent?alt=sse", none, "google"],
    ["Vertex AI", "/v1/projects/p/locations/l/publishers/google/models/gemini-2.0-flash:generateContent", none, "google"],
    ["x-goog-api-key", "/v1/whatever", only("x-goog-api-key"), "google"],
    ["the path wins over x-api-key", "/v1beta/models/m:generateContent", only("x-api-key"), "google"],
    ["OpenAI model retrieve is not Gemini", "/v1/models/gpt-4o", none, "openai"],
  ];
  for (const [name, path, has, want] of cases) {
    it(`denyDialect: ${name} → ${want}`, () => expect(denyDialect(path, has)).to.equal(want));
  }
});
