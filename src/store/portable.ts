// The engine-independent form of a store's whole state, for `aisa-authz migrate` (issue 15,
// item 7): every record with its ABSOLUTE counters as stored, never the business operations
// that produced them, so a copy reconciles to the unit. Each engine reads its own layout into
// these chunks (exportState) and writes them in its own layout (importState): src/store/level/
// portable.ts and src/store/redis/portable.ts. Secrets stay sealed (the records' secretEnc as
// stored): copying keys needs no master key, and the target must be served with the same one.
// Webhook endpoints travel sealed too (the form the Redis engine keeps them in, meta
// WEBHOOK_META): the embedded store keeps them in <data>/webhooks.json (service/webhooks.ts), so
// its end seals them on export and opens them on import, with the master key (the only step of
// migrate that needs it, and only when there are endpoints).
import type { AccountRecord, AuditRecord, GroupBudgetCounters, GroupRecord, KeyRecord, PriceRecord, TokenRecord } from "../domain/types.js";
import { masterKeyCheckValue } from "../keys/secrets.js";
import type { DeletedKey, KeyCounterValues } from "./book/keyBook.js";
import type { ConsumeRecord, UsageBucket } from "./types.js";

/** One batch of one kind of state; an export yields many, in this order of kinds. */
export type StateChunk =
  | { kind: "meta"; items: { name: string; value: unknown }[] }
  /** The webhook endpoint set, sealed with the master key under WEBHOOK_META (0 or 1 item). */
  | { kind: "webhooks"; items: { sealed: string }[] }
  | { kind: "accounts"; items: { record: AccountRecord; credited: number; charged: number }[] }
  | { kind: "groups"; items: { record: GroupRecord; budget?: GroupBudgetCounters }[] }
  | { kind: "tokens"; items: TokenRecord[] }
  | { kind: "prices"; items: PriceRecord[] }
  | { kind: "keys"; items: { record: KeyRecord; counters: KeyCounterValues }[] }
  | { kind: "deletedKeys"; items: { id: string; tombstone: DeletedKey }[] }
  | { kind: "ledger"; items: ConsumeRecord[] }
  | { kind: "audit"; items: AuditRecord[] }
  | { kind: "usage"; items: UsageBucket[] }
  /** Threshold-alert marks not yet expired (Store.claimAlertMark): sent alerts are not sent again. */
  | { kind: "alertMarks"; items: { id: string; expiresAt: number }[] };

export type StateKind = StateChunk["kind"];
export const STATE_KINDS: readonly StateKind[] = ["meta", "webhooks", "accounts", "groups", "tokens", "prices", "keys", "deletedKeys", "ledger", "audit", "usage", "alertMarks"];

/** Meta records that travel with the data: the master key's check value (a sidecar with another key refuses to start). */
export const PORTABLE_META: readonly string[] = ["masterKeyCheck"];

/**
 * The meta record of a shared store's webhook endpoints, `{ sealed }` (main.ts), and the
 * associated data they are sealed under (SecretBox): travels as the "webhooks" kind.
 */
export const WEBHOOK_META = "webhookEndpoints";

/**
 * The master key, resolved only when a step needs it (an engine end that must seal or open the
 * webhook endpoints); rejects with a line naming what to give when there is none.
 */
export type MasterKeySource = () => Promise<Buffer>;

/** Refuses a master key whose check value is not the store's (`stored`; undefined: not known). */
export function checkMasterKey(key: Buffer, stored: unknown, what: string): void {
  if (stored !== undefined && stored !== masterKeyCheckValue(key)) {
    throw new Error(`the master key given to migrate is not the one ${what} was sealed with (its check value differs): give the source's (AISA_MASTER_KEY, or its master.key)`);
  }
}

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
