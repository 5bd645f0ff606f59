// The LevelDB engine's one serial writer, group-committing: every submission waiting while a
// batch is being synced goes into the next batch, one fsync for all. A submission resolves only
// after its batch is on disk. Submissions commit in submission order, and each carries absolute
// values (counters as the key book reports them), so disk equals memory after every batch.
//
// A failed write makes the writer refuse everything (fail closed) until the engine's recovery
// has reopened LevelDB and reloaded memory from disk, then called recovered().
import { StoreUnavailableError } from "../../domain/errors.js";
import { coalesce, toRawOps, type Op, type RawOp } from "./codecs.js";

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

export class GroupCommitWriter {
  readonly #opts: WriterOptions;
  #pending: { ops: Op[]; resolve: () => void; reject: (e: unknown) => void }[] = [];
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

  /** A batch is being written. */
  get writing(): boolean {
    return this.#writing;
  }

  /** Nothing written or waiting. */
  get idle(): boolean {
    return !this.#writing && this.#pending.length === 0;
  }

  /** The engine reopened and reloaded: writes are accepted again. */
  recovered(): void {
    this.#failed = false;
  }

  /** Queues ops for the next group-committed batch; resolves once synced. */
  submit(ops: Op[]): Promise<void> {
    if (this.#failed) {
      // The caller may have moved counters in memory before submitting (a Consume, a balance
      // change, a refill): a recovery that already reloaded them must reload again.
      this.memoryStale = true;
      return Promise.reject(new StoreUnavailableError());
    }
    return new Promise((resolve, reject) => {
      this.#pending.push({ ops, resolve, reject });
      if (!this.#writing) void this.#drain();
    });
  }

  async #drain(): Promise<void> {
    this.#writing = true;
    try {
      while (this.#pending.length) {
        const batch = this.#pending.splice(0);
        const ops = coalesce(batch.flatMap((b) => b.ops));
        try {
          if (this.#failed) throw new Error("store is recovering from a failed write");
          const fault = this.#opts.fault?.();
          if (fault) throw fault;
          await this.#opts.write(toRawOps(ops));
          this.#opts.onCommitted(batch.length, ops);
          for (const b of batch) b.resolve();
        } catch (err) {
          // Memory may now be ahead of disk, and LevelDB's log writer may be torn: refuse
          // every write and serve no Check (fail closed) until the engine has reopened LevelDB
          // and reloaded memory from disk.
          this.#opts.onError(err);
          this.#failed = true;
          this.memoryStale = true;
          this.#opts.onFailed();
          const e = new StoreUnavailableError(err);
          for (const b of batch) b.reject(e);
        }
      }
    } finally {
      this.#writing = false;
    }
  }
}
