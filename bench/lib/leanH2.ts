// The lean ConsumeBatch client's connection (bench/consumeLoad.ts, client "lean"): HTTP/2 frames
// written by hand on one TCP socket, so a call costs the client a buffer copy, a few byte
// writes, one socket write per event-loop turn and a scan of the reply — no node:http2 stream
// object, no header objects, no listeners per call (node:http2's client cost ~70–100 µs of CPU
// per call here, and its per-stream objects were half its time in GC).
//
// What it does and does not do:
// - request: one HEADERS frame (a fixed header block: static-table indices and literals without
//   indexing, so it never touches HPACK's dynamic table) and one DATA frame with END_STREAM,
//   both pre-built per key (leanConsume.ts's template) with the stream id and the request ids
//   written in place; buffers reused once the call is answered;
// - reply: header blocks are not decoded (no HPACK): a call ends at END_STREAM; it is OK when
//   its DATA scans as `batch` ok results (scanBatchResponse) — a grpc-js server answers an error
//   trailers-only, with no DATA, so a failed call is still an error here; RST_STREAM and GOAWAY
//   fail calls. The bench's verification step still decodes fully with grpc-status.
// - flow control: the receive windows are opened to 2^31 − 1 at the start (and the connection's
//   topped up); the send side keeps the connection window the server grants, queueing a call's
//   frames when it is exhausted. SETTINGS and PING are acknowledged.
import { connect, type Socket } from "node:net";
import { scanBatchResponse, writeIds, type BatchTemplate } from "./leanConsume.js";

const PREFACE = Buffer.from("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", "latin1");
const MAX_WINDOW = 2 ** 31 - 1;
const T_DATA = 0;
const T_HEADERS = 1;
const T_RST = 3;
const T_SETTINGS = 4;
const T_PING = 6;
const T_GOAWAY = 7;
const T_WINDOW = 8;
const F_END_STREAM = 0x1;
const F_ACK = 0x1;
const F_END_HEADERS = 0x4;
const F_PADDED = 0x8;

function frameHeader(b: Buffer, at: number, length: number, type: number, flags: number, stream: number): void {
  b[at] = (length >>> 16) & 0xff;
  b[at + 1] = (length >>> 8) & 0xff;
  b[at + 2] = length & 0xff;
  b[at + 3] = type;
  b[at + 4] = flags;
  b.writeUInt32BE(stream, at + 5);
}

function hpackString(s: string): Buffer {
  const v = Buffer.from(s, "latin1");
  if (v.length > 126) throw new Error("lean h2: header value over 126 bytes");
  return Buffer.concat([Buffer.from([v.length]), v]);
}

/** The request header block: :method POST, :scheme http (static), :path, :authority, content-type (literal, indexed name), te (literal): no dynamic table. */
export function requestHeaderBlock(path: string, authority: string): Buffer {
  return Buffer.concat([
    Buffer.from([0x83, 0x86]), // :method POST, :scheme http
    Buffer.from([0x04]), // :path, literal without indexing, name index 4
    hpackString(path),
    Buffer.from([0x01]), // :authority, name index 1
    hpackString(authority),
    Buffer.from([0x0f, 0x10]), // content-type, name index 31 (4-bit prefix: 15 + 16)
    hpackString("application/grpc"),
    Buffer.from([0x00]), // literal without indexing, new name
    hpackString("te"),
    hpackString("trailers"),
  ]);
}

/** One key's whole request (HEADERS + DATA frames) with the places a call writes. */
interface CallTemplate {
  bytes: Buffer;
  /** Offsets of the two stream ids. */
  streamAt: [number, number];
  /** Offsets of the request ids' counters. */
  counters: number[];
  dataLength: number;
}

function callTemplate(block: Buffer, t: BatchTemplate): CallTemplate {
  const bytes = Buffer.alloc(9 + block.length + 9 + t.frame.length);
  frameHeader(bytes, 0, block.length, T_HEADERS, F_END_HEADERS, 0);
  block.copy(bytes, 9);
  const d = 9 + block.length;
  frameHeader(bytes, d, t.frame.length, T_DATA, F_END_STREAM, 0);
  t.frame.copy(bytes, d + 9);
  return { bytes, streamAt: [5, d + 5], counters: t.counters.map((c) => c + d + 9), dataLength: t.frame.length };
}

class Call {
  key = 0;
  tag = 0;
  bytes: Buffer | null = null;
  /** The reply's DATA: the first payload, and any more (rare: a reply split over frames). */
  first: Buffer | null = null;
  more: Buffer[] | null = null;
}

export interface LeanH2Options {
  host: string;
  port: number;
  path: string;
  templates: BatchTemplate[];
  batch: number;
  /** Replays allowed (the no-op answers fixed replies). */
  allowReplayed: boolean;
  /** Request ids spread over the key space like random ones (leanConsume.ts writeIds). */
  scatterIds?: boolean;
  /** The first request id's counter (default 0): connections sharing a prefix each start at their channelFirstId. */
  firstId?: number;
  /** A call ended: null when its reply scanned as `batch` ok results. */
  done: (err: Error | null, tag: number) => void;
}

export class LeanH2Client {
  readonly #o: LeanH2Options;
  readonly #socket: Socket;
  readonly #templates: CallTemplate[];
  readonly #pools: Buffer[][];
  readonly #calls = new Map<number, Call>();
  readonly #free: Call[] = [];
  #nextStream = 1;
  #seq = 0;
  /** Connection-level send window the server granted. */
  #sendWindow = 65_535;
  readonly #queued: { call: Call; stream: number }[] = [];
  /** Received DATA bytes not yet given back to the connection window. */
  #received = 0;
  #rest: Buffer | null = null;
  #corked = false;
  #failed: Error | null = null;
  /** The server's SETTINGS_MAX_CONCURRENT_STREAMS (Infinity until it says). */
  maxStreams = Infinity;
  readonly ready: Promise<void>;

  constructor(o: LeanH2Options) {
    this.#o = o;
    this.#seq = o.firstId ?? 0;
    const block = requestHeaderBlock(o.path, `${o.host}:${o.port}`);
    this.#templates = o.templates.map((t) => callTemplate(block, t));
    this.#pools = this.#templates.map(() => []);
    const s = connect(o.port, o.host);
    s.setNoDelay(true);
    this.#socket = s;
    this.ready = new Promise((resolve, reject) => {
      s.once("connect", () => resolve());
      s.once("error", reject);
    });
    s.on("error", (err) => this.#failAll(err));
    s.on("close", () => this.#failAll(new Error("connection closed")));
    s.on("data", (d: Buffer) => this.#onData(d));
    // Preface, our SETTINGS (no push; every stream's receive window 2^31 − 1), the connection's window opened.
    const settings = Buffer.alloc(9 + 12);
    frameHeader(settings, 0, 12, T_SETTINGS, 0, 0);
    settings.writeUInt16BE(0x2, 9);
    settings.writeUInt32BE(0, 11);
    settings.writeUInt16BE(0x4, 15);
    settings.writeUInt32BE(MAX_WINDOW, 17);
    s.write(Buffer.concat([PREFACE, settings, this.#windowUpdate(MAX_WINDOW - 65_535)]));
  }

  #windowUpdate(inc: number): Buffer {
    const b = Buffer.alloc(13);
    frameHeader(b, 0, 4, T_WINDOW, 0, 0);
    b.writeUInt32BE(inc, 9);
    return b;
  }

  /** Sends one call of `batch` fresh request ids for key k; `done(err, tag)` when it ends. Writes are gathered per event-loop turn. */
  start(k: number, tag: number): void {
    const ki = k % this.#templates.length;
    const c = this.#free.pop() ?? new Call();
    c.key = ki;
    c.tag = tag;
    c.first = null;
    c.more = null;
    if (this.#failed) {
      const err = this.#failed;
      this.#free.push(c);
      return this.#o.done(err, tag);
    }
    const t = this.#templates[ki]!;
    const bytes = this.#pools[ki]!.pop() ?? Buffer.from(t.bytes);
    c.bytes = bytes;
    writeIds(bytes, t.counters, this.#seq, this.#o.scatterIds === true);
    this.#seq += t.counters.length;
    const stream = this.#nextStream;
    this.#nextStream += 2;
    if (this.#nextStream > MAX_WINDOW) throw new Error("lean h2: stream ids exhausted (use a new connection)");
    bytes.writeUInt32BE(stream, t.streamAt[0]);
    bytes.writeUInt32BE(stream, t.streamAt[1]);
    this.#calls.set(stream, c);
    if (this.#queued.length > 0 || this.#sendWindow < t.dataLength) this.#queued.push({ call: c, stream });
    else this.#send(bytes, t.dataLength);
  }

  #send(bytes: Buffer, dataLength: number): void {
    this.#sendWindow -= dataLength;
    if (!this.#corked) {
      this.#corked = true;
      this.#socket.cork();
      process.nextTick(() => {
        this.#corked = false;
        this.#socket.uncork();
      });
    }
    this.#socket.write(bytes);
  }

  #flushQueued(): void {
    while (this.#queued.length > 0) {
      const q = this.#queued[0]!;
      const len = this.#templates[q.call.key]!.dataLength;
      if (this.#sendWindow < len) return;
      this.#queued.shift();
      this.#send(q.call.bytes!, len);
    }
  }

  #onData(d: Buffer): void {
    let b = d;
    if (this.#rest) {
      b = Buffer.concat([this.#rest, d]);
      this.#rest = null;
    }
    let at = 0;
    while (b.length - at >= 9) {
      const len = (b[at]! << 16) | (b[at + 1]! << 8) | b[at + 2]!;
      if (b.length - at < 9 + len) break;
      const type = b[at + 3]!;
      const flags = b[at + 4]!;
      const stream = b.readUInt32BE(at + 5) & 0x7fffffff;
      this.#frame(type, flags, stream, b, at + 9, at + 9 + len);
      at += 9 + len;
    }
    if (at < b.length) this.#rest = b.subarray(at);
    if (this.#received > 1 << 30) {
      this.#socket.write(this.#windowUpdate(this.#received));
      this.#received = 0;
    }
  }

  #frame(type: number, flags: number, stream: number, b: Buffer, start: number, end: number): void {
    switch (type) {
      case T_DATA: {
        this.#received += end - start;
        const c = this.#calls.get(stream);
        if (!c) return;
        let s = start;
        let e = end;
        if (flags & F_PADDED) {
          e -= b[s]!;
          s++;
        }
        if (e > s) {
          const payload = b.subarray(s, e);
          if (c.first === null) c.first = payload;
          else (c.more ??= []).push(payload);
        }
        if (flags & F_END_STREAM) this.#end(stream, c, null);
        return;
      }
      case T_HEADERS: {
        // Response headers, trailers or trailers-only: not decoded (nor their PRIORITY or padding); END_STREAM ends the call.
        if (flags & F_END_STREAM) {
          const c = this.#calls.get(stream);
          if (c) this.#end(stream, c, null);
        }
        return;
      }
      case T_RST: {
        const c = this.#calls.get(stream);
        if (c) this.#end(stream, c, new Error(`RST_STREAM ${end - start >= 4 ? b.readUInt32BE(start) : "?"}`));
        return;
      }
      case T_SETTINGS: {
        if (flags & F_ACK) return;
        for (let p = start; p + 6 <= end; p += 6) {
          const id = b.readUInt16BE(p);
          const v = b.readUInt32BE(p + 2);
          if (id === 0x3) this.maxStreams = v;
        }
        const ack = Buffer.alloc(9);
        frameHeader(ack, 0, 0, T_SETTINGS, F_ACK, 0);
        this.#socket.write(ack);
        return;
      }
      case T_PING: {
        if (flags & F_ACK) return;
        const pong = Buffer.alloc(17);
        frameHeader(pong, 0, 8, T_PING, F_ACK, 0);
        b.copy(pong, 9, start, start + 8);
        this.#socket.write(pong);
        return;
      }
      case T_GOAWAY:
        this.#failAll(new Error(`GOAWAY ${end - start >= 8 ? b.readUInt32BE(start + 4) : "?"}`));
        return;
      case T_WINDOW:
        if (stream === 0) {
          this.#sendWindow += b.readUInt32BE(start) & 0x7fffffff;
          this.#flushQueued();
        }
        return;
      default:
        return; // PRIORITY, CONTINUATION of an undecoded block, unknown: nothing to do
    }
  }

  #end(stream: number, c: Call, err0: Error | null): void {
    this.#calls.delete(stream);
    let err = err0;
    if (!err) {
      try {
        err = this.#check(c);
      } catch (e) {
        err = e as Error;
      }
    }
    // After a reset the frames may not all be written: that buffer is not reused.
    if (!err0 && c.bytes) this.#pools[c.key]!.push(c.bytes);
    c.bytes = null;
    c.first = null;
    c.more = null;
    const tag = c.tag;
    this.#free.push(c);
    this.#o.done(err, tag);
  }

  #check(c: Call): Error | null {
    const body = c.more ? Buffer.concat([c.first!, ...c.more]) : c.first;
    if (!body) return new Error("no reply message (a gRPC error, trailers-only)");
    if (body.length < 5) return new Error("truncated reply");
    const len = body.readUInt32BE(1);
    if (body.length !== 5 + len) return new Error(`reply of ${body.length} bytes for a ${len}-byte message`);
    const r = scanBatchResponse(body, 5, 5 + len);
    if (r.results !== this.#o.batch) return new Error(`${r.results} answers for ${this.#o.batch} Consumes`);
    if (r.errors) return new Error(`${r.errors} batch items failed`);
    if (!this.#o.allowReplayed && r.replayed) return new Error("unexpected replay");
    if (r.zeroCharge) return new Error(`${r.zeroCharge} items charged nothing`);
    return null;
  }

  #failAll(err: Error): void {
    if (this.#failed) return;
    this.#failed = err;
    this.#queued.length = 0;
    for (const [stream, c] of [...this.#calls]) this.#end(stream, c, err);
  }

  /** Calls in flight. */
  get inFlight(): number {
    return this.#calls.size;
  }

  close(): void {
    this.#failed ??= new Error("closed");
    this.#socket.end();
  }
}
