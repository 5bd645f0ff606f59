// envoy.service.auth.v3.Authorization/Check. A deny is an in-band
// CheckResponse (status != 0 + denied_response); a gRPC error is returned ONLY
// when we cannot decide (store unavailable), so Envoy takes its failure path
// (status_on_error, fail closed unless failure_mode_allow) — never an allow.
//
// One decision function (createEnvoyCheck) serves both transports of this method: the grpc-js
// service on the data port (createEnvoyAuthorizationServer) and the dedicated node:http2
// endpoint (transport/h2unary.ts, wired in main.ts). Both answer the same bytes.
import type { sendUnaryData, ServerUnaryCall } from "@grpc/grpc-js";
import type { AuthorizationServer, CheckRequest, CheckResponse } from "../../gen/envoy/service/auth/v3/external_auth.js";
import type { Authorizer, CheckOutcome } from "../../service/authorizer.js";
import { toServiceError } from "../grpcErrors.js";
import type { Malformed } from "../tolerant.js";
import { denyDialect, type Dialect } from "../../policy/denyShape.js";
import { toAuthInput, type EnvoyInput } from "./toAuthInput.js";
import type { MaybePromise } from "../../domain/maybe.js";
import { allowResponse, denyResponse, type AllowArgs } from "./toCheckResponse.js";
import { allowFrame } from "./checkResponseWire.js";

export interface EnvoyTransportOptions {
  authorizer: Authorizer;
  xffTrustedHops: number;
  clock: () => number;
  log: (err: unknown) => void;
  onLatency?: (seconds: number) => void;
}

/**
 * The Envoy Check decision: a CheckRequest (or bytes that did not decode as one, which
 * toAuthInput turns into a 400 deny) to the CheckResponse to send. Throws only when no
 * decision can be made (the store is unavailable): the transport answers that as a gRPC error.
 * `framed`, when present, is the same decision for a transport that sends gRPC frames (the Envoy
 * endpoint, h2Methods.ts): the usual allow comes back as its frame, already written
 * (checkResponseWire.ts allowFrame), every other reply as its CheckResponse.
 */
export type EnvoyCheck = ((request: CheckRequest | Malformed) => MaybePromise<CheckResponse>) & {
  framed?: (request: CheckRequest | Malformed) => MaybePromise<CheckResponse | Buffer>;
};

export function createEnvoyCheck(opts: Pick<EnvoyTransportOptions, "authorizer" | "xffTrustedHops" | "clock">): EnvoyCheck {
  const hops = { xffTrustedHops: opts.xffTrustedHops };
  const decide = (request: CheckRequest | Malformed, framed: boolean): MaybePromise<CheckResponse | Buffer> => {
    const extracted = toAuthInput(request as CheckRequest, hops);
    const out = opts.authorizer.check(extracted.input, opts.clock());
    // A closure only for a shared engine's promise: the embedded engine's answer is built now.
    return out instanceof Promise ? out.then((o) => checkResponse(request as CheckRequest, extracted, o, framed)) : checkResponse(request as CheckRequest, extracted, out, framed);
  };
  const check: EnvoyCheck = (request) => decide(request, false) as MaybePromise<CheckResponse>;
  check.framed = (request) => decide(request, true);
  return check;
}

/**
 * allowResponse's arguments, filled per allow (allowResponse is synchronous and keeps nothing of
 * the object itself): a 9-field literal per Check was garbage (bench/README.md).
 */
const ALLOW: AllowArgs = { keyId: "", accountId: "", group: "", reservationId: "", model: "", reservedUnits: 0, credentialHeaders: [], credentialQueryParams: [], figures: undefined };
const NO_NAMES: readonly string[] = Object.freeze([]);

/** The allow's reply: with `framed`, the usual allow's frame written straight from the outcome; else (or for any other allow) the CheckResponse. */
function allowFor(input: EnvoyInput, out: CheckOutcome, framed: boolean): CheckResponse | Buffer {
  const a = ALLOW;
  a.keyId = out.keyId;
  a.accountId = out.accountId;
  a.group = out.group;
  a.reservationId = out.reservationId;
  a.model = input.input.model ?? "";
  a.reservedUnits = out.reservedUnits;
  a.credentialHeaders = input.credentialHeaders;
  a.credentialQueryParams = input.credentialQueryParams;
  a.figures = out.figures;
  const res = (framed ? allowFrame(a) : undefined) ?? allowResponse(a);
  // Nothing of this Check is held until the next one.
  a.reservationId = "";
  a.credentialHeaders = NO_NAMES;
  a.credentialQueryParams = NO_NAMES;
  a.figures = undefined;
  return res;
}

/** The reply for a decided outcome (see allowFor for `framed`). */
function checkResponse(request: CheckRequest, extracted: EnvoyInput, out: CheckOutcome, framed: boolean): CheckResponse | Buffer {
  return out.allowed
    ? allowFor(extracted, out, framed)
    : denyResponse(out.reason as Exclude<typeof out.reason, "ALLOWED">, { retryAfterMs: out.retryAfterMs, keyId: out.keyId, accountId: out.accountId, group: out.group, dialect: dialectOf(request), figures: out.figures, hit: out.hit });
}

/** The deny body's shape for this request (denyShape.ts), from its path and credential headers. Never throws. */
export function dialectOf(request: CheckRequest): Dialect {
  const http = request?.attributes?.request?.http;
  if (!http) return "openai";
  const headers = http.headers && typeof http.headers === "object" ? http.headers : {};
  const names = Array.isArray(http.headerMap?.headers) ? http.headerMap.headers.map((h) => String(h?.key).toLowerCase()) : [];
  return denyDialect(typeof http.path === "string" ? http.path : "", (n) => typeof headers[n] === "string" || names.includes(n));
}

export function createEnvoyAuthorizationServer(opts: EnvoyTransportOptions): AuthorizationServer {
  const decide = createEnvoyCheck(opts);
  return {
    check(call: ServerUnaryCall<CheckRequest, CheckResponse>, callback: sendUnaryData<CheckResponse>): void {
      const t0 = opts.onLatency ? process.hrtime.bigint() : 0n;
      let res: MaybePromise<CheckResponse>;
      try {
        res = decide(call.request);
      } catch (err) {
        callback(toServiceError(err, opts.log));
        return;
      }
      const done = (r: CheckResponse): void => {
        callback(null, r);
        if (opts.onLatency) opts.onLatency(Number(process.hrtime.bigint() - t0) / 1e9);
      };
      if (res instanceof Promise) res.then(done, (err: unknown) => callback(toServiceError(err, opts.log)));
      else done(res);
    },
  };
}
