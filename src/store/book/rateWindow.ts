// A key's rate window (rpm / tpm): requests and tokens over the last minute, in one-second
// buckets, with when the oldest counted bucket leaves (retry-after, rate-limit headers). The
// hot index keeps one per rate-limited key (a sparse Map by slot).
/** Sliding one-minute window in one-second buckets. */
export class RateWindow {
  readonly requests = new Uint32Array(60);
  readonly tokens = new Float64Array(60);
  /** The epoch second the bucket at `second % 60` was last reset for. */
  readonly stamps = new Float64Array(60);

  #bucket(nowMs: number): number {
    const sec = Math.floor(nowMs / 1000);
    const i = sec % 60;
    if (this.stamps[i] !== sec) {
      this.stamps[i] = sec;
      this.requests[i] = 0;
      this.tokens[i] = 0;
    }
    return i;
  }

  addRequest(nowMs: number): void {
    this.requests[this.#bucket(nowMs)]! += 1;
  }

  addTokens(nowMs: number, n: number): void {
    this.tokens[this.#bucket(nowMs)]! += n;
  }

  /** Requests and tokens in the last 60 s, and ms until the oldest counted bucket leaves. */
  read(nowMs: number): { requests: number; tokens: number; resetMs: number } {
    const sec = Math.floor(nowMs / 1000);
    let requests = 0;
    let tokens = 0;
    let oldest = Infinity;
    for (let i = 0; i < 60; i++) {
      const s = this.stamps[i]!;
      if (s > sec - 60 && s <= sec) {
        requests += this.requests[i]!;
        tokens += this.tokens[i]!;
        if ((this.requests[i]! > 0 || this.tokens[i]! > 0) && s < oldest) oldest = s;
      }
    }
    const resetMs = oldest === Infinity ? 0 : (oldest + 60) * 1000 - nowMs;
    return { requests, tokens, resetMs: Math.max(0, resetMs) };
  }
}
