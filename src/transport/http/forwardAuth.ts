// HTTP forward-auth (nginx auth_request, Caddy forward_auth, HAProxy's Lua action, Traefik
// forwardAuth, Envoy's ext_authz http_service) → the SAME decision as Envoy's gRPC Check.
//
// The proxy asks with a request of its own; this module rebuilds the original request from it
// as an Envoy CheckRequest and hands that to createEnvoyCheck (transport/envoy), so credential
// extraction, the model rules, the policy, the reservation, the reason table and the deny
// bodies are Envoy's, not a copy. Wire facts each proxy relies on:
//  - original URI: `X-Original-URI` (nginx, our HAProxy Lua), `X-Forwarded-Uri` (Caddy,
//    Traefik); Envoy's http_service sends none but puts the original path after its
//    path_prefix (`/auth` + path). Neither → a 400 deny, never an allow. Each proxy sets one
//    of the two and would pass the client's own copy of the other: the shipped configs strip
//    it (a client's X-Original-URI through Caddy would otherwise name the path judged).
//  - method: `X-Original-Method` / `X-Forwarded-Method`, else the request's own.
//  - client IP: the proxy is our peer, so the address it reports for ITS peer plays Envoy's
//    source.address: the rightmost X-Forwarded-For entry (nginx $proxy_add_x_forwarded_for,
//    Caddy, the HAProxy Lua append theirs there), else X-Real-IP, else our own TCP peer. With
//    --xff-trusted-hops N the client is the (N+1)-th entry from the right, exactly Envoy's rule;
//    entries further left were written by the client and are never used.
//  - body: when the proxy forwards the original body (HAProxy with http-buffer-request, Envoy
//    with_request_body) it is Envoy's http.body: the JSON "model" and "max_tokens" count.
import type { IncomingHttpHeaders } from "node:http";
import type { CheckRequest, CheckResponse } from "../../gen/envoy/service/auth/v3/external_auth.js";
import { StoreUnavailableError } from "../../domain/errors.js";
import { denyBody, denyDialect, UNAVAILABLE, type Dialect } from "../../policy/denyShape.js";
import type { MaybePromise } from "../../domain/maybe.js";
import type { LimitHit, LimitName } from "../../policy/rateFigures.js";
import { REASONS, type DenyReason } from "../../policy/reasons.js";
import { WWW_AUTHENTICATE } from "../envoy/toCheckResponse.js";
import type { EnvoyCheck } from "../envoy/authorizationService.js";

/** The request a proxy sent to the forward-auth endpoint. */
export interface AuthRequest {
  method: string;
  /** The request-target on the sidecar ("/auth", "/auth/v1/chat/completions?x=1"). */
  url: string;
  headers: IncomingHttpHeaders;
  /** The TCP peer (the proxy). */
  peer: string | undefined;
  /** The forwarded body, if the proxy sent one. */
  body: Buffer | null;
}

/** What the endpoint answers: status, headers (lower-case names) and body. */
export interface HttpReply {
  status: number;
  headers: Record<string, string>;
  body: string;
}

/** The path prefix of the endpoint; Envoy's http_service is configured with it as path_prefix. */
export const AUTH_PREFIX = "/auth";

/** On a forward-auth deny that hit a limit: the body's `limit` member as JSON (for nginx's /deny). */
export const LIMIT_HEADER = "x-aisa-limit";

/** The x-ratelimit-* headers a deny may carry; nginx's /deny echoes them back when well-formed. */
const RATE_HEADERS = ["x-ratelimit-limit-requests", "x-ratelimit-remaining-requests", "x-ratelimit-reset-requests", "x-ratelimit-limit-tokens", "x-ratelimit-remaining-tokens", "x-ratelimit-reset-tokens"] as const;
const RATE_VALUE = /^[0-9]{1,15}s?$/;

const LIMIT_NAMES: ReadonlySet<string> = new Set<LimitName>(["requests_per_minute", "tokens_per_minute", "concurrency", "key_quota", "group_budget", "account_balance"]);

function nullableCount(v: unknown): number | null | undefined {
  if (v === null) return null;
  return typeof v === "number" && Number.isSafeInteger(v) && v >= 0 ? v : undefined;
}

/** The x-aisa-limit header as a LimitHit, or null when absent or not exactly what toHttpReply writes. */
export function parseLimitHeader(v: string | undefined): LimitHit | null {
  if (v === undefined || v.length === 0 || v.length > 512) return null;
  let o: unknown;
  try {
    o = JSON.parse(v);
  } catch {
    return null;
  }
  if (o === null || typeof o !== "object") return null;
  const r = o as Record<string, unknown>;
  const name = r["name"];
  const limit = nullableCount(r["limit"]);
  const remaining = nullableCount(r["remaining"]);
  const reset = nullableCount(r["reset_seconds"]);
  if (typeof name !== "string" || !LIMIT_NAMES.has(name) || limit === undefined || remaining === undefined || reset === undefined) return null;
  return { name: name as LimitName, limit, remaining, resetSeconds: reset };
}

/** Headers of the original request that must not be read from the proxy's own request. */
const HOP_HEADERS = new Set(["connection", "keep-alive", "transfer-encoding", "content-length", "upgrade", "te", "trailer", "host"]);

function first(v: string | string[] | undefined): string | undefined {
  return Array.isArray(v) ? v[0] : v;
}

/** The original request-target, or null when the proxy did not say what it was. */
export function originalUri(url: string, headers: IncomingHttpHeaders): string | null {
  const fwd = first(headers["x-original-uri"]) ?? first(headers["x-forwarded-uri"]);
  if (fwd !== undefined) return fwd.length > 0 && fwd.charCodeAt(0) === 0x2f /* / */ ? fwd : null;
  // Envoy's http_service: path_prefix + the original path.
  if (url.startsWith(AUTH_PREFIX + "/")) return url.slice(AUTH_PREFIX.length);
  return null;
}

/** The reported client address: rightmost X-Forwarded-For entry, else X-Real-IP, else the TCP peer. */
function reportedPeer(headers: IncomingHttpHeaders, peer: string | undefined): string {
  const xff = headers["x-forwarded-for"];
  if (typeof xff === "string" && xff.length > 0) return xff.slice(xff.lastIndexOf(",") + 1).trim();
  const real = first(headers["x-real-ip"]);
  if (real !== undefined && real.trim().length > 0) return real.trim();
  return peer ?? "";
}

/** The forwarded request as an Envoy ext_authz CheckRequest (ts-proto shape), or null without an original URI. */
export function toCheckRequest(r: AuthRequest): CheckRequest | null {
  const path = originalUri(r.url, r.headers);
  if (path === null) return null;
  const headers: Record<string, string> = {};
  for (const [name, v] of Object.entries(r.headers)) {
    if (v === undefined || HOP_HEADERS.has(name)) continue;
    headers[name] = Array.isArray(v) ? v.join(",") : v;
  }
  const method = first(r.headers["x-original-method"]) ?? first(r.headers["x-forwarded-method"]) ?? r.method;
  const host = first(r.headers["x-forwarded-host"]) ?? first(r.headers["host"]) ?? "";
  return {
    attributes: {
      source: {
        address: { address: { $case: "socketAddress", value: { protocol: 0, address: reportedPeer(r.headers, r.peer), resolverName: "", ipv4Compat: false, networkNamespaceFilepath: "" } } },
        service: "",
        labels: {},
        principal: "",
        certificate: "",
      },
      destination: undefined,
      request: {
        time: undefined,
        http: {
          id: "",
          method,
          headers,
          headerMap: undefined,
          path,
          host,
          scheme: first(r.headers["x-forwarded-proto"]) ?? "",
          query: "",
          fragment: "",
          size: "0",
          protocol: "HTTP/1.1",
          body: r.body !== null && r.body.length > 0 ? r.body.toString("utf8") : "",
          rawBody: Buffer.alloc(0),
        },
      },
      contextExtensions: {},
      metadataContext: undefined,
      routeMetadataContext: undefined,
      tlsSession: undefined,
    },
  } as unknown as CheckRequest;
}

function dialectOfHeaders(path: string, headers: IncomingHttpHeaders): Dialect {
  return denyDialect(path, (n) => headers[n] !== undefined);
}

/** A deny reply rendered from the reason table (or UNAVAILABLE), in the client SDK's shape. */
export function denyReply(reason: DenyReason | typeof UNAVAILABLE, dialect: Dialect, retryAfterSeconds: number | null, hit: LimitHit | null = null): HttpReply {
  const { status, body } = denyBody(reason, dialect, hit);
  const headers: Record<string, string> = { "content-type": "application/json", "x-aisa-reason": reason, "cache-control": "no-store" };
  if (status === 401) headers["www-authenticate"] = WWW_AUTHENTICATE;
  if (retryAfterSeconds !== null) headers["retry-after"] = String(retryAfterSeconds);
  return { status, headers, body };
}

/** The HTTP reply for an Envoy CheckResponse: 200 + x-aisa-* on allow, the denied_response on deny. */
export function toHttpReply(res: CheckResponse): HttpReply {
  const headers: Record<string, string> = { "cache-control": "no-store" };
  if (res.httpResponse?.$case === "okResponse") {
    for (const o of res.httpResponse.value.headers) if (o.header) headers[o.header.key] = o.header.value;
    // x-ratelimit-* (response_headers_to_add): for the proxy to copy onto the client's response.
    for (const o of res.httpResponse.value.responseHeadersToAdd) if (o.header) headers[o.header.key] = o.header.value;
    return { status: 200, headers, body: "" };
  }
  if (res.httpResponse?.$case === "deniedResponse") {
    const d = res.httpResponse.value;
    for (const o of d.headers) if (o.header) headers[o.header.key] = o.header.value;
    // The limit the body names, as a header too: nginx cannot read an auth response's body, so
    // its /deny re-renders the body from this (denyFor).
    const limit = (res.dynamicMetadata as { limit?: unknown } | undefined)?.limit;
    if (limit !== undefined) headers[LIMIT_HEADER] = JSON.stringify(limit);
    return { status: d.status?.code || 403, headers, body: d.body };
  }
  // Unreachable (every CheckResponse built here carries one of the two); fail closed.
  return denyReply("MALFORMED_REQUEST", "openai", null);
}

/**
 * The forward-auth decision for one proxy request. Never throws: no original URI → 400 deny;
 * the store unavailable → 503 (UNAVAILABLE), so the proxy fails closed. A promise when the
 * store engine answers later (Redis).
 */
export function forwardAuth(decide: EnvoyCheck, r: AuthRequest, onError: (err: unknown) => void): MaybePromise<HttpReply> {
  const req = toCheckRequest(r);
  if (req === null) return denyReply("MALFORMED_REQUEST", dialectOfHeaders("", r.headers), null);
  const unavailable = (err: unknown): HttpReply => {
    if (!(err instanceof StoreUnavailableError)) onError(err);
    return denyReply(UNAVAILABLE, dialectOfHeaders(req.attributes!.request!.http!.path, r.headers), 1);
  };
  try {
    const res = decide(req);
    return res instanceof Promise ? res.then(toHttpReply, unavailable) : toHttpReply(res);
  } catch (err) {
    return unavailable(err);
  }
}

const DENY_REASONS: ReadonlySet<string> = new Set<string>([...REASONS.filter((r) => r !== "ALLOWED"), UNAVAILABLE]);

/**
 * nginx's `/deny`: auth_request can only pass 401 and 403 (anything else becomes a 500), so the
 * shipped nginx.conf sends every auth failure to an internal location that asks here for the
 * full reply of the reason the auth response named (`X-Aisa-Reason`, `X-Aisa-Retry-After`), in
 * the shape of the original request's SDK, with the limit it hit (`X-Aisa-Limit`, the body's
 * `limit`) and the key's `x-ratelimit-*` figures echoed when well-formed. Only ever a deny; an
 * unknown reason is a 400.
 */
export function denyFor(headers: IncomingHttpHeaders): HttpReply {
  const reason = first(headers["x-aisa-reason"]) ?? "";
  const path = originalUri("", headers) ?? "";
  const dialect = dialectOfHeaders(path, headers);
  if (!DENY_REASONS.has(reason)) return denyReply("MALFORMED_REQUEST", dialect, null);
  const retry = Number(first(headers["x-aisa-retry-after"]) ?? "");
  const valid = Number.isSafeInteger(retry) && retry > 0;
  // RATE_LIMITED (and UNAVAILABLE) always say when; a quota deny only when a refill is due.
  const retryAfter = reason === "RATE_LIMITED" || reason === UNAVAILABLE ? (valid ? retry : 1) : valid ? retry : null;
  const hit = reason === UNAVAILABLE ? null : parseLimitHeader(first(headers[LIMIT_HEADER]));
  const reply = denyReply(reason as DenyReason | typeof UNAVAILABLE, dialect, retryAfter, hit);
  // The key's x-ratelimit-* figures, as the auth response gave them (nginx forwards them here).
  for (const n of RATE_HEADERS) {
    const v = first(headers[n]);
    if (v !== undefined && RATE_VALUE.test(v)) reply.headers[n] = v;
  }
  return reply;
}
