// The HTTP/1.1 listener (--http-listen, node:http): forward-auth for proxies, nginx's /deny,
// the JSON API and /healthz. Bounded like the other listeners: request headers at most
// MAX_HEADER_BYTES (more is a 400 deny, not node's bare 431), a body at most its route's limit
// (more is a 400, and the connection is closed), the bodies being read across all requests at
// most maxBufferedBytes (more is a 503), a request in full within receiveTimeoutMs (else 408,
// closed), an idle keep-alive connection closed after idleTimeoutMs. A handler fault is a 500, never an allow.
import * as http from "node:http";
import * as https from "node:https";
import type { Socket } from "node:net";
import { UNAVAILABLE } from "../../policy/denyShape.js";
import { AUTH_PREFIX, denyReply, type AuthRequest, type HttpReply } from "./forwardAuth.js";
import type { MaybePromise } from "../../domain/maybe.js";
import { json, JSON_PATHS } from "./jsonApi.js";
import { SELF_PATHS } from "./selfService.js";

/** Request headers (all lines) one request may carry: a proxy forwards the client's. */
export const MAX_HEADER_BYTES = 32 * 1024;

export interface HttpServerOptions {
  forwardAuth: (r: AuthRequest) => MaybePromise<HttpReply>;
  /** nginx's internal deny renderer (forwardAuth.ts denyFor). */
  deny: (headers: http.IncomingHttpHeaders) => HttpReply;
  json: (path: string, authorization: string | undefined, body: Buffer) => Promise<HttpReply>;
  /** GET /v1/account, /v1/keys, /v1/usage (selfService.ts); absent = 404. */
  self?: (path: string, search: URLSearchParams, authorization: string | undefined) => Promise<HttpReply>;
  serving: () => boolean;
  /** Largest forwarded body on /auth. */
  maxAuthBodyBytes: number;
  /** Largest body per JSON path. */
  maxJsonBodyBytes: (path: string) => number;
  maxBufferedBytes: number;
  receiveTimeoutMs: number;
  idleTimeoutMs: number;
  tls?: { cert: Buffer; key: Buffer };
  onError: (err: unknown) => void;
  onRejected?: (reason: string) => void;
}

export interface HttpServer {
  listen(host: string, port: number): Promise<number>;
  close(graceMs: number): Promise<void>;
}

function send(res: http.ServerResponse, r: HttpReply, close = false): void {
  if (res.headersSent) return;
  const headers: Record<string, string | number> = { ...r.headers, "content-length": Buffer.byteLength(r.body) };
  if (close) headers["connection"] = "close";
  res.writeHead(r.status, headers);
  res.end(r.body);
}

const TOO_LARGE_AUTH = (): HttpReply => denyReply("MALFORMED_REQUEST", "openai", null);

export function createHttpServer(o: HttpServerOptions): HttpServer {
  let buffered = 0;

  const handler = (req: http.IncomingMessage, res: http.ServerResponse): void => {
    const url = req.url ?? "/";
    const q = url.indexOf("?");
    const path = q >= 0 ? url.slice(0, q) : url;
    const isAuth = path === AUTH_PREFIX || path.startsWith(AUTH_PREFIX + "/");
    if (path === "/healthz") {
      const ok = o.serving();
      send(res, json(ok ? 200 : 503, { status: ok ? "SERVING" : "NOT_SERVING" }));
      req.resume();
      return;
    }
    if (path === "/deny") {
      send(res, o.deny(req.headers));
      req.resume();
      return;
    }
    if (o.self && SELF_PATHS.has(path)) {
      req.resume();
      if (req.method !== "GET") {
        send(res, { ...json(405, { error: { code: "UNIMPLEMENTED", message: `${path} takes GET` } }), headers: { "content-type": "application/json", allow: "GET" } });
        return;
      }
      const auth = req.headers["authorization"];
      o.self(path, new URLSearchParams(q >= 0 ? url.slice(q + 1) : ""), typeof auth === "string" ? auth : undefined).then(
        (r) => send(res, r),
        (err: unknown) => {
          o.onError(err);
          send(res, json(500, { error: { code: "INTERNAL", message: "internal error" } }));
        },
      );
      return;
    }
    const isJson = JSON_PATHS.has(path);
    if (!isAuth && !isJson) {
      send(res, json(404, { error: { code: "NOT_FOUND", message: `no route ${req.method} ${path.slice(0, 64)}` } }));
      req.resume();
      return;
    }
    if (isJson && req.method !== "POST") {
      send(res, { ...json(405, { error: { code: "UNIMPLEMENTED", message: `${path} takes POST` } }), headers: { "content-type": "application/json", allow: "POST" } });
      req.resume();
      return;
    }
    const limit = isAuth ? o.maxAuthBodyBytes : o.maxJsonBodyBytes(path);
    const tooLarge = (): HttpReply =>
      isAuth ? TOO_LARGE_AUTH() : json(400, { error: { code: "INVALID_ARGUMENT", message: `body: must be at most ${limit} bytes`, field: "body" } });
    const declared = Number(req.headers["content-length"] ?? 0);
    if (declared > limit) {
      o.onRejected?.("body_too_large");
      send(res, tooLarge(), true);
      req.destroy();
      return;
    }
    const chunks: Buffer[] = [];
    let size = 0;
    let done = false;
    const release = () => {
      buffered -= size;
      size = 0;
    };
    const finish = (r: HttpReply, close = false) => {
      if (done) return;
      done = true;
      release();
      send(res, r, close);
    };
    req.on("data", (c: Buffer) => {
      if (done) return;
      size += c.length;
      buffered += c.length;
      if (size > limit) {
        o.onRejected?.("body_too_large");
        finish(tooLarge(), true);
        req.destroy();
        return;
      }
      if (buffered > o.maxBufferedBytes) {
        o.onRejected?.("buffer_full");
        finish(isAuth ? denyReply(UNAVAILABLE, "openai", 1) : json(503, { error: { code: "UNAVAILABLE", message: "too many request bytes in flight; retry" } }), true);
        req.destroy();
        return;
      }
      chunks.push(c);
    });
    req.on("error", () => {
      done = true;
      release();
    });
    req.on("aborted", () => {
      done = true;
      release();
    });
    req.on("end", () => {
      if (done) return;
      const body = chunks.length === 0 ? null : Buffer.concat(chunks);
      if (isAuth) {
        let r: MaybePromise<HttpReply>;
        try {
          r = o.forwardAuth({ method: req.method ?? "GET", url, headers: req.headers, peer: req.socket.remoteAddress, body });
        } catch (err) {
          o.onError(err);
          r = denyReply(UNAVAILABLE, "openai", 1);
        }
        if (r instanceof Promise)
          r.then(finish, (err: unknown) => {
            o.onError(err);
            finish(denyReply(UNAVAILABLE, "openai", 1));
          });
        else finish(r);
        return;
      }
      const auth = req.headers["authorization"];
      o.json(path, typeof auth === "string" ? auth : undefined, body ?? Buffer.alloc(0)).then(finish, (err: unknown) => {
        o.onError(err);
        finish(json(500, { error: { code: "INTERNAL", message: "internal error" } }));
      });
    });
  };

  const options: http.ServerOptions = {
    maxHeaderSize: MAX_HEADER_BYTES,
    requestTimeout: o.receiveTimeoutMs,
    headersTimeout: o.receiveTimeoutMs,
    keepAliveTimeout: o.idleTimeoutMs,
    // How often node looks for requests past requestTimeout/headersTimeout (default 30 s, which
    // would let a short receive timeout run 30 s late).
    connectionsCheckingInterval: Math.max(100, Math.min(30_000, Math.floor(o.receiveTimeoutMs / 4))),
    noDelay: true,
  };
  const server: http.Server = o.tls ? https.createServer({ ...options, cert: o.tls.cert, key: o.tls.key }, handler) : http.createServer(options, handler);
  // No socket inactivity timeout: requestTimeout bounds a request in progress (a fresh
  // connection that sends nothing included), keepAliveTimeout an idle one between requests.
  server.timeout = 0;

  // Headers over MAX_HEADER_BYTES, or bytes that are not HTTP/1.1: a 400 deny (with the reason
  // table's MALFORMED_REQUEST body) instead of node's bare 431/400, then the connection closes.
  server.on("clientError", (err: NodeJS.ErrnoException, socket: Socket) => {
    o.onRejected?.(err.code === "HPE_HEADER_OVERFLOW" ? "headers_too_large" : err.code === "ERR_HTTP_REQUEST_TIMEOUT" ? "receive_timeout" : "bad_request");
    if (err.code === "ECONNRESET" || !socket.writable) {
      socket.destroy();
      return;
    }
    if (err.code === "ERR_HTTP_REQUEST_TIMEOUT") {
      socket.end("HTTP/1.1 408 Request Timeout\r\ncontent-length: 0\r\nconnection: close\r\n\r\n");
      return;
    }
    const r = denyReply("MALFORMED_REQUEST", "openai", null);
    const head = [`HTTP/1.1 ${r.status} Bad Request`, ...Object.entries(r.headers).map(([k, v]) => `${k}: ${v}`), `content-length: ${Buffer.byteLength(r.body)}`, "connection: close"];
    socket.end(head.join("\r\n") + "\r\n\r\n" + r.body);
  });

  const sockets = new Set<Socket>();
  server.on("connection", (s: Socket) => {
    sockets.add(s);
    s.once("close", () => sockets.delete(s));
  });

  return {
    listen(host, port) {
      return new Promise((resolve, reject) => {
        server.once("error", reject);
        server.listen(port, host, () => {
          server.off("error", reject);
          const a = server.address();
          resolve(typeof a === "object" && a !== null ? a.port : port);
        });
      });
    },
    close(graceMs) {
      return new Promise((resolve) => {
        if (!server.listening) {
          resolve();
          return;
        }
        server.closeIdleConnections();
        const t = setTimeout(() => {
          for (const s of sockets) s.destroy();
          resolve();
        }, graceMs);
        server.close(() => {
          clearTimeout(t);
          resolve();
        });
      });
    },
  };
}
