// An open-loop schedule (issue 18 item 3): call i is DUE at t0 + i / rate, whether or not the
// calls before it have been answered, and its latency is timed from when it was due, not from
// when it was sent — a client that falls behind (a late timer, a GC pause, the cap below) counts
// against the result instead of quietly lowering the rate (coordinated omission).
//
// At most `maxInFlight` calls are outstanding. A call that falls due while that many are
// outstanding waits for a slot (its wait is part of its latency) and is counted `capped`; when
// more than `maxBacklog` calls are due and waiting, the oldest are dropped and counted `dropped`
// (the rate was not sustained: a run with drops has no honest p99 at that rate).
//
// Pure logic, no timers: the caller passes the time (performance.now() in bench/consumeLoad.ts,
// a fake clock in test/unit/openLoop.test.ts).

export interface OpenLoopConfig {
  /** Calls per second (> 0). */
  rate: number;
  /** Calls outstanding at most (≥ 1). */
  maxInFlight: number;
  /** Due calls that may wait for a slot before the oldest are dropped; default one second's worth (at least maxInFlight). */
  maxBacklog?: number;
  /** Calls in the schedule (default: no end). */
  total?: number;
}

export class OpenLoopSchedule {
  readonly periodMs: number;
  readonly maxInFlight: number;
  readonly maxBacklog: number;
  readonly total: number;
  readonly #t0: number;
  /** Index of the next call to start (every call before it started or was dropped). */
  #next = 0;
  /** Calls before this index were already looked at for the cap (counted at most once each). */
  #cappedThrough = 0;
  inFlight = 0;
  /** Most calls outstanding at once. */
  peakInFlight = 0;
  started = 0;
  /** Calls that were due while maxInFlight were outstanding (they started late, or were dropped); seen by take() or finish(). */
  capped = 0;
  /** Calls never sent: more than maxBacklog were waiting. */
  dropped = 0;

  constructor(cfg: OpenLoopConfig, t0: number) {
    if (!(cfg.rate > 0) || !Number.isFinite(cfg.rate)) throw new Error(`open loop: rate must be a positive number of calls per second (got ${cfg.rate})`);
    if (!Number.isInteger(cfg.maxInFlight) || cfg.maxInFlight < 1) throw new Error(`open loop: maxInFlight must be an integer ≥ 1 (got ${cfg.maxInFlight})`);
    const backlog = cfg.maxBacklog ?? Math.max(cfg.maxInFlight, Math.ceil(cfg.rate));
    if (!Number.isInteger(backlog) || backlog < 0) throw new Error(`open loop: maxBacklog must be an integer ≥ 0 (got ${cfg.maxBacklog})`);
    this.periodMs = 1000 / cfg.rate;
    this.maxInFlight = cfg.maxInFlight;
    this.maxBacklog = backlog;
    this.total = cfg.total ?? Infinity;
    if (!(this.total >= 0)) throw new Error(`open loop: total must be ≥ 0 (got ${cfg.total})`);
    this.#t0 = t0;
  }

  /** When call i is due. */
  dueAt(i: number): number {
    return this.#t0 + i * this.periodMs;
  }

  /** Calls due by `now` (indices 0 … dueBy(now) − 1). */
  dueBy(now: number): number {
    return now < this.#t0 ? 0 : Math.min(this.total, Math.floor((now - this.#t0) / this.periodMs) + 1);
  }

  /** Every call of the schedule started (or dropped) and answered. */
  get done(): boolean {
    return this.#next >= this.total && this.inFlight === 0;
  }

  /**
   * The due time of the next call that may start at `now`, counted as started (the caller sends
   * it and later calls finish() with this due time); NaN when none may: nothing more is due yet,
   * or maxInFlight are outstanding. Call it until NaN.
   */
  take(now: number): number {
    const due = this.dueBy(now);
    if (this.#next >= due) return NaN;
    const waiting = due - this.#next;
    if (waiting > this.maxBacklog) {
      // The oldest waiting calls are dropped: never sent, counted.
      const drop = waiting - this.maxBacklog;
      this.#count(this.#next + drop);
      this.dropped += drop;
      this.#next += drop;
      if (this.#next >= due) return NaN;
    }
    if (this.inFlight >= this.maxInFlight) {
      this.#count(due);
      return NaN;
    }
    const d = this.dueAt(this.#next++);
    this.inFlight++;
    this.started++;
    if (this.inFlight > this.peakInFlight) this.peakInFlight = this.inFlight;
    return d;
  }

  /** Calls with index < `upTo` found the cap full (each counted once). */
  #count(upTo: number): void {
    if (this.inFlight < this.maxInFlight) {
      this.#cappedThrough = Math.max(this.#cappedThrough, upTo);
      return;
    }
    const from = Math.max(this.#cappedThrough, this.#next);
    if (upTo > from) this.capped += upTo - from;
    this.#cappedThrough = Math.max(this.#cappedThrough, upTo);
  }

  /** A started call ended at `now`: frees its slot; its latency (ms) from when it was due. */
  finish(due: number, now: number): number {
    if (this.inFlight <= 0) throw new Error("open loop: finish() without a started call");
    // Calls that fell due since, while every slot was taken, waited for this one.
    this.#count(this.dueBy(now));
    this.inFlight--;
    return now - due;
  }

  /** When take() may next return a call: the next due time, or Infinity while the cap is full (a finish() frees a slot) or after the last call. */
  nextAt(): number {
    return this.inFlight >= this.maxInFlight || this.#next >= this.total ? Infinity : this.dueAt(this.#next);
  }
}
