// The gRPC-over-HTTP/2 wire bits shared by the Envoy endpoint's unary calls (h2unary.ts) and
// its streaming calls (h2stream.ts): the 5-byte message prefix, the reply headers and the OK
// trailers.

/** Length-prefixed message: 1 flag byte (0: not compressed) and a 4-byte big-endian length. */
export const PREFIX = 5;
export const REPLY_HEADERS = Object.freeze({ ":status": 200, "content-type": "application/grpc", "grpc-accept-encoding": "identity" });
export const OK_TRAILERS = Object.freeze({ "grpc-status": "0" });

/** One uncompressed gRPC message frame of `body`. */
export function grpcFrame(body: Uint8Array): Buffer {
  const f = Buffer.allocUnsafe(PREFIX + body.length);
  f[0] = 0;
  f.writeUInt32BE(body.length, 1);
  f.set(body, PREFIX);
  return f;
}
