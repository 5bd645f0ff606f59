// One meaning of "priced" for Check, Consume and usage (policy/pricing.ts resolvePrice).
import { expect } from "chai";
import type { PriceRecord } from "../../src/domain/types.js";
import { DEFAULT_PRICE_MODEL, resolvePrice } from "../../src/policy/pricing.js";

const price = (model: string): PriceRecord => ({ model, perRequest: 0, inputPerMillion: 1, outputPerMillion: 2 });
const book = (...models: string[]) => {
  const m = new Map(models.map((x) => [x, price(x)]));
  return { getPrice: (model: string) => m.get(model) };
};

describe("resolvePrice: THE meaning of priced", () => {
  it("a model's own price comes first", () => expect(resolvePrice(book("m1", DEFAULT_PRICE_MODEL), "m1")?.model).to.equal("m1"));
  it("a model without one is priced by the default price \"*\"", () => expect(resolvePrice(book("m1", DEFAULT_PRICE_MODEL), "other")?.model).to.equal("*"));
  it("without a default price it is unpriced", () => expect(resolvePrice(book("m1"), "other")).to.equal(undefined));
  it("usage's isPriced (as serve builds it) counts a *-priced model as priced, like Check", () => {
    const prices = book(DEFAULT_PRICE_MODEL);
    const isPriced = (model: string) => resolvePrice(prices, model) !== undefined;
    expect(isPriced("made-up")).to.equal(true);
  });
});
