// The LevelDB engine's admin surface (keys, accounts, groups, tokens, prices, audit): the Store
// methods an operator's change goes through, each delegated to the engine part that validates it
// on the key book, writes its batch and applies it to the book (keys.ts, tables.ts, audit.ts);
// reads of accounts, groups, tokens and prices come from the book. LevelStore (levelStore.ts)
// adds the lifecycle, the hot path, Consume, usage history and maintenance.
import type { AccountRecord, AccountState, AuditRecord, GroupRecord, KeyRecord, KeyState, PriceRecord, TokenRecord } from "../../domain/types.js";
import type { KeyBook } from "../book/keyBook.js";
import { keyIdsByCreation } from "../book/keyOrder.js";
import type { AuditInput, GroupWithCount, KeyChange, KeyIndexView, ListAuditQuery } from "../types.js";
import type { AuditLog } from "./audit.js";
import type { Op } from "./codecs.js";
import type { KeyRecords } from "./keys.js";
import type { TableRecords } from "./tables.js";

export abstract class LevelAdmin {
  abstract readonly book: KeyBook;
  protected abstract readonly keyRecords: KeyRecords;
  protected abstract readonly tableRecords: TableRecords;
  protected abstract auditLog(): AuditLog;
  /** Builds ops and writes them under the admin lock (one admin mutation at a time). */
  protected abstract serialSubmit(ops: () => Op[]): Promise<void>;

  // ---- keys (keys.ts) ----------------------------------------------------------

  insertKey(record: KeyRecord, audit: AuditInput): Promise<KeyState> {
    return this.keyRecords.insertKey(record, audit);
  }

  /**
   * Bulk import (migrations, benchmarks): inserts many keys in large atomic batches, with one
   * audit entry per batch; a batch with a bad record writes nothing.
   */
  importKeys(records: readonly KeyRecord[], audit: AuditInput, batchSize = 10_000): Promise<number> {
    return this.keyRecords.importKeys(records, audit, batchSize);
  }

  getKey(id: string): Promise<KeyState | undefined> {
    return this.keyRecords.getKey(id);
  }

  scanKeys(accountId?: string): AsyncIterable<KeyState> {
    return this.keyRecords.scanKeys(accountId);
  }

  keyIdsByCreation(accountId: string | undefined, newestFirst: boolean, keep: (v: KeyIndexView) => boolean): string[] {
    return keyIdsByCreation(this.book.index, accountId, newestFirst, keep);
  }

  updateKeys(ids: readonly string[], change: (current: KeyState) => KeyChange, audit: (before: KeyState, after: KeyState) => AuditInput): Promise<KeyState[]> {
    return this.keyRecords.updateKeys(ids, change, audit);
  }

  deleteKeys(ids: readonly string[], check: (current: KeyState) => void, audit: (before: KeyState) => AuditInput): Promise<void> {
    return this.keyRecords.deleteKeys(ids, check, audit);
  }

  // ---- accounts, groups, tokens, prices (tables.ts) --------------------------------

  insertAccount(record: AccountRecord, initialBalance: number, audit: AuditInput): Promise<AccountState> {
    return this.tableRecords.insertAccount(record, initialBalance, audit);
  }

  getAccount(id: string): AccountState | undefined {
    return this.book.tables.getAccount(id);
  }

  listAccounts(): AccountState[] {
    return this.book.tables.listAccounts();
  }

  updateAccount(id: string, change: (current: AccountRecord) => AccountRecord, audit: (before: AccountRecord, after: AccountRecord) => AuditInput): Promise<AccountState> {
    return this.tableRecords.updateAccount(id, change, audit);
  }

  adjustBalance(id: string, delta: number, audit: AuditInput): Promise<AccountState> {
    return this.tableRecords.adjustBalance(id, delta, audit);
  }

  insertGroup(record: GroupRecord, audit: AuditInput): Promise<GroupRecord> {
    return this.tableRecords.insertGroup(record, audit);
  }

  getGroup(name: string): GroupRecord | undefined {
    return this.book.tables.getGroup(name);
  }

  listGroups(accountId?: string): GroupWithCount[] {
    return this.book.listGroups(accountId);
  }

  updateGroup(name: string, change: (current: GroupRecord) => GroupRecord, audit: (before: GroupRecord, after: GroupRecord) => AuditInput): Promise<GroupRecord> {
    return this.tableRecords.updateGroup(name, change, audit);
  }

  deleteGroup(name: string, audit: AuditInput): Promise<void> {
    return this.tableRecords.deleteGroup(name, audit);
  }

  insertToken(record: TokenRecord, audit: AuditInput): Promise<TokenRecord> {
    return this.tableRecords.insertToken(record, audit);
  }

  listTokens(): TokenRecord[] {
    return this.book.tables.listTokens();
  }

  deleteToken(id: string, audit: AuditInput): Promise<void> {
    return this.tableRecords.deleteToken(id, audit);
  }

  findTokenByHash(hashHex: string): TokenRecord | undefined {
    return this.book.tables.findTokenByHash(hashHex);
  }

  setPrice(record: PriceRecord, audit: AuditInput): Promise<PriceRecord> {
    return this.tableRecords.setPrice(record, audit);
  }

  getPrice(model: string): PriceRecord | undefined {
    return this.book.tables.getPrice(model);
  }

  listPrices(): PriceRecord[] {
    return this.book.tables.listPrices();
  }

  deletePrice(model: string, audit: AuditInput): Promise<void> {
    return this.tableRecords.deletePrice(model, audit);
  }

  // ---- audit -------------------------------------------------------------------

  listAudit(q: ListAuditQuery): Promise<AuditRecord[]> {
    return this.auditLog().list(q);
  }

  appendAudit(audit: AuditInput | readonly AuditInput[]): Promise<void> {
    const list = Array.isArray(audit) ? audit : [audit as AuditInput];
    return this.serialSubmit(() => list.flatMap((a) => this.auditLog().ops(a)));
  }
}
