// The key book's Consume-side steps: which key (or deleted key's tombstone) a Consume charges,
// and the charge itself. Each is synchronous over the book (keyBook.ts), so a charge settles the
// reservation and moves key, account, group-budget and rate-window counters in one step; the
// engine writes the ledger record it returns with the absolute counters the book reports.
import type { AccountCounters } from "../../domain/types.js";
import { notFound } from "../../domain/errors.js";
import { addExact } from "../../domain/units.js";
import { addLedgerExtras } from "../ledgerEntry.js";
import type { ConsumeInput, ConsumeRecord, ConsumeTarget, KeyRef } from "../types.js";
import type { DeletedKey, KeyBook } from "./keyBook.js";
import { RESERVATION_KEY_AT } from "./reservations.js";

/** The live key a Consume names (by open or expired reservation, key id or secret), or undefined. */
export function resolveConsumeTarget(book: KeyBook, target: ConsumeTarget, now: number): KeyRef | undefined {
  const ix = book.index;
  let keyId: string;
  let reservationId = "";
  if (target.kind === "reservation") {
    if (book.reservationUnits(target.id) !== undefined) {
      keyId = target.id.slice(RESERVATION_KEY_AT);
      reservationId = target.id;
    } else {
      const dot = target.id.indexOf(".");
      if (!target.id.startsWith("rsv_") || dot < 0) return undefined;
      keyId = target.id.slice(dot + 1);
    }
  } else if (target.kind === "key") {
    keyId = target.id;
  } else {
    const slot = ix.findByHash(target.hash, now);
    if (slot < 0) return undefined;
    keyId = ix.idOf(slot);
  }
  const slot = ix.slotOf(keyId);
  if (slot < 0) return undefined;
  const group = ix.groupOf(slot);
  return { keyId, accountId: ix.accountOf(slot), group, ratioPpm: book.tables.ratioOf(group), unlimited: ix.isUnlimited(slot), reservationId, deleted: false };
}

/** A deleted key's Consume target, from its tombstone: the group's ratio now, or the one at deletion if the group is gone too. */
export function deletedRef(book: KeyBook, keyId: string, t: DeletedKey): KeyRef {
  const ratioPpm = book.tables.group(t.group)?.record.ratioPpm ?? t.ratioPpm;
  return { keyId, accountId: t.accountId, group: t.group, ratioPpm, unlimited: false, reservationId: "", deleted: true };
}

/**
 * Charges a live key and its account in one step: refuses a charge past 2^53 − 1, settles the
 * reservation, moves the counters and the rate window. Returns the ledger record; the engine
 * writes it with keyCounters and accountCounters. Always charges (an admitted request was
 * delivered), even past zero.
 */
export function charge(book: KeyBook, c: ConsumeInput): ConsumeRecord {
  const ix = book.index;
  const slot = ix.slotOf(c.keyId);
  const account = book.tables.account(ix.accountOf(slot));
  if (!account) throw notFound("account", ix.accountOf(slot));
  checkChargeExact(book, c, account.counters, slot);
  if (c.reservationId) book.settle(c.reservationId, slot);
  ix.addUsage(slot, c.units, c.now);
  ix.rateWindowForWrite(slot)?.addTokens(c.now, c.inputTokens + c.outputTokens);
  const unlimited = ix.isUnlimited(slot);
  return chargeAccount(book, c, account.counters, ix.groupOf(slot), account.record.id, c.reservationId, unlimited ? 0 : ix.remaining(slot) - ix.reserved(slot), unlimited);
}

/** A deleted key's charge: its account only (no key counters are left to move). */
export function chargeDeleted(book: KeyBook, c: ConsumeInput, tomb: DeletedKey): ConsumeRecord {
  const account = book.tables.account(tomb.accountId);
  if (!account) throw notFound("account", tomb.accountId);
  checkChargeExact(book, c, account.counters, -1);
  return chargeAccount(book, c, account.counters, tomb.group, tomb.accountId, "", 0, false);
}

/** The part of every charge past the key: the group's budget and the account move; the ledger record. */
function chargeAccount(
  book: KeyBook,
  c: ConsumeInput,
  a: AccountCounters,
  group: string,
  accountId: string,
  reservationId: string,
  keyRemaining: number,
  keyUnlimited: boolean,
): ConsumeRecord {
  const budget = book.tables.budget(group);
  if (budget) budget.spent += c.units;
  a.charged += c.units;
  a.balance = a.credited - a.charged;
  return consumeRecord(c, accountId, group, reservationId, keyRemaining, keyUnlimited, a.balance - a.reserved);
}

/** THE ledger record of a new charge (both engines): the input's fields, the key's and account's figures after it, the extras. */
export function consumeRecord(
  c: ConsumeInput,
  accountId: string,
  group: string,
  reservationId: string,
  keyRemaining: number,
  keyUnlimited: boolean,
  accountBalance: number,
): ConsumeRecord {
  const record: ConsumeRecord = {
    requestId: c.requestId,
    keyId: c.keyId,
    accountId,
    group,
    model: c.model,
    inputTokens: c.inputTokens,
    outputTokens: c.outputTokens,
    units: c.units,
    at: c.now,
    reservationId,
    keyRemaining,
    keyUnlimited,
    accountBalance,
  };
  return addLedgerExtras(record, c);
}

/**
 * Refuses (INVALID_ARGUMENT naming units, nothing charged) a charge that would take a counter
 * past 2^53 − 1: the key's used and remaining (and used + total, what its next refill grants),
 * the account's charged and balance. Past that a JS number silently drops units.
 */
function checkChargeExact(book: KeyBook, c: ConsumeInput, a: AccountCounters, slot: number): void {
  const u = c.units;
  // Every sum exact (the rule, always): done, without building the messages below (~120 B of
  // strings a Consume, bench/README.md "Consume without GC tails").
  if (Number.isSafeInteger(a.charged + u) && Number.isSafeInteger(a.credited - (a.charged + u))) {
    if (slot < 0) return;
    const used = book.index.used(slot) + u;
    const total = book.refillTotal(c.keyId);
    if (Number.isSafeInteger(used) && Number.isSafeInteger(book.index.remaining(slot) - u) && (total === undefined || Number.isSafeInteger(used + total))) return;
  }
  refuseInexactCharge(c.keyId, u, slot >= 0 ? { used: book.index.used(slot), remaining: book.index.remaining(slot), total: book.refillTotal(c.keyId) } : undefined, a);
}

/**
 * THE 2^53 rule of a charge on given counters (`key` undefined: a deleted key's, account only):
 * throws INVALID_ARGUMENT naming the first counter the charge would take past 2^53 − 1. The
 * embedded engine runs it on the book; the Redis engine's consume step (BATCH) checks the same sums
 * atomically and, when one fails, hands its counters here for the refusal.
 */
export function refuseInexactCharge(
  keyId: string,
  u: number,
  key: { used: number; remaining: number; total: number | undefined } | undefined,
  a: Pick<AccountCounters, "charged" | "credited">,
): void {
  if (key) {
    const used = addExact(key.used, u, "units", `key ${keyId}'s used units`);
    addExact(key.remaining, -u, "units", `key ${keyId}'s remaining quota`);
    if (key.total !== undefined) addExact(used, key.total, "units", `key ${keyId}'s quota granted at its next refill (used + total)`);
  }
  const charged = addExact(a.charged, u, "units", "the account's charged units");
  addExact(a.credited, -charged, "units", "the account's balance");
}
