// V8 --trace-gc lines (the sidecar prints them with AISA_TRACE_GC=1) → the pauses of a window.
import type { GcPauses } from "./results.js";

/**
 * GC pauses in lines [from, to) of --trace-gc output, e.g.
 * `[123:0x…]   4567 ms: Scavenge 10.1 (12.3) -> 9.8 (12.3) MB, 0.45 / 0.00 ms  (average mu …`:
 * the pause is the first number after the sizes.
 */
export function gcIn(lines: readonly string[], from: number, to: number): GcPauses {
  const pauses: number[] = [];
  let scavenges = 0;
  for (let i = from; i < to; i++) {
    const m = /ms: ([A-Za-z -]+?) [\d.]+ \([\d.]+\) -> [\d.]+ \([\d.]+\) MB, (?:pooled: [\d.]+ MB, )?([\d.]+) \/ [\d.]+ ms/.exec(lines[i]!);
    if (!m) continue;
    pauses.push(Number(m[2]));
    if (m[1]!.includes("Scavenge")) scavenges++;
  }
  pauses.sort((a, b) => a - b);
  const q = (p: number) => (pauses.length ? pauses[Math.min(pauses.length - 1, Math.ceil(p * pauses.length) - 1)]! : 0);
  return { count: pauses.length, scavenges, p99Ms: q(0.99), maxMs: pauses.at(-1) ?? 0, totalMs: pauses.reduce((a, b) => a + b, 0) };
}
