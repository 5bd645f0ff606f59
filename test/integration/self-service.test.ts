// Self-service for account holders (issue 19 item 6): an account token reads its balance, each
// key's remaining, reserved and next reset, and its usage by day — through the admin gRPC API
// (GetAccount, ListKeys/GetKey with next_reset_at, QueryUsage) and the JSON HTTP API
// (GET /v1/account, /v1/keys, /v1/usage?days=) — and never another account's.
import { expect } from "chai";
import { status } from "@grpc/grpc-js";
import type { CreateKeyResponse, CreateTokenResponse, ListKeysResponse } from "../../src/gen/aisa/v1/admin.js";
import type { CheckResponse, ConsumeResponse } from "../../src/gen/aisa/v1/authorizer.js";
import { RefillPeriod, type Key } from "../../src/gen/aisa/v1/types.js";
import { call, expectGrpcError, removeDir, startTestSidecar, type TestSidecar } from "../helpers/sidecar.js";

describe("self-service: an account token reads its balance, keys and usage (gRPC and JSON)", function () {
  this.timeout(60_000);
  let s: TestSidecar;
  let acme: string;
  let beta: string;
  let acmeKey: CreateKeyResponse;
  let betaKey: CreateKeyResponse;
  const admin = <Res>(method: string, req: unknown, token?: string) => call<unknown, Res>(s.admin, method, req, s.meta(token));
  const get = async (path: string, token?: string) => {
    const res = await fetch(`http://${s.httpAddress}${path}`, { headers: token ? { authorization: `Bearer ${token}` } : {} });
    return { status: res.status, json: (await res.json()) as any };
  };

  before(async () => {
    s = await startTestSidecar();
    for (const id of ["acme", "beta"]) await admin("createAccount", { id, name: id, initialBalance: "10000000" });
    acme = (await admin<CreateTokenResponse>("createToken", { name: "acme", accountId: "acme" })).secret;
    beta = (await admin<CreateTokenResponse>("createToken", { name: "beta", accountId: "beta" })).secret;
    await admin("setPrice", { price: { model: "gpt-4o-mini", inputPerMillion: "75000", outputPerMillion: "300000" } });
    acmeKey = await admin<CreateKeyResponse>("createKey", { spec: { name: "acme monthly", quota: "1000000", refill: RefillPeriod.REFILL_PERIOD_MONTHLY } }, acme);
    betaKey = await admin<CreateKeyResponse>("createKey", { spec: { name: "beta daily", quota: "5000", refill: RefillPeriod.REFILL_PERIOD_DAILY } }, beta);
    // One settled request and one open reservation on acme's key.
    const c1 = await call<unknown, CheckResponse>(s.authorizer, "check", { apiKey: acmeKey.secret, model: "gpt-4o-mini", clientIp: "203.0.113.7" });
    expect(c1.allowed).to.equal(true);
    await call<unknown, ConsumeResponse>(s.authorizer, "consume", { requestId: "self-1", target: { $case: "reservationId", value: c1.reservationId }, model: "gpt-4o-mini", inputTokens: "1000", outputTokens: "500" });
    const c2 = await call<unknown, CheckResponse>(s.authorizer, "check", { apiKey: acmeKey.secret, model: "gpt-4o-mini", clientIp: "203.0.113.7" });
    expect(c2.allowed).to.equal(true);
  });
  after(async () => {
    await s?.close();
    if (s) await removeDir(s.dir);
  });

  it("gRPC: GetAccount, ListKeys with remaining, reserved and next_reset_at, scoped to the token's account", async () => {
    const a = await admin<{ balance: string; reserved: string }>("getAccount", { id: "acme" }, acme);
    expect(Number(a.balance)).to.equal(10_000_000 - 225); // 1000·75000/1M + 500·300000/1M = 75 + 150
    expect(Number(a.reserved)).to.be.greaterThan(0);
    const list = await admin<ListKeysResponse>("listKeys", {}, acme);
    expect(list.keys.map((k) => k.id)).to.deep.equal([acmeKey.key!.id]);
    const k = list.keys[0]!;
    expect(Number(k.quota!.remaining)).to.equal(1_000_000 - 225);
    expect(Number(k.quota!.reserved)).to.be.greaterThan(0);
    const now = new Date();
    expect(k.nextResetAt?.toISOString()).to.equal(new Date(Date.UTC(now.getUTCFullYear(), now.getUTCMonth() + 1, 1)).toISOString());
    const b = await admin<Key>("getKey", { id: betaKey.key!.id }, beta);
    expect(b.nextResetAt!.getTime()).to.equal(Math.floor(Date.now() / 86_400_000) * 86_400_000 + 86_400_000);
    // Another account's account and key: NOT_FOUND, as for any unknown id.
    await expectGrpcError(admin("getAccount", { id: "acme" }, beta), status.NOT_FOUND);
    await expectGrpcError(admin("getKey", { id: acmeKey.key!.id }, beta), status.NOT_FOUND);
  });

  it("JSON: GET /v1/account and /v1/keys with the account token", async () => {
    const a = await get("/v1/account", acme);
    expect(a.status).to.equal(200);
    expect(a.json.account).to.include({ id: "acme", balance: String(10_000_000 - 225) });
    expect(Number(a.json.account.available)).to.equal(Number(a.json.account.balance) - Number(a.json.account.reserved));
    const k = await get("/v1/keys", acme);
    expect(k.status).to.equal(200);
    expect(k.json.keys).to.have.length(1);
    const key = k.json.keys[0];
    expect(key).to.include({ id: acmeKey.key!.id, total: "1000000", remaining: String(1_000_000 - 225), refill: "monthly", unlimited: false });
    expect(Number(key.reserved)).to.be.greaterThan(0);
    expect(Number(key.spendable)).to.equal(Number(key.remaining) - Number(key.reserved));
    expect(key.next_reset_at).to.match(/^\d{4}-\d{2}-01T00:00:00\.000Z$/);
    expect(JSON.stringify(k.json)).to.not.include(acmeKey.secret);
  });

  it("JSON: GET /v1/usage?days=N — one row per UTC day, today's charge counted", async () => {
    const u = await get("/v1/usage?days=7", acme);
    expect(u.status).to.equal(200);
    expect(u.json.days).to.have.length(7);
    const today = u.json.days[6];
    expect(today.date).to.equal(new Date().toISOString().slice(0, 10));
    expect(today).to.include({ units: "225", input_tokens: "1000", output_tokens: "500", requests: "2" });
    expect(u.json.days.slice(0, 6).every((d: any) => d.units === "0")).to.equal(true);
    expect((await get("/v1/usage", acme)).json.days).to.have.length(30);
    for (const bad of ["0", "367", "1.5", "x"]) {
      const r = await get(`/v1/usage?days=${bad}`, acme);
      expect(r.status, bad).to.equal(400);
      expect(r.json.error.field).to.equal("days");
    }
  });

  it("tenant isolation: a token cannot read another account by ?account=, and sees only its own keys and usage", async () => {
    for (const path of ["/v1/account?account=acme", "/v1/keys?account=acme", "/v1/usage?account=acme"]) {
      const r = await get(path, beta);
      expect(r.status, path).to.equal(404);
      expect(r.json.error.code).to.equal("NOT_FOUND");
    }
    const k = await get("/v1/keys", beta);
    expect(k.json.keys.map((x: any) => x.id)).to.deep.equal([betaKey.key!.id]);
    const u = await get("/v1/usage?days=1", beta);
    expect(u.json.account_id).to.equal("beta");
    expect(u.json.days[0].units).to.equal("0");
    // The operator chooses the account.
    expect((await get("/v1/account?account=acme", s.adminToken)).json.account.id).to.equal("acme");
  });

  it("no token, a wrong token, or a method other than GET", async () => {
    expect((await get("/v1/account")).status).to.equal(401);
    expect((await get("/v1/keys", "aat-not-a-token")).status).to.equal(401);
    const r = await fetch(`http://${s.httpAddress}/v1/account`, { method: "POST", headers: { authorization: `Bearer ${acme}` } });
    expect(r.status).to.equal(405);
    expect(r.headers.get("allow")).to.equal("GET");
  });
});
