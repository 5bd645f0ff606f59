// A minimal gRPC server for unary methods, straight on node:http2.
//
// Why: Envoy calls ext_authz Check before every request it proxies, and on this data plane
// grpc-js's own per-call machinery (interceptor chain, metadata objects, listeners, several
// ticks per call) costs more main-thread time than the whole authorization decision. The bench
// measured 56–64 µs per Check for a grpc-js server that does nothing against 23–25 µs for
// node:http2 answering fixed bytes (bench/README.md). This server serves only what Envoy's
// ext_authz client needs — unary calls, identity encoding — and answers them in one
// synchronous step; grpc-js keeps serving everything else (aisa.v1, admin, reflection,
// streaming health) on its own ports.
//
// The gRPC-over-HTTP/2 protocol as implemented here (https://github.com/grpc/grpc/blob/master/doc/PROTOCOL-HTTP2.md):
// - POST only (else HTTP 405); content-type application/grpc[+proto|;…] (else HTTP 415).
// - Unknown :path: trailers-only UNIMPLEMENTED, the message grpc-js uses.
// - grpc-timeout: parsed as grpc-js does (malformed: INTERNAL); when it passes before the
//   request is complete, DEADLINE_EXCEEDED and the stream is reset. Without one, a request must
//   arrive within receiveTimeoutMs (30 s) or gets the same.
// - Exactly one length-prefixed message: none or a second one is UNIMPLEMENTED (as grpc-js);
//   a truncated one INTERNAL; a declared length over the limit RESOURCE_EXHAUSTED as soon as
//   the 5-byte prefix arrives (nothing more is buffered). A compressed message is UNIMPLEMENTED
//   naming the encoding (every reply advertises grpc-accept-encoding: identity).
// - Replies: headers, one DATA frame with the message, trailers grpc-status 0; errors are
//   trailers-only (one HEADERS frame with END_STREAM) with a percent-encoded grpc-message.
//   After answering early (an error while the client is still sending) the stream is reset
//   with NO_ERROR (RFC 9113 §8.1), so the client stops sending.
// - HTTP/2 itself (flow control, PING, SETTINGS, GOAWAY) is node:http2's. close() stops
//   accepting, sends GOAWAY on every session, lets open calls finish, and destroys what is
//   left after the grace period.
import http2 from "node:http2";
import type { AddressInfo } from "node:net";
import { status } from "@grpc/grpc-js";
import { grpcFrame, OK_TRAILERS, PREFIX, REPLY_HEADERS, RESPOND_AND_END, RESPOND_WITH_TRAILERS } from "./grpcWire.js";
import { serveStream, type StreamMethod } from "./h2stream.js";
import type { MaybePromise } from "../domain/maybe.js";

export interface UnaryMethod<Req, Res> {
  /** Bytes of the one request message → the request (should not throw: see tolerant.ts). */
  decode(bytes: Buffer): Req;
  /**
   * The reply, now or as a promise (a shared store engine answers later); anything it throws
   * or rejects with is answered as the error `toStatus` maps it to.
   */
  handle(request: Req): MaybePromise<Res>;
  /** The reply's bytes. */
  encode(response: Res): Buffer;
  /** The reply as a whole gRPC frame (prefix + message), when the method can write it at once; else encode() is framed. */
  frame?(response: Res): Buffer;
}

export interface H2UnaryServerOptions {
  /** Full method paths ("/pkg.Service/Method") to their implementation. */
  methods: Record<string, UnaryMethod<any, any>>;
  /** Bidirectional-streaming methods by full path (transport/h2stream.ts): ext_proc's Process. */
  streams?: Record<string, StreamMethod<any>>;
  /** Largest request message accepted, in bytes. */
  maxReceiveMessageBytes: number;
  /** A thrown error → the status to answer (e.g. transport/grpcErrors.ts toGrpcStatus). */
  toStatus(err: unknown): { code: number; details: string };
  /** Called for stream and session errors (network noise: logged at debug by the caller). */
  onNetworkError?: (err: unknown) => void;
  /**
   * Called for every request refused at the protocol level, before any handler ran: `reason`
   * is a short stable label (metrics), `details` the message sent. A misconfigured client
   * (compression on, wrong path) otherwise fails every call without a trace on this side.
   */
  onRejected?: (reason: RejectReason, details: string) => void;
  /**
   * How long a request may take to arrive in full when it carries no shorter grpc-timeout
   * (default 30 s): then DEADLINE_EXCEEDED and the stream is reset.
   */
  receiveTimeoutMs?: number;
  /**
   * The most bytes of incomplete requests held across all streams and sessions (default 64 MiB):
   * past it, the stream that would exceed it is refused RESOURCE_EXHAUSTED and reset.
   */
  maxBufferedBytes?: number;
  /** A session with no open stream for this long is closed with GOAWAY (default 5 min). */
  idleTimeoutMs?: number;
  /** SETTINGS_MAX_CONCURRENT_STREAMS per session (default 1000). */
  maxConcurrentStreams?: number;
  /** Serve HTTP/2 over TLS (ALPN h2) with this certificate and key (PEM); plaintext h2c without. */
  tls?: { cert: Buffer; key: Buffer };
}

export type RejectReason =
  | "method_not_post"
  | "not_grpc_content_type"
  | "unknown_method"
  | "bad_timeout"
  | "deadline_exceeded"
  | "receive_timeout"
  | "message_too_large"
  | "second_message"
  | "no_message"
  | "truncated_message"
  | "compressed_message"
  | "bad_message_flag"
  | "buffer_budget"
  | "unauthenticated";

export interface H2UnaryServer {
  /** Binds "host:port" (port 0: any); resolves to the bound port. */
  listen(host: string, port: number): Promise<number>;
  /** GOAWAY to every session, waits for open calls up to graceMs, then destroys the rest. */
  close(graceMs: number): Promise<void>;
}

const TIMEOUT_UNITS_MS: Record<string, number> = { H: 3_600_000, M: 60_000, S: 1000, m: 1, u: 0.001, n: 0.000001 };
const TIMEOUT_RE = /^(\d{1,8})\s*([HMSmun])$/;

/** grpc-timeout → milliseconds; null when malformed. */
export function parseGrpcTimeout(value: string): number | null {
  // The form every client sends ("250m": 1–8 digits, the unit, nothing around them) read by
  // hand: the regular expression's match array and substrings were garbage on every Check.
  // Anything else (spaces) goes to the expression, which decides.
  const n = value.length;
  if (n >= 2 && n <= 9) {
    let v = 0;
    let i = 0;
    for (; i < n - 1; i++) {
      const d = value.charCodeAt(i) - 0x30;
      if (d < 0 || d > 9) break;
      v = v * 10 + d;
    }
    if (i === n - 1) {
      const unit = timeoutUnitMs(value.charCodeAt(i));
      if (unit > 0) return v * unit;
    }
  }
  const m = TIMEOUT_RE.exec(value.trim());
  if (!m) return null;
  return Number(m[1]) * TIMEOUT_UNITS_MS[m[2]!]!;
}

/** TIMEOUT_UNITS_MS by the unit's char code (0 for anything else): the same table, read without a one-character string. */
const UNIT_MS_BY_CODE = new Float64Array(128);
for (const [unit, ms] of Object.entries(TIMEOUT_UNITS_MS)) UNIT_MS_BY_CODE[unit.charCodeAt(0)] = ms;

/** TIMEOUT_UNITS_MS by the unit's char code; 0 for anything else. */
function timeoutUnitMs(c: number): number {
  return c < 128 ? UNIT_MS_BY_CODE[c]! : 0;
}

/** grpc-message encoding: bytes outside printable ASCII, and '%', as %XX of their UTF-8. */
export function encodeGrpcMessage(message: string): string {
  if (/^[\x20-\x24\x26-\x7e]*$/.test(message)) return message;
  let out = "";
  for (const b of Buffer.from(message, "utf8")) {
    out += b >= 0x20 && b <= 0x7e && b !== 0x25 ? String.fromCharCode(b) : "%" + b.toString(16).toUpperCase().padStart(2, "0");
  }
  return out;
}

function isGrpcContentType(ct: string | undefined): boolean {
  return ct !== undefined && (ct === "application/grpc" || ct.startsWith("application/grpc+") || ct.startsWith("application/grpc;"));
}

function sendOkTrailers(this: http2.ServerHttp2Stream): void {
  this.sendTrailers(OK_TRAILERS);
}

/**
 * What the idle check of one session reads. A stream that may stay open (a streaming call, a
 * refusal, a unary call still incomplete at the end of its first turn, an answer the store gives
 * later) is counted in `open` until it closes or is answered. A unary call answered in its first
 * turn, as nearly every Check is, only counts in `seen`: it needs no close listener, and its
 * stream closes as soon as the reply is flushed.
 */
interface Idle {
  open: number;
  /** Streams started on the session (any kind). */
  seen: number;
  /** `seen` at the last idle check: a change means a stream started since. */
  seenChecked: number;
  /** Since when the session has had nothing open (a counted close, or the check that noticed a new stream). */
  since: number;
}
const idleOf = new WeakMap<http2.Http2Session, Idle>();

function streamClosed(idle: Idle | undefined): void {
  if (idle !== undefined && --idle.open === 0) idle.since = Date.now();
}

/**
 * One unary call's state, held by its stream (CALL): one object per call, read by the shared
 * listeners below, instead of a closure per listener and a context per stream.
 */
class UnaryCall {
  /** Answered, refused or timed out: later data and the end are ignored. */
  done = false;
  /** Bytes of this request counted in the server's `buffered`. */
  held = 0;
  first: Buffer | undefined = undefined;
  parts: Buffer[] | undefined = undefined;
  have = 0;
  /** The message length from the 5-byte prefix, once it has arrived. */
  declared = -1;
  /** The deadline's timer, armed only if the call is still incomplete at the end of the turn it started in. */
  timer: NodeJS.Timeout | undefined = undefined;
  constructor(
    readonly method: UnaryMethod<unknown, unknown>,
    readonly path: string,
    readonly encoding: string,
    /** The client's own deadline (grpc-timeout), not the receive bound. */
    readonly deadline: boolean,
    /** ms from the call's start until DEADLINE_EXCEEDED (grpc-timeout, or the receive bound). */
    readonly deadlineMs: number,
    readonly idle: Idle | undefined,
  ) {}
}
const CALL = Symbol("aisa.unaryCall");
type CallStream = http2.ServerHttp2Stream & { [CALL]: UnaryCall };

export function createH2UnaryServer(opts: H2UnaryServerOptions): H2UnaryServer {
  const methods = new Map(Object.entries(opts.methods));
  const streams = new Map(Object.entries(opts.streams ?? {}));
  const maxMsg = opts.maxReceiveMessageBytes;
  const onNetErr = opts.onNetworkError ?? (() => {});
  const onRejected = opts.onRejected ?? (() => {});
  const receiveTimeoutMs = opts.receiveTimeoutMs ?? 30_000;
  const maxBuffered = opts.maxBufferedBytes ?? 64 * 1024 * 1024;
  const idleTimeoutMs = opts.idleTimeoutMs ?? 5 * 60_000;
  /** Bytes of incomplete requests held now, across all streams. */
  let buffered = 0;
  const sessions = new Set<http2.ServerHttp2Session>();
  const serverOptions: http2.ServerOptions = {
    // Node's default (10 MB of buffered frames per session) can refuse streams under a burst
    // of large bodies from one Envoy connection; messages up to maxMsg must fit.
    maxSessionMemory: Math.max(10, Math.ceil((maxMsg * 4) / 1e6)),
    settings: { maxConcurrentStreams: opts.maxConcurrentStreams ?? 1000 },
  };
  const server: http2.Http2Server | http2.Http2SecureServer = opts.tls
    ? http2.createSecureServer({ ...serverOptions, cert: opts.tls.cert, key: opts.tls.key })
    : http2.createServer(serverOptions);

  /** Trailers-only reply (or an RST when headers can no longer be sent). */
  function fail(stream: http2.ServerHttp2Stream, code: number, details: string, rst = http2.constants.NGHTTP2_NO_ERROR): void {
    if (stream.destroyed || stream.closed) return;
    if (stream.headersSent) {
      stream.close(http2.constants.NGHTTP2_INTERNAL_ERROR);
      return;
    }
    stream.respond({ ...REPLY_HEADERS, "grpc-status": String(code), "grpc-message": encodeGrpcMessage(details) }, RESPOND_AND_END);
    // The client may still be sending a body we will not read: ask it to stop, without error.
    if (!stream.readableEnded) stream.close(rst);
  }

  /** A protocol-level refusal: reported, then answered as fail() does. */
  function reject(stream: http2.ServerHttp2Stream, reason: RejectReason, code: number, details: string, rst?: number): void {
    onRejected(reason, details);
    fail(stream, code, details, rst);
  }

  /** A refusal before gRPC applies (wrong method or content type): a plain HTTP status. */
  function refuseHttp(stream: http2.ServerHttp2Stream, reason: RejectReason, details: string, headers: http2.OutgoingHttpHeaders): void {
    onRejected(reason, details);
    stream.respond(headers, RESPOND_AND_END);
    if (!stream.readableEnded) stream.close(http2.constants.NGHTTP2_NO_ERROR);
  }

  function reply(stream: CallStream, method: UnaryMethod<unknown, unknown>, message: Buffer): void {
    let res: unknown;
    try {
      res = method.handle(method.decode(message));
    } catch (err) {
      const s = opts.toStatus(err);
      fail(stream, s.code, s.details);
      return;
    }
    if (res instanceof Promise) {
      // Open until answered, for the idle check (a call answered now is not counted at all).
      const idle = stream[CALL].idle;
      if (idle) idle.open++;
      res.then(
        (r: unknown) => {
          streamClosed(idle);
          send(stream, method, r);
        },
        (err: unknown) => {
          streamClosed(idle);
          if (stream.destroyed || stream.closed) return;
          const s = opts.toStatus(err);
          fail(stream, s.code, s.details);
        },
      );
    } else send(stream, method, res);
  }

  function send(stream: http2.ServerHttp2Stream, method: UnaryMethod<unknown, unknown>, res: unknown): void {
    let frame: Buffer;
    try {
      frame = method.frame ? method.frame(res) : grpcFrame(method.encode(res));
    } catch (err) {
      const s = opts.toStatus(err);
      fail(stream, s.code, s.details);
      return;
    }
    if (stream.destroyed || stream.closed) return; // cancelled by the client meanwhile
    stream.respond(REPLY_HEADERS, RESPOND_WITH_TRAILERS);
    stream.on("wantTrailers", sendOkTrailers); // emitted once; a shared function, not a closure per call
    stream.end(frame);
  }

  server.on("session", (session) => {
    sessions.add(session);
    // Idle: no open stream for idleTimeoutMs (a connection that never sends a request included).
    // One check per half idle period per session, not a timer per request: an idle session is
    // closed between 1 and 1.5 × idleTimeoutMs after its last stream (see Idle for what counts).
    const st: Idle = { open: 0, seen: 0, seenChecked: 0, since: Date.now() };
    idleOf.set(session, st);
    const idle = setInterval(() => {
      if (st.open > 0) return;
      if (st.seen !== st.seenChecked) {
        // Streams answered in their first turn since the last check: idle from now at the earliest.
        st.seenChecked = st.seen;
        st.since = Date.now();
        return;
      }
      if (Date.now() - st.since < idleTimeoutMs || session.closed || session.destroyed) return;
      clearInterval(idle);
      session.close(); // GOAWAY; with no open stream it closes now
      // A peer that does not read the GOAWAY still goes.
      setTimeout(() => session.destroyed || session.destroy(), 1000).unref();
    }, Math.max(50, Math.floor(idleTimeoutMs / 2)));
    idle.unref();
    session.once("close", () => {
      sessions.delete(session);
      clearInterval(idle);
    });
    session.on("error", onNetErr);
  });
  server.on("sessionError", onNetErr);

  server.on("stream", (stream, headers) => {
    stream.on("error", onNetErr);
    const idle = stream.session ? idleOf.get(stream.session) : undefined;
    if (idle) idle.seen++;
    // A unary call is counted open only if it outlives its first turn (armDeadlines); every
    // other stream until it closes.
    if (serveCall(stream, headers, idle) !== true) {
      if (idle) idle.open++;
      stream.on("close", () => streamClosed(idle));
    }
  });

  /** Serves one stream; true when it is a unary call that counts its own close (see above). */
  function serveCall(stream: http2.ServerHttp2Stream, headers: http2.IncomingHttpHeaders, idle: Idle | undefined): boolean | void {
    if (headers[":method"] !== "POST") {
      return refuseHttp(stream, "method_not_post", `HTTP ${headers[":method"]} ${headers[":path"]}`, { ":status": 405, allow: "POST" });
    }
    if (!isGrpcContentType(headers["content-type"])) {
      return refuseHttp(stream, "not_grpc_content_type", `content-type ${JSON.stringify(headers["content-type"] ?? null)}`, { ":status": 415, "content-type": "text/plain" });
    }
    const path = headers[":path"] ?? "";
    const streaming = streams.get(path);
    if (streaming) {
      const refusal = streaming.admit?.(headers) ?? null;
      if (refusal !== null) return reject(stream, "unauthenticated", status.UNAUTHENTICATED, refusal);
      return serveStream(stream, streaming, { maxMessageBytes: maxMsg, encodeMessage: encodeGrpcMessage, onError: onNetErr });
    }
    const method = methods.get(path);
    if (!method) return reject(stream, "unknown_method", status.UNIMPLEMENTED, `The server does not implement the method ${path}`);
    const encoding = (headers["grpc-encoding"] as string | undefined) ?? "identity";

    const timeout = headers["grpc-timeout"];
    let deadlineMs = receiveTimeoutMs;
    let deadline = false; // the client's own deadline (grpc-timeout), not the receive bound
    if (timeout !== undefined) {
      const ms = parseGrpcTimeout(String(timeout));
      if (ms === null) return reject(stream, "bad_timeout", status.INTERNAL, `Invalid grpc-timeout value "${timeout}"`);
      if (ms <= deadlineMs) {
        deadlineMs = ms;
        deadline = true;
      }
    }
    const call = new UnaryCall(method, path, encoding, deadline, deadlineMs, idle);
    (stream as CallStream)[CALL] = call;
    // The deadline timer is armed at the end of this turn, and only if the request is still
    // incomplete then (armLater). Without a grpc-timeout (Envoy always sends one), the receive
    // bound keeps a request that never completes from holding its stream forever.
    armLater(stream as CallStream);
    stream.on("data", onCallData);
    stream.on("end", onCallEnd);
    return true;
  }

  // Deadlines, armed per turn (issue 18). A Check's HEADERS and DATA usually arrive in one read
  // and it is answered in the same turn, so a timer armed per call (a Timeout object, a list
  // insert and a clear) was garbage on nearly every Check. Calls that start in a turn are listed;
  // one setImmediate at the end of that turn arms a timer for each that is still incomplete.
  // The timer measures from (nearly) the same instant as before: Node starts a timer at libuv's
  // cached loop time, which is updated when epoll returns and not again before the check phase
  // (where setImmediate runs). So a timer armed there starts where one armed at the stream's
  // arrival would, or, when one poll phase reads more than one batch of events, up to that
  // phase's length later.
  const unarmed: CallStream[] = [];
  let armScheduled = false;

  function armLater(stream: CallStream): void {
    unarmed.push(stream);
    if (!armScheduled) {
      armScheduled = true;
      setImmediate(armDeadlines);
    }
  }

  function armDeadlines(): void {
    armScheduled = false;
    for (let i = 0; i < unarmed.length; i++) {
      const stream = unarmed[i]!;
      const c = stream[CALL];
      // Settled (answered, refused, reset by the client) in its first turn: no timer, no close
      // listener, not counted open (an answer still to come counts itself: reply).
      if (c.done) continue;
      if (stream.destroyed || stream.closed) {
        settle(c); // closed before its end arrived: nothing to wait for
        continue;
      }
      c.timer = setTimeout(onCallTimer, c.deadlineMs, stream);
      c.timer.unref();
      if (c.idle) c.idle.open++; // open until its close (onCallClose)
      stream.on("close", onCallClose);
    }
    unarmed.length = 0;
  }

  // The listeners of every unary call: shared functions reading the call's state from its stream
  // (`this`), not a closure per listener per stream (bench/README.md: what outlived a scavenge).

  /** The request is settled (answered or refused): no more data, no deadline, nothing held. */
  function settle(c: UnaryCall): void {
    c.done = true;
    clearTimeout(c.timer);
    buffered -= c.held;
    c.held = 0;
  }

  function onCallTimer(stream: CallStream): void {
    const c = stream[CALL];
    c.done = true;
    buffered -= c.held;
    c.held = 0;
    if (stream.destroyed || stream.closed) return;
    if (c.deadline) reject(stream, "deadline_exceeded", status.DEADLINE_EXCEEDED, "Deadline exceeded", http2.constants.NGHTTP2_CANCEL);
    else reject(stream, "receive_timeout", status.DEADLINE_EXCEEDED, `Request not received within ${receiveTimeoutMs} ms`, http2.constants.NGHTTP2_CANCEL);
  }

  /** The close of a call that outlived its first turn (the only ones with this listener). */
  function onCallClose(this: CallStream): void {
    const c = this[CALL];
    settle(c);
    streamClosed(c.idle);
  }

  // The common case is one DATA chunk holding the whole message; more are concatenated once.
  function onCallData(this: CallStream, chunk: Buffer): void {
    const c = this[CALL];
    if (c.done) return;
    c.held += chunk.length;
    buffered += chunk.length;
    if (buffered > maxBuffered) {
      const total = buffered;
      settle(c);
      c.first = undefined;
      c.parts = undefined;
      reject(this, "buffer_budget", status.RESOURCE_EXHAUSTED, `the server holds ${total} bytes of incomplete requests (at most ${maxBuffered}): try again later`);
      return;
    }
    if (c.first === undefined) c.first = chunk;
    else (c.parts ??= [c.first]).push(chunk);
    c.have += chunk.length;
    if (c.declared < 0 && c.have >= PREFIX) {
      c.declared = (c.first.length >= PREFIX ? c.first : Buffer.concat(c.parts!, c.have)).readUInt32BE(1);
      if (c.declared > maxMsg) {
        settle(c);
        reject(this, "message_too_large", status.RESOURCE_EXHAUSTED, `Received message larger than max (${c.declared} vs. ${maxMsg})`);
        return;
      }
    }
    if (c.declared >= 0 && c.have > PREFIX + c.declared) {
      settle(c);
      reject(this, "second_message", status.UNIMPLEMENTED, `Received a second request message for unary method ${c.path}`);
    }
  }

  function onCallEnd(this: CallStream): void {
    const c = this[CALL];
    if (c.done) return;
    settle(c);
    if (c.have === 0) return reject(this, "no_message", status.UNIMPLEMENTED, `Received no request message for unary method ${c.path}`);
    const buf = c.parts ? Buffer.concat(c.parts, c.have) : c.first!;
    c.first = undefined;
    c.parts = undefined;
    if (c.declared < 0 || c.have < PREFIX + c.declared) return reject(this, "truncated_message", status.INTERNAL, "Request message truncated");
    const flag = buf[0];
    if (flag === 1) {
      if (c.encoding === "identity") return reject(this, "compressed_message", status.INTERNAL, "Compressed message without a grpc-encoding");
      return reject(this, "compressed_message", status.UNIMPLEMENTED, `Received message compressed with unsupported encoding "${c.encoding}"`);
    }
    if (flag !== 0) return reject(this, "bad_message_flag", status.INTERNAL, `Invalid message flag ${flag}`);
    reply(this, c.method, buf.subarray(PREFIX));
  }

  return {
    listen(host, port) {
      return new Promise((resolve, reject) => {
        const onErr = (err: Error) => reject(err);
        server.once("error", onErr);
        server.listen(port, host, () => {
          server.off("error", onErr);
          resolve((server.address() as AddressInfo).port);
        });
      });
    },
    close(graceMs) {
      return new Promise((resolve) => {
        if (!server.listening) {
          for (const s of sessions) s.destroy();
          resolve();
          return;
        }
        const force = setTimeout(() => {
          for (const s of sessions) s.destroy();
        }, graceMs);
        force.unref();
        server.close(() => {
          clearTimeout(force);
          resolve();
        });
        // GOAWAY: no new streams on these connections; open ones finish, then each closes.
        for (const s of sessions) s.close();
      });
    },
  };
}
