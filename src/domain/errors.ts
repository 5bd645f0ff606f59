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

/** The most characters of one quoted input an error message echoes. */
export const ECHO_MAX_CHARS = 64;
/** The longest public error message; anything longer is cut (a safety net behind boundEchoes). */
export const ERROR_MESSAGE_MAX_CHARS = 1024;

/**
 * Messages quote the caller's input (`JSON.stringify(value)`), and the input can be huge: a
 * 100 KB id echoed in full makes a grpc-message header larger than a client accepts, and the
 * client's whole HTTP/2 connection stalls. Every quoted string longer than ECHO_MAX_CHARS is cut
 * to its first ECHO_MAX_CHARS characters, an ellipsis and its length; the whole message to
 * ERROR_MESSAGE_MAX_CHARS. Pure.
 */
export function boundEchoes(text: string): string {
  let out = text.length > ECHO_MAX_CHARS + 2 ? text.replace(/"((?:[^"\\]|\\.)*)"/g, (whole, inner: string) => {
    if (inner.length <= ECHO_MAX_CHARS) return whole;
    let cut = inner.slice(0, ECHO_MAX_CHARS);
    // Never end inside an escape sequence (\", \uXXXX).
    const esc = cut.lastIndexOf("\\");
    if (esc >= 0 && esc >= cut.length - 6) cut = cut.slice(0, esc);
    return `"${cut}…" (${inner.length} characters)`;
  }) : text;
  if (out.length > ERROR_MESSAGE_MAX_CHARS) out = out.slice(0, ERROR_MESSAGE_MAX_CHARS - 1) + "…";
  return out;
}

export class SidecarError extends Error {
  readonly code: ErrorCode;
  /** Safe to return to the caller: secrets redacted, and no raw control, bidi or invisible character (any client may print it to a terminal). */
  readonly publicMessage: string;
  constructor(code: ErrorCode, publicMessage: string, options?: { cause?: unknown }) {
    const safe = boundEchoes(terminalSafe(redactSecrets(publicMessage)));
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
