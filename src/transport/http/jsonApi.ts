// aisa.v1.Authorizer as JSON over HTTP, for services that don't speak gRPC:
//   POST /v1/check          ← CheckRequest          → CheckResponse
//   POST /v1/consume        ← ConsumeRequest        → ConsumeResponse
//   POST /v1/consume:batch  ← ConsumeBatchRequest   → ConsumeBatchResponse
// Same fields (the .proto names, snake_case; lowerCamelCase accepted too, as proto3 JSON does),
// same semantics: the same Authorizer and ConsumeService (idempotent per request_id), the same
// string bounds (bounds.ts) and the same consume token. int64 fields are JSON strings on output
// (proto3 JSON) and strings or integers on input; enums are their names.
// An error is {"error":{"code":"<gRPC code name>","message","field"}} with the HTTP status
// Google's APIs use for that code.
import { status as Code } from "@grpc/grpc-js";
import { Reason as ProtoReason, type CheckRequest, type ConsumeRequest, type ConsumeResponse, type CheckResponse as AppCheckResponse } from "../../gen/aisa/v1/authorizer.js";
import { SidecarError, invalid } from "../../domain/errors.js";
import type { Authorizer } from "../../service/authorizer.js";
import type { ConsumeService } from "../../service/consume.js";
import { consumeAuthorized, consumeOne, CONSUME_UNAUTHENTICATED, MAX_BATCH, toAppAuthInput, toAppCheckResponse } from "../authorizer.js";
import { oversizeField } from "../bounds.js";
import { logOncePerKind, toGrpcStatus } from "../grpcErrors.js";
import type { HttpReply } from "./forwardAuth.js";

export interface JsonApiOptions {
  authorizer: Authorizer;
  consume: ConsumeService;
  clock: () => number;
  log: (err: unknown) => void;
  /** SHA-256 of the consume token (consumeTokenDigest); null = none configured. */
  consumeDigest: Buffer | null;
  onConsumeLatency?: (seconds: number) => void;
}

/** google.rpc.Code → HTTP status (Google's own mapping, google/rpc/code.proto). */
const HTTP_OF_CODE: Record<number, number> = {
  [Code.INVALID_ARGUMENT]: 400,
  [Code.FAILED_PRECONDITION]: 400,
  [Code.OUT_OF_RANGE]: 400,
  [Code.UNAUTHENTICATED]: 401,
  [Code.PERMISSION_DENIED]: 403,
  [Code.NOT_FOUND]: 404,
  [Code.ALREADY_EXISTS]: 409,
  [Code.ABORTED]: 409,
  [Code.RESOURCE_EXHAUSTED]: 429,
  [Code.CANCELLED]: 499,
  [Code.UNIMPLEMENTED]: 501,
  [Code.UNAVAILABLE]: 503,
  [Code.DEADLINE_EXCEEDED]: 504,
};

/** The field an INVALID_ARGUMENT message names ("request_id: is required" → "request_id"). */
function fieldOf(message: string): string | undefined {
  const m = /^([A-Za-z_][A-Za-z0-9_.]*(?:\[[^\]]*\])*(?:\.[A-Za-z_][A-Za-z0-9_]*)*): /.exec(message);
  return m ? m[1] : undefined;
}

function errorObject(code: number, message: string): { code: string; message: string; field?: string } {
  const o: { code: string; message: string; field?: string } = { code: Code[code] ?? "UNKNOWN", message };
  if (code === Code.INVALID_ARGUMENT) {
    const f = fieldOf(message);
    if (f !== undefined) o.field = f;
  }
  return o;
}

/** An error reply for `err` through THE error boundary (grpcErrors.ts): SidecarErrors keep their code and public message. */
export function errorReply(err: unknown, log: (err: unknown) => void): HttpReply {
  const { code, details } = toGrpcStatus(err, log);
  return json(HTTP_OF_CODE[code] ?? 500, { error: errorObject(code, details) });
}

export function json(status: number, value: unknown): HttpReply {
  return { status, headers: { "content-type": "application/json", "cache-control": "no-store" }, body: JSON.stringify(value) };
}

type Obj = Record<string, unknown>;

/** A field by its proto name or its lowerCamelCase JSON name. */
function pick(o: Obj, name: string): unknown {
  if (Object.hasOwn(o, name)) return o[name];
  const camel = name.replace(/_([a-z])/g, (_, c: string) => c.toUpperCase());
  return Object.hasOwn(o, camel) ? o[camel] : undefined;
}

function str(o: Obj, name: string, path: string): string {
  const v = pick(o, name);
  if (v === undefined || v === null) return "";
  if (typeof v !== "string") throw invalid(path + name, "must be a string");
  return v;
}

/** int64 as proto3 JSON takes it: a decimal string or an integer; "" / absent = 0. */
function int64(o: Obj, name: string, path: string): string {
  const v = pick(o, name);
  if (v === undefined || v === null || v === "") return "0";
  if (typeof v === "number" && Number.isSafeInteger(v)) return String(v);
  if (typeof v === "string" && /^-?\d{1,19}$/.test(v)) return v;
  throw invalid(path + name, "must be an integer (a number or a decimal string)");
}

function object(v: unknown, what: string): Obj {
  if (v === null || typeof v !== "object" || Array.isArray(v)) throw invalid(what, "must be a JSON object");
  return v as Obj;
}

/** Parses a JSON request body; bad JSON is INVALID_ARGUMENT naming the body. */
export function parseBody(body: Buffer): Obj {
  let v: unknown;
  try {
    v = JSON.parse(body.length === 0 ? "{}" : body.toString("utf8"));
  } catch {
    throw invalid("body", "is not valid JSON");
  }
  return object(v, "body");
}

function bounded<T>(message: T, prefix = ""): T {
  const bad = oversizeField(message);
  if (bad) throw new SidecarError("INVALID_ARGUMENT", prefix + bad);
  return message;
}

function checkRequestOf(o: Obj): CheckRequest {
  return bounded({
    apiKey: str(o, "api_key", ""),
    model: str(o, "model", ""),
    clientIp: str(o, "client_ip", ""),
    estimatedUnits: int64(o, "estimated_units", ""),
    maxTokens: int64(o, "max_tokens", ""),
    requestId: str(o, "request_id", ""),
  });
}

function consumeRequestOf(o: Obj, path: string): ConsumeRequest {
  const targets = (["reservation_id", "key_id", "api_key"] as const).filter((t) => pick(o, t) !== undefined && pick(o, t) !== null);
  if (targets.length > 1) throw invalid(path + "target", `set one of reservation_id, key_id or api_key (got ${targets.join(", ")})`);
  const t = targets[0];
  const target: ConsumeRequest["target"] =
    t === "reservation_id"
      ? { $case: "reservationId", value: str(o, t, path) }
      : t === "key_id"
        ? { $case: "keyId", value: str(o, t, path) }
        : t === "api_key"
          ? { $case: "apiKey", value: str(o, t, path) }
          : undefined;
  return {
    requestId: str(o, "request_id", path),
    target,
    model: str(o, "model", path),
    inputTokens: int64(o, "input_tokens", path),
    outputTokens: int64(o, "output_tokens", path),
    units: int64(o, "units", path),
    cacheReadTokens: int64(o, "cache_read_tokens", path),
    cacheWriteTokens: int64(o, "cache_write_tokens", path),
    reasoningTokens: int64(o, "reasoning_tokens", path),
  };
}

const REASON_NAMES = ProtoReason as unknown as Record<number, string>;

function checkJson(r: AppCheckResponse): Obj {
  return {
    allowed: r.allowed,
    reason: REASON_NAMES[r.reason] ?? "REASON_UNSPECIFIED",
    message: r.message,
    http_status: r.httpStatus,
    key_id: r.keyId,
    account_id: r.accountId,
    group: r.group,
    key_remaining: r.keyRemaining,
    key_unlimited: r.keyUnlimited,
    account_balance: r.accountBalance,
    reservation_id: r.reservationId,
    reserved_units: r.reservedUnits,
    limits: {
      rpm_remaining: r.limits?.rpmRemaining ?? -1,
      tpm_remaining: r.limits?.tpmRemaining ?? -1,
      concurrency_remaining: r.limits?.concurrencyRemaining ?? -1,
      retry_after_ms: r.limits?.retryAfterMs ?? "0",
    },
  };
}

function consumeJson(r: ConsumeResponse): Obj {
  return {
    units_charged: r.unitsCharged,
    key_remaining: r.keyRemaining,
    key_unlimited: r.keyUnlimited,
    account_balance: r.accountBalance,
    replayed: r.replayed,
    key_id: r.keyId,
  };
}

export const JSON_PATHS: ReadonlySet<string> = new Set(["/v1/check", "/v1/consume", "/v1/consume:batch"]);

/** One JSON API call. Never rejects: every failure is an error reply. */
export async function handleJson(opts: JsonApiOptions, path: string, authorization: string | undefined, body: Buffer): Promise<HttpReply> {
  try {
    if (path === "/v1/check") {
      const req = checkRequestOf(parseBody(body));
      return json(200, checkJson(toAppCheckResponse(await opts.authorizer.check(toAppAuthInput(req), opts.clock()))));
    }
    if (!consumeAuthorized(opts.consumeDigest, authorization)) throw new SidecarError("UNAUTHENTICATED", CONSUME_UNAUTHENTICATED.replace("metadata", "header"));
    const t0 = process.hrtime.bigint();
    if (path === "/v1/consume") {
      const req = bounded(consumeRequestOf(parseBody(body), ""));
      const res = await consumeOne(opts.consume, req);
      opts.onConsumeLatency?.(Number(process.hrtime.bigint() - t0) / 1e9);
      return json(200, consumeJson(res));
    }
    // /v1/consume:batch — each item is exactly a Consume and answered in order; one item's
    // failure is its result only (as aisa.v1 ConsumeBatch).
    const items = pick(parseBody(body), "items");
    if (!Array.isArray(items) || items.length === 0 || items.length > MAX_BATCH) {
      throw invalid("items", `must hold 1..${MAX_BATCH} Consumes (got ${Array.isArray(items) ? items.length : "none"})`);
    }
    const logOnce = logOncePerKind(opts.log);
    const results = await Promise.all(
      items.map(async (item, i) => {
        try {
          const req = bounded(consumeRequestOf(object(item, `items[${i}]`), `items[${i}].`), `items[${i}].`);
          return { ok: consumeJson(await consumeOne(opts.consume, req)) };
        } catch (err) {
          const { code, details } = toGrpcStatus(err, logOnce);
          return { error: errorObject(code, details) };
        }
      }),
    );
    const sec = Number(process.hrtime.bigint() - t0) / 1e9;
    if (opts.onConsumeLatency) for (let i = 0; i < results.length; i++) opts.onConsumeLatency(sec);
    return json(200, { results });
  } catch (err) {
    return errorReply(err, opts.log);
  }
}
