import { expect } from "chai";
import { readFileSync, readdirSync } from "node:fs";
import { fileURLToPath } from "node:url";
// Namespace import: proto-loader is CJS with __esModule, so a default import is undefined when
// mocha loads this file through require() (tsx's CJS path).
import * as protoLoader from "@grpc/proto-loader";
import type { ServiceDefinition } from "@grpc/proto-loader";
import { CheckRequest } from "../../src/gen/envoy/service/auth/v3/external_auth.js";
import { normalizeIpEntry, toCidrRange } from "../../src/domain/ip.js";
import { evaluatePolicy } from "../../src/policy/evaluate.js";
import { REASON_TABLE } from "../../src/policy/reasons.js";
import type { PolicyInput, PolicyKey } from "../../src/policy/types.js";
import { extractBodyFields, extractPathModel, MAX_BODY_SCAN_BYTES, parsePathModel } from "../../src/transport/envoy/extractModel.js";
import { toAuthInput } from "../../src/transport/envoy/toAuthInput.js";

const ROOT = fileURLToPath(new URL("../../", import.meta.url));
const FIXTURES = `${ROOT}test/fixtures/check-requests/`;

// ---------------------------------------------------------------------------------------------
// Request builder (ts-proto shape, as the generated decoder produces it).

interface Spec {
  headers?: Record<string, string>;
  headerMap?: { key: string; value?: string; rawValue?: Buffer }[];
  path?: string;
  body?: string;
  rawBody?: Buffer;
  source?: string | { pipe: string } | null;
}

function mk(s: Spec = {}): CheckRequest {
  const path = s.path ?? "/v1/chat/completions";
  const source =
    s.source === null
      ? undefined
      : typeof s.source === "object"
        ? { address: { address: { $case: "pipe" as const, value: { path: s.source.pipe, mode: 0 } } } }
        : { address: { address: { $case: "socketAddress" as const, value: { address: s.source ?? "203.0.113.7", portSpecifier: { $case: "portValue" as const, value: 5555 } } } } };
  return CheckRequest.fromPartial({
    attributes: {
      source,
      request: {
        http: {
          id: "1",
          method: "POST",
          path,
          host: "api.aisa.example",
          headers: s.headerMap ? {} : { ":authority": "api.aisa.example", ":method": "POST", ":path": path, ...s.headers },
          headerMap: s.headerMap ? { headers: s.headerMap } : undefined,
          body: s.body ?? "",
          rawBody: s.rawBody ?? Buffer.alloc(0),
        },
      },
    },
  });
}

const ip = (s: string | null) => (s === null ? null : Array.from(toCidrRange(normalizeIpEntry(s)).bytes));
const run = (s: Spec, hops = 0) => toAuthInput(mk(s), { xffTrustedHops: hops });

// ---------------------------------------------------------------------------------------------

describe("toAuthInput: credential", () => {
  const cases: { name: string; spec: Spec; credential: string | null; headers: string[]; query?: string[] }[] = [
    { name: "Bearer", spec: { headers: { authorization: "Bearer sk-a" } }, credential: "sk-a", headers: ["authorization"] },
    { name: "bearer (lower-case scheme)", spec: { headers: { authorization: "bearer sk-a" } }, credential: "sk-a", headers: ["authorization"] },
    { name: "BEARER, extra blanks", spec: { headers: { authorization: "  BEARER \t sk-a  " } }, credential: "sk-a", headers: ["authorization"] },
    { name: "Bearer with no token", spec: { headers: { authorization: "Bearer   " } }, credential: null, headers: ["authorization"] },
    { name: "Bearer without a blank is not Bearer", spec: { headers: { authorization: "Bearersk-a" } }, credential: null, headers: ["authorization"] },
    { name: "Basic is not a credential (but still removed)", spec: { headers: { authorization: "Basic dXNlcjpwYXNz" } }, credential: null, headers: ["authorization"] },
    { name: "x-api-key (Anthropic)", spec: { headers: { "x-api-key": " sk-b " } }, credential: "sk-b", headers: ["x-api-key"] },
    { name: "api-key (Azure)", spec: { headers: { "api-key": "sk-c" } }, credential: "sk-c", headers: ["api-key"] },
    { name: "x-goog-api-key (Gemini)", spec: { headers: { "x-goog-api-key": "sk-d" } }, credential: "sk-d", headers: ["x-goog-api-key"] },
    { name: "key query parameter", spec: { path: "/v1beta/models/m:generateContent?alt=sse&key=sk-e" }, credential: "sk-e", headers: [], query: ["key"] },
    { name: "key query parameter, percent-decoded", spec: { path: "/x?key=sk%2Df%2Bg" }, credential: "sk-f+g", headers: [], query: ["key"] },
    { name: "only the first key=", spec: { path: "/x?key=first&key=second" }, credential: "first", headers: [], query: ["key"] },
    { name: "apikey= / mykey= are not key=", spec: { path: "/x?apikey=a&mykey=b" }, credential: null, headers: [] },
    { name: "key= after a fragment is ignored", spec: { path: "/x?a=1#key=zz" }, credential: null, headers: [] },
    { name: "broken escape: the raw value (→ KEY_INVALID, not MISSING)", spec: { path: "/x?key=sk%zz" }, credential: "sk%zz", headers: [], query: ["key"] },
    { name: "empty key= is no credential", spec: { path: "/x?key=&a=1" }, credential: null, headers: [], query: ["key"] },
    {
      name: "Bearer wins; every credential header is removed",
      spec: { headers: { authorization: "Bearer sk-1", "x-api-key": "sk-2", "api-key": "sk-3", "x-goog-api-key": "sk-4" }, path: "/x?key=sk-5" },
      credential: "sk-1",
      headers: ["authorization", "x-api-key", "api-key", "x-goog-api-key"],
      query: ["key"],
    },
    {
      name: "non-Bearer authorization falls through to x-api-key",
      spec: { headers: { authorization: "Basic Zm9v", "x-api-key": "sk-2" } },
      credential: "sk-2",
      headers: ["authorization", "x-api-key"],
    },
    { name: "x-api-key before api-key", spec: { headers: { "api-key": "sk-3", "x-api-key": "sk-2" } }, credential: "sk-2", headers: ["x-api-key", "api-key"] },
    { name: "empty x-api-key falls through", spec: { headers: { "x-api-key": "  ", "api-key": "sk-3" } }, credential: "sk-3", headers: ["x-api-key", "api-key"] },
    { name: "header beats query", spec: { headers: { "x-goog-api-key": "sk-4" }, path: "/x?key=sk-5" }, credential: "sk-4", headers: ["x-goog-api-key"], query: ["key"] },
    { name: "none", spec: {}, credential: null, headers: [] },
    {
      name: "header_map (encode_raw_headers): raw_value bytes",
      spec: { headerMap: [{ key: ":path", rawValue: Buffer.from("/v1/chat/completions") }, { key: "authorization", rawValue: Buffer.from("Bearer sk-raw") }] },
      credential: "sk-raw",
      headers: ["authorization"],
    },
    {
      name: "header_map: value field",
      spec: { headerMap: [{ key: "x-api-key", value: "sk-val" }] },
      credential: "sk-val",
      headers: ["x-api-key"],
    },
  ];
  for (const c of cases) {
    it(c.name, () => {
      const r = run(c.spec);
      expect(r.input.malformed).to.equal(null);
      expect(r.input.credential).to.equal(c.credential);
      expect(r.credentialHeaders).to.deep.equal(c.headers);
      expect(r.credentialQueryParams).to.deep.equal(c.query ?? []);
    });
  }
});

describe("toAuthInput: client IP", () => {
  const cases: { name: string; source?: Spec["source"]; xff?: string; hops: number; want: string | null }[] = [
    { name: "IPv4 source", source: "203.0.113.7", hops: 0, want: "203.0.113.7" },
    { name: "IPv6 source", source: "2001:db8::7", hops: 0, want: "2001:db8::7" },
    { name: "IPv4-mapped source → IPv4", source: "::ffff:10.1.2.3", hops: 0, want: "10.1.2.3" },
    { name: "pipe source → null", source: { pipe: "/var/run/envoy.sock" }, hops: 0, want: null },
    { name: "no source → null", source: null, hops: 0, want: null },
    { name: "garbage source → null", source: "not-an-ip", hops: 0, want: null },
    { name: "hops 0 ignores XFF entirely", source: "10.0.0.2", xff: "198.51.100.9,10.0.0.2", hops: 0, want: "10.0.0.2" },
    { name: "hops 1: 2nd from right", source: "10.0.0.2", xff: "1.1.1.1,198.51.100.9,10.0.0.2", hops: 1, want: "198.51.100.9" },
    { name: "hops 1: client-sent spaces trimmed", source: "10.0.0.2", xff: "1.1.1.1, 198.51.100.9 ,10.0.0.2", hops: 1, want: "198.51.100.9" },
    { name: "hops 2: 3rd from right", source: "10.0.0.3", xff: "9.9.9.9,198.51.100.9,10.0.0.2,10.0.0.3", hops: 2, want: "198.51.100.9" },
    { name: "hops 2 with exactly 3 entries: the leftmost IS the 3rd from right", source: "10.0.0.3", xff: "198.51.100.9,10.0.0.2,10.0.0.3", hops: 2, want: "198.51.100.9" },
    { name: "hops 1, one entry (bypassed the proxy) → source", source: "203.0.113.7", xff: "203.0.113.7", hops: 1, want: "203.0.113.7" },
    { name: "hops 2, two entries → source", source: "10.0.0.3", xff: "10.9.9.9,10.0.0.3", hops: 2, want: "10.0.0.3" },
    { name: "hops 1, no XFF header → source", source: "203.0.113.7", hops: 1, want: "203.0.113.7" },
    { name: "hops 1, empty XFF → source", source: "203.0.113.7", xff: "", hops: 1, want: "203.0.113.7" },
    { name: "hops 1, trusted entry is garbage → null (fail closed, not the proxy's address)", source: "10.0.0.2", xff: "10.9.9.9,unknown,10.0.0.2", hops: 1, want: null },
    { name: "hops 1, trusted entry empty → null", source: "10.0.0.2", xff: "10.9.9.9,,10.0.0.2", hops: 1, want: null },
    { name: "hops 1, IPv6 entry", source: "10.0.0.2", xff: "2001:db8::9,10.0.0.2", hops: 1, want: "2001:db8::9" },
    { name: "hops 1, bracketed IPv6 with port", source: "10.0.0.2", xff: "[2001:db8::9]:443,10.0.0.2", hops: 1, want: "2001:db8::9" },
    { name: "hops 1, mapped entry → IPv4", source: "10.0.0.2", xff: "::ffff:10.7.7.7,10.0.0.2", hops: 1, want: "10.7.7.7" },
    { name: "hops 1 with a pipe source and too few entries → null", source: { pipe: "/s" }, xff: "10.1.1.1", hops: 1, want: null },
    { name: "negative / fractional hops count as 0", source: "203.0.113.7", xff: "10.1.1.1,203.0.113.7", hops: -1, want: "203.0.113.7" },
  ];
  for (const c of cases) {
    it(c.name, () => {
      const r = run({ source: c.source, headers: c.xff === undefined ? {} : { "x-forwarded-for": c.xff } }, c.hops);
      expect(r.input.clientIp === null ? null : Array.from(r.input.clientIp)).to.deep.equal(ip(c.want));
    });
  }
  it("header_map: repeated x-forwarded-for lines are joined like Envoy's headers map", () => {
    const r = toAuthInput(
      mk({
        source: "10.0.0.2",
        headerMap: [
          { key: "x-forwarded-for", value: "10.9.9.9" },
          { key: "x-forwarded-for", value: "198.51.100.9,10.0.0.2" },
        ],
      }),
      { xffTrustedHops: 1 },
    );
    expect(Array.from(r.input.clientIp!)).to.deep.equal(ip("198.51.100.9"));
  });
});

describe("toAuthInput: model and max_tokens", () => {
  const json = (o: unknown) => JSON.stringify(o);
  const cases: { name: string; spec: Spec; model: string | null; maxTokens?: number | null; declared?: boolean; conflict?: boolean }[] = [
    { name: "body (messages first, as the OpenAI SDK sends it)", spec: { body: json({ messages: [{ role: "user", content: "hi" }], model: "gpt-4o", max_tokens: 50 }) }, model: "gpt-4o", maxTokens: 50 },
    { name: "raw_body", spec: { rawBody: Buffer.from(json({ model: "gpt-4o", max_completion_tokens: 70 })) }, model: "gpt-4o", maxTokens: 70 },
    { name: "body wins over raw_body", spec: { body: json({ model: "a" }), rawBody: Buffer.from(json({ model: "b" })) }, model: "a" },
    {
      name: "partial body: model before the cut",
      spec: { body: '{"model":"gpt-4o","messages":[{"role":"user","content":"long tex', headers: { "x-envoy-auth-partial-body": "true" } },
      model: "gpt-4o",
    },
    {
      name: "same truncated body NOT marked partial → nothing (invalid JSON, upstream rejects it)",
      spec: { body: '{"model":"gpt-4o","messages":[{"role":"user","content":"long tex', headers: { "x-envoy-auth-partial-body": "false" } },
      model: null,
    },
    {
      name: "partial body: model cut mid-string is not taken",
      spec: { body: '{"messages":[],"model":"gpt-4o-mi', headers: { "x-envoy-auth-partial-body": "true" } },
      model: null,
    },
    { name: "Gemini path", spec: { path: "/v1beta/models/gemini-2.0-flash:generateContent", body: json({ contents: [] }) }, model: "gemini-2.0-flash" },
    { name: "Gemini v1 path, streaming, query", spec: { path: "/v1/models/gemini-1.5-pro:streamGenerateContent?alt=sse&key=k" }, model: "gemini-1.5-pro" },
    { name: "Azure path", spec: { path: "/openai/deployments/my-gpt4o/chat/completions?api-version=2024-10-21", body: json({ messages: [] }) }, model: "my-gpt4o" },
    { name: "Azure path, percent-encoded", spec: { path: "/openai/deployments/my%20dep/embeddings" }, model: "my dep" },
    { name: "x-aisa-model header, nothing else names a model: declared", spec: { path: "/v1/audio/transcriptions", body: "--b\r\nmultipart", headers: { "x-aisa-model": " whisper-1 " } }, model: "whisper-1", declared: true },
    { name: "Azure: the path decides; the same model in the body agrees", spec: { path: "/openai/deployments/dep/chat/completions", body: json({ model: "dep" }) }, model: "dep" },
    { name: "Azure: a body model other than the deployment → conflict (the path decides)", spec: { path: "/openai/deployments/gpt-4o/chat/completions?api-version=2024-10-21", body: json({ model: "cheap-model" }) }, model: "gpt-4o", conflict: true },
    { name: "Gemini: a body model other than the path's → conflict", spec: { path: "/v1beta/models/gemini-1.5-pro:generateContent", body: json({ model: "cheap-model" }) }, model: "gemini-1.5-pro", conflict: true },
    { name: "Bedrock: the path decides", spec: { path: "/model/anthropic.claude-3-5-sonnet-20240620-v1:0/converse", body: json({ messages: [] }) }, model: "anthropic.claude-3-5-sonnet-20240620-v1:0" },
    { name: "Bedrock: a body model other than the path's → conflict", spec: { path: "/model/big-model/invoke", body: json({ model: "cheap-model" }) }, model: "big-model", conflict: true },
    { name: "path with a dot segment → conflict (an upstream may normalise it elsewhere)", spec: { path: "/openai/deployments/cheap-model/../gpt-4o/chat/completions", body: json({ model: "cheap-model" }) }, model: "cheap-model", conflict: true },
    { name: "path with an encoded dot segment → conflict", spec: { path: "/openai/deployments/cheap-model/%2e%2e/gpt-4o/chat/completions", body: json({ model: "cheap-model" }) }, model: "cheap-model", conflict: true },
    { name: "upper-case Azure prefix still routes by path", spec: { path: "/OpenAI/Deployments/gpt-4o/chat/completions", body: json({ model: "cheap-model" }) }, model: "gpt-4o", conflict: true },
    { name: "doubled slashes still route by path", spec: { path: "//openai//deployments/gpt-4o/chat/completions", body: json({ model: "cheap-model" }) }, model: "gpt-4o", conflict: true },
    { name: "Gemini: encoded colon still routes by path", spec: { path: "/v1beta/models/gemini-1.5-pro%3AgenerateContent", body: json({ model: "cheap-model" }) }, model: "gemini-1.5-pro", conflict: true },
    { name: "the header never overrides the body: disagreeing → conflict", spec: { path: "/v1/chat/completions", body: json({ model: "gpt-4o" }), headers: { "x-aisa-model": "cheap-model" } }, model: "gpt-4o", conflict: true },
    { name: "the header never overrides the path: disagreeing → conflict", spec: { path: "/openai/deployments/dep/chat/completions", headers: { "x-aisa-model": "hdr" } }, model: "dep", conflict: true },
    { name: "a header agreeing with the body is harmless", spec: { body: json({ model: "gpt-4o" }), headers: { "x-aisa-model": "gpt-4o" } }, model: "gpt-4o" },
    { name: "no body model, header only (chat completions): declared", spec: { path: "/v1/chat/completions", body: json({ messages: [] }), headers: { "x-aisa-model": "cheap-model" } }, model: "cheap-model", declared: true },
    { name: "non-JSON body, no path, no header → null", spec: { body: "hello world" }, model: null, maxTokens: null },
    { name: "non-string body model: the header is only declared", spec: { body: json({ model: 42 }), headers: { "x-aisa-model": "hdr" } }, model: "hdr", declared: true },
    { name: "invalid UTF-8 raw_body → null", spec: { rawBody: Buffer.from([0x7b, 0x22, 0x6d, 0x6f, 0x64, 0x65, 0x6c, 0x22, 0x3a, 0x22, 0xff, 0xfe, 0x22, 0x7d]) }, model: null },
    { name: "header longer than 256 → null", spec: { headers: { "x-aisa-model": "m".repeat(257) } }, model: null },
    { name: "header exactly 256 → taken (declared)", spec: { headers: { "x-aisa-model": "m".repeat(256) } }, model: "m".repeat(256), declared: true },
  ];
  for (const c of cases) {
    it(c.name, () => {
      const r = run({ ...c.spec, headers: { authorization: "Bearer sk-t", ...c.spec.headers } });
      expect(r.input.model).to.equal(c.model);
      expect(r.input.modelDeclared, "modelDeclared").to.equal(c.declared ?? false);
      expect(r.input.modelConflict, "modelConflict").to.equal(c.conflict ?? false);
      if (c.maxTokens !== undefined) expect(r.input.maxTokens).to.equal(c.maxTokens);
      expect(r.input.estimatedUnits).to.equal(null);
    });
  }

  it("without a credential the body, path and header are not read (KEY_MISSING decides)", () => {
    const r = run({ body: json({ model: "gpt-4o", max_tokens: 5 }), path: "/openai/deployments/d/chat", headers: { "x-aisa-model": "h" } });
    expect(r.input.credential).to.equal(null);
    expect(r.input.model).to.equal(null);
    expect(r.input.maxTokens).to.equal(null);
  });
});

describe("toAuthInput: malformed and fuzzed input never throws", () => {
  const malformed: [string, unknown][] = [
    ["empty CheckRequest", {}],
    ["null attributes", { attributes: undefined }],
    ["no request", CheckRequest.fromPartial({ attributes: { source: undefined } })],
    ["no http", CheckRequest.fromPartial({ attributes: { request: {} } })],
    ["null request object", null],
    ["undefined", undefined],
  ];
  for (const [name, req] of malformed) {
    it(name, () => {
      const r = toAuthInput(req as CheckRequest, { xffTrustedHops: 1 });
      expect(r.input.malformed).to.be.a("string");
      expect(r.input.credential).to.equal(null);
      expect(r.credentialHeaders).to.deep.equal([]);
    });
  }

  it("hand-built junk inside http is tolerated", () => {
    const junk = {
      attributes: {
        source: { address: { address: { $case: "socketAddress", value: { address: 12 } } } },
        request: { http: { headers: { authorization: 5, "x-api-key": ["a"] }, headerMap: { headers: [null, { key: 1 }] }, path: null, body: {}, rawBody: "x" } },
      },
    };
    const r = toAuthInput(junk as unknown as CheckRequest, { xffTrustedHops: 0 });
    expect(r.input.malformed).to.equal(null);
    expect(r.input.credential).to.equal(null);
    expect(r.input.clientIp).to.equal(null);
  });

  it("2000 random wire mutations of a real request: decode may fail, toAuthInput never does", () => {
    const good = CheckRequest.encode(
      mk({ headers: { authorization: "Bearer sk-x", "x-forwarded-for": "1.2.3.4,10.0.0.2" }, body: '{"model":"gpt-4o","max_tokens":5}' }),
    ).finish();
    let s = 1;
    const rnd = (n: number) => {
      s = (Math.imul(s, 1103515245) + 12345) >>> 0;
      return s % n;
    };
    let decoded = 0;
    for (let n = 0; n < 2000; n++) {
      const b = Uint8Array.from(good);
      for (let k = 0; k < 1 + rnd(2); k++) b[rnd(b.length)] = rnd(256);
      let req: CheckRequest;
      try {
        req = CheckRequest.decode(rnd(4) === 0 ? b.subarray(0, b.length - rnd(20)) : b);
      } catch {
        continue;
      }
      decoded++;
      expect(() => toAuthInput(req, { xffTrustedHops: rnd(3) })).to.not.throw();
    }
    expect(decoded).to.be.greaterThan(100);
  });
});

// ---------------------------------------------------------------------------------------------

describe("extractBodyFields", () => {
  const table: { name: string; body: string; partial?: boolean; model: string | null; maxTokens?: number | null }[] = [
    { name: "minimal", body: '{"model":"gpt-4o"}', model: "gpt-4o", maxTokens: null },
    { name: "whitespace everywhere", body: ' \n{ "model" :\t"gpt-4o" , "max_tokens" : 12 }\n', model: "gpt-4o", maxTokens: 12 },
    { name: "max_completion_tokens", body: '{"model":"m","max_completion_tokens":300}', model: "m", maxTokens: 300 },
    { name: "max_output_tokens (Responses API)", body: '{"model":"m","max_output_tokens":900}', model: "m", maxTokens: 900 },
    { name: "several token fields: the largest", body: '{"max_tokens":10,"max_completion_tokens":30,"max_output_tokens":20}', model: null, maxTokens: 30 },
    { name: "max_tokens 1e3 is a valid JSON integer", body: '{"max_tokens":1e3}', model: null, maxTokens: 1000 },
    { name: "max_tokens fractional → null", body: '{"max_tokens":10.5}', model: null, maxTokens: null },
    { name: "max_tokens negative → null", body: '{"max_tokens":-1}', model: null, maxTokens: null },
    { name: "max_tokens string → null", body: '{"max_tokens":"100"}', model: null, maxTokens: null },
    { name: "max_tokens null → null", body: '{"max_tokens":null}', model: null, maxTokens: null },
    { name: "max_tokens huge → null", body: '{"max_tokens":123456789012345678901234567890}', model: null, maxTokens: null },
    { name: "nested model keys are not top-level", body: '{"messages":[{"model":"inner","content":"{\\"model\\":\\"x\\"}"}],"tools":{"model":"t"},"model":"outer"}', model: "outer" },
    { name: "only nested model → null", body: '{"metadata":{"model":"inner"}}', model: null },
    { name: "key inside a string value is not a key", body: '{"prompt":"\\"model\\":\\"evil\\"","x":1}', model: null },
    { name: "escaped quotes and backslashes in skipped strings", body: '{"a":"\\\\","b":"\\\\\\"","c":["\\"]}"],"model":"ok"}', model: "ok" },
    { name: "duplicate model: the LAST wins (like JSON.parse / the upstream)", body: '{"model":"allowed","messages":[],"model":"forbidden"}', model: "forbidden" },
    { name: "duplicate model, last not a string → null", body: '{"model":"allowed","model":{"x":1}}', model: null },
    { name: "escaped key spelling", body: '{"m\\u006fdel":"gpt-4o"}', model: "gpt-4o" },
    { name: "escaped model value", body: '{"model":"gpt\\u002d4o\\/x"}', model: "gpt-4o/x" },
    { name: "unicode model value", body: '{"model":"模型-é"}', model: "模型-é" },
    { name: "model with a control char → null", body: '{"model":"a\\nb"}', model: null },
    { name: "empty model → null", body: '{"model":""}', model: null },
    { name: "model 256 chars", body: `{"model":"${"m".repeat(256)}"}`, model: "m".repeat(256) },
    { name: "model 257 chars → null", body: `{"model":"${"m".repeat(257)}"}`, model: null },
    { name: "model true → null", body: '{"model":true}', model: null },
    { name: "model array → null", body: '{"model":["a"]}', model: null },
    { name: "top-level array → null", body: '[{"model":"x"}]', model: null },
    { name: "empty object", body: "{}", model: null },
    { name: "not JSON", body: "model=gpt-4o&max_tokens=5", model: null },
    { name: "syntax error after the model → nothing", body: '{"model":"gpt-4o" "x":1}', model: null },
    { name: "trailing comma → nothing", body: '{"model":"gpt-4o",}', model: null },
    { name: "complete body cut short → nothing", body: '{"model":"gpt-4o","max_tokens":5', model: null },
    { name: "partial: fields before the cut", body: '{"model":"gpt-4o","max_tokens":5,"messages":[{"content":"ab', partial: true, model: "gpt-4o", maxTokens: 5 },
    { name: "partial: number at the very end is not taken (could be 50, 500…)", body: '{"model":"gpt-4o","max_tokens":5', partial: true, model: "gpt-4o", maxTokens: null },
    { name: "partial: cut inside a key", body: '{"model":"gpt-4o","max_to', partial: true, model: "gpt-4o" },
    { name: "partial: cut right after the colon", body: '{"model":', partial: true, model: null },
    { name: "partial: syntax error still → nothing", body: '{"model":"gpt-4o" x', partial: true, model: null },
    { name: "Envoy-sanitised body ('!' for invalid bytes) still scans", body: '{"messages":[{"content":"bad !! bytes"}],"model":"gpt-4o"}', model: "gpt-4o" },
    { name: "empty string", body: "", model: null },
    { name: "BOM-prefixed JSON is not JSON", body: '\ufeff{"model":"x"}', model: null },
  ];
  for (const c of table) {
    for (const form of ["string", "bytes"] as const) {
      it(`${c.name} (${form})`, () => {
        const body = form === "string" ? c.body : Buffer.from(c.body, "utf8");
        const r = extractBodyFields(body, c.partial ?? false);
        expect(r.model).to.equal(c.model);
        if (c.maxTokens !== undefined) expect(r.maxTokens).to.equal(c.maxTokens);
      });
    }
  }

  it("agrees with JSON.parse on valid bodies", () => {
    const bodies = [
      { model: "a", max_tokens: 3 },
      { messages: [{ content: 'x"y\\z', model: "n" }], model: "b", extra: { max_tokens: 99 } },
      { model: "c", model2: "d", "max_tokens ": 5, max_tokens: 7 },
      { a: [[[[{}]]]], b: null, c: true, d: -1.5e-3, model: "\u2028\u00e9" },
    ];
    for (const o of bodies) {
      const text = JSON.stringify(o);
      const parsed = JSON.parse(text) as { model?: unknown; max_tokens?: unknown };
      const r = extractBodyFields(text, false);
      expect(r.model).to.equal(typeof parsed.model === "string" ? parsed.model : null);
      expect(r.maxTokens).to.equal(typeof parsed.max_tokens === "number" ? parsed.max_tokens : null);
    }
  });

  it("5 MB body with the model first: found, bounded scan, no JSON.parse of the body", () => {
    const filler = "x".repeat(5 * 1024 * 1024);
    const body = `{"model":"gpt-4o","messages":[{"role":"user","content":"${filler}"}],"max_tokens":10}`;
    const origParse = JSON.parse;
    let bigParses = 0;
    JSON.parse = ((text: string, reviver?: (this: unknown, key: string, value: unknown) => unknown) => {
      if (text.length > 1024) bigParses++;
      return origParse(text, reviver);
    }) as typeof JSON.parse;
    try {
      for (const form of [body, Buffer.from(body)]) {
        const r = extractBodyFields(form, false);
        // Beyond the scan cap the body counts as truncated: the model (before the cap) is taken.
        expect(r.model).to.equal("gpt-4o");
        expect(r.maxTokens).to.equal(null); // after the cap: not seen
      }
    } finally {
      JSON.parse = origParse;
    }
    expect(bigParses).to.equal(0);
    expect(body.length).to.be.greaterThan(MAX_BODY_SCAN_BYTES);
  });

  it("1 MB body with model after a huge messages array (OpenAI SDK order) is found", () => {
    const messages = Array.from({ length: 2000 }, (_, i) => ({ role: "user", content: `message ${i} "quoted" \\ ${"y".repeat(400)}` }));
    const body = JSON.stringify({ messages, model: "gpt-4o-mini", max_tokens: 256 });
    expect(body.length).to.be.greaterThan(800_000);
    expect(extractBodyFields(body, false)).to.deep.equal({ model: "gpt-4o-mini", maxTokens: 256 });
    expect(extractBodyFields(Buffer.from(body), false)).to.deep.equal({ model: "gpt-4o-mini", maxTokens: 256 });
  });

  it("100k levels of nesting: no throw, no recursion", () => {
    const deep = `{"a":${"[".repeat(100_000)}${"]".repeat(100_000)},"model":"deep"}`;
    expect(extractBodyFields(deep, false).model).to.equal("deep");
    const unclosed = `{"a":${"[".repeat(100_000)}`;
    expect(extractBodyFields(unclosed, false).model).to.equal(null);
    expect(extractBodyFields(unclosed, true).model).to.equal(null);
    const objects = `{"a":${'{"b":'.repeat(100_000)}1${"}".repeat(100_000)},"model":"deep2"}`;
    expect(extractBodyFields(Buffer.from(objects), false).model).to.equal("deep2");
    // And the whole request path too.
    expect(run({ body: deep, headers: { "x-api-key": "sk-t" } }).input.model).to.equal("deep");
  });

  it("invalid UTF-8 anywhere in raw bytes → nulls; a partial body cut mid-character is fine", () => {
    const bad = Buffer.concat([Buffer.from('{"model":"gpt-4o","messages":[{"content":"'), Buffer.from([0xc3, 0x28]), Buffer.from('"}]}')]);
    expect(extractBodyFields(bad, false)).to.deep.equal({ model: null, maxTokens: null });
    const text = Buffer.from('{"model":"gpt-4o","messages":[{"content":"é世');
    for (let cut = text.length - 3; cut <= text.length; cut++) {
      expect(extractBodyFields(text.subarray(0, cut), true).model, `cut ${cut}`).to.equal("gpt-4o");
    }
  });

  it("never throws on 3000 random byte strings and mutations of a valid body", () => {
    const base = Buffer.from('{"messages":[{"role":"user","content":"a\\"b"}],"model":"gpt-4o","max_tokens":5}');
    let s = 7;
    const rnd = (n: number) => {
      s = (Math.imul(s, 1103515245) + 12345) >>> 0;
      return s % n;
    };
    const alphabet = Buffer.from('{}[]":,\\ abmodel0123456789\xff');
    for (let n = 0; n < 3000; n++) {
      const b = Buffer.from(base);
      for (let k = 0; k < 1 + rnd(6); k++) b[rnd(b.length)] = alphabet[rnd(alphabet.length)]!;
      const cut = b.subarray(0, b.length - rnd(10));
      const partial = rnd(2) === 0;
      expect(() => extractBodyFields(cut, partial)).to.not.throw();
      expect(() => extractBodyFields(cut.toString("latin1"), partial)).to.not.throw();
    }
  });
});

describe("extractPathModel", () => {
  const table: [string, string | null][] = [
    ["/v1beta/models/gemini-2.0-flash:generateContent", "gemini-2.0-flash"],
    ["/v1beta/models/gemini-2.0-flash:streamGenerateContent?alt=sse", "gemini-2.0-flash"],
    ["/v1/models/gemini-1.5-pro:countTokens", "gemini-1.5-pro"],
    ["/v1alpha/models/gemini-exp:generateContent", "gemini-exp"],
    ["/v1beta/models/gemini%2D2.0:generateContent", "gemini-2.0"],
    ["/v1beta/models/:generateContent", null],
    ["/v1beta/models/gemini-2.0-flash", null], // models.get: no method colon
    ["/v1/models/ft:gpt-4o-mini:org::abc", null], // OpenAI fine-tune id (models.retrieve/delete), not Gemini
    ["/v1/models/curie:ft-personal-2022-02-15", null],
    ["/v1beta/models/gemini-2.0-flash:", null],
    ["/v1/models", null],
    ["/v1beta/models/a/b:generateContent", null],
    ["/v1beta/models/x?q=a:b", null],
    ["/openai/deployments/gpt-4o-mini/chat/completions?api-version=2024-10-21", "gpt-4o-mini"],
    ["/openai/deployments/gpt-4o-mini", "gpt-4o-mini"],
    ["/openai/deployments/gpt-4o-mini?api-version=1", "gpt-4o-mini"],
    ["/openai/deployments//chat/completions", "chat"], // an upstream merging slashes routes to "chat"
    ["/OPENAI/DEPLOYMENTS/Dep/chat", "Dep"], // prefixes case-insensitive, the name kept
    ["/v1beta/models/gemini-2.0-flash%3AgenerateContent", "gemini-2.0-flash"],
    ["/v1beta/tunedModels/my-tuned:generateContent", "my-tuned"],
    ["/v1/projects/p/locations/us-central1/publishers/google/models/gemini-1.5-pro:streamGenerateContent", "gemini-1.5-pro"],
    ["/v1/projects/p/locations/us-central1/endpoints/openapi/chat/completions", null], // Vertex's OpenAI endpoint: body model
    ["/model/anthropic.claude-3-haiku-20240307-v1:0/invoke", "anthropic.claude-3-haiku-20240307-v1:0"],
    ["/model/arn%3Aaws%3Abedrock%3Aus-east-1%3A1%3Ainference-profile%2Fus.x/converse-stream", "arn:aws:bedrock:us-east-1:1:inference-profile/us.x"],
    ["/model/x/unknown-action", null],
    ["/openai/deployments/a%2Fb/chat", null], // ambiguous (see parsePathModel)
    ["/openai/deployments/x/../y/chat", null], // ambiguous
    ["/openai/deployments/a%ZZ/chat", null],
    ["/openai/deployments/%00x/chat", null],
    [`/openai/deployments/${"d".repeat(257)}/chat`, null],
    ["/v1/chat/completions", null],
    ["/proxy/openai/deployments/x/chat", null], // anchored at the start
    ["", null],
  ];
  for (const [path, want] of table) {
    it(`${path.length > 60 ? path.slice(0, 60) + "…" : JSON.stringify(path)} → ${want}`, () => {
      expect(extractPathModel(path)).to.equal(want);
    });
  }
});

describe("parsePathModel: ambiguous paths", () => {
  const table: [string, boolean][] = [
    ["/openai/deployments/x/../y/chat", true],
    ["/openai/deployments/x/./chat", true],
    ["/openai/deployments/x/%2E%2E/y/chat", true],
    ["/openai\\deployments\\gpt-4o\\chat", true],
    ["/openai/deployments/x%5C..%5Cy/chat", true],
    ["/openai/deployments/a%2Fb/chat", true],
    ["/v1beta/models/a%2Fb:generateContent", true],
    ["/openai/deployments/a%ZZ/chat", true],
    ["/model/arn%3Aaws%3Abedrock%3Ax%2Fy/invoke", false], // Bedrock ARNs hold a "/"
    ["/openai/deployments/gpt-4o/chat/completions?x=/../", false], // the query is not the path
    ["/v1/chat/completions", false],
  ];
  for (const [path, want] of table) {
    it(`${JSON.stringify(path)} → ambiguous ${want}`, () => {
      expect(parsePathModel(path).ambiguous).to.equal(want);
    });
  }
});

// ---------------------------------------------------------------------------------------------
// Fixtures: proto-loader (independent of the generated code) → wire → generated decoder →
// toAuthInput → evaluatePolicy against the seeded state described in the fixtures README.

interface Fixture {
  description: string;
  keys: string;
  xffTrustedHops: number;
  request: unknown;
  expect: { allowed: boolean; reason: string; httpStatus: number };
}

const SEEDED = ["valid", "disabled", "expired", "ip-restricted", "model-restricted", "quota-empty", "rate-limited", "group-capped"] as const;
const NOW = Date.UTC(2025, 10, 27, 12, 0, 0);
const secretOf = (name: string) => `sk-seeded${name.replace(/-/g, "")}${"0".repeat(20)}`;

function seededKey(name: string): PolicyKey {
  const k: PolicyKey = {
    id: `key_${name}`,
    accountId: "acct_seed",
    group: "default",
    enabled: name !== "disabled",
    expiresAt: name === "expired" ? NOW - 86_400_000 : null,
    models: name === "model-restricted" ? new Set(["gpt-4o-mini"]) : null,
    ips: name === "ip-restricted" ? ["10.0.0.0/8", "2001:db8::/32"].map((s) => toCidrRange(normalizeIpEntry(s))) : null,
    unlimited: name !== "quota-empty",
    quotaAvailable: 0,
    limits: { rpm: name === "rate-limited" ? 1 : 0, tpm: 0, concurrency: 0 },
  };
  return k;
}

const KEYS = new Map(SEEDED.map((n) => [secretOf(n), seededKey(n)]));
const PRICES = new Map(
  ["gpt-4o-mini", "gpt-4o", "gemini-2.0-flash"].map((m) => [m, { model: m, inputPerMillion: 150, outputPerMillion: 600, perRequest: 1 }]),
);

/** What each fixture should extract, beyond the verdict. */
const EXTRACTED: Record<string, { model: string | null; credentialHeaders: string[]; query?: string[]; ip: string | null }> = {
  "valid-bearer": { model: "gpt-4o-mini", credentialHeaders: ["authorization"], ip: "203.0.113.7" },
  "valid-x-api-key": { model: "gpt-4o-mini", credentialHeaders: ["x-api-key"], ip: "203.0.113.7" },
  "valid-api-key-azure": { model: "gpt-4o-mini", credentialHeaders: ["api-key"], ip: "203.0.113.7" },
  "valid-goog-api-key": { model: "gemini-2.0-flash", credentialHeaders: ["x-goog-api-key"], ip: "203.0.113.7" },
  "valid-query-key": { model: "gemini-2.0-flash", credentialHeaders: [], query: ["key"], ip: "203.0.113.7" },
  "missing-key": { model: null, credentialHeaders: [], ip: "203.0.113.7" }, // no credential: nothing else is read
  "invalid-key": { model: "gpt-4o-mini", credentialHeaders: ["authorization"], ip: "203.0.113.7" },
  "disabled-key": { model: "gpt-4o-mini", credentialHeaders: ["authorization"], ip: "203.0.113.7" },
  "expired-key": { model: "gpt-4o-mini", credentialHeaders: ["authorization"], ip: "203.0.113.7" },
  "ip-allowed-v4": { model: "gpt-4o-mini", credentialHeaders: ["authorization"], ip: "10.1.2.3" },
  "ip-denied-v4": { model: "gpt-4o-mini", credentialHeaders: ["authorization"], ip: "203.0.113.7" },
  "ip-allowed-v6": { model: "gpt-4o-mini", credentialHeaders: ["authorization"], ip: "2001:db8:85a3::8a2e:370:7334" },
  "ip-mapped-v4": { model: "gpt-4o-mini", credentialHeaders: ["authorization"], ip: "10.20.30.40" },
  "ip-pipe-peer": { model: "gpt-4o-mini", credentialHeaders: ["authorization"], ip: null },
  "xff-spoofed-leftmost": { model: "gpt-4o-mini", credentialHeaders: ["authorization"], ip: "198.51.100.9" },
  "xff-hop-allowed": { model: "gpt-4o-mini", credentialHeaders: ["authorization"], ip: "10.20.0.7" },
  "model-from-body": { model: "gpt-4o-mini", credentialHeaders: ["authorization"], ip: "203.0.113.7" },
  "model-from-raw-body": { model: "gpt-4o-mini", credentialHeaders: ["authorization"], ip: "203.0.113.7" },
  "model-partial-body": { model: "gpt-4o-mini", credentialHeaders: ["authorization"], ip: "203.0.113.7" },
  "model-from-gemini-path": { model: "gpt-4o-mini", credentialHeaders: ["x-goog-api-key"], ip: "203.0.113.7" },
  "model-from-azure-path": { model: "gpt-4o-mini", credentialHeaders: ["api-key"], ip: "203.0.113.7" },
  "model-from-header": { model: "gpt-4o-mini", credentialHeaders: ["authorization"], ip: "203.0.113.7" },
  "model-header-only": { model: "gpt-4o-mini", credentialHeaders: ["authorization"], ip: "203.0.113.7" },
  "model-header-disagrees": { model: "gpt-4o-mini", credentialHeaders: ["authorization"], ip: "203.0.113.7" },
  "model-azure-path-body-mismatch": { model: "gpt-4o", credentialHeaders: ["api-key"], ip: "203.0.113.7" },
  "model-gemini-path-body-mismatch": { model: "gemini-1.5-pro", credentialHeaders: ["x-goog-api-key"], ip: "203.0.113.7" },
  "model-path-dot-segment": { model: "gpt-4o-mini", credentialHeaders: ["api-key"], ip: "203.0.113.7" },
  "model-from-bedrock-path": { model: "gpt-4o-mini", credentialHeaders: ["authorization"], ip: "203.0.113.7" },
  "model-not-allowed": { model: "gpt-4o", credentialHeaders: ["authorization"], ip: "203.0.113.7" },
  "model-required": { model: null, credentialHeaders: ["authorization"], ip: "203.0.113.7" },
  "quota-exhausted": { model: "gpt-4o-mini", credentialHeaders: ["authorization"], ip: "203.0.113.7" },
  "group-budget-exhausted": { model: "gpt-4o-mini", credentialHeaders: ["authorization"], ip: "203.0.113.7" },
  "rate-limited": { model: "gpt-4o-mini", credentialHeaders: ["authorization"], ip: "203.0.113.7" },
  "malformed-no-http": { model: null, credentialHeaders: [], ip: null },
};

describe("fixtures: test/fixtures/check-requests", () => {
  const pkg = protoLoader.loadSync("envoy/service/auth/v3/external_auth.proto", {
    includeDirs: [`${ROOT}proto`],
    keepCase: true,
    longs: String,
    enums: String,
    defaults: false,
    oneofs: true,
  });
  const check = (pkg["envoy.service.auth.v3.Authorization"] as ServiceDefinition).Check!;
  const files = readdirSync(FIXTURES).filter((f) => f.endsWith(".json")).sort();

  it("has every required case", () => {
    const names = new Set(files.map((f) => f.replace(/\.json$/, "")));
    for (const n of Object.keys(EXTRACTED)) expect(names.has(n), n).to.equal(true);
    expect(names.size).to.equal(Object.keys(EXTRACTED).length);
  });

  for (const file of files) {
    const name = file.replace(/\.json$/, "");
    it(name, () => {
      const text = readFileSync(FIXTURES + file, "utf8");
      const raw = JSON.parse(text) as Fixture;
      expect(raw.description).to.be.a("string").and.not.equal("");
      expect(raw.keys === "none" || (SEEDED as readonly string[]).includes(raw.keys), `keys: ${raw.keys}`).to.equal(true);
      if (raw.keys === "none") expect(text.includes("{{KEY}}")).to.equal(false);
      const f = JSON.parse(raw.keys === "none" ? text : text.replaceAll("{{KEY}}", secretOf(raw.keys))) as Fixture;

      // Envoy facts the fixture must honour.
      const http = (f.request as { attributes?: { request?: { http?: { headers: Record<string, string>; path: string; body?: string; raw_body?: string } } } })
        .attributes?.request?.http;
      if (http) {
        for (const k of Object.keys(http.headers)) expect(k, "header names are lower-case").to.equal(k.toLowerCase());
        for (const k of [":authority", ":method", ":path", "x-request-id", "x-forwarded-proto"]) expect(http.headers, k).to.have.property(k);
        expect(http.headers[":path"]).to.equal(http.path);
        expect(http.headers).to.not.have.property("host");
        if (http.headers["x-forwarded-for"] !== undefined) expect(http.headers["x-forwarded-for"]).to.not.include(", ");
        const hasBody = http.body !== undefined || http.raw_body !== undefined;
        expect(http.headers["x-envoy-auth-partial-body"] !== undefined, "partial-body marker iff a body").to.equal(hasBody);
      }

      const wire = check.requestSerialize(f.request as object);
      const req = CheckRequest.decode(wire);
      const out = toAuthInput(req, { xffTrustedHops: f.xffTrustedHops });
      const want = EXTRACTED[name]!;
      expect(out.input.model, "model").to.equal(want.model);
      expect(out.credentialHeaders, "credential headers").to.deep.equal(want.credentialHeaders);
      expect(out.credentialQueryParams, "credential query params").to.deep.equal(want.query ?? []);
      expect(out.input.clientIp === null ? null : Array.from(out.input.clientIp), "client ip").to.deep.equal(ip(want.ip));

      const k = out.input.credential === null ? undefined : KEYS.get(out.input.credential);
      const pi: PolicyInput = {
        now: NOW,
        request: out.input,
        key: k,
        // group-capped: its group's budget (1 unit a day) no estimate fits.
        group: raw.keys === "group-capped" ? { ratioPpm: 1_000_000, models: null, budget: { units: 1, spent: 0, reserved: 0 } } : { ratioPpm: 1_000_000, models: null },
        account: { available: 1_000_000_000 },
        price: out.input.model === null ? undefined : PRICES.get(out.input.model),
        rate: { requestsInWindow: raw.keys === "rate-limited" ? 1 : 0, tokensInWindow: 0, open: 0, windowResetMs: 30_000 },
        config: { denyUnpricedModels: true, defaultEstimateUnits: 100, inputEstimateTokens: 1000, defaultMaxTokens: 4096 },
      };
      const v = evaluatePolicy(pi);
      expect(v.allowed, `allowed (${v.reason})`).to.equal(f.expect.allowed);
      expect(v.reason).to.equal(f.expect.reason);
      expect(v.allowed ? 200 : REASON_TABLE[v.reason].httpStatus).to.equal(f.expect.httpStatus);
    });
  }
});
