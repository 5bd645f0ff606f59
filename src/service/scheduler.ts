// The sidecar's background steps, in one place. The composition root (main.ts) adds each
// periodic step — the store's maintenance (reservation expiry, refills, recovery after a
// failed write), the usage tick (live second, bucket flush, retention), the webhook deliveries
// due — and starts and stops them together. Engines and services expose the steps; none of
// them owns a timer.
import type { StoreMaintenance } from "../store/types.js";

interface Task {
  name: string;
  everyMs: number;
  run: () => void | Promise<void>;
  timer: NodeJS.Timeout | undefined;
  /** A run that returned a promise and has not settled: the next period is skipped. */
  running: Promise<void> | undefined;
}

export class Scheduler {
  readonly #tasks: Task[] = [];
  readonly #onError: (task: string, err: unknown) => void;
  #started = false;

  constructor(opts: { onError: (task: string, err: unknown) => void }) {
    this.#onError = opts.onError;
  }

  /** Runs `run` every `everyMs` once started; an async run still going skips the next period. */
  every(name: string, everyMs: number, run: () => void | Promise<void>): this {
    const t: Task = { name, everyMs, run, timer: undefined, running: undefined };
    this.#tasks.push(t);
    if (this.#started) this.#arm(t);
    return this;
  }

  start(): void {
    if (this.#started) return;
    this.#started = true;
    for (const t of this.#tasks) this.#arm(t);
  }

  /** Stops every timer and waits for the runs under way. */
  async stop(): Promise<void> {
    this.#started = false;
    for (const t of this.#tasks) {
      if (t.timer) clearInterval(t.timer);
      t.timer = undefined;
    }
    await Promise.all(this.#tasks.map((t) => t.running));
  }

  #arm(t: Task): void {
    t.timer = setInterval(() => this.#run(t), t.everyMs);
    t.timer.unref();
  }

  #run(t: Task): void {
    if (t.running) return;
    try {
      const r = t.run();
      if (r instanceof Promise) {
        t.running = r.catch((err) => this.#onError(t.name, err)).finally(() => (t.running = undefined));
      }
    } catch (err) {
      this.#onError(t.name, err);
    }
  }
}

/**
 * The store's once-a-second maintenance: open reservations whose TTL passed are released
 * (their Consume never came); then, after a failed write, the engine recovers (nothing else is
 * written until it has), else keys whose refill period turned are refilled (domain/refill.ts);
 * and the engine's upkeep of its files, where it has one.
 */
export function maintainStore(store: StoreMaintenance, now: number): void {
  store.maintainFiles?.();
  store.releaseExpired(now);
  if (store.needsRecovery) void store.recover();
  else store.refill(now);
}
