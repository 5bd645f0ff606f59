// What a finished request costs, in integer units:
//   ceil( (perRequest + (in·inputPerMillion + out·outputPerMillion) / 10^6) · ratioPpm / 10^6 )
// One exact rational, rounded up once (the same arithmetic as the Check estimate).
import type { PriceRecord } from "../domain/types.js";
import { MAX_RATIO_PPM, MAX_UNITS } from "../domain/units.js";
import { estimateUnits } from "./evaluate.js";

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
  return chargeUnits(price, MAX_CONSUME_TOKENS, MAX_CONSUME_TOKENS, MAX_RATIO_PPM);
}

/** True when a computed charge reached the saturation point (it may be larger: not exact). */
export function chargeSaturated(units: number): boolean {
  return units >= MAX_UNITS;
}

export function chargeUnits(price: PriceRecord, inputTokens: number, outputTokens: number, ratioPpm: number): number {
  return estimateUnits(price, outputTokens, ratioPpm, { inputEstimateTokens: inputTokens, defaultMaxTokens: 0 });
}
