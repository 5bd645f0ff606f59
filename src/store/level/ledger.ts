// The usage ledger (`ledger`: requestId → ConsumeRecord) and Consume's exactly-once write: one
// Consume per request id in flight (a concurrent one with the same id gets the first's record,
// replayed), the key book's charge and the ledger entry in one durable batch. Ledger reads of
// one tick go to LevelDB as one getMany. Deleted keys' tombstones (`kdel`) are read here too.
import { notFound, StoreUnavailableError } from "../../domain/errors.js";
import type { DeletedKey, KeyBook } from "../book/keyBook.js";
import { charge, chargeDeleted } from "../book/charge.js";
import type { ConsumeInput, ConsumeRecord } from "../types.js";
import { decodeLedgerRecord, encodeLedgerRecord, parseLedgerRecord, type Op } from "./codecs.js";
import { IdTable } from "./idTable.js";
import { LedgerFilter } from "./ledgerFilter.js";
import type { GroupCommitWriter } from "./writer.js";
import { consumeTrace } from "../../observability/consumeTrace.js";

/** Most "not in the ledger" answers kept for consume() (see Ledger.#absent). */
const ABSENT_CAP = 65_536;

export interface LedgerOptions {
  ledger: unknown;
  /** The stored texts of these ledger entries (undefined where absent): LevelDisk.rawGetMany. */
  readMany: (requestIds: readonly string[]) => Promise<(string | undefined)[]>;
  kdel: unknown;
  book: KeyBook;
  writer: GroupCommitWriter;
  /** The put of a key's (or an account's) counters as the book holds them now. */
  keyCountersOp: (keyId: string) => Op;
  accountCountersOp: (accountId: string) => Op;
  /** The put of a group budget's counters, or null when the group has no budget. */
  budgetCountersOp: (group: string) => Op | null;
  onError: (err: unknown) => void;
  /** Test hook (fault injection): when it returns an error, the filter scan's next step fails with it. */
  scanFault?: () => Error | null;
  /** The filter's memory bound, bytes (default LEDGER_FILTER_MAX_BYTES), and what to call once it is reached. */
  filterMaxBytes?: number;
  onFilterFull?: (ids: number, bytes: number) => void;
}

/** A failed filter scan is retried after this long, doubling up to SCAN_RETRY_MAX_MS. */
export const SCAN_RETRY_MS = 1000;
const SCAN_RETRY_MAX_MS = 60_000;

export class Ledger {
  readonly #sub: any;
  readonly #readMany: (requestIds: readonly string[]) => Promise<(string | undefined)[]>;
  readonly #kdel: any;
  readonly #book: KeyBook;
  readonly #writer: GroupCommitWriter;
  readonly #keyCountersOp: (keyId: string) => Op;
  readonly #accountCountersOp: (accountId: string) => Op;
  readonly #budgetCountersOp: (group: string) => Op | null;
  readonly #onError: (err: unknown) => void;
  readonly #scanFault: (() => Error | null) | undefined;
  // The per-Consume bookkeeping below is in IdTables, not Maps and Sets: a set of ids in flight
  // empties and fills with every batch, and V8's tables reallocated (and promoted) themselves at
  // each swing (idTable.ts).
  /** Request ids being consumed. */
  readonly #consumeInflight = new IdTable();
  /** Consumes of an id already being consumed, waiting for the first one's record (rare: only ids in this map have any). */
  readonly #duplicates = new Map<string, { resolve: (r: { record: ConsumeRecord; replayed: boolean }) => void; reject: (e: unknown) => void }[]>();
  // Ledger reads of one tick go to LevelDB as one getMany: the ids queued, and the one promise
  // of their values (a reader keeps its index, so a read allocates no promise of its own).
  #readIds: string[] = [];
  #readValues: Promise<(ConsumeRecord | undefined)[]> | null = null;
  // "Not in the ledger" answers that are still true. ConsumeService reads the ledger
  // (findConsume) right before consume(), which would read it again. Only #consumeOnce writes
  // ledger entries, so a "not found" stays true until a consume of that id starts — unless
  // the read overlapped a consume of the same id, in which case it is not kept. consume()
  // takes the answer (once) and skips its own read: one LevelDB round trip per Consume
  // instead of two. Bounded: cleared when it reaches ABSENT_CAP.
  readonly #absent = new IdTable();
  /** Ledger reads in flight, per request id (reads by findConsume only). */
  readonly #ledgerReads = new IdTable();
  /** Request ids a consume touched while one of their reads was in flight. */
  readonly #overlapped = new IdTable();
  /**
   * Every id ever written to the ledger (a superset: ledgerFilter.ts): a Consume whose id it
   * lacks skips the ledger read. Ids are added before their entry is submitted; the entries
   * already on disk by scanLedgerIds() (until it finishes, the filter lacks nothing).
   */
  readonly filter: LedgerFilter;
  #scan: Promise<void> | null = null;
  #scanStopped = false;
  /** The scan reached the ledger's end (the filter answers unless past its bound). */
  #scanDone = false;
  /** The last id the scan added (it resumes after it). */
  #scanAfter: string | undefined;
  /** After a failed scan: the timer of its retry, and the delay of the next one. */
  #scanRetry: NodeJS.Timeout | null = null;
  #scanRetryMs = SCAN_RETRY_MS;

  constructor(o: LedgerOptions) {
    this.#sub = o.ledger;
    this.#readMany = o.readMany;
    this.#kdel = o.kdel;
    this.#book = o.book;
    this.#writer = o.writer;
    this.#keyCountersOp = o.keyCountersOp;
    this.#accountCountersOp = o.accountCountersOp;
    this.#budgetCountersOp = o.budgetCountersOp;
    this.#onError = o.onError;
    this.#scanFault = o.scanFault;
    this.filter = new LedgerFilter(o.filterMaxBytes, o.onFilterFull);
  }

  /** A reopen may show ledger entries a failed batch wrote after all: forget the kept "absent"s. */
  forgetAbsent(): void {
    this.#absent.clear();
  }

  async deletedKey(keyId: string): Promise<DeletedKey | undefined> {
    try {
      return ((await this.#kdel.get(keyId)) as DeletedKey | undefined) ?? undefined;
    } catch (err) {
      this.#onError(err);
      throw new StoreUnavailableError(err);
    }
  }

  /**
   * Adds every id already in the ledger to the filter (a keys-only scan), then lets it answer.
   * `budgetMs`: pause once that long has passed (LevelStore.open scans within the load, before it
   * unmaps the tables the load read, and leaves the rest to a call without a budget, in the
   * background). A paused, interrupted or failed scan resumes after the last id it added (the ids
   * it added stay: a superset); until one reaches the end, the filter lacks nothing. A failed scan
   * (a read error) is retried by itself after SCAN_RETRY_MS, doubling to a minute; a recovery's
   * reopen or a restart resumes it sooner. Resolves when this call's scan ends, never rejects (a
   * failure goes to onError).
   */
  scanLedgerIds(budgetMs = Infinity): Promise<void> {
    if (this.#scanDone) return Promise.resolve();
    this.#cancelScanRetry();
    return (this.#scan ??= (async () => {
      const until = performance.now() + budgetMs;
      const it = this.#sub.keys(this.#scanAfter === undefined ? {} : { gt: this.#scanAfter });
      try {
        for (;;) {
          if (this.#scanStopped || performance.now() >= until) return;
          const fault = this.#scanFault?.();
          if (fault) throw fault;
          const ids: string[] = await it.nextv(4096);
          if (ids.length === 0) break;
          for (let i = 0; i < ids.length; i++) this.filter.add(ids[i]!);
          this.#scanAfter = ids[ids.length - 1];
        }
        this.filter.markReady();
        this.#scanDone = true;
        this.#scanRetryMs = SCAN_RETRY_MS;
      } finally {
        await it.close();
      }
    })()
      .catch((err: unknown) => {
        // The filter stays off (every Consume reads the ledger) until a scan reaches the end:
        // this one resumes after a pause (or sooner, at the store's next recovery or open).
        if (this.#scanStopped) return;
        this.#onError(err);
        this.#scanRetry = setTimeout(() => {
          this.#scanRetry = null;
          void this.scanLedgerIds();
        }, this.#scanRetryMs);
        this.#scanRetry.unref();
        this.#scanRetryMs = Math.min(this.#scanRetryMs * 2, SCAN_RETRY_MAX_MS);
      })
      .finally(() => {
        if (!this.#scanDone) this.#scan = null;
      }));
  }

  #cancelScanRetry(): void {
    if (this.#scanRetry) clearTimeout(this.#scanRetry);
    this.#scanRetry = null;
  }

  /**
   * Before LevelDB is reopened (recovery.ts): an unfinished scan lets go of its iterator, and
   * scanLedgerIds() after the reload resumes it.
   */
  async interruptScan(): Promise<void> {
    this.#cancelScanRetry();
    const scan = this.#scan;
    if (!scan || this.#scanDone) return;
    this.#scanStopped = true;
    try {
      await scan;
    } finally {
      this.#scanStopped = false;
    }
  }

  /** Stops the scan (before the database closes); resolves when it has let go of its iterator. */
  async stopScan(): Promise<void> {
    this.#cancelScanRetry();
    this.#scanStopped = true;
    await this.#scan;
  }

  /** Ledger reads of one tick go to LevelDB as one getMany; an id the filter lacks is not read. */
  async find(requestId: string): Promise<ConsumeRecord | undefined> {
    // Never written (consume() asks the filter again when it starts, after any earlier
    // consume of this id has added it).
    if (this.filter.lacks(requestId)) return undefined;
    this.#ledgerReads.add(requestId);
    if (this.#consumeInflight.has(requestId)) this.#overlapped.set(requestId, 1);
    const i = this.#readIds.length;
    let r: ConsumeRecord | undefined;
    try {
      r = (await this.#queueRead(requestId))[i] ?? undefined;
    } catch (err) {
      this.#ledgerReadDone(requestId, false);
      throw err;
    }
    this.#ledgerReadDone(requestId, r === undefined);
    return r;
  }

  #ledgerReadDone(requestId: string, absent: boolean): void {
    if (absent && !this.#overlapped.has(requestId)) {
      if (this.#absent.size >= ABSENT_CAP) this.#absent.clear();
      this.#absent.set(requestId, 1);
    }
    const n = this.#ledgerReads.get(requestId) - 1;
    if (n > 0) this.#ledgerReads.set(requestId, n);
    else {
      this.#ledgerReads.delete(requestId);
      this.#overlapped.delete(requestId);
    }
  }

  /** Queues a read of this tick's getMany: its values, the id's at the index it was queued at. */
  #queueRead(requestId: string): Promise<(ConsumeRecord | undefined)[]> {
    this.#readIds.push(requestId);
    return (this.#readValues ??= new Promise((resolve, reject) => {
      const queued = consumeTrace ? consumeTrace.now() : 0; // AISA_TRACE_CONSUME only
      setImmediate(() => {
        const ids = this.#readIds;
        this.#readIds = [];
        this.#readValues = null;
        const issued = consumeTrace ? consumeTrace.now() : 0;
        const reading = this.#readMany(ids);
        const syncDone = consumeTrace ? consumeTrace.now() : 0;
        reading.then(
          (texts) => {
            try {
              const records = new Array<ConsumeRecord | undefined>(texts.length);
              for (let i = 0; i < texts.length; i++) {
                const t = texts[i];
                if (t !== undefined) records[i] = parseLedgerRecord(ids[i]!, t);
              }
              if (consumeTrace) consumeTrace.record(2, queued, issued, syncDone, consumeTrace.now(), ids.length);
              resolve(records);
            } catch (err) {
              this.#onError(err);
              reject(new StoreUnavailableError(err));
            }
          },
          (err: unknown) => {
            this.#onError(err);
            reject(new StoreUnavailableError(err));
          },
        );
      });
    }));
  }

  consume(input: ConsumeInput): Promise<{ record: ConsumeRecord; replayed: boolean }> {
    const id = input.requestId;
    if (this.#consumeInflight.has(id)) {
      return new Promise((resolve, reject) => {
        const waiting = this.#duplicates.get(id);
        if (waiting) waiting.push({ resolve, reject });
        else this.#duplicates.set(id, [{ resolve, reject }]);
      });
    }
    // A kept "not found" is used once, by this consume; reads now in flight may not keep theirs.
    const knownAbsent = this.#absent.delete(id);
    if (this.#ledgerReads.has(id)) this.#overlapped.set(id, 1);
    // In the table before #consumeOnce runs: its synchronous part may already finish (and delete it).
    this.#consumeInflight.set(id, 1);
    return this.#consumeOnce(input, knownAbsent);
  }

  /** One consume of an id (the only one in flight); the duplicates that came meanwhile then get its record, replayed. */
  async #consumeOnce(c: ConsumeInput, knownAbsent: boolean): Promise<{ record: ConsumeRecord; replayed: boolean }> {
    let r: { record: ConsumeRecord; replayed: boolean };
    try {
      if (this.#writer.failed) throw new StoreUnavailableError();
      let prior: ConsumeRecord | undefined;
      // The filter is asked here, once this consume is the id's only one: any earlier consume
      // of the id has finished, and added it before it submitted.
      if (!knownAbsent && !this.filter.lacks(c.requestId)) {
        const i = this.#readIds.length;
        prior = (await this.#queueRead(c.requestId))[i] ?? undefined;
      }
      if (prior) r = { record: prior, replayed: true };
      else if (this.#book.deleting(c.keyId) || !this.#book.hasKey(c.keyId)) r = await this.#consumeDeleted(c);
      else {
        // From here to the submit everything is synchronous: the charge, the settlement and
        // the absolute counter values form one atomic step.
        const record = charge(this.#book, c);
        const budget = this.#budgetCountersOp(record.group);
        const ledgerPut: Op = { type: "put", sublevel: this.#sub, key: c.requestId, value: encodeLedgerRecord(record), raw: true };
        this.filter.add(c.requestId);
        await this.#writer.submit(budget ? [this.#keyCountersOp(c.keyId), this.#accountCountersOp(record.accountId), ledgerPut, budget] : [this.#keyCountersOp(c.keyId), this.#accountCountersOp(record.accountId), ledgerPut]);
        r = { record, replayed: false };
      }
    } catch (err) {
      this.#consumeInflight.delete(c.requestId);
      this.#settleDuplicates(c.requestId, undefined, err);
      throw err;
    }
    this.#consumeInflight.delete(c.requestId);
    this.#settleDuplicates(c.requestId, r.record, undefined);
    return r;
  }

  #settleDuplicates(id: string, record: ConsumeRecord | undefined, err: unknown): void {
    if (this.#duplicates.size === 0) return;
    const waiting = this.#duplicates.get(id);
    if (!waiting) return;
    this.#duplicates.delete(id);
    for (const w of waiting) {
      if (record) w.resolve({ record, replayed: true });
      else w.reject(err);
    }
  }

  /**
   * A key deleted since (or before) resolution, or being deleted: its tombstone names the
   * account to charge. Deletion is final and committed before the key leaves the index.
   */
  async #consumeDeleted(c: ConsumeInput): Promise<{ record: ConsumeRecord; replayed: boolean }> {
    const tomb = this.#book.deleting(c.keyId) ?? (await this.deletedKey(c.keyId));
    if (!tomb) throw notFound("key", c.keyId);
    return this.#chargeDeleted(c, tomb);
  }

  /** A deleted key's charge: the account and the ledger (no key counters are left to move). */
  async #chargeDeleted(c: ConsumeInput, tomb: DeletedKey): Promise<{ record: ConsumeRecord; replayed: boolean }> {
    if (this.#writer.failed) throw new StoreUnavailableError();
    const record = chargeDeleted(this.#book, c, tomb);
    const ops: Op[] = [this.#accountCountersOp(record.accountId), { type: "put", sublevel: this.#sub, key: c.requestId, value: encodeLedgerRecord(record), raw: true }];
    const budget = this.#budgetCountersOp(record.group);
    if (budget) ops.push(budget);
    this.filter.add(c.requestId);
    await this.#writer.submit(ops);
    return { record, replayed: false };
  }

  async *scan(): AsyncIterable<ConsumeRecord> {
    const it = this.#sub.iterator();
    try {
      for (;;) {
        const batch: [string, unknown][] = await it.nextv(1000);
        if (batch.length === 0) return;
        for (const [k, v] of batch) yield decodeLedgerRecord(k, v);
      }
    } finally {
      await it.close();
    }
  }
}
