// Response serialisation through a reused protobuf writer.
//
// The generated responseSerialize, `Buffer.from(X.encode(v).finish())`, starts every response
// from an empty BinaryWriter: it allocates a 128-byte buffer, doubles it (allocate + copy)
// until the message fits, slices the result out and copies it once more into a Buffer. For
// the Envoy allow response (364 bytes) that is ~6.5 µs and four ArrayBuffers per Check, and
// ArrayBuffer allocations are what drive the GC on the data plane. A writer kept across
// responses has already grown: encode into it, `finish()` (one slice; it also resets the
// writer), and wrap the slice as a Buffer without copying: ~2.5 µs and one ArrayBuffer, the
// same bytes (test/unit/serialize.test.ts). grpc-js serialises synchronously on the one JS
// thread, so one writer per message type is never used by two responses at once.
import { BinaryWriter } from "@bufbuild/protobuf/wire";
import type { ServiceDefinition } from "@grpc/grpc-js";

/** A writer that grew past this (one huge response) is dropped rather than kept. */
const KEEP_MAX_BYTES = 1 << 20;

export interface Encodes<T> {
  encode(message: T, writer?: BinaryWriter): BinaryWriter;
}

/** `encode` to a Buffer through one reused writer; the bytes are exactly `Buffer.from(type.encode(m).finish())`. */
export function reusedWriterSerializer<T>(type: Encodes<T>): (message: T) => Buffer {
  let writer = new BinaryWriter();
  return (message: T): Buffer => {
    let bytes: Uint8Array;
    try {
      bytes = type.encode(message, writer).finish();
    } catch (err) {
      writer = new BinaryWriter(); // a half-written message must not prefix the next one
      throw err;
    }
    if (bytes.byteLength > KEEP_MAX_BYTES) writer = new BinaryWriter();
    return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  };
}

/** The service definition with the named methods' responses serialised by reusedWriterSerializer. */
export function withReusedWriters<D extends ServiceDefinition>(def: D, responses: { [K in keyof D]?: Encodes<any> }): D {
  const out: Record<string, unknown> = { ...def };
  for (const [name, type] of Object.entries(responses) as [string, Encodes<unknown> | undefined][]) {
    const method = def[name];
    if (!method || !type) throw new Error(`withReusedWriters: no method ${name}`);
    out[name] = { ...method, responseSerialize: reusedWriterSerializer(type) };
  }
  return out as D;
}

/**
 * The service definition with the named methods' responses serialised once per response object:
 * a message written to many streams (WatchUsage's shared second) is encoded once, not per stream.
 */
export function withSharedSerialization<D extends ServiceDefinition>(def: D, names: (keyof D & string)[]): D {
  const out: Record<string, unknown> = { ...def };
  for (const name of names) {
    const method = def[name];
    if (!method) throw new Error(`withSharedSerialization: no method ${name}`);
    const encode = method.responseSerialize;
    const cache = new WeakMap<object, Buffer>();
    out[name] = {
      ...method,
      responseSerialize: (message: unknown): Buffer => {
        if (typeof message !== "object" || message === null) return encode(message);
        let bytes = cache.get(message);
        if (!bytes) cache.set(message, (bytes = encode(message)));
        return bytes;
      },
    };
  }
  return out as D;
}
