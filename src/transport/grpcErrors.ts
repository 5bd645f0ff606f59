// The single error boundary of every gRPC handler (after nice-grpc):
// a SidecarError becomes its own code and public message; anything else
// becomes INTERNAL with a generic message, and the full error is logged
// (redacted) — internals never leak to callers.
import { status, type ServiceError, Metadata } from "@grpc/grpc-js";
import { SidecarError, type ErrorCode } from "../domain/errors.js";

const CODES: Record<ErrorCode, status> = {
  INVALID_ARGUMENT: status.INVALID_ARGUMENT,
  NOT_FOUND: status.NOT_FOUND,
  ALREADY_EXISTS: status.ALREADY_EXISTS,
  FAILED_PRECONDITION: status.FAILED_PRECONDITION,
  PERMISSION_DENIED: status.PERMISSION_DENIED,
  UNAUTHENTICATED: status.UNAUTHENTICATED,
  UNAVAILABLE: status.UNAVAILABLE,
  RESOURCE_EXHAUSTED: status.RESOURCE_EXHAUSTED,
};

/** The gRPC status (code and public message) for an error a handler threw; non-SidecarErrors are logged. */
export function toGrpcStatus(err: unknown, log: (err: unknown) => void): { code: status; details: string } {
  if (err instanceof SidecarError) {
    if (err.code === "UNAVAILABLE") log(err);
    return { code: CODES[err.code], details: err.publicMessage };
  }
  log(err);
  return { code: status.INTERNAL, details: "internal error" };
}

export function toServiceError(err: unknown, log: (err: unknown) => void): Partial<ServiceError> {
  const { code, details } = toGrpcStatus(err, log);
  return { code, details, message: details, metadata: new Metadata() };
}

/**
 * A logger that logs each distinct error once: a batch's items failing alike (a store outage
 * fails them all) are logged once per batch, not once per item.
 */
export function logOncePerKind(log: (err: unknown) => void): (err: unknown) => void {
  const logged = new Set<string>();
  return (err: unknown) => {
    const key = err instanceof Error ? `${err.name}:${err.message}` : String(err);
    if (logged.has(key)) return;
    logged.add(key);
    log(err);
  };
}
