// What a finished request costs, in integer units:
//   ceil( (perRequest + (in·inputPerMillion + out·outputPerMillion) / 10^6) · ratioPpm / 10^6 )
// One exact rational, rounded up once (the same arithmetic as the Check estimate).
//
// With token kinds (cache reads and writes are parts of `in`, reasoning a part of `out`) and a
// price that sets their own rates, each part is priced at its rate instead:
//   in·inputPerMillion → (in − cacheRead − cacheWrite)·inputPerMillion
//                        + cacheRead·cacheReadPerMillion + cacheWrite·cacheWritePerMillion
//   out·outputPerMillion → (out − reasoning)·outputPerMillion + reasoning·reasoningPerMillion
// A rate the price leaves unset is the input (or output) rate, so a price without them, or
// usage without kinds, costs exactly what it did before kinds existed.
import type { PriceRecord } from "../domain/types.js";
import { MAX_RATIO_PPM, MAX_UNITS } from "../domain/units.js";
import { ceilDiv, estimateUnits } from "./evaluate.js";

/** The model name of the default price: it prices every model that has no price of its own. */
export const DEFAULT_PRICE_MODEL = "*";

/**
 * THE meaning of "priced", for Check, Consume and usage alike: the model's own price, else the
 * default price ("*") when one is set, else none (the model is unpriced).
 */
export function resolvePrice(prices: { getPrice(model: string): PriceRecord | undefined }, model: string): PriceRecord | undefined {
  return prices.getPrice(model) ?? prices.getPrice(DEFAULT_PRICE_MODEL);
}

/** The most input (and output) tokens one Consume may report. */
export const MAX_CONSUME_TOKENS = 100_000_000;

/**
 * The largest charge a price can produce: MAX_CONSUME_TOKENS input and output tokens at the
 * largest group ratio. SetPrice refuses a price for which it reaches 2^53 − 1 (estimateUnits
 * saturates there), so no Consume charge is ever capped.
 */
export function maxChargeUnits(price: PriceRecord): number {
  // The dearest rate of each side, for every token of it.
  const rates = effectiveRates(price);
  const worst: PriceRecord = {
    model: price.model,
    perRequest: price.perRequest,
    inputPerMillion: Math.max(rates.input, rates.cacheRead, rates.cacheWrite),
    outputPerMillion: Math.max(rates.output, rates.reasoning),
  };
  return chargeUnits(worst, MAX_CONSUME_TOKENS, MAX_CONSUME_TOKENS, MAX_RATIO_PPM);
}

/** True when a computed charge reached the saturation point (it may be larger: not exact). */
export function chargeSaturated(units: number): boolean {
  return units >= MAX_UNITS;
}

/** The parts of a request's tokens priced apart: cache reads and writes of the input, reasoning of the output. */
export interface TokenKinds {
  cacheReadTokens?: number;
  cacheWriteTokens?: number;
  reasoningTokens?: number;
}

/** A rate as priced: a non-negative safe integer (a fraction, by mistake, rounds up). */
function rate(x: number | undefined): number {
  if (x === undefined || !(x > 0)) return 0; // also NaN
  const c = Math.ceil(x);
  return c > MAX_UNITS ? MAX_UNITS : c;
}

/** Every rate of a price, each unset kind's rate being its side's (input or output) rate. */
export function effectiveRates(price: PriceRecord): { input: number; output: number; cacheRead: number; cacheWrite: number; reasoning: number } {
  const input = rate(price.inputPerMillion);
  const output = rate(price.outputPerMillion);
  return {
    input,
    output,
    cacheRead: price.cacheReadPerMillion === undefined ? input : rate(price.cacheReadPerMillion),
    cacheWrite: price.cacheWritePerMillion === undefined ? input : rate(price.cacheWritePerMillion),
    reasoning: price.reasoningPerMillion === undefined ? output : rate(price.reasoningPerMillion),
  };
}

/**
 * The charge for `inputTokens` and `outputTokens` (of which `kinds`: the caller has checked
 * cacheRead + cacheWrite <= input and reasoning <= output) at `price` and the group's ratio.
 * Exact: one rational rounded up once; saturates at 2^53 − 1 (chargeSaturated).
 */
export function chargeUnits(price: PriceRecord, inputTokens: number, outputTokens: number, ratioPpm: number, kinds?: TokenKinds): number {
  const cr = kinds?.cacheReadTokens ?? 0;
  const cw = kinds?.cacheWriteTokens ?? 0;
  const rs = kinds?.reasoningTokens ?? 0;
  const r = effectiveRates(price);
  // Every kind at its side's rate (no kinds, or a price without kind rates): today's formula.
  if ((cr === 0 || r.cacheRead === r.input) && (cw === 0 || r.cacheWrite === r.input) && (rs === 0 || r.reasoning === r.output)) {
    return estimateUnits(price, outputTokens, ratioPpm, { inputEstimateTokens: inputTokens, defaultMaxTokens: 0 });
  }
  const big = (n: number) => BigInt(Math.max(0, Math.trunc(n)));
  const tokensTimesRates =
    (big(inputTokens) - big(cr) - big(cw)) * BigInt(r.input) +
    big(cr) * BigInt(r.cacheRead) +
    big(cw) * BigInt(r.cacheWrite) +
    (big(outputTokens) - big(rs)) * BigInt(r.output) +
    big(rs) * BigInt(r.reasoning);
  const num = (BigInt(rate(price.perRequest)) * 1_000_000n + tokensTimesRates) * BigInt(rate(ratioPpm));
  const exact = ceilDiv(num, 1_000_000_000_000n);
  return exact > BigInt(MAX_UNITS) ? MAX_UNITS : exact < 0n ? 0 : Number(exact);
}
