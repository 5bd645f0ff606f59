// Bytes that do not decode as the request message must not become grpc-js's
// generic INTERNAL "Error deserializing request": they are the caller's fault.
// tolerant() wraps a service definition so undecodable requests reach the
// handler as MALFORMED, and each adapter answers the way its protocol expects
// (Envoy: an in-band 400 deny; aisa.v1 and admin: INVALID_ARGUMENT).
import type { ServiceDefinition } from "@grpc/grpc-js";
import { oversizeField } from "./bounds.js";

const MALFORMED_TAG = Symbol("aisa.malformed");

export interface Malformed {
  readonly [MALFORMED_TAG]: string;
}

export function isMalformed(req: unknown): req is Malformed {
  return typeof req === "object" && req !== null && MALFORMED_TAG in req;
}

export function malformedReason(req: Malformed): string {
  return req[MALFORMED_TAG];
}

/**
 * `boundStrings`: a request holding a string longer than its bound (transport/bounds.ts) is
 * MALFORMED too, naming the field, before any handler sees it. Not for Envoy's CheckRequest,
 * whose headers and body are the proxied request's and are never echoed.
 */
export function tolerant<D extends ServiceDefinition>(def: D, opts: { boundStrings?: boolean } = {}): D {
  const out: Record<string, unknown> = {};
  for (const [name, method] of Object.entries(def)) {
    const decode = opts.boundStrings ? boundedDecoder(method.requestDeserialize) : method.requestDeserialize;
    out[name] = {
      ...method,
      requestDeserialize: (bytes: Buffer) => decodeTolerantly(method.path, decode, bytes),
    };
  }
  return out as D;
}

class OversizeField extends Error {}

function boundedDecoder<T>(decode: (bytes: Buffer) => T): (bytes: Buffer) => T {
  return (bytes) => {
    const msg = decode(bytes);
    const bad = oversizeField(msg);
    if (bad) throw new OversizeField(bad);
    return msg;
  };
}

/** `decode`, or a Malformed naming `path` when the bytes are not its message (as tolerant() does). */
export function decodeTolerantly<T>(path: string, decode: (bytes: Buffer) => T, bytes: Buffer): T | Malformed {
  try {
    return decode(bytes);
  } catch (err) {
    if (err instanceof OversizeField) return Object.freeze({ [MALFORMED_TAG]: err.message });
    return Object.freeze({ [MALFORMED_TAG]: `request does not decode as ${path}'s message: ${(err as Error).message}` });
  }
}
