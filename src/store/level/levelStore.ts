// The embedded default engine: LevelDB (`level`) under the engine-independent key book
// (store/book/), which holds what is in memory and every rule over it. This file is the Store:
// lifecycle, the admin lock, and delegation to the engine's parts — keys.ts and tables.ts
// (admin batches), ledger.ts (Consume), writer.ts (group commit), schema.ts (the on-disk
// layout, versions), load.ts (open, upgrades, reload), recovery.ts (after a failed write),
// audit.ts, usageBuckets.ts, integrity.ts, codecs.ts, changeFeed.ts.
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
import { DeferredUnlink, UNLINK_DIR, type DeferredUnlinkStats } from "./deferredUnlink.js";
import { mkdir } from "node:fs/promises";
import { StoreUnavailableError } from "../../domain/errors.js";
import type { HotIndex } from "../book/hotIndex.js";
import { KeyBook } from "../book/keyBook.js";
import { reservationKeyId } from "../book/reservations.js";
import { deletedRef, resolveConsumeTarget } from "../book/charge.js";
import type {
  ConsumeInput,
  ConsumeRecord,
  ConsumeTarget,
  KeyRef,
  UsageBucket,
  UsageQueryRange,
  HotSnapshot,
  ReserveRequest,
  ReserveResult,
  Store,
  StoreHealth,
} from "../types.js";
import type { Op } from "./codecs.js";
import { GroupCommitWriter } from "./writer.js";
import { AuditLog } from "./audit.js";
import { checkIntegrity } from "./integrity.js";
import { Ledger } from "./ledger.js";
import { KeyRecords } from "./keys.js";
import { TableRecords } from "./tables.js";
import type { SubName } from "./schema.js";
import { expiredMarkOps, readMark } from "./alertMarks.js";
import { checkMarkId } from "../alertMarkId.js";
import { LevelDisk } from "./disk.js";
import { LevelAdmin } from "./admin.js";
import { SingleWriterFeed } from "./changeFeed.js";
import { loadStore } from "./load.js";
import { recoverFromFailedWrite } from "./recovery.js";
import { getUsageBuckets, pruneUsageOps, queryUsageBuckets, usagePuts } from "./usageBuckets.js";

/**
 * The ledger filter's scan inside open(), before the tables the load mapped are unmapped (~1 s
 * scans ~1.2M ledger ids here); a longer ledger's rest is scanned in the background after ready.
 */
export const LEDGER_SCAN_AT_OPEN_MS = 1000;

export interface LevelStoreOptions {
  dir: string;
  /** Called with store errors (for logging/metrics). */
  onError?: (err: unknown) => void;
  /** Clock for audit ids, refills, TTLs. */
  clock?: () => number;
  /** Test hook: when it returns an error, the next batch write fails with it (fault injection). */
  faultInjector?: () => Error | null;
  /**
   * The ledger filter's memory bound in bytes (`--ledger-filter-mb`; default
   * LEDGER_FILTER_MAX_BYTES, 32 MB, ~16.7M ids), and what to tell once it is reached (from then on
   * every Consume reads the ledger, as without the filter, until a reopen with a larger bound).
   */
  ledgerFilterMaxBytes?: number;
  onLedgerFilterFull?: (ids: number, bytes: number) => void;
  /** Test hook: when it returns an error, the ledger filter's scan fails its next step with it (ledger.ts retries it). */
  ledgerScanFault?: () => Error | null;
  /**
   * How long open() scans the ledger's ids for the filter before it is ready (the rest goes on in
   * the background); default LEDGER_SCAN_AT_OPEN_MS. Tests set 0 to see the background path.
   */
  ledgerScanAtOpenMs?: number;
  /**
   * Ignore the `khot` projection: load from the full records and rewrite the projection
   * (the upgrade path, forced). For tests and for repair.
   */
  rebuildProjection?: boolean;
  /** Open reservations held at most; at the cap a Check releases the oldest (KeyBook). */
  maxReservations?: number;
  /** LevelDB's write buffer, MB (LevelDisk; `--level-write-buffer-mb`); default DEFAULT_WRITE_BUFFER_MB (64). */
  writeBufferMb?: number;
}

export class LevelStore extends LevelAdmin implements Store {
  /** Changes committed by other sidecars: none, this process is the only writer (its own are published to onPublish listeners). */
  readonly changes = new SingleWriterFeed();
  readonly #dir: string;
  readonly #clock: () => number;
  readonly #onError: (err: unknown) => void;
  #disk!: LevelDisk;
  /** Second names for LevelDB's files, freed off its lock (deferredUnlink.ts). */
  #unlink: DeferredUnlink | null = null;
  #subs!: Record<SubName, any>;
  /** When expired alert marks were last pruned (claimAlertMark). */
  #marksPrunedAt = 0;

  /** What this sidecar holds in memory and every rule over it (store/book/keyBook.ts). */
  readonly book: KeyBook;
  /** The book's key index (its size is the key count). */
  get index(): HotIndex {
    return this.book.index;
  }
  readonly #writer: GroupCommitWriter;
  #recovering = false;
  readonly #fault: (() => Error | null) | undefined;
  readonly #scanFault: (() => Error | null) | undefined;
  readonly #ledgerFilterMaxBytes: number | undefined;
  readonly #onLedgerFilterFull: ((ids: number, bytes: number) => void) | undefined;
  readonly #ledgerScanAtOpenMs: number;
  readonly #rebuildProjection: boolean;
  readonly #writeBufferMb: number | undefined;
  /** How the last open loaded the keys (tests). */
  loadedFrom: "projection" | "records" | undefined;

  #health: StoreHealth = "NOT_SERVING";
  readonly #healthListeners: ((h: StoreHealth) => void)[] = [];

  // Serial admin lock and group-commit writer.
  #lock: Promise<unknown> = Promise.resolve();
  #audit!: AuditLog;
  #ledger!: Ledger;
  protected readonly keyRecords: KeyRecords;
  protected readonly tableRecords: TableRecords;
  /** Sizes of recent group-commit batches (for metrics). */
  onBatch: ((submissions: number, ops: number) => void) | undefined;

  constructor(opts: LevelStoreOptions) {
    super();
    this.book = new KeyBook({ maxReservations: opts.maxReservations });
    this.#dir = opts.dir;
    this.#clock = opts.clock ?? Date.now;
    this.#onError = opts.onError ?? (() => {});
    this.#fault = opts.faultInjector;
    this.#scanFault = opts.ledgerScanFault;
    this.#ledgerFilterMaxBytes = opts.ledgerFilterMaxBytes;
    this.#onLedgerFilterFull = opts.onLedgerFilterFull;
    this.#ledgerScanAtOpenMs = opts.ledgerScanAtOpenMs ?? LEDGER_SCAN_AT_OPEN_MS;
    this.#writeBufferMb = opts.writeBufferMb;
    this.#writer = new GroupCommitWriter({
      write: (ops) => this.#disk.writeRaw(ops),
      fault: this.#fault,
      onError: (err) => this.#onError(err),
      onCommitted: (submissions, ops) => {
        this.onBatch?.(submissions, ops.length);
        this.changes.committed(ops, this.#subs, this.book);
        this.#setHealth("SERVING");
      },
      onFailed: () => this.#setHealth("NOT_SERVING"),
    });
    this.#rebuildProjection = opts.rebuildProjection === true;
    this.tableRecords = new TableRecords({
      subs: () => this.#subs,
      book: this.book,
      serial: (fn) => this.#serial(fn),
      submit: (ops) => this.#submit(ops),
      audit: () => this.#audit,
      clock: this.#clock,
    });
    this.keyRecords = new KeyRecords({
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
    this.#disk = new LevelDisk(this.#dir, this.#writeBufferMb);
    await this.#disk.open();
    this.#unlink = await DeferredUnlink.start(`${this.#dir}/db`, `${this.#dir}/${UNLINK_DIR}`);
    this.#subs = this.#disk.subs;
    this.#ledger = new Ledger({
      ledger: this.#subs.ledger,
      readMany: (ids) => this.#disk.rawGetMany("ledger", ids),
      kdel: this.#subs.kdel,
      book: this.book,
      writer: this.#writer,
      keyCountersOp: (id) => this.#ctrOp(id),
      accountCountersOp: (id) => this.#actrOp(id),
      budgetCountersOp: (group) => this.tableRecords.budgetCountersOp(group),
      onError: (err) => this.#onError(err),
      scanFault: this.#scanFault,
      filterMaxBytes: this.#ledgerFilterMaxBytes,
      onFilterFull: this.#onLedgerFilterFull,
    });
    try {
      const loaded = await loadStore(this.#disk, this.book, now, this.#rebuildProjection);
      this.loadedFrom = loaded.from;
      this.#audit = new AuditLog(this.#subs.audit, this.#subs.auditacct, this.#clock, loaded.auditIndexFrom, (keyId) => {
        const slot = this.book.index.slotOf(keyId);
        return slot >= 0 ? this.book.index.accountOf(slot) : undefined;
      });
      this.refill(now);
      const expired = await expiredMarkOps(this.#subs.alerts, now);
      if (expired.length) await this.#submit(expired);
      this.#marksPrunedAt = now;
      // The ledger filter's scan reads every ledger table: within the load, so that the unmap
      // below drops what it mapped too (in the background after it, a large ledger's tables
      // stayed mapped in RSS); past the budget it goes on in the background.
      await this.#ledger.scanLedgerIds(this.#ledgerScanAtOpenMs);
      await this.#disk.unmapLoadedTables();
      void this.#ledger.scanLedgerIds();
    } catch (err) {
      // Release the directory's lock: a failed open leaves nothing open.
      await this.#disk.db.close().catch(() => {});
      await this.#unlink?.stop();
      throw err;
    }
    this.#setHealth("SERVING");
  }

  /** The ledger's filter of written request ids (ledgerFilter.ts): whether it answers yet, its size. */
  get ledgerFilter(): { readonly answering: boolean; readonly full: boolean; readonly size: number; readonly bytes: number } {
    return this.#ledger.filter;
  }

  async close(): Promise<void> {
    // Let queued writes finish before closing.
    await this.#lock.catch(() => {});
    while (!this.#writer.idle) await new Promise((r) => setTimeout(r, 5));
    this.#setHealth("NOT_SERVING");
    await this.#ledger?.stopScan();
    if (this.#disk) await this.#disk.db.close();
    await this.#unlink?.stop();
  }

  /** deferredUnlink.ts's sweep: links LevelDB's new files, frees the ones it dropped; once a second (service/scheduler.ts). */
  maintainFiles(): void {
    void this.#unlink?.sweep();
  }

  /** What deferredUnlink.ts has done (null before open). */
  unlinkStats(): DeferredUnlinkStats | null {
    return this.#unlink?.stats() ?? null;
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

  /**
   * Store.claimAlertMark: under the serial lock (this process is the only writer), read then put.
   * Expired marks are pruned from here at most once a day (and on open).
   */
  claimAlertMark(id: string, expiresAt: number): Promise<boolean> {
    try {
      checkMarkId(id);
    } catch (err) {
      return Promise.reject(err);
    }
    if (!Number.isFinite(expiresAt)) return Promise.reject(new TypeError("claimAlertMark: expiresAt must be a finite number"));
    return this.#serial(async () => {
      const now = this.#clock();
      if (now - this.#marksPrunedAt >= 86_400_000) {
        this.#marksPrunedAt = now;
        const ops = await expiredMarkOps(this.#subs.alerts, now);
        if (ops.length) await this.#submit(ops);
      }
      const cur = await readMark(this.#subs.alerts, id);
      if (cur !== undefined && cur > now) return false;
      await this.#submit([{ type: "put", sublevel: this.#subs.alerts, key: id, value: expiresAt }]);
      return true;
    });
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

  protected auditLog(): AuditLog {
    return this.#audit;
  }

  protected serialSubmit(ops: () => Op[]): Promise<void> {
    return this.#serial(() => this.#submit(ops()));
  }

  /** The put of a key's counters as the book holds them now. */
  #ctrOp(id: string, refilledAt?: number | null): Op {
    return this.keyRecords.countersOp(id, refilledAt);
  }

  /** The put of an account's counters as the book holds them now. */
  #actrOp(id: string): Op {
    return this.tableRecords.countersOp(id);
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

  nextRefillAt(keyId: string): number | null {
    return this.book.nextRefillAt(keyId);
  }

  groupBudgetResetAt(group: string): number | null {
    return this.book.groupBudgetResetAt(group);
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
    return resolveConsumeTarget(this.book, target, now);
  }

  async resolveDeletedTarget(target: ConsumeTarget): Promise<KeyRef | undefined> {
    const keyId = target.kind === "key" ? target.id : target.kind === "reservation" ? reservationKeyId(target.id) : undefined;
    if (!keyId || this.book.hasKey(keyId)) return undefined;
    const t = await this.#ledger.deletedKey(keyId);
    return t ? deletedRef(this.book, keyId, t) : undefined;
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
      const op = this.tableRecords.budgetCountersOp(g);
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

  /** After a failed write: reopen, probe, reload memory from disk, serve again (recovery.ts). */
  async recover(): Promise<void> {
    if (this.#recovering || this.#writer.writing) return;
    this.#recovering = true;
    const run = this.#lock.then(async () => {
      try {
        await recoverFromFailedWrite({ disk: this.#disk, book: this.book, writer: this.#writer, ledger: this.#ledger, clock: this.#clock, fault: this.#fault, onRecovered: () => this.#setHealth("SERVING") });
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

