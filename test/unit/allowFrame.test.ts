// The Envoy endpoint's reply bytes (h2Methods.ts over createEnvoyCheck's `framed` decision): the
// usual allow written straight from the outcome (checkResponseWire.ts allowFrame), every other
// reply framed from its CheckResponse. Compared, byte for byte, with the path before it: the
// generated encoder (ts-proto CheckResponse.encode) of the allow object as toCheckResponse.ts
// built it at 7dd6012 (copied below as the reference), and of denyResponse's object.
//
// The outcomes come from a stand-in Authorizer that returns prepared CheckOutcomes: the real one
// cannot be driven to every outcome shape (ids of every form, any figures, every deny reason)
// cheaply, and the unit under test here is the transport from outcome to bytes. The real
// Authorizer's outcomes go through these same functions in test/integration/envoy*.test.ts.
import { expect } from "chai";
import type { HeaderValueOption } from "../../src/gen/envoy/config/core/v3/base.js";
import { CheckRequest, CheckResponse, type OkHttpResponse } from "../../src/gen/envoy/service/auth/v3/external_auth.js";
import type { CheckOutcome, Authorizer } from "../../src/service/authorizer.js";
import { NO_FIGURES, resetHeaderValue, type LimitHit, type RateFigures } from "../../src/policy/rateFigures.js";
import { REASONS, type DenyReason, type Reason } from "../../src/policy/reasons.js";
import { createEnvoyCheck, dialectOf } from "../../src/transport/envoy/authorizationService.js";
import { allowFrame, idBlockCount } from "../../src/transport/envoy/checkResponseWire.js";
import { createEnvoyH2Methods } from "../../src/transport/envoy/h2Methods.js";
import { toAuthInput } from "../../src/transport/envoy/toAuthInput.js";
import { denyResponse, type AllowArgs } from "../../src/transport/envoy/toCheckResponse.js";
import { HealthState } from "../../src/transport/health.js";
import { rng } from "../helpers/rng.js";
import { generated } from "../helpers/checkFrames.js";

const CHECK = "/envoy.service.auth.v3.Authorization/Check";
const DENY_REASONS = REASONS.filter((r): r is DenyReason => r !== "ALLOWED");

// --- the reference: allowResponse as it was at 7dd6012 (both its paths), fresh objects -----------
function hvo(key: string, value: string): HeaderValueOption {
  return { header: { key, value, rawValue: Buffer.alloc(0) }, append: false, appendAction: 0, keepEmptyValue: false };
}
function referenceAllow(a: AllowArgs): CheckResponse {
  const nonEmpty = (v: string) => typeof v === "string" && v.length > 0;
  let headers: HeaderValueOption[];
  let headersToRemove: string[];
  if (nonEmpty(a.keyId) && nonEmpty(a.accountId) && nonEmpty(a.group) && nonEmpty(a.reservationId)) {
    headers = [hvo("x-aisa-key-id", a.keyId), hvo("x-aisa-account-id", a.accountId), hvo("x-aisa-group", a.group), hvo("x-aisa-reservation", a.reservationId)];
    headersToRemove = a.credentialHeaders.slice();
  } else {
    headers = [];
    headersToRemove = a.credentialHeaders.slice();
    const put = (name: string, value: string) => (nonEmpty(value) ? headers.push(hvo(name, value)) : headersToRemove.push(name));
    put("x-aisa-key-id", a.keyId);
    put("x-aisa-account-id", a.accountId);
    put("x-aisa-group", a.group);
    put("x-aisa-reservation", a.reservationId);
  }
  const f = a.figures;
  const figures = f !== undefined && f !== NO_FIGURES;
  const ok: OkHttpResponse = {
    headers,
    headersToRemove,
    dynamicMetadata: undefined,
    responseHeadersToAdd: [],
    queryParametersToSet: [],
    queryParametersToRemove: a.credentialQueryParams && a.credentialQueryParams.length > 0 ? a.credentialQueryParams.slice() : [],
  };
  const metadata: { [key: string]: unknown } = { key_id: a.keyId, account_id: a.accountId, group: a.group, reservation_id: a.reservationId, model: a.model ?? "", reserved_units: a.reservedUnits ?? 0 };
  if (figures) {
    const r = f.requests;
    if (r !== null) ok.responseHeadersToAdd.push(hvo("x-ratelimit-limit-requests", String(r.limit)), hvo("x-ratelimit-remaining-requests", String(r.remaining)), hvo("x-ratelimit-reset-requests", resetHeaderValue(r.resetMs)));
    const t = f.tokens;
    if (t !== null) ok.responseHeadersToAdd.push(hvo("x-ratelimit-limit-tokens", String(t.limit)), hvo("x-ratelimit-remaining-tokens", String(t.remaining)), hvo("x-ratelimit-reset-tokens", resetHeaderValue(t.resetMs)));
    if (f.requests !== null) metadata.total_limit = { requests_per_unit: f.requests.limit, unit: "MINUTE" };
    if (f.tokens !== null) metadata.tokens_limit = { requests_per_unit: f.tokens.limit, unit: "MINUTE" };
  }
  return { status: { code: 0, message: "", details: [] }, httpResponse: { $case: "okResponse", value: ok }, dynamicMetadata: metadata };
}


// --- random requests and outcomes ---------------------------------------------------------------
const IDS = ["key_0000000000000000000A", "acct_7", "default", "", "g", "grüppe", "a\u0000b", "team-ü-𝄞", "x".repeat(200), "k".repeat(127), "k".repeat(128), "\u00ff\u0100"];
const CRED_HEADERS = ["authorization", "x-api-key", "api-key", "x-goog-api-key"];

function randomRequest(r: () => number): CheckRequest {
  const headers: Record<string, string> = { "content-type": "application/json" };
  // Credential headers: none, one, or many (toAuthInput's shared one-name list, or a new array).
  const k = r();
  const names = k < 0.15 ? [] : k < 0.75 ? [CRED_HEADERS[Math.floor(r() * 4)]!] : CRED_HEADERS.filter(() => r() < 0.6);
  for (const n of names) headers[n] = n === "authorization" ? "Bearer sk-aisa-secret" : "sk-aisa-secret";
  const query = r() < 0.25 ? "?key=sk-aisa-secret&x=1" : r() < 0.1 ? "?x=1" : "";
  const model = r() < 0.2 ? "" : ["gpt-4o-mini", "claude-ü", "m".repeat(300)][Math.floor(r() * 3)]!;
  const path = r() < 0.2 ? `/v1beta/models/gemini-pro:generateContent${query}` : r() < 0.1 ? `/v1/messages${query}` : `/v1/chat/completions${query}`;
  return CheckRequest.fromPartial({
    attributes: {
      source: { address: { address: { $case: "socketAddress", value: { address: "203.0.113.7", portSpecifier: { $case: "portValue", value: 1 } } } } },
      request: { http: { method: "POST", path, headers, body: model ? JSON.stringify({ model, messages: [] }) : "" } },
    },
  });
}

function randomFigures(r: () => number): RateFigures {
  const k = r();
  if (k < 0.4) return NO_FIGURES;
  const fig = () => (r() < 0.4 ? null : { limit: Math.floor(r() * 1e6) + 1, remaining: Math.floor(r() * 1e6), resetMs: Math.floor(r() * 120_000) });
  return { requests: fig(), tokens: fig() };
}

const HITS: (LimitHit | null)[] = [null, { name: "key_quota", limit: null, remaining: 0, resetSeconds: 3600 }, { name: "requests_per_minute", limit: 60, remaining: 0, resetSeconds: 12 }, { name: "account_balance", limit: null, remaining: null, resetSeconds: null }, { name: "group_budget", limit: 100, remaining: 0, resetSeconds: null }];

function randomOutcome(r: () => number, i: number): CheckOutcome {
  const pick = <T>(a: readonly T[]): T => a[Math.floor(r() * a.length)]!;
  const allowed = r() < 0.6;
  const reason: Reason = allowed ? "ALLOWED" : pick(DENY_REASONS);
  const k = r();
  // Mostly the usual allow (every id set, a fresh reservation id); some of every other shape.
  const id = (usual: string) => (k < 0.6 ? usual : pick(IDS));
  return {
    allowed,
    reason,
    keyId: id(`key_${i.toString(36).padStart(20, "0")}`),
    accountId: id(`acct_${i % 13}`),
    group: id(`g${i % 7}`),
    reservationId: allowed && k < 0.95 ? `rsv_${i}_${Math.floor(r() * 1e9)}.key_${i}` : allowed ? pick(IDS) : "",
    reservedUnits: pick([0, 1, 1234, 2 ** 40, 0.5, 1e21, -3]),
    keyRemaining: 0,
    keyUnlimited: true,
    accountBalance: 0,
    retryAfterMs: pick([0, 1, 999, 1000, 1001, 2500, 3_600_000, 3_600_001, 7_200_000]),
    limits: { rpmRemaining: -1, tpmRemaining: -1, concurrencyRemaining: -1 },
    figures: randomFigures(r),
    hit: allowed ? null : pick(HITS),
  };
}

/** A stand-in Authorizer answering the outcome set before each Check: sync, or as a shared engine's promise. */
function standIn(): { authorizer: Authorizer; next: { outcome: CheckOutcome | null; async: boolean } } {
  const next = { outcome: null as CheckOutcome | null, async: false };
  const authorizer = {
    check: () => {
      const o = next.outcome!;
      return next.async ? Promise.resolve(o) : o;
    },
  } as unknown as Authorizer;
  return { authorizer, next };
}

/** The reply before this change for `outcome` on `request`: the reference allow, or denyResponse's object. */
function referenceReply(request: CheckRequest, o: CheckOutcome): CheckResponse {
  if (o.allowed) {
    const input = toAuthInput(request, { xffTrustedHops: 0 });
    return referenceAllow({ keyId: o.keyId, accountId: o.accountId, group: o.group, reservationId: o.reservationId, model: input.input.model ?? "", reservedUnits: o.reservedUnits, credentialHeaders: input.credentialHeaders, credentialQueryParams: input.credentialQueryParams, figures: o.figures });
  }
  return denyResponse(o.reason as DenyReason, { retryAfterMs: o.retryAfterMs, keyId: o.keyId, accountId: o.accountId, group: o.group, dialect: dialectOf(request), figures: o.figures, hit: o.hit });
}

function endpoint() {
  const { authorizer, next } = standIn();
  const decide = createEnvoyCheck({ authorizer, xffTrustedHops: 0, clock: () => 1_700_000_000_000 });
  const check = createEnvoyH2Methods({ decide, health: new HealthState() })[CHECK]!;
  return { decide, check, next };
}

describe("the Envoy endpoint's reply bytes: the usual allow written from the outcome = the generated encoder of the object before", () => {
  it("5,000 random outcomes (ids of every shape, figures, credential header/query lists, model, every deny reason, sync and async): byte-identical frames; the object path too", async () => {
    const r = rng(1807);
    const { decide, check, next } = endpoint();
    let written = 0;
    let objects = 0;
    for (let i = 0; i < 5000; i++) {
      const request = randomRequest(r);
      const outcome = randomOutcome(r, i);
      next.outcome = outcome;
      next.async = r() < 0.2;
      const want = generated(referenceReply(request, outcome));
      const res = await check.handle(request);
      if (res instanceof Uint8Array) written++;
      else objects++;
      const got = check.frame!(res);
      expect(got.equals(want), `#${i} ${outcome.reason} ${JSON.stringify([outcome.keyId, outcome.accountId, outcome.group, outcome.reservationId])}: frame`).to.equal(true);
      // encode() (h2unary's path when a method has no frame()): the message alone.
      expect(Buffer.from(check.encode(res)).equals(want.subarray(5)), `#${i}: encode`).to.equal(true);
      // The grpc-js port and forward-auth: the object, as before.
      const obj = await decide(request);
      expect(generated(obj).equals(want), `#${i}: object path`).to.equal(true);
    }
    // Both paths were exercised: the frame written from the outcome, and the object framed.
    expect(written).to.be.greaterThan(1000);
    expect(objects).to.be.greaterThan(1000);
  });

  it("allowFrame writes long replies whole and declines what it does not write (an id empty, a reply past its 64 KiB buffer); the reply is still the old bytes", async () => {
    const base: AllowArgs = { keyId: "k", accountId: "a", group: "g", reservationId: "rsv_1", model: "m", reservedUnits: 1, credentialHeaders: ["authorization"], credentialQueryParams: [], figures: NO_FIGURES };
    expect(allowFrame(base)).to.be.instanceOf(Buffer);
    for (const field of ["keyId", "accountId", "group", "reservationId"] as const) expect(allowFrame({ ...base, [field]: "" }), field).to.equal(undefined);
    // Past the views of short messages (4 KiB) and within the buffer (the id is written twice): written, and copied out whole.
    for (const len of [4000, 4096, 5000, 30_000]) {
      const big = { ...base, reservationId: "r".repeat(len) };
      expect(allowFrame(big)!.equals(generated(referenceAllow(big))), `${len}`).to.equal(true);
    }
    expect(allowFrame(base)!.equals(generated(referenceAllow(base)))).to.equal(true);
    const huge = { ...base, reservationId: "r".repeat(70_000) };
    expect(allowFrame(huge)).to.equal(undefined);
    // Through the endpoint: the huge one goes to the object path and the generated encoder.
    const { check, next } = endpoint();
    const request = randomRequest(rng(3));
    const o = randomOutcome(rng(5), 1);
    next.outcome = { ...o, allowed: true, reason: "ALLOWED", keyId: "k", accountId: "a", group: "g", reservationId: "r".repeat(70_000), hit: null };
    const res = await check.handle(request);
    expect(res).to.not.be.instanceOf(Uint8Array);
    expect(check.frame!(res).equals(generated(referenceReply(request, next.outcome)))).to.equal(true);
    // And the next usual allow is written whole, nothing left of the one declined.
    next.outcome = { ...next.outcome, reservationId: "rsv_2" };
    const again = await check.handle(request);
    expect(again).to.be.instanceOf(Uint8Array);
    expect(check.frame!(again).equals(generated(referenceReply(request, next.outcome)))).to.equal(true);
  });

  it("a key's id bytes kept from one allow to the next: the same key under another account or group, ids of every shape, reservation ids repeated in other fields; the kept blocks bounded", () => {
    const r = rng(8);
    const pick = <T>(a: readonly T[]): T => a[Math.floor(r() * a.length)]!;
    const keys = ["key_0000000000000000000A", "key_B", "k\u00ff", "key-ü-𝄞", "x".repeat(300)];
    const accounts = ["default", "acct_7", "acct-ü"];
    const groups = ["default", "g", "team-𝄞"];
    for (let i = 0; i < 4000; i++) {
      const keyId = pick(keys);
      const reservationId = r() < 0.1 ? keyId : `rsv_${i}.${keyId}`;
      const a: AllowArgs = {
        keyId,
        accountId: pick(accounts),
        group: pick(groups),
        reservationId,
        model: r() < 0.1 ? reservationId : pick(["", "gpt-4o-mini", "claude-ü"]),
        reservedUnits: pick([0, 1, 1234]),
        credentialHeaders: pick([["authorization"], [], ["x-api-key", "api-key"]]),
        credentialQueryParams: r() < 0.2 ? ["key"] : [],
        figures: randomFigures(r),
      };
      expect(allowFrame(a)!.equals(generated(referenceAllow(a))), `#${i} ${JSON.stringify(a).slice(0, 200)}`).to.equal(true);
    }
    for (let i = 0; i < 5000; i++) {
      const a: AllowArgs = { keyId: `key_${i}`, accountId: "a", group: "g", reservationId: `rsv_${i}`, model: "m", reservedUnits: 1, credentialHeaders: [], credentialQueryParams: [], figures: NO_FIGURES };
      expect(allowFrame(a)!.equals(generated(referenceAllow(a))), `#${i}`).to.equal(true);
    }
    expect(idBlockCount()).to.be.at.most(4096);
  });

  it("replies back to back, sync and async interleaved, each carry their own values (held frames are never rewritten)", async () => {
    const r = rng(99);
    const { check, next } = endpoint();
    const pending: { request: CheckRequest; outcome: CheckOutcome; res: Promise<CheckResponse | Buffer> | CheckResponse | Buffer }[] = [];
    for (let i = 0; i < 3000; i++) {
      const request = randomRequest(r);
      const outcome = randomOutcome(r, i);
      next.outcome = outcome;
      next.async = i % 3 === 0;
      pending.push({ request, outcome, res: check.handle(request) as Promise<CheckResponse | Buffer> | CheckResponse | Buffer });
    }
    // Every frame made first, in the order the promises settle, and held; then each checked.
    const frames = await Promise.all(pending.map(async (p) => check.frame!(await p.res)));
    let allows = 0;
    for (let i = 0; i < pending.length; i++) {
      const { request, outcome } = pending[i]!;
      expect(frames[i]!.equals(generated(referenceReply(request, outcome))), `#${i}`).to.equal(true);
      const decoded = CheckResponse.decode(frames[i]!.subarray(5));
      const meta = decoded.dynamicMetadata as Record<string, unknown>;
      if (outcome.allowed) {
        allows++;
        expect(meta.reservation_id, `#${i}`).to.equal(outcome.reservationId);
        expect(meta.key_id, `#${i}`).to.equal(outcome.keyId);
      } else expect(meta.reason, `#${i}`).to.equal(outcome.reason);
    }
    expect(allows).to.be.greaterThan(1000);
  });
});
