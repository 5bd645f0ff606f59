// The dedicated Envoy endpoint (--envoy-listen, transport/h2unary.ts) at the gRPC-over-HTTP/2
// protocol level: a raw node:http2 client sends exactly the frames each case needs against a
// real sidecar. The Envoy semantics (every fixture, races, fail-closed) run against this
// endpoint in envoy.test.ts; this file covers the protocol surface grpc-js used to handle.
import { expect } from "chai";
import http2 from "node:http2";
import * as grpc from "@grpc/grpc-js";
import type { CreateKeyResponse } from "../../src/gen/aisa/v1/admin.js";
import { CheckRequest, CheckResponse } from "../../src/gen/envoy/service/auth/v3/external_auth.js";
import { HealthCheckResponse_ServingStatus, HealthClient } from "../../src/gen/grpc/health/v1/health.js";
import { createH2UnaryServer, encodeGrpcMessage, parseGrpcTimeout } from "../../src/transport/h2unary.js";
import { call, removeDir, startTestSidecar, type TestSidecar } from "../helpers/sidecar.js";

const CHECK = "/envoy.service.auth.v3.Authorization/Check";

interface RawReply {
  headers: http2.IncomingHttpHeaders;
  trailers: http2.IncomingHttpHeaders;
  data: Buffer;
  rstCode: number;
  /** grpc-status from trailers, or from the headers of a trailers-only reply. */
  grpcStatus: number | undefined;
  grpcMessage: string | undefined;
}

function frame(msg: Uint8Array, flag = 0): Buffer {
  const b = Buffer.alloc(5 + msg.length);
  b[0] = flag;
  b.writeUInt32BE(msg.length, 1);
  Buffer.from(msg).copy(b, 5);
  return b;
}

function checkRequest(secret: string, body?: string): CheckRequest {
  return CheckRequest.fromPartial({
    attributes: {
      source: { address: { address: { $case: "socketAddress", value: { address: "203.0.113.7", portSpecifier: { $case: "portValue", value: 1 } } } } },
      request: {
        http: {
          method: body ? "POST" : "GET",
          path: body ? "/v1/chat/completions" : "/v1/models",
          headers: { authorization: `Bearer ${secret}`, "content-type": "application/json" },
          body: body ?? "",
        },
      },
    },
  });
}

/**
 * One request on `session`: `headers` (defaults: a gRPC POST to Check), then `chunks` written
 * one by one, then END_STREAM unless `end` is false. Resolves when the stream closes or after
 * `timeoutMs`.
 */
function raw(session: http2.ClientHttp2Session, o: { path?: string; headers?: Record<string, string>; chunks?: Buffer[]; end?: boolean; timeoutMs?: number }): Promise<RawReply> {
  return new Promise((resolve, reject) => {
    const stream = session.request({ ":method": "POST", ":path": o.path ?? CHECK, "content-type": "application/grpc", te: "trailers", ...o.headers }, { endStream: false });
    const out: RawReply = { headers: {}, trailers: {}, data: Buffer.alloc(0), rstCode: 0, grpcStatus: undefined, grpcMessage: undefined };
    const parts: Buffer[] = [];
    const timer = setTimeout(() => {
      stream.close();
      reject(new Error(`no reply within ${o.timeoutMs ?? 5000} ms`));
    }, o.timeoutMs ?? 5000);
    stream.on("response", (h) => (out.headers = h));
    stream.on("trailers", (t) => (out.trailers = t));
    stream.on("data", (d: Buffer) => parts.push(d));
    stream.on("error", () => {});
    stream.on("close", () => {
      clearTimeout(timer);
      out.data = Buffer.concat(parts);
      out.rstCode = stream.rstCode ?? 0;
      const st = out.trailers["grpc-status"] ?? out.headers["grpc-status"];
      out.grpcStatus = st === undefined ? undefined : Number(st);
      const m = out.trailers["grpc-message"] ?? out.headers["grpc-message"];
      out.grpcMessage = m === undefined ? undefined : decodeURIComponent(String(m));
      resolve(out);
    });
    for (const c of o.chunks ?? []) stream.write(c);
    if (o.end !== false) stream.end();
  });
}

function message(reply: RawReply): CheckResponse {
  expect(reply.data.length, "one length-prefixed message").to.be.greaterThan(5);
  expect(reply.data[0]).to.equal(0);
  expect(reply.data.readUInt32BE(1)).to.equal(reply.data.length - 5);
  return CheckResponse.decode(reply.data.subarray(5));
}

describe("Envoy endpoint (node:http2 gRPC server): protocol", function () {
  this.timeout(30_000);
  let s: TestSidecar;
  let session: http2.ClientHttp2Session;
  let secret: string;
  let restricted: string;

  before(async () => {
    s = await startTestSidecar();
    const admin = <Res>(method: string, req: unknown) => call<unknown, Res>(s.admin, method, req, s.meta());
    await admin("adjustBalance", { accountId: "default", delta: "1000000000", reason: "test seed" });
    await admin("setPrice", { price: { model: "gpt-4o-mini", inputPerMillion: "75000", outputPerMillion: "300000", perRequest: "0" } });
    secret = (await admin<CreateKeyResponse>("createKey", { spec: { name: "wire", unlimited: true } })).secret;
    restricted = (await admin<CreateKeyResponse>("createKey", { spec: { name: "wire-models", unlimited: true, models: ["gpt-4o-mini"] } })).secret;
    session = http2.connect(`http://${s.envoyAddress}`);
  });

  after(async () => {
    session?.close();
    await s.close();
    await removeDir(s.dir);
  });

  it("answers an allow as headers, one message and grpc-status 0 trailers", async () => {
    const r = await raw(session, { chunks: [frame(CheckRequest.encode(checkRequest(secret)).finish())] });
    expect(r.headers[":status"]).to.equal(200);
    expect(r.headers["content-type"]).to.equal("application/grpc");
    expect(r.headers["grpc-accept-encoding"]).to.equal("identity");
    expect(r.headers.date, "no date header: gRPC has no use for it (bench/README.md, ninth pass)").to.equal(undefined);
    expect(r.trailers["grpc-status"]).to.equal("0");
    const res = message(r);
    expect(res.status?.code ?? 0).to.equal(0);
    expect(res.httpResponse?.$case).to.equal("okResponse");
    const ok = res.httpResponse?.$case === "okResponse" ? res.httpResponse.value : undefined;
    expect(ok?.headers.find((h) => h.header?.key === "x-aisa-reservation")?.header?.value).to.match(/^rsv_/);
  });

  it("answers the same bytes as the grpc-js data port (a deny: no reservation id to differ)", async () => {
    const bytes = frame(CheckRequest.encode(checkRequest("sk-unknownunknownunknownunknownunknownunknown1")).finish());
    const viaH2 = await raw(session, { chunks: [bytes] });
    const dataSession = http2.connect(`http://${s.dataAddress}`);
    try {
      const viaGrpcJs = await raw(dataSession, { chunks: [bytes] });
      expect(viaGrpcJs.trailers["grpc-status"]).to.equal("0");
      expect(message(viaH2).status?.code).to.equal(16);
      expect(viaH2.data.equals(viaGrpcJs.data), "identical CheckResponse bytes").to.equal(true);
    } finally {
      dataSession.close();
    }
  });

  it("reassembles a message split across many DATA frames (a 1 MB body, 4 KB writes)", async () => {
    const body = JSON.stringify({ messages: [{ role: "user", content: "x".repeat(1 << 20) }], model: "gpt-4o-mini", max_tokens: 16 });
    const bytes = frame(CheckRequest.encode(checkRequest(restricted, body)).finish());
    const chunks: Buffer[] = [];
    for (let i = 0; i < bytes.length; i += 4096) chunks.push(bytes.subarray(i, i + 4096));
    const r = await raw(session, { chunks });
    expect(r.trailers["grpc-status"]).to.equal("0");
    expect(message(r).status?.code ?? 0, "allowed: the model after 1 MB of messages was found").to.equal(0);
  });

  it("bytes that are not a CheckRequest: an in-band 400 deny, as on the data port", async () => {
    const r = await raw(session, { chunks: [frame(Buffer.from([0xff, 0xff, 0xff, 0xff, 0x0f, 0x08]))] });
    expect(r.trailers["grpc-status"]).to.equal("0");
    const res = message(r);
    expect(res.status?.code).to.be.greaterThan(0);
    expect(res.httpResponse?.$case).to.equal("deniedResponse");
    expect(res.httpResponse?.$case === "deniedResponse" ? res.httpResponse.value.status?.code : undefined).to.equal(400);
  });

  it("an unknown method is UNIMPLEMENTED (trailers-only), naming the method", async () => {
    const r = await raw(session, { path: "/envoy.service.auth.v3.Authorization/Nope", chunks: [frame(new Uint8Array(0))] });
    expect(r.headers[":status"]).to.equal(200);
    expect(r.grpcStatus).to.equal(grpc.status.UNIMPLEMENTED);
    expect(r.headers["grpc-status"], "trailers-only: the status is in the one HEADERS frame").to.equal("12");
    expect(r.headers.date).to.equal(undefined);
    expect(r.grpcMessage).to.include("/envoy.service.auth.v3.Authorization/Nope");
    expect(r.data.length).to.equal(0);
  });

  it("not POST: HTTP 405; not application/grpc: HTTP 415", async () => {
    const get = await new Promise<http2.IncomingHttpHeaders>((resolve) => {
      const st = session.request({ ":method": "GET", ":path": CHECK });
      st.on("response", resolve);
      st.on("error", () => {});
      st.end();
    });
    expect(get[":status"]).to.equal(405);
    const json = await raw(session, { headers: { "content-type": "application/json" }, chunks: [Buffer.from("{}")] });
    expect(json.headers[":status"]).to.equal(415);
    const plus = await raw(session, { headers: { "content-type": "application/grpc+proto" }, chunks: [frame(CheckRequest.encode(checkRequest(secret)).finish())] });
    expect(plus.trailers["grpc-status"], "application/grpc+proto is gRPC").to.equal("0");
  });

  it("no message, a second message, a truncated message: UNIMPLEMENTED, UNIMPLEMENTED, INTERNAL", async () => {
    const none = await raw(session, {});
    expect(none.grpcStatus).to.equal(grpc.status.UNIMPLEMENTED);
    expect(none.grpcMessage).to.match(/no request message/);
    const one = frame(CheckRequest.encode(checkRequest(secret)).finish());
    const two = await raw(session, { chunks: [Buffer.concat([one, one])] });
    expect(two.grpcStatus).to.equal(grpc.status.UNIMPLEMENTED);
    expect(two.grpcMessage).to.match(/second request message/);
    const cut = await raw(session, { chunks: [one.subarray(0, one.length - 3)] });
    expect(cut.grpcStatus).to.equal(grpc.status.INTERNAL);
    const short = await raw(session, { chunks: [Buffer.from([0, 0])] });
    expect(short.grpcStatus).to.equal(grpc.status.INTERNAL);
  });

  it("a message declared over the limit (--data-max-message-bytes, 4 MiB) is RESOURCE_EXHAUSTED as soon as its prefix arrives, and the stream is reset", async () => {
    const prefix = Buffer.from([0, 0, 0, 0, 0]);
    prefix.writeUInt32BE(5 * 1024 * 1024, 1);
    // Only the prefix is sent and the stream is left open: the reply must not wait for a body.
    const r = await raw(session, { chunks: [prefix], end: false, timeoutMs: 3000 });
    expect(r.grpcStatus).to.equal(grpc.status.RESOURCE_EXHAUSTED);
    expect(r.grpcMessage).to.match(/larger than max \(5242880 vs\. 4194304\)/);
    expect(r.rstCode, "RST_STREAM NO_ERROR: stop sending").to.equal(http2.constants.NGHTTP2_NO_ERROR);
  });

  it("compression: UNIMPLEMENTED naming the encoding; a compressed flag without grpc-encoding is INTERNAL", async () => {
    const msg = CheckRequest.encode(checkRequest(secret)).finish();
    const gz = await raw(session, { headers: { "grpc-encoding": "gzip" }, chunks: [frame(msg, 1)] });
    expect(gz.grpcStatus).to.equal(grpc.status.UNIMPLEMENTED);
    expect(gz.grpcMessage).to.include('"gzip"');
    expect(gz.headers["grpc-accept-encoding"]).to.equal("identity");
    const bare = await raw(session, { chunks: [frame(msg, 1)] });
    expect(bare.grpcStatus).to.equal(grpc.status.INTERNAL);
    // grpc-encoding: gzip on an uncompressed message (flag 0) is fine.
    const plain = await raw(session, { headers: { "grpc-encoding": "gzip" }, chunks: [frame(msg)] });
    expect(plain.trailers["grpc-status"]).to.equal("0");
  });

  it("grpc-timeout: DEADLINE_EXCEEDED when the request is not complete in time; a malformed value is INTERNAL", async () => {
    const t0 = Date.now();
    const r = await raw(session, { headers: { "grpc-timeout": "100m" }, chunks: [Buffer.from([0, 0, 0, 1, 0])], end: false, timeoutMs: 3000 });
    expect(r.grpcStatus).to.equal(grpc.status.DEADLINE_EXCEEDED);
    expect(Date.now() - t0).to.be.at.least(90);
    expect(r.rstCode).to.equal(http2.constants.NGHTTP2_CANCEL);
    const bad = await raw(session, { headers: { "grpc-timeout": "soon" }, chunks: [frame(CheckRequest.encode(checkRequest(secret)).finish())] });
    expect(bad.grpcStatus).to.equal(grpc.status.INTERNAL);
    expect(bad.grpcMessage).to.include("grpc-timeout");
    // A request that completes within its timeout is answered normally (Envoy always sends one).
    const ok = await raw(session, { headers: { "grpc-timeout": "200m" }, chunks: [frame(CheckRequest.encode(checkRequest(secret)).finish())] });
    expect(ok.trailers["grpc-status"]).to.equal("0");
  });

  it("a client that resets mid-request leaves the server serving; 500 concurrent calls on one connection are all answered", async () => {
    const st = session.request({ ":method": "POST", ":path": CHECK, "content-type": "application/grpc" });
    st.on("error", () => {});
    st.write(Buffer.from([0, 0, 0, 0, 50, 1, 2]));
    st.close(http2.constants.NGHTTP2_CANCEL);
    const bytes = frame(CheckRequest.encode(checkRequest(secret)).finish());
    const replies = await Promise.all(Array.from({ length: 500 }, () => raw(session, { chunks: [bytes] })));
    expect(replies.filter((r) => r.trailers["grpc-status"] === "0" && (message(r).status?.code ?? 0) === 0)).to.have.length(500);
  });

  it("different replies back to back and concurrently each carry their own bytes (the reused decoder, frame writer and shared headers, issue 18)", async () => {
    const admin = <Res>(method: string, req: unknown) => call<unknown, Res>(s.admin, method, req, s.meta());
    for (const i of [0, 1, 2]) await admin("createGroup", { name: `g${i}`, description: "", priceRatio: "1" });
    const keys = await Promise.all([0, 1, 2].map((i) => admin<CreateKeyResponse>("createKey", { spec: { name: `mix-${i}`, unlimited: true, group: `g${i}` } })));
    const body = JSON.stringify({ model: "gpt-4o-mini", messages: [{ role: "user", content: "hi" }] });
    const kinds = [...keys.map((k) => ({ secret: k.secret, keyId: k.key!.id, group: `g${keys.indexOf(k)}` })), { secret: "sk-unknownunknownunknownunknownunknownunknown2", keyId: "", group: "" }];
    const one = async (i: number) => {
      const k = kinds[i % kinds.length]!;
      const r = await raw(session, { chunks: [frame(CheckRequest.encode(checkRequest(k.secret, i % 3 === 0 ? body : undefined)).finish())] });
      const res = message(r);
      if (k.keyId === "") {
        expect(res.status?.code, "unknown key: a deny").to.equal(16);
        expect(res.httpResponse?.$case).to.equal("deniedResponse");
        return "";
      }
      expect(res.status?.code ?? 0).to.equal(0);
      const ok = res.httpResponse?.$case === "okResponse" ? res.httpResponse.value : undefined;
      const h = (name: string) => ok?.headers.filter((o) => o.header?.key === name).map((o) => o.header?.value);
      expect(h("x-aisa-key-id"), "this request's key").to.deep.equal([k.keyId]);
      expect(h("x-aisa-group")).to.deep.equal([k.group]);
      expect(ok?.headersToRemove).to.deep.equal(["authorization"]);
      expect(res.dynamicMetadata?.key_id).to.equal(k.keyId);
      expect(res.dynamicMetadata?.model).to.equal(i % 3 === 0 ? "gpt-4o-mini" : "");
      const rsv = h("x-aisa-reservation")!;
      expect(rsv).to.have.length(1);
      expect(res.dynamicMetadata?.reservation_id).to.equal(rsv[0]);
      return rsv[0]!;
    };
    const sequential: string[] = [];
    for (let i = 0; i < 16; i++) sequential.push(await one(i));
    const concurrent = await Promise.all(Array.from({ length: 400 }, (_, i) => one(i)));
    const ids = [...sequential, ...concurrent].filter((id) => id !== "");
    expect(new Set(ids).size, "a reservation id per allow").to.equal(ids.length);
  });

  it("concurrent Checks from many different peers each get their own IP whitelist answer (shared peer views and client addresses, issue 18)", async () => {
    const admin = <Res>(method: string, req: unknown) => call<unknown, Res>(s.admin, method, req, s.meta());
    const ipKey = (await admin<CreateKeyResponse>("createKey", { spec: { name: "wire-ips", unlimited: true, ips: ["10.0.0.0/8", "2001:db8::/32"] } })).secret;
    // Inside and outside the list, IPv4, IPv6 and IPv4-mapped, each address several times.
    const peers = Array.from({ length: 60 }, (_, i) => {
      const n = i >> 2;
      switch (i & 3) {
        case 0:
          return { address: `10.${n}.${i}.7`, allowed: true };
        case 1:
          return { address: `11.${n}.${i}.7`, allowed: false };
        case 2:
          return { address: n % 2 === 0 ? `2001:db8::${i.toString(16)}` : `2001:db9::${i.toString(16)}`, allowed: n % 2 === 0 };
        default:
          return { address: n % 2 === 0 ? `::ffff:10.1.2.${i}` : `::ffff:192.0.2.${i}`, allowed: n % 2 === 0 };
      }
    });
    const one = async (k: number) => {
      const p = peers[k % peers.length]!;
      const req = checkRequest(ipKey);
      const src = req.attributes!.source!.address!.address;
      if (src?.$case === "socketAddress") src.value.address = p.address;
      const res = message(await raw(session, { chunks: [frame(CheckRequest.encode(req).finish())] }));
      const reason = res.httpResponse?.$case === "deniedResponse" ? res.httpResponse.value.headers.find((h) => h.header?.key === "x-aisa-reason")?.header?.value : undefined;
      return { address: p.address, want: p.allowed, got: (res.status?.code ?? 0) === 0 && res.httpResponse?.$case === "okResponse", reason };
    };
    const answers = await Promise.all(Array.from({ length: 480 }, (_, k) => one(k)));
    for (const a of answers) {
      expect(a.got, a.address).to.equal(a.want);
      if (!a.want) expect(a.reason, a.address).to.equal("IP_NOT_ALLOWED");
    }
    expect(answers.filter((a) => a.want).length).to.be.within(100, 380);
  });

  it("counts every protocol refusal by reason on /metrics, and logs each reason once a minute, not per request", async () => {
    const metric = async (reason: string): Promise<number> => {
      const text = await (await fetch(`http://${s.metricsAddress}/metrics`)).text();
      const m = new RegExp(`^aisa_envoy_endpoint_rejected_total\\{reason="${reason}"\\} (\\d+)$`, "m").exec(text);
      return m ? Number(m[1]) : 0;
    };
    const before = { compressed: await metric("compressed_message"), unknown: await metric("unknown_method") };
    const msg = CheckRequest.encode(checkRequest(secret)).finish();
    for (let i = 0; i < 5; i++) await raw(session, { headers: { "grpc-encoding": "gzip" }, chunks: [frame(msg, 1)] });
    await raw(session, { path: "/nope.Service/Nope", chunks: [frame(msg)] });
    expect(await metric("compressed_message")).to.equal(before.compressed + 5);
    expect(await metric("unknown_method")).to.equal(before.unknown + 1);
    // A request that was decided is not a refusal.
    const decided = await metric("compressed_message");
    await raw(session, { chunks: [frame(msg)] });
    expect(await metric("compressed_message")).to.equal(decided);
    const warned = s.logs.lines.map((l) => JSON.parse(l)).filter((l) => l.reason === "compressed_message");
    expect(warned, "one line for all the compressed requests of this minute").to.have.length(1);
    expect(warned[0].level).to.equal(40); // warn
    expect(warned[0].details).to.include("gzip");
  });

  it("serves grpc.health.v1 Health/Check from the same state as the other ports (Envoy's gRPC health checker)", async () => {
    // The Envoy endpoint and, for comparison, the grpc-js data port: the same answers.
    const clients = [new HealthClient(s.envoyAddress, grpc.credentials.createInsecure()), new HealthClient(s.dataAddress, grpc.credentials.createInsecure())];
    const check = async (service: string) =>
      Promise.all(
        clients.map(
          (health) =>
            new Promise<{ status?: number; code?: number; details?: string }>((resolve) =>
              health.check({ service }, (err, res) => resolve(err ? { code: err.code, details: err.details } : { status: res!.status })),
            ),
        ),
      );
    const both = <T>(x: T) => [x, x];
    try {
      expect(await check("")).to.deep.equal(both({ status: HealthCheckResponse_ServingStatus.SERVING }));
      expect(await check("envoy.service.auth.v3.Authorization")).to.deep.equal(both({ status: HealthCheckResponse_ServingStatus.SERVING }));
      expect(await check("no.such.Service")).to.deep.equal(both({ code: grpc.status.NOT_FOUND, details: 'unknown service "no.such.Service"' }));
      s.health.set("envoy.service.auth.v3.Authorization", false);
      expect(await check("envoy.service.auth.v3.Authorization")).to.deep.equal(both({ status: HealthCheckResponse_ServingStatus.NOT_SERVING }));
    } finally {
      s.health.set("envoy.service.auth.v3.Authorization", true);
      for (const c of clients) c.close();
    }
  });
});

describe("Envoy endpoint: shutdown and configuration", function () {
  this.timeout(30_000);

  it("stop(): GOAWAY, an in-flight call still completes, then the port is closed", async () => {
    const s = await startTestSidecar();
    const admin = <Res>(method: string, req: unknown) => call<unknown, Res>(s.admin, method, req, s.meta());
    await admin("adjustBalance", { accountId: "default", delta: "1000000", reason: "test seed" });
    const secret = (await admin<CreateKeyResponse>("createKey", { spec: { name: "drain", unlimited: true } })).secret;
    const session = http2.connect(`http://${s.envoyAddress}`);
    const goaway = new Promise<number>((resolve) => session.once("goaway", (code) => resolve(code)));
    session.on("error", () => {});
    try {
      await new Promise<void>((resolve) => session.once("connect", () => resolve()));
      const bytes = frame(CheckRequest.encode(checkRequest(secret)).finish());
      // Half the message now, the rest after stop() has begun.
      const st = session.request({ ":method": "POST", ":path": CHECK, "content-type": "application/grpc" });
      const parts: Buffer[] = [];
      let trailers: http2.IncomingHttpHeaders = {};
      st.on("data", (d: Buffer) => parts.push(d));
      st.on("trailers", (t) => (trailers = t));
      st.on("error", () => {});
      const closed = new Promise<void>((resolve) => st.on("close", () => resolve()));
      st.write(bytes.subarray(0, 10));
      await new Promise((r) => setTimeout(r, 50));
      const stopping = s.stop();
      expect(await goaway).to.equal(http2.constants.NGHTTP2_NO_ERROR);
      st.end(bytes.subarray(10));
      await closed;
      expect(trailers["grpc-status"]).to.equal("0");
      expect(message({ data: Buffer.concat(parts) } as RawReply).status?.code ?? 0).to.equal(0);
      await stopping;
      const refused = await new Promise<boolean>((resolve) => {
        const c = http2.connect(`http://${s.envoyAddress}`);
        c.on("error", () => resolve(true));
        c.on("connect", () => {
          c.close();
          resolve(false);
        });
      });
      expect(refused, "the port is closed after stop()").to.equal(true);
    } finally {
      session.destroy();
      await s.close();
      await removeDir(s.dir);
    }
  });

  it('--envoy-listen "" disables the endpoint; an address in use is an error naming it', async () => {
    const off = await startTestSidecar({ envoyListen: "" });
    try {
      expect(off.envoyAddress).to.equal("");
      const busy = await startTestSidecar();
      try {
        let err: Error | undefined;
        try {
          await startTestSidecar({ envoyListen: busy.envoyAddress });
        } catch (e) {
          err = e as Error;
        }
        expect(err?.message).to.include(`cannot listen on ${busy.envoyAddress}`);
      } finally {
        await busy.close();
        await removeDir(busy.dir);
      }
    } finally {
      await off.close();
      await removeDir(off.dir);
    }
  });
});

describe("h2unary server: the receive bound", function () {
  this.timeout(10_000);

  it("a request without grpc-timeout that never completes gets DEADLINE_EXCEEDED after receiveTimeoutMs; a shorter grpc-timeout wins", async () => {
    const rejected: string[] = [];
    const server = createH2UnaryServer({
      methods: { "/t.T/Echo": { decode: (b: Buffer) => b, handle: (b: Buffer) => b, encode: (b: Buffer) => b } },
      maxReceiveMessageBytes: 1024,
      toStatus: () => ({ code: grpc.status.INTERNAL, details: "x" }),
      onRejected: (reason) => rejected.push(reason),
      receiveTimeoutMs: 150,
    });
    const port = await server.listen("127.0.0.1", 0);
    const session = http2.connect(`http://127.0.0.1:${port}`);
    try {
      const echo = await raw(session, { path: "/t.T/Echo", chunks: [frame(Buffer.from("hi"))] });
      expect(echo.trailers["grpc-status"]).to.equal("0");
      expect(echo.data.subarray(5).toString()).to.equal("hi");
      const t0 = Date.now();
      const stalled = await raw(session, { path: "/t.T/Echo", chunks: [Buffer.from([0, 0, 0, 0, 9, 1])], end: false, timeoutMs: 3000 });
      expect(Date.now() - t0).to.be.at.least(140);
      expect(stalled.grpcStatus).to.equal(grpc.status.DEADLINE_EXCEEDED);
      expect(stalled.grpcMessage).to.include("150 ms");
      expect(stalled.rstCode).to.equal(http2.constants.NGHTTP2_CANCEL);
      const own = await raw(session, { path: "/t.T/Echo", headers: { "grpc-timeout": "20m" }, chunks: [Buffer.from([0, 0, 0, 0, 9])], end: false, timeoutMs: 3000 });
      expect(own.grpcMessage).to.equal("Deadline exceeded");
      expect(rejected).to.deep.equal(["receive_timeout", "deadline_exceeded"]);
    } finally {
      session.destroy();
      await server.close(1000);
    }
  });
});

describe("h2unary server: deadlines armed at the end of the turn (issue 18)", function () {
  this.timeout(10_000);

  it("a message in pieces over several turns within its deadline is answered; one completing after it, or never, is DEADLINE_EXCEEDED; a late answer to a complete request is sent; an answered call's deadline never fires", async () => {
    const rejected: string[] = [];
    let slowMs = 0;
    const server = createH2UnaryServer({
      methods: {
        "/t.T/Echo": {
          decode: (b: Buffer) => b,
          handle: (b: Buffer) => (slowMs > 0 ? new Promise<Buffer>((resolve) => setTimeout(() => resolve(b), slowMs)) : b),
          encode: (b: Buffer) => b,
        },
      },
      maxReceiveMessageBytes: 1024,
      toStatus: () => ({ code: grpc.status.INTERNAL, details: "x" }),
      onRejected: (reason) => rejected.push(reason),
      receiveTimeoutMs: 5000,
    });
    const port = await server.listen("127.0.0.1", 0);
    const session = http2.connect(`http://127.0.0.1:${port}`);
    const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
    /** Headers and `first` now, the rest of `msg` after `laterMs`. */
    const split = (timeout: string, msg: Buffer, first: number, laterMs: number) =>
      new Promise<{ status: string | undefined; data: Buffer; ms: number }>((resolve) => {
        const t0 = Date.now();
        const st = session.request({ ":method": "POST", ":path": "/t.T/Echo", "content-type": "application/grpc", "grpc-timeout": timeout });
        let h: http2.IncomingHttpHeaders = {};
        const parts: Buffer[] = [];
        st.on("response", (x) => (h = x));
        st.on("trailers", (x) => (h = { ...h, ...x }));
        st.on("data", (d: Buffer) => parts.push(d));
        st.on("error", () => {});
        st.on("close", () => resolve({ status: h["grpc-status"] as string | undefined, data: Buffer.concat(parts), ms: Date.now() - t0 }));
        st.write(msg.subarray(0, first));
        setTimeout(() => {
          if (!st.closed && !st.destroyed) st.end(msg.subarray(first));
        }, laterMs);
      });
    try {
      const msg = frame(Buffer.from("hello, deadline"));
      // Completes in a later turn, within the deadline: the timer armed at the end of the first turn is cleared.
      const inTime = await split("2S", msg, 3, 60);
      expect(inTime.status).to.equal("0");
      expect(inTime.data.subarray(5).toString()).to.equal("hello, deadline");
      // Completes after its deadline: refused when the deadline passes, measured from the call's start.
      const late = await split("40m", msg, 7, 400);
      expect(late.status).to.equal(String(grpc.status.DEADLINE_EXCEEDED));
      expect(late.ms).to.be.at.least(35);
      expect(rejected).to.deep.equal(["deadline_exceeded"]);
      // Never completes: refused too (the existing receive-bound case, with the client's deadline).
      const never = await raw(session, { path: "/t.T/Echo", headers: { "grpc-timeout": "30m" }, chunks: [Buffer.from([0, 0, 0])], end: false, timeoutMs: 3000 });
      expect(never.grpcMessage).to.equal("Deadline exceeded");
      // Complete in its first turn, answered after its deadline: the deadline covers the request's arrival only (as before).
      slowMs = 80;
      const slow = await raw(session, { path: "/t.T/Echo", headers: { "grpc-timeout": "20m" }, chunks: [msg] });
      expect(slow.trailers["grpc-status"]).to.equal("0");
      slowMs = 0;
      // 300 calls answered at once, then a reset one: no deadline fires for any of them afterwards.
      const many = await Promise.all(Array.from({ length: 300 }, () => raw(session, { path: "/t.T/Echo", headers: { "grpc-timeout": "30m" }, chunks: [msg] })));
      expect(many.filter((r) => r.trailers["grpc-status"] === "0")).to.have.length(300);
      const st = session.request({ ":method": "POST", ":path": "/t.T/Echo", "content-type": "application/grpc", "grpc-timeout": "30m" });
      st.on("error", () => {});
      st.write(msg.subarray(0, 4));
      st.close(http2.constants.NGHTTP2_CANCEL);
      await sleep(120);
      // (The reset call is reported as truncated, as before this change: node:http2 ends its readable side.)
      expect(rejected.filter((r) => r === "deadline_exceeded")).to.have.length(2);
      const after = await raw(session, { path: "/t.T/Echo", chunks: [msg] });
      expect(after.trailers["grpc-status"], "still serving").to.equal("0");
    } finally {
      session.destroy();
      await server.close(1000);
    }
  });
});

describe("h2unary server: the buffer budget and the idle count", function () {
  this.timeout(15_000);
  const echo = { "/t.T/Echo": { decode: (b: Buffer) => b, handle: (b: Buffer) => b, encode: (b: Buffer) => b } };

  it("incomplete requests count against maxBufferedBytes across streams; every way a call ends gives its bytes back", async () => {
    const rejected: string[] = [];
    const server = createH2UnaryServer({ methods: echo, maxReceiveMessageBytes: 1000, maxBufferedBytes: 1000, toStatus: () => ({ code: grpc.status.INTERNAL, details: "x" }), onRejected: (r) => rejected.push(r) });
    const port = await server.listen("127.0.0.1", 0);
    const session = http2.connect(`http://127.0.0.1:${port}`);
    // A request of `n` message bytes whose prefix and first `sent` bytes are written, the rest never.
    const partial = (n: number, sent: number, timeoutMs = 3000) => {
      const f = frame(Buffer.alloc(n, 7));
      return raw(session, { path: "/t.T/Echo", headers: { "grpc-timeout": `${timeoutMs}m` }, chunks: [f.subarray(0, 5 + sent)], end: false, timeoutMs: 5000 });
    };
    const settled = async (p: Promise<RawReply>) => (await p).grpcStatus;
    try {
      // 600 + 5 bytes held by one stream; 400 + 5 more on a second would pass 1000: refused.
      const a = partial(900, 600, 400);
      await new Promise((r) => setTimeout(r, 100));
      const b = await partial(900, 400);
      expect(b.grpcStatus).to.equal(grpc.status.RESOURCE_EXHAUSTED);
      expect(b.grpcMessage).to.match(/holds 1010 bytes of incomplete requests \(at most 1000\)/);
      // The first one's deadline passes: its 605 bytes are given back, so the same second request now fits.
      expect(await settled(a)).to.equal(grpc.status.DEADLINE_EXCEEDED);
      const c = partial(900, 400, 300);
      await new Promise((r) => setTimeout(r, 100));
      // A complete call beside it is answered; its bytes are given back when it ends.
      const done = await raw(session, { path: "/t.T/Echo", chunks: [frame(Buffer.alloc(500, 1))] });
      expect(done.trailers["grpc-status"]).to.equal("0");
      expect(done.data.length).to.equal(505);
      expect(await settled(c)).to.equal(grpc.status.DEADLINE_EXCEEDED);
      // A client reset mid-request gives its bytes back too (node:http2 ends the stream's readable
      // side: the server sees a truncated message).
      const reset = session.request({ ":method": "POST", ":path": "/t.T/Echo", "content-type": "application/grpc", te: "trailers" }, { endStream: false });
      reset.on("error", () => {});
      reset.write(frame(Buffer.alloc(900, 3)).subarray(0, 905 - 100));
      await new Promise((r) => setTimeout(r, 100));
      reset.close(http2.constants.NGHTTP2_CANCEL);
      await new Promise((r) => setTimeout(r, 100));
      // Refused ones too (a second message): afterwards the whole budget is free again.
      const two = await raw(session, { path: "/t.T/Echo", chunks: [Buffer.concat([frame(Buffer.alloc(300)), frame(Buffer.alloc(300))])] });
      expect(two.grpcStatus).to.equal(grpc.status.UNIMPLEMENTED);
      const full = await raw(session, { path: "/t.T/Echo", chunks: [frame(Buffer.alloc(990, 2))] });
      expect(full.trailers["grpc-status"], "990 + 5 bytes fit in an empty budget").to.equal("0");
      expect(rejected).to.deep.equal(["buffer_budget", "deadline_exceeded", "deadline_exceeded", "truncated_message", "second_message"]);
    } finally {
      session.destroy();
      await server.close(1000);
    }
  });

  /** An h2unary server with a 200 ms idle timeout, one client session on it, its GOAWAYs counted. */
  const idleSession = async (methods: Parameters<typeof createH2UnaryServer>[0]["methods"]) => {
    const server = createH2UnaryServer({ methods, maxReceiveMessageBytes: 1024, toStatus: () => ({ code: grpc.status.INTERNAL, details: "x" }), idleTimeoutMs: 200 });
    const port = await server.listen("127.0.0.1", 0);
    const session = http2.connect(`http://127.0.0.1:${port}`);
    const seen = { goaway: 0 };
    session.on("goaway", () => seen.goaway++);
    session.on("error", () => {});
    return { server, session, seen };
  };

  it("a session is closed once idle for idleTimeoutMs, never while a call is open", async () => {
    const { server, session, seen } = await idleSession(echo);
    try {
      // Calls answered and a call held open (its prefix only, no deadline for 1 s) past several idle periods.
      for (let i = 0; i < 3; i++) expect((await raw(session, { path: "/t.T/Echo", chunks: [frame(Buffer.from("x"))] })).trailers["grpc-status"]).to.equal("0");
      const open = raw(session, { path: "/t.T/Echo", headers: { "grpc-timeout": "1S" }, chunks: [Buffer.from([0, 0, 0, 0, 9])], end: false, timeoutMs: 5000 });
      await new Promise((r) => setTimeout(r, 700));
      expect(seen.goaway, "no GOAWAY while a call is open").to.equal(0);
      expect((await open).grpcStatus).to.equal(grpc.status.DEADLINE_EXCEEDED);
      // Now idle: closed within 1.5 × idleTimeoutMs (+ slack for a busy machine).
      const t0 = Date.now();
      await new Promise<void>((resolve) => (session.closed || session.destroyed ? resolve() : session.once("close", () => resolve())));
      expect(seen.goaway).to.be.at.least(1);
      expect(Date.now() - t0).to.be.below(3000);
    } finally {
      session.destroy();
      await server.close(1000);
    }
  });

  it("an answer the method gives later keeps its session open until sent; calls reset by the client leave it closable", async () => {
    // A complete request is settled in its first turn (no close listener, not counted open): an
    // answer still to come must count itself, or the idle check closes the session under it.
    let release: () => void = () => {};
    const later = new Promise<void>((r) => (release = r));
    const methods = { ...echo, "/t.T/Later": { decode: (b: Buffer) => b, handle: async (b: Buffer) => (await later, b), encode: (b: Buffer) => b } };
    const { server, session, seen } = await idleSession(methods);
    try {
      const pending = raw(session, { path: "/t.T/Later", chunks: [frame(Buffer.from("late"))], timeoutMs: 5000 });
      await new Promise((r) => setTimeout(r, 700));
      expect(seen.goaway, "no GOAWAY while an answer is pending").to.equal(0);
      release();
      const answered = await pending;
      expect(answered.trailers["grpc-status"]).to.equal("0");
      expect(answered.data.subarray(5).toString()).to.equal("late");
      // Calls the client resets, complete or not, in their first turn: none stays counted.
      for (let i = 0; i < 20; i++) {
        const s = session.request({ ":method": "POST", ":path": "/t.T/Echo", "content-type": "application/grpc" }, { endStream: false });
        s.on("error", () => {});
        s.write(i % 2 ? frame(Buffer.from("x")) : Buffer.from([0, 0]));
        s.close(http2.constants.NGHTTP2_CANCEL);
      }
      const t0 = Date.now();
      await new Promise<void>((resolve) => (session.closed || session.destroyed ? resolve() : session.once("close", () => resolve())));
      expect(seen.goaway).to.be.at.least(1);
      expect(Date.now() - t0).to.be.below(3000);
    } finally {
      release();
      session.destroy();
      await server.close(1000);
    }
  });
});

describe("gRPC wire helpers", () => {
  it("parseGrpcTimeout: every unit, and null for anything else", () => {
    expect(parseGrpcTimeout("200m")).to.equal(200);
    expect(parseGrpcTimeout("2S")).to.equal(2000);
    expect(parseGrpcTimeout("1M")).to.equal(60_000);
    expect(parseGrpcTimeout("1H")).to.equal(3_600_000);
    expect(parseGrpcTimeout("5000u")).to.equal(5);
    expect(parseGrpcTimeout("1000000n")).to.equal(1);
    for (const bad of ["", "m", "200", "123456789m", "-1m", "1x", "1.5S"]) expect(parseGrpcTimeout(bad), bad).to.equal(null);
  });

  it("parseGrpcTimeout: the hand-read form answers what the expression answers, over 50,000 random values (issue 18)", () => {
    const units: Record<string, number> = { H: 3_600_000, M: 60_000, S: 1000, m: 1, u: 0.001, n: 0.000001 };
    const reference = (v: string): number | null => {
      const m = /^(\d{1,8})\s*([HMSmun])$/.exec(v.trim());
      return m ? Number(m[1]) * units[m[2]!]! : null;
    };
    const alphabet = "0123456789012345678901234567890123456789HMSmunHMSmunxh .\t-+";
    let seed = 7;
    const r = () => ((seed = (Math.imul(seed, 1103515245) + 12345) >>> 0) / 4294967296);
    let parsed = 0;
    for (let i = 0; i < 50_000; i++) {
      let v = "";
      for (let k = Math.floor(r() * 12); k > 0; k--) v += alphabet[Math.floor(r() * alphabet.length)];
      if (r() < 0.5) v = String(Math.floor(r() * 10 ** Math.floor(r() * 10))) + "HMSmun"[Math.floor(r() * 6)];
      const want = reference(v);
      expect(parseGrpcTimeout(v), JSON.stringify(v)).to.equal(want);
      if (want !== null) parsed++;
    }
    expect(parsed).to.be.greaterThan(10_000);
  });

  it("encodeGrpcMessage: printable ASCII as is, '%' and the rest as %XX of UTF-8", () => {
    expect(encodeGrpcMessage("unknown service")).to.equal("unknown service");
    expect(encodeGrpcMessage("100% done")).to.equal("100%25 done");
    expect(encodeGrpcMessage("a\nb")).to.equal("a%0Ab");
    expect(encodeGrpcMessage("é")).to.equal("%C3%A9");
    expect(decodeURIComponent(encodeGrpcMessage("naïve 100% \u{1F600}"))).to.equal("naïve 100% \u{1F600}");
  });
});
