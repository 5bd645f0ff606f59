import { expect } from "chai";
import { BinaryReader } from "@bufbuild/protobuf/wire";
import type { HeaderValueOption } from "../../src/gen/envoy/config/core/v3/base.js";
import { CheckResponse, type OkHttpResponse } from "../../src/gen/envoy/service/auth/v3/external_auth.js";
import { REASONS, REASON_TABLE, type DenyReason } from "../../src/policy/reasons.js";
import { allowResponse, denyResponse, WWW_AUTHENTICATE } from "../../src/transport/envoy/toCheckResponse.js";

const DENY_REASONS = REASONS.filter((r): r is DenyReason => r !== "ALLOWED");

/** Encode with the generated code, decode again: what Envoy would see. */
function wire(r: CheckResponse): { decoded: CheckResponse; bytes: Uint8Array } {
  const bytes = CheckResponse.encode(r).finish();
  return { decoded: CheckResponse.decode(bytes), bytes };
}

function headerMap(list: HeaderValueOption[]): Map<string, HeaderValueOption> {
  const m = new Map<string, HeaderValueOption>();
  for (const h of list) m.set(h.header!.key, h);
  return m;
}

/**
 * Raw protobuf walk: for every HeaderValueOption (field 2 of Denied/OkHttpResponse), report
 * whether field 2 (append, a BoolValue) is PRESENT on the wire and its value. ts-proto's
 * decode maps an absent BoolValue to undefined, but this checks the bytes themselves.
 */
function appendOnWire(bytes: Uint8Array, httpResponseField: 2 | 3): { key: string; present: boolean; value: boolean }[] {
  const out: { key: string; present: boolean; value: boolean }[] = [];
  const top = new BinaryReader(bytes);
  while (top.pos < top.len) {
    const tag = top.uint32();
    if (tag >>> 3 !== httpResponseField || (tag & 7) !== 2) {
      top.skip(tag & 7);
      continue;
    }
    const resp = new BinaryReader(top.bytes());
    while (resp.pos < resp.len) {
      const t = resp.uint32();
      if (t >>> 3 !== 2 || (t & 7) !== 2) {
        resp.skip(t & 7);
        continue;
      }
      const opt = new BinaryReader(resp.bytes());
      let key = "";
      let present = false;
      let value = false;
      while (opt.pos < opt.len) {
        const o = opt.uint32();
        if (o >>> 3 === 1 && (o & 7) === 2) {
          const hv = new BinaryReader(opt.bytes());
          while (hv.pos < hv.len) {
            const h = hv.uint32();
            if (h >>> 3 === 1) key = hv.string();
            else hv.skip(h & 7);
          }
        } else if (o >>> 3 === 2 && (o & 7) === 2) {
          present = true;
          const bv = new BinaryReader(opt.bytes());
          while (bv.pos < bv.len) {
            const b = bv.uint32();
            if (b >>> 3 === 1) value = bv.bool();
            else bv.skip(b & 7);
          }
        } else opt.skip(o & 7);
      }
      out.push({ key, present, value });
    }
  }
  return out;
}

describe("allowResponse", () => {
  const args = {
    keyId: "key_1",
    accountId: "acct_1",
    group: "default",
    reservationId: "res_9",
    credentialHeaders: ["authorization", "x-api-key"],
    credentialQueryParams: ["key"],
  };

  it("status is present on the wire with code 0", () => {
    const { decoded, bytes } = wire(allowResponse(args));
    expect(decoded.status).to.not.equal(undefined);
    expect(decoded.status!.code).to.equal(0);
    expect(bytes[0]).to.equal(0x0a); // field 1 (status), length-delimited, first
  });

  it("sets the four x-aisa headers with append explicitly false", () => {
    const { decoded, bytes } = wire(allowResponse(args));
    expect(decoded.httpResponse?.$case).to.equal("okResponse");
    const ok = decoded.httpResponse!.value as OkHttpResponse;
    const h = headerMap(ok.headers);
    expect([...h.keys()]).to.deep.equal(["x-aisa-key-id", "x-aisa-account-id", "x-aisa-group", "x-aisa-reservation"]);
    expect(h.get("x-aisa-key-id")!.header!.value).to.equal("key_1");
    expect(h.get("x-aisa-account-id")!.header!.value).to.equal("acct_1");
    expect(h.get("x-aisa-group")!.header!.value).to.equal("default");
    expect(h.get("x-aisa-reservation")!.header!.value).to.equal("res_9");
    for (const opt of ok.headers) {
      expect(opt.append, opt.header!.key).to.equal(false);
      expect(opt.appendAction, "append_action left at default").to.equal(0);
      expect(opt.header!.rawValue.length, "value, not raw_value").to.equal(0);
    }
    const onWire = appendOnWire(bytes, 3);
    expect(onWire).to.have.length(4);
    for (const w of onWire) expect(w, w.key).to.deep.equal({ key: w.key, present: true, value: false });
    expect(ok.headersToRemove).to.deep.equal(["authorization", "x-api-key"]);
    expect(ok.queryParametersToRemove).to.deep.equal(["key"]);
    expect(ok.dynamicMetadata, "deprecated ok_response.dynamic_metadata unset").to.equal(undefined);
  });

  it("dynamic_metadata carries the ids", () => {
    const { decoded } = wire(allowResponse(args));
    expect(decoded.dynamicMetadata).to.deep.equal({ key_id: "key_1", account_id: "acct_1", group: "default", reservation_id: "res_9", model: "", reserved_units: 0 });
  });

  it("an empty id is removed upstream instead of being sent empty (client values never pass)", () => {
    const { decoded } = wire(allowResponse({ ...args, reservationId: "" }));
    const ok = decoded.httpResponse!.value as { headers: HeaderValueOption[]; headersToRemove: string[] };
    expect(ok.headers.map((h) => h.header!.key)).to.not.include("x-aisa-reservation");
    expect(ok.headersToRemove).to.include("x-aisa-reservation");
  });

  it("does not alias the caller's arrays", () => {
    const credentialHeaders = ["authorization"];
    const r = allowResponse({ ...args, credentialHeaders });
    (r.httpResponse!.value as { headersToRemove: string[] }).headersToRemove.push("x");
    expect(credentialHeaders).to.deep.equal(["authorization"]);
  });

  it("shares only frozen parts between replies (issue 18): one reply never changes or shows through another", () => {
    const one = Object.freeze(["authorization"]);
    const a = allowResponse({ ...args, credentialHeaders: one, credentialQueryParams: [] });
    const before = wire(a).bytes;
    const okA = a.httpResponse!.value as OkHttpResponse;
    expect(okA.headersToRemove, "a frozen list is shared as it is").to.equal(one);
    for (const list of [okA.headersToRemove, okA.responseHeadersToAdd, okA.queryParametersToSet, okA.queryParametersToRemove]) {
      expect(() => (list as unknown[]).push("x"), "shared lists throw rather than change every reply").to.throw(TypeError);
    }
    const idHeader = okA.headers[0]!;
    expect(Object.isFrozen(idHeader) && Object.isFrozen(idHeader.header)).to.equal(true);
    // Other keys, figures, query params and over 4,096 distinct ids (the cache is emptied): the first reply's bytes stay.
    const figures = { requests: { limit: 60, remaining: 59, resetMs: 1000 }, tokens: null };
    for (let i = 0; i < 5000; i++) {
      const b = allowResponse({ ...args, keyId: `key_${i}`, group: `g${i % 7}`, reservationId: `res_${i}`, credentialQueryParams: ["key"], figures });
      const ok = b.httpResponse!.value as OkHttpResponse;
      if (i % 500 === 0) {
        expect(headerMap(ok.headers).get("x-aisa-key-id")!.header!.value).to.equal(`key_${i}`);
        expect(headerMap(ok.headers).get("x-aisa-group")!.header!.value).to.equal(`g${i % 7}`);
        expect(ok.responseHeadersToAdd.map((h) => h.header!.key)).to.include("x-ratelimit-limit-requests");
      }
    }
    expect(Buffer.from(wire(a).bytes).equals(Buffer.from(before))).to.equal(true);
    const again = allowResponse({ ...args, credentialHeaders: one, credentialQueryParams: [] });
    expect(headerMap((again.httpResponse!.value as OkHttpResponse).headers).get("x-aisa-key-id")!.header!.value).to.equal("key_1");
  });

  it("no credential query params → empty query_parameters_to_remove", () => {
    const { decoded } = wire(allowResponse({ ...args, credentialQueryParams: undefined }));
    expect((decoded.httpResponse!.value as { queryParametersToRemove: string[] }).queryParametersToRemove).to.deep.equal([]);
  });
});

describe("denyResponse", () => {
  for (const reason of DENY_REASONS) {
    const info = REASON_TABLE[reason];
    it(`${reason}: status ${info.grpcCode}, HTTP ${info.httpStatus}, OpenAI body, wire-safe headers`, () => {
      const { decoded, bytes } = wire(denyResponse(reason, { retryAfterMs: 2500 }));
      // status present with a non-zero code (a missing status would ALLOW)
      expect(decoded.status).to.not.equal(undefined);
      expect(decoded.status!.code).to.equal(info.grpcCode).and.not.equal(0);
      expect(decoded.status!.message).to.equal(info.message);
      expect(bytes[0]).to.equal(0x0a);

      expect(decoded.httpResponse?.$case).to.equal("deniedResponse");
      const denied = decoded.httpResponse!.value as { status?: { code: number }; headers: HeaderValueOption[]; body: string };
      expect(denied.status?.code).to.equal(info.httpStatus);

      const h = headerMap(denied.headers);
      expect(h.get("content-type")?.header?.value).to.equal("application/json");
      expect(h.get("x-aisa-reason")?.header?.value).to.equal(reason);
      if (info.httpStatus === 401) expect(h.get("www-authenticate")?.header?.value).to.equal(WWW_AUTHENTICATE).and.match(/^Bearer\b/);
      else expect(h.has("www-authenticate")).to.equal(false);
      if (reason === "RATE_LIMITED") expect(h.get("retry-after")?.header?.value).to.equal("3");
      else expect(h.has("retry-after"), "retry-after only on RATE_LIMITED").to.equal(false);

      // append never true on denied headers (Envoy drops those)
      for (const opt of denied.headers) expect(opt.append, opt.header!.key).to.not.equal(true);
      for (const w of appendOnWire(bytes, 2)) expect(w.value, w.key).to.equal(false);

      const body = JSON.parse(denied.body) as { error: Record<string, unknown> };
      expect(body).to.deep.equal({
        error: { message: info.message, type: info.errorType, code: info.errorCode, param: null },
      });

      expect(decoded.dynamicMetadata).to.deep.equal({ reason });
    });
  }

  const retry: [number | undefined, string][] = [
    [undefined, "1"],
    [0, "1"],
    [-5, "1"],
    [Number.NaN, "1"],
    [1, "1"],
    [999, "1"],
    [1000, "1"],
    [1001, "2"],
    [59_999, "60"],
    [3_600_000, "3600"],
    [3_600_001, "3601"],
    [86_400_000, "86400"],
  ];
  for (const [ms, want] of retry) {
    it(`RATE_LIMITED retryAfterMs ${ms} → retry-after: ${want}`, () => {
      const { decoded } = wire(denyResponse("RATE_LIMITED", { retryAfterMs: ms }));
      const d = decoded.httpResponse!.value as { status?: { code: number }; headers: HeaderValueOption[] };
      expect(d.status?.code).to.equal(429);
      expect(headerMap(d.headers).get("retry-after")?.header?.value).to.equal(want);
    });
  }

  it("KEY_QUOTA_EXHAUSTED is a 429 without retry-after (not retryable)", () => {
    const { decoded } = wire(denyResponse("KEY_QUOTA_EXHAUSTED", { retryAfterMs: 5000 }));
    const d = decoded.httpResponse!.value as { status?: { code: number }; headers: HeaderValueOption[] };
    expect(d.status?.code).to.equal(429);
    expect(headerMap(d.headers).has("retry-after")).to.equal(false);
  });

  it("GROUP_BUDGET_EXHAUSTED with a reset: retry-after = the body's limit.reset_seconds; without one, none", () => {
    const hit = { name: "group_budget" as const, limit: null, remaining: null, resetSeconds: 7200 };
    const { decoded } = wire(denyResponse("GROUP_BUDGET_EXHAUSTED", { retryAfterMs: 7_200_000, hit, group: "g" }));
    const d = decoded.httpResponse!.value as { status?: { code: number }; headers: HeaderValueOption[]; body: string };
    expect(d.status?.code).to.equal(429);
    expect(headerMap(d.headers).get("retry-after")?.header?.value).to.equal("7200");
    expect(JSON.parse(d.body).error.limit).to.deep.equal({ name: "group_budget", limit: null, remaining: null, reset_seconds: 7200 });
    const { decoded: bare } = wire(denyResponse("GROUP_BUDGET_EXHAUSTED", { hit: { ...hit, resetSeconds: null } }));
    expect(headerMap((bare.httpResponse!.value as { headers: HeaderValueOption[] }).headers).has("retry-after")).to.equal(false);
  });

  it("dynamic_metadata names the key, account and group when known", () => {
    const { decoded } = wire(denyResponse("IP_NOT_ALLOWED", { keyId: "key_7", accountId: "acct_2", group: "g" }));
    expect(decoded.dynamicMetadata).to.deep.equal({ reason: "IP_NOT_ALLOWED", key_id: "key_7", account_id: "acct_2", group: "g" });
    const { decoded: d2 } = wire(denyResponse("KEY_DISABLED", { keyId: "key_8" }));
    expect(d2.dynamicMetadata).to.deep.equal({ reason: "KEY_DISABLED", key_id: "key_8" });
  });

  it("shared responses are reused and frozen; per-key ones are fresh", () => {
    const a = denyResponse("KEY_INVALID");
    const b = denyResponse("KEY_INVALID");
    expect(a).to.equal(b);
    expect(Object.isFrozen(a)).to.equal(true);
    expect(() => {
      (a.dynamicMetadata as Record<string, string>).key_id = "x";
    }).to.throw(TypeError);
    const withKey = denyResponse("KEY_DISABLED", { keyId: "k" });
    expect(withKey).to.not.equal(denyResponse("KEY_DISABLED", { keyId: "k" }));
    expect(denyResponse("KEY_DISABLED").dynamicMetadata).to.deep.equal({ reason: "KEY_DISABLED" });
    expect(denyResponse("RATE_LIMITED"), "1 s retry is the shared template").to.equal(denyResponse("RATE_LIMITED", { retryAfterMs: 800 }));
    // the cached retry variants are shared too
    expect(denyResponse("RATE_LIMITED", { retryAfterMs: 2000 }).httpResponse).to.deep.equal(
      denyResponse("RATE_LIMITED", { retryAfterMs: 1500 }).httpResponse,
    );
  });

  it("every 401 carries www-authenticate; no other status does", () => {
    for (const r of DENY_REASONS) {
      const d = denyResponse(r).httpResponse!.value as { headers: HeaderValueOption[] };
      expect(headerMap(d.headers).has("www-authenticate"), r).to.equal(REASON_TABLE[r].httpStatus === 401);
    }
  });
});
