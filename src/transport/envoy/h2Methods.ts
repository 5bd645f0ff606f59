// The methods of the dedicated Envoy endpoint (transport/h2unary.ts): ext_authz Check, decided
// by the same function as the grpc-js service, and grpc.health.v1 Health/Check (what Envoy's
// gRPC health checker calls) from the same HealthState as the other ports. Paths and codecs
// are the generated service definitions', wrapped as on the grpc-js port (tolerant decoding,
// reused response writers), so both transports read and write the same bytes.
import type { CheckRequest, CheckResponse } from "../../gen/envoy/service/auth/v3/external_auth.js";
import { AuthorizationService, CheckResponse as EnvoyCheckResponse } from "../../gen/envoy/service/auth/v3/external_auth.js";
import { HealthService, type HealthCheckRequest, type HealthCheckResponse } from "../../gen/grpc/health/v1/health.js";
import { SidecarError } from "../../domain/errors.js";
import type { UnaryMethod } from "../h2unary.js";
import "../asciiStrings.js"; // short ASCII strings decoded without garbage (process-wide)
import type { HealthState } from "../health.js";
import { withReusedWriters } from "../serialize.js";
import { isMalformed, malformedReason, tolerant, type Malformed } from "../tolerant.js";
import type { EnvoyCheck } from "./authorizationService.js";
import { decodeCheckView } from "./checkView.js";
import { checkResponseFrameOr } from "./checkResponseWire.js";

export function createEnvoyH2Methods(opts: { decide: EnvoyCheck; health: HealthState; onLatency?: (seconds: number) => void }): Record<string, UnaryMethod<any, any>> {
  const { onLatency } = opts;
  // The usual allow comes back as its frame, already written (authorizationService.ts `framed`).
  const decide = opts.decide.framed ?? opts.decide;
  const checkDef = tolerant(withReusedWriters(AuthorizationService, { check: EnvoyCheckResponse })).check;
  const healthDef = tolerant(HealthService).check;
  const check: UnaryMethod<CheckRequest | Malformed, CheckResponse | Buffer> = {
    // Only what the decision reads (checkView.ts); bytes it cannot decode go to the generated
    // decoder, whose error becomes the in-band 400 deny as before.
    decode: (bytes) => decodeCheckView(bytes) ?? checkDef.requestDeserialize(bytes),
    handle: onLatency
      ? (req) => {
          // performance.now(), not hrtime.bigint(): two BigInts a Check were garbage.
          const t0 = performance.now();
          const res = decide(req);
          if (res instanceof Promise) return res.then((r) => (onLatency((performance.now() - t0) / 1000), r));
          onLatency((performance.now() - t0) / 1000);
          return res;
        }
      : decide,
    encode: (res) => (res instanceof Uint8Array ? res.subarray(5) : checkDef.responseSerialize(res)),
    // Written backwards into one reused buffer, prefix included (checkResponseWire.ts); a frame
    // already written is sent as it is.
    frame: (res) => (res instanceof Uint8Array ? res : checkResponseFrameOr(res, checkDef.responseSerialize)),
  };
  const health: UnaryMethod<HealthCheckRequest | Malformed, HealthCheckResponse> = {
    decode: healthDef.requestDeserialize,
    handle: (req) => {
      if (isMalformed(req)) throw new SidecarError("INVALID_ARGUMENT", malformedReason(req));
      return opts.health.check(req.service);
    },
    encode: healthDef.responseSerialize,
  };
  return { [checkDef.path]: check, [healthDef.path]: health };
}
