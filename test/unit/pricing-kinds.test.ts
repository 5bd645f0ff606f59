// Prices by token kind (cache reads, cache writes, reasoning): each kind at its own rate when
// the price sets one, else at its side's (input or output) rate — exactly the charge of a price
// without kinds. One exact rational, rounded up once; checked against a BigInt reference.
import { expect } from "chai";
import type { PriceRecord } from "../../src/domain/types.js";
import { MAX_RATIO_PPM, MAX_UNITS } from "../../src/domain/units.js";
import { chargeSaturated, chargeUnits, effectiveRates, MAX_CONSUME_TOKENS, maxChargeUnits } from "../../src/policy/pricing.js";
import { isSameRequest } from "../../src/policy/replay.js";
import { ledgerExtras, ledgerSource, tokensByKind } from "../../src/store/ledgerEntry.js";
import { kindsWithin } from "../../src/service/metering.js";
import type { ConsumeRecord } from "../../src/store/types.js";

const base: PriceRecord = { model: "m", inputPerMillion: 3_000_000, outputPerMillion: 15_000_000, perRequest: 0 };
const RATIO = 1_000_000;

/** ceil over one rational, in BigInt: the reference. */
function reference(p: PriceRecord, i: number, o: number, ratio: number, k: { cr?: number; cw?: number; rs?: number } = {}): number {
  const cr = BigInt(k.cr ?? 0);
  const cw = BigInt(k.cw ?? 0);
  const rs = BigInt(k.rs ?? 0);
  const inR = BigInt(p.inputPerMillion);
  const outR = BigInt(p.outputPerMillion);
  const crR = p.cacheReadPerMillion === undefined ? inR : BigInt(p.cacheReadPerMillion);
  const cwR = p.cacheWritePerMillion === undefined ? inR : BigInt(p.cacheWritePerMillion);
  const rsR = p.reasoningPerMillion === undefined ? outR : BigInt(p.reasoningPerMillion);
  const num = (BigInt(p.perRequest) * 1_000_000n + (BigInt(i) - cr - cw) * inR + cr * crR + cw * cwR + (BigInt(o) - rs) * outR + rs * rsR) * BigInt(ratio);
  const q = num / 1_000_000_000_000n;
  const exact = q * 1_000_000_000_000n === num ? q : q + 1n;
  return exact > BigInt(MAX_UNITS) ? MAX_UNITS : Number(exact);
}

describe("pricing by token kind", () => {
  it("a price without kind rates charges kinds at the input/output rate: the charge without kinds", () => {
    const p = { ...base, perRequest: 7 };
    expect(chargeUnits(p, 10_000, 500, RATIO, { cacheReadTokens: 6000, cacheWriteTokens: 3000, reasoningTokens: 400 })).to.equal(chargeUnits(p, 10_000, 500, RATIO));
    expect(chargeUnits(p, 10_000, 500, RATIO)).to.equal(7 + 30_000 + 7_500);
  });

  it("kind rates equal to the side's rate change nothing", () => {
    const p = { ...base, cacheReadPerMillion: base.inputPerMillion, cacheWritePerMillion: base.inputPerMillion, reasoningPerMillion: base.outputPerMillion };
    expect(chargeUnits(p, 12_345, 678, 1_250_000, { cacheReadTokens: 1000, cacheWriteTokens: 2000, reasoningTokens: 300 })).to.equal(chargeUnits(base, 12_345, 678, 1_250_000));
  });

  it("cache reads at the cache-read rate", () => {
    const p = { ...base, cacheReadPerMillion: 300_000 };
    // 200 input at 3 units/token + 800 cache reads at 0.3 units/token = 600 + 240.
    expect(chargeUnits(p, 1000, 0, RATIO, { cacheReadTokens: 800 })).to.equal(840);
    // Without kinds given, the same price charges all input at the input rate.
    expect(chargeUnits(p, 1000, 0, RATIO)).to.equal(3000);
  });

  it("cache writes at the cache-write rate", () => {
    const p = { ...base, cacheWritePerMillion: 3_750_000 };
    expect(chargeUnits(p, 1000, 0, RATIO, { cacheWriteTokens: 1000 })).to.equal(3750);
    expect(chargeUnits(p, 1000, 0, RATIO, { cacheWriteTokens: 400 })).to.equal(1800 + 1500);
  });

  it("reasoning at the reasoning rate", () => {
    const p = { ...base, reasoningPerMillion: 20_000_000 };
    expect(chargeUnits(p, 0, 100, RATIO, { reasoningTokens: 64 })).to.equal(36 * 15 + 64 * 20);
  });

  it("a free kind (rate 0) is free, not the input rate", () => {
    const p = { ...base, cacheReadPerMillion: 0 };
    expect(chargeUnits(p, 1000, 0, RATIO, { cacheReadTokens: 1000 })).to.equal(0);
    expect(effectiveRates(p).cacheRead).to.equal(0);
    expect(effectiveRates(base).cacheRead).to.equal(base.inputPerMillion);
  });

  it("all kinds, per-request and the group ratio: one rational rounded up once", () => {
    const p: PriceRecord = { model: "m", inputPerMillion: 75_000, outputPerMillion: 300_000, perRequest: 3, cacheReadPerMillion: 37_500, cacheWritePerMillion: 93_750, reasoningPerMillion: 450_000 };
    // (3·10^6 + 21·75000 + 3000·37500 + 2000·93750 + 86·300000 + 64·450000)·0.8 / 10^12 … rounded up once.
    const got = chargeUnits(p, 5021, 150, 800_000, { cacheReadTokens: 3000, cacheWriteTokens: 2000, reasoningTokens: 64 });
    expect(got).to.equal(reference(p, 5021, 150, 800_000, { cr: 3000, cw: 2000, rs: 64 }));
    expect(got).to.equal(Math.ceil(((3e6 + 21 * 75_000 + 3000 * 37_500 + 2000 * 93_750 + 86 * 300_000 + 64 * 450_000) * 0.8) / 1e6));
    expect(got).to.equal(288);
  });

  it("matches the BigInt reference on random prices, counts and ratios, large ones included", () => {
    let seed = 42;
    const rnd = (n: number) => {
      seed = (seed * 1103515245 + 12345) % 2 ** 31;
      return Math.floor((seed / 2 ** 31) * n);
    };
    for (let t = 0; t < 2000; t++) {
      const big = t % 3 === 0;
      const p: PriceRecord = {
        model: "m",
        inputPerMillion: rnd(big ? 1e9 : 1e6),
        outputPerMillion: rnd(big ? 1e9 : 1e6),
        perRequest: rnd(1000),
        ...(rnd(2) ? { cacheReadPerMillion: rnd(big ? 1e9 : 1e6) } : {}),
        ...(rnd(2) ? { cacheWritePerMillion: rnd(big ? 1e9 : 1e6) } : {}),
        ...(rnd(2) ? { reasoningPerMillion: rnd(big ? 1e9 : 1e6) } : {}),
      };
      const i = rnd(big ? MAX_CONSUME_TOKENS : 100_000);
      const o = rnd(big ? MAX_CONSUME_TOKENS : 100_000);
      const cr = rnd(i + 1);
      const cw = rnd(i - cr + 1);
      const rs = rnd(o + 1);
      const ratio = 1 + rnd(big ? MAX_RATIO_PPM : 2_000_000);
      expect(chargeUnits(p, i, o, ratio, { cacheReadTokens: cr, cacheWriteTokens: cw, reasoningTokens: rs }), JSON.stringify({ p, i, o, cr, cw, rs, ratio })).to.equal(reference(p, i, o, ratio, { cr, cw, rs }));
    }
  });

  it("maxChargeUnits counts every token at its side's dearest rate (SetPrice's bound)", () => {
    const p = { ...base, cacheWritePerMillion: 9_000_000, reasoningPerMillion: 40_000_000 };
    expect(maxChargeUnits(p)).to.equal(chargeUnits({ ...base, inputPerMillion: 9_000_000, outputPerMillion: 40_000_000 }, MAX_CONSUME_TOKENS, MAX_CONSUME_TOKENS, MAX_RATIO_PPM));
    // A kind rate alone can make a price unbounded.
    expect(chargeSaturated(maxChargeUnits({ ...base, cacheReadPerMillion: 1e15 }))).to.equal(true);
    expect(chargeSaturated(maxChargeUnits(base))).to.equal(false);
  });
});

describe("ledger entries: kinds and source", () => {
  const input = { requestId: "r1", keyId: "k", reservationId: "", model: "m", inputTokens: 100, outputTokens: 50, units: 9, now: 1 };

  it("a new entry keeps the kinds that are not 0 and its source", () => {
    expect(ledgerExtras({ ...input, cacheReadTokens: 60, cacheWriteTokens: 0, reasoningTokens: 20, source: "ext_proc" })).to.deep.equal({ cacheReadTokens: 60, reasoningTokens: 20, source: "ext_proc" });
    expect(ledgerExtras(input)).to.deep.equal({ source: "consume" });
  });

  it("an entry from before kinds and sources were kept reads as all input and output, its source from its request id", () => {
    const old = { requestId: "extproc:rsv1", inputTokens: 100, outputTokens: 50 } as ConsumeRecord;
    expect(ledgerSource(old)).to.equal("ext_proc");
    expect(ledgerSource({ ...old, requestId: "app-1" })).to.equal("consume");
    expect(tokensByKind(old)).to.deep.equal({ input: 100, output: 50, cacheRead: 0, cacheWrite: 0, reasoning: 0 });
    expect(tokensByKind({ ...old, cacheReadTokens: 60, cacheWriteTokens: 10, reasoningTokens: 20 })).to.deep.equal({ input: 30, output: 30, cacheRead: 60, cacheWrite: 10, reasoning: 20 });
  });

  it("a retry must repeat the kinds; an old entry (no kinds) matches a retry without kinds", () => {
    const first = { keyId: "k", reservationId: "", model: "m", inputTokens: 100, outputTokens: 50, units: 9, cacheReadTokens: 60 };
    const facts = { keyId: "k", reservationId: "", model: "m", inputTokens: 100, outputTokens: 50, units: 0, cacheReadTokens: 60, cacheWriteTokens: 0, reasoningTokens: 0 };
    expect(isSameRequest(first, facts)).to.equal(true);
    expect(isSameRequest(first, { ...facts, cacheReadTokens: 0 })).to.equal(false);
    expect(isSameRequest(first, { ...facts, reasoningTokens: 1 })).to.equal(false);
    const old = { keyId: "k", reservationId: "", model: "m", inputTokens: 100, outputTokens: 50, units: 9 };
    expect(isSameRequest(old, { ...facts, cacheReadTokens: 0 })).to.equal(true);
  });

  it("ext_proc holds an upstream's kinds within their totals", () => {
    expect(kindsWithin({ inputTokens: 100, outputTokens: 10, cacheReadTokens: 150, cacheWriteTokens: 5, reasoningTokens: 20 })).to.deep.equal({ cacheReadTokens: 100, cacheWriteTokens: 0, reasoningTokens: 10 });
    expect(kindsWithin({ inputTokens: 100, outputTokens: 10, cacheReadTokens: 60, cacheWriteTokens: 30, reasoningTokens: 4 })).to.deep.equal({ cacheReadTokens: 60, cacheWriteTokens: 30, reasoningTokens: 4 });
  });
});

describe("CLI usage: token kinds", () => {
  it("the total line names the kinds that are not 0, and none when all are", async () => {
    const { usageView } = await import("../../src/cli/commands/usage.js");
    const total = { requests: "1", denied: "0", deniesByReason: {}, inputTokens: "10000", outputTokens: "200", units: "5", consumed: "1", cacheReadTokens: "6000", cacheWriteTokens: "0", reasoningTokens: "100" };
    const d = { quotaPerUnit: "500000", currency: "USD" } as any;
    const text = usageView({ rows: [], total }, "model", d);
    expect(text).to.include("10,000 input + 200 output tokens (of which 6,000 cache reads, 100 reasoning),");
    const none = usageView({ rows: [], total: { ...total, cacheReadTokens: "0", reasoningTokens: "0" } }, "model", d);
    expect(none).to.include("200 output tokens, ");
  });
});
