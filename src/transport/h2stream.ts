// Bidirectional-streaming gRPC calls on the node:http2 server of the Envoy endpoint
// (transport/h2unary.ts), for ext_proc's Process: one call per proxied HTTP request, a handful of
// small messages each, every one answered at once. grpc-js's per-message machinery (interceptors,
// listeners, stream wrappers) costs more than the work each message needs; here a message is
// read from the DATA chunks, handed to the method, and its answer written as one frame.
//
// Protocol (https://github.com/grpc/grpc/blob/master/doc/PROTOCOL-HTTP2.md), as for unary calls:
// the response headers go out at once; each length-prefixed message is decoded as soon as it is
// complete (a message may span DATA chunks, a chunk may hold several); answers are written in
// the order of the messages, an answer that is a promise holding back the ones after it. The
// client's half-close ends the call: once the method's end() is done, trailers grpc-status 0. A
// message over the size limit is RESOURCE_EXHAUSTED, a compressed one UNIMPLEMENTED (trailers,
// then the stream is reset). A reset or broken stream still calls end() (the method settles what
// it must) but writes nothing more.
import http2 from "node:http2";
import { status } from "@grpc/grpc-js";
import { grpcFrame, OK_TRAILERS, PREFIX, REPLY_HEADERS, RESPOND_WITH_TRAILERS } from "./grpcWire.js";

export interface StreamCall<Req> {
  /** One message: its answer (bytes), a promise of it, or null (no answer). */
  message(req: Req): Buffer | Promise<Buffer | null> | null;
  /** The call is over (half-close, reset or error). */
  end(): Promise<void>;
}

export interface StreamMethod<Req> {
  decode(bytes: Buffer): Req;
  open(): StreamCall<Req>;
  /** From the request headers alone, before any message is read: null to serve, else the refusal (UNAUTHENTICATED). */
  admit?(headers: http2.IncomingHttpHeaders): string | null;
}


export function serveStream<Req>(
  stream: http2.ServerHttp2Stream,
  method: StreamMethod<Req>,
  opts: { maxMessageBytes: number; encodeMessage: (m: string) => string; onError: (err: unknown) => void },
): void {
  const call = method.open();
  let failed = false;
  let ended = false;
  let tail: Promise<void> | undefined;
  let buf: Buffer | undefined;

  /** What the trailers will say: OK, or the error fail() set. */
  let trailers: http2.OutgoingHttpHeaders = OK_TRAILERS;
  stream.respond(REPLY_HEADERS, RESPOND_WITH_TRAILERS);
  stream.on("wantTrailers", () => {
    stream.sendTrailers(trailers);
    // After an error the client may still be sending: ask it to stop, without error (as h2unary).
    if (failed && !stream.readableEnded) setImmediate(() => stream.destroyed || stream.close(http2.constants.NGHTTP2_NO_ERROR));
  });

  const writable = () => !stream.destroyed && !stream.closed && stream.writable;
  const write = (b: Buffer | null) => {
    if (b !== null && !failed && writable()) stream.write(grpcFrame(b));
  };
  const fail = (code: number, details: string) => {
    if (failed) return;
    if (!writable()) {
      failed = true;
      return;
    }
    trailers = { "grpc-status": String(code), "grpc-message": opts.encodeMessage(details) };
    failed = true;
    stream.end(); // → wantTrailers → the error trailers
  };
  const handle = (bytes: Buffer): Promise<void> | undefined => {
    let r: Buffer | Promise<Buffer | null> | null;
    try {
      r = call.message(method.decode(bytes));
    } catch (err) {
      fail(status.INVALID_ARGUMENT, `request does not decode: ${(err as Error).message}`);
      return undefined;
    }
    if (r instanceof Promise) return r.then(write, opts.onError);
    write(r);
    return undefined;
  };
  const deliver = (bytes: Buffer) => {
    if (tail) tail = tail.then(() => handle(bytes));
    else tail = handle(bytes);
  };

  stream.on("data", (chunk: Buffer) => {
    if (failed) return;
    buf = buf && buf.length > 0 ? Buffer.concat([buf, chunk]) : chunk;
    while (buf.length >= PREFIX) {
      const len = buf.readUInt32BE(1);
      if (len > opts.maxMessageBytes) return fail(status.RESOURCE_EXHAUSTED, `Received message larger than max (${len} vs. ${opts.maxMessageBytes})`);
      if (buf[0] !== 0) return fail(status.UNIMPLEMENTED, "Received a compressed message (this endpoint accepts identity encoding only)");
      if (buf.length < PREFIX + len) break;
      const msg = buf.subarray(PREFIX, PREFIX + len);
      buf = buf.subarray(PREFIX + len);
      deliver(msg);
    }
  });

  const finish = (clean: boolean) => {
    if (ended) return;
    ended = true;
    const last = (tail ?? Promise.resolve()).then(() => call.end());
    last.then(
      () => {
        if (clean && !failed && writable()) {
          if (buf && buf.length > 0) fail(status.INTERNAL, "Request message truncated");
          else stream.end();
        }
      },
      (err) => {
        opts.onError(err);
        if (clean) fail(status.INTERNAL, "internal error");
      },
    );
  };
  stream.once("end", () => finish(true));
  stream.once("close", () => finish(false));
  stream.on("error", opts.onError);
}
