// aisa.v1 Authorizer/ConsumeBatch end to end: each item is exactly a Consume (same charge,
// same idempotency, same errors naming the field), items fail alone, results keep the order,
// a failing store fails every item (nothing charged) and a retry charges once; the whole
// ledger reconciles to the unit.
import { expect } from "chai";
import { status } from "@grpc/grpc-js";
import type { CreateKeyResponse } from "../../src/gen/aisa/v1/admin.js";
import type { CheckResponse, ConsumeBatchResponse, ConsumeResponse } from "../../src/gen/aisa/v1/authorizer.js";
import type { Account, Key } from "../../src/gen/aisa/v1/types.js";
import { call, expectGrpcError, removeDir, startTestSidecar, type TestSidecar } from "../helpers/sidecar.js";
import { reconcile } from "./consume.test.js";

type Item = Record<string, unknown>;

describe("aisa.v1 Authorizer: ConsumeBatch", function () {
  this.timeout(60_000);
  let s: TestSidecar;
  let fault: Error | null = null;
  const admin = <Res>(method: string, req: unknown) => call<unknown, Res>(s.admin, method, req, s.meta());
  const batch = (items: Item[]) => call<unknown, ConsumeBatchResponse>(s.authorizer, "consumeBatch", { items });
  const consume = (req: Item) => call<unknown, ConsumeResponse>(s.authorizer, "consume", req);
  let rid = 0;
  const newId = () => `batch-${Date.now()}-${++rid}`;
  const byKey = (keyId: string, over: Item = {}): Item => ({ requestId: newId(), target: { $case: "keyId", value: keyId }, ...over });
  const used = async (keyId: string) => Number((await admin<Key>("getKey", { id: keyId })).quota!.used);

  before(async () => {
    s = await startTestSidecar({ storeFaultInjector: () => fault });
    await admin("adjustBalance", { accountId: "default", delta: "100000000", reason: "seed" });
    await admin("setPrice", { price: { model: "gpt-4o-mini", inputPerMillion: "75000", outputPerMillion: "300000", perRequest: "0" } });
  });
  after(async () => {
    fault = null;
    await s.close();
    await removeDir(s.dir);
  });

  it("charges each item exactly as Consume would, answering in order", async () => {
    const k = await admin<CreateKeyResponse>("createKey", { spec: { name: "batch-exact", quota: "1000000" } });
    const id = k.key!.id;
    const c = await call<unknown, CheckResponse>(s.authorizer, "check", { apiKey: k.secret, model: "gpt-4o-mini", maxTokens: "100" });
    expect(c.allowed).to.equal(true);
    const items: Item[] = [
      { requestId: newId(), target: { $case: "reservationId", value: c.reservationId }, model: "gpt-4o-mini", inputTokens: "1234", outputTokens: "567" },
      byKey(id, { units: "7" }),
      { requestId: newId(), target: { $case: "apiKey", value: k.secret }, model: "gpt-4o-mini", inputTokens: "1000000" },
    ];
    const r = await batch(items);
    expect(r.results).to.have.length(3);
    const oks = r.results.map((x) => (x.result?.$case === "ok" ? x.result.value : null));
    // 1234 × 0.075 + 567 × 0.3 = 262.65 → 263; explicit 7; 1M input tokens = 75000.
    expect(oks.map((o) => o?.unitsCharged)).to.deep.equal(["263", "7", "75000"]);
    expect(oks.every((o) => o?.keyId === id && o.replayed === false)).to.equal(true);
    expect(await used(id)).to.equal(263 + 7 + 75000);
    // The reservation was settled: the key's remaining is its quota minus the charges only.
    expect((await admin<Key>("getKey", { id })).quota!.remaining).to.equal(String(1000000 - 263 - 7 - 75000));
  });

  it("a bad item fails alone, with Consume's code and a message naming the field; the rest are charged", async () => {
    const k = await admin<CreateKeyResponse>("createKey", { spec: { name: "batch-mixed", quota: "1000000" } });
    const id = k.key!.id;
    const cases: [Item, status, string][] = [
      [byKey(id, { requestId: "", units: "5" }), status.INVALID_ARGUMENT, "request_id"],
      [byKey(id, { inputTokens: "-5", model: "gpt-4o-mini" }), status.INVALID_ARGUMENT, "input_tokens"],
      [byKey(id, { target: undefined, units: "5" }), status.INVALID_ARGUMENT, "target"],
      [byKey("key_nope", { units: "5" }), status.NOT_FOUND, "key"],
      [byKey(id, { model: "no-such-model", inputTokens: "5" }), status.FAILED_PRECONDITION, "no price"],
    ];
    const items: Item[] = [];
    for (const [bad] of cases) items.push(byKey(id, { units: "10" }), bad);
    const before = await used(id);
    const r = await batch(items);
    expect(r.results).to.have.length(items.length);
    cases.forEach(([, code, needle], i) => {
      const good = r.results[2 * i]!.result;
      const bad = r.results[2 * i + 1]!.result;
      expect(good?.$case, `item ${2 * i}`).to.equal("ok");
      expect(bad?.$case, `item ${2 * i + 1}`).to.equal("error");
      if (bad?.$case !== "error") return;
      expect(bad.value.code, needle).to.equal(code);
      expect(bad.value.message).to.include(needle);
    });
    expect(await used(id)).to.equal(before + 10 * cases.length);
  });

  it("replays: an id seen before (by Consume or an earlier batch) or repeated within the batch charges once", async () => {
    const k = await admin<CreateKeyResponse>("createKey", { spec: { name: "batch-replay", quota: "1000000" } });
    const id = k.key!.id;
    const first = byKey(id, { units: "11" });
    const r1 = await consume(first);
    expect(r1.replayed).to.equal(false);
    const twin = byKey(id, { units: "13" });
    const r = await batch([first, twin, twin, { ...twin, units: "999" }]);
    const oks = r.results.map((x) => (x.result?.$case === "ok" ? x.result.value : null));
    expect(oks[0]).to.include({ unitsCharged: "11", replayed: true });
    // One of the twins charged; the other replays its first answer (13). The same id with
    // other units is a different request: that item fails ALREADY_EXISTS naming request_id.
    expect(oks.slice(1, 3).map((o) => o?.unitsCharged)).to.deep.equal(["13", "13"]);
    expect(oks.slice(1, 3).filter((o) => o?.replayed === false)).to.have.length(1);
    const clash = r.results[3]!.result;
    expect(clash?.$case).to.equal("error");
    if (clash?.$case === "error") expect(clash.value).to.deep.include({ code: 6 }).and.to.satisfy((e: { message: string }) => e.message.startsWith("request_id: "));
    expect(await used(id)).to.equal(11 + 13);
    const again = await batch([twin]);
    expect(again.results[0]!.result).to.deep.include({ $case: "ok" });
    expect(await used(id)).to.equal(11 + 13);
  });

  it("rejects an empty batch and one over 1,000 items with INVALID_ARGUMENT naming items, charging nothing", async () => {
    const k = await admin<CreateKeyResponse>("createKey", { spec: { name: "batch-limits", quota: "1000000" } });
    const id = k.key!.id;
    const e1 = await expectGrpcError(batch([]), status.INVALID_ARGUMENT);
    expect(e1.details).to.include("items");
    const e2 = await expectGrpcError(batch(Array.from({ length: 1001 }, () => byKey(id, { units: "1" }))), status.INVALID_ARGUMENT);
    expect(e2.details).to.include("items");
    expect(await used(id)).to.equal(0);
    const full = await batch(Array.from({ length: 1000 }, () => byKey(id, { units: "1" })));
    expect(full.results.filter((x) => x.result?.$case === "ok")).to.have.length(1000);
    expect(await used(id)).to.equal(1000);
  });

  it("16 concurrent batches of 64 on one key and account charge the exact sum", async () => {
    const k = await admin<CreateKeyResponse>("createKey", { spec: { name: "batch-parallel", quota: "100000000" } });
    const id = k.key!.id;
    const acct0 = await admin<Account>("getAccount", { id: "default" });
    let expected = 0;
    const batches = Array.from({ length: 16 }, (_, b) =>
      Array.from({ length: 64 }, (_, i) => {
        const units = 1 + ((b * 64 + i) % 17);
        expected += units;
        return byKey(id, { units: String(units) });
      }),
    );
    const rs = await Promise.all(batches.map((items) => batch(items)));
    expect(rs.flatMap((r) => r.results).filter((x) => x.result?.$case === "ok")).to.have.length(16 * 64);
    expect(await used(id)).to.equal(expected);
    const acct1 = await admin<Account>("getAccount", { id: "default" });
    expect(Number(acct0.balance) - Number(acct1.balance)).to.equal(expected);
  });

  it("a failing store fails every item UNAVAILABLE and charges nothing; the same batch retried charges once", async () => {
    const k = await admin<CreateKeyResponse>("createKey", { spec: { name: "batch-fault", quota: "1000000" } });
    const id = k.key!.id;
    const items = Array.from({ length: 8 }, () => byKey(id, { units: "3" }));
    fault = new Error("EIO: injected I/O error");
    const logsBefore = s.logs.lines.length;
    try {
      const r = await batch(items);
      expect(r.results.map((x) => (x.result?.$case === "error" ? x.result.value.code : "ok"))).to.deep.equal(Array(8).fill(status.UNAVAILABLE));
    } finally {
      fault = null;
    }
    // Eight items failing alike are one "request failed" log line, not eight.
    const failed = s.logs.lines.slice(logsBefore).filter((l) => l.includes('"request failed"'));
    expect(failed).to.have.length(1);
    const deadline = Date.now() + 10_000;
    let retried: ConsumeBatchResponse | undefined;
    while (Date.now() < deadline) {
      retried = await batch(items);
      if (retried.results.every((x) => x.result?.$case === "ok")) break;
      await new Promise((r) => setTimeout(r, 100));
    }
    expect(retried!.results.every((x) => x.result?.$case === "ok")).to.equal(true);
    expect(await used(id)).to.equal(8 * 3);
  });

  it("everything charged through batches reconciles with the ledger to the unit", async () => {
    await s.close();
    const rec = await reconcile(s.dir);
    expect(rec.problems).to.deep.equal([]);
    expect(rec.ledgerEntries).to.be.greaterThan(1000);
    s = await startTestSidecar({ dataDir: s.dir, storeFaultInjector: () => fault });
  });
});
