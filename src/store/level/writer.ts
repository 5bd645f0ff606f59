// The LevelDB engine's one serial writer, group-committing: every submission waiting while a
// batch is being synced goes into the next batch, one fsync for all. A submission resolves only
// after its batch is on disk. An idle writer starts its batch in setImmediate, not at the first
// submission: the callers a commit releases (and the requests one socket read delivers) submit
// in separate callbacks of the same turn, and a batch started at the first of them took that one
// alone while the rest waited a whole sync for the next batch; batches alternated 1 and C−1 at
// C in flight, half the Consumes per sync (bench/README.md, "Group commit"). Submissions commit
// in submission order, and each carries absolute values (counters as the key book reports
// them), so disk equals memory after every batch.
//
// A failed write makes the writer refuse everything (fail closed) until the engine's recovery
// has reopened LevelDB and reloaded memory from disk, then called recovered().
import { StoreUnavailableError } from "../../domain/errors.js";
import { coalesce, toRawOps, type Op, type RawOp } from "./codecs.js";
import { consumeTrace } from "../../observability/consumeTrace.js";

export interface WriterOptions {
  /** Writes one batch of pre-encoded ops, synced. */
  write: (ops: RawOp[]) => Promise<void>;
  /** Test hook: when it returns an error, the next batch fails with it (fault injection). */
  fault?: () => Error | null;
  onError: (err: unknown) => void;
  /** After every committed batch, with its (coalesced) ops (health SERVING; the change feed's publication), and on a failed one (NOT_SERVING). */
  onCommitted: (submissions: number, ops: readonly Op[]) => void;
  onFailed: () => void;
}

/** The submissions of one batch share one promise (settled together: one resolve, or one rejection for all). */
interface BatchDeferred {
  promise: Promise<void>;
  resolve: () => void;
  reject: (e: unknown) => void;
}

function batchDeferred(): BatchDeferred {
  const d = {} as BatchDeferred;
  d.promise = new Promise<void>((resolve, reject) => {
    d.resolve = resolve;
    d.reject = reject;
  });
  return d;
}

export class GroupCommitWriter {
  readonly #opts: WriterOptions;
  // The next batch: the ops of every submission since the last batch started, in submission
  // order, and the one promise they all wait on. A submission allocates nothing of its own
  // (a Consume is ~50k/s: per-submission promises, closures and entries were garbage).
  #ops: Op[] = [];
  #submissions = 0;
  #next: BatchDeferred | null = null;
  #writing = false;
  #failed = false;
  /** Set when a write is refused or fails; a recovery's reload is redone until it stays clear. */
  memoryStale = false;

  constructor(opts: WriterOptions) {
    this.#opts = opts;
  }

  /** A write failed and the engine has not recovered yet: every write is refused. */
  get failed(): boolean {
    return this.#failed;
  }

  /** A batch is being written, or is about to start (submissions are waiting for it). */
  get writing(): boolean {
    return this.#writing;
  }

  /** Nothing written or waiting. */
  get idle(): boolean {
    return !this.#writing && this.#submissions === 0;
  }

  /** The engine reopened and reloaded: writes are accepted again. */
  recovered(): void {
    this.#failed = false;
  }

  /**
   * Queues ops for the next group-committed batch; resolves once synced. Every submission of
   * one batch gets the same promise (callers only await it).
   */
  submit(ops: readonly Op[]): Promise<void> {
    if (this.#failed) {
      // The caller may have moved counters in memory before submitting (a Consume, a balance
      // change, a refill): a recovery that already reloaded them must reload again.
      this.memoryStale = true;
      return Promise.reject(new StoreUnavailableError());
    }
    const into = this.#ops;
    for (let i = 0; i < ops.length; i++) into.push(ops[i]!);
    this.#submissions++;
    if (consumeTrace && this.#next === null) this.#firstAt = consumeTrace.now(); // AISA_TRACE_CONSUME only
    const next = (this.#next ??= batchDeferred());
    if (!this.#writing) {
      // Busy from now: a recovery waits for this batch as for one being written.
      this.#writing = true;
      setImmediate(this.#drainSoon);
    }
    return next.promise;
  }

  /** When the next batch's first submission came (AISA_TRACE_CONSUME only). */
  #firstAt = 0;

  readonly #drainSoon = (): void => void this.#drain();

  /**
   * Writes one batch: every submission since the last one started. If more came while it was
   * synced, the next batch starts in process.nextTick, not at once: the callers this commit
   * released submit their next ops in the microtasks that follow it (a Consume that skips the
   * ledger read does), and a batch started at once took only what came during the sync, leaving
   * them a sync later: batches alternated in two halves. A tick runs once those microtasks are
   * done and before any other callback (setImmediate would also wait for the poll phase's
   * callbacks: the replies to the calls just committed, the requests just read).
   */
  async #drain(): Promise<void> {
    const drainAt = consumeTrace ? consumeTrace.now() : 0;
    const firstAt = this.#firstAt;
    const submissions = this.#submissions;
    const done = this.#next!;
    const queued = this.#ops;
    this.#ops = [];
    this.#submissions = 0;
    this.#next = null;
    try {
      const ops = coalesce(queued);
      if (this.#failed) throw new Error("store is recovering from a failed write");
      const fault = this.#opts.fault?.();
      if (fault) throw fault;
      if (consumeTrace) {
        const raw = toRawOps(ops);
        const encoded = consumeTrace.now();
        const writing = this.#opts.write(raw);
        const syncDone = consumeTrace.now();
        await writing;
        consumeTrace.record(3, firstAt, drainAt, encoded, syncDone, consumeTrace.now(), submissions);
      } else await this.#opts.write(toRawOps(ops));
      this.#opts.onCommitted(submissions, ops);
      done.resolve();
    } catch (err) {
      // Memory may now be ahead of disk, and LevelDB's log writer may be torn: refuse
      // every write and serve no Check (fail closed) until the engine has reopened LevelDB
      // and reloaded memory from disk.
      this.#opts.onError(err);
      this.#failed = true;
      this.memoryStale = true;
      this.#opts.onFailed();
      done.reject(new StoreUnavailableError(err));
    }
    // Still busy while submissions wait: a recovery waits for their batch as for one being written.
    if (this.#submissions > 0) process.nextTick(this.#drainSoon);
    else this.#writing = false;
  }
}
