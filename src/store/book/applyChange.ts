// The key book's apply step for the change feed (store/types.ts, ChangeFeed): how a sidecar's
// book follows what another sidecar committed. Every BookChange carries ABSOLUTE values, so
// applying one is an overwrite with the same put*/remove* steps an engine uses after its own
// commits: applying a change twice, or one this book already holds, changes nothing. Counters
// that carry the engine's per-account sequence (Redis) are applied only when not older than the
// ones the book last applied for that account (or key): a sidecar gets counters from its own
// script replies and from the feed, over two connections, in either order. What the
// book keeps of its own: open reservations (atomic on the engine; the book only caches them)
// and, with them, an account's `reserved`.
import { hotKeyOf } from "../keyProjection.js";
import type { BookChange } from "../types.js";
import type { KeyBook } from "./keyBook.js";

/** Applies one committed batch's changes, in order. `now` starts a budget's tracking until its groupBudget change arrives. */
export function applyChanges(book: KeyBook, changes: readonly BookChange[], now: number): void {
  for (const c of changes) applyChange(book, c, now);
}

export function applyChange(book: KeyBook, c: BookChange, now: number): void {
  const tables = book.tables;
  switch (c.kind) {
    case "key": {
      const k = hotKeyOf(c.record);
      const since = c.counters.refilledAt ?? book.refillSinceFor(c.record, now);
      const slot = book.index.slotOf(c.record.id);
      if (slot < 0) book.addKey(k, c.counters, since);
      else book.updateKey(k, since, book.index.groupOf(slot));
      if (book.acceptKeySeq(c.record.id, c.counters.seq)) book.setKeyCounters(c.record.id, c.counters);
      return;
    }
    case "keyCounters":
      if (book.acceptKeySeq(c.id, c.counters.seq)) book.setKeyCounters(c.id, c.counters);
      return;
    case "keyDeleted":
      if (book.hasKey(c.id)) book.removeKeys([c.id]);
      return;
    case "account": {
      const old = tables.account(c.record.id);
      const reserved = old?.counters.reserved ?? 0;
      // Counters older than the ones the book holds keep the newer ones (the record applies).
      const fresh = book.acceptAccountSeq(c.record.id, c.counters.seq);
      const counters = fresh || !old ? c.counters : { ...old.counters };
      tables.putAccount(c.record, counters);
      tables.account(c.record.id)!.counters.reserved = reserved;
      // A changed zone re-tracks its keys' refills in it (their committed refill starts follow as keyCounters).
      if (old && (old.record.timezone ?? "UTC") !== (c.record.timezone ?? "UTC")) book.retimeAccountKeys(c.record.id, now);
      return;
    }
    case "accountCounters": {
      const a = tables.account(c.id);
      if (!a || !book.acceptAccountSeq(c.id, c.counters.seq)) return;
      a.counters.balance = c.counters.balance;
      a.counters.credited = c.counters.credited;
      a.counters.charged = c.counters.charged;
      return;
    }
    case "group":
      tables.putGroup(c.record, now);
      return;
    case "groupBudget": {
      const g = tables.group(c.name);
      if (g?.record.budget) tables.putGroup(g.record, now, c.counters);
      return;
    }
    case "groupDeleted":
      book.deleteGroup(c.name);
      return;
    case "token": {
      const old = tables.getToken(c.record.id);
      if (old) tables.deleteToken(old);
      tables.putToken(c.record);
      return;
    }
    case "tokenDeleted": {
      const old = tables.getToken(c.id);
      if (old) tables.deleteToken(old);
      return;
    }
    case "price":
      tables.putPrice(c.record);
      return;
    case "reservationSettled":
      book.release(c.id);
      break;
    case "priceDeleted":
      tables.deletePrice(c.model);
      return;
  }
}
