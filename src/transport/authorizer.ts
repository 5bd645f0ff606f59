// aisa.v1.Authorizer for app services: Check (same decision as Envoy's) and
// Consume. Denies are data (allowed=false + reason); a gRPC error means "could
// not decide" (UNAVAILABLE) or bad input (INVALID_ARGUMENT).
import type { sendUnaryData, ServerUnaryCall } from "@grpc/grpc-js";
import { Reason as ProtoReason, type AuthorizerServer, type CheckRequest, type CheckResponse, type ConsumeRequest, type ConsumeResponse } from "../gen/aisa/v1/authorizer.js";
import { invalid } from "../domain/errors.js";
import { parseClientIp } from "../domain/ip.js";
import { REASON_TABLE, type Reason } from "../policy/reasons.js";
import type { AuthInput } from "../policy/types.js";
import type { Authorizer } from "../service/authorizer.js";
import type { ConsumeService } from "../service/consume.js";
import { toServiceError } from "./grpcErrors.js";
import { isMalformed, malformedReason } from "./tolerant.js";
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
  ACCOUNT_BALANCE_EXHAUSTED: ProtoReason.REASON_ACCOUNT_BALANCE_EXHAUSTED,
  KEY_QUOTA_EXHAUSTED: ProtoReason.REASON_KEY_QUOTA_EXHAUSTED,
  RATE_LIMITED: ProtoReason.REASON_RATE_LIMITED,
  MALFORMED_REQUEST: ProtoReason.REASON_MALFORMED_REQUEST,
};

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
}

export function createAuthorizerServer(opts: AuthorizerTransportOptions): AuthorizerServer {
  return {
    check(call: ServerUnaryCall<CheckRequest, CheckResponse>, callback: sendUnaryData<CheckResponse>): void {
      try {
        const out = opts.authorizer.check(toAppAuthInput(call.request), opts.clock());
        const info = REASON_TABLE[out.reason];
        callback(null, {
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
        });
      } catch (err) {
        callback(toServiceError(err, opts.log));
      }
    },
    consume(call: ServerUnaryCall<ConsumeRequest, ConsumeResponse>, callback: sendUnaryData<ConsumeResponse>): void {
      const t0 = process.hrtime.bigint();
      const r = call.request;
      if (isMalformed(r)) {
        callback(toServiceError(new SidecarError("INVALID_ARGUMENT", malformedReason(r)), opts.log));
        return;
      }
      const t = r.target;
      opts.consume
        .consume({
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
        })
        .then(
          ({ record, replayed }) => {
            callback(null, {
              unitsCharged: String(record.units),
              keyRemaining: String(record.keyRemaining),
              keyUnlimited: record.keyUnlimited,
              accountBalance: String(record.accountBalance),
              replayed,
              keyId: record.keyId,
            });
            opts.onConsumeLatency?.(Number(process.hrtime.bigint() - t0) / 1e9);
          },
          (err) => callback(toServiceError(err, opts.log)),
        );
    },
  };
}
