// The embedded default engine: LevelDB (`level`) under the engine-independent key book
// (store/book/), which holds what is in memory and every rule over it. This file is the Store:
// lifecycle, the admin lock, recovery, and delegation to the engine's parts — keys.ts and
// tables.ts (admin batches), ledger.ts (Consume), writer.ts (group commit), load.ts and
// schema.ts (open, upgrades, reload), audit.ts, usageBuckets.ts, integrity.ts, codecs.ts.
//
// Layout (sublevels, JSON values unless noted):
//   keys   id → KeyRecord            khash  sha256hex → id (current and grace secrets)
//   khot   id → the key's hot projection (compact text, src/store/keyProjection.ts)
//   kctr   id → KeyCountersDisk (compact text, codecs.ts encodeCounters)
//   accts  id → AccountRecord        actr   id → AccountCounterValues (book/tables.ts)
//   groups name → GroupRecord        tokens id → TokenRecord
//   gctr   name → GroupBudgetCounters (a budgeted group's spent and period start; absent = 0 from load)
//   prices model → PriceRecord       audit  auditId (time-ordered) → AuditRecord
//   auditacct account|auditId → "" (the entries about an account's keys, for account-scoped
//          ListAudit; entries older than meta "auditIndexFrom" are not in it)
//   ledger requestId → ConsumeRecord (the usage ledger and idempotency record)
//   kdel   id → DeletedKey (what a deleted key's late Consumes need: account, group, ratio)
//   usage  t|gran|dim|startHex|id → UsageBucket (every bucket, time-ordered per granularity
//          and dimension: operator queries, retention)
//          a|gran|dim|account|startHex|id → the same bucket again for key and account rows
//          (an account's query is a range scan over its own prefix and time range)
//   meta   "schema" → number, "hot" → projection format version, "keysHint" → key count
//          at the last open (sizes the index before the load; only a hint), "usage" → usage
//          layout (USAGE_LAYOUT; layout 1, gran|dim|id|startHex, is migrated on open)
//
// Start-up reads `khot` + `kctr`, not the full records: the hot index needs ~100 B of each
// key's ~577 B record, and decoding it is far cheaper than JSON.parse (1M keys: ~560 MB
// of JSON was most of start-up; bench/README.md). Every batch that puts or deletes a `keys`
// entry puts or deletes its `khot` entry too, so disk never holds one without the other
// (checkIntegrity verifies it, byte for byte). Schema 2 means "khot is maintained"; a schema-1
// dir (written before khot existed) is upgraded on open: the projection is built once from
// the full records (the old, slow load) and the marker is written after it. The schema bump
// also keeps an older build (which would write keys without khot) from opening the dir.
// A "hot" marker other than PROJECTION_VERSION (a future format) rebuilds the same way.
//
// Writes: every mutation goes through ONE serial writer that group-commits
// (all submissions waiting while a batch is being synced go into the next
// batch, one fsync for all). A submission resolves only after its batch is on
// disk. Admin mutations are also serialised among themselves (one at a time),
// so each reads, validates and commits with no interleaving: that is the
// compare-and-set the Store interface promises.
//
// Memory: record changes are applied to the key book after their batch
// commits; counter changes are made in the book when the batch is built, and the
// batch carries the absolute counter values the book reports, so batches (which
// commit in submission order) always leave disk equal to memory at that point.
import { mkdir } from "node:fs/promises";
import type {
  AccountRecord,
  AccountState,
  AuditRecord,
  GroupRecord,
  KeyRecord,
  KeyState,
  PriceRecord,
  TokenRecord,
} from "../../domain/types.js";
import { StoreUnavailableError } from "../../domain/errors.js";
import type { HotIndex } from "../book/hotIndex.js";
import { KeyBook } from "../book/keyBook.js";
import { reservationKeyId } from "../book/reservations.js";
import type {
  AuditInput,
  ChangeFeed,
  ConsumeInput,
  ConsumeRecord,
  ConsumeTarget,
  KeyRef,
  UsageBucket,
  UsageQueryRange,
  GroupWithCount,
  HotSnapshot,
  KeyChange,
  ListAuditQuery,
  ReserveRequest,
  ReserveResult,
  Store,
  StoreHealth,
} from "../types.js";
import { RAW_SYNC, type Op } from "./codecs.js";
import { GroupCommitWriter } from "./writer.js";
import { AuditLog } from "./audit.js";
import { checkIntegrity } from "./integrity.js";
import { Ledger } from "./ledger.js";
import { KeyRecords } from "./keys.js";
import { TableRecords } from "./tables.js";
import type { SubName } from "./schema.js";
import { LevelDisk } from "./disk.js";
import { SingleWriterFeed } from "./changeFeed.js";
import { loadStore, reloadFromDisk } from "./load.js";
import { getUsageBuckets, pruneUsageOps, queryUsageBuckets, usagePuts } from "./usageBuckets.js";







export interface LevelStoreOptions {
  dir: string;
  /** Called with store errors (for logging/metrics). */
  onError?: (err: unknown) => void;
  /** Clock for audit ids, refills, TTLs. */
  clock?: () => number;
  /** Test hook: when it returns an error, the next batch write fails with it (fault injection). */
  faultInjector?: () => Error | null;
  /**
   * Ignore the `khot` projection: load from the full records and rewrite the projection
   * (the upgrade path, forced). For tests and for repair.
   */
  rebuildProjection?: boolean;
  /** Open reservations held at most; at the cap a Check releases the oldest (KeyBook). */
  maxReservations?: number;
}





export class LevelStore implements Store {
  /** Changes committed by other sidecars: none, this process is the only writer. */
  readonly changes: ChangeFeed = new SingleWriterFeed();
  readonly #dir: string;
  readonly #clock: () => number;
  readonly #onError: (err: unknown) => void;
  #disk!: LevelDisk;
  #subs!: Record<SubName, any>;

  /** What this sidecar holds in memory and every rule over it (store/book/keyBook.ts). */
  readonly book: KeyBook;
  /** The book's key index (its size is the key count). */
  get index(): HotIndex {
    return this.book.index;
  }
  readonly #writer: GroupCommitWriter;
  #recovering = false;
  readonly #fault: (() => Error | null) | undefined;
  readonly #rebuildProjection: boolean;
  /** How the last open loaded the keys (tests). */
  loadedFrom: "projection" | "records" | undefined;

  #health: StoreHealth = "NOT_SERVING";
  readonly #healthListeners: ((h: StoreHealth) => void)[] = [];

  // Serial admin lock and group-commit writer.
  #lock: Promise<unknown> = Promise.resolve();
  #audit!: AuditLog;
  #ledger!: Ledger;
  readonly #keys: KeyRecords;
  readonly #tables: TableRecords;
  /** Sizes of recent group-commit batches (for metrics). */
  onBatch: ((submissions: number, ops: number) => void) | undefined;

  constructor(opts: LevelStoreOptions) {
    this.book = new KeyBook({ maxReservations: opts.maxReservations });
    this.#dir = opts.dir;
    this.#clock = opts.clock ?? Date.now;
    this.#onError = opts.onError ?? (() => {});
    this.#fault = opts.faultInjector;
    this.#writer = new GroupCommitWriter({
      write: (ops) => this.#disk.db.batch(ops as any, RAW_SYNC),
      fault: this.#fault,
      onError: (err) => this.#onError(err),
      onCommitted: (submissions, ops) => {
        this.onBatch?.(submissions, ops);
        this.#setHealth("SERVING");
      },
      onFailed: () => this.#setHealth("NOT_SERVING"),
    });
    this.#rebuildProjection = opts.rebuildProjection === true;
    this.#tables = new TableRecords({
      subs: () => this.#subs,
      book: this.book,
      serial: (fn) => this.#serial(fn),
      submit: (ops) => this.#submit(ops),
      audit: () => this.#audit,
      clock: this.#clock,
    });
    this.#keys = new KeyRecords({
      disk: () => this.#disk,
      book: this.book,
      clock: this.#clock,
      onError: (err) => this.#onError(err),
      serial: (fn) => this.#serial(fn),
      submit: (ops) => this.#submit(ops),
      audit: () => this.#audit,
    });
  }

  // ---- lifecycle ---------------------------------------------------------

  async open(now: number): Promise<void> {
    await mkdir(this.#dir, { recursive: true, mode: 0o700 });
    this.#disk = new LevelDisk(this.#dir);
    await this.#disk.open();
    this.#subs = this.#disk.subs;
    this.#ledger = new Ledger({
      ledger: this.#subs.ledger,
      kdel: this.#subs.kdel,
      book: this.book,
      writer: this.#writer,
      keyCountersOp: (id) => this.#ctrOp(id),
      accountCountersOp: (id) => this.#actrOp(id),
      budgetCountersOp: (group) => this.#tables.budgetCountersOp(group),
      onError: (err) => this.#onError(err),
    });
    try {
      const loaded = await loadStore(this.#disk, this.book, now, this.#rebuildProjection);
      this.loadedFrom = loaded.from;
      this.#audit = new AuditLog(this.#subs.audit, this.#subs.auditacct, this.#clock, loaded.auditIndexFrom, (keyId) => {
        const slot = this.book.index.slotOf(keyId);
        return slot >= 0 ? this.book.index.accountOf(slot) : undefined;
      });
      this.refill(now);
      await this.#disk.unmapLoadedTables();
    } catch (err) {
      // Release the directory's lock: a failed open leaves nothing open.
      await this.#disk.db.close().catch(() => {});
      throw err;
    }
    this.#setHealth("SERVING");
  }

  async close(): Promise<void> {
    // Let queued writes finish before closing.
    await this.#lock.catch(() => {});
    while (!this.#writer.idle) await new Promise((r) => setTimeout(r, 5));
    this.#setHealth("NOT_SERVING");
    if (this.#disk) await this.#disk.db.close();
  }

  health(): StoreHealth {
    return this.#health;
  }

  onHealth(listener: (h: StoreHealth) => void): void {
    this.#healthListeners.push(listener);
  }

  #setHealth(h: StoreHealth): void {
    if (h === this.#health) return;
    this.#health = h;
    for (const l of this.#healthListeners) l(h);
  }

  /** A value of the `meta` sublevel (JSON), or undefined. */
  readMeta(name: string): Promise<unknown> {
    return this.#disk.readMeta(name);
  }

  /** Writes a value of the `meta` sublevel, synced. */
  writeMeta(name: string, value: unknown): Promise<void> {
    return this.#submit([{ type: "put", sublevel: this.#subs.meta, key: name, value }]);
  }

  /** Queues ops for the next group-committed batch (writer.ts); resolves once synced. */
  #submit(ops: Op[]): Promise<void> {
    return this.#writer.submit(ops);
  }

  /** Runs admin mutations one at a time. */
  #serial<T>(fn: () => Promise<T>): Promise<T> {
    const p = this.#lock.then(() => {
      if (this.#health === "NOT_SERVING" && !this.#disk) throw new StoreUnavailableError();
      return fn();
    });
    this.#lock = p.catch(() => {});
    return p;
  }

  // ---- keys (keys.ts) ----------------------------------------------------------

  insertKey(record: KeyRecord, audit: AuditInput): Promise<KeyState> {
    return this.#keys.insertKey(record, audit);
  }

  /**
   * Bulk import (migrations, benchmarks): inserts many keys in large atomic batches, with one
   * audit entry per batch; a batch with a bad record writes nothing.
   */
  importKeys(records: readonly KeyRecord[], audit: AuditInput, batchSize = 10_000): Promise<number> {
    return this.#keys.importKeys(records, audit, batchSize);
  }

  getKey(id: string): Promise<KeyState | undefined> {
    return this.#keys.getKey(id);
  }

  scanKeys(accountId?: string): AsyncIterable<KeyState> {
    return this.#keys.scanKeys(accountId);
  }

  updateKeys(ids: readonly string[], change: (current: KeyState) => KeyChange, audit: (before: KeyState, after: KeyState) => AuditInput): Promise<KeyState[]> {
    return this.#keys.updateKeys(ids, change, audit);
  }

  deleteKeys(ids: readonly string[], check: (current: KeyState) => void, audit: (before: KeyState) => AuditInput): Promise<void> {
    return this.#keys.deleteKeys(ids, check, audit);
  }

  /** The put of a key's counters as the book holds them now. */
  #ctrOp(id: string, refilledAt?: number | null): Op {
    return this.#keys.countersOp(id, refilledAt);
  }

  /** The put of an account's counters as the book holds them now. */
  #actrOp(id: string): Op {
    return this.#tables.countersOp(id);
  }

  // ---- accounts, groups, tokens, prices (tables.ts) --------------------------------

  insertAccount(record: AccountRecord, initialBalance: number, audit: AuditInput): Promise<AccountState> {
    return this.#tables.insertAccount(record, initialBalance, audit);
  }

  getAccount(id: string): AccountState | undefined {
    return this.book.tables.getAccount(id);
  }

  listAccounts(): AccountState[] {
    return this.book.tables.listAccounts();
  }

  adjustBalance(id: string, delta: number, audit: AuditInput): Promise<AccountState> {
    return this.#tables.adjustBalance(id, delta, audit);
  }

  insertGroup(record: GroupRecord, audit: AuditInput): Promise<GroupRecord> {
    return this.#tables.insertGroup(record, audit);
  }

  getGroup(name: string): GroupRecord | undefined {
    return this.book.tables.getGroup(name);
  }

  listGroups(accountId?: string): GroupWithCount[] {
    return this.book.listGroups(accountId);
  }

  updateGroup(name: string, change: (current: GroupRecord) => GroupRecord, audit: (before: GroupRecord, after: GroupRecord) => AuditInput): Promise<GroupRecord> {
    return this.#tables.updateGroup(name, change, audit);
  }

  deleteGroup(name: string, audit: AuditInput): Promise<void> {
    return this.#tables.deleteGroup(name, audit);
  }

  insertToken(record: TokenRecord, audit: AuditInput): Promise<TokenRecord> {
    return this.#tables.insertToken(record, audit);
  }

  listTokens(): TokenRecord[] {
    return this.book.tables.listTokens();
  }

  deleteToken(id: string, audit: AuditInput): Promise<void> {
    return this.#tables.deleteToken(id, audit);
  }

  findTokenByHash(hashHex: string): TokenRecord | undefined {
    return this.book.tables.findTokenByHash(hashHex);
  }

  setPrice(record: PriceRecord, audit: AuditInput): Promise<PriceRecord> {
    return this.#tables.setPrice(record, audit);
  }

  getPrice(model: string): PriceRecord | undefined {
    return this.book.tables.getPrice(model);
  }

  listPrices(): PriceRecord[] {
    return this.book.tables.listPrices();
  }

  deletePrice(model: string, audit: AuditInput): Promise<void> {
    return this.#tables.deletePrice(model, audit);
  }

  // ---- audit -------------------------------------------------------------------

  listAudit(q: ListAuditQuery): Promise<AuditRecord[]> {
    return this.#audit.list(q);
  }

  appendAudit(audit: AuditInput | readonly AuditInput[]): Promise<void> {
    const list = Array.isArray(audit) ? audit : [audit as AuditInput];
    return this.#serial(() => this.#submit(list.flatMap((a) => this.#audit.ops(a))));
  }

  // ---- hot path ------------------------------------------------------------------

  lookup(secretHash: Uint8Array, now: number): HotSnapshot | undefined {
    return this.book.lookup(secretHash, now);
  }

  reserve(req: ReserveRequest): ReserveResult {
    return this.book.reserve(req);
  }

  release(reservationId: string): boolean {
    return this.book.release(reservationId);
  }

  reservationUnits(reservationId: string): number | undefined {
    return this.book.reservationUnits(reservationId);
  }

  /**
   * Cross-checks the on-disk indexes (integrity.ts): the problems found, empty when consistent.
   * The crash, disk-full and process tests run it after every restart.
   */
  checkIntegrity(): Promise<string[]> {
    return checkIntegrity(this.#subs);
  }

  // ---- consume (usage ledger) --------------------------------------------------

  findConsume(requestId: string): Promise<ConsumeRecord | undefined> {
    return this.#ledger.find(requestId);
  }

  consume(input: ConsumeInput): Promise<{ record: ConsumeRecord; replayed: boolean }> {
    return this.#ledger.consume(input);
  }

  scanLedger(): AsyncIterable<ConsumeRecord> {
    return this.#ledger.scan();
  }

  resolveConsumeTarget(target: ConsumeTarget, now: number): KeyRef | undefined {
    return this.book.resolveConsumeTarget(target, now);
  }

  async resolveDeletedTarget(target: ConsumeTarget): Promise<KeyRef | undefined> {
    const keyId = target.kind === "key" ? target.id : target.kind === "reservation" ? reservationKeyId(target.id) : undefined;
    if (!keyId || this.book.hasKey(keyId)) return undefined;
    const t = await this.#ledger.deletedKey(keyId);
    return t ? this.book.deletedRef(keyId, t) : undefined;
  }

  // ---- usage buckets (usageBuckets.ts) ---------------------------------------------

  /** Usage entries read by queries since open (a stat for tests and diagnostics). */
  usageEntriesRead = 0;

  putUsageBuckets(buckets: readonly UsageBucket[]): Promise<void> {
    if (buckets.length === 0) return Promise.resolve();
    const ops: Op[] = [];
    for (const b of buckets) for (const op of usagePuts(b, this.#subs.usage)) ops.push(op);
    return this.#submit(ops);
  }

  getUsageBuckets(refs: readonly Pick<UsageBucket, "gran" | "dim" | "id" | "start">[]): Promise<(UsageBucket | undefined)[]> {
    return getUsageBuckets(this.#subs.usage, refs);
  }

  queryUsageBuckets(q: UsageQueryRange): Promise<UsageBucket[]> {
    return queryUsageBuckets(this.#subs.usage, q, (n) => (this.usageEntriesRead += n));
  }

  async pruneUsage(before: Readonly<Record<UsageBucket["gran"], number>>, limit: number): Promise<number> {
    const { ops, n } = await pruneUsageOps(this.#subs.usage, before, limit);
    if (ops.length) await this.#submit(ops);
    return n;
  }

  // ---- maintenance steps: refill, TTLs and recovery (StoreMaintenance) --------------------
  // No timer here: the service layer's scheduler runs them once a second (maintainStore).

  /** Refills every key and resets every group budget whose period turned (domain/refill.ts), and writes their counters. */
  refill(now: number): void {
    const ids = this.book.refillDue(now);
    const ops = ids.map((id) => this.#ctrOp(id));
    for (const g of this.book.resetBudgetsDue(now)) {
      const op = this.#tables.budgetCountersOp(g);
      if (op) ops.push(op);
    }
    if (ops.length) this.#submit(ops).catch(() => {});
  }

  /** Releases reservations whose TTL passed (Consume never came). */
  releaseExpired(now: number): number {
    return this.book.releaseExpired(now);
  }

  /** A batch write failed: nothing is acknowledged until recover() succeeded. */
  get needsRecovery(): boolean {
    return this.#writer.failed;
  }

  /**
   * After a failed write: reopen LevelDB, probe the disk, reload memory from disk, serve again.
   *
   * The reopen is not optional. A failed append (ENOSPC part-way through a record) leaves
   * LevelDB's log writer torn: its block offset moved on while only part of the record reached
   * the file, so every record appended to that log file afterwards sits misaligned and is
   * skipped as corrupt when the log is replayed at the next open — acknowledged writes lost,
   * until a memtable flush starts a new log file. (A failed sync also sets LevelDB's sticky
   * background error.) Closing and reopening replays the log as it is on disk and starts a
   * fresh one. Until that succeeded nothing is acknowledged: the writer refuses every write.
   *
   * Then memory is reloaded from what the reopened store holds, so memory never runs ahead of
   * disk (a failed batch may have moved counters in memory, or — a sync that failed after the
   * append — be on disk after all): accounts and their counters, groups, tokens, prices, every
   * key's projection, counters and refill state; keys no longer on disk leave the index with
   * their open reservations. Open reservations of the keys that remain are kept (they are
   * memory only, as after a restart they would be gone, but here nothing was restarted).
   * Runs under the admin lock, so no admin mutation interleaves.
   */
  async recover(): Promise<void> {
    if (this.#recovering || this.#writer.writing) return;
    this.#recovering = true;
    const run = this.#lock.then(async () => {
      try {
        const fault = this.#fault?.();
        if (fault) throw fault;
        await this.#disk.reopen();
        await this.#disk.db.batch([{ type: "put", key: this.#subs.meta.prefix + "probe", value: String(this.#clock()) }] as any, RAW_SYNC);
        for (let attempt = 0; ; attempt++) {
          // A Consume refused while this reload ran may have moved counters: reload again.
          if (attempt === 5) throw new Error("store recovery: memory kept changing during the reload; retrying");
          this.#writer.memoryStale = false;
          await reloadFromDisk(this.#disk, this.book, this.#clock());
          // A reopen may show ledger entries a failed batch wrote after all: forget kept "absent"s.
          this.#ledger.forgetAbsent();
          if (!this.#writer.memoryStale) break;
        }
        // Synchronously after the last check of memoryStale: nothing moved memory in between.
        this.#writer.recovered();
        this.#setHealth("SERVING");
      } catch (err) {
        this.#onError(err);
      } finally {
        this.#recovering = false;
      }
    });
    this.#lock = run;
    await run;
  }

  get openReservations(): number {
    return this.book.openReservations;
  }

  /** Reservations released early at the cap, since open (a counter). */
  get reservationsEvicted(): number {
    return this.book.reservationsEvicted;
  }

  /** Slots the reservation slab holds now. */
  get reservationCapacity(): number {
    return this.book.reservationCapacity;
  }

  /** The directory this store lives in. */
  get dir(): string {
    return this.#dir;
  }
}


