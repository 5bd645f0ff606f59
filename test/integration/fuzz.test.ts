// Fuzz: 100k generated CheckRequests (random and adversarial headers, multi-MB
// and invalid UTF-8 bodies, malformed and deeply nested JSON, odd IP strings,
// unicode keys, repeated headers) through the real Envoy handler, a wire-level
// run against a real server, and malformed admin calls. The process never
// crashes, every answer is a deny (or an allow for the one real key), and heap
// returns to its baseline.
import { expect } from "chai";
import { setFlagsFromString } from "node:v8";
import { runInNewContext } from "node:vm";
import { randomBytes } from "node:crypto";
import { fileURLToPath } from "node:url";
import * as grpc from "@grpc/grpc-js";
import * as protoLoader from "@grpc/proto-loader";
import type { CheckRequest, CheckResponse } from "../../src/gen/envoy/service/auth/v3/external_auth.js";
import { generateKeySecret, hashSecret, maskSecret } from "../../src/keys/secrets.js";
import { Authorizer } from "../../src/service/authorizer.js";
import { LevelStore } from "../../src/store/level/levelStore.js";
import { createEnvoyAuthorizationServer } from "../../src/transport/envoy/authorizationService.js";
import { call, removeDir, startTestSidecar, tempDir, type TestSidecar } from "../helpers/sidecar.js";

const N = Number(process.env["AISA_FUZZ_N"] ?? 100_000);
const SEED = Number(process.env["AISA_FUZZ_SEED"] ?? Date.now() % 1_000_000);

/** mulberry32: a small seeded PRNG so a failing run can be replayed with AISA_FUZZ_SEED. */
function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function gc(): void {
  setFlagsFromString("--expose-gc");
  (runInNewContext("gc") as () => void)();
}

const ODD_IPS = ["", "1", "010.0.0.1", "0x7f.1", "999.1.1.1", "::ffff:1.2.3", "[::1]", "[::1]:80", "fe80::1%eth0", "::", "1.2.3.4:5", "🙂", "1.2.3.4\u0000", " 10.0.0.1 ", "::ffff:10.0.0.1", "2001:db8::1", "a".repeat(5000)];
const ODD_STRINGS = ["", " ", "Bearer", "Bearer ", "bearer  sk-x", "Basic dXNlcjpwYXNz", "\ud800", "\uffff", "sk-🙂", "sk-" + "A".repeat(10_000), "%zz", "%00", "\u0000\u0001", "null", "[object Object]", "Bearer sk-a,Bearer sk-b"];

export function makeFuzzRequest(rnd: () => number, realKey: string): { req: CheckRequest; usesRealKey: boolean } {
  const pick = <T>(a: readonly T[]): T => a[Math.floor(rnd() * a.length)]!;
  const str = (max: number) => {
    const n = Math.floor(rnd() * max);
    let s = "";
    for (let i = 0; i < n; i++) s += String.fromCharCode(rnd() < 0.9 ? 32 + Math.floor(rnd() * 95) : Math.floor(rnd() * 0xffff));
    return s;
  };
  let usesRealKey = rnd() < 0.05;
  const withHeaderMap = rnd() < 0.05;
  usesRealKey ||= withHeaderMap; // header_map carries the real key
  const headers: Record<string, string> = {};
  const nh = Math.floor(rnd() * 20);
  for (let i = 0; i < nh; i++) headers[rnd() < 0.5 ? str(20) : pick(["authorization", "x-api-key", "api-key", "x-goog-api-key", "x-forwarded-for", "x-aisa-model", "content-type", "x-envoy-auth-partial-body", ":path", ":authority"])] = rnd() < 0.5 ? pick(ODD_STRINGS) : str(200);
  if (usesRealKey) headers["authorization"] = `Bearer ${realKey}`;
  else if (rnd() < 0.3) headers["authorization"] = `Bearer ${generateKeySecret()}`;
  if (rnd() < 0.2) headers["x-forwarded-for"] = Array.from({ length: Math.floor(rnd() * 6) }, () => pick(ODD_IPS)).join(rnd() < 0.5 ? "," : ", ");
  let body = "";
  let rawBody = Buffer.alloc(0);
  const shape = rnd();
  if (shape < 0.15) body = JSON.stringify({ model: pick(["gpt-4o-mini", "", "🙂", "x".repeat(300)]), max_tokens: pick([1, -1, 1e308, "9", null]), messages: [{ role: "user", content: str(500) }] });
  else if (shape < 0.2) body = "[".repeat(Math.floor(rnd() * 50_000)) + "\"model\"";
  else if (shape < 0.25) body = '{"a":' + "{".repeat(20_000) + '"model":"x"';
  else if (shape < 0.3) rawBody = randomBytes(Math.floor(rnd() * 4096));
  else if (shape < 0.33) rawBody = Buffer.from([0xff, 0xfe, 0x22, 0x6d, 0x6f, 0x64, 0x65, 0x6c, 0x22, 0x3a, 0xc3, 0x28]);
  else if (shape < 0.5) body = str(2000);
  else if (shape < 0.501) body = "{\"model\":\"gpt-4o-mini\",\"pad\":\"" + "x".repeat(2 * 1024 * 1024) + "\"}"; // multi-MB
  const attrs = rnd() < 0.03 ? undefined : {
    source: rnd() < 0.05 ? undefined : { address: rnd() < 0.1 ? { address: { $case: "pipe" as const, value: { path: "/tmp/x.sock", mode: 0 } } } : { address: { $case: "socketAddress" as const, value: { protocol: 0, address: pick(ODD_IPS), portSpecifier: undefined, resolverName: "", ipv4Compat: false, networkNamespaceFilepath: "" } } } },
    destination: undefined,
    request: rnd() < 0.03 ? undefined : {
      time: undefined,
      http: rnd() < 0.03 ? undefined : {
        id: str(10),
        method: pick(["GET", "POST", "", "🙂"]),
        headers,
        headerMap: withHeaderMap ? { headers: [{ key: "authorization", value: "", rawValue: Buffer.from(`Bearer ${realKey}`) }] } : undefined,
        path: pick(["/v1/chat/completions", "/v1beta/models/gemini-2.0-flash:generateContent?key=" + pick(ODD_STRINGS), "/openai/deployments/" + str(30) + "/chat", "?key=%zz", str(300)]),
        host: str(30),
        scheme: "https",
        query: "",
        fragment: "",
        size: "0",
        protocol: "HTTP/1.1",
        body,
        rawBody,
      },
    },
    contextExtensions: rnd() < 0.1 ? { [str(5)]: str(5) } : {},
    metadataContext: undefined,
    routeMetadataContext: undefined,
    tlsSession: undefined,
  };
  return { req: { attributes: attrs } as CheckRequest, usesRealKey };
}

describe(`fuzz (seed ${SEED})`, function () {
  this.timeout(120_000 + N);

  it(`${N} generated CheckRequests through the real Envoy handler: never a throw, every answer a deny (or the real key's allow), heap back to baseline`, async () => {
    const dir = await tempDir();
    const store = new LevelStore({ dir });
    await store.open(Date.now());
    try {
      await store.adjustBalance("default", 1e12, { actor: "t", action: "t", target: "t" });
      const secret = generateKeySecret();
      await store.insertKey(
        {
          id: "key_fuzzfuzzfuzzfuzzfuzz",
          name: "fuzz",
          accountId: "default",
          group: "default",
          status: "enabled",
          unlimited: true,
          quotaTotal: 0,
          expiresAt: null,
          models: [],
          ips: [],
          createdAt: 0,
          updatedAt: 0,
          limits: { rpm: 0, tpm: 0, concurrency: 0 },
          refill: "none",
          metadata: {},
          secretHash: hashSecret(secret),
          secretEnc: "",
          masked: maskSecret(secret),
          prevSecretHash: null,
          prevSecretExpiresAt: null,
        },
        { actor: "t", action: "t", target: "t" },
      );
      const authorizer = new Authorizer({ store, reservationTtlMs: 1000, policy: { denyUnpricedModels: false, defaultEstimateUnits: 1, inputEstimateTokens: 1, defaultMaxTokens: 1 } });
      const handlers = [0, 1, 3].map((hops) => createEnvoyAuthorizationServer({ authorizer, xffTrustedHops: hops, clock: Date.now, log: () => {} }));
      const rnd = prng(SEED);
      const run = (count: number) => {
        const verdicts = { allow: 0, deny: 0 };
        for (let i = 0; i < count; i++) {
          const { req, usesRealKey } = makeFuzzRequest(rnd, secret);
          let got: CheckResponse | undefined;
          let err: unknown;
          handlers[i % 3]!.check({ request: req } as any, (e: unknown, res?: CheckResponse | null) => {
            err = e;
            got = res ?? undefined;
          });
          expect(err, `seed ${SEED} case ${i}: handler failed`).to.equal(null);
          const code = got!.status?.code ?? 0;
          if (code === 0) {
            expect(usesRealKey, `seed ${SEED} case ${i}: allowed without the real key`).to.equal(true);
            verdicts.allow++;
          } else {
            expect(got!.httpResponse?.$case).to.equal("deniedResponse");
            verdicts.deny++;
          }
        }
        return verdicts;
      };
      run(2000); // warm up
      store.releaseExpired(Number.MAX_SAFE_INTEGER);
      gc();
      const baseline = process.memoryUsage().heapUsed;
      const v = run(N);
      store.releaseExpired(Number.MAX_SAFE_INTEGER); // reservations of the real key's allows
      gc();
      const after = process.memoryUsage().heapUsed;
      console.log(`      fuzz: ${N} requests, ${v.deny} denies, ${v.allow} allows (real key), heap ${(baseline / 1e6).toFixed(1)} MB → ${(after / 1e6).toFixed(1)} MB`);
      expect(v.allow + v.deny).to.equal(N);
      expect(after - baseline, "heap must return to baseline (± 32 MB)").to.be.lessThan(32 * 1024 * 1024);
    } finally {
      await store.close();
      await removeDir(dir);
    }
  });

  describe("on the wire", () => {
    let s: TestSidecar;
    before(async () => {
      s = await startTestSidecar({ dataMaxMessageBytes: 32 * 1024 * 1024 }); // multi-MB bodies: above the 4 MiB default
    });
    after(async () => {
      await s.close();
      await removeDir(s.dir);
    });

    // Both transports of Envoy's Check: the grpc-js data port and the node:http2 Envoy endpoint.
    for (const [endpoint, address] of [
      ["data port", (x: TestSidecar) => x.dataAddress],
      ["Envoy endpoint", (x: TestSidecar) => x.envoyAddress],
    ] as const) {
      it(`multi-MB, invalid and random CheckRequests over gRPC to the ${endpoint}: all answered, the server keeps serving`, async () => {
        const PROTO_DIR = fileURLToPath(new URL("../../proto", import.meta.url));
        const def = protoLoader.loadSync("envoy/service/auth/v3/external_auth.proto", { includeDirs: [PROTO_DIR], keepCase: true, longs: String, enums: String, defaults: false, oneofs: true });
        const Client = (grpc.loadPackageDefinition(def) as any).envoy.service.auth.v3.Authorization as grpc.ServiceClientConstructor;
        const client = new Client(address(s), grpc.credentials.createInsecure(), { "grpc.max_send_message_length": 64 * 1024 * 1024 });
        const send = (req: unknown) =>
          new Promise<any>((resolve, reject) => (client as any).Check(req, { deadline: Date.now() + 15_000 }, (e: Error | null, r: unknown) => (e ? reject(e) : resolve(r))));
        const huge = (mb: number, valid: boolean) => ({
          attributes: {
            source: { address: { socket_address: { address: "203.0.113.7", port_value: 1 } } },
            request: {
              http: {
                method: "POST",
                path: "/v1/chat/completions",
                headers: { authorization: `Bearer ${generateKeySecret()}`, "x-envoy-auth-partial-body": "false" },
                raw_body: valid ? Buffer.from('{"model":"gpt-4o","x":"' + "y".repeat(mb * 1024 * 1024) + '"}') : randomBytes(mb * 1024 * 1024),
              },
            },
          },
        });
        for (const r of [huge(4, true), huge(4, false), huge(8, true)]) {
          const res = await send(r);
          expect(res.status.code).to.equal(16);
        }
        const rnd = prng(SEED + 1);
        let answered = 0;
        for (let i = 0; i < 300; i++) {
          const { req } = makeFuzzRequest(rnd, "sk-none");
          // proto-loader wants snake_case plain objects: encode with the generated code, send raw bytes.
          const { CheckRequest, CheckResponse } = await import("../../src/gen/envoy/service/auth/v3/external_auth.js");
          const bytes = Buffer.from(CheckRequest.encode(CheckRequest.fromPartial(req)).finish());
          const raw = new grpc.Client(address(s), grpc.credentials.createInsecure());
          const res = await new Promise<Buffer>((resolve, reject) =>
            raw.makeUnaryRequest("/envoy.service.auth.v3.Authorization/Check", (b: Buffer) => b, (b: Buffer) => b, bytes, (e, r) => (e ? reject(e) : resolve(r!))),
          );
          raw.close();
          expect(CheckResponse.decode(res).status?.code, "a deny (no real key here)").to.be.greaterThan(0);
          answered++;
        }
        // Bytes that are not a CheckRequest at all: an in-band 400 deny, not a gRPC error.
        const raw = new grpc.Client(address(s), grpc.credentials.createInsecure());
        for (let i = 0; i < 50; i++) {
          const junk = randomBytes(1 + (i * 37) % 2000);
          const res = await new Promise<Buffer | grpc.ServiceError>((resolve) =>
            raw.makeUnaryRequest("/envoy.service.auth.v3.Authorization/Check", (b: Buffer) => b, (b: Buffer) => b, junk, (e, r) => resolve(e ?? r!)),
          );
          if (res instanceof Error) expect.fail(`junk CheckRequest produced a gRPC error: ${(res as grpc.ServiceError).details}`);
        }
        raw.close();
        client.close();
        expect(answered).to.equal(300);
        const who = await call<unknown, { tokenId: string }>(s.admin, "whoAmI", {}, s.meta());
        expect(who.tokenId).to.equal("operator");
      });
    }

    it("malformed admin and Authorizer calls: INVALID_ARGUMENT or UNAUTHENTICATED, never a crash", async () => {
      const methods = ["CreateKey", "UpdateKey", "ListKeys", "DeleteKeys", "RevealKeys", "AdjustBalance", "CreateGroup", "SetPrice", "ListAudit"];
      const raw = new grpc.Client(s.adminAddress, grpc.credentials.createInsecure());
      const codes = new Set<number>();
      for (const m of methods) {
        for (let i = 0; i < 20; i++) {
          const meta = new grpc.Metadata();
          if (i % 2 === 0) meta.set("authorization", `Bearer ${s.adminToken}`);
          else if (i % 4 === 1) meta.set("authorization", "Bearer aat-" + "x".repeat(i));
          const junk = randomBytes(1 + i * 13);
          const err = await new Promise<grpc.ServiceError | null>((resolve) => raw.makeUnaryRequest(`/aisa.v1.Admin/${m}`, (b: Buffer) => b, (b: Buffer) => b, junk, meta, (e) => resolve(e)));
          if (err) {
            expect([grpc.status.INVALID_ARGUMENT, grpc.status.UNAUTHENTICATED, grpc.status.NOT_FOUND], `${m}: ${grpc.status[err.code]} ${err.details}`).to.include(err.code);
            codes.add(err.code);
          }
        }
      }
      raw.close();
      const data = new grpc.Client(s.dataAddress, grpc.credentials.createInsecure());
      for (const m of ["Check", "Consume"]) {
        for (let i = 0; i < 20; i++) {
          const err = await new Promise<grpc.ServiceError | null>((resolve) =>
            data.makeUnaryRequest(`/aisa.v1.Authorizer/${m}`, (b: Buffer) => b, (b: Buffer) => b, randomBytes(1 + i * 7), (e) => resolve(e)),
          );
          if (err) expect([grpc.status.INVALID_ARGUMENT, grpc.status.NOT_FOUND], `${m}: ${grpc.status[err.code]} ${err.details}`).to.include(err.code);
        }
      }
      data.close();
      expect(codes.has(grpc.status.INVALID_ARGUMENT)).to.equal(true);
      expect(codes.has(grpc.status.UNAUTHENTICATED)).to.equal(true);
      const who = await call<unknown, { tokenId: string }>(s.admin, "whoAmI", {}, s.meta());
      expect(who.tokenId).to.equal("operator");
    });
  });
});
