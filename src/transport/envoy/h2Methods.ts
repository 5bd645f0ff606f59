// The methods of the dedicated Envoy endpoint (transport/h2unary.ts): ext_authz Check, decided
// by the same function as the grpc-js service, and grpc.health.v1 Health/Check (what Envoy's
// gRPC health checker calls) from the same HealthState as the other ports.
import { CheckRequest, CheckResponse } from "../../gen/envoy/service/auth/v3/external_auth.js";
import { HealthCheckRequest, HealthCheckResponse } from "../../gen/grpc/health/v1/health.js";
import { SidecarError } from "../../domain/errors.js";
import type { UnaryMethod } from "../h2unary.js";
import type { HealthState } from "../health.js";
import { reusedWriterSerializer } from "../serialize.js";
import { decodeTolerantly, isMalformed, malformedReason, type Malformed } from "../tolerant.js";
import type { EnvoyCheck } from "./authorizationService.js";

export const ENVOY_CHECK_PATH = "/envoy.service.auth.v3.Authorization/Check";
export const HEALTH_CHECK_PATH = "/grpc.health.v1.Health/Check";

export function createEnvoyH2Methods(opts: { decide: EnvoyCheck; health: HealthState; onLatency?: (seconds: number) => void }): Record<string, UnaryMethod<any, any>> {
  const { decide, onLatency } = opts;
  const check: UnaryMethod<CheckRequest | Malformed, CheckResponse> = {
    decode: (bytes) => decodeTolerantly(ENVOY_CHECK_PATH, CheckRequest.decode, bytes),
    handle: onLatency
      ? (req) => {
          const t0 = process.hrtime.bigint();
          const res = decide(req);
          onLatency(Number(process.hrtime.bigint() - t0) / 1e9);
          return res;
        }
      : decide,
    encode: reusedWriterSerializer(CheckResponse),
  };
  const health: UnaryMethod<HealthCheckRequest | Malformed, HealthCheckResponse> = {
    decode: (bytes) => decodeTolerantly(HEALTH_CHECK_PATH, HealthCheckRequest.decode, bytes),
    handle: (req) => {
      if (isMalformed(req)) throw new SidecarError("INVALID_ARGUMENT", malformedReason(req));
      const s = opts.health.get(req.service);
      if (s === undefined) throw new SidecarError("NOT_FOUND", `unknown service ${JSON.stringify(req.service)}`);
      return { status: s };
    },
    encode: (res) => Buffer.from(HealthCheckResponse.encode(res).finish()),
  };
  return { [ENVOY_CHECK_PATH]: check, [HEALTH_CHECK_PATH]: health };
}
