// Envoy ext_proc metering end to end: an Envoy Check on the Envoy endpoint, then an Envoy-shaped
// ext_proc stream (test/helpers/extproc.ts) on the data port, then the ledger — for every usage
// format, tied by metadata_context and by the x-aisa-reservation header, with the edge cases of
// issue 16; keys and accounts reconcile with the ledger to the unit.
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { gzipSync } from "node:zlib";
import * as grpc from "@grpc/grpc-js";
import { expect } from "chai";
import type { CreateKeyResponse } from "../../src/gen/aisa/v1/admin.js";
import type { ConsumeResponse } from "../../src/gen/aisa/v1/authorizer.js";
import { AuthorizationClient, CheckRequest, type CheckResponse } from "../../src/gen/envoy/service/auth/v3/external_auth.js";
import { ProcessingMode_BodySendMode } from "../../src/gen/envoy/extensions/filters/http/ext_proc/v3/processing_mode.js";
import type { ProcessingResponse } from "../../src/gen/envoy/service/ext_proc/v3/external_processor.js";
import { meteredRequestId } from "../../src/service/metering.js";
import type { ConsumeRecord } from "../../src/store/types.js";
import type { LevelStore } from "../../src/store/level/levelStore.js";
import { chunked, EnvoyExtProc } from "../helpers/extproc.js";
import { call, removeDir, startTestSidecar, type TestSidecar } from "../helpers/sidecar.js";

const FIX = join(import.meta.dirname, "..", "fixtures", "metering");
const fixture = (f: string) => readFileSync(join(FIX, f));
const SSE = { "content-type": "text/event-stream; charset=utf-8" };
const JSON_CT = { "content-type": "application/json" };

// Units per 1M tokens: input 75,000, output 300,000 (gpt-4o-mini's), the same for every model here.
const IN = 75_000;
const OUT = 300_000;
const cost = (i: number, o: number) => Math.ceil((i * IN + o * OUT) / 1e6);

// Process is served on the Envoy endpoint (node:http2, transport/h2stream.ts) and on the grpc-js
// data port: every case runs against both.
for (const via of ["envoy endpoint", "data port"] as const) describe(`Envoy ext_proc metering (Check → ext_proc → ledger), via the ${via}`, function () {
  this.timeout(60_000);
  let s: TestSidecar;
  let authz: AuthorizationClient;
  let ep: EnvoyExtProc;
  let keyId = "";
  let secret = "";
  let skew = 0;
  const admin = <Res>(method: string, req: unknown) => call<unknown, Res>(s.admin, method, req, s.meta());

  before(async () => {
    s = await startTestSidecar({ clock: () => Date.now() + skew });
    await admin("adjustBalance", { accountId: "default", delta: "100000000", reason: "seed" });
    for (const model of ["gpt-4o-mini", "o4-mini", "text-embedding-3-small", "gpt-3.5-turbo-instruct", "claude-sonnet-4-5", "gemini-2.5-flash", "gemini-2.5-pro", "gemini-2.0-flash"]) {
      await admin("setPrice", { price: { model, inputPerMillion: String(IN), outputPerMillion: String(OUT), perRequest: "0" } });
    }
    const k = await admin<CreateKeyResponse>("createKey", { spec: { name: "metered", quota: "50000000" } });
    keyId = k.key!.id;
    secret = k.secret;
    authz = new AuthorizationClient(s.envoyAddress, grpc.credentials.createInsecure());
    ep = new EnvoyExtProc(via === "data port" ? s.dataAddress : s.envoyAddress);
  });
  after(async () => {
    authz.close();
    ep.close();
    await s.close();
    await removeDir(s.dir);
  });

  /** An Envoy Check of a chat request for `model` with max_tokens 100: its dynamic metadata. */
  async function check(model = "gpt-4o-mini"): Promise<Record<string, any>> {
    const req = CheckRequest.fromPartial({
      attributes: {
        source: { address: { address: { $case: "socketAddress", value: { address: "203.0.113.7", portSpecifier: { $case: "portValue", value: 1 } } } } },
        request: { http: { method: "POST", path: "/v1/chat/completions", headers: { authorization: `Bearer ${secret}`, "content-type": "application/json" }, body: JSON.stringify({ model, max_tokens: 100, stream: true }) } },
      },
    } as any);
    const res = await new Promise<CheckResponse>((resolve, reject) => authz.check(req, (err, r) => (err ? reject(err) : resolve(r!))));
    expect(res.status?.code, JSON.stringify(res.dynamicMetadata)).to.equal(0);
    return res.dynamicMetadata!;
  }

  const ledger = (rsv: string) => s.store.findConsume(meteredRequestId(rsv));
  async function eventually<T>(f: () => Promise<T | undefined>): Promise<T> {
    for (let i = 0; i < 200; i++) {
      const v = await f();
      if (v !== undefined) return v;
      await new Promise((r) => setTimeout(r, 10));
    }
    throw new Error("timed out");
  }
  const lastMetadata = (answers: ProcessingResponse[]) => answers[answers.length - 1]!.dynamicMetadata?.["aisa.authz"];

  const FORMATS: { file: string; ct: Record<string, string>; model: string; i: number; o: number }[] = [
    { file: "openai-chat.json", ct: JSON_CT, model: "gpt-4o-mini", i: 1200, o: 345 },
    { file: "openai-chat-stream.sse", ct: SSE, model: "gpt-4o-mini", i: 87, o: 412 },
    { file: "openai-chat-stream-crlf.sse", ct: SSE, model: "gpt-4o-mini", i: 87, o: 412 },
    { file: "openai-responses.json", ct: JSON_CT, model: "o4-mini", i: 50, o: 70 },
    { file: "openai-responses-stream.sse", ct: SSE, model: "o4-mini", i: 2000, o: 900 },
    { file: "openai-embeddings.json", ct: JSON_CT, model: "text-embedding-3-small", i: 8, o: 0 },
    { file: "openai-completions.json", ct: JSON_CT, model: "gpt-3.5-turbo-instruct", i: 5, o: 7 },
    { file: "anthropic.json", ct: JSON_CT, model: "claude-sonnet-4-5", i: 5021, o: 150 },
    { file: "anthropic-stream.sse", ct: SSE, model: "claude-sonnet-4-5", i: 9480, o: 503 },
    { file: "gemini.json", ct: JSON_CT, model: "gemini-2.5-flash", i: 640, o: 520 },
    { file: "gemini-stream.sse", ct: SSE, model: "gemini-2.5-pro", i: 30, o: 109 },
    { file: "gemini-stream-array.json", ct: JSON_CT, model: "gemini-2.0-flash", i: 11, o: 6 },
  ];

  for (const f of FORMATS) {
    it(`${f.file}: metadata-tied, 7 chunks → charged ${f.i}/${f.o} tokens at the Check's model`, async () => {
      const md = await check(f.model);
      const answers = await ep.play({ status: 200, headers: f.ct, chunks: chunked(fixture(f.file), 7) }, { metadata: md });
      // Every message answered; STREAMED asked for only for event streams.
      expect(answers.length).to.equal(2 + chunked(fixture(f.file), 7).length);
      expect(answers[1]!.response?.$case).to.equal("responseHeaders");
      expect(answers[1]!.modeOverride?.responseBodyMode).to.equal(f.ct === SSE ? ProcessingMode_BodySendMode.STREAMED : undefined);
      const r = (await ledger(md.reservation_id))!;
      expect(r, "ledger entry").to.not.equal(undefined);
      expect([r.model, r.inputTokens, r.outputTokens, r.units, r.keyId, r.reservationId]).to.deep.equal([f.model, f.i, f.o, cost(f.i, f.o), keyId, md.reservation_id]);
      expect(lastMetadata(answers)).to.deep.include({ settlement: "charged_usage", units: cost(f.i, f.o), input_tokens: f.i, output_tokens: f.o });
    });
  }

  it("an SSE stream one byte per message (every chunk boundary), tied by the x-aisa-reservation header only", async () => {
    const md = await check();
    const body = fixture("anthropic-stream.sse");
    const answers = await ep.play({ status: 200, headers: SSE, chunks: chunked(body, body.length) }, { requestHeaders: { "x-aisa-reservation": md.reservation_id } });
    expect(answers.length).to.equal(2 + body.length);
    const r = (await ledger(md.reservation_id))!;
    // No metadata: the model is the response's (claude-sonnet-4-5, priced).
    expect([r.model, r.inputTokens, r.outputTokens, r.units]).to.deep.equal(["claude-sonnet-4-5", 9480, 503, cost(9480, 503)]);
  });

  it("header-only: a dated response model is priced as its undated name (gpt-4o-mini-2024-07-18 → gpt-4o-mini)", async () => {
    const md = await check();
    await ep.play({ status: 200, headers: SSE, chunks: chunked(fixture("openai-chat-stream.sse"), 3) }, { requestHeaders: { "x-aisa-reservation": md.reservation_id } });
    const r = (await ledger(md.reservation_id))!;
    expect([r.model, r.units]).to.deep.equal(["gpt-4o-mini", cost(87, 412)]);
  });

  it("gzip: a compressed event stream is read across chunks", async () => {
    const md = await check("claude-sonnet-4-5");
    await ep.play({ status: 200, headers: { ...SSE, "content-encoding": "gzip" }, chunks: chunked(gzipSync(fixture("anthropic-stream.sse")), 5) }, { metadata: md });
    const r = (await ledger(md.reservation_id))!;
    expect([r.inputTokens, r.outputTokens]).to.deep.equal([9480, 503]);
  });

  for (const status of [429, 500]) {
    it(`upstream ${status}: the reservation is released, nothing charged, the body not asked for`, async () => {
      const before = s.store.openReservations;
      const md = await check();
      expect(s.store.openReservations).to.equal(before + 1);
      const answers = await ep.play({ status, headers: JSON_CT, chunks: [fixture("error-429.json")] }, { metadata: md });
      expect(answers[1]!.modeOverride?.responseBodyMode).to.equal(ProcessingMode_BodySendMode.NONE);
      expect(await ledger(md.reservation_id)).to.equal(undefined);
      expect(s.store.openReservations).to.equal(before);
    });
  }

  it("client disconnect before usage: the reservation's estimate is charged (once)", async () => {
    const md = await check();
    const body = fixture("openai-chat-stream.sse");
    await ep.play({ status: 200, headers: SSE, chunks: chunked(body, 10), cutAfter: 4, cut: "cancel" }, { metadata: md });
    const r = await eventually(() => ledger(md.reservation_id));
    // Estimate: 1000 input tokens assumed + max_tokens 100 → 75 + 30 = 105 units.
    expect([r.units, r.inputTokens, r.outputTokens, Number(md.reserved_units)]).to.deep.equal([105, 0, 0, 105]);
  });

  it("a stream cut mid-event (no end_of_stream, usage never arrived): the estimate", async () => {
    const md = await check();
    const body = fixture("openai-chat-stream.sse");
    const cut = body.indexOf('"choices":[],') + 5;
    await ep.play({ status: 200, headers: SSE, chunks: [body.subarray(0, cut)], cutAfter: 1, cut: "halfclose" }, { metadata: md });
    const r = await eventually(() => ledger(md.reservation_id));
    expect(r.units).to.equal(105);
  });

  it("an Anthropic stream cut after message_start (its output count a placeholder): the estimate, not the placeholder", async () => {
    const md = await check("claude-sonnet-4-5");
    const body = fixture("anthropic-stream.sse");
    const cut = body.indexOf("event: content_block_start");
    await ep.play({ status: 200, headers: SSE, chunks: [body.subarray(0, cut), body.subarray(cut)], cutAfter: 1, cut: "cancel" }, { metadata: md });
    const r = await eventually(() => ledger(md.reservation_id));
    expect([r.units, r.outputTokens]).to.deep.equal([105, 0]);
  });

  it("usage only in the last chunk: charged from it", async () => {
    const md = await check();
    const body = fixture("openai-chat-stream.sse");
    const at = body.indexOf('"choices":[],');
    const answers = await ep.play({ status: 200, headers: SSE, chunks: [body.subarray(0, at), body.subarray(at)] }, { metadata: md });
    expect(answers.length).to.equal(4);
    expect((await ledger(md.reservation_id))!.outputTokens).to.equal(412);
  });

  it("a 2xx body without usage (chat stream without include_usage): the estimate", async () => {
    const md = await check();
    const body = Buffer.from('data: {"id":"x","object":"chat.completion.chunk","model":"gpt-4o-mini","choices":[{"index":0,"delta":{"content":"hi"}}]}\n\ndata: [DONE]\n\n');
    const answers = await ep.play({ status: 200, headers: SSE, chunks: [body] }, { metadata: md });
    expect(lastMetadata(answers)).to.deep.include({ settlement: "charged_estimate", units: 105 });
  });

  it("a Check whose reservation already expired: still charged from the usage", async () => {
    const md = await check();
    skew = 11 * 60_000; // past the 10-minute reservation TTL
    try {
      s.store.releaseExpired(Date.now() + skew);
      const answers = await ep.play({ status: 200, headers: SSE, chunks: chunked(fixture("openai-chat-stream.sse"), 4) }, { metadata: md });
      expect(lastMetadata(answers)).to.deep.include({ settlement: "charged_usage", units: cost(87, 412) });
      expect((await ledger(md.reservation_id))!.reservationId).to.equal("");
    } finally {
      skew = 0;
    }
  });

  it("observability mode: nothing is answered, the stream is still settled", async () => {
    const md = await check();
    const answers = await ep.play({ status: 200, headers: SSE, chunks: chunked(fixture("gemini-stream.sse"), 3) }, { metadata: { ...md, model: "gemini-2.5-pro" }, observability: true });
    expect(answers).to.deep.equal([]);
    const r = await eventually(() => ledger(md.reservation_id));
    expect([r.inputTokens, r.outputTokens]).to.deep.equal([30, 109]);
  });

  it("no reservation (a route without ext_authz): CONTINUE, body not asked for, nothing charged", async () => {
    const answers = await ep.play({ status: 200, headers: SSE, chunks: [] }, {});
    expect(answers.map((a) => a.response?.$case)).to.deep.equal(["requestHeaders", "responseHeaders"]);
    expect(answers[1]!.modeOverride?.responseBodyMode).to.equal(ProcessingMode_BodySendMode.NONE);
  });

  it("include_usage option: a streaming chat request without it gets it (request body BUFFERED), and is charged from the usage", async () => {
    const md = await check();
    const body = Buffer.from('{"model":"gpt-4o-mini","seed":12345678901234567890,"stream":true,"messages":[{"role":"user","content":"hi"}]}');
    const answers = await ep.play({ status: 200, headers: SSE, chunks: chunked(fixture("openai-chat-stream.sse"), 2) }, { metadata: md, requestBody: body });
    const rb = answers[1]!;
    expect(rb.response?.$case).to.equal("requestBody");
    const common = (rb.response as any).value.response;
    const replaced: Buffer = common.bodyMutation.mutation.value;
    expect(JSON.parse(replaced.toString()).stream_options).to.deep.equal({ include_usage: true });
    expect(replaced.toString()).to.contain('"seed":12345678901234567890'); // not re-serialised
    expect(common.headerMutation.setHeaders[0].header.key).to.equal("content-length");
    expect(Buffer.from(common.headerMutation.setHeaders[0].header.rawValue).toString()).to.equal(String(replaced.length));
    expect((await ledger(md.reservation_id))!.outputTokens).to.equal(412);
    // A request that asked for it, or is not streamed, passes unchanged.
    const md2 = await check();
    const same = await ep.play({ status: 200, headers: SSE, chunks: chunked(fixture("openai-chat-stream.sse"), 2) }, { metadata: md2, requestBody: Buffer.from('{"model":"gpt-4o-mini","stream":true,"stream_options":{"include_usage":true}}') });
    expect((same[1]!.response as any).value.response.bodyMutation).to.equal(undefined);
  });

  describe("an app's own Consume of the same reservation: the first settlement wins", () => {
    const consume = (rsv: string, requestId: string) =>
      call<unknown, ConsumeResponse>(s.authorizer, "consume", { requestId, target: { $case: "reservationId", value: rsv }, model: "gpt-4o-mini", inputTokens: "1000", outputTokens: "1000" });

    it("app first (while the stream is open): the app's charge stands, ext_proc charges nothing", async () => {
      const md = await check();
      let app: ConsumeResponse | undefined;
      const answers = await ep.play(
        {
          status: 200,
          headers: SSE,
          chunks: chunked(fixture("openai-chat-stream.sse"), 4),
          beforeBody: async () => {
            app = await consume(md.reservation_id, `app-${md.reservation_id}`);
          },
        },
        { metadata: md },
      );
      expect(Number(app!.unitsCharged)).to.equal(cost(1000, 1000));
      expect(lastMetadata(answers)).to.deep.include({ settlement: "app_consumed", units: 0 });
      expect(await ledger(md.reservation_id)).to.equal(undefined);
      expect((await s.store.findConsume(`app-${md.reservation_id}`))!.units).to.equal(cost(1000, 1000));
    });

    it("an app Consume that fails (no price for its model) leaves the reservation to ext_proc", async () => {
      const md = await check();
      let failed = "";
      const answers = await ep.play(
        {
          status: 200,
          headers: SSE,
          chunks: chunked(fixture("anthropic-stream.sse"), 3),
          beforeBody: async () => {
            await call(s.authorizer, "consume", { requestId: `app-bad-${md.reservation_id}`, target: { $case: "reservationId", value: md.reservation_id }, model: "unpriced-model", inputTokens: "1", outputTokens: "1" }).catch((e: Error) => (failed = e.message));
          },
        },
        { metadata: md },
      );
      expect(failed).to.match(/FAILED_PRECONDITION|no price/);
      expect(lastMetadata(answers)).to.deep.include({ settlement: "charged_usage", cache_write_tokens: 1000, cache_read_tokens: 8000 });
    });

    it("ext_proc first: the app's later Consume is answered with ext_proc's entry, charging nothing", async () => {
      const md = await check();
      await ep.play({ status: 200, headers: SSE, chunks: chunked(fixture("openai-chat-stream.sse"), 3) }, { metadata: md });
      const first = (await ledger(md.reservation_id))!;
      const app = await consume(md.reservation_id, `app-late-${md.reservation_id}`);
      expect(Number(app.unitsCharged)).to.equal(first.units);
      expect(await s.store.findConsume(`app-late-${md.reservation_id}`)).to.equal(undefined);
    });
  });

  describe("the ledger", () => {
    it("keys and accounts reconcile with the ledger to the unit; no reservation left open", async () => {
      await new Promise((r) => setTimeout(r, 50));
      expect(s.store.openReservations).to.equal(0);
      let sum = 0;
      const entries: ConsumeRecord[] = [];
      for await (const r of s.store.scanLedger()) {
        entries.push(r);
        sum += r.units;
      }
      expect(entries.length).to.be.greaterThan(20);
      const key = await s.store.getKey(keyId);
      expect(key!.counters.used).to.equal(sum);
      expect(key!.counters.remaining).to.equal(50_000_000 - sum);
      const acct = s.store.getAccount("default")!;
      expect(acct.counters.charged).to.equal(sum);
      expect(acct.counters.balance).to.equal(acct.counters.credited - sum);
      expect(await (s.store as LevelStore).checkIntegrity()).to.deep.equal([]);
    });

    it("aisa_extproc_settlements_total counts the settlements by outcome", async () => {
      const text = await (await fetch(`http://${s.metricsAddress}/metrics`)).text();
      for (const outcome of ["charged_usage", "charged_estimate", "released", "app_consumed"]) {
        const m = new RegExp(`aisa_extproc_settlements_total\\{outcome="${outcome}"\\} (\\d+)`).exec(text);
        expect(Number(m?.[1] ?? 0), outcome).to.be.greaterThan(0);
      }
    });
  });
});
