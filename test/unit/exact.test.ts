// Amounts stay exact: every counter and charge is refused past 2^53 − 1 (addExact), and
// usage aggregates saturate there instead of silently dropping units (addCounters).
import { expect } from "chai";
import { SidecarError } from "../../src/domain/errors.js";
import { addExact, addSaturating } from "../../src/domain/units.js";
import { maxChargeUnits } from "../../src/policy/pricing.js";
import { addCounters, zeroCounters } from "../../src/service/usage.js";

const MAX = Number.MAX_SAFE_INTEGER;

describe("exact amounts near 2^53", () => {
  const cases = [
    { a: MAX - 1, b: 1, ok: true },
    { a: MAX, b: 1, ok: false },
    { a: -MAX, b: -1, ok: false },
    { a: 999_999_999_999_999 * 9, b: 999_999_999_999_999, ok: false },
    { a: 5, b: -7, ok: true },
  ];
  for (const c of cases) {
    it(`addExact(${c.a}, ${c.b}) ${c.ok ? "is exact" : "is refused naming the field, with the exact value"}`, () => {
      if (c.ok) return void expect(addExact(c.a, c.b, "delta", "x")).to.equal(c.a + c.b);
      try {
        addExact(c.a, c.b, "delta", "the balance");
        expect.fail("no error");
      } catch (e) {
        expect(e).to.be.instanceOf(SidecarError);
        expect((e as SidecarError).code).to.equal("INVALID_ARGUMENT");
        expect((e as SidecarError).message).to.match(/^delta: the balance would be /).and.include(String(BigInt(c.a) + BigInt(c.b)));
      }
    });
  }

  it("usage sums saturate at 2^53 − 1 instead of losing units", () => {
    expect(addSaturating(MAX - 1, 5)).to.equal(MAX);
    const into = { ...zeroCounters(), units: MAX - 2, inputTokens: 7 };
    addCounters(into, { ...zeroCounters(), units: 999, inputTokens: 3, denies: { KEY_INVALID: 1 } });
    expect(into).to.deep.include({ units: MAX, inputTokens: 10 });
    expect(into.denies).to.deep.equal({ KEY_INVALID: 1 });
  });

  it("the largest charge of a price: 10^8 input and output tokens at ratio 1000", () => {
    // (1 + 10^8 · 75000 / 10^6 + 10^8 · 300000 / 10^6) · 1000
    expect(maxChargeUnits({ model: "m", inputPerMillion: 75_000, outputPerMillion: 300_000, perRequest: 1 })).to.equal((1 + 7_500_000 + 30_000_000) * 1000);
    expect(maxChargeUnits({ model: "m", inputPerMillion: 0, outputPerMillion: 1e11, perRequest: 0 })).to.equal(MAX);
  });
});
