// Domain errors: a failure of an operation, as opposed to a verdict (which is data).
// Each carries a stable code that the transport edge maps to a gRPC status.

export type ErrorCode =
  | "INVALID_ARGUMENT"
  | "NOT_FOUND"
  | "ALREADY_EXISTS"
  | "FAILED_PRECONDITION"
  | "PERMISSION_DENIED"
  | "UNAUTHENTICATED"
  | "UNAVAILABLE"
  | "RESOURCE_EXHAUSTED";

import { redactSecrets, terminalSafe } from "./text.js";

/**
 * Messages often quote the caller's input; a caller may paste a secret into
 * the wrong field. Anything shaped like an API key or admin token — wherever it
 * appears in the text (the one secret shape is in text.ts) — is cut to its
 * prefix, so no error message ever carries a secret.
 */
export { redactSecrets };

export class SidecarError extends Error {
  readonly code: ErrorCode;
  /** Safe to return to the caller: secrets redacted, and no raw control, bidi or invisible character (any client may print it to a terminal). */
  readonly publicMessage: string;
  constructor(code: ErrorCode, publicMessage: string, options?: { cause?: unknown }) {
    const safe = terminalSafe(redactSecrets(publicMessage));
    super(safe, options);
    this.name = "SidecarError";
    this.code = code;
    this.publicMessage = safe;
  }
}

/** Bad input; the message names the field, e.g. `spec.name: must not be empty`. */
export function invalid(field: string, problem: string): SidecarError {
  return new SidecarError("INVALID_ARGUMENT", `${field}: ${problem}`);
}

export function notFound(what: string, id: string): SidecarError {
  return new SidecarError("NOT_FOUND", `${what} ${JSON.stringify(id)} not found`);
}

export function alreadyExists(what: string, id: string): SidecarError {
  return new SidecarError("ALREADY_EXISTS", `${what} ${JSON.stringify(id)} already exists`);
}

export function failedPrecondition(message: string): SidecarError {
  return new SidecarError("FAILED_PRECONDITION", message);
}

export function permissionDenied(message: string): SidecarError {
  return new SidecarError("PERMISSION_DENIED", message);
}

/** The store cannot serve: Check must fail closed with a gRPC UNAVAILABLE error. */
export class StoreUnavailableError extends SidecarError {
  constructor(cause?: unknown) {
    super("UNAVAILABLE", "store unavailable", { cause });
    this.name = "StoreUnavailableError";
  }
}
