// grpc.health.v1 for both ports. Status follows the store: NOT_SERVING while
// the store cannot write (Check then fails closed), SERVING again once it can.
import type { ServerWritableStream } from "@grpc/grpc-js";
import { SidecarError } from "../domain/errors.js";
import { toServiceError } from "./grpcErrors.js";
import { HealthCheckResponse_ServingStatus as S, type HealthCheckRequest, type HealthCheckResponse, type HealthServer } from "../gen/grpc/health/v1/health.js";

export class HealthState {
  readonly #statuses = new Map<string, S>();
  readonly #watchers = new Set<{ service: string; call: ServerWritableStream<HealthCheckRequest, HealthCheckResponse> }>();

  set(service: string, serving: boolean): void {
    const s = serving ? S.SERVING : S.NOT_SERVING;
    if (this.#statuses.get(service) === s) return;
    this.#statuses.set(service, s);
    for (const w of this.#watchers) if (w.service === service) w.call.write({ status: s });
  }

  get(service: string): S | undefined {
    return this.#statuses.get(service);
  }

  /** Health/Check's answer for `service` (every port's); NOT_FOUND for one never set. */
  check(service: string): HealthCheckResponse {
    const s = this.#statuses.get(service);
    if (s === undefined) throw new SidecarError("NOT_FOUND", `unknown service ${JSON.stringify(service)}`);
    return { status: s };
  }

  server(): HealthServer {
    return {
      check: (call, cb) => {
        try {
          cb(null, this.check(call.request.service));
        } catch (err) {
          cb(toServiceError(err, () => {}));
        }
      },
      list: (_call, cb) => {
        const statuses: Record<string, HealthCheckResponse> = {};
        for (const [k, v] of this.#statuses) statuses[k] = { status: v };
        cb(null, { statuses });
      },
      watch: (call) => {
        const w = { service: call.request.service, call };
        this.#watchers.add(w);
        call.write({ status: this.#statuses.get(w.service) ?? S.SERVICE_UNKNOWN });
        const done = () => this.#watchers.delete(w);
        call.on("cancelled", done);
        call.on("close", done);
        call.on("error", done);
      },
    };
  }

  endWatches(): void {
    for (const w of this.#watchers) w.call.end();
    this.#watchers.clear();
  }
}
