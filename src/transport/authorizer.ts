// aisa.v1.Authorizer for app services: Check (same decision as Envoy's) and
// Consume. Denies are data (allowed=false + reason); a gRPC error means "could
// not decide" (UNAVAILABLE) or bad input (INVALID_ARGUMENT).
import { createHash, timingSafeEqual } from "node:crypto";
import { status, type Metadata, type sendUnaryData, type ServerUnaryCall } from "@grpc/grpc-js";
import {
  AuthorizerService,
  CheckResponse as CheckResponseCodec,
  ConsumeBatchResponse as ConsumeBatchResponseCodec,
  ConsumeResponse as ConsumeResponseCodec,
  Reason as ProtoReason,
  type AuthorizerServer,
  type CheckRequest,
  type CheckResponse,
  type ConsumeBatchRequest,
  type ConsumeBatchResponse,
  type ConsumeBatchResult,
  type ConsumeRequest,
  type ConsumeResponse,
} from "../gen/aisa/v1/authorizer.js";
import { invalid } from "../domain/errors.js";
import { parseClientIp } from "../domain/ip.js";
import { REASON_TABLE, type Reason } from "../policy/reasons.js";
import type { AuthInput } from "../policy/types.js";
import type { Authorizer, CheckOutcome } from "../service/authorizer.js";
import type { ConsumeOutcome, ConsumeRequestInput, ConsumeService } from "../service/consume.js";
import { logOncePerKind, toServiceError } from "./grpcErrors.js";
import { withReusedWriters } from "./serialize.js";
import { isMalformed, malformedReason, tolerant, type Malformed } from "./tolerant.js";
import { SidecarError } from "../domain/errors.js";

export const REASON_TO_PROTO: Record<Reason, ProtoReason> = {
  ALLOWED: ProtoReason.REASON_ALLOWED,
  KEY_MISSING: ProtoReason.REASON_KEY_MISSING,
  KEY_INVALID: ProtoReason.REASON_KEY_INVALID,
  KEY_DISABLED: ProtoReason.REASON_KEY_DISABLED,
  KEY_EXPIRED: ProtoReason.REASON_KEY_EXPIRED,
  IP_NOT_ALLOWED: ProtoReason.REASON_IP_NOT_ALLOWED,
  MODEL_REQUIRED: ProtoReason.REASON_MODEL_REQUIRED,
  MODEL_NOT_ALLOWED: ProtoReason.REASON_MODEL_NOT_ALLOWED,
  MODEL_NOT_PRICED: ProtoReason.REASON_MODEL_NOT_PRICED,
  MODEL_MISMATCH: ProtoReason.REASON_MODEL_MISMATCH,
  ACCOUNT_BALANCE_EXHAUSTED: ProtoReason.REASON_ACCOUNT_BALANCE_EXHAUSTED,
  KEY_QUOTA_EXHAUSTED: ProtoReason.REASON_KEY_QUOTA_EXHAUSTED,
  GROUP_BUDGET_EXHAUSTED: ProtoReason.REASON_GROUP_BUDGET_EXHAUSTED,
  RATE_LIMITED: ProtoReason.REASON_RATE_LIMITED,
  MALFORMED_REQUEST: ProtoReason.REASON_MALFORMED_REQUEST,
};

/** A request that did not decode is answered INVALID_ARGUMENT (naming why); true when it was. */
function answeredMalformed(req: unknown, callback: sendUnaryData<never>, log: (err: unknown) => void): req is Malformed {
  if (!isMalformed(req)) return false;
  callback(toServiceError(new SidecarError("INVALID_ARGUMENT", malformedReason(req)), log));
  return true;
}

function nonNegative(v: string, field: string): number | null {
  if (!v || v === "0") return null;
  const n = Number(v);
  if (!Number.isSafeInteger(n) || n < 0) throw invalid(field, `must be a non-negative integer (got ${v})`);
  return n;
}

export function toAppAuthInput(req: CheckRequest): AuthInput {
  if (isMalformed(req)) throw new SidecarError("INVALID_ARGUMENT", malformedReason(req));
  if (req.model.length > 256) throw invalid("model", "must be at most 256 characters");
  return {
    credential: req.apiKey ? req.apiKey.trim() || null : null,
    clientIp: req.clientIp ? parseClientIp(req.clientIp) : null,
    model: req.model ? req.model : null,
    modelDeclared: false,
    modelConflict: false,
    maxTokens: nonNegative(req.maxTokens, "max_tokens"),
    estimatedUnits: nonNegative(req.estimatedUnits, "estimated_units"),
    malformed: null,
  };
}

export interface AuthorizerTransportOptions {
  authorizer: Authorizer;
  clock: () => number;
  log: (err: unknown) => void;
  consume: ConsumeService;
  onConsumeLatency?: (seconds: number) => void;
  /** When set (AISA_CONSUME_TOKEN), Consume and ConsumeBatch require `authorization: Bearer <it>`. */
  consumeToken?: string;
}

const sha256 = (s: string) => createHash("sha256").update(s, "utf8").digest();

/**
 * Whether a Consume may charge: always when no consume token is configured (`expected` null),
 * else only with metadata `authorization: Bearer <token>`, compared by SHA-256 digest (constant
 * time with respect to the secret). Pure.
 */
export function consumeAuthorized(expected: Buffer | null, authorization: unknown): boolean {
  if (expected === null) return true;
  if (typeof authorization !== "string") return false;
  const m = /^\s*bearer\s+(\S+)\s*$/i.exec(authorization);
  return m !== null && timingSafeEqual(sha256(m[1]!), expected);
}

/** The paths a consume token guards. */
export const CONSUME_PATHS: ReadonlySet<string> = new Set(["/aisa.v1.Authorizer/Consume", "/aisa.v1.Authorizer/ConsumeBatch"]);

/** SHA-256 of a configured consume token, as consumeAuthorized compares it; null when none is configured. */
export function consumeTokenDigest(token: string | undefined): Buffer | null {
  return token ? sha256(token) : null;
}

export const CONSUME_UNAUTHENTICATED = "Consume requires metadata 'authorization: Bearer <consume token>' (this sidecar sets AISA_CONSUME_TOKEN)";

/**
 * The service definition the data port serves aisa.v1.Authorizer with (main.ts; the benches
 * measure this one): tolerant() turns bytes that are not the request message into MALFORMED for
 * the handlers (INVALID_ARGUMENT, not INTERNAL), with every string bounded (bounds.ts), and the
 * responses are encoded through one kept writer per type (serialize.ts).
 */
export function authorizerServiceDefinition() {
  return tolerant(withReusedWriters(AuthorizerService, { check: CheckResponseCodec, consume: ConsumeResponseCodec, consumeBatch: ConsumeBatchResponseCodec }), { boundStrings: true });
}

export function createAuthorizerServer(opts: AuthorizerTransportOptions): AuthorizerServer {
  const expected = consumeTokenDigest(opts.consumeToken);
  /** Answers UNAUTHENTICATED and returns false when the call may not charge. */
  const mayConsume = (metadata: Metadata, callback: sendUnaryData<never>): boolean => {
    if (consumeAuthorized(expected, metadata.get("authorization")[0])) return true;
    callback(toServiceError(new SidecarError("UNAUTHENTICATED", CONSUME_UNAUTHENTICATED), opts.log));
    return false;
  };
  return {
    check(call: ServerUnaryCall<CheckRequest, CheckResponse>, callback: sendUnaryData<CheckResponse>): void {
      try {
        const out = opts.authorizer.check(toAppAuthInput(call.request), opts.clock());
        if (out instanceof Promise)
          out.then(
            (o) => callback(null, toAppCheckResponse(o)),
            (err: unknown) => callback(toServiceError(err, opts.log)),
          );
        else callback(null, toAppCheckResponse(out));
      } catch (err) {
        callback(toServiceError(err, opts.log));
      }
    },
    consume(call: ServerUnaryCall<ConsumeRequest, ConsumeResponse>, callback: sendUnaryData<ConsumeResponse>): void {
      const t0 = process.hrtime.bigint();
      if (!mayConsume(call.metadata, callback)) return;
      const r = call.request;
      if (answeredMalformed(r, callback, opts.log)) return;
      consumeOne(opts.consume, r).then(
        (res) => {
          callback(null, res);
          opts.onConsumeLatency?.(Number(process.hrtime.bigint() - t0) / 1e9);
        },
        (err) => callback(toServiceError(err, opts.log)),
      );
    },
    consumeBatch(call: ServerUnaryCall<ConsumeBatchRequest, ConsumeBatchResponse>, callback: sendUnaryData<ConsumeBatchResponse>): void {
      const t0 = process.hrtime.bigint();
      if (!mayConsume(call.metadata, callback)) return;
      const r = call.request;
      if (answeredMalformed(r, callback, opts.log)) return;
      const items = r.items;
      if (items.length === 0 || items.length > MAX_BATCH) {
        callback(toServiceError(invalid("items", `must hold 1..${MAX_BATCH} Consumes (got ${items.length})`), opts.log));
        return;
      }
      // Every item is submitted at once, so they share the store's group commit (one fsync
      // for the batch); each settles on its own, and one failure fails only its item. Items
      // failing alike (a store outage fails them all) are logged once per batch, not per item.
      // Each item's answer goes straight into its slot (one promise and two closures per item,
      // not consumeOne's chain, a second .then and Promise.all's per-item resolvers).
      const logOnce = logOncePerKind(opts.log);
      const n = items.length;
      const results = new Array<ConsumeBatchResult>(n);
      let left = n;
      const settled = () => {
        if (--left > 0) return;
        callback(null, { results });
        // Each item's handling time is the batch's: one observation per Consume.
        const sec = Number(process.hrtime.bigint() - t0) / 1e9;
        if (opts.onConsumeLatency) for (let i = 0; i < n; i++) opts.onConsumeLatency(sec);
      };
      for (let i = 0; i < n; i++) {
        let outcome: Promise<ConsumeOutcome>;
        try {
          outcome = opts.consume.consume(toConsumeInput(items[i]!));
        } catch (err) {
          results[i] = batchError(err, logOnce);
          settled();
          continue;
        }
        outcome.then(
          (o) => {
            results[i] = { result: { $case: "ok", value: toConsumeResponse(o) } };
            settled();
          },
          (err: unknown) => {
            results[i] = batchError(err, logOnce);
            settled();
          },
        );
      }
    },
  };
}

/** A failed ConsumeBatch item: what Consume would have failed with. */
function batchError(err: unknown, log: (err: unknown) => void): ConsumeBatchResult {
  const e = toServiceError(err, log);
  return { result: { $case: "error", value: { code: e.code ?? status.INTERNAL, message: e.details ?? "internal error", details: [] } } };
}

/** aisa.v1 CheckResponse for a decision (the gRPC method's and the HTTP JSON API's). */
export function toAppCheckResponse(out: CheckOutcome): CheckResponse {
  const info = REASON_TABLE[out.reason];
  return {
    allowed: out.allowed,
    reason: REASON_TO_PROTO[out.reason],
    message: info.message,
    httpStatus: info.httpStatus,
    keyId: out.keyId,
    accountId: out.accountId,
    group: out.group,
    keyRemaining: String(out.keyRemaining),
    keyUnlimited: out.keyUnlimited,
    accountBalance: String(out.accountBalance),
    reservationId: out.reservationId,
    reservedUnits: String(out.reservedUnits),
    limits: {
      rpmRemaining: out.limits.rpmRemaining,
      tpmRemaining: out.limits.tpmRemaining,
      concurrencyRemaining: out.limits.concurrencyRemaining,
      retryAfterMs: String(out.retryAfterMs),
    },
  };
}

/** The most Consumes one ConsumeBatch may carry. */
export const MAX_BATCH = 1000;

/** ConsumeService's input for an aisa.v1 ConsumeRequest. */
function toConsumeInput(r: ConsumeRequest): ConsumeRequestInput {
  const t = r.target;
  return {
    requestId: r.requestId,
    target:
      t?.$case === "reservationId"
        ? { reservationId: t.value }
        : t?.$case === "keyId"
          ? { keyId: t.value }
          : t?.$case === "apiKey"
            ? { apiKey: t.value }
            : undefined,
    model: r.model,
    inputTokens: r.inputTokens,
    outputTokens: r.outputTokens,
    units: r.units,
    cacheReadTokens: r.cacheReadTokens,
    cacheWriteTokens: r.cacheWriteTokens,
    reasoningTokens: r.reasoningTokens,
  };
}

/** The aisa.v1 ConsumeResponse of an outcome. */
function toConsumeResponse({ record, replayed }: ConsumeOutcome): ConsumeResponse {
  return {
    unitsCharged: String(record.units),
    keyRemaining: String(record.keyRemaining),
    keyUnlimited: record.keyUnlimited,
    accountBalance: String(record.accountBalance),
    replayed,
    keyId: record.keyId,
  };
}

/** One Consume, as Consume (and the HTTP JSON API) run it; ConsumeBatch runs each item the same way. */
export function consumeOne(service: ConsumeService, r: ConsumeRequest): Promise<ConsumeResponse> {
  return service.consume(toConsumeInput(r)).then(toConsumeResponse);
}
