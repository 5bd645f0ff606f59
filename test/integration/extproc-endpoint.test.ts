// ext_proc's Process on the Envoy endpoint (transport/h2stream.ts) at the wire, with a raw
// HTTP/2 client: several messages in one DATA chunk and one message across chunks, answered in
// order as one frame each, then grpc-status 0 after the half-close; refusals of an oversized,
// compressed, undecodable or truncated message.
import { expect } from "chai";
import http2 from "node:http2";
import { ProcessingRequest, ProcessingResponse } from "../../src/gen/envoy/service/ext_proc/v3/external_processor.js";
import type { CreateKeyResponse } from "../../src/gen/aisa/v1/admin.js";
import { AuthorizationClient, CheckRequest, type CheckResponse } from "../../src/gen/envoy/service/auth/v3/external_auth.js";
import * as grpc from "@grpc/grpc-js";
import { EnvoyExtProc } from "../helpers/extproc.js";
import { call, removeDir, startTestSidecar, type TestSidecar } from "../helpers/sidecar.js";

const PROCESS = "/envoy.service.ext_proc.v3.ExternalProcessor/Process";

function frame(msg: Uint8Array, flag = 0): Buffer {
  const b = Buffer.alloc(5 + msg.length);
  b[0] = flag;
  b.writeUInt32BE(msg.length, 1);
  Buffer.from(msg).copy(b, 5);
  return b;
}

const msg = (p: Partial<ProcessingRequest>) => Buffer.from(ProcessingRequest.encode(ProcessingRequest.fromPartial(p as ProcessingRequest)).finish());
const hv = (key: string, v: string) => ({ key, value: "", rawValue: Buffer.from(v) });

interface Reply {
  headers: http2.IncomingHttpHeaders;
  answers: ProcessingResponse[];
  grpcStatus: number | undefined;
  grpcMessage: string;
}

/** Writes `chunks` (then half-closes unless `end` is false) and collects the answers. */
function raw(session: http2.ClientHttp2Session, chunks: Buffer[], end = true): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const stream = session.request({ ":method": "POST", ":path": PROCESS, "content-type": "application/grpc", te: "trailers" }, { endStream: false });
    let trailers: http2.IncomingHttpHeaders = {};
    let headers: http2.IncomingHttpHeaders = {};
    const parts: Buffer[] = [];
    const timer = setTimeout(() => reject(new Error("no reply within 5 s")), 5000);
    stream.on("response", (h) => (headers = h));
    stream.on("trailers", (t) => (trailers = t));
    stream.on("data", (d: Buffer) => parts.push(d));
    stream.on("error", () => {});
    stream.on("close", () => {
      clearTimeout(timer);
      let data = Buffer.concat(parts);
      const answers: ProcessingResponse[] = [];
      while (data.length >= 5) {
        const len = data.readUInt32BE(1);
        answers.push(ProcessingResponse.decode(data.subarray(5, 5 + len)));
        data = data.subarray(5 + len);
      }
      const st = trailers["grpc-status"] ?? headers["grpc-status"];
      resolve({ headers, answers, grpcStatus: st === undefined ? undefined : Number(st), grpcMessage: decodeURIComponent(String(trailers["grpc-message"] ?? headers["grpc-message"] ?? "")) });
    });
    for (const c of chunks) stream.write(c);
    if (end) stream.end();
  });
}

describe("ext_proc on the Envoy endpoint: the wire", function () {
  this.timeout(30_000);
  let s: TestSidecar;
  let session: http2.ClientHttp2Session;

  before(async () => {
    s = await startTestSidecar({ dataMaxMessageBytes: 64 * 1024 });
    session = http2.connect(`http://${s.envoyAddress}`);
  });
  after(async () => {
    session.close();
    await s.close();
    await removeDir(s.dir);
  });

  const reqHeaders = frame(msg({ request: { $case: "requestHeaders", value: { headers: { headers: [hv(":path", "/v1/models")] }, endOfStream: true } } }));
  const respHeaders = frame(msg({ request: { $case: "responseHeaders", value: { headers: { headers: [hv(":status", "200"), hv("content-type", "application/json")] }, endOfStream: false } } }));
  const body = frame(msg({ request: { $case: "responseBody", value: { body: Buffer.from('{"ok":true}'), endOfStream: true } } }));

  it("messages packed in one DATA chunk and split across chunks: answered in order, then grpc-status 0", async () => {
    const packed = Buffer.concat([reqHeaders, respHeaders, body.subarray(0, 3)]);
    const r = await raw(session, [packed, body.subarray(3, 9), body.subarray(9)]);
    expect(r.grpcStatus).to.equal(0);
    expect(r.answers.map((a) => a.response?.$case)).to.deep.equal(["requestHeaders", "responseHeaders", "responseBody"]);
    expect(r.headers[":status"]).to.equal(200);
    expect(r.headers.date, "no date header, as the Check's replies (gRPC has no use for it)").to.equal(undefined);
  });

  it("a message declared over --data-max-message-bytes: RESOURCE_EXHAUSTED", async () => {
    const big = Buffer.alloc(5);
    big.writeUInt32BE(1024 * 1024, 1);
    const r = await raw(session, [reqHeaders, big], false);
    expect(r.grpcStatus).to.equal(8);
    expect(r.answers).to.have.length(1);
  });

  it("a compressed message: UNIMPLEMENTED", async () => {
    const r = await raw(session, [frame(msg({ request: { $case: "requestHeaders", value: { headers: { headers: [] }, endOfStream: true } } }), 1)], false);
    expect(r.grpcStatus).to.equal(12);
  });

  it("bytes that are not a ProcessingRequest: INVALID_ARGUMENT", async () => {
    const r = await raw(session, [frame(Buffer.from([0x12, 0xff, 0xff, 0xff, 0x0f]))]);
    expect(r.grpcStatus).to.equal(3);
  });

  it("a truncated message before the half-close: INTERNAL", async () => {
    const r = await raw(session, [reqHeaders, body.subarray(0, 7)]);
    expect(r.grpcStatus).to.equal(13);
    expect(r.answers).to.have.length(1);
  });

  it("the endpoint keeps serving Check streams' neighbours: a stream after the refusals succeeds", async () => {
    const r = await raw(session, [reqHeaders, respHeaders, body]);
    expect(r.grpcStatus).to.equal(0);
    expect(r.answers).to.have.length(3);
  });
});

describe("ext_proc with a consume token (AISA_CONSUME_TOKEN): a settlement is a charge", function () {
  this.timeout(30_000);
  let s: TestSidecar;
  before(async () => {
    s = await startTestSidecar({ consumeToken: "consume-secret-16" });
  });
  after(async () => {
    await s.close();
    await removeDir(s.dir);
  });

  for (const via of ["envoy endpoint", "data port"] as const) {
    it(`via the ${via}: UNAUTHENTICATED without the bearer, metered with it`, async () => {
      const admin = <Res>(method: string, req: unknown) => call<unknown, Res>(s.admin, method, req, s.meta());
      await admin("adjustBalance", { accountId: "default", delta: "1000000", reason: "seed" });
      const k = await admin<CreateKeyResponse>("createKey", { spec: { name: `tok-${via}`, unlimited: true } });
      const authz = new AuthorizationClient(s.envoyAddress, grpc.credentials.createInsecure());
      const req = CheckRequest.fromPartial({
        attributes: { request: { http: { method: "GET", path: "/v1/models", headers: { authorization: `Bearer ${k.secret}` } } }, source: { address: { address: { $case: "socketAddress", value: { address: "203.0.113.7", portSpecifier: { $case: "portValue", value: 1 } } } } } },
      } as any);
      const c = await new Promise<CheckResponse>((res, rej) => authz.check(req, (e, r) => (e ? rej(e) : res(r!))));
      authz.close();
      const md = c.dynamicMetadata!;
      const address = via === "data port" ? s.dataAddress : s.envoyAddress;
      const anon = new EnvoyExtProc(address);
      const err = await anon.play({ status: 200, headers: { "content-type": "application/json" }, chunks: [Buffer.from('{"usage":{"prompt_tokens":1,"completion_tokens":1}}')] }, { metadata: md }).then(
        () => null,
        (e: Error) => e,
      );
      anon.close();
      expect(err?.message).to.match(/UNAUTHENTICATED/);
      const ok = new EnvoyExtProc(address, "consume-secret-16");
      const answers = await ok.play({ status: 200, headers: { "content-type": "application/json" }, chunks: [Buffer.from('{"model":"x","usage":{"prompt_tokens":1,"completion_tokens":1}}')] }, { metadata: md });
      ok.close();
      // GET /v1/models names no model and "x" has no price: the estimate, charged once.
      expect(answers[answers.length - 1]!.dynamicMetadata?.["aisa.authz"]).to.deep.include({ settlement: "charged_estimate" });
    });
  }
});

describe("ext_proc at shutdown: a stream cut by SIGTERM's drain is still charged", function () {
  this.timeout(60_000);
  for (const via of ["envoy endpoint", "data port"] as const) {
    it(`via the ${via}: the estimate is in the ledger after the stop`, async () => {
      const s = await startTestSidecar();
      const admin = <Res>(method: string, req: unknown) => call<unknown, Res>(s.admin, method, req, s.meta());
      await admin("adjustBalance", { accountId: "default", delta: "1000000", reason: "seed" });
      const k = await admin<CreateKeyResponse>("createKey", { spec: { name: "shutdown", unlimited: true } });
      const authz = new AuthorizationClient(s.envoyAddress, grpc.credentials.createInsecure());
      const req = CheckRequest.fromPartial({
        attributes: { request: { http: { method: "GET", path: "/v1/models", headers: { authorization: `Bearer ${k.secret}` } } }, source: { address: { address: { $case: "socketAddress", value: { address: "203.0.113.7", portSpecifier: { $case: "portValue", value: 1 } } } } } },
      } as any);
      const c = await new Promise<CheckResponse>((res, rej) => authz.check(req, (e, r) => (e ? rej(e) : res(r!))));
      authz.close();
      const rsv = String(c.dynamicMetadata!.reservation_id);
      const ep = new EnvoyExtProc(via === "data port" ? s.dataAddress : s.envoyAddress);
      const stream = ep.client.process();
      stream.on("error", () => {});
      let answers = 0;
      const two = new Promise<void>((resolve) => stream.on("data", () => ++answers === 2 && resolve()));
      const mdc = { filterMetadata: { "envoy.filters.http.ext_authz": c.dynamicMetadata! }, typedFilterMetadata: {} };
      stream.write(ProcessingRequest.fromPartial({ request: { $case: "requestHeaders", value: { headers: { headers: [hv(":path", "/v1/chat/completions")] }, endOfStream: false } }, metadataContext: mdc } as any));
      stream.write(ProcessingRequest.fromPartial({ request: { $case: "responseHeaders", value: { headers: { headers: [hv(":status", "200"), hv("content-type", "text/event-stream")] }, endOfStream: false } }, metadataContext: mdc } as any));
      await two;
      await s.close(); // the stream never ends on its own: the drain's grace cuts it
      ep.close();
      const { LevelStore } = await import("../../src/store/level/levelStore.js");
      const { meteredRequestId } = await import("../../src/service/metering.js");
      const store = new LevelStore({ dir: s.dir });
      await store.open(Date.now());
      try {
        const r = await store.findConsume(meteredRequestId(rsv));
        expect(r?.units).to.equal(Number(c.dynamicMetadata!.reserved_units));
      } finally {
        await store.close();
        await removeDir(s.dir);
      }
    });
  }
});
