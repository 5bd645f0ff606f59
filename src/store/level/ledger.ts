// The usage ledger (`ledger`: requestId → ConsumeRecord) and Consume's exactly-once write: one
// Consume per request id in flight (a concurrent one with the same id gets the first's record,
// replayed), the key book's charge and the ledger entry in one durable batch. Ledger reads of
// one tick go to LevelDB as one getMany. Deleted keys' tombstones (`kdel`) are read here too.
import { notFound, StoreUnavailableError } from "../../domain/errors.js";
import type { DeletedKey, KeyBook } from "../book/keyBook.js";
import { charge, chargeDeleted } from "../book/charge.js";
import type { ConsumeInput, ConsumeRecord } from "../types.js";
import type { Op } from "./codecs.js";
import type { GroupCommitWriter } from "./writer.js";

/** Most "not in the ledger" answers kept for consume() (see Ledger.#absent). */
const ABSENT_CAP = 65_536;

export interface LedgerOptions {
  ledger: unknown;
  kdel: unknown;
  book: KeyBook;
  writer: GroupCommitWriter;
  /** The put of a key's (or an account's) counters as the book holds them now. */
  keyCountersOp: (keyId: string) => Op;
  accountCountersOp: (accountId: string) => Op;
  /** The put of a group budget's counters, or null when the group has no budget. */
  budgetCountersOp: (group: string) => Op | null;
  onError: (err: unknown) => void;
}

export class Ledger {
  readonly #sub: any;
  readonly #kdel: any;
  readonly #book: KeyBook;
  readonly #writer: GroupCommitWriter;
  readonly #keyCountersOp: (keyId: string) => Op;
  readonly #accountCountersOp: (accountId: string) => Op;
  readonly #budgetCountersOp: (group: string) => Op | null;
  readonly #onError: (err: unknown) => void;
  readonly #consumeInflight = new Map<string, Promise<{ record: ConsumeRecord; replayed: boolean }>>();
  #ledgerQueue: { id: string; resolve: (r: ConsumeRecord | undefined) => void; reject: (e: unknown) => void }[] = [];
  // "Not in the ledger" answers that are still true. ConsumeService reads the ledger
  // (findConsume) right before consume(), which would read it again. Only #consumeOnce writes
  // ledger entries, so a "not found" stays true until a consume of that id starts — unless
  // the read overlapped a consume of the same id, in which case it is not kept. consume()
  // takes the answer (once) and skips its own read: one LevelDB round trip per Consume
  // instead of two. Bounded: cleared when it reaches ABSENT_CAP.
  readonly #absent = new Set<string>();
  /** Ledger reads in flight, per request id (reads by findConsume only). */
  readonly #ledgerReads = new Map<string, number>();
  /** Request ids a consume touched while one of their reads was in flight. */
  readonly #overlapped = new Set<string>();

  constructor(o: LedgerOptions) {
    this.#sub = o.ledger;
    this.#kdel = o.kdel;
    this.#book = o.book;
    this.#writer = o.writer;
    this.#keyCountersOp = o.keyCountersOp;
    this.#accountCountersOp = o.accountCountersOp;
    this.#budgetCountersOp = o.budgetCountersOp;
    this.#onError = o.onError;
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

  /** Ledger reads of one tick go to LevelDB as one getMany. */
  find(requestId: string): Promise<ConsumeRecord | undefined> {
    this.#ledgerReads.set(requestId, (this.#ledgerReads.get(requestId) ?? 0) + 1);
    if (this.#consumeInflight.has(requestId)) this.#overlapped.add(requestId);
    return this.#readLedger(requestId).then(
      (r) => {
        this.#ledgerReadDone(requestId, r === undefined);
        return r;
      },
      (err) => {
        this.#ledgerReadDone(requestId, false);
        throw err;
      },
    );
  }

  #ledgerReadDone(requestId: string, absent: boolean): void {
    if (absent && !this.#overlapped.has(requestId)) {
      if (this.#absent.size >= ABSENT_CAP) this.#absent.clear();
      this.#absent.add(requestId);
    }
    const n = (this.#ledgerReads.get(requestId) ?? 1) - 1;
    if (n > 0) this.#ledgerReads.set(requestId, n);
    else {
      this.#ledgerReads.delete(requestId);
      this.#overlapped.delete(requestId);
    }
  }

  #readLedger(requestId: string): Promise<ConsumeRecord | undefined> {
    return new Promise((resolve, reject) => {
      this.#ledgerQueue.push({ id: requestId, resolve, reject });
      if (this.#ledgerQueue.length === 1) {
        setImmediate(() => {
          const q = this.#ledgerQueue.splice(0);
          this.#sub.getMany(q.map((e) => e.id)).then(
            (vals: (ConsumeRecord | undefined)[]) => q.forEach((e, i) => e.resolve(vals[i] ?? undefined)),
            (err: unknown) => {
              this.#onError(err);
              const e = new StoreUnavailableError(err);
              q.forEach((x) => x.reject(e));
            },
          );
        });
      }
    });
  }

  consume(input: ConsumeInput): Promise<{ record: ConsumeRecord; replayed: boolean }> {
    const running = this.#consumeInflight.get(input.requestId);
    if (running) return running.then((r) => ({ record: r.record, replayed: true }));
    // A kept "not found" is used once, by this consume; reads now in flight may not keep theirs.
    const knownAbsent = this.#absent.delete(input.requestId);
    if (this.#ledgerReads.has(input.requestId)) this.#overlapped.add(input.requestId);
    const p = this.#consumeOnce(input, knownAbsent);
    this.#consumeInflight.set(input.requestId, p);
    const done = () => this.#consumeInflight.delete(input.requestId);
    p.then(done, done);
    return p;
  }

  async #consumeOnce(c: ConsumeInput, knownAbsent: boolean): Promise<{ record: ConsumeRecord; replayed: boolean }> {
    if (this.#writer.failed) throw new StoreUnavailableError();
    const prior = knownAbsent ? undefined : await this.#readLedger(c.requestId);
    if (prior) return { record: prior, replayed: true };
    // A key deleted since (or before) resolution, or being deleted: its tombstone names the
    // account to charge. Deletion is final and committed before the key leaves the index.
    const deleting = this.#book.deleting(c.keyId);
    if (deleting) return this.#consumeDeleted(c, deleting);
    if (!this.#book.hasKey(c.keyId)) {
      const tomb = await this.deletedKey(c.keyId);
      if (!tomb) throw notFound("key", c.keyId);
      return this.#consumeDeleted(c, tomb);
    }
    // From here to #submit everything is synchronous: the charge, the
    // settlement and the absolute counter values form one atomic step.
    const record = charge(this.#book, c);
    const ops: Op[] = [this.#keyCountersOp(c.keyId), this.#accountCountersOp(record.accountId), { type: "put", sublevel: this.#sub, key: c.requestId, value: record }];
    const budget = this.#budgetCountersOp(record.group);
    if (budget) ops.push(budget);
    await this.#writer.submit(ops);
    return { record, replayed: false };
  }

  /** A deleted key's charge: the account and the ledger (no key counters are left to move). */
  async #consumeDeleted(c: ConsumeInput, tomb: DeletedKey): Promise<{ record: ConsumeRecord; replayed: boolean }> {
    if (this.#writer.failed) throw new StoreUnavailableError();
    const record = chargeDeleted(this.#book, c, tomb);
    const ops: Op[] = [this.#accountCountersOp(record.accountId), { type: "put", sublevel: this.#sub, key: c.requestId, value: record }];
    const budget = this.#budgetCountersOp(record.group);
    if (budget) ops.push(budget);
    await this.#writer.submit(ops);
    return { record, replayed: false };
  }

  async *scan(): AsyncIterable<ConsumeRecord> {
    const it = this.#sub.iterator();
    try {
      for (;;) {
        const batch: [string, ConsumeRecord][] = await it.nextv(1000);
        if (batch.length === 0) return;
        for (const [, rec] of batch) yield rec;
      }
    } finally {
      await it.close();
    }
  }
}
