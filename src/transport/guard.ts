// What a grpc-js server holds for a request before its handler runs, bounded.
//
// grpc-js buffers a request message until it is complete, authenticates nothing, and waits for a
// slow sender for as long as the client's own deadline says (forever without one). Measured before
// this guard: 40 streams each sending 20 MB of a declared 32 MB message took the data port from
// 84 to 888 MB RSS; 100 unauthenticated 3 MB admin calls added 300 MB. The guard is a server
// interceptor (grpc-js ≥ 1.10 `interceptors`) that, per call:
// - refuses from the metadata alone, before a byte of the body is read (admin: no valid token;
//   data: no consume token where one is required) — grpc-js reads the body only once the handler
//   has the metadata, so a refused call's body is never buffered;
// - counts the bytes received until the request message is complete: over the method's own bound
//   (a Consume is a few KB, not the port's 4 MiB), or over the server's budget for incomplete
//   requests across all calls, the call is refused RESOURCE_EXHAUSTED at once;
// - gives the request receiveTimeoutMs to arrive in full (DEADLINE_EXCEEDED otherwise).
// A refused call is answered, then its HTTP/2 stream is reset (NO_ERROR) so the client stops
// sending and what was buffered is released; so is any call that ends while its client is still
// sending (grpc-js's own refusals, such as a declared length over the port's limit). The byte count and the reset use the call's
// HTTP/2 stream, which grpc-js keeps on its base call (`stream`): not public API, so the tests
// (test/integration/transport-limits.test.ts) check that it is there.
import http2 from "node:http2";
import { Metadata, ServerInterceptingCall, status, type ServerInterceptor } from "@grpc/grpc-js";

export interface Refusal {
  code: status;
  details: string;
  /** A short stable label (metrics, logs). */
  reason: string;
}

export interface GuardOptions {
  /** Largest request message of a method (full path), in bytes. */
  methodMaxBytes(path: string): number;
  /** The most bytes of incomplete requests held across all calls of the server. */
  maxBufferedBytes: number;
  /** A request must arrive in full within this. */
  receiveTimeoutMs: number;
  /** A refusal decided from the method and the metadata alone (authentication), or null. */
  admit?: (path: string, metadata: Metadata) => Refusal | null;
  onRefused?: (refusal: Refusal) => void;
}

/**
 * Whether a call that has received `callBytes` of its request may go on, given its method's bound
 * and the bytes of incomplete requests the server holds (this call's included): null, or the
 * refusal. Pure.
 */
export function receiveVerdict(callBytes: number, methodMax: number, heldTotal: number, maxHeld: number): Refusal | null {
  // 5 bytes of gRPC framing precede the message.
  if (callBytes > methodMax + 5) {
    return { code: status.RESOURCE_EXHAUSTED, reason: "message_too_large", details: `Received message larger than max (more than ${methodMax} bytes for this method)` };
  }
  if (heldTotal > maxHeld) {
    return { code: status.RESOURCE_EXHAUSTED, reason: "buffer_budget", details: `the server holds ${heldTotal} bytes of incomplete requests (at most ${maxHeld}): try again later` };
  }
  return null;
}

interface H2StreamLike {
  readableEnded: boolean;
  on(event: "data", listener: (chunk: Buffer) => void): unknown;
  off(event: "data", listener: (chunk: Buffer) => void): unknown;
  close(code?: number): void;
  destroyed: boolean;
  closed: boolean;
}

function streamOf(call: unknown): H2StreamLike | undefined {
  const s = (call as { stream?: unknown }).stream;
  if (typeof s !== "object" || s === null) return undefined;
  const h = s as Partial<H2StreamLike> & { rstCode?: unknown; session?: unknown };
  return typeof h.on === "function" && typeof h.off === "function" && typeof h.close === "function" && "session" in h ? (h as H2StreamLike) : undefined;
}

export interface Guard {
  interceptor: ServerInterceptor;
  /** Bytes of incomplete requests held now (tests, metrics). */
  readonly heldBytes: number;
}

export function createGuard(opts: GuardOptions): Guard {
  let held = 0;
  const interceptor: ServerInterceptor = (method, call) => {
    const stream = streamOf(call);
    let mine = 0; // bytes this call holds in `held`
    let counting = false;
    let timer: NodeJS.Timeout | undefined;
    let over = false;
    const onData = (chunk: Buffer) => {
      if (over) return;
      mine += chunk.length;
      held += chunk.length;
      const r = receiveVerdict(mine, opts.methodMaxBytes(method.path), held, opts.maxBufferedBytes);
      if (r) refuse(r);
    };
    /** The request is complete, or the call is over: stop counting, release what it held. */
    const release = () => {
      if (timer) clearTimeout(timer);
      timer = undefined;
      if (counting) {
        counting = false;
        stream?.off("data", onData);
      }
      held -= mine;
      mine = 0;
    };
    const refuse = (r: Refusal) => {
      over = true;
      release();
      opts.onRefused?.(r);
      call.sendStatus({ code: r.code, details: r.details, metadata: new Metadata() });
      // Stop the client sending the rest; what grpc-js buffered goes with the stream.
      if (stream && !stream.destroyed && !stream.closed) stream.close(http2.constants.NGHTTP2_NO_ERROR);
    };
    return new ServerInterceptingCall(call, {
      start(next) {
        next({
          onReceiveMetadata(metadata, nextMd) {
            const r = opts.admit?.(method.path, metadata) ?? null;
            if (r) {
              refuse(r);
              return;
            }
            if (stream) {
              counting = true;
              stream.on("data", onData);
            }
            timer = setTimeout(
              () => refuse({ code: status.DEADLINE_EXCEEDED, reason: "receive_timeout", details: `Request not received within ${opts.receiveTimeoutMs} ms` }),
              opts.receiveTimeoutMs,
            );
            timer.unref();
            nextMd(metadata);
          },
          onReceiveMessage(message, nextMsg) {
            release();
            nextMsg(message);
          },
          onReceiveHalfClose(nextHc) {
            release();
            nextHc();
          },
          onCancel() {
            // The call is over (answered, refused by grpc-js itself — e.g. a declared length over
            // the port's limit — or cancelled). A client still sending is told to stop.
            release();
            if (stream && !stream.destroyed && !stream.closed && !stream.readableEnded) stream.close(http2.constants.NGHTTP2_NO_ERROR);
          },
        });
      },
      sendStatus(s, nextStatus) {
        release();
        nextStatus(s);
      },
    });
  };
  return {
    interceptor,
    get heldBytes() {
      return held;
    },
  };
}
