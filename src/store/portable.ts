// The engine-independent form of a store's whole state, for `aisa-authz migrate` (issue 15,
// item 7): every record with its ABSOLUTE counters as stored, never the business operations
// that produced them, so a copy reconciles to the unit. Each engine reads its own layout into
// these chunks (exportState) and writes them in its own layout (importState): src/store/level/
// portable.ts and src/store/redis/portable.ts. Secrets stay sealed (the records' secretEnc as
// stored): copying needs no master key, and the target must be served with the same one.
import type { AccountRecord, AuditRecord, GroupBudgetCounters, GroupRecord, KeyRecord, PriceRecord, TokenRecord } from "../domain/types.js";
import type { DeletedKey, KeyCounterValues } from "./book/keyBook.js";
import type { ConsumeRecord, UsageBucket } from "./types.js";

/** One batch of one kind of state; an export yields many, in this order of kinds. */
export type StateChunk =
  | { kind: "meta"; items: { name: string; value: unknown }[] }
  | { kind: "accounts"; items: { record: AccountRecord; credited: number; charged: number }[] }
  | { kind: "groups"; items: { record: GroupRecord; budget?: GroupBudgetCounters }[] }
  | { kind: "tokens"; items: TokenRecord[] }
  | { kind: "prices"; items: PriceRecord[] }
  | { kind: "keys"; items: { record: KeyRecord; counters: KeyCounterValues }[] }
  | { kind: "deletedKeys"; items: { id: string; tombstone: DeletedKey }[] }
  | { kind: "ledger"; items: ConsumeRecord[] }
  | { kind: "audit"; items: AuditRecord[] }
  | { kind: "usage"; items: UsageBucket[] };

export type StateKind = StateChunk["kind"];
export const STATE_KINDS: readonly StateKind[] = ["meta", "accounts", "groups", "tokens", "prices", "keys", "deletedKeys", "ledger", "audit", "usage"];

/** Meta records that travel with the data: the master key's check value (a sidecar with another key refuses to start). */
export const PORTABLE_META: readonly string[] = ["masterKeyCheck"];

/** Records per chunk. */
export const CHUNK = 1000;

/**
 * The items `pick` makes of `source` (undefined: skipped) as chunks of `kind`, CHUNK at a time.
 * The last chunk may be empty (a kind read whole always yields at least once) unless `skipEmpty`.
 */
export async function* chunked<K extends StateKind, S>(
  kind: K,
  source: AsyncIterable<S>,
  pick: (s: S) => Extract<StateChunk, { kind: K }>["items"][number] | undefined,
  skipEmpty = false,
): AsyncIterable<StateChunk> {
  let batch: unknown[] = [];
  for await (const s of source) {
    const item = pick(s);
    if (item === undefined) continue;
    batch.push(item);
    if (batch.length >= CHUNK) {
      yield { kind, items: batch } as StateChunk;
      batch = [];
    }
  }
  if (batch.length || !skipEmpty) yield { kind, items: batch } as StateChunk;
}

/** Counts of each kind copied so far. */
export type StateCounts = Record<StateKind, number>;

export function emptyCounts(): StateCounts {
  return Object.fromEntries(STATE_KINDS.map((k) => [k, 0])) as StateCounts;
}

/** What an engine offers `migrate`: read everything, tell what is there, write everything. */
export interface PortableEngine {
  /** A short description of what the store holds, or undefined when it holds nothing. */
  contents(): Promise<string | undefined>;
  exportState(): AsyncIterable<StateChunk>;
  /** Writes the chunks; `onChunk` after each one is durably written. */
  importState(chunks: AsyncIterable<StateChunk>, onChunk: (c: StateChunk) => void): Promise<void>;
  /** Removes everything of this store (the target of a failed or forced migration). */
  wipe(): Promise<void>;
  close(): Promise<void>;
}
