// Forward-auth through the REAL proxies: Debian's nginx (auth_request), Caddy (forward_auth)
// and HAProxy (the Lua action), each run from its deploy/ file with only addresses, ports and
// paths substituted, in front of a real sidecar and an upstream stand-in that records what
// reaches it. Clients: fetch, and the official OpenAI and Anthropic SDKs (retries off).
import { expect } from "chai";
import OpenAI from "openai";
import Anthropic from "@anthropic-ai/sdk";
import type { CreateKeyResponse } from "../../src/gen/aisa/v1/admin.js";
import { call, removeDir, startTestSidecar, type TestSidecar } from "../helpers/sidecar.js";
import { requireProxy, startProxy, startUpstream, type ProxyName, type RunningProxy, type Upstream } from "../helpers/proxies.js";

const CREDENTIAL_HEADERS = ["authorization", "x-api-key", "api-key", "x-goog-api-key"];

async function seed(s: TestSidecar): Promise<Record<string, string>> {
  const admin = <Res>(method: string, req: unknown) => call<unknown, Res>(s.admin, method, req, s.meta());
  await admin("adjustBalance", { accountId: "default", delta: "1000000000", reason: "test seed" });
  for (const model of ["gpt-4o-mini", "gpt-4o", "claude-test"]) {
    await admin("setPrice", { price: { model, inputPerMillion: "75000", outputPerMillion: "300000", perRequest: "0" } });
  }
  await admin("createAccount", { id: "broke", name: "broke" });
  const specs: Record<string, { spec: Record<string, unknown>; accountId?: string }> = {
    valid: { spec: { unlimited: true } },
    disabled: { spec: { unlimited: true } },
    expired: { spec: { unlimited: true, expires: "1h" } },
    "ip-restricted": { spec: { unlimited: true, ips: ["10.0.0.0/8"] } },
    "ip-local": { spec: { unlimited: true, ips: ["127.0.0.1/32"] } },
    "model-restricted": { spec: { unlimited: true, models: ["gpt-4o-mini"] } },
    "quota-empty": { spec: { quota: "0" } },
    broke: { spec: { unlimited: true }, accountId: "broke" },
    "rate-limited": { spec: { unlimited: true, limits: { rpm: 1 } } },
    "rate-limited-sdk": { spec: { unlimited: true, limits: { rpm: 1 } } },
    "rate-figures": { spec: { unlimited: true, limits: { rpm: 2, tpm: 100000 } } },
  };
  const secrets: Record<string, string> = {};
  for (const [name, { spec, accountId }] of Object.entries(specs)) {
    const r = await admin<CreateKeyResponse>("createKey", { spec: { name, ...spec }, ...(accountId ? { accountId } : {}) });
    secrets[name] = r.secret;
    if (name === "disabled") await admin("setKeysEnabled", { ids: [r.key!.id], enabled: false });
  }
  return secrets;
}

interface Got {
  status: number;
  headers: Headers;
  text: string;
  json: any;
}

async function post(url: string, headers: Record<string, string>, body: unknown = { model: "gpt-4o-mini", messages: [{ role: "user", content: "hi" }] }): Promise<Got> {
  const res = await fetch(url, { method: "POST", headers: { "content-type": "application/json", ...headers }, body: JSON.stringify(body) });
  const text = await res.text();
  let json: any = null;
  try {
    json = JSON.parse(text);
  } catch {
    // not JSON
  }
  return { status: res.status, headers: res.headers, text, json };
}

for (const name of ["nginx", "caddy", "haproxy"] as ProxyName[]) {
  describe(`forward-auth through the real ${name} (deploy/ config)`, function () {
    this.timeout(60_000);
    let bin = "";
    let upstream: Upstream;
    let s: TestSidecar;
    let proxy: RunningProxy;
    let secrets: Record<string, string>;
    let skew = 0;
    const clock = () => Date.now() + skew;
    const chat = () => `${proxy.url}/v1/chat/completions`;
    const bearer = (k: string) => ({ authorization: `Bearer ${secrets[k] ?? k}` });

    before(async function () {
      bin = requireProxy(this, name);
      upstream = await startUpstream();
      s = await startTestSidecar({ clock });
      secrets = await seed(s);
      proxy = await startProxy(name, bin, s.httpAddress, upstream.address);
    });

    after(async () => {
      await proxy?.stop();
      await upstream?.close();
      if (s) {
        await s.close();
        await removeDir(s.dir);
      }
    });

    /** Expects a deny with `status`, the OpenAI body's code, and nothing reaching the upstream. */
    async function expectDeny(headers: Record<string, string>, status: number, code: string, body?: unknown, path?: string): Promise<Got> {
      const before = upstream.seen.length;
      const r = await post(path ? `${proxy.url}${path}` : chat(), headers, body);
      expect(r.status, `${r.text} / ${proxy.output.join("").slice(-500)}`).to.equal(status);
      expect(r.headers.get("content-type")).to.match(/^application\/json/);
      expect(r.json?.error?.code, r.text).to.equal(code);
      expect(r.json.error.message).to.be.a("string").and.not.equal("");
      if (status === 401) expect(r.headers.get("www-authenticate")).to.match(/^Bearer/);
      expect(upstream.seen.length, "a denied request never reaches the upstream").to.equal(before);
      return r;
    }

    it("a valid key passes: the upstream sees x-aisa-* (not the client's forged ones) and never the credential", async () => {
      const r = await post(chat(), { ...bearer("valid"), "x-aisa-key-id": "key_forged", "x-aisa-group": "vip" });
      expect(r.status, r.text).to.equal(200);
      expect(r.json.choices[0].message.content).to.equal("ok");
      const seen = upstream.seen.at(-1)!;
      expect(seen.url).to.equal("/v1/chat/completions");
      expect(seen.headers["x-aisa-key-id"]).to.match(/^key_/).and.not.equal("key_forged");
      expect(seen.headers["x-aisa-account-id"]).to.equal("default");
      expect(seen.headers["x-aisa-group"]).to.equal("default");
      expect(seen.headers["x-aisa-reservation"]).to.match(/^rsv_/);
      expect(JSON.parse(seen.body).model).to.equal("gpt-4o-mini");
      for (const h of CREDENTIAL_HEADERS) expect(seen.headers[h], h).to.equal(undefined);
      expect(JSON.stringify(seen.headers)).to.not.include(secrets["valid"]!);
    });

    it("x-api-key and api-key credentials are stripped as well", async () => {
      for (const header of ["x-api-key", "api-key"]) {
        const r = await post(chat(), { [header]: secrets["valid"]! });
        expect(r.status, `${header}: ${r.text}`).to.equal(200);
        const seen = upstream.seen.at(-1)!;
        for (const h of CREDENTIAL_HEADERS) expect(seen.headers[h], h).to.equal(undefined);
      }
    });

    it("unknown, disabled and expired keys: 401 invalid_api_key with www-authenticate", async () => {
      await expectDeny(bearer("sk-unknownunknownunknownunknownunknownunknown1"), 401, "invalid_api_key");
      await expectDeny(bearer("disabled"), 401, "invalid_api_key");
      skew = 2 * 3_600_000;
      try {
        const r = await expectDeny(bearer("expired"), 401, "invalid_api_key");
        expect(r.json.error.message).to.match(/expired/);
      } finally {
        skew = 0;
      }
      await expectDeny({}, 401, "missing_api_key");
    });

    it("IP not allowed: 403, also when the client sends a spoofed X-Forwarded-For; an allowed IP passes", async () => {
      await expectDeny(bearer("ip-restricted"), 403, "ip_not_allowed");
      await expectDeny({ ...bearer("ip-restricted"), "x-forwarded-for": "10.1.2.3" }, 403, "ip_not_allowed");
      await expectDeny({ ...bearer("ip-restricted"), "x-real-ip": "10.1.2.3", "x-forwarded-for": "10.9.9.9, 10.1.2.3" }, 403, "ip_not_allowed");
      const ok = await post(chat(), { ...bearer("ip-local"), "x-forwarded-for": "10.1.2.3" });
      expect(ok.status, ok.text).to.equal(200);
    });

    it("model not allowed: 403 model_not_found (the model from the path)", async () => {
      await expectDeny(bearer("model-restricted"), 403, "model_not_found", { messages: [] }, "/openai/deployments/gpt-4o/chat/completions");
      const ok = await post(`${proxy.url}/openai/deployments/gpt-4o-mini/chat/completions`, bearer("model-restricted"), { messages: [] });
      expect(ok.status, ok.text).to.equal(200);
    });

    if (name === "haproxy") {
      it("HAProxy forwards the body: the JSON model counts (403 for a model the key may not use)", async () => {
        await expectDeny(bearer("model-restricted"), 403, "model_not_found", { model: "gpt-4o", messages: [] });
        const ok = await post(chat(), bearer("model-restricted"), { model: "gpt-4o-mini", messages: [] });
        expect(ok.status, ok.text).to.equal(200);
      });

      it("a body larger than HAProxy's buffer: the model is read from the buffered prefix (marked partial)", async () => {
        const pad = "x".repeat(100_000);
        const ok = await post(chat(), bearer("model-restricted"), { model: "gpt-4o-mini", messages: [{ role: "user", content: pad }] });
        expect(ok.status, ok.text.slice(0, 300)).to.equal(200);
        await expectDeny(bearer("model-restricted"), 403, "model_not_found", { model: "gpt-4o", messages: [{ role: "user", content: pad }] });
      });
    } else {
      it(`${name} sends no body: a model-restricted key needs the model in the path or x-aisa-model (400 model_required)`, async () => {
        await expectDeny(bearer("model-restricted"), 400, "model_required", { model: "gpt-4o-mini", messages: [] });
      });
    }

    it("a client's own X-Original-URI / X-Forwarded-Uri never names the path judged", async () => {
      const spoof = { "x-original-uri": "/openai/deployments/gpt-4o-mini/chat/completions", "x-forwarded-uri": "/openai/deployments/gpt-4o-mini/chat/completions" };
      const before = upstream.seen.length;
      const r = await post(chat(), { ...bearer("model-restricted"), ...spoof }, { model: "gpt-4o", messages: [] });
      expect(r.status, r.text).to.equal(name === "haproxy" ? 403 : 400);
      expect(upstream.seen.length).to.equal(before);
    });

    it("key quota exhausted: 429 insufficient_quota", async () => {
      await expectDeny(bearer("quota-empty"), 429, "insufficient_quota");
    });

    it("account balance exhausted: 402 insufficient_quota", async () => {
      const r = await expectDeny(bearer("broke"), 402, "insufficient_quota");
      expect(r.json.error.type).to.equal("insufficient_quota");
    });

    it("rate limit: the second request in the minute is 429 rate_limit_exceeded with Retry-After", async () => {
      const first = await post(chat(), bearer("rate-limited"));
      expect(first.status, first.text).to.equal(200);
      const r = await expectDeny(bearer("rate-limited"), 429, "rate_limit_exceeded");
      expect(Number(r.headers.get("retry-after"))).to.be.greaterThan(0);
      expect(r.headers.get("x-aisa-reason")).to.equal("RATE_LIMITED");
    });

    it("a rate-limited key's allows and its 429 carry the x-ratelimit-* figures; the 429 body names the limit", async () => {
      const rl = (r: Got, remaining: string) => {
        expect(r.headers.get("x-ratelimit-limit-requests"), r.text).to.equal("2");
        expect(r.headers.get("x-ratelimit-remaining-requests"), r.text).to.equal(remaining);
        expect(r.headers.get("x-ratelimit-reset-requests")).to.match(/^[1-9][0-9]*s$/);
        expect(r.headers.get("x-ratelimit-limit-tokens")).to.equal("100000");
        expect(r.headers.get("x-ratelimit-remaining-tokens")).to.equal("100000");
        expect(r.headers.get("x-ratelimit-reset-tokens")).to.match(/^[0-9]+s$/);
      };
      const a = await post(chat(), bearer("rate-figures"));
      expect(a.status, a.text).to.equal(200);
      rl(a, "1");
      const b = await post(chat(), bearer("rate-figures"));
      expect(b.status, b.text).to.equal(200);
      rl(b, "0");
      const d = await expectDeny(bearer("rate-figures"), 429, "rate_limit_exceeded");
      rl(d, "0");
      expect(Number(d.headers.get("retry-after"))).to.be.greaterThan(0);
      expect(d.json.error.limit).to.deep.equal({ name: "requests_per_minute", limit: 2, remaining: 0, reset_seconds: Number(d.headers.get("retry-after")) });
      // A key without rpm/tpm gets none of them.
      const v = await post(chat(), bearer("valid"));
      expect(v.status).to.equal(200);
      expect(v.headers.get("x-ratelimit-limit-requests")).to.equal(null);
      expect(v.headers.get("x-ratelimit-limit-tokens")).to.equal(null);
    });

    it("the OpenAI SDK sees its own error classes through the proxy", async () => {
      const client = (key: string) => new OpenAI({ apiKey: secrets[key] ?? key, baseURL: `${proxy.url}/v1`, maxRetries: 0, timeout: 10_000 });
      const done = await client("valid").chat.completions.create({ model: "gpt-4o-mini", messages: [{ role: "user", content: "hi" }] });
      expect(done.choices[0]!.message.content).to.equal("ok");
      const cases: [string, new (...a: any[]) => Error, number, string][] = [
        ["sk-unknownunknownunknownunknownunknownunknown1", OpenAI.AuthenticationError, 401, "invalid_api_key"],
        ["ip-restricted", OpenAI.PermissionDeniedError, 403, "ip_not_allowed"],
        ["quota-empty", OpenAI.RateLimitError, 429, "insufficient_quota"],
        ["broke", OpenAI.APIError, 402, "insufficient_quota"],
      ];
      for (const [key, cls, status, code] of cases) {
        try {
          await client(key).chat.completions.create({ model: "gpt-4o-mini", messages: [{ role: "user", content: "hi" }] });
          expect.fail(`${key}: expected ${cls.name}`);
        } catch (err) {
          expect(err, key).to.be.instanceOf(cls);
          expect((err as InstanceType<typeof OpenAI.APIError>).status, key).to.equal(status);
          expect((err as InstanceType<typeof OpenAI.APIError>).code, key).to.equal(code);
        }
      }
    });

    it("the Anthropic SDK (/v1/messages, x-api-key) sees its own error classes and error types", async () => {
      const client = (key: string) => new Anthropic({ apiKey: secrets[key] ?? key, baseURL: proxy.url, maxRetries: 0, timeout: 10_000 });
      const msg = { model: "claude-test", max_tokens: 16, messages: [{ role: "user" as const, content: "hi" }] };
      const done = await client("valid").messages.create(msg);
      expect(done.content[0]).to.deep.include({ type: "text", text: "ok" });
      expect(upstream.seen.at(-1)!.headers["x-api-key"]).to.equal(undefined);
      await client("rate-limited-sdk").messages.create(msg);
      const cases: [string, new (...a: any[]) => Error, number, string][] = [
        ["sk-unknownunknownunknownunknownunknownunknown1", Anthropic.AuthenticationError, 401, "authentication_error"],
        ["ip-restricted", Anthropic.PermissionDeniedError, 403, "permission_error"],
        ["rate-limited-sdk", Anthropic.RateLimitError, 429, "rate_limit_error"],
        ["broke", Anthropic.PaymentRequiredError, 402, "billing_error"],
      ];
      for (const [key, cls, status, type] of cases) {
        try {
          await client(key).messages.create(msg);
          expect.fail(`${key}: expected ${cls.name}`);
        } catch (err) {
          expect(err, key).to.be.instanceOf(cls);
          const e = err as InstanceType<typeof Anthropic.APIError>;
          expect(e.status, key).to.equal(status);
          expect((e.error as any)?.type, key).to.equal("error");
          expect((e.error as any)?.error?.type, key).to.equal(type);
        }
      }
    });

    it("Gemini routes get Google's error shape", async () => {
      const r = await post(`${proxy.url}/v1beta/models/gpt-4o:generateContent`, { "x-goog-api-key": secrets["model-restricted"]! }, { contents: [] });
      expect(r.status, r.text).to.equal(403);
      expect(r.json).to.deep.equal({ error: { code: 403, message: r.json.error.message, status: "PERMISSION_DENIED" } });
    });

    it("the sidecar stopped: the proxy denies (503 JSON), nothing reaches the upstream", async () => {
      await s.close();
      const before = upstream.seen.length;
      const r = await post(chat(), bearer("valid"));
      expect(r.status, r.text).to.be.within(500, 599);
      expect(r.json?.error?.message, r.text).to.be.a("string");
      expect(upstream.seen.length).to.equal(before);
    });
  });
}
