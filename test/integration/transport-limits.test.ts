// What a client can make the sidecar hold, bounded (issue 13, finding 10): partial messages,
// unauthenticated bodies, slow senders and idle connections, on the data port, the admin port
// (grpc-js) and the Envoy endpoint (node:http2). Raw HTTP/2 clients against the real bin; the
// server's RSS is read from /proc and printed.
import { expect } from "chai";
import http2 from "node:http2";
import net from "node:net";
import { readFileSync } from "node:fs";
import * as grpc from "@grpc/grpc-js";
import { removeDir, tempDir } from "../helpers/sidecar.js";
import { startServe, stopProcess, type ServeProcess } from "../helpers/proc.js";

const ENVOY_CHECK = "/envoy.service.auth.v3.Authorization/Check";
const CONSUME = "/aisa.v1.Authorizer/Consume";
const ADMIN_CREATE_KEY = "/aisa.v1.Admin/CreateKey";
const HEALTH = "/grpc.health.v1.Health/Check";

function rssMb(pid: number): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, "utf8"));
  return m ? Number(m[1]) / 1024 : NaN;
}

interface Outcome {
  /** Still open after every byte was written (the server is holding it). */
  open: boolean;
  grpcStatus?: number;
  grpcMessage?: string;
  rstCode?: number;
  stream: http2.ClientHttp2Stream;
}

/**
 * Starts a call declaring a `declared`-byte message and writes `send` bytes of it without ending
 * the stream. Resolves when every byte is written (the server read them: HTTP/2 flow control) or
 * when the server answered / reset the stream first.
 */
function halfSend(session: http2.ClientHttp2Session, path: string, declared: number, send: number, headers: Record<string, string> = {}): Promise<Outcome> {
  return new Promise((resolve, reject) => {
    const stream = session.request({ ":method": "POST", ":path": path, "content-type": "application/grpc", te: "trailers", ...headers }, { endStream: false });
    let respHeaders: http2.IncomingHttpHeaders = {};
    let trailers: http2.IncomingHttpHeaders = {};
    let settled = false;
    const done = (open: boolean) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      const st = trailers["grpc-status"] ?? respHeaders["grpc-status"];
      const msg = trailers["grpc-message"] ?? respHeaders["grpc-message"];
      resolve({ open, grpcStatus: st === undefined ? undefined : Number(st), grpcMessage: msg === undefined ? undefined : decodeURIComponent(String(msg)), rstCode: stream.rstCode, stream });
    };
    const timer = setTimeout(() => reject(new Error(`${path}: neither written nor answered within 30 s`)), 30_000);
    stream.on("response", (h) => (respHeaders = h));
    stream.on("trailers", (t) => (trailers = t));
    stream.on("data", () => {});
    stream.on("error", () => {});
    stream.on("close", () => done(false));
    const prefix = Buffer.alloc(5);
    prefix.writeUInt32BE(declared, 1);
    const chunk = Buffer.alloc(64 * 1024, 0x61);
    let left = send;
    stream.write(prefix);
    const pump = (): void => {
      while (left > 0 && !stream.destroyed) {
        const n = Math.min(left, chunk.length);
        left -= n;
        const last = left === 0;
        const ok = stream.write(n === chunk.length ? chunk : chunk.subarray(0, n), last ? () => setImmediate(() => done(!stream.closed)) : undefined);
        if (!ok && !last) {
          stream.once("drain", pump);
          return;
        }
      }
    };
    pump();
  });
}

const connect = (address: string) => {
  const s = http2.connect(`http://${address}`);
  s.on("error", () => {});
  return s;
};

describe("transport limits: partial messages, unauthenticated bodies, slow senders, idle connections", function () {
  this.timeout(180_000);
  let dir: string;
  let p: ServeProcess;
  const sessions: http2.ClientHttp2Session[] = [];
  before(async () => {
    dir = await tempDir();
    p = await startServe(dir, ["--max-buffered-bytes", String(16 * 1024 * 1024), "--receive-timeout-ms", "120000"]);
  });
  after(async () => {
    for (const s of sessions) s.destroy();
    await stopProcess(p.child);
    await removeDir(dir);
  });

  for (const [port, address, path] of [
    ["data port (grpc-js)", () => p.dataAddress, ENVOY_CHECK],
    ["Envoy endpoint (node:http2)", () => p.envoyAddress, ENVOY_CHECK],
  ] as const) {
    it(`${port}: 40 streams each sending 3 MB of a declared 4 MB message are held within the 16 MiB budget; the rest RESOURCE_EXHAUSTED`, async () => {
      const before = rssMb(p.child.pid!);
      const outcomes: Outcome[] = [];
      // 4 connections × 10 streams, written concurrently.
      for (let c = 0; c < 4; c++) {
        const session = connect(address());
        sessions.push(session);
        outcomes.push(...(await Promise.all(Array.from({ length: 10 }, () => halfSend(session, path, 4_000_000, 3_000_000)))));
      }
      const peak = rssMb(p.child.pid!);
      const held = outcomes.filter((o) => o.open).length;
      const refused = outcomes.filter((o) => !o.open);
      console.log(`      ${port}: 40 × 3 MB partial messages → ${held} held, ${refused.length} refused; server RSS ${before.toFixed(0)} → ${peak.toFixed(0)} MB (+${(peak - before).toFixed(0)})`);
      expect(held, "at most what fits in 16 MiB").to.be.at.most(6);
      expect(refused.length).to.be.at.least(34);
      for (const o of refused) {
        expect(o.grpcStatus, o.grpcMessage).to.equal(grpc.status.RESOURCE_EXHAUSTED);
        expect(o.grpcMessage).to.match(/incomplete requests \(at most 16777216\)/);
      }
      expect(peak - before, "RSS growth (generous bound; 40 × 3 MB would be 120 MB of buffers alone)").to.be.below(100);
      for (const o of outcomes) o.stream.close(http2.constants.NGHTTP2_CANCEL);
    });
  }

  it("data port: a Consume declared at 1 MB (the port takes 4 MiB, a Consume 64 KiB) is refused once 64 KiB have arrived, and reset", async () => {
    const session = connect(p.dataAddress);
    sessions.push(session);
    const o = await halfSend(session, CONSUME, 1_000_000, 900_000);
    expect(o.open).to.equal(false);
    expect(o.grpcStatus).to.equal(grpc.status.RESOURCE_EXHAUSTED);
    expect(o.grpcMessage).to.match(/more than 65536 bytes for this method/);
    expect(o.rstCode, "RST_STREAM NO_ERROR: stop sending").to.equal(http2.constants.NGHTTP2_NO_ERROR);
    // A message declared over the port's limit is refused from its 5-byte prefix alone.
    const big = await halfSend(session, ENVOY_CHECK, 5 * 1024 * 1024, 0);
    expect(big.grpcStatus).to.equal(grpc.status.RESOURCE_EXHAUSTED);
    expect(big.grpcMessage).to.match(/larger than max \(5242880 vs 4194304\)/);
  });

  it("admin port: 100 unauthenticated calls with 900 KB bodies are refused UNAUTHENTICATED from their headers, before the body is read", async () => {
    const before = rssMb(p.child.pid!);
    const session = connect(p.adminAddress);
    sessions.push(session);
    const outcomes = await Promise.all(Array.from({ length: 100 }, (_, i) => halfSend(session, ADMIN_CREATE_KEY, 1_000_000, 900_000, i % 2 ? { authorization: "Bearer aat-wrong" } : {})));
    const peak = rssMb(p.child.pid!);
    console.log(`      admin port: 100 unauthenticated × 900 KB → ${outcomes.filter((o) => o.grpcStatus === grpc.status.UNAUTHENTICATED).length} UNAUTHENTICATED; server RSS ${before.toFixed(0)} → ${peak.toFixed(0)} MB (+${(peak - before).toFixed(0)})`);
    for (const o of outcomes) {
      expect(o.open).to.equal(false);
      expect(o.grpcStatus, o.grpcMessage).to.equal(grpc.status.UNAUTHENTICATED);
      expect(o.rstCode).to.equal(http2.constants.NGHTTP2_NO_ERROR);
    }
    expect(peak - before, "RSS growth (generous bound; 100 × 900 KB would be 90 MB)").to.be.below(60);
  });
});

describe("transport limits: slow senders and idle connections", function () {
  this.timeout(120_000);
  let dir: string;
  let p: ServeProcess;
  before(async () => {
    dir = await tempDir();
    p = await startServe(dir, ["--idle-timeout-ms", "1000", "--receive-timeout-ms", "1000"]);
  });
  after(async () => {
    await stopProcess(p.child);
    await removeDir(dir);
  });

  for (const [port, address, path] of [
    ["data port", () => p.dataAddress, CONSUME],
    ["admin port", () => p.adminAddress, HEALTH],
    ["Envoy endpoint", () => p.envoyAddress, ENVOY_CHECK],
  ] as const) {
    it(`${port}: a request that has not arrived in full within --receive-timeout-ms gets DEADLINE_EXCEEDED`, async () => {
      const session = connect(address());
      try {
        const o = await halfSend(session, path, 100, 10);
        expect(o.open, "still open after its 10 bytes").to.equal(true);
        const closed = await new Promise<Outcome>((resolve) => {
          let trailers: http2.IncomingHttpHeaders = {};
          let headers: http2.IncomingHttpHeaders = {};
          o.stream.on("trailers", (t) => (trailers = t));
          o.stream.on("response", (h) => (headers = h));
          o.stream.on("close", () => resolve({ open: false, grpcStatus: Number(trailers["grpc-status"] ?? headers["grpc-status"]), grpcMessage: String(trailers["grpc-message"] ?? headers["grpc-message"]), stream: o.stream }));
        });
        expect(closed.grpcStatus).to.equal(grpc.status.DEADLINE_EXCEEDED);
        expect(decodeURIComponent(closed.grpcMessage!)).to.match(/not received within 1000 ms/);
      } finally {
        session.destroy();
      }
    });
  }

  it("idle connections (HTTP/2 sessions after a call, and raw TCP that never speaks) are closed after --idle-timeout-ms on every port", async () => {
    const closes: Promise<string>[] = [];
    for (const [port, address, path] of [
      ["data", p.dataAddress, HEALTH],
      ["admin", p.adminAddress, HEALTH],
      ["envoy", p.envoyAddress, HEALTH],
    ] as const) {
      // An HTTP/2 session that made one call (a health check), then idles.
      const session = connect(address);
      const h = new Promise<void>((resolve) => {
        const st = session.request({ ":method": "POST", ":path": path, "content-type": "application/grpc", te: "trailers" });
        st.on("data", () => {});
        st.on("error", () => {});
        st.on("close", () => resolve());
        st.end(Buffer.from([0, 0, 0, 0, 0]));
      });
      await h;
      closes.push(new Promise((resolve) => session.once("close", () => resolve(`${port} http2`))));
      // A TCP connection that never sends the HTTP/2 preface.
      const [host, prt] = [address.slice(0, address.lastIndexOf(":")), Number(address.slice(address.lastIndexOf(":") + 1))];
      const sock = net.connect(prt, host);
      sock.on("error", () => {});
      sock.on("data", () => {});
      closes.push(new Promise((resolve) => sock.once("close", () => resolve(`${port} tcp`))));
    }
    const t0 = Date.now();
    const closed = await Promise.race([Promise.all(closes), new Promise<string[]>((resolve) => setTimeout(() => resolve([]), 20_000))]);
    console.log(`      idle: ${closed.length} of 6 connections closed by the server after ${Date.now() - t0} ms (--idle-timeout-ms 1000)`);
    expect(closed).to.have.length(6);
  });
});
