// The lean ConsumeBatch client's halves (bench/lib/leanConsume.ts) against the real codec: a
// template with ids written in place decodes to the request the full encoder would have built,
// with distinct ids per call; the reply scan counts what a full decode finds.
import { expect } from "chai";
import { batchTemplate, COUNTER_CHARS, scanBatchResponse, writeIds } from "../../bench/lib/leanConsume.js";
import { ConsumeBatchRequest, ConsumeBatchResponse, type ConsumeBatchResult } from "../../src/gen/aisa/v1/authorizer.js";

const item = { keyId: "key_0123456789abcdef", model: "gpt-4o-mini", inputTokens: "1200", outputTokens: "300" };

describe("bench lean ConsumeBatch client", () => {
  it("a template with ids written in place decodes to the full request, each call's ids distinct", () => {
    const t = batchTemplate("bench-abc-", 4, item);
    const seen = new Set<string>();
    for (const first of [0, 4, 36 ** 3 - 2, 36 ** COUNTER_CHARS - 4]) {
      const frame = Buffer.from(t.frame);
      writeIds(frame, t.counters, first);
      expect(frame.readUInt32BE(1)).to.equal(frame.length - 5);
      const req = ConsumeBatchRequest.decode(frame.subarray(5));
      expect(req.items).to.have.length(4);
      req.items.forEach((it, i) => {
        expect(it.requestId).to.equal(`bench-abc-${(first + i).toString(36).padStart(COUNTER_CHARS, "0")}`);
        expect(it.target).to.deep.equal({ $case: "keyId", value: item.keyId });
        expect([it.model, it.inputTokens, it.outputTokens]).to.deep.equal([item.model, "1200", "300"]);
        seen.add(it.requestId);
      });
    }
    expect(seen.size).to.equal(16);
    expect(() => writeIds(Buffer.from(t.frame), t.counters, 36 ** COUNTER_CHARS)).to.throw(/overflow/);
    expect(() => batchTemplate("bad prefix", 4, item)).to.throw(/prefix/);
  });

  it("scattered ids (consumeLoad ids: random) are the counter's digits reversed: distinct, and consecutive ones far apart in key order", () => {
    const t = batchTemplate("bench-abc-", 36, item);
    const frame = Buffer.from(t.frame);
    writeIds(frame, t.counters, 1000, true);
    const ids = ConsumeBatchRequest.decode(frame.subarray(5)).items.map((it) => it.requestId);
    ids.forEach((id, i) => expect(id).to.equal(`bench-abc-${[...(1000 + i).toString(36).padStart(COUNTER_CHARS, "0")].reverse().join("")}`));
    expect(new Set(ids).size).to.equal(36);
    // 36 consecutive counters: every first character of the suffix differs (the counter's lowest digit).
    expect(new Set(ids.map((id) => id["bench-abc-".length]!)).size).to.equal(36);
  });

  it("scans a reply as a full decode reads it: results, errors, replays, zero charges", () => {
    const ok = (units: string, replayed: boolean): ConsumeBatchResult => ({
      result: { $case: "ok", value: { unitsCharged: units, keyRemaining: "99999999999", keyUnlimited: false, accountBalance: "123456789012345", replayed, keyId: item.keyId } },
    });
    const err: ConsumeBatchResult = { result: { $case: "error", value: { code: 3, message: "request_id: is required", details: [] } } };
    const cases: ConsumeBatchResult[][] = [
      [ok("180", false)],
      [ok("180", false), ok("180", true), err, ok("0", false)],
      Array.from({ length: 32 }, (_, i) => (i % 5 === 0 ? err : ok(String(i * 1_000_000_007), i % 3 === 0))),
      [],
    ];
    for (const results of cases) {
      const bytes = ConsumeBatchResponse.encode({ results }).finish();
      const padded = Buffer.concat([Buffer.from([9, 9, 9]), bytes, Buffer.from([7])]);
      const scan = scanBatchResponse(padded, 3, 3 + bytes.length);
      const decoded = ConsumeBatchResponse.decode(bytes).results;
      const oks = decoded.flatMap((r) => (r.result?.$case === "ok" ? [r.result.value] : []));
      expect(scan).to.deep.equal({
        results: decoded.length,
        errors: decoded.length - oks.length,
        replayed: oks.filter((o) => o.replayed).length,
        zeroCharge: oks.filter((o) => o.unitsCharged === "0").length,
      });
    }
  });

  it("throws on a truncated reply rather than counting part of it", () => {
    const bytes = ConsumeBatchResponse.encode({ results: [{ result: { $case: "ok", value: { unitsCharged: "180", keyRemaining: "0", keyUnlimited: true, accountBalance: "5", replayed: false, keyId: "k" } } }] }).finish();
    for (let cut = 1; cut < bytes.length; cut++) expect(() => scanBatchResponse(bytes, 0, cut), `cut at ${cut}`).to.throw();
  });
});
