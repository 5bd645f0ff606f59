// A key-quota deny names its reset when a refill is due (issue 19 item 4): error.limit.reset_seconds
// and retry-after (gRPC Check retry_after_ms, Envoy-style HTTP forward-auth), counted to the next
// boundary in the ACCOUNT's time zone; next_reset_at (GetKey) uses that zone too. A key without a
// refill: no reset, no retry-after (waiting does not help).
import { expect } from "chai";
import type { CreateKeyResponse } from "../../src/gen/aisa/v1/admin.js";
import type { CheckResponse } from "../../src/gen/aisa/v1/authorizer.js";
import { RefillPeriod, type Key } from "../../src/gen/aisa/v1/types.js";
import { call, removeDir, startTestSidecar, type TestSidecar } from "../helpers/sidecar.js";

const DAY = 86_400_000;
const TOKYO = 9 * 3_600_000; // UTC+9, no DST

describe("key-quota deny: the reset of the next refill, in the account's time zone", function () {
  this.timeout(60_000);
  let s: TestSidecar;
  let daily: CreateKeyResponse;
  let none: CreateKeyResponse;
  const admin = <Res>(method: string, req: unknown) => call<unknown, Res>(s.admin, method, req, s.meta());

  before(async () => {
    s = await startTestSidecar();
    await admin("createAccount", { id: "tokyo", name: "tokyo", initialBalance: "10000000", timezone: "Asia/Tokyo" });
    await admin("setPrice", { price: { model: "gpt-4o-mini", inputPerMillion: "75000", outputPerMillion: "300000", perRequest: "0" } });
    daily = await admin<CreateKeyResponse>("createKey", { accountId: "tokyo", spec: { name: "daily", quota: "0", refill: RefillPeriod.REFILL_PERIOD_DAILY } });
    none = await admin<CreateKeyResponse>("createKey", { accountId: "tokyo", spec: { name: "none", quota: "0" } });
  });
  after(async () => {
    await s?.close();
    if (s) await removeDir(s.dir);
  });

  const tokyoMidnight = (now: number) => Math.floor((now + TOKYO) / DAY) * DAY + DAY - TOKYO;

  it("gRPC Check: retry_after_ms runs to the next Tokyo midnight; GetKey's next_reset_at is that instant", async () => {
    const now = Date.now();
    const c = await call<unknown, CheckResponse>(s.authorizer, "check", { apiKey: daily.secret, model: "gpt-4o-mini", clientIp: "203.0.113.7" });
    expect(c.allowed).to.equal(false);
    const want = tokyoMidnight(now) - now;
    expect(Number(c.limits!.retryAfterMs)).to.be.within(Math.max(1000, want - 5000), want + 5000);
    const k = await admin<Key>("getKey", { id: daily.key!.id });
    expect(k.nextResetAt!.toISOString()).to.equal(new Date(tokyoMidnight(Date.now())).toISOString());
    expect(k.nextResetAt!.getUTCHours()).to.equal(15);
  });

  it("forward-auth: 429 with retry-after and error.limit.reset_seconds; a key without refill has neither", async () => {
    const ask = (secret: string) =>
      fetch(`http://${s.httpAddress}/auth`, { headers: { authorization: `Bearer ${secret}`, "x-original-uri": "/openai/deployments/gpt-4o-mini/chat/completions", "x-original-method": "POST" } });
    const now = Date.now();
    const r = await ask(daily.secret);
    const body = (await r.json()) as any;
    expect(r.status).to.equal(429);
    expect(body.error.code).to.equal("insufficient_quota");
    const want = Math.ceil((tokyoMidnight(now) - now) / 1000);
    expect(body.error.limit.name).to.equal("key_quota");
    expect(body.error.limit.reset_seconds).to.be.within(want - 5, want + 5);
    expect(r.headers.get("retry-after")).to.equal(String(body.error.limit.reset_seconds));
    expect(JSON.parse(r.headers.get("x-aisa-limit")!)).to.deep.equal(body.error.limit);
    const n = await ask(none.secret);
    const nb = (await n.json()) as any;
    expect(n.status).to.equal(429);
    expect(nb.error.limit).to.deep.equal({ name: "key_quota", limit: null, remaining: 0, reset_seconds: null });
    expect(n.headers.get("retry-after")).to.equal(null);
  });

  it("nginx's /deny re-renders the limit, retry-after and x-ratelimit-* figures it is given", async () => {
    const limit = JSON.stringify({ name: "key_quota", limit: null, remaining: 0, reset_seconds: 3600 });
    const r = await fetch(`http://${s.httpAddress}/deny`, {
      headers: { "x-aisa-reason": "KEY_QUOTA_EXHAUSTED", "x-aisa-retry-after": "3600", "x-aisa-limit": limit, "x-original-uri": "/v1/chat/completions", "x-ratelimit-limit-requests": "5", "x-ratelimit-remaining-requests": "bogus" },
    });
    const body = (await r.json()) as any;
    expect(r.status).to.equal(429);
    expect(r.headers.get("retry-after")).to.equal("3600");
    expect(body.error.limit).to.deep.equal(JSON.parse(limit));
    expect(r.headers.get("x-ratelimit-limit-requests")).to.equal("5");
    expect(r.headers.get("x-ratelimit-remaining-requests"), "a malformed figure is dropped").to.equal(null);
    const bad = await fetch(`http://${s.httpAddress}/deny`, { headers: { "x-aisa-reason": "KEY_QUOTA_EXHAUSTED", "x-aisa-limit": '{"name":"x","limit":1}' } });
    expect(((await bad.json()) as any).error.limit).to.equal(undefined);
  });
});
