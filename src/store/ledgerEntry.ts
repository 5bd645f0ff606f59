// What a ledger entry keeps beyond the charge itself: the token kinds priced apart and the
// source of the usage. Written only when they say something (a kind that is 0 is left out), so
// an entry without them — every entry written before they existed — reads the same way.
import type { ConsumeInput, ConsumeRecord, LedgerSource } from "./types.js";

/** Consume request ids of ext_proc settlements start with this (service/metering.ts). */
export const EXTPROC_REQUEST_PREFIX = "extproc:";

/** The fields of a new ledger entry that follow from its ConsumeInput beyond the charge. */
export function ledgerExtras(c: ConsumeInput): Pick<ConsumeRecord, "cacheReadTokens" | "cacheWriteTokens" | "reasoningTokens" | "source"> {
  return addLedgerExtras({} as ConsumeRecord, c);
}

/**
 * The same fields added to a new ledger entry the fields that follow from its ConsumeInput beyond the charge, in
 * place (a Consume's record is built once: no extras object spread into it).
 */
export function addLedgerExtras(r: ConsumeRecord, c: ConsumeInput): ConsumeRecord {
  if (c.cacheReadTokens) r.cacheReadTokens = c.cacheReadTokens;
  if (c.cacheWriteTokens) r.cacheWriteTokens = c.cacheWriteTokens;
  if (c.reasoningTokens) r.reasoningTokens = c.reasoningTokens;
  r.source = c.source ?? "consume";
  return r;
}

/** Where an entry's usage came from; for an entry from before sources were kept, by its request id. */
export function ledgerSource(r: Pick<ConsumeRecord, "source" | "requestId">): LedgerSource {
  return r.source ?? (r.requestId.startsWith(EXTPROC_REQUEST_PREFIX) ? "ext_proc" : "consume");
}

/** An entry's tokens by kind (README, "Billing"): input and output without the kinds apart. */
export interface TokensByKind {
  input: number;
  output: number;
  cacheRead: number;
  cacheWrite: number;
  reasoning: number;
}

/**
 * An entry's tokens by kind, each counted once: `input` is the input tokens that are neither
 * cache reads nor writes, `output` the output tokens that are not reasoning. An entry from
 * before kinds were kept has all its input as `input`, all its output as `output`.
 */
export function tokensByKind(r: Pick<ConsumeRecord, "inputTokens" | "outputTokens" | "cacheReadTokens" | "cacheWriteTokens" | "reasoningTokens">): TokensByKind {
  const cacheRead = r.cacheReadTokens ?? 0;
  const cacheWrite = r.cacheWriteTokens ?? 0;
  const reasoning = r.reasoningTokens ?? 0;
  return { input: r.inputTokens - cacheRead - cacheWrite, output: r.outputTokens - reasoning, cacheRead, cacheWrite, reasoning };
}
