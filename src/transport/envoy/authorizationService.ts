// envoy.service.auth.v3.Authorization/Check. A deny is an in-band
// CheckResponse (status != 0 + denied_response); a gRPC error is returned ONLY
// when we cannot decide (store unavailable), so Envoy takes its failure path
// (status_on_error, fail closed unless failure_mode_allow) — never an allow.
import type { sendUnaryData, ServerUnaryCall } from "@grpc/grpc-js";
import type { AuthorizationServer, CheckRequest, CheckResponse } from "../../gen/envoy/service/auth/v3/external_auth.js";
import type { Authorizer } from "../../service/authorizer.js";
import { toServiceError } from "../grpcErrors.js";
import { toAuthInput } from "./toAuthInput.js";
import { allowResponse, denyResponse } from "./toCheckResponse.js";

export interface EnvoyTransportOptions {
  authorizer: Authorizer;
  xffTrustedHops: number;
  clock: () => number;
  log: (err: unknown) => void;
  onLatency?: (seconds: number) => void;
}

export function createEnvoyAuthorizationServer(opts: EnvoyTransportOptions): AuthorizationServer {
  const hops = { xffTrustedHops: opts.xffTrustedHops };
  return {
    check(call: ServerUnaryCall<CheckRequest, CheckResponse>, callback: sendUnaryData<CheckResponse>): void {
      const t0 = opts.onLatency ? process.hrtime.bigint() : 0n;
      let res: CheckResponse;
      try {
        const { input, credentialHeaders, credentialQueryParams } = toAuthInput(call.request, hops);
        const out = opts.authorizer.check(input, opts.clock());
        res = out.allowed
          ? allowResponse({ keyId: out.keyId, accountId: out.accountId, group: out.group, reservationId: out.reservationId, credentialHeaders, credentialQueryParams })
          : denyResponse(out.reason as Exclude<typeof out.reason, "ALLOWED">, { retryAfterMs: out.retryAfterMs, keyId: out.keyId, accountId: out.accountId, group: out.group });
      } catch (err) {
        callback(toServiceError(err, opts.log));
        return;
      }
      callback(null, res);
      if (opts.onLatency) opts.onLatency(Number(process.hrtime.bigint() - t0) / 1e9);
    },
  };
}
