// Usage counters, buckets and filters: the pure vocabulary every usage module shares
// (history, query, live, alerts). No store, no clock, no timers.
import { addSaturating } from "../../domain/units.js";
import type { UsageBucket, UsageCounters } from "../../store/types.js";

export type Gran = UsageBucket["gran"];
export type Dim = UsageBucket["dim"];

export const GRANS: readonly Gran[] = ["m", "h", "d"];
export const DIMS: readonly Dim[] = ["key", "account", "group", "model"];
export const GRAN_MS: Readonly<Record<Gran, number>> = Object.freeze({ m: 60_000, h: 3_600_000, d: 86_400_000 });
export const DAY_MS = 86_400_000;

export type { UsageCounters };

/** `into.kind += n` for a token kind, leaving the field absent while it stays 0. */
export function addKind(into: UsageCounters, kind: "cacheReadTokens" | "cacheWriteTokens" | "reasoningTokens", n: number | undefined): void {
  if (n) into[kind] = addSaturating(into[kind] ?? 0, n);
}

export function zeroCounters(): UsageCounters {
  return { requests: 0, denied: 0, denies: {}, inputTokens: 0, outputTokens: 0, units: 0, consumed: 0 };
}

/** into += c (mutates and returns `into`). */
// Sums saturate at 2^53 − 1 instead of silently dropping units (they are aggregates; the
// ledger holds every charge exactly).
export function addCounters<T extends UsageCounters>(into: T, c: UsageCounters): T {
  into.requests = addSaturating(into.requests, c.requests);
  into.denied = addSaturating(into.denied, c.denied);
  for (const [r, n] of Object.entries(c.denies)) into.denies[r] = addSaturating(into.denies[r] ?? 0, n);
  into.inputTokens = addSaturating(into.inputTokens, c.inputTokens);
  into.outputTokens = addSaturating(into.outputTokens, c.outputTokens);
  into.units = addSaturating(into.units, c.units);
  into.consumed = addSaturating(into.consumed, c.consumed);
  addKind(into, "cacheReadTokens", c.cacheReadTokens);
  addKind(into, "cacheWriteTokens", c.cacheWriteTokens);
  addKind(into, "reasoningTokens", c.reasoningTokens);
  return into;
}

export function copyCounters(c: UsageCounters): UsageCounters {
  const out: UsageCounters = { requests: c.requests, denied: c.denied, denies: { ...c.denies }, inputTokens: c.inputTokens, outputTokens: c.outputTokens, units: c.units, consumed: c.consumed };
  addKind(out, "cacheReadTokens", c.cacheReadTokens);
  addKind(out, "cacheWriteTokens", c.cacheWriteTokens);
  addKind(out, "reasoningTokens", c.reasoningTokens);
  return out;
}

export function copyBucket(b: UsageBucket): UsageBucket {
  return { gran: b.gran, dim: b.dim, id: b.id, start: b.start, ...copyCounters(b) };
}

/** Start (UTC) of the bucket of granularity `gran` containing `t`. */
export function bucketStart(gran: Gran, t: number): number {
  const size = GRAN_MS[gran];
  return Math.floor(t / size) * size;
}

export interface UsageFilter {
  keyId: string;
  accountId: string;
  group: string;
  model: string;
}

/** A key's account and (current) group. */
export interface Owner {
  accountId: string;
  group: string;
}

/** Whether a key of owner `o` is inside filter `f` (its model part aside). */
export function matchesKey(f: UsageFilter, keyId: string, o: Owner): boolean {
  return (!f.keyId || f.keyId === keyId) && (!f.accountId || f.accountId === o.accountId) && (!f.group || f.group === o.group);
}
