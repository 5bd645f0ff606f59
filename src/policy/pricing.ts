// What a finished request costs, in integer units:
//   ceil( (perRequest + (in·inputPerMillion + out·outputPerMillion) / 10^6) · ratioPpm / 10^6 )
// One exact rational, rounded up once (the same arithmetic as the Check estimate).
import type { PriceRecord } from "../domain/types.js";
import { estimateUnits } from "./evaluate.js";

export function chargeUnits(price: PriceRecord, inputTokens: number, outputTokens: number, ratioPpm: number): number {
  return estimateUnits(price, outputTokens, ratioPpm, { inputEstimateTokens: inputTokens, defaultMaxTokens: 0 });
}
