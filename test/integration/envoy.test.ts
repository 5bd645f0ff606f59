// Envoy ext_authz v3 Check, end to end and wire-level: a client built from the
// .proto files with @grpc/proto-loader (NOT the generated code) sends the
// fixtures in test/fixtures/check-requests/ exactly as Envoy would, against a
// real sidecar seeded through the admin API.
import { expect } from "chai";
import { readdirSync, readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import * as grpc from "@grpc/grpc-js";
import * as protoLoader from "@grpc/proto-loader";
import type { CreateKeyResponse } from "../../src/gen/aisa/v1/admin.js";
import { RefillPeriod } from "../../src/gen/aisa/v1/types.js";
import { denyDialect } from "../../src/policy/denyShape.js";
import { call, removeDir, startTestSidecar, type TestSidecar } from "../helpers/sidecar.js";

const PROTO_DIR = fileURLToPath(new URL("../../proto", import.meta.url));
const FIXTURES = fileURLToPath(new URL("../fixtures/check-requests", import.meta.url));

const def = protoLoader.loadSync("envoy/service/auth/v3/external_auth.proto", {
  includeDirs: [PROTO_DIR],
  keepCase: true,
  longs: String,
  enums: String,
  defaults: false,
  oneofs: true,
});
const pkg = grpc.loadPackageDefinition(def) as any;
const AuthorizationClient = pkg.envoy.service.auth.v3.Authorization as grpc.ServiceClientConstructor;

interface Fixture {
  description: string;
  keys: string;
  xffTrustedHops: number;
  request: any;
  expect: {
    allowed: boolean;
    reason: string;
    httpStatus: number;
    /** x-ratelimit-* headers the reply must carry, the reset header (`<n>s`), and the deny body's `error.limit`. */
    rateLimit?: { headers: Record<string, string>; resetHeader?: string; limit: Record<string, unknown>; retryAfterFromLimit?: boolean };
  };
}

type Wire = {
  status?: { code: number; message: string };
  http_response?: string;
  denied_response?: { status?: { code: string }; headers: { header: { key: string; value: string }; append?: { value: boolean } }[]; body: string };
  ok_response?: {
    headers: { header: { key: string; value: string }; append?: { value: boolean } }[];
    response_headers_to_add?: { header: { key: string; value: string }; append?: { value: boolean } }[];
    headers_to_remove: string[];
    query_parameters_to_remove?: string[];
  };
  dynamic_metadata?: { fields: Record<string, { stringValue?: string; numberValue?: number; structValue?: { fields: Record<string, { stringValue?: string; numberValue?: number }> } }> };
};

function check(client: grpc.Client, req: unknown): Promise<Wire> {
  return new Promise((resolve, reject) => {
    (client as any).Check(req, { deadline: Date.now() + 5000 }, (err: grpc.ServiceError | null, res: Wire) => (err ? reject(err) : resolve(res)));
  });
}

const HTTP_CODES: Record<string, number> = { BadRequest: 400, Unauthorized: 401, PaymentRequired: 402, Forbidden: 403, TooManyRequests: 429 };

function headerMap(list: { header: { key: string; value: string } }[] = []): Record<string, string> {
  return Object.fromEntries(list.map((h) => [h.header.key, h.header.value]));
}

async function seed(s: TestSidecar): Promise<Record<string, string>> {
  const admin = <Res>(method: string, req: unknown) => call<unknown, Res>(s.admin, method, req, s.meta());
  await admin("adjustBalance", { accountId: "default", delta: "1000000000", reason: "test seed" });
  for (const model of ["gpt-4o-mini", "gpt-4o", "gemini-2.0-flash"]) {
    await admin("setPrice", { price: { model, inputPerMillion: "75000", outputPerMillion: "300000", perRequest: "0" } });
  }
  const specs: Record<string, Record<string, unknown>> = {
    valid: { unlimited: true },
    disabled: { unlimited: true },
    expired: { unlimited: true, expires: "1h" },
    "ip-restricted": { unlimited: true, ips: ["10.0.0.0/8", "2001:db8::/32"] },
    "model-restricted": { unlimited: true, models: ["gpt-4o-mini"] },
    "quota-empty": { quota: "0" },
    "rate-limited": { unlimited: true, limits: { rpm: 1 } },
    "group-capped": { unlimited: true, group: "capped" },
  };
  // A group budget no estimate fits (1 unit a day, Tokyo midnights): its deny says when it resets.
  await admin("createGroup", { name: "capped", budget: { units: "1", period: RefillPeriod.REFILL_PERIOD_DAILY, timezone: "Asia/Tokyo" } });
  const secrets: Record<string, string> = {};
  for (const [name, spec] of Object.entries(specs)) {
    const r = await admin<CreateKeyResponse>("createKey", { spec: { name, ...spec } });
    secrets[name] = r.secret;
    if (name === "disabled") await admin("setKeysEnabled", { ids: [r.key!.id], enabled: false });
  }
  return secrets;
}

// Every case runs against both transports of this method: the grpc-js data port and the
// dedicated node:http2 endpoint (transport/h2unary.ts) that Envoy is pointed at.
const ENDPOINTS = [
  { name: "data port, grpc-js", address: (s: TestSidecar) => s.dataAddress },
  { name: "Envoy endpoint, node:http2", address: (s: TestSidecar) => s.envoyAddress },
];

for (const endpoint of ENDPOINTS) {
  describe(`Envoy ext_authz v3 Check (wire, fixtures) via the ${endpoint.name}`, function () {
    this.timeout(60_000);
    const fixtures = readdirSync(FIXTURES)
      .filter((f) => f.endsWith(".json"))
      .sort()
      .map((f) => ({ file: f, fx: JSON.parse(readFileSync(`${FIXTURES}/${f}`, "utf8")) as Fixture }));

    // One sidecar per distinct --xff-trusted-hops; the expired key is made to
    // expire by moving the sidecar's clock forward 2 h.
    const sidecars = new Map<number, { s: TestSidecar; secrets: Record<string, string>; client: grpc.Client }>();
    // The sidecars' clock: real time plus a skew a test may move forward.
    let skew = 0;
    const clock = () => Date.now() + skew;

    before(async () => {
      for (const hops of new Set(fixtures.map((f) => f.fx.xffTrustedHops))) {
        const s = await startTestSidecar({ xffTrustedHops: hops, clock });
        const secrets = await seed(s);
        const client = new AuthorizationClient(endpoint.address(s), grpc.credentials.createInsecure());
        sidecars.set(hops, { s, secrets, client });
      }
      // Consume the one request the rate-limited key may make this minute, via the same wire.
      for (const { s, secrets, client } of sidecars.values()) {
        const r = await check(client, {
          attributes: {
            source: { address: { socket_address: { address: "203.0.113.7", port_value: 1 } } },
            request: { http: { method: "GET", path: "/v1/models", headers: { authorization: `Bearer ${secrets["rate-limited"]}` } } },
          },
        });
        expect(r.status?.code ?? 0, "priming the rate-limited key").to.equal(0);
        void s;
      }
    });

    after(async () => {
      for (const { s, client } of sidecars.values()) {
        client.close();
        await s.close();
        await removeDir(s.dir);
      }
    });

    it("has a fixture for every deny reason Envoy can produce", () => {
      const reasons = new Set(fixtures.map((f) => f.fx.expect.reason));
      for (const r of ["ALLOWED", "KEY_MISSING", "KEY_INVALID", "KEY_DISABLED", "KEY_EXPIRED", "IP_NOT_ALLOWED", "MODEL_REQUIRED", "MODEL_MISMATCH", "MODEL_NOT_ALLOWED", "KEY_QUOTA_EXHAUSTED", "GROUP_BUDGET_EXHAUSTED", "RATE_LIMITED", "MALFORMED_REQUEST"]) {
        expect(reasons, r).to.include(r);
      }
    });

    for (const { file, fx } of fixtures) {
      it(`${file}: ${fx.expect.allowed ? "allows" : `denies ${fx.expect.reason} ${fx.expect.httpStatus}`}`, async function () {
        const sc = sidecars.get(fx.xffTrustedHops)!;
        // The expired key was made with "1h": move the sidecar's clock 2 h on.
        if (fx.keys === "expired") {
          skew = 2 * 3_600_000;
          try {
            return await runCase(sc, fx);
          } finally {
            skew = 0;
          }
        }
        return runCase(sc, fx);
      });
    }

    async function runCase(sc: { secrets: Record<string, string>; client: grpc.Client }, fx: Fixture): Promise<void> {
      const secret = sc.secrets[fx.keys] ?? "sk-unknownunknownunknownunknownunknownunknown1";
      const req = JSON.parse(JSON.stringify(fx.request).replaceAll("{{KEY}}", secret));
      const res = await check(sc.client, req);
      if (fx.expect.allowed) {
        expect(res.status?.code ?? 0, JSON.stringify(res.denied_response?.body)).to.equal(0);
        expect(res.http_response).to.equal("ok_response");
        const ok = res.ok_response!;
        const h = headerMap(ok.headers);
        expect(h["x-aisa-key-id"]).to.match(/^key_/);
        expect(h["x-aisa-account-id"]).to.equal("default");
        expect(h["x-aisa-group"]).to.equal("default");
        expect(h["x-aisa-reservation"]).to.match(/^rsv_/);
        // append is set explicitly (present on the wire) to false (overwrite) on every header.
        // BoolValue{value:false} encodes as an empty message: present, value defaulted.
        for (const o of ok.headers) {
          expect(o.append, `${o.header.key}: append must be present`).to.not.equal(undefined);
          expect(o.append!.value ?? false, o.header.key).to.equal(false);
        }
        // The upstream never sees the client's key.
        const credentialHeaders = Object.keys(req.attributes.request.http.headers).filter((k) => ["authorization", "x-api-key", "api-key", "x-goog-api-key"].includes(k));
        for (const k of credentialHeaders) expect(ok.headers_to_remove).to.include(k);
        if (String(req.attributes.request.http.path).includes("key=")) expect(ok.query_parameters_to_remove).to.include("key");
        expect(res.dynamic_metadata?.fields["key_id"]?.stringValue).to.equal(h["x-aisa-key-id"]);
      } else {
        expect(res.status?.code, "a deny always carries a non-zero status").to.be.a("number").and.not.equal(0);
        expect(res.http_response).to.equal("denied_response");
        const d = res.denied_response!;
        expect(HTTP_CODES[d.status!.code]).to.equal(fx.expect.httpStatus);
        const h = headerMap(d.headers);
        expect(h["content-type"]).to.equal("application/json");
        for (const o of d.headers) expect(o.append?.value ?? false, `${o.header.key}: append=true is dropped by Envoy`).to.equal(false);
        if (fx.expect.httpStatus === 401) expect(h["www-authenticate"]).to.match(/^Bearer/);
        if (fx.expect.reason === "RATE_LIMITED") expect(Number(h["retry-after"])).to.be.greaterThan(0);
        const body = JSON.parse(d.body);
        // Denials that say when (issue 19 item 4): the x-ratelimit-* headers and which limit was hit.
        const rl = fx.expect.rateLimit;
        if (rl) {
          for (const [k, v] of Object.entries(rl.headers)) expect(h[k], k).to.equal(v);
          if (rl.resetHeader) {
            expect(h[rl.resetHeader]).to.match(/^\d+s$/);
            const secs = Number(h[rl.resetHeader]!.slice(0, -1));
            expect(secs).to.be.within(1, 60);
            if (h["retry-after"]) expect(Number(h["retry-after"])).to.be.within(1, 60);
          }
          expect(body.error.limit).to.deep.include(rl.limit);
          if (fx.expect.reason === "RATE_LIMITED") expect(body.error.limit.reset_seconds).to.equal(Number(h["retry-after"]));
          if (rl.retryAfterFromLimit) {
            // A group budget deny: retry-after is the seconds to the budget's next Tokyo midnight.
            const now = Date.now();
            const tokyoMidnight = Math.floor((now + 9 * 3_600_000) / 86_400_000) * 86_400_000 + 86_400_000 - 9 * 3_600_000;
            const want = Math.ceil((tokyoMidnight - now) / 1000);
            expect(body.error.limit.reset_seconds).to.be.within(want - 5, want + 5);
            expect(h["retry-after"]).to.equal(String(body.error.limit.reset_seconds));
          }
        } else {
          expect(body.error.limit, "only money and rate denials name a limit").to.equal(undefined);
        }
        expect(body.error.message).to.be.a("string").and.not.equal("");
        // The client SDK's shape (policy/denyShape.ts): Google's on Gemini routes, Anthropic's on
        // its routes and x-api-key, OpenAI's otherwise.
        const http = req.attributes?.request?.http ?? {};
        const dialect = denyDialect(String(http.path ?? ""), (n) => Object.hasOwn(http.headers ?? {}, n));
        if (dialect === "google") {
          expect(body.error.code).to.equal(fx.expect.httpStatus);
          expect(body.error.status).to.be.a("string");
        } else if (dialect === "anthropic") {
          expect(body.type).to.equal("error");
          expect(body.error.type).to.be.a("string");
        } else {
          expect(body.error.type).to.be.a("string");
          expect(body.error.code).to.be.a("string");
        }
        expect(JSON.stringify(res)).to.not.include(sc.secrets[fx.keys] ?? "sk-none");
      }
    }

    it("an allow carries x-ratelimit-* (response_headers_to_add) and the limits in Envoy Gateway's fromMetadata shape", async () => {
      const { s, client } = sidecars.get(0)!;
      const admin = <Res>(method: string, req: unknown) => call<unknown, Res>(s.admin, method, req, s.meta());
      const k = await admin<CreateKeyResponse>("createKey", { spec: { name: "limited", unlimited: true, limits: { rpm: 3, tpm: 5000 } } });
      const req = {
        attributes: {
          source: { address: { socket_address: { address: "203.0.113.7", port_value: 1 } } },
          request: { http: { method: "GET", path: "/v1/models", headers: { authorization: `Bearer ${k.secret}` } } },
        },
      };
      const seen: Array<Record<string, string>> = [];
      for (let i = 0; i < 3; i++) {
        const r = await check(client, req);
        expect(r.status?.code ?? 0).to.equal(0);
        const add = r.ok_response!.response_headers_to_add ?? [];
        for (const o of add) expect(o.append?.value ?? false, o.header.key).to.equal(false);
        seen.push(headerMap(add));
        const md = r.dynamic_metadata!.fields;
        expect(md["total_limit"]?.structValue?.fields["requests_per_unit"]?.numberValue).to.equal(3);
        expect(md["total_limit"]?.structValue?.fields["unit"]?.stringValue).to.equal("MINUTE");
        expect(md["tokens_limit"]?.structValue?.fields["requests_per_unit"]?.numberValue).to.equal(5000);
      }
      expect(seen.map((h) => h["x-ratelimit-remaining-requests"])).to.deep.equal(["2", "1", "0"]);
      for (const h of seen) {
        expect(h["x-ratelimit-limit-requests"]).to.equal("3");
        expect(h["x-ratelimit-reset-requests"]).to.match(/^\d+s$/);
        expect(Number(h["x-ratelimit-reset-requests"]!.slice(0, -1))).to.be.within(1, 60);
        expect(h["x-ratelimit-limit-tokens"]).to.equal("5000");
        expect(h["x-ratelimit-remaining-tokens"]).to.equal("5000");
      }
      // The fourth is denied with the same figures and the limit named.
      const denied = await check(client, req);
      const dh = headerMap(denied.denied_response!.headers);
      expect(dh["x-ratelimit-remaining-requests"]).to.equal("0");
      expect(dh["x-ratelimit-limit-tokens"]).to.equal("5000");
      expect(JSON.parse(denied.denied_response!.body).error.limit).to.deep.include({ name: "requests_per_minute", limit: 3, remaining: 0 });
      // A key without limits: no x-ratelimit-* headers, no limits in metadata.
      const plain = await check(client, { ...req, attributes: { ...req.attributes, request: { http: { ...req.attributes.request.http, headers: { authorization: `Bearer ${sidecars.get(0)!.secrets["valid"]}` } } } } });
      expect(plain.ok_response!.response_headers_to_add ?? []).to.deep.equal([]);
      expect(plain.dynamic_metadata!.fields["total_limit"]).to.equal(undefined);
    });

    it("a disable, delete or rotate takes effect on the very next Check", async () => {
      const { s, client } = sidecars.get(0)!;
      const admin = <Res>(method: string, req: unknown) => call<unknown, Res>(s.admin, method, req, s.meta());
      const req = (key: string) => ({
        attributes: {
          source: { address: { socket_address: { address: "203.0.113.7", port_value: 1 } } },
          request: { http: { method: "GET", path: "/v1/models", headers: { authorization: `Bearer ${key}` } } },
        },
      });
      const k = await admin<CreateKeyResponse>("createKey", { spec: { name: "immediate", unlimited: true } });
      expect((await check(client, req(k.secret))).status?.code ?? 0).to.equal(0);
      await admin("setKeysEnabled", { ids: [k.key!.id], enabled: false });
      expect(JSON.parse((await check(client, req(k.secret))).denied_response!.body).error.message).to.include("disabled");
      await admin("setKeysEnabled", { ids: [k.key!.id], enabled: true });
      const rot = await admin<{ secret: string }>("rotateKey", { id: k.key!.id, graceSeconds: "0" });
      expect((await check(client, req(k.secret))).status?.code).to.equal(16);
      expect((await check(client, req(rot.secret))).status?.code ?? 0).to.equal(0);
      await admin("deleteKeys", { ids: [k.key!.id] });
      const gone = await check(client, req(rot.secret));
      expect(gone.status?.code).to.equal(16);
      expect(JSON.parse(gone.denied_response!.body).error.code).to.equal("invalid_api_key");
    });

    it("64 parallel Checks on a key whose quota covers 10 reservations admit exactly 10", async () => {
      const { s, client } = sidecars.get(0)!;
      const admin = <Res>(method: string, req: unknown) => call<unknown, Res>(s.admin, method, req, s.meta());
      // gpt-4o-mini: 1000 input tokens × 75000/1M + 64 output × 300000/1M = 75 + 19.2 → 95 units per request.
      const k = await admin<CreateKeyResponse>("createKey", { spec: { name: "ten", quota: String(95 * 10 + 50) } });
      const body = JSON.stringify({ model: "gpt-4o-mini", max_tokens: 64, messages: [{ role: "user", content: "hi" }] });
      const results = await Promise.all(
        Array.from({ length: 64 }, () =>
          check(client, {
            attributes: {
              source: { address: { socket_address: { address: "203.0.113.7", port_value: 1 } } },
              request: { http: { method: "POST", path: "/v1/chat/completions", headers: { authorization: `Bearer ${k.secret}`, "x-envoy-auth-partial-body": "false" }, body } },
            },
          }),
        ),
      );
      const admitted = results.filter((r) => (r.status?.code ?? 0) === 0).length;
      const quota = results.filter((r) => r.denied_response && JSON.parse(r.denied_response.body).error.code === "insufficient_quota").length;
      expect(admitted).to.equal(10);
      expect(quota).to.equal(54);
    });

    it("fails closed: with the store unavailable, Check is a gRPC UNAVAILABLE error, never an allow", async () => {
      const { s, secrets, client } = sidecars.get(0)!;
      const store = s.store as unknown as { health(): string };
      const original = store.health;
      store.health = () => "NOT_SERVING";
      try {
        let err: grpc.ServiceError | undefined;
        try {
          await check(client, {
            attributes: {
              source: { address: { socket_address: { address: "203.0.113.7", port_value: 1 } } },
              request: { http: { method: "GET", path: "/v1/models", headers: { authorization: `Bearer ${secrets["valid"]}` } } },
            },
          });
        } catch (e) {
          err = e as grpc.ServiceError;
        }
        expect(err?.code).to.equal(grpc.status.UNAVAILABLE);
      } finally {
        store.health = original;
      }
    });
  });
}
