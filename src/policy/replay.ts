// THE replay rule of Consume's idempotency. A request_id names ONE charge: the first Consume
// with it is charged, and a later one with the same id gets that first answer — but only if it
// is the same request. Another key, reservation or usage under the same id is a different
// request: it gets an error, never the first answer (which would show another key's id,
// quota and balance, and leave the second request uncharged). Pure: no I/O.

/** What a ledger entry records of its request (a ConsumeRecord has these fields). */
export interface ChargedRequest {
  keyId: string;
  reservationId: string;
  model: string;
  inputTokens: number;
  outputTokens: number;
  units: number;
  /** The token kinds (absent in entries from before they were kept, and when 0). */
  cacheReadTokens?: number;
  cacheWriteTokens?: number;
  reasoningTokens?: number;
}

/** A Consume as it arrived, its target reduced to the key it names. */
export interface ConsumeFacts {
  /** The key the target names; undefined when it names none any more (a secret since deleted or rotated). */
  keyId: string | undefined;
  /** The reservation id given ("" when the target was a key id or a secret). */
  reservationId: string;
  model: string;
  inputTokens: number;
  outputTokens: number;
  /** Explicit units (0 = priced from the tokens). */
  units: number;
  /** The token kinds given (0 = none). */
  cacheReadTokens: number;
  cacheWriteTokens: number;
  reasoningTokens: number;
}

/**
 * Is `req` a retry of the charged request `first`? Same key; the same reservation when both
 * name one (a first Consume whose reservation had expired records none); the same model and
 * token counts (the kinds included); the same units when the retry gives them explicitly (a priced charge is not
 * recomputed: prices may have changed since).
 */
export function isSameRequest(first: ChargedRequest, req: ConsumeFacts): boolean {
  if (req.keyId === undefined || req.keyId !== first.keyId) return false;
  if (req.reservationId && first.reservationId && req.reservationId !== first.reservationId) return false;
  if (req.model !== first.model || req.inputTokens !== first.inputTokens || req.outputTokens !== first.outputTokens) return false;
  // The kinds too (a first entry from before they were kept has none: a retry giving none matches).
  if (req.cacheReadTokens !== (first.cacheReadTokens ?? 0) || req.cacheWriteTokens !== (first.cacheWriteTokens ?? 0) || req.reasoningTokens !== (first.reasoningTokens ?? 0)) return false;
  return req.units === 0 || req.units === first.units;
}
