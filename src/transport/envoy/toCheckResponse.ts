// Verdict → Envoy ext_authz v3 CheckResponse. Pure builders; wire facts they rely on
// (see shared/docs/envoy-ext-authz.md):
//  - Envoy reads only status.code: 0 allows, anything else denies. A MISSING status decodes
//    as 0 and ALLOWS, so every response sets status explicitly.
//  - Header options always carry `append` explicitly false (BoolValue present): "overwrite or
//    add" in every Envoy version; unset depends on the version. append_action is left at its
//    default (0, not encoded): setting both can be rejected as an invalid mutation.
//    On denied responses append=true entries are DROPPED by Envoy, so it is never true here.
//  - The denied HTTP status comes from denied_response.status only (the gRPC code does not
//    map to it); without a content-type header Envoy labels the body text/plain.
//
// Deny responses depend only on the reason (plus retry-after and the key for metadata), so
// they are built once at module load and shared; shared objects are deeply frozen, and a
// caller that tries to mutate one gets a TypeError instead of corrupting every later reply.
import type { HeaderValueOption } from "../../gen/envoy/config/core/v3/base.js";
import type { CheckResponse, DeniedHttpResponse, OkHttpResponse } from "../../gen/envoy/service/auth/v3/external_auth.js";
import type { StatusCode } from "../../gen/envoy/type/v3/http_status.js";
import type { Status } from "../../gen/google/rpc/status.js";
import { DIALECTS, denyBody, limitJson, type Dialect } from "../../policy/denyShape.js";
import { NO_FIGURES, resetHeaderValue, type LimitHit, type RateFigures } from "../../policy/rateFigures.js";
import { REASONS, REASON_TABLE, type DenyReason } from "../../policy/reasons.js";

export interface AllowArgs {
  keyId: string;
  accountId: string;
  group: string;
  reservationId: string;
  /** The model the Check priced ("" when none) and the units it reserved: read by ext_proc metering from metadata_context. */
  model?: string;
  reservedUnits?: number;
  /** From toAuthInput: removed from the upstream request. */
  credentialHeaders: readonly string[];
  /** From toAuthInput: credential query parameters removed from the upstream :path. */
  credentialQueryParams?: readonly string[];
  /** The key's x-ratelimit-* figures (policy/rateFigures.ts): response_headers_to_add, and the limits in metadata. */
  figures?: RateFigures;
}

export interface DenyOptions {
  /** RATE_LIMITED only: becomes `retry-after` in whole seconds (rounded up, at least 1). */
  retryAfterMs?: number;
  keyId?: string;
  accountId?: string;
  group?: string;
  /** The error shape of the client's SDK (policy/denyShape.ts); OpenAI's by default. */
  dialect?: Dialect;
  /** The key's x-ratelimit-* figures: headers on the deny. */
  figures?: RateFigures;
  /** A money or rate deny: which limit was hit (the body's `limit` member). */
  hit?: LimitHit | null;
}

/** The realm in `www-authenticate` on 401 (RFC 6750 §3). */
export const WWW_AUTHENTICATE = 'Bearer realm="aisa"';

const NO_BYTES = Buffer.alloc(0);

function header(key: string, value: string): HeaderValueOption {
  return { header: { key, value, rawValue: NO_BYTES }, append: false, appendAction: 0, keepEmptyValue: false };
}

// The key's id, account and group headers of an allow, built once per value and shared (frozen,
// as the deny templates are): they repeat from request to request, two objects each. A cache
// that fills up is emptied, so it holds the values of at most MAX_CACHED_HEADERS keys.
const MAX_CACHED_HEADERS = 4096;
const KEY_ID_HEADERS = new Map<string, HeaderValueOption>();
const ACCOUNT_ID_HEADERS = new Map<string, HeaderValueOption>();
const GROUP_HEADERS = new Map<string, HeaderValueOption>();

function idHeader(cache: Map<string, HeaderValueOption>, name: string, value: string): HeaderValueOption {
  let h = cache.get(value);
  if (h === undefined) {
    if (cache.size >= MAX_CACHED_HEADERS) cache.clear();
    h = deepFreeze(header(name, value));
    cache.set(value, h);
  }
  return h;
}

/** The empty list of an allow reply's unused repeated fields: shared, frozen. */
const NONE = Object.freeze([]) as unknown as never[];

function nonEmpty(value: string): boolean {
  return typeof value === "string" && value.length > 0;
}

/** The allow's id headers on the upstream request, in reply order (the ids: `allowId`). */
export const ALLOW_ID_HEADERS: readonly string[] = Object.freeze(["x-aisa-key-id", "x-aisa-account-id", "x-aisa-group", "x-aisa-reservation"]);
/** The shared header options per value of each id header (none for the reservation: new per Check). */
const ID_HEADER_CACHES = [KEY_ID_HEADERS, ACCOUNT_ID_HEADERS, GROUP_HEADERS, null];

/** The allow's `i`-th id (ALLOW_ID_HEADERS order). */
export function allowId(a: AllowArgs, i: number): string {
  return i === 0 ? a.keyId : i === 1 ? a.accountId : i === 2 ? a.group : a.reservationId;
}

/** Every id set: each goes to its header and none to headers_to_remove (the usual allow). */
export function allIdsSet(a: AllowArgs): boolean {
  return nonEmpty(a.keyId) && nonEmpty(a.accountId) && nonEmpty(a.group) && nonEmpty(a.reservationId);
}

/**
 * The allow's dynamic_metadata as key/value pairs in reply order, written into `out` from 0
 * ([key0, value0, key1, value1, …]); returns how many entries it wrote. allowResponse builds its
 * object from them and checkResponseWire.ts's allowFrame writes them, so both say the same.
 */
export function allowMetadataPairs(a: AllowArgs, out: unknown[]): number {
  let n = 0;
  out[n++] = "key_id";
  out[n++] = a.keyId;
  out[n++] = "account_id";
  out[n++] = a.accountId;
  out[n++] = "group";
  out[n++] = a.group;
  out[n++] = "reservation_id";
  out[n++] = a.reservationId;
  out[n++] = "model";
  out[n++] = a.model ?? "";
  out[n++] = "reserved_units";
  out[n++] = a.reservedUnits ?? 0;
  const f = a.figures;
  if (f !== undefined && f !== NO_FIGURES) {
    // Envoy Gateway's `limit.fromMetadata` (and Envoy's RateLimit.Override.DynamicMetadata)
    // read a struct {requests_per_unit, unit} at one key of the namespace.
    if (f.requests !== null) {
      out[n++] = "total_limit";
      out[n++] = { requests_per_unit: f.requests.limit, unit: "MINUTE" };
    }
    if (f.tokens !== null) {
      out[n++] = "tokens_limit";
      out[n++] = { requests_per_unit: f.tokens.limit, unit: "MINUTE" };
    }
  }
  return n;
}

/**
 * The x-ratelimit-* headers of `f` (policy/rateFigures.ts) as name/value pairs in reply order,
 * written into `out` from 0; returns how many entries it wrote (0 for NO_FIGURES).
 */
export function rateHeaderPairs(f: RateFigures, out: string[]): number {
  let n = 0;
  const r = f.requests;
  if (r !== null) {
    out[n++] = "x-ratelimit-limit-requests";
    out[n++] = String(r.limit);
    out[n++] = "x-ratelimit-remaining-requests";
    out[n++] = String(r.remaining);
    out[n++] = "x-ratelimit-reset-requests";
    out[n++] = resetHeaderValue(r.resetMs);
  }
  const t = f.tokens;
  if (t !== null) {
    out[n++] = "x-ratelimit-limit-tokens";
    out[n++] = String(t.limit);
    out[n++] = "x-ratelimit-remaining-tokens";
    out[n++] = String(t.remaining);
    out[n++] = "x-ratelimit-reset-tokens";
    out[n++] = resetHeaderValue(t.resetMs);
  }
  return n;
}

/** allowResponse's and pushRateHeaders' pairs (both synchronous): emptied after each use. */
const PAIRS: unknown[] = [];
const RATE_PAIRS: string[] = [];

const OK_STATUS: Status = deepFreeze({ code: 0, message: "", details: [] });

/**
 * Allow: status OK; x-aisa-key-id / -account-id / -group / -reservation set on the upstream
 * request (overwriting anything the client sent under those names); credential headers and
 * query parameters removed; the same ids in dynamic_metadata for access logs, with the model
 * and the reserved units (what ext_proc metering reads from metadata_context).
 * An empty id is not sent as an empty header: its name goes to headers_to_remove instead, so a
 * client-supplied value can never reach the upstream.
 *
 * The Envoy endpoint writes the usual allow (every id set) straight into its frame instead
 * (checkResponseWire.ts allowFrame, from the same names and pairs); this object is every other
 * allow's, and the grpc-js port's and forward-auth's.
 */
export function allowResponse(a: AllowArgs): CheckResponse {
  const headers: HeaderValueOption[] = [];
  // Nothing is added to a frozen list (toAuthInput's usual one) when every id is set: shared as it is.
  const headersToRemove = allIdsSet(a) && Object.isFrozen(a.credentialHeaders) ? (a.credentialHeaders as string[]) : a.credentialHeaders.slice();
  for (let i = 0; i < ALLOW_ID_HEADERS.length; i++) {
    const name = ALLOW_ID_HEADERS[i]!;
    const value = allowId(a, i);
    const cache = ID_HEADER_CACHES[i];
    if (!nonEmpty(value)) headersToRemove.push(name);
    else headers.push(cache ? idHeader(cache, name, value) : header(name, value));
  }
  const f = a.figures;
  const figures = f !== undefined && f !== NO_FIGURES;
  const ok: OkHttpResponse = {
    headers,
    headersToRemove,
    dynamicMetadata: undefined, // deprecated field: it would override CheckResponse.dynamic_metadata
    // Empty lists are shared and frozen (as the deny templates are): nothing writes to a reply.
    responseHeadersToAdd: figures ? [] : NONE,
    queryParametersToSet: NONE,
    queryParametersToRemove: a.credentialQueryParams && a.credentialQueryParams.length > 0 ? a.credentialQueryParams.slice() : NONE,
  };
  if (figures) pushRateHeaders(ok.responseHeadersToAdd, f);
  const metadata: { [key: string]: unknown } = {};
  const n = allowMetadataPairs(a, PAIRS);
  for (let i = 0; i < n; i += 2) metadata[PAIRS[i] as string] = PAIRS[i + 1];
  PAIRS.fill(undefined, 0, n);
  return {
    status: OK_STATUS,
    httpResponse: { $case: "okResponse", value: ok },
    dynamicMetadata: metadata,
  };
}

/** The x-ratelimit-* headers of `f` (policy/rateFigures.ts), each `append: false`. */
function pushRateHeaders(headers: HeaderValueOption[], f: RateFigures): void {
  const n = rateHeaderPairs(f, RATE_PAIRS);
  for (let i = 0; i < n; i += 2) headers.push(header(RATE_PAIRS[i]!, RATE_PAIRS[i + 1]!));
  RATE_PAIRS.fill("", 0, n);
}

interface DenyTemplate {
  status: Status;
  denied: DeniedHttpResponse;
  metadata: { readonly reason: string };
  response: CheckResponse;
}

function buildDenied(reason: DenyReason, retryAfterSeconds: number | null, dialect: Dialect): DeniedHttpResponse {
  const info = REASON_TABLE[reason];
  const headers: HeaderValueOption[] = [header("content-type", "application/json")];
  if (info.httpStatus === 401) headers.push(header("www-authenticate", WWW_AUTHENTICATE));
  if (retryAfterSeconds !== null) headers.push(header("retry-after", String(retryAfterSeconds)));
  headers.push(header("x-aisa-reason", reason));
  // The client SDK's own error shape (OpenAI's unless the route or credential header says otherwise).
  const { body } = denyBody(reason, dialect);
  return { status: { code: info.httpStatus as StatusCode }, headers, body };
}

/** One template per reason and dialect. */
const TEMPLATES: Record<Dialect, Map<DenyReason, DenyTemplate>> = { openai: new Map(), anthropic: new Map(), google: new Map() };
for (const dialect of DIALECTS) {
  for (const r of REASONS) {
    if (r === "ALLOWED") continue;
    const info = REASON_TABLE[r];
    if (info.grpcCode === 0) throw new Error(`reason table: ${r} must have a non-zero gRPC code`);
    const status: Status = { code: info.grpcCode, message: info.message, details: [] };
    const denied = buildDenied(r, r === "RATE_LIMITED" ? 1 : null, dialect);
    const metadata = { reason: r };
    const response: CheckResponse = { status, httpResponse: { $case: "deniedResponse", value: denied }, dynamicMetadata: metadata };
    deepFreeze(response);
    TEMPLATES[dialect].set(r, { status, denied, metadata, response });
  }
}

// RATE_LIMITED replies per retry-after value: the common waits (up to an hour) are cached
// after first use; anything longer is built per call.
const MAX_CACHED_RETRY_SECONDS = 3600;
// Seeded with the template's own 1-second reply, so the common case reuses the whole response.
const RETRY_CACHE: Record<Dialect, Map<number, DeniedHttpResponse>> = {
  openai: new Map([[1, TEMPLATES.openai.get("RATE_LIMITED")!.denied]]),
  anthropic: new Map([[1, TEMPLATES.anthropic.get("RATE_LIMITED")!.denied]]),
  google: new Map([[1, TEMPLATES.google.get("RATE_LIMITED")!.denied]]),
};
const NO_OPTIONS: DenyOptions = Object.freeze({});

function rateLimitedDenied(retryAfterMs: number | undefined, dialect: Dialect): DeniedHttpResponse {
  const ms = typeof retryAfterMs === "number" && Number.isFinite(retryAfterMs) ? retryAfterMs : 0;
  const seconds = Math.max(1, Math.ceil(ms / 1000));
  if (seconds > MAX_CACHED_RETRY_SECONDS) return buildDenied("RATE_LIMITED", seconds, dialect);
  const cache = RETRY_CACHE[dialect];
  let d = cache.get(seconds);
  if (d === undefined) {
    d = deepFreeze(buildDenied("RATE_LIMITED", seconds, dialect));
    cache.set(seconds, d);
  }
  return d;
}

/**
 * Deny: status = the reason's non-zero gRPC code and public message; denied_response with the
 * reason's HTTP status, `content-type: application/json`, `www-authenticate` on 401,
 * `retry-after` (seconds) on RATE_LIMITED, on KEY_QUOTA_EXHAUSTED with a refill due and on GROUP_BUDGET_EXHAUSTED, `x-aisa-reason`, and the error body in the client
 * SDK's shape (`opts.dialect`, policy/denyShape.ts; OpenAI's by default);
 * dynamic_metadata {reason, key_id/account_id/group when known, limit for a hit}. With the key's figures
 * (`opts.figures`), the x-ratelimit-* headers too; with a hit (`opts.hit`), the body's `limit`.
 * Without key data the shared, frozen response for the reason is returned. An unknown reason
 * (not in the table) gets the MALFORMED_REQUEST reply: a deny, never a throw.
 */
export function denyResponse(reason: DenyReason, opts: DenyOptions = NO_OPTIONS): CheckResponse {
  const dialect = opts.dialect !== undefined && Object.hasOwn(TEMPLATES, opts.dialect) ? opts.dialect : "openai";
  const templates = TEMPLATES[dialect];
  const t = templates.get(reason) ?? templates.get("MALFORMED_REQUEST")!;
  let denied = reason === "RATE_LIMITED" ? rateLimitedDenied(opts.retryAfterMs, dialect) : t.denied;
  const figures = opts.figures;
  const hit = opts.hit;
  if ((figures !== undefined && figures !== NO_FIGURES) || (hit !== undefined && hit !== null)) {
    // A key with limits, or a money/rate deny: the template's status and headers plus this
    // request's figures, and (for a hit) the body naming the limit. Built per call.
    const headers = denied.headers.slice();
    // A quota deny with a refill due, a group budget deny (its next reset): retry-after names it (waiting helps).
    if ((reason === "KEY_QUOTA_EXHAUSTED" || reason === "GROUP_BUDGET_EXHAUSTED") && hit?.resetSeconds != null) headers.push(header("retry-after", String(hit.resetSeconds)));
    if (figures !== undefined && figures !== NO_FIGURES) pushRateHeaders(headers, figures);
    const body = hit !== undefined && hit !== null ? denyBody(t.metadata.reason as DenyReason, dialect, hit).body : denied.body;
    denied = { status: denied.status, headers, body };
  }
  const known = opts.keyId !== undefined || opts.accountId !== undefined || opts.group !== undefined || (hit !== undefined && hit !== null);
  if (denied === t.denied && !known) return t.response;
  let metadata: { [key: string]: unknown } = t.metadata;
  if (known) {
    metadata = { reason: t.metadata.reason };
    if (opts.keyId !== undefined) metadata.key_id = opts.keyId;
    if (opts.accountId !== undefined) metadata.account_id = opts.accountId;
    if (opts.group !== undefined) metadata.group = opts.group;
    // The limit hit, as the body names it: for access logs, and for the HTTP forward-auth
    // reply's x-aisa-limit (nginx's /deny re-renders the body from it).
    if (hit !== undefined && hit !== null) metadata.limit = limitJson(hit);
  }
  return { status: t.status, httpResponse: { $case: "deniedResponse", value: denied }, dynamicMetadata: metadata };
}

function deepFreeze<T>(o: T): T {
  if (o === null || typeof o !== "object" || Object.isFrozen(o) || ArrayBuffer.isView(o)) return o;
  for (const v of Object.values(o as object)) deepFreeze(v);
  return Object.freeze(o);
}
