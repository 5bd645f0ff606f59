// THE deny body: one reason of the table (reasons.ts) in the error shape the client's own SDK
// parses. Every edge that answers an HTTP client (Envoy's denied_response, the HTTP
// forward-auth endpoint, nginx's /deny) renders its body here, so a row changes them all.
//
// The shapes, as each official SDK reads them:
//  - OpenAI (and every OpenAI-compatible SDK): {"error":{"message","type","code","param"}};
//  - Anthropic: {"type":"error","error":{"type","message"}}, the type naming the status class
//    (authentication_error, permission_error, rate_limit_error…);
//  - Google (Gemini, Vertex AI): {"error":{"code":<http status>,"message","status":<google.rpc.Code name>}}.
import type { LimitHit } from "./rateFigures.js";
import { REASON_TABLE, type DenyReason } from "./reasons.js";

export type Dialect = "openai" | "anthropic" | "google";

export const DIALECTS: readonly Dialect[] = ["openai", "anthropic", "google"];

/** Not a verdict: the sidecar could not decide (store unavailable); rendered like a reason. */
export const UNAVAILABLE = "UNAVAILABLE";

const UNAVAILABLE_INFO = {
  grpcCode: 14,
  httpStatus: 503,
  message: "Authorization is temporarily unavailable. Retry later.",
  errorType: "api_error",
  errorCode: "service_unavailable",
} as const;

const GRPC_NAMES: Readonly<Record<number, string>> = {
  3: "INVALID_ARGUMENT",
  7: "PERMISSION_DENIED",
  8: "RESOURCE_EXHAUSTED",
  9: "FAILED_PRECONDITION",
  14: "UNAVAILABLE",
  16: "UNAUTHENTICATED",
};

/** Anthropic's error.type per HTTP status (its SDK picks the error class by status; the type is what users read). */
function anthropicType(status: number): string {
  switch (status) {
    case 400:
      return "invalid_request_error";
    case 401:
      return "authentication_error";
    case 402:
      return "billing_error";
    case 403:
      return "permission_error";
    case 429:
      return "rate_limit_error";
    default:
      return "api_error";
  }
}

/** The `limit` member of a deny body: which limit was hit, what remains, when waiting helps (null: it does not). */
export function limitJson(hit: LimitHit): { name: string; limit: number | null; remaining: number | null; reset_seconds: number | null } {
  return { name: hit.name, limit: hit.limit, remaining: hit.remaining, reset_seconds: hit.resetSeconds };
}

/**
 * The HTTP status and JSON body of a deny (or of UNAVAILABLE) for a client of `dialect`. Pure.
 * With `hit` (a money or rate deny, policy/rateFigures.ts), the error object also carries
 * `limit: {name, limit, remaining, reset_seconds}` — a member every SDK ignores and a person reads.
 */
export function denyBody(reason: DenyReason | typeof UNAVAILABLE, dialect: Dialect, hit: LimitHit | null = null): { status: number; body: string } {
  const info = reason === UNAVAILABLE ? UNAVAILABLE_INFO : (REASON_TABLE[reason] ?? REASON_TABLE.MALFORMED_REQUEST);
  const status = info.httpStatus;
  let body: unknown;
  const limit = hit === null ? undefined : limitJson(hit);
  if (dialect === "anthropic") body = { type: "error", error: { type: anthropicType(status), message: info.message, limit } };
  else if (dialect === "google") body = { error: { code: status, message: info.message, status: GRPC_NAMES[info.grpcCode] ?? "UNKNOWN", limit } };
  else body = { error: { message: info.message, type: info.errorType, code: info.errorCode, param: null, limit } };
  return { status, body: JSON.stringify(body) };
}

/**
 * Which SDK most likely sent the request, from its path and credential header: Gemini and
 * Vertex AI routes (`/v1beta/…`, `…/models/<m>:generateContent` and the other `:verbs`,
 * `/publishers/google/`) or `x-goog-api-key` → google; Anthropic routes (`/v1/messages`,
 * `/v1/complete`) or `x-api-key` / `anthropic-version` → anthropic; anything else → openai.
 * The path wins over headers. Pure.
 */
export function denyDialect(path: string, hasHeader: (name: string) => boolean): Dialect {
  const q = path.indexOf("?");
  const p = q >= 0 ? path.slice(0, q) : path;
  if (p.startsWith("/v1beta/") || p.includes("/publishers/google/") || /\/models\/[^/]+:[A-Za-z]+$/.test(p)) return "google";
  if (p === "/v1/messages" || p.startsWith("/v1/messages/") || p === "/v1/complete") return "anthropic";
  if (hasHeader("x-goog-api-key")) return "google";
  if (hasHeader("x-api-key") || hasHeader("anthropic-version")) return "anthropic";
  return "openai";
}
