// The LevelDB engine's change feed (ChangeFeed, store/types.ts). The embedded engine is one
// process and the only writer of its directory (LevelDB's lock file refuses a second opener), so
// no other sidecar commits anything: subscribe delivers nothing, and the position never moves.
//
// Its publication is real all the same: every committed batch is translated into the
// BookChanges a shared engine (the Redis fleet) would publish for the other sidecars — absolute
// values, in commit order — and handed to onPublish listeners (none in production: then the
// translation never runs). The contract suite feeds a second key book from it through the
// book's apply step (book/applyChange.ts), so that step is tested on this engine too.
import type { KeyBook } from "../book/keyBook.js";
import type { ChangeBatch, ChangeFeed, BookChange, FeedKeyCounters } from "../types.js";
import type { AccountRecord, GroupBudgetCounters, GroupRecord, KeyRecord, PriceRecord, TokenRecord } from "../../domain/types.js";
import type { AccountCounterValues } from "../book/tables.js";
import type { DeletedKey } from "../book/keyBook.js";
import { decodeCounters, type Op } from "./codecs.js";
import type { SubName } from "./schema.js";

export class SingleWriterFeed implements ChangeFeed {
  readonly #listeners = new Set<(batch: ChangeBatch) => void>();
  #published = 0;

  position(): string {
    return "single-writer";
  }

  subscribe(_from: string, _apply: (batch: ChangeBatch) => void): () => void {
    return () => {};
  }

  /** This engine's own committed batches as a shared engine would publish them (tests). */
  onPublish(listener: (batch: ChangeBatch) => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  /** A batch committed (writer.ts): published to the listeners, if any. */
  committed(ops: readonly Op[], subs: Record<SubName, unknown>, book: KeyBook): void {
    if (this.#listeners.size === 0) return;
    const batch: ChangeBatch = { position: String(++this.#published), changes: changesOf(ops, subs, book) };
    if (batch.changes.length === 0) return;
    for (const l of this.#listeners) l(batch);
  }
}

/**
 * The BookChanges of one committed batch. A record's counters written in the same batch go with
 * it; a record written alone takes the counters the book holds (the engine's, equal to disk up to
 * moves not yet committed, which publish their own absolute values next).
 */
export function changesOf(ops: readonly Op[], subs: Record<SubName, unknown>, book: KeyBook): BookChange[] {
  const keyCtr = new Map<string, FeedKeyCounters>();
  const acctCtr = new Map<string, AccountCounterValues>();
  for (const o of ops) {
    if (o.type !== "put") continue;
    if (o.sublevel === subs.kctr) keyCtr.set(o.key, decodeCounters(o.key, o.value as string));
    else if (o.sublevel === subs.actr) acctCtr.set(o.key, o.value as AccountCounterValues);
  }
  const out: BookChange[] = [];
  for (const o of ops) {
    const s = o.sublevel;
    if (o.type === "put") {
      if (s === subs.keys) {
        const record = o.value as KeyRecord;
        const counters = keyCtr.get(o.key) ?? (book.hasKey(o.key) ? book.keyCounters(o.key) : { remaining: record.quotaTotal, used: 0, credited: record.quotaTotal, lastUsedAt: null, refilledAt: null });
        keyCtr.delete(o.key);
        out.push({ kind: "key", record, counters });
      } else if (s === subs.kctr) {
        const counters = keyCtr.get(o.key);
        if (counters) out.push({ kind: "keyCounters", id: o.key, counters });
      } else if (s === subs.kdel) {
        const t = o.value as DeletedKey;
        out.push({ kind: "keyDeleted", id: o.key, accountId: t.accountId, group: t.group, at: t.deletedAt });
      } else if (s === subs.accts) {
        const counters = acctCtr.get(o.key) ?? (book.tables.hasAccount(o.key) ? book.tables.accountCounters(o.key) : { balance: 0, credited: 0, charged: 0 });
        acctCtr.delete(o.key);
        out.push({ kind: "account", record: o.value as AccountRecord, counters });
      } else if (s === subs.actr) {
        const counters = acctCtr.get(o.key);
        if (counters) out.push({ kind: "accountCounters", id: o.key, counters });
      } else if (s === subs.groups) out.push({ kind: "group", record: o.value as GroupRecord });
      else if (s === subs.gctr) out.push({ kind: "groupBudget", name: o.key, counters: o.value as GroupBudgetCounters });
      else if (s === subs.tokens) out.push({ kind: "token", record: o.value as TokenRecord });
      else if (s === subs.prices) out.push({ kind: "price", record: o.value as PriceRecord });
    } else if (s === subs.groups) out.push({ kind: "groupDeleted", name: o.key });
    else if (s === subs.tokens) out.push({ kind: "tokenDeleted", id: o.key });
    else if (s === subs.prices) out.push({ kind: "priceDeleted", model: o.key });
  }
  return out;
}
