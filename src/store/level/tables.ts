// Accounts (`accts` + counters in `actr`), groups, tokens and prices in the LevelDB engine: each
// admin mutation validated against the key book's tables, written in one batch with its audit
// entry, then applied to the book.
import type { AccountRecord, AccountState, GroupBudgetCounters, GroupRecord, PriceRecord, TokenRecord } from "../../domain/types.js";
import { DEFAULT_GROUP } from "../../domain/types.js";
import { failedPrecondition, notFound } from "../../domain/errors.js";
import type { KeyBook } from "../book/keyBook.js";
import { copyGroup, type AccountCounterValues } from "../book/tables.js";
import type { AuditInput } from "../types.js";
import type { AuditLog } from "./audit.js";
import { encodeCounters, type Op } from "./codecs.js";
import type { SubName } from "./schema.js";

export interface TableRecordsDeps {
  subs: () => Record<SubName, any>;
  book: KeyBook;
  /** Runs an admin mutation under the engine's serial lock. */
  serial: <T>(fn: () => Promise<T>) => Promise<T>;
  submit: (ops: Op[]) => Promise<void>;
  audit: () => AuditLog;
  clock: () => number;
}

export class TableRecords {
  readonly #subs: () => Record<SubName, any>;
  readonly #book: KeyBook;
  readonly #serial: <T>(fn: () => Promise<T>) => Promise<T>;
  readonly #submit: (ops: Op[]) => Promise<void>;
  readonly #audit: () => AuditLog;
  readonly #clock: () => number;

  constructor(d: TableRecordsDeps) {
    this.#clock = d.clock;
    this.#subs = d.subs;
    this.#book = d.book;
    this.#serial = d.serial;
    this.#submit = d.submit;
    this.#audit = d.audit;
  }

  insertAccount(record: AccountRecord, initialBalance: number, audit: AuditInput): Promise<AccountState> {
    return this.#serial(async () => {
      this.#book.tables.checkNewAccount(record.id);
      const c: AccountCounterValues = { balance: initialBalance, credited: initialBalance, charged: 0 };
      await this.#submit([
        { type: "put", sublevel: this.#subs().accts, key: record.id, value: record },
        { type: "put", sublevel: this.#subs().actr, key: record.id, value: c },
        ...this.#audit().ops({ ...audit, after: audit.after ?? { ...record, balance: initialBalance } }),
      ]);
      return this.#book.tables.putAccount(record, c);
    });
  }



  /**
   * A changed account record (name, time zone), with its audit entry. A changed zone moves the
   * refill start of the account's keys to now (KeyBook.retimeAccountKeys): their counters are
   * written in the same batch. The book moves first (as adjustBalance's counters do): a failed
   * write sends the engine to recovery, which reloads it from disk.
   */
  updateAccount(id: string, change: (current: AccountRecord) => AccountRecord, audit: (before: AccountRecord, after: AccountRecord) => AuditInput): Promise<AccountState> {
    return this.#serial(async () => {
      const tables = this.#book.tables;
      const cur = tables.account(id);
      if (!cur) throw notFound("account", id);
      const before = structuredClone(cur.record);
      const after = change(structuredClone(cur.record));
      if (after.id !== id) throw new TypeError("updateAccount: the change must keep the account id");
      const now = this.#clock();
      tables.setAccountRecord(after);
      // Refills due under the old zone first (none is lost), then the account's keys re-tracked in the new one.
      const moved = (before.timezone ?? "UTC") !== (after.timezone ?? "UTC") ? [...new Set([...this.#book.refillDue(now), ...this.#book.retimeAccountKeys(id, now)])] : [];
      await this.#submit([
        { type: "put", sublevel: this.#subs().accts, key: id, value: after },
        ...moved.map((k): Op => ({ type: "put", sublevel: this.#subs().kctr, key: k, value: encodeCounters(this.#book.keyCounters(k)), raw: true })),
        ...this.#audit().ops(audit(before, after)),
      ]);
      return tables.getAccount(id)!;
    });
  }

  /** The put of an account's counters as the book holds them now. */
  countersOp(id: string): Op {
    return { type: "put", sublevel: this.#subs().actr, key: id, value: this.#book.tables.accountCounters(id) };
  }

  adjustBalance(id: string, delta: number, audit: AuditInput): Promise<AccountState> {
    return this.#serial(async () => {
      // Counters move now (see the file comment); the batch carries absolute values.
      const before = this.#book.tables.adjustBalance(id, delta);
      const balance = this.#book.tables.account(id)!.counters.balance;
      await this.#submit([
        this.countersOp(id),
        ...this.#audit().ops({ ...audit, before: audit.before ?? { id, balance: before.counters.balance }, after: audit.after ?? { id, balance } }),
      ]);
      return this.#book.tables.getAccount(id)!;
    });
  }

  // ---- groups ------------------------------------------------------------------

  /** The put of a group budget's counters as the book holds them now (`gctr`). */
  budgetCountersOp(name: string): Op | null {
    const c = this.#book.tables.budgetCounters(name);
    return c ? { type: "put", sublevel: this.#subs().gctr, key: name, value: c } : null;
  }

  /**
   * The `gctr` op a group record's write carries: a budget that starts (or whose period
   * changes) is written with its tracking start, `now`, and what it keeps spent (the book's
   * putGroup rule); a budget removed, its counters deleted.
   */
  #budgetOps(rec: GroupRecord, now: number): Op[] {
    const tables = this.#book.tables;
    if (!rec.budget) return tables.budget(rec.name) ? [{ type: "del", sublevel: this.#subs().gctr, key: rec.name }] : [];
    if (!tables.budgetChanges(rec)) return [];
    const counters: GroupBudgetCounters = { spent: tables.budget(rec.name)?.spent ?? 0, since: now };
    return [{ type: "put", sublevel: this.#subs().gctr, key: rec.name, value: counters }];
  }

  insertGroup(record: GroupRecord, audit: AuditInput): Promise<GroupRecord> {
    return this.#serial(async () => {
      this.#book.tables.checkNewGroup(record.name);
      const now = this.#clock();
      await this.#submit([
        { type: "put", sublevel: this.#subs().groups, key: record.name, value: record },
        ...this.#budgetOps(record, now),
        ...this.#audit().ops({ ...audit, after: audit.after ?? record }),
      ]);
      this.#book.tables.putGroup(record, now);
      return copyGroup(record);
    });
  }



  updateGroup(name: string, change: (current: GroupRecord) => GroupRecord, audit: (before: GroupRecord, after: GroupRecord) => AuditInput): Promise<GroupRecord> {
    return this.#serial(async () => {
      const before = this.#book.tables.getGroup(name);
      if (!before) throw notFound("group", name);
      const after = change(before);
      const now = this.#clock();
      await this.#submit([{ type: "put", sublevel: this.#subs().groups, key: name, value: after }, ...this.#budgetOps(after, now), ...this.#audit().ops(audit(before, after))]);
      this.#book.tables.putGroup(after, now);
      return copyGroup(after);
    });
  }

  deleteGroup(name: string, audit: AuditInput): Promise<void> {
    return this.#serial(async () => {
      const g = this.#book.tables.groupRecord(name);
      if (!g) throw notFound("group", name);
      if (name === DEFAULT_GROUP) throw failedPrecondition('group "default" cannot be deleted');
      const n = this.#book.keysInGroup(name);
      if (n > 0) throw failedPrecondition(`group ${JSON.stringify(name)} is used by ${n} key(s); move or delete them first`);
      await this.#submit([{ type: "del", sublevel: this.#subs().groups, key: name }, { type: "del", sublevel: this.#subs().gctr, key: name }, ...this.#audit().ops({ ...audit, before: audit.before ?? g })]);
      this.#book.deleteGroup(name);
    });
  }

  // ---- tokens ------------------------------------------------------------------

  insertToken(record: TokenRecord, audit: AuditInput): Promise<TokenRecord> {
    return this.#serial(async () => {
      this.#book.tables.checkNewToken(record);
      await this.#submit([{ type: "put", sublevel: this.#subs().tokens, key: record.id, value: record }, ...this.#audit().ops({ ...audit, after: audit.after ?? record })]);
      this.#book.tables.putToken(record);
      return { ...record };
    });
  }


  deleteToken(id: string, audit: AuditInput): Promise<void> {
    return this.#serial(async () => {
      const t = this.#book.tables.getToken(id);
      if (!t) throw notFound("token", id);
      await this.#submit([{ type: "del", sublevel: this.#subs().tokens, key: id }, ...this.#audit().ops({ ...audit, before: audit.before ?? t })]);
      this.#book.tables.deleteToken(t);
    });
  }


  // ---- prices ------------------------------------------------------------------

  setPrice(record: PriceRecord, audit: AuditInput): Promise<PriceRecord> {
    return this.#serial(async () => {
      const before = this.#book.tables.getPrice(record.model);
      await this.#submit([{ type: "put", sublevel: this.#subs().prices, key: record.model, value: record }, ...this.#audit().ops({ ...audit, before: audit.before ?? before, after: audit.after ?? record })]);
      this.#book.tables.putPrice(record);
      return { ...record };
    });
  }



  deletePrice(model: string, audit: AuditInput): Promise<void> {
    return this.#serial(async () => {
      const p = this.#book.tables.getPrice(model);
      if (!p) throw notFound("price for model", model);
      await this.#submit([{ type: "del", sublevel: this.#subs().prices, key: model }, ...this.#audit().ops({ ...audit, before: audit.before ?? p })]);
      this.#book.tables.deletePrice(model);
    });
  }
}
