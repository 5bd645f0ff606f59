// ConsumeService and the data port's ConsumeBatch handler after their garbage was cut (issue 18
// item 3): the token/units parser gives the former answers (value or error) for 20,000 random
// inputs; the replay, idempotency and not-found paths answer as before; the batch handler
// answers every item in order, records one latency observation per item (errors included) and
// reports each failure with Consume's code and message. Real LevelStore in a temp dir.
import { expect } from "chai";
import { Metadata, status } from "@grpc/grpc-js";
import { count, ConsumeService } from "../../src/service/consume.js";
import { LevelStore } from "../../src/store/level/levelStore.js";
import { createAuthorizerServer } from "../../src/transport/authorizer.js";
import { invalid } from "../../src/domain/errors.js";
import type { Authorizer } from "../../src/service/authorizer.js";
import type { ConsumeBatchResponse, ConsumeRequest } from "../../src/gen/aisa/v1/authorizer.js";
import { makeKey } from "../contract/store.contract.js";
import { removeDir, tempDir } from "../helpers/tmp.js";

/** count() as it was before the fast path (service/consume.ts at cca6529…a63a72d). */
function formerCount(v: string | number, field: string, max: number): number {
  const s = String(v ?? "0").trim() || "0";
  if (!/^-?\d+$/.test(s)) throw invalid(field, `${JSON.stringify(s)} is not an integer`);
  const n = Number(s);
  if (n < 0) throw invalid(field, `must not be negative (got ${s})`);
  if (!Number.isSafeInteger(n) || n > max) throw invalid(field, `must be at most ${max} (got ${s})`);
  return n;
}

const answer = (f: () => number): { value: number } | { error: string } => {
  try {
    return { value: f() };
  } catch (err) {
    return { error: `${(err as Error).constructor.name}: ${(err as Error).message}` };
  }
};

describe("ConsumeService: the lean paths answer as before", () => {
  it("count(): the former value or error for 20,000 random inputs (digits, zeros, signs, spaces, exponents, numbers, -0)", () => {
    let seed = 7;
    const rnd = (n: number) => ((seed = (seed * 1103515245 + 12345) >>> 0) % n);
    const alphabet = "0000000001234567899 -+.eEx\t";
    const maxes = [10_000_000, 1_000_000_000_000_000, 99, 0];
    const specials: (string | number)[] = ["", " ", "0", "-0", "+1", "007", " 12 ", "1e3", "1.0", "9007199254740991", "9007199254740993", "999999999999999", "1000000000000000", "1000000000000001", -0, 0, 1.5, -1, NaN, Infinity, 2 ** 53, 2 ** 53 - 1, 1e21, 10_000_000, 10_000_001];
    const inputs: (string | number)[] = [...specials];
    while (inputs.length < 20_000) {
      if (rnd(4) === 0) inputs.push(rnd(2) ? rnd(2 ** 31) : rnd(1000) * 10 ** rnd(17));
      else inputs.push(Array.from({ length: rnd(20) }, () => alphabet[rnd(alphabet.length)]).join(""));
    }
    for (const v of inputs) {
      for (const max of maxes) {
        const a = answer(() => count(v, "input_tokens", max));
        const b = answer(() => formerCount(v, "input_tokens", max));
        expect(a, `${JSON.stringify(v)} (max ${max})`).to.deep.equal(b);
        if ("value" in a) expect(Object.is(a.value, -0), `${JSON.stringify(v)} gave -0`).to.equal(Object.is((b as { value: number }).value, -0));
      }
    }
  });

  describe("with a real store", () => {
    let dir = "";
    let store: LevelStore;
    const actor = { actor: "operator", action: "Test", target: "t" };
    before(async () => {
      dir = await tempDir("aisa-consume-lean-");
      store = new LevelStore({ dir });
      await store.open(Date.now());
      await store.adjustBalance("default", 1_000_000, actor);
    });
    after(async () => {
      await store.close();
      await removeDir(dir);
    });
    const fails = (p: Promise<unknown>) => p.then(() => null, (e: Error & { code?: string }) => e);

    it("a replay returns the first answer; a different request with the same id is ALREADY_EXISTS; a deleted key's secret is NOT_FOUND", async () => {
      const k = makeKey({ unlimited: true, quotaTotal: 0 });
      await store.insertKey(k.record, actor);
      const service = new ConsumeService({ store, clock: Date.now });
      const req = { requestId: "lean-1", target: { keyId: k.record.id }, model: "", inputTokens: "1200", outputTokens: "300", units: "9" };
      const first = await service.consume(req);
      expect(first.replayed).to.equal(false);
      expect(first.record.units).to.equal(9);
      const again = await service.consume({ ...req, target: { keyId: k.record.id } });
      expect(again.replayed).to.equal(true);
      expect(again.record).to.deep.equal(first.record);
      // By its secret: the same key, so the same request.
      expect((await service.consume({ ...req, target: { apiKey: k.secret } })).replayed).to.equal(true);
      const other = await fails(service.consume({ ...req, outputTokens: "301" }));
      expect(other?.message).to.match(/request_id: "lean-1" was already used by a different Consume/);
      // The secret of a key that no longer exists: NOT_FOUND, not a replay.
      await store.deleteKeys([k.record.id], () => {}, () => ({ ...actor, action: "Delete" }));
      const lost = await fails(service.consume({ ...req, target: { apiKey: k.secret } }));
      expect(lost?.message).to.match(/key for "api_key" not found/);
      // By key id the deleted key's first answer is still the answer.
      expect((await service.consume(req)).replayed).to.equal(true);
      // Bad input charges nothing and names the field.
      for (const [field, over] of [["input_tokens", { inputTokens: "-1" }], ["output_tokens", { outputTokens: "1x" }], ["units", { units: "99999999999999999999" }]] as const) {
        const e = await fails(service.consume({ ...req, requestId: `lean-bad-${field}`, ...over }));
        expect(e?.message, field).to.match(new RegExp(`^${field}`));
        expect(await store.findConsume(`lean-bad-${field}`)).to.equal(undefined);
      }
    });

    it("ConsumeBatch: answers in order, one latency observation per item (failed ones too), failures with Consume's code and message", async () => {
      const k = makeKey({ unlimited: true, quotaTotal: 0 });
      await store.insertKey(k.record, actor);
      const service = new ConsumeService({ store, clock: Date.now });
      const observed: number[] = [];
      const server = createAuthorizerServer({ authorizer: undefined as unknown as Authorizer, consume: service, clock: Date.now, log: () => {}, onConsumeLatency: (s) => observed.push(s) });
      const item = (requestId: string, over: Partial<ConsumeRequest> = {}): ConsumeRequest => ({
        requestId,
        target: { $case: "keyId", value: k.record.id },
        model: "",
        inputTokens: "0",
        outputTokens: "0",
        units: "5",
        cacheReadTokens: "0",
        cacheWriteTokens: "0",
        reasoningTokens: "0",
        ...over,
      });
      const run = (items: ConsumeRequest[]) =>
        new Promise<ConsumeBatchResponse>((resolve, reject) => server.consumeBatch({ request: { items }, metadata: new Metadata() } as never, (err, res) => (err ? reject(err) : resolve(res!))));
      const items = [item("b-1"), item("b-2", { units: "-3" }), item("b-1"), item("b-3", { target: { $case: "keyId", value: "key_missing" } }), item("b-4", { units: "11" })];
      const r = await run(items);
      expect(observed).to.have.length(items.length);
      expect(r.results.map((x) => x.result?.$case)).to.deep.equal(["ok", "error", "ok", "error", "ok"]);
      const ok = (i: number) => (r.results[i]!.result as { value: { unitsCharged: string; replayed: boolean; keyId: string } }).value;
      const err = (i: number) => (r.results[i]!.result as { value: { code: number; message: string } }).value;
      expect([ok(0).unitsCharged, ok(0).replayed, ok(0).keyId]).to.deep.equal(["5", false, k.record.id]);
      expect([ok(2).unitsCharged, ok(2).replayed]).to.deep.equal(["5", true]);
      expect([ok(4).unitsCharged, ok(4).replayed]).to.deep.equal(["11", false]);
      expect(err(1).code).to.equal(status.INVALID_ARGUMENT);
      expect(err(1).message).to.match(/^units: must not be negative/);
      expect(err(3).code).to.equal(status.NOT_FOUND);
      expect(err(3).message).to.match(/key_missing/);
      // The single Consume path answers the same as the batch's items.
      const one = await new Promise<{ unitsCharged: string; replayed: boolean }>((resolve, reject) =>
        server.consume({ request: item("b-4", { units: "11" }), metadata: new Metadata() } as never, (e, res) => (e ? reject(e) : resolve(res!))),
      );
      expect([one.unitsCharged, one.replayed]).to.deep.equal(["11", true]);
      expect(observed).to.have.length(items.length + 1);
    });
  });
});
