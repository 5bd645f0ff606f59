// The Envoy endpoint's partial CheckRequest decode (src/transport/envoy/checkView.ts) against the
// generated decoder: the decision's input (toAuthInput at 0–2 trusted hops, dialectOf) must be
// the same for every request, and the partial decoder may accept only bytes the generated one
// accepts (what it refuses goes to the generated decoder, so refusing more is allowed).
import { expect } from "chai";
import { readFileSync, readdirSync } from "node:fs";
import { fileURLToPath } from "node:url";
import * as protoLoader from "@grpc/proto-loader";
import type { ServiceDefinition } from "@grpc/proto-loader";
import { CheckRequest } from "../../src/gen/envoy/service/auth/v3/external_auth.js";
import { dialectOf } from "../../src/transport/envoy/authorizationService.js";
import { decodeCheckView, ENVOY_HEADERS_READ, PEER_SLOTS, peerCacheSize } from "../../src/transport/envoy/checkView.js";
import { parsePathModel, slowPathModel } from "../../src/transport/envoy/extractModel.js";
import { toAuthInput } from "../../src/transport/envoy/toAuthInput.js";
import { rng } from "../helpers/rng.js";

const ROOT = fileURLToPath(new URL("../../", import.meta.url));
const FIXTURES = `${ROOT}test/fixtures/check-requests/`;

/** What the decision reads of a request, for comparison. */
function readBy(req: CheckRequest): unknown {
  return [0, 1, 2].map((hops) => {
    const out = toAuthInput(req, { xffTrustedHops: hops });
    return { ...out, input: { ...out.input, clientIp: out.input.clientIp && Array.from(out.input.clientIp) }, dialect: dialectOf(req) };
  });
}

function full(bytes: Uint8Array): CheckRequest | Error {
  try {
    return CheckRequest.decode(bytes);
  } catch (err) {
    return err as Error;
  }
}

/** The partial decode agrees with the full one, or refuses (then the full decoder answers). */
function agree(bytes: Uint8Array, label: string): "same" | "refused" {
  const view = decodeCheckView(bytes);
  const f = full(bytes);
  if (view === null) return "refused";
  expect(f, `${label}: the partial decoder accepted what the generated one rejects`).to.not.be.instanceOf(Error);
  expect(readBy(view), label).to.deep.equal(readBy(f as CheckRequest));
  return "same";
}

// Spelled out (not ENVOY_HEADERS_READ itself): a name missing from that set must show here.
const NAMES = ["authorization", "x-api-key", "api-key", "x-goog-api-key", "x-forwarded-for", "x-envoy-auth-partial-body", "x-aisa-model", "anthropic-version", ":authority", ":method", ":path", ":scheme", "content-type", "content-length", "user-agent", "accept", "x-request-id", "x-forwarded-proto", "Authorization", "X-Api-Key", "__proto__", "constructor", "toString", "", "x-aisa-model-x", "hasOwnProperty"];
const VALUES = ["Bearer sk-abc", "bearer  sk-xyz ", "sk-raw", "", " ", "true", "false", "gpt-4o-mini", "claude-3", "2023-06-01", "203.0.113.7", "10.0.0.1, 203.0.113.7", "1.2.3.4,5.6.7.8,9.9.9.9", "ünïcödé", "\u0000ctl", "x".repeat(300)];
const PATHS = ["/v1/chat/completions", "/v1/messages", "/v1beta/models/gemini-1.5-pro:generateContent?key=sk-q", "/openai/deployments/gpt4o/chat/completions?api-version=1", "/model/anthropic.claude%2Fv1/invoke", "/v1/projects/p/locations/l/publishers/google/models/gemini-pro:streamGenerateContent", "/v1/chat/../x", "/v1/complete", "/?key=%zz", "", "/x?key=a&key=b#frag"];
const BODIES = ['{"model":"gpt-4o-mini","max_tokens":256}', '{"messages":[{"role":"user","content":"hi \\"there\\""}],"model":"gpt-4o","max_tokens":12}', '{"model":"a","model":"b"}', '{"m\\u006fdel":"esc"}', '{"model":"ünï","max_completion_tokens":7}', "not json", '{"model":', ""];

function randomRequest(r: () => number): CheckRequest {
  const pick = <T>(a: readonly T[]): T => a[Math.floor(r() * a.length)]!;
  const headers: Record<string, string> = {};
  const nh = Math.floor(r() * 8);
  for (let i = 0; i < nh; i++) headers[pick(NAMES)] = pick(VALUES);
  const headerMap = r() < 0.25 ? { headers: Array.from({ length: Math.floor(r() * 4) }, () => ({ key: pick(NAMES), value: r() < 0.5 ? pick(VALUES) : "", rawValue: r() < 0.5 ? Buffer.from(pick(VALUES)) : Buffer.alloc(0) })) } : undefined;
  const body = r() < 0.6 ? pick(BODIES) : "";
  const rawBody = r() < 0.2 ? (r() < 0.5 ? Buffer.from(pick(BODIES)) : Buffer.from([0x7b, 0x22, 0xff, 0xfe, 0x22])) : Buffer.alloc(0);
  const sourceKind = r();
  const source =
    sourceKind < 0.6
      ? { address: { address: { $case: "socketAddress" as const, value: { address: pick(["203.0.113.7", "::ffff:10.0.0.1", "2001:db8::1", "not-an-ip", ""]), portSpecifier: { $case: "portValue" as const, value: 51234 } } } }, principal: r() < 0.2 ? "spiffe://x" : "" }
      : sourceKind < 0.7
        ? { address: { address: { $case: "pipe" as const, value: { path: "/tmp/s", mode: 0o600 } } } }
        : sourceKind < 0.8
          ? { address: { address: { $case: "envoyInternalAddress" as const, value: { addressNameSpecifier: { $case: "serverListenerName" as const, value: "l" }, endpointId: "e" } } } }
          : undefined;
  const shape = r();
  return CheckRequest.fromPartial({
    attributes:
      shape < 0.05
        ? undefined
        : {
            source,
            destination: r() < 0.7 ? { address: { address: { $case: "socketAddress", value: { address: "10.0.0.10", portSpecifier: { $case: "portValue", value: 8443 } } } }, labels: r() < 0.3 ? { a: "b" } : {} } : undefined,
            contextExtensions: r() < 0.3 ? { route: "r1", x: "y" } : {},
            metadataContext: r() < 0.2 ? { filterMetadata: { "envoy.filters.http.jwt_authn": { sub: "u", n: 3, nested: { l: [1, "two", null, true] } } }, typedFilterMetadata: {} } : undefined,
            tlsSession: r() < 0.1 ? { sni: "api.example" } : undefined,
            request:
              shape < 0.1
                ? undefined
                : {
                    time: r() < 0.8 ? new Date(1764270000000 + Math.floor(r() * 1e6)) : undefined,
                    http:
                      shape < 0.15
                        ? undefined
                        : { id: "123", method: "POST", headers, headerMap, path: pick(PATHS), host: "api.example", scheme: "https", size: String(Math.floor(r() * 2000)), protocol: "HTTP/1.1", body, rawBody },
                  },
          },
  } as never);
}

describe("Envoy CheckRequest partial decode (checkView.ts) agrees with the generated decoder", function () {
  this.timeout(180_000); // tens of thousands of decodes; slow on a shared machine
  it("over every fixture (test/fixtures/check-requests), and takes the fast path for each", () => {
    const pkg = protoLoader.loadSync("envoy/service/auth/v3/external_auth.proto", { includeDirs: [`${ROOT}proto`], keepCase: true, longs: String, enums: String, defaults: false, oneofs: true });
    const check = (pkg["envoy.service.auth.v3.Authorization"] as ServiceDefinition).Check!;
    const files = readdirSync(FIXTURES).filter((f) => f.endsWith(".json"));
    expect(files.length).to.be.greaterThan(30);
    for (const file of files) {
      const f = JSON.parse(readFileSync(FIXTURES + file, "utf8").replaceAll("{{KEY}}", "sk-fixturekey0000000000000000")) as { request: object };
      const wire = check.requestSerialize(f.request);
      expect(agree(wire, file), file).to.equal("same");
    }
  });

  it("over 3,000 random requests (headers, header_map, paths, bodies, peers, metadata), and over two concatenated", () => {
    const r = rng(18);
    let prev: Uint8Array = new Uint8Array(0);
    for (let i = 0; i < 3000; i++) {
      const bytes = CheckRequest.encode(randomRequest(r)).finish();
      expect(agree(bytes, `random #${i}`), `random #${i}`).to.equal("same");
      // A field that appears twice (protobuf concatenation): the last message field replaces, map entries add up.
      expect(agree(Buffer.concat([prev, bytes]), `concat #${i}`)).to.equal("same");
      prev = bytes;
    }
  });

  it("over 20,000 mutated encodings: never accepts what the generated decoder rejects, and agrees when both accept", () => {
    const r = rng(1806);
    const seen = { same: 0, refused: 0, fullRejects: 0 };
    for (let i = 0; i < 20_000; i++) {
      const b = Buffer.from(CheckRequest.encode(randomRequest(r)).finish());
      const m = Math.floor(r() * 4);
      let bytes: Buffer;
      if (m === 0) bytes = b.subarray(0, Math.floor(r() * b.length)); // truncated
      else if (m === 1) {
        bytes = Buffer.from(b);
        for (let k = 0; k < 1 + Math.floor(r() * 3); k++) if (bytes.length) bytes[Math.floor(r() * bytes.length)] = Math.floor(r() * 256);
      } else if (m === 2) {
        const at = Math.floor(r() * (b.length + 1));
        bytes = Buffer.concat([b.subarray(0, at), Buffer.from(Array.from({ length: 1 + Math.floor(r() * 6) }, () => Math.floor(r() * 256))), b.subarray(at)]);
      } else bytes = Buffer.from(Array.from({ length: Math.floor(r() * 64) }, () => Math.floor(r() * 256)));
      if (full(bytes) instanceof Error) seen.fullRejects++;
      seen[agree(bytes, `mutated #${i}`)]++;
    }
    expect(seen.same).to.be.greaterThan(5000);
    expect(seen.fullRejects).to.be.greaterThan(1000);
  });

  it("shares one frozen source-peer view per address, bounded under 100,000 distinct peers, each request reading its own (issue 18)", () => {
    const bytesFor = (address: string, dest = "10.0.0.10") =>
      CheckRequest.encode(
        CheckRequest.fromPartial({
          attributes: {
            source: { address: { address: { $case: "socketAddress", value: { address, portSpecifier: { $case: "portValue", value: 40000 } } } } },
            destination: { address: { address: { $case: "socketAddress", value: { address: dest, portSpecifier: { $case: "portValue", value: 8443 } } } } },
            request: { http: { method: "POST", path: "/v1/chat/completions", headers: { authorization: "Bearer sk-x" } } },
          },
        }),
      ).finish();
    const sourceOf = (v: CheckRequest | null) => {
      const a = v?.attributes?.source?.address?.address;
      return a?.$case === "socketAddress" ? a.value.address : undefined;
    };
    const a1 = decodeCheckView(bytesFor("203.0.113.7"))!;
    const a2 = decodeCheckView(bytesFor("203.0.113.7", "10.9.9.9"))!;
    expect(a2.attributes!.source, "same address: the same view").to.equal(a1.attributes!.source);
    expect(Object.isFrozen(a1.attributes!.source!.address!.address)).to.equal(true);
    expect(a1.attributes!.destination, "the destination is not built").to.equal(undefined);
    expect(sourceOf(decodeCheckView(bytesFor("198.51.100.1")))).to.equal("198.51.100.1");
    expect(sourceOf(a1), "a later address does not change an earlier request's view").to.equal("203.0.113.7");
    const r = rng(28);
    for (let i = 0; i < 100_000; i++) {
      const addr = i % 3 === 0 ? `2001:db8::${i.toString(16)}:${Math.floor(r() * 0xffff).toString(16)}` : `${10 + (i % 200)}.${(i >>> 8) & 255}.${i & 255}.${Math.floor(r() * 256)}`;
      const v = decodeCheckView(bytesFor(addr));
      if (i % 101 === 0) {
        expect(sourceOf(v), addr).to.equal(addr);
        expect(readBy(v!)).to.deep.equal(readBy(CheckRequest.decode(bytesFor(addr))));
      }
    }
    expect(peerCacheSize()).to.be.at.most(PEER_SLOTS);
  });

  it("keeps every header name the decision reads (toAuthInput.ts, policy/denyShape.ts)", () => {
    const names = new Set<string>();
    const src = readFileSync(`${ROOT}src/transport/envoy/toAuthInput.ts`, "utf8") + readFileSync(`${ROOT}src/policy/denyShape.ts`, "utf8");
    for (const m of src.matchAll(/(?:get\(headers, |hasHeader\()"([^"]+)"/g)) names.add(m[1]!);
    for (const m of /API_KEY_HEADERS = \[([^\]]*)\]/.exec(src)![1]!.matchAll(/"([^"]+)"/g)) names.add(m[1]!);
    expect(names.size).to.be.greaterThan(6);
    for (const n of names) expect(ENVOY_HEADERS_READ.has(n), n).to.equal(true);
  });
});

describe("parsePathModel's fast path (issue 18) gives the full rules' answer", function () {
  this.timeout(120_000);
  it("over 50,000 random paths built from the APIs' segments, case variants, dot segments, escapes and non-ASCII", () => {
    const r = rng(77);
    const parts = ["", "openai", "OpenAI", "deployments", "DEPLOYMENTS", "gpt4o", "model", "Model", "anthropic.claude-v2", "invoke", "Invoke", "converse-stream", "v1", "V1", "v1beta", "v1alpha", "v1beta1", "models", "tunedModels", "tunedmodels", "projects", "p", "locations", "l", "publishers", "google", "gemini-pro:generateContent", "x:y1", "chat", "completions", ".", "..", "...", ".a", "%2F", "a%2Fb", "%zz", "\\", "ü", "\u212A", "İ", "a:b:c", "?key=1", "#f"];
    for (let i = 0; i < 50_000; i++) {
      let p = "";
      for (let k = Math.floor(r() * 11); k > 0; k--) p += (r() < 0.1 ? "//" : "/") + parts[Math.floor(r() * parts.length)];
      if (r() < 0.1) p += "?q=/openai/deployments/x";
      let end = p.indexOf("?");
      if (end < 0) end = p.length;
      const h = p.indexOf("#");
      if (h >= 0 && h < end) end = h;
      expect(parsePathModel(p), JSON.stringify(p)).to.deep.equal(p.length === 0 ? parsePathModel("") : slowPathModel(p, end));
    }
  });
});
