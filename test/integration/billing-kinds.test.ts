// Token kinds end to end: prices with cache-read, cache-write and reasoning rates (SetPrice and
// ListPrices), an ext_proc-metered Anthropic response with cache tokens charged at those rates
// (ledger: kinds and source ext_proc), an app's Consume with kinds (source consume; kinds
// checked against the totals; a retry must repeat them), and ledger entries written before
// kinds and sources existed, which still read and replay.
import * as grpc from "@grpc/grpc-js";
import { expect } from "chai";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { Level } from "level";
import { Granularity, UsageDimension, type CreateKeyResponse, type ListPricesResponse, type QueryUsageResponse } from "../../src/gen/aisa/v1/admin.js";
import type { ConsumeResponse } from "../../src/gen/aisa/v1/authorizer.js";
import type { Price } from "../../src/gen/aisa/v1/types.js";
import { AuthorizationClient, CheckRequest, type CheckResponse } from "../../src/gen/envoy/service/auth/v3/external_auth.js";
import { meteredRequestId } from "../../src/service/metering.js";
import { ledgerSource, tokensByKind } from "../../src/store/ledgerEntry.js";
import { chunked, EnvoyExtProc } from "../helpers/extproc.js";
import { call, expectGrpcError, removeDir, startTestSidecar, tempDir, type TestSidecar } from "../helpers/sidecar.js";

const FIX = join(import.meta.dirname, "..", "fixtures", "metering");
const fixture = (f: string) => readFileSync(join(FIX, f));

// Units per 1M tokens, Anthropic-shaped: cache reads a tenth of input, cache writes 1.25×.
const IN = 300_000;
const OUT = 1_500_000;
const CR = 30_000;
const CW = 375_000;
const REASON = 2_000_000;
const MODEL = "claude-sonnet-4-5";

describe("billing by token kind (prices, ext_proc, Consume, ledger)", function () {
  this.timeout(60_000);
  let s: TestSidecar;
  let authz: AuthorizationClient;
  let ep: EnvoyExtProc;
  let keyId = "";
  let secret = "";
  const dirs: string[] = [];
  const admin = <Res>(method: string, req: unknown) => call<unknown, Res>(s.admin, method, req, s.meta());
  const consume = (req: Record<string, unknown>) => call<unknown, ConsumeResponse>(s.authorizer, "consume", req);

  before(async () => {
    const dir = await tempDir();
    dirs.push(dir);
    s = await startTestSidecar({ dataDir: dir });
    await admin("adjustBalance", { accountId: "default", delta: "100000000", reason: "seed" });
    await admin("setPrice", { price: { model: MODEL, inputPerMillion: String(IN), outputPerMillion: String(OUT), perRequest: "0", cacheReadPerMillion: String(CR), cacheWritePerMillion: String(CW) } });
    await admin("setPrice", { price: { model: "o4-mini", inputPerMillion: String(IN), outputPerMillion: String(OUT), perRequest: "0", reasoningPerMillion: String(REASON) } });
    await admin("setPrice", { price: { model: "plain", inputPerMillion: String(IN), outputPerMillion: String(OUT), perRequest: "0" } });
    const k = await admin<CreateKeyResponse>("createKey", { spec: { name: "kinds", unlimited: true } });
    keyId = k.key!.id;
    secret = k.secret;
    authz = new AuthorizationClient(s.envoyAddress, grpc.credentials.createInsecure());
    ep = new EnvoyExtProc(s.envoyAddress);
  });
  after(async () => {
    authz.close();
    ep.close();
    await s.close();
    for (const d of dirs) await removeDir(d);
  });

  async function check(model: string): Promise<Record<string, any>> {
    const req = CheckRequest.fromPartial({
      attributes: {
        source: { address: { address: { $case: "socketAddress", value: { address: "203.0.113.7", portSpecifier: { $case: "portValue", value: 1 } } } } },
        request: { http: { method: "POST", path: "/v1/messages", headers: { "x-api-key": secret, "content-type": "application/json" }, body: JSON.stringify({ model, max_tokens: 100 }) } },
      },
    } as any);
    const res = await new Promise<CheckResponse>((resolve, reject) => authz.check(req, (err, r) => (err ? reject(err) : resolve(r!))));
    expect(res.status?.code, JSON.stringify(res.dynamicMetadata)).to.equal(0);
    return res.dynamicMetadata!;
  }

  it("SetPrice keeps the kind rates that are set (unset ones stay unset); ListPrices shows them", async () => {
    const list = await admin<ListPricesResponse>("listPrices", {});
    const by = Object.fromEntries(list.prices.map((p) => [p.model, p])) as Record<string, Price>;
    expect(by[MODEL]).to.deep.include({ cacheReadPerMillion: String(CR), cacheWritePerMillion: String(CW), reasoningPerMillion: undefined });
    expect(by["o4-mini"]).to.deep.include({ cacheReadPerMillion: undefined, reasoningPerMillion: String(REASON) });
    expect(by["plain"]).to.deep.include({ cacheReadPerMillion: undefined, cacheWritePerMillion: undefined, reasoningPerMillion: undefined });
    const bad = await expectGrpcError(admin("setPrice", { price: { model: "x", inputPerMillion: "1", outputPerMillion: "1", cacheReadPerMillion: "-1" } }), grpc.status.INVALID_ARGUMENT);
    expect(bad.details).to.include("price.cache_read_per_million");
  });

  for (const [file, cr, cw, inputOnly, out] of [
    ["anthropic.json", 3000, 2000, 21, 150],
    ["anthropic-stream.sse", 8000, 1000, 480, 503],
  ] as const) {
    it(`ext_proc: ${file} is charged its cache reads and writes at the cache rates; the ledger keeps the kinds, source ext_proc`, async () => {
      const md = await check(MODEL);
      const ct = file.endsWith(".sse") ? "text/event-stream" : "application/json";
      await ep.play({ status: 200, headers: { "content-type": ct }, chunks: chunked(fixture(file), 5) }, { metadata: md });
      const r = (await s.store.findConsume(meteredRequestId(md.reservation_id)))!;
      expect(r, "ledger entry").to.not.equal(undefined);
      const want = Math.ceil((inputOnly * IN + cr * CR + cw * CW + out * OUT) / 1e6);
      // At the input rate for every input token it would have been much more.
      expect(want).to.be.lessThan(Math.ceil(((inputOnly + cr + cw) * IN + out * OUT) / 1e6));
      expect(r).to.deep.include({ model: MODEL, inputTokens: inputOnly + cr + cw, outputTokens: out, cacheReadTokens: cr, cacheWriteTokens: cw, units: want, source: "ext_proc" });
      expect(r.reasoningTokens).to.equal(undefined);
      expect(tokensByKind(r)).to.deep.equal({ input: inputOnly, output: out, cacheRead: cr, cacheWrite: cw, reasoning: 0 });
    });
  }

  it("ext_proc: reasoning tokens (OpenAI Responses) at the reasoning rate", async () => {
    const md = await check("o4-mini");
    await ep.play({ status: 200, headers: { "content-type": "application/json" }, chunks: [fixture("openai-responses.json")] }, { metadata: md });
    const r = (await s.store.findConsume(meteredRequestId(md.reservation_id)))!;
    expect(r).to.deep.include({ inputTokens: 50, outputTokens: 70, reasoningTokens: 64, units: Math.ceil((50 * IN + 6 * OUT + 64 * REASON) / 1e6), source: "ext_proc" });
  });

  it("Consume with kinds: charged at the kind rates, kept in the ledger with source consume; a price without kind rates charges them at input/output", async () => {
    const a = await consume({ requestId: "kinds-1", target: { $case: "keyId", value: keyId }, model: MODEL, inputTokens: "10000", outputTokens: "200", cacheReadTokens: "6000", cacheWriteTokens: "3000" });
    expect(a.unitsCharged).to.equal(String(Math.ceil((1000 * IN + 6000 * CR + 3000 * CW + 200 * OUT) / 1e6)));
    expect(await s.store.findConsume("kinds-1")).to.deep.include({ inputTokens: 10000, outputTokens: 200, cacheReadTokens: 6000, cacheWriteTokens: 3000, source: "consume" });
    const b = await consume({ requestId: "kinds-2", target: { $case: "keyId", value: keyId }, model: "plain", inputTokens: "10000", outputTokens: "200", cacheReadTokens: "6000", reasoningTokens: "100" });
    expect(b.unitsCharged).to.equal(String(Math.ceil((10000 * IN + 200 * OUT) / 1e6)));
    expect(await s.store.findConsume("kinds-2")).to.deep.include({ cacheReadTokens: 6000, reasoningTokens: 100, source: "consume" });
    // Without kinds: as before, and no kind fields in the entry.
    await consume({ requestId: "kinds-3", target: { $case: "keyId", value: keyId }, model: MODEL, inputTokens: "10", outputTokens: "2" });
    const plain = (await s.store.findConsume("kinds-3"))!;
    expect(Object.keys(plain)).to.not.include.members(["cacheReadTokens", "cacheWriteTokens", "reasoningTokens"]);
    expect(plain.source).to.equal("consume");
  });

  it("Consume: kinds past their totals are INVALID_ARGUMENT naming the field, nothing charged; a retry must repeat the kinds", async () => {
    const key = { $case: "keyId", value: keyId };
    let e = await expectGrpcError(consume({ requestId: "kinds-bad-1", target: key, model: MODEL, inputTokens: "100", outputTokens: "1", cacheReadTokens: "60", cacheWriteTokens: "50" }), grpc.status.INVALID_ARGUMENT);
    expect(e.details).to.include("cache_write_tokens");
    e = await expectGrpcError(consume({ requestId: "kinds-bad-2", target: key, model: MODEL, inputTokens: "100", outputTokens: "1", reasoningTokens: "2" }), grpc.status.INVALID_ARGUMENT);
    expect(e.details).to.include("reasoning_tokens");
    expect(await s.store.findConsume("kinds-bad-1")).to.equal(undefined);
    const first = await consume({ requestId: "kinds-retry", target: key, model: MODEL, inputTokens: "100", outputTokens: "1", cacheReadTokens: "60" });
    const again = await consume({ requestId: "kinds-retry", target: key, model: MODEL, inputTokens: "100", outputTokens: "1", cacheReadTokens: "60" });
    expect([again.replayed, again.unitsCharged]).to.deep.equal([true, first.unitsCharged]);
    await expectGrpcError(consume({ requestId: "kinds-retry", target: key, model: MODEL, inputTokens: "100", outputTokens: "1" }), grpc.status.ALREADY_EXISTS);
  });

  it("the HTTP JSON API's /v1/consume takes the kinds (snake_case) too", async () => {
    const res = await fetch(`http://${s.httpAddress}/v1/consume`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ request_id: "kinds-json", key_id: keyId, model: MODEL, input_tokens: 1000, output_tokens: 10, cache_read_tokens: "1000" }),
    });
    expect(res.status).to.equal(200);
    expect(((await res.json()) as { units_charged: string }).units_charged).to.equal(String(Math.ceil((1000 * CR + 10 * OUT) / 1e6)));
    expect(await s.store.findConsume("kinds-json")).to.deep.include({ cacheReadTokens: 1000, source: "consume" });
  });

  it("QueryUsage counts the kinds per model (0 where none were reported)", async () => {
    const q = (model: string) =>
      admin<QueryUsageResponse>("queryUsage", { filter: { model }, groupBy: UsageDimension.USAGE_DIMENSION_MODEL, granularity: Granularity.GRANULARITY_HOUR, since: new Date(Date.now() - 3_600_000) });
    // anthropic.json + anthropic-stream.sse (ext_proc), kinds-1 and kinds-retry (Consume).
    expect((await q(MODEL)).total).to.deep.include({ cacheReadTokens: String(3000 + 8000 + 6000 + 60 + 1000), cacheWriteTokens: String(2000 + 1000 + 3000), reasoningTokens: "0" });
    expect((await q("o4-mini")).total).to.deep.include({ cacheReadTokens: "0", reasoningTokens: "64" });
    expect((await q("plain")).total).to.deep.include({ cacheReadTokens: "6000", reasoningTokens: "100" });
  });

  it("ledger entries from before kinds and sources existed still read, replay and scan", async () => {
    // The stored shape of an entry written before kinds and sources: no such fields.
    const old = { requestId: "old-1", keyId, accountId: "default", group: "default", model: MODEL, inputTokens: 500, outputTokens: 20, units: 180, at: Date.now() - 60_000, reservationId: "", keyRemaining: 0, keyUnlimited: true, accountBalance: 1 };
    const oldMetered = { ...old, requestId: "extproc:rsv-old", units: 181 };
    await s.close();
    const db = new Level<string, string>(join(s.dir, "db"), { valueEncoding: "utf8" });
    await db.open();
    for (const r of [old, oldMetered]) await db.sublevel<string, string>("ledger", { valueEncoding: "utf8" }).put(r.requestId, JSON.stringify(r));
    await db.close();
    authz.close();
    ep.close();
    s = await startTestSidecar({ dataDir: s.dir });
    authz = new AuthorizationClient(s.envoyAddress, grpc.credentials.createInsecure());
    ep = new EnvoyExtProc(s.envoyAddress);

    const read = (await s.store.findConsume("old-1"))!;
    expect(read).to.deep.equal(old);
    expect(ledgerSource(read)).to.equal("consume");
    expect(ledgerSource((await s.store.findConsume("extproc:rsv-old"))!)).to.equal("ext_proc");
    expect(tokensByKind(read)).to.deep.equal({ input: 500, output: 20, cacheRead: 0, cacheWrite: 0, reasoning: 0 });
    // A retry of the old request (no kinds) is a replay of its first answer.
    const again = await consume({ requestId: "old-1", target: { $case: "keyId", value: keyId }, model: MODEL, inputTokens: "500", outputTokens: "20" });
    expect([again.replayed, again.unitsCharged]).to.deep.equal([true, "180"]);
    // The whole ledger scans, old and new entries alike.
    const all: string[] = [];
    for await (const r of s.store.scanLedger()) all.push(`${r.requestId}:${ledgerSource(r)}`);
    expect(all).to.include.members(["old-1:consume", "extproc:rsv-old:ext_proc", "kinds-1:consume"]);
    // The usage buckets kept their kinds across the restart.
    const u = await admin<QueryUsageResponse>("queryUsage", { filter: { model: MODEL }, groupBy: UsageDimension.USAGE_DIMENSION_MODEL, granularity: Granularity.GRANULARITY_HOUR, since: new Date(Date.now() - 3_600_000) });
    expect(u.total).to.deep.include({ cacheReadTokens: String(3000 + 8000 + 6000 + 60 + 1000), cacheWriteTokens: "6000" });
  });
});
