// Opt-in phase tracing of durable Consume (issue 18 item 3: where a slow ConsumeBatch's time
// goes). Off unless AISA_TRACE_CONSUME names a file: `consumeTrace` is then undefined and every
// call site is one `if` on a module constant. On, each record is a few doubles appended to a
// preallocated array (times are performance.now() ms), and at exit the process writes
// `<file>.<pid>.json`: the records, GC pauses (perf_hooks) and the event loop's delay
// histogram. bench/consumeTraceReport.ts reads it.
//
// Records:
//   "group"  Consumes entered in one synchronous run (a ConsumeBatch call's items): entered,
//            count, when the last one's ledger read answered, when the last was handed to the
//            store's consume(), when the last was answered (ConsumeService).
//   "read"   one ledger getMany tick: first id queued, issued (setImmediate), the synchronous
//            part of _getMany returned, values parsed, ids.
//   "write"  one group-commit batch: first submission, drain started (setImmediate), ops
//            encoded, the native write's synchronous part returned, synced, submissions.
import { writeFileSync } from "node:fs";
import { monitorEventLoopDelay, performance, PerformanceObserver } from "node:perf_hooks";

const MAX = 4_000_000; // doubles kept (then recording stops): ~32 MB

class Recorder {
  readonly #d = new Float64Array(MAX);
  #n = 0;
  readonly #gc: number[] = [];
  readonly #eld = monitorEventLoopDelay({ resolution: 1 });
  // The open group: Consumes entered since the last microtask checkpoint.
  #group = -1;
  #groupOpen = false;
  readonly #closeGroup = (): void => {
    this.#groupOpen = false;
  };

  constructor(readonly file: string) {
    this.#eld.enable();
    new PerformanceObserver((list) => {
      for (const e of list.getEntries()) this.#gc.push(e.startTime, e.duration, (e as unknown as { detail?: { kind?: number } }).detail?.kind ?? 0);
    }).observe({ entryTypes: ["gc"] });
    process.on("exit", () => this.flush());
  }

  now(): number {
    return performance.now();
  }

  /** A Consume entered ConsumeService: the index of its group's record (entered, n, read, handed, done). */
  enter(): number {
    const t = performance.now();
    if (!this.#groupOpen) {
      if (this.#n + 6 > MAX) return -1;
      this.#groupOpen = true;
      queueMicrotask(this.#closeGroup);
      this.#group = this.#n;
      const d = this.#d;
      d[this.#n++] = 1; // kind
      d[this.#n++] = t;
      d[this.#n++] = 0;
      d[this.#n++] = 0;
      d[this.#n++] = 0;
      d[this.#n++] = 0;
    }
    if (this.#group >= 0) this.#d[this.#group + 2]! += 1;
    return this.#group;
  }

  /** A group's phase (2 read answered, 3 handed to the store, 4 answered): the latest time of its Consumes. */
  mark(group: number, phase: 2 | 3 | 4): void {
    if (group >= 0) this.#d[group + 1 + phase] = performance.now();
  }

  /** kind 2 = read (queued, issued, syncDone, done, ids), 3 = write (first, drain, encoded, syncDone, done, submissions). */
  record(kind: 2 | 3, a: number, b: number, c: number, d: number, e: number, f = 0): void {
    if (this.#n + 7 > MAX) return;
    const x = this.#d;
    x[this.#n++] = kind;
    x[this.#n++] = a;
    x[this.#n++] = b;
    x[this.#n++] = c;
    x[this.#n++] = d;
    x[this.#n++] = e;
    if (kind === 3) x[this.#n++] = f;
  }

  flush(): void {
    const groups: number[][] = [];
    const reads: number[][] = [];
    const writes: number[][] = [];
    const d = this.#d;
    for (let i = 0; i < this.#n; ) {
      const k = d[i]!;
      const len = k === 3 ? 6 : 5;
      (k === 1 ? groups : k === 2 ? reads : writes).push(Array.from(d.subarray(i + 1, i + 1 + len)));
      i += 1 + len;
    }
    const h = this.#eld;
    const eld = { p50: h.percentile(50) / 1e6, p99: h.percentile(99) / 1e6, p999: h.percentile(99.9) / 1e6, max: h.max / 1e6, count: h.count };
    writeFileSync(`${this.file}.${process.pid}.json`, JSON.stringify({ groups, reads, writes, gc: this.#gc, eld }));
  }
}

const file = process.env.AISA_TRACE_CONSUME;
/** The recorder when AISA_TRACE_CONSUME is set, else undefined. */
export const consumeTrace: Recorder | undefined = file ? new Recorder(file) : undefined;
