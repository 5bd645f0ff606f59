// Envoy CheckRequest → AuthInput: what the policy needs, extracted at the edge.
//
// Input is whatever arrived on the wire (fuzzed, hand-built, from any Envoy version): this
// function never throws. A request without attributes / request / http is reported as
// malformed for the policy to deny (400), not as an exception.
//
// Client IP: Envoy's source.address is the L4 peer, which is the client only when nothing
// proxies in front of Envoy. With N trusted proxy hops in front, the client is the (N+1)-th
// x-forwarded-for entry from the right (Envoy appended its own peer as the last entry) —
// Envoy's own "trusted client address" rule. Entries further left were written by the client
// and are never used.
import type { AttributeContext_HttpRequest } from "../../gen/envoy/service/auth/v3/attribute_context.js";
import type { CheckRequest } from "../../gen/envoy/service/auth/v3/external_auth.js";
import { parseClientIpShared } from "../../domain/ip.js";
import type { AuthInput } from "../../policy/types.js";
import { MAX_MODEL_LENGTH, extractBodyFields, parsePathModel, type BodyFields } from "./extractModel.js";

export interface EnvoyInputOptions {
  /** Proxies in front of Envoy whose x-forwarded-for entries are trusted (0 = use source.address). */
  xffTrustedHops: number;
}

export interface EnvoyInput {
  input: AuthInput;
  /**
   * Lower-case names of every credential-bearing header present (authorization, x-api-key,
   * api-key, x-goog-api-key), used or not: the allow response removes them all so the
   * upstream never sees a client key.
   */
  credentialHeaders: readonly string[];
  /**
   * Query parameters that carry a credential ("key" when present): for
   * ok_response.query_parameters_to_remove, because headers_to_remove cannot reach them.
   */
  credentialQueryParams: readonly string[];
}

type Headers = { readonly [name: string]: string | undefined };

const NO_BODY: BodyFields = Object.freeze({ model: null, maxTokens: null });
const TEXT = new TextDecoder("utf-8");

// Shared, frozen name lists: the usual request presents one credential header (an array that
// grows by push would get room for 16 names).
const NO_NAMES: readonly string[] = Object.freeze([]);
const ONE_NAME: Readonly<Record<string, readonly string[]>> = Object.freeze(
  Object.fromEntries(["authorization", "x-api-key", "api-key", "x-goog-api-key"].map((n) => [n, Object.freeze([n])])),
);
const KEY_PARAM: readonly string[] = Object.freeze(["key"]);

/** `names` with `name` added: the shared one-name list for the first, a new array after. */
function withName(names: readonly string[], name: string): readonly string[] {
  return names.length === 0 ? ONE_NAME[name]! : [...names, name];
}

function malformed(reason: string): EnvoyInput {
  return {
    input: { credential: null, clientIp: null, model: null, modelDeclared: false, modelConflict: false, maxTokens: null, estimatedUnits: null, malformed: reason },
    credentialHeaders: NO_NAMES,
    credentialQueryParams: NO_NAMES,
  };
}

/**
 * Extracts credential, client IP, model and max_tokens from an Envoy ext_authz v3
 * CheckRequest (ts-proto shape). Credential order: authorization Bearer, x-api-key, api-key,
 * x-goog-api-key, the `key` query parameter. Model: what the upstream will act on — the path's
 * on APIs that route by path (Azure deployments, Gemini, Vertex AI, Bedrock), else the JSON
 * body's; the client's x-aisa-model header only when neither names one (`modelDeclared`).
 * Sources that disagree, or an ambiguous path, set `modelConflict` (the policy denies). Not
 * extracted at all when there is no credential: the policy stops at KEY_MISSING.
 */
export function toAuthInput(req: CheckRequest, opts: EnvoyInputOptions): EnvoyInput {
  try {
    const attrs = req?.attributes;
    if (!attrs) return malformed("CheckRequest has no attributes");
    const request = attrs.request;
    if (!request) return malformed("CheckRequest has no attributes.request");
    const http = request.http;
    if (!http) return malformed("CheckRequest has no attributes.request.http");

    const headers = headersOf(http);
    const path = typeof http.path === "string" ? http.path : "";

    // --- credential -------------------------------------------------------------------------
    let credentialHeaders = NO_NAMES;
    let credential: string | null = null;
    const authorization = get(headers, "authorization");
    if (authorization !== undefined) {
      credentialHeaders = withName(credentialHeaders, "authorization");
      credential = bearerToken(authorization);
    }
    for (const name of API_KEY_HEADERS) {
      const v = get(headers, name);
      if (v === undefined) continue;
      credentialHeaders = withName(credentialHeaders, name);
      if (credential === null) {
        const t = v.trim();
        if (t.length > 0) credential = t;
      }
    }
    const query = queryKey(path);
    const credentialQueryParams = query.present ? KEY_PARAM : NO_NAMES;
    if (credential === null) credential = query.value;

    // --- client IP ---------------------------------------------------------------------------
    const clientIp = clientIpOf(attrs.source?.address?.address, get(headers, "x-forwarded-for"), opts.xffTrustedHops);

    // --- model, max_tokens -------------------------------------------------------------------
    // Without a credential the verdict is KEY_MISSING whatever the body says: do not let an
    // anonymous caller make us scan megabytes.
    let fields = NO_BODY;
    let model: string | null = null;
    let modelDeclared = false;
    let modelConflict = false;
    if (credential !== null) {
      const partial = get(headers, "x-envoy-auth-partial-body") === "true";
      if (typeof http.body === "string" && http.body.length > 0) fields = extractBodyFields(http.body, partial);
      else if (http.rawBody instanceof Uint8Array && http.rawBody.length > 0) fields = extractBodyFields(http.rawBody, partial);
      // Path-routed APIs (Azure deployments, Gemini, Vertex, Bedrock) act on the path and
      // ignore a body "model": the path decides, and a body naming another model is a conflict.
      const fromPath = parsePathModel(path);
      modelConflict = fromPath.ambiguous;
      model = fromPath.model ?? fields.model;
      if (fromPath.model !== null && fields.model !== null && fields.model !== fromPath.model) modelConflict = true;
      // The header is the client's own claim: it never overrides the path or body, and stands
      // in only when neither names a model (modelDeclared: not enough for a restricted key).
      const declared = headerModel(get(headers, "x-aisa-model"));
      if (declared !== null) {
        if (model === null) {
          model = declared;
          modelDeclared = true;
        } else if (declared !== model) modelConflict = true;
      }
    }

    return {
      input: { credential, clientIp, model, modelDeclared, modelConflict, maxTokens: fields.maxTokens, estimatedUnits: null, malformed: null },
      credentialHeaders,
      credentialQueryParams,
    };
  } catch {
    // Unreachable for anything ts-proto decodes; a safety net for hand-built objects.
    return malformed("unreadable CheckRequest");
  }
}

const API_KEY_HEADERS = ["x-api-key", "api-key", "x-goog-api-key"] as const;

function get(h: Headers, name: string): string | undefined {
  const v = h[name];
  return typeof v === "string" ? v : undefined;
}

/**
 * The headers map, or — when Envoy runs with encode_raw_headers and leaves `headers` empty —
 * one built from header_map, which carries each header line separately (value or raw bytes):
 * repeats are joined with "," exactly as Envoy joins them in `headers`.
 */
function headersOf(http: AttributeContext_HttpRequest): Headers {
  const h = http.headers;
  if (h && typeof h === "object" && hasAnyKey(h)) return h;
  const list = http.headerMap?.headers;
  if (!Array.isArray(list) || list.length === 0) return h && typeof h === "object" ? h : EMPTY_HEADERS;
  const out: Record<string, string> = Object.create(null) as Record<string, string>;
  for (const e of list) {
    if (!e || typeof e.key !== "string") continue;
    const key = e.key.toLowerCase();
    const value =
      typeof e.value === "string" && e.value.length > 0
        ? e.value
        : e.rawValue instanceof Uint8Array && e.rawValue.length > 0
          ? TEXT.decode(e.rawValue)
          : "";
    const prev = out[key];
    out[key] = prev === undefined ? value : `${prev},${value}`;
  }
  return out;
}

const EMPTY_HEADERS: Headers = Object.freeze(Object.create(null) as Headers);

function hasAnyKey(o: object): boolean {
  for (const k in o) if (Object.hasOwn(o, k)) return true;
  return false;
}

function isBlank(c: number): boolean {
  return c === 0x20 || c === 0x09;
}

/** "Bearer <token>" with the scheme matched case-insensitively (RFC 9110 §11.1); else null. */
function bearerToken(v: string): string | null {
  let i = 0;
  while (i < v.length && isBlank(v.charCodeAt(i))) i++;
  if (v.length - i < 7) return null;
  // "bearer", compared with ASCII case folding (| 0x20), then at least one blank.
  if (
    (v.charCodeAt(i) | 0x20) !== 0x62 ||
    (v.charCodeAt(i + 1) | 0x20) !== 0x65 ||
    (v.charCodeAt(i + 2) | 0x20) !== 0x61 ||
    (v.charCodeAt(i + 3) | 0x20) !== 0x72 ||
    (v.charCodeAt(i + 4) | 0x20) !== 0x65 ||
    (v.charCodeAt(i + 5) | 0x20) !== 0x72 ||
    !isBlank(v.charCodeAt(i + 6))
  ) {
    return null;
  }
  const token = v.slice(i + 7).trim();
  return token.length > 0 ? token : null;
}

const NO_QUERY_KEY = Object.freeze({ present: false, value: null });

/** The first `key=` parameter of the raw path's query, percent-decoded ('+' is kept: keys are not form text). */
function queryKey(path: string): { present: boolean; value: string | null } {
  const q = path.indexOf("?");
  if (q < 0) return NO_QUERY_KEY;
  let end = path.indexOf("#", q);
  if (end < 0) end = path.length;
  let start = q + 1;
  while (start < end) {
    let amp = path.indexOf("&", start);
    if (amp < 0 || amp > end) amp = end;
    if (amp - start >= 4 && path.startsWith("key=", start)) {
      const raw = path.slice(start + 4, amp);
      let value: string = raw;
      if (raw.includes("%")) {
        try {
          value = decodeURIComponent(raw);
        } catch {
          value = raw; // a broken escape: still a (wrong) key, so KEY_INVALID rather than KEY_MISSING
        }
      }
      value = value.trim();
      return { present: true, value: value.length > 0 ? value : null };
    }
    start = amp + 1;
  }
  return NO_QUERY_KEY;
}

type PeerAddress = NonNullable<NonNullable<NonNullable<CheckRequest["attributes"]>["source"]>["address"]>["address"];

function clientIpOf(source: PeerAddress, xff: string | undefined, hops: number): readonly number[] | null {
  const n = Number.isInteger(hops) && hops > 0 ? hops : 0;
  if (n > 0 && xff !== undefined) {
    // Walk commas from the right, without splitting: the (n+1)-th entry from the right.
    let end = xff.length;
    for (let k = 1; ; k++) {
      const comma = end > 0 ? xff.lastIndexOf(",", end - 1) : -1;
      if (k === n + 1) {
        // A trusted proxy wrote this entry; if it is not an address, fail closed (no IP)
        // rather than fall back to the proxy's own address.
        return parseClientIpShared(xff.slice(comma + 1, end));
      }
      if (comma < 0) break; // fewer than n+1 entries: the request bypassed the proxies
      end = comma;
    }
  }
  // The L4 peer. A pipe (UDS) or internal address has no IP: null.
  if (source?.$case === "socketAddress") return parseClientIpShared(source.value.address);
  return null;
}

function headerModel(v: string | undefined): string | null {
  if (v === undefined) return null;
  const t = v.trim();
  if (t.length === 0 || t.length > MAX_MODEL_LENGTH) return null;
  for (let i = 0; i < t.length; i++) if (t.charCodeAt(i) < 0x20) return null;
  return t;
}
