// The gRPC-over-HTTP/2 wire bits shared by the Envoy endpoint's unary calls (h2unary.ts) and
// its streaming calls (h2stream.ts): the 5-byte message prefix, the reply headers, the OK
// trailers and the respond options.

/** Length-prefixed message: 1 flag byte (0: not compressed) and a 4-byte big-endian length. */
export const PREFIX = 5;
export const REPLY_HEADERS = Object.freeze({ ":status": 200, "content-type": "application/grpc", "grpc-accept-encoding": "identity" });
export const OK_TRAILERS = Object.freeze({ "grpc-status": "0" });

// No `date` header on replies (node:http2 adds one unless told not to): gRPC does not use it,
// and it was a header built, copied and encoded on every Check (bench/README.md, ninth pass).
// (sendDate is in node:http2's respond options, not in @types/node's ServerStreamResponseOptions.)
/** Headers now, trailers when the stream asks for them (`wantTrailers`). */
export const RESPOND_WITH_TRAILERS = Object.freeze({ waitForTrailers: true, sendDate: false });
/** Headers that end the stream (a trailers-only reply). */
export const RESPOND_AND_END = Object.freeze({ endStream: true, sendDate: false });

/** One uncompressed gRPC message frame of `body`. */
export function grpcFrame(body: Uint8Array): Buffer {
  const f = Buffer.allocUnsafe(PREFIX + body.length);
  f[0] = 0;
  f.writeUInt32BE(body.length, 1);
  f.set(body, PREFIX);
  return f;
}
