// aisa.v1 Check / Consume / ConsumeBatch as JSON over HTTP (POST /v1/check, /v1/consume,
// /v1/consume:batch): the same fields and semantics as the gRPC methods, errors as JSON with
// the gRPC code's name and the field.
import { expect } from "chai";
import type { CreateKeyResponse } from "../../src/gen/aisa/v1/admin.js";
import { call, removeDir, startTestSidecar, type TestSidecar } from "../helpers/sidecar.js";

async function post(s: TestSidecar, path: string, body: unknown, headers: Record<string, string> = {}): Promise<{ status: number; json: any }> {
  const res = await fetch(`http://${s.httpAddress}${path}`, { method: "POST", headers: { "content-type": "application/json", ...headers }, body: typeof body === "string" ? body : JSON.stringify(body) });
  return { status: res.status, json: await res.json() };
}

describe("HTTP JSON API (aisa.v1 over HTTP)", function () {
  this.timeout(60_000);
  let s: TestSidecar;
  let key: CreateKeyResponse;

  before(async () => {
    s = await startTestSidecar();
    const admin = <Res>(method: string, req: unknown) => call<unknown, Res>(s.admin, method, req, s.meta());
    await admin("adjustBalance", { accountId: "default", delta: "1000000000", reason: "seed" });
    await admin("setPrice", { price: { model: "gpt-4o-mini", inputPerMillion: "75000", outputPerMillion: "300000", perRequest: "0" } });
    key = await admin<CreateKeyResponse>("createKey", { spec: { name: "json", quota: "100000000" } });
  });

  after(async () => {
    if (!s) return;
    await s.close();
    await removeDir(s.dir);
  });

  it("POST /v1/check allows and reserves; a deny is data (allowed false, reason, http_status)", async () => {
    const ok = await post(s, "/v1/check", { api_key: key.secret, model: "gpt-4o-mini", client_ip: "203.0.113.7", max_tokens: 100 });
    expect(ok.status).to.equal(200);
    expect(ok.json).to.include({ allowed: true, reason: "REASON_ALLOWED", http_status: 200, key_id: key.key!.id, account_id: "default", group: "default" });
    expect(ok.json.reservation_id).to.match(/^rsv_/);
    expect(ok.json.reserved_units).to.match(/^[1-9]\d*$/);
    expect(ok.json.limits).to.have.keys("rpm_remaining", "tpm_remaining", "concurrency_remaining", "retry_after_ms");
    const no = await post(s, "/v1/check", { apiKey: "sk-unknownunknownunknownunknownunknownunknown1" });
    expect(no.status).to.equal(200);
    expect(no.json).to.include({ allowed: false, reason: "REASON_KEY_INVALID", http_status: 401, reservation_id: "" });
  });

  it("POST /v1/consume charges once per request_id (a replay answers the first), settling the reservation", async () => {
    const c = await post(s, "/v1/check", { api_key: key.secret, model: "gpt-4o-mini" });
    const req = { request_id: "json-1", reservation_id: c.json.reservation_id, model: "gpt-4o-mini", input_tokens: 1000, output_tokens: "500" };
    const first = await post(s, "/v1/consume", req);
    expect(first.status, JSON.stringify(first.json)).to.equal(200);
    expect(first.json).to.include({ replayed: false, key_id: key.key!.id, key_unlimited: false });
    expect(Number(first.json.units_charged)).to.be.greaterThan(0);
    const again = await post(s, "/v1/consume", req);
    expect(again.json).to.deep.equal({ ...first.json, replayed: true });
    const other = await post(s, "/v1/consume", { ...req, output_tokens: 501 });
    expect(other.status).to.equal(409);
    expect(other.json.error.code).to.equal("ALREADY_EXISTS");
  });

  it("errors: JSON with the gRPC code's name and the field", async () => {
    const cases: [unknown, number, string, string | undefined][] = [
      [{ key_id: key.key!.id, units: 1 }, 400, "INVALID_ARGUMENT", "request_id"],
      [{ request_id: "e-1", key_id: key.key!.id, input_tokens: "lots" }, 400, "INVALID_ARGUMENT", "input_tokens"],
      [{ request_id: "e-2", key_id: key.key!.id, units: -1 }, 400, "INVALID_ARGUMENT", "units"],
      [{ request_id: "e-3", units: 1 }, 400, "INVALID_ARGUMENT", "target"],
      [{ request_id: "e-4", key_id: "k", api_key: "sk", units: 1 }, 400, "INVALID_ARGUMENT", "target"],
      [{ request_id: "e-5", key_id: 12, units: 1 }, 400, "INVALID_ARGUMENT", "key_id"],
      [{ request_id: "e-6", key_id: "x".repeat(300), units: 1 }, 400, "INVALID_ARGUMENT", "target.key_id"],
      [{ request_id: "e-7", key_id: "key_nope", units: 1 }, 404, "NOT_FOUND", undefined],
      ["{not json", 400, "INVALID_ARGUMENT", "body"],
      ["[1,2]", 400, "INVALID_ARGUMENT", "body"],
    ];
    for (const [body, status, code, field] of cases) {
      const r = await post(s, "/v1/consume", body);
      expect(r.status, JSON.stringify(r.json)).to.equal(status);
      expect(r.json.error.code, JSON.stringify(r.json)).to.equal(code);
      expect(r.json.error.field, JSON.stringify(r.json)).to.equal(field);
      expect(r.json.error.message).to.be.a("string");
    }
    const long = await post(s, "/v1/check", { api_key: "sk-" + "x".repeat(400) });
    expect(long.status).to.equal(400);
    expect(long.json.error.field).to.equal("api_key");
  });

  it("POST /v1/consume:batch answers each item in order; one item's error is its own", async () => {
    const r = await post(s, "/v1/consume:batch", {
      items: [
        { request_id: "b-1", key_id: key.key!.id, units: "3" },
        { request_id: "", key_id: key.key!.id, units: 3 },
        { request_id: "b-1", key_id: key.key!.id, units: 3 },
      ],
    });
    expect(r.status).to.equal(200);
    expect(r.json.results).to.have.length(3);
    expect(r.json.results[0].ok).to.include({ units_charged: "3", replayed: false });
    expect(r.json.results[1].error).to.include({ code: "INVALID_ARGUMENT", field: "request_id" });
    expect(r.json.results[2].ok).to.include({ units_charged: "3", replayed: true });
    const empty = await post(s, "/v1/consume:batch", { items: [] });
    expect(empty.status).to.equal(400);
    expect(empty.json.error.field).to.equal("items");
  });

  it("only POST; a body over the route's limit is a 400 naming body", async () => {
    const get = await fetch(`http://${s.httpAddress}/v1/check`);
    expect(get.status).to.equal(405);
    expect(get.headers.get("allow")).to.equal("POST");
    await get.text();
    const big = await post(s, "/v1/consume", { request_id: "big", key_id: key.key!.id, model: "x".repeat(100_000) });
    expect(big.status).to.equal(400);
    expect(big.json.error.field).to.equal("body");
  });

  describe("with a consume token (AISA_CONSUME_TOKEN)", () => {
    let t: TestSidecar;
    before(async () => {
      t = await startTestSidecar({ consumeToken: "consume-secret-token-0123456789" });
    });
    after(async () => {
      await t.close();
      await removeDir(t.dir);
    });

    it("Consume without `authorization: Bearer <token>` is 401 UNAUTHENTICATED; Check needs none", async () => {
      const no = await post(t, "/v1/consume", { request_id: "t-1", key_id: "key_x", units: 1 });
      expect(no.status).to.equal(401);
      expect(no.json.error.code).to.equal("UNAUTHENTICATED");
      const batch = await post(t, "/v1/consume:batch", { items: [{ request_id: "t-1", key_id: "key_x", units: 1 }] }, { authorization: "Bearer wrong" });
      expect(batch.status).to.equal(401);
      const withToken = await post(t, "/v1/consume", { request_id: "t-1", key_id: "key_x", units: 1 }, { authorization: "Bearer consume-secret-token-0123456789" });
      expect(withToken.status).to.equal(404); // past the token: the key does not exist
      expect((await post(t, "/v1/check", { api_key: "sk-nope" })).status).to.equal(200);
    });
  });
});
