// The Envoy endpoint's CheckResponse writer (src/transport/envoy/checkResponseWire.ts) against the
// generated encoder: the same gRPC frame for every allow and deny reply the endpoint sends, and
// for random CheckResponses (what it does not handle goes to the generated encoder).
import { expect } from "chai";
import { CheckResponse } from "../../src/gen/envoy/service/auth/v3/external_auth.js";
import { DIALECTS } from "../../src/policy/denyShape.js";
import type { LimitHit, RateFigures } from "../../src/policy/rateFigures.js";
import { REASONS, type DenyReason } from "../../src/policy/reasons.js";
import { checkResponseFrame, checkResponseFrameOr } from "../../src/transport/envoy/checkResponseWire.js";
import { allowResponse, denyResponse } from "../../src/transport/envoy/toCheckResponse.js";
import { rng } from "../helpers/rng.js";
import { generated } from "../helpers/checkFrames.js";


const IDS = ["key_0000000000000000000A", "", "default", "grüppe", "a\u0000b", "team-ü-𝄞", "x".repeat(200)];

describe("Envoy CheckResponse writer (checkResponseWire.ts) = the generated encoder, framed", () => {
  it("every allow reply shape: ids, credential headers and query parameters, model, units, rate figures", () => {
    const r = rng(7);
    const pick = <T>(a: readonly T[]): T => a[Math.floor(r() * a.length)]!;
    for (let i = 0; i < 3000; i++) {
      const fig = (): RateFigures["requests"] => (r() < 0.5 ? null : { limit: Math.floor(r() * 1e6), remaining: Math.floor(r() * 1e6), resetMs: Math.floor(r() * 120_000) });
      const res = allowResponse({
        keyId: pick(IDS),
        accountId: pick(IDS),
        group: pick(IDS),
        reservationId: r() < 0.9 ? `rsv_${Math.floor(r() * 1e9)}.key_X` : "",
        model: r() < 0.2 ? undefined : pick(["gpt-4o-mini", "", "claude-ü", "m".repeat(256)]),
        reservedUnits: r() < 0.1 ? undefined : pick([0, 1, 1234, 2 ** 40, 0.5, 1e21]),
        credentialHeaders: [["authorization"], [], ["x-api-key", "api-key", "x-goog-api-key"], ["authorization", "x-api-key"]][Math.floor(r() * 4)]!,
        credentialQueryParams: r() < 0.3 ? ["key"] : r() < 0.5 ? undefined : [],
        figures: r() < 0.5 ? undefined : { requests: fig(), tokens: fig() },
      });
      expect(checkResponseFrame(res).equals(generated(res)), `allow #${i}`).to.equal(true);
    }
  });

  it("every deny reason × dialect, with and without key data, retry-after, figures and the limit hit", () => {
    const r = rng(11);
    const hits: (LimitHit | null | undefined)[] = [undefined, null, { name: "key_quota", limit: null, remaining: 0, resetSeconds: 3600 }, { name: "requests_per_minute", limit: 60, remaining: 0, resetSeconds: 12 }, { name: "account_balance", limit: null, remaining: null, resetSeconds: null }];
    let n = 0;
    for (const dialect of DIALECTS) {
      for (const reason of REASONS) {
        if (reason === "ALLOWED") continue;
        for (let k = 0; k < 12; k++) {
          const res = denyResponse(reason as DenyReason, {
            dialect,
            retryAfterMs: k % 3 === 0 ? undefined : Math.floor(r() * 5_000_000),
            keyId: k % 2 ? "key_0000000000000000000A" : undefined,
            accountId: k % 4 === 1 ? "acct-ü" : undefined,
            group: k % 5 === 2 ? "" : undefined,
            figures: k % 3 === 1 ? { requests: { limit: 60, remaining: 0, resetMs: 1500 }, tokens: null } : undefined,
            hit: hits[k % hits.length],
          });
          expect(checkResponseFrame(res).equals(generated(res)), `${reason} ${dialect} #${k}`).to.equal(true);
          n++;
        }
      }
    }
    expect(n).to.be.greaterThan(400);
  });

  it("a frozen (shared) deny reply is encoded once and its frame reused", () => {
    const res = denyResponse("KEY_INVALID");
    expect(Object.isFrozen(res)).to.equal(true);
    const a = checkResponseFrameOr(res, (m) => CheckResponse.encode(m).finish());
    expect(a.equals(generated(res))).to.equal(true);
    expect(checkResponseFrameOr(res, () => Buffer.alloc(0))).to.equal(a);
  });

  it("random CheckResponses (metadata structs, lists, numbers, header options, error replies): the same frame, or the generated encoder's own answer", () => {
    const r = rng(4242);
    const pick = <T>(a: readonly T[]): T => a[Math.floor(r() * a.length)]!;
    const anyValue = (depth: number): unknown => {
      const k = r();
      if (k < 0.15) return null;
      if (k < 0.3) return r() < 0.5;
      if (k < 0.5) return pick([0, -0, 1, -1, 3.25, 1e300, -1e-300, NaN, Infinity, 2 ** 53, -(2 ** 31)]);
      if (k < 0.7) return pick(IDS);
      if (depth > 3) return undefined;
      if (k < 0.85) return Array.from({ length: Math.floor(r() * 4) }, () => anyValue(depth + 1));
      return anyStruct(depth + 1);
    };
    const anyStruct = (depth: number): Record<string, unknown> => {
      const o: Record<string, unknown> = {};
      for (let i = Math.floor(r() * 5); i > 0; i--) o[pick(["a", "", "key_id", "ü", "10", "2", "limit"])] = anyValue(depth);
      return o;
    };
    const hvo = () => ({ header: { key: pick(IDS), value: pick(IDS), rawValue: r() < 0.2 ? Buffer.from([0, 1, 255]) : Buffer.alloc(0) }, append: pick([undefined, true, false]), appendAction: pick([0, 0, 1, 2]), keepEmptyValue: r() < 0.2 });
    let fast = 0;
    for (let i = 0; i < 3000; i++) {
      const kind = r();
      const res = CheckResponse.fromPartial({
        status: r() < 0.9 ? { code: pick([0, 7, 16, 14]), message: pick(IDS), details: [] } : undefined,
        httpResponse:
          kind < 0.4
            ? { $case: "okResponse", value: { headers: Array.from({ length: Math.floor(r() * 3) }, hvo), headersToRemove: r() < 0.5 ? ["authorization"] : [], responseHeadersToAdd: r() < 0.3 ? [hvo()] : [], queryParametersToSet: r() < 0.1 ? [{ key: "k", value: "v" }] : [], queryParametersToRemove: r() < 0.3 ? ["key"] : [] } }
            : kind < 0.8
              ? { $case: pick(["deniedResponse", "errorResponse"] as const), value: { status: r() < 0.8 ? { code: pick([0, 401, 403, 429]) } : undefined, headers: Array.from({ length: Math.floor(r() * 3) }, hvo), body: pick(['{"error":"x"}', "", "ü"]) } }
              : undefined,
        dynamicMetadata: r() < 0.8 ? anyStruct(0) : undefined,
      } as never);
      const want = generated(res);
      let got: Buffer | undefined;
      try {
        got = checkResponseFrame(res);
        fast++;
      } catch {
        got = undefined;
      }
      if (got) expect(got.equals(want), `random #${i}`).to.equal(true);
      expect(checkResponseFrameOr(res, (m) => CheckResponse.encode(m).finish()).equals(want), `random #${i} (or)`).to.equal(true);
    }
    expect(fast).to.be.greaterThan(2000);
  });
});
