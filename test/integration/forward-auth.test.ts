// The HTTP forward-auth endpoint (--http-listen, transport/http) spoken to directly, as each
// proxy speaks to it: the original request rebuilt from X-Original-URI / X-Forwarded-Uri /
// Envoy http_service's path prefix, the client IP under the trusted-hops rule, the same
// verdicts and deny bodies as Envoy's Check, and bad input answered as a 400 deny.
import { expect } from "chai";
import * as net from "node:net";
import * as grpc from "@grpc/grpc-js";
import type { CreateKeyResponse } from "../../src/gen/aisa/v1/admin.js";
import { AuthorizationClient, CheckRequest, type CheckResponse } from "../../src/gen/envoy/service/auth/v3/external_auth.js";
import { call, removeDir, startTestSidecar, type TestSidecar } from "../helpers/sidecar.js";

interface Got {
  status: number;
  headers: Headers;
  json: any;
}

async function auth(s: TestSidecar, path: string, headers: Record<string, string>, init: { method?: string; body?: string } = {}): Promise<Got> {
  const res = await fetch(`http://${s.httpAddress}${path}`, { method: init.method ?? "GET", headers, body: init.body });
  const text = await res.text();
  return { status: res.status, headers: res.headers, json: text ? JSON.parse(text) : null };
}

async function seed(s: TestSidecar): Promise<Record<string, string>> {
  const admin = <Res>(method: string, req: unknown) => call<unknown, Res>(s.admin, method, req, s.meta());
  await admin("adjustBalance", { accountId: "default", delta: "1000000000", reason: "test seed" });
  for (const model of ["gpt-4o-mini", "gpt-4o"]) await admin("setPrice", { price: { model, inputPerMillion: "75000", outputPerMillion: "300000", perRequest: "0" } });
  const secrets: Record<string, string> = {};
  for (const [name, spec] of Object.entries<Record<string, unknown>>({
    valid: { unlimited: true },
    "ip-restricted": { unlimited: true, ips: ["10.0.0.0/8"] },
    "model-restricted": { unlimited: true, models: ["gpt-4o-mini"] },
  })) {
    secrets[name] = (await admin<CreateKeyResponse>("createKey", { spec: { name, ...spec } })).secret;
  }
  return secrets;
}

/** Sends raw bytes and returns the raw reply (for what fetch refuses to send). */
function raw(address: string, bytes: string): Promise<string> {
  const i = address.lastIndexOf(":");
  return new Promise((resolve, reject) => {
    const sock = net.connect(Number(address.slice(i + 1)), address.slice(0, i));
    let out = "";
    sock.on("data", (d) => (out += d.toString("utf8")));
    sock.on("end", () => resolve(out));
    sock.on("close", () => resolve(out));
    sock.on("error", reject);
    sock.write(bytes);
  });
}

describe("HTTP forward-auth endpoint (direct)", function () {
  this.timeout(60_000);
  let s: TestSidecar;
  let hops1: TestSidecar;
  let secrets: Record<string, string>;
  let secrets1: Record<string, string>;

  before(async () => {
    s = await startTestSidecar({ dataMaxMessageBytes: 4096 });
    secrets = await seed(s);
    hops1 = await startTestSidecar({ xffTrustedHops: 1 });
    secrets1 = await seed(hops1);
  });

  after(async () => {
    for (const x of [s, hops1]) {
      if (!x) continue;
      await x.close();
      await removeDir(x.dir);
    }
  });

  const bearer = (k: string) => ({ authorization: `Bearer ${k}` });

  it("allows with 200 and x-aisa-key-id / -account-id / -group / -reservation (nginx: X-Original-URI)", async () => {
    const r = await auth(s, "/auth", { ...bearer(secrets["valid"]!), "x-original-uri": "/v1/chat/completions", "x-original-method": "POST" });
    expect(r.status).to.equal(200);
    expect(r.headers.get("x-aisa-key-id")).to.match(/^key_/);
    expect(r.headers.get("x-aisa-account-id")).to.equal("default");
    expect(r.headers.get("x-aisa-group")).to.equal("default");
    expect(r.headers.get("x-aisa-reservation")).to.match(/^rsv_/);
    expect(r.headers.get("x-aisa-reason")).to.equal(null);
  });

  it("x-ratelimit-* on every allow and deny of a key with limits; the deny body names the limit and retry-after says when", async () => {
    const admin = <Res>(method: string, req: unknown) => call<unknown, Res>(s.admin, method, req, s.meta());
    const k = await admin<CreateKeyResponse>("createKey", { spec: { name: "limited", unlimited: true, limits: { rpm: 2, tpm: 1000 } } });
    const h = { ...bearer(k.secret), "x-original-uri": "/v1/chat/completions" };
    const a1 = await auth(s, "/auth", h);
    const a2 = await auth(s, "/auth", h);
    const d = await auth(s, "/auth", h);
    expect([a1.status, a2.status, d.status]).to.deep.equal([200, 200, 429]);
    expect([a1, a2, d].map((r) => r.headers.get("x-ratelimit-remaining-requests"))).to.deep.equal(["1", "0", "0"]);
    for (const r of [a1, a2, d]) {
      expect(r.headers.get("x-ratelimit-limit-requests")).to.equal("2");
      expect(r.headers.get("x-ratelimit-reset-requests")).to.match(/^([1-9]|[1-5][0-9]|60)s$/);
      expect(r.headers.get("x-ratelimit-limit-tokens")).to.equal("1000");
      expect(r.headers.get("x-ratelimit-remaining-tokens")).to.equal("1000");
    }
    const retry = Number(d.headers.get("retry-after"));
    expect(retry).to.be.within(1, 60);
    expect(d.json.error.limit).to.deep.equal({ name: "requests_per_minute", limit: 2, remaining: 0, reset_seconds: retry });
    // A key without limits: none of the headers.
    const plain = await auth(s, "/auth", { ...bearer(secrets["valid"]!), "x-original-uri": "/v1/chat/completions" });
    expect(plain.headers.get("x-ratelimit-limit-requests")).to.equal(null);
  });

  it("Caddy/Traefik (X-Forwarded-Uri, X-Forwarded-Method) and Envoy's http_service (/auth + the original path) alike", async () => {
    const caddy = await auth(s, "/auth", { ...bearer(secrets["valid"]!), "x-forwarded-uri": "/v1/embeddings", "x-forwarded-method": "POST" });
    expect(caddy.status).to.equal(200);
    const envoy = await auth(s, "/auth/v1/chat/completions", bearer(secrets["valid"]!), { method: "POST" });
    expect(envoy.status).to.equal(200);
  });

  it("a request without the forwarded URI is a 400 deny (MALFORMED_REQUEST), never an allow", async () => {
    const r = await auth(s, "/auth", bearer(secrets["valid"]!));
    expect(r.status).to.equal(400);
    expect(r.headers.get("x-aisa-reason")).to.equal("MALFORMED_REQUEST");
    expect(r.headers.get("x-aisa-key-id")).to.equal(null);
    expect(r.json.error.code).to.equal("invalid_request");
    const notAPath = await auth(s, "/auth", { ...bearer(secrets["valid"]!), "x-original-uri": "http://evil/v1/x" });
    expect(notAPath.status).to.equal(400);
  });

  it("the credential from ?key= inside the forwarded URI", async () => {
    const r = await auth(s, "/auth", { "x-original-uri": `/v1beta/models/gpt-4o-mini:generateContent?key=${encodeURIComponent(secrets["valid"]!)}` });
    expect(r.status).to.equal(200);
  });

  it("deny: the reason's status, OpenAI JSON body, www-authenticate and x-aisa-reason", async () => {
    const r = await auth(s, "/auth", { ...bearer("sk-unknownunknownunknownunknownunknownunknown1"), "x-original-uri": "/v1/chat/completions" });
    expect(r.status).to.equal(401);
    expect(r.headers.get("www-authenticate")).to.match(/^Bearer/);
    expect(r.headers.get("x-aisa-reason")).to.equal("KEY_INVALID");
    expect(r.headers.get("content-type")).to.equal("application/json");
    expect(r.json).to.deep.equal({ error: { message: "Incorrect API key provided.", type: "invalid_request_error", code: "invalid_api_key", param: null } });
  });

  it("deny bodies in the client SDK's shape: Anthropic on /v1/messages or x-api-key, Google on Gemini routes", async () => {
    const a = await auth(s, "/auth", { "x-api-key": "sk-unknownunknownunknownunknownunknownunknown1", "x-original-uri": "/v1/messages" });
    expect(a.status).to.equal(401);
    expect(a.json).to.deep.equal({ type: "error", error: { type: "authentication_error", message: "Incorrect API key provided." } });
    const g = await auth(s, "/auth", { "x-goog-api-key": "sk-unknownunknownunknownunknownunknownunknown1", "x-original-uri": "/v1beta/models/gemini-2.0-flash:generateContent" });
    expect(g.status).to.equal(401);
    expect(g.json).to.deep.equal({ error: { code: 401, message: "Incorrect API key provided.", status: "UNAUTHENTICATED" } });
  });

  it("Envoy's gRPC Check answers in the same shapes (one shape function)", async () => {
    const client = new AuthorizationClient(s.envoyAddress, grpc.credentials.createInsecure());
    try {
      const req = CheckRequest.fromPartial({
        attributes: {
          source: { address: { address: { $case: "socketAddress", value: { address: "203.0.113.7", portSpecifier: { $case: "portValue", value: 1 } } } } },
          request: { http: { method: "POST", path: "/v1/messages", headers: { "x-api-key": "sk-unknownunknownunknownunknownunknownunknown1" } } },
        },
      } as any);
      const res = await new Promise<CheckResponse>((resolve, reject) => client.check(req, new grpc.Metadata(), { deadline: Date.now() + 5000 }, (err, r) => (err ? reject(err) : resolve(r!))));
      expect(res.httpResponse?.$case).to.equal("deniedResponse");
      const body = JSON.parse((res.httpResponse as { value: { body: string } }).value.body);
      expect(body).to.deep.equal({ type: "error", error: { type: "authentication_error", message: "Incorrect API key provided." } });
    } finally {
      client.close();
    }
  });

  it("client IP with 0 trusted hops: the rightmost X-Forwarded-For entry (the proxy's peer), never the client's own entries", async () => {
    const k = bearer(secrets["ip-restricted"]!);
    const uri = { "x-original-uri": "/v1/chat/completions" };
    expect((await auth(s, "/auth", { ...k, ...uri, "x-forwarded-for": "10.1.2.3, 127.0.0.1" })).status).to.equal(403);
    expect((await auth(s, "/auth", { ...k, ...uri, "x-forwarded-for": "10.1.2.3" })).status).to.equal(200);
    // X-Real-IP only without X-Forwarded-For; without either, the TCP peer (127.0.0.1).
    expect((await auth(s, "/auth", { ...k, ...uri, "x-real-ip": "10.1.2.3" })).status).to.equal(200);
    expect((await auth(s, "/auth", { ...k, ...uri, "x-real-ip": "10.1.2.3", "x-forwarded-for": "127.0.0.1" })).status).to.equal(403);
    const peer = await auth(s, "/auth", { ...k, ...uri });
    expect(peer.status).to.equal(403);
    expect(peer.json.error.code).to.equal("ip_not_allowed");
  });

  it("client IP with 1 trusted hop: the second entry from the right, never the leftmost", async () => {
    const k = bearer(secrets1["ip-restricted"]!);
    const uri = { "x-original-uri": "/v1/chat/completions" };
    expect((await auth(hops1, "/auth", { ...k, ...uri, "x-forwarded-for": "10.1.2.3, 127.0.0.1" })).status).to.equal(200);
    expect((await auth(hops1, "/auth", { ...k, ...uri, "x-forwarded-for": "10.1.2.3, 203.0.113.9, 127.0.0.1" })).status).to.equal(403);
    // Fewer entries than hops + 1: the client reached our proxy directly, and the one entry (the
    // proxy's peer, as Envoy's source.address) is the client.
    expect((await auth(hops1, "/auth", { ...k, ...uri, "x-forwarded-for": "10.1.2.3" })).status).to.equal(200);
    expect((await auth(hops1, "/auth", { ...k, ...uri, "x-forwarded-for": "203.0.113.9" })).status).to.equal(403);
  });

  it("a forwarded JSON body names the model (HAProxy, Envoy with_request_body)", async () => {
    const k = bearer(secrets["model-restricted"]!);
    const h = { ...k, "x-original-uri": "/v1/chat/completions", "content-type": "application/json" };
    expect((await auth(s, "/auth", h, { method: "POST", body: JSON.stringify({ model: "gpt-4o-mini" }) })).status).to.equal(200);
    const no = await auth(s, "/auth", h, { method: "POST", body: JSON.stringify({ model: "gpt-4o" }) });
    expect(no.status).to.equal(403);
    expect(no.json.error.code).to.equal("model_not_found");
    // No body: the path, else x-aisa-model (a declared model alone is not enough for a restricted key).
    expect((await auth(s, "/auth", { ...k, "x-original-uri": "/openai/deployments/gpt-4o-mini/chat/completions" })).status).to.equal(200);
    expect((await auth(s, "/auth", { ...k, "x-original-uri": "/v1/chat/completions", "x-aisa-model": "gpt-4o-mini" })).status).to.equal(400);
  });

  it("an oversized body is a 400 deny and the connection closes; the server keeps serving", async () => {
    const big = JSON.stringify({ model: "gpt-4o-mini", pad: "x".repeat(10_000) });
    const r = await auth(s, "/auth", { ...bearer(secrets["valid"]!), "x-original-uri": "/v1/chat/completions" }, { method: "POST", body: big });
    expect(r.status).to.equal(400);
    expect(r.headers.get("x-aisa-reason")).to.equal("MALFORMED_REQUEST");
    // Chunked, without a content-length: cut off once over the limit.
    const chunked = await raw(s.httpAddress, `POST /auth HTTP/1.1\r\nhost: x\r\nx-original-uri: /v1/x\r\nauthorization: Bearer ${secrets["valid"]}\r\ntransfer-encoding: chunked\r\n\r\n2710\r\n${"y".repeat(10_000)}\r\n0\r\n\r\n`);
    expect(chunked).to.match(/^HTTP\/1\.1 400 /);
    expect(chunked).to.include("MALFORMED_REQUEST");
    expect((await auth(s, "/healthz", {})).status).to.equal(200);
  });

  it("oversized headers are a 400 deny (not node's bare 431) and never crash the server", async () => {
    const r = await raw(s.httpAddress, `GET /auth HTTP/1.1\r\nhost: x\r\nx-original-uri: /v1/x\r\nx-pad: ${"a".repeat(40_000)}\r\n\r\n`);
    expect(r).to.match(/^HTTP\/1\.1 400 /);
    expect(r).to.include('"code":"invalid_request"');
    const garbage = await raw(s.httpAddress, "\x16\x03\x01 not http\r\n\r\n");
    expect(garbage).to.match(/^HTTP\/1\.1 400 /);
    expect((await auth(s, "/auth", { ...bearer(secrets["valid"]!), "x-original-uri": "/v1/chat/completions" })).status).to.equal(200);
  });

  it("/deny (nginx's error_page) renders the named reason's full reply, and only ever a deny", async () => {
    const d = await auth(s, "/deny", { "x-aisa-reason": "ACCOUNT_BALANCE_EXHAUSTED", "x-original-uri": "/v1/chat/completions" });
    expect(d.status).to.equal(402);
    expect(d.json.error.code).to.equal("insufficient_quota");
    const rl = await auth(s, "/deny", { "x-aisa-reason": "RATE_LIMITED", "x-aisa-retry-after": "7", "x-original-uri": "/v1/messages" });
    expect(rl.status).to.equal(429);
    expect(rl.headers.get("retry-after")).to.equal("7");
    expect(rl.json.error.type).to.equal("rate_limit_error");
    for (const reason of ["ALLOWED", "", "NOPE"]) {
      const r = await auth(s, "/deny", { "x-aisa-reason": reason });
      expect(r.status, reason).to.equal(400);
    }
  });

  it("/healthz: 200 SERVING; unknown paths 404", async () => {
    const h = await auth(s, "/healthz", {});
    expect(h.status).to.equal(200);
    expect(h.json).to.deep.equal({ status: "SERVING" });
    expect((await auth(s, "/nope", {})).status).to.equal(404);
  });

  it('--http-listen "" disables the listener; an address in use is an error naming it', async () => {
    const off = await startTestSidecar({ httpListen: "" });
    try {
      expect(off.httpAddress).to.equal("");
      let err: Error | undefined;
      try {
        const busy = await startTestSidecar({ httpListen: s.httpAddress });
        await busy.close();
      } catch (e) {
        err = e as Error;
      }
      expect(err?.message).to.include(`cannot listen on ${s.httpAddress}`);
    } finally {
      await off.close();
      await removeDir(off.dir);
    }
  });

  describe("slow and idle connections", () => {
    let t: TestSidecar;
    before(async () => {
      t = await startTestSidecar({ receiveTimeoutMs: 1000, idleTimeoutMs: 1000 });
    });
    after(async () => {
      await t.close();
      await removeDir(t.dir);
    });

    it("a request that never completes is answered 408 and closed within the receive timeout; an idle connection is closed", async () => {
      const t0 = Date.now();
      const slow = await raw(t.httpAddress, "GET /auth HTTP/1.1\r\nhost: x\r\nx-original-uri: /v1/x\r\n");
      expect(slow).to.match(/^HTTP\/1\.1 408 /);
      expect(Date.now() - t0).to.be.below(5000);
      const t1 = Date.now();
      // A connection that never sends a byte: closed (node answers it 408 too).
      const idle = await raw(t.httpAddress, "");
      expect(idle === "" || /^HTTP\/1\.1 408 /.test(idle), idle).to.equal(true);
      // Idle between requests on a keep-alive connection: closed after the idle timeout.
      const t2 = Date.now();
      const kept = await raw(t.httpAddress, "GET /healthz HTTP/1.1\r\nhost: x\r\n\r\n");
      expect(kept).to.match(/^HTTP\/1\.1 200 /);
      expect(Date.now() - t2).to.be.below(5000);
      expect(Date.now() - t1).to.be.below(5000);
    });
  });

  describe("store unavailable", () => {
    let f: TestSidecar;
    let fault: Error | null = null;
    before(async () => {
      f = await startTestSidecar({ storeFaultInjector: () => fault });
    });
    after(async () => {
      fault = null;
      await f.close();
      await removeDir(f.dir);
    });

    it("503 with retry-after and a JSON body (the proxy fails closed); /healthz 503", async () => {
      const admin = <Res>(m: string, r: unknown) => call<unknown, Res>(f.admin, m, r, f.meta());
      await admin("adjustBalance", { accountId: "default", delta: "100000", reason: "seed" });
      const k = await admin<CreateKeyResponse>("createKey", { spec: { name: "fault", unlimited: true } });
      fault = new Error("EIO: injected I/O error");
      // A write hits the fault: the store turns NOT_SERVING.
      await admin("createKey", { spec: { name: "during outage" } }).catch(() => {});
      const r = await auth(f, "/auth", { ...bearer(k.secret), "x-original-uri": "/v1/chat/completions" });
      expect(r.status).to.equal(503);
      expect(r.headers.get("x-aisa-reason")).to.equal("UNAVAILABLE");
      expect(Number(r.headers.get("retry-after"))).to.be.greaterThan(0);
      expect(r.json.error.code).to.equal("service_unavailable");
      expect(r.headers.get("x-aisa-key-id")).to.equal(null);
      expect((await auth(f, "/healthz", {})).status).to.equal(503);
    });
  });
});
