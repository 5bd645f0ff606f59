// Reads the phase traces AISA_TRACE_CONSUME=<file> makes the sidecar write (<file>.<pid>.json,
// src/observability/consumeTrace.ts) and prints where a Consume group's time went: every group
// (a ConsumeBatch call's items entered in one synchronous run) and the groups over `slowMs`,
// split into ledger read, read → charge handed to the store, the store's consume (charge, the
// group-commit wait, the synced write), with the read ticks, write batches and GC pauses that
// overlap them, and the event loop's delay histogram.
// Usage: node --import tsx bench/consumeTraceReport.ts FILE.json [slowMs=3]
import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";

interface Trace {
  groups: number[][];
  reads: number[][];
  writes: number[][];
  gc: number[];
  eld: { p50: number; p99: number; p999: number; max: number; count: number };
}

function pct(xs: number[], p: number): number {
  if (xs.length === 0) return NaN;
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))]!;
}
const f = (x: number) => (Number.isFinite(x) ? x.toFixed(2) : "-");
const line = (name: string, xs: number[]) => `${name.padEnd(34)} n=${String(xs.length).padStart(6)}  p50 ${f(pct(xs, 50))}  p90 ${f(pct(xs, 90))}  p99 ${f(pct(xs, 99))}  max ${f(Math.max(...xs))} ms`;

/** Milliseconds of [a, b) covered by intervals [s, s + d). */
function overlap(iv: [number, number][], a: number, b: number): number {
  let t = 0;
  for (const [s, d] of iv) {
    const lo = Math.max(a, s);
    const hi = Math.min(b, s + d);
    if (hi > lo) t += hi - lo;
  }
  return t;
}

export function report(t: Trace, slowMs: number): string {
  const out: string[] = [];
  // Groups: [entered, n, read, handed, done]; drop the unfinished and the warm-up's first second.
  const t0 = t.groups.length ? t.groups[0]![0]! + 1000 : 0;
  const g = t.groups.filter((x) => x[4]! > 0 && x[0]! >= t0);
  const total = g.map((x) => x[4]! - x[0]!);
  out.push(`groups ${g.length} (mean ${f(g.reduce((s, x) => s + x[1]!, 0) / Math.max(1, g.length))} Consumes)`);
  out.push(line("group: entered → answered", total));
  out.push(line("  entered → ledger read answered", g.map((x) => x[2]! - x[0]!)));
  out.push(line("  read → handed to store.consume", g.map((x) => x[3]! - x[2]!)));
  out.push(line("  handed → answered (charge+commit)", g.map((x) => x[4]! - x[3]!)));
  const reads = t.reads.filter((x) => x[0]! >= t0);
  out.push(line("read tick: queued → issued", reads.map((x) => x[1]! - x[0]!)));
  out.push(line("read tick: _getMany sync part", reads.map((x) => x[2]! - x[1]!)));
  out.push(line("read tick: issued → values", reads.map((x) => x[3]! - x[2]!)));
  out.push(`read ticks ${reads.length}, mean ids ${f(reads.reduce((s, x) => s + x[4]!, 0) / Math.max(1, reads.length))}`);
  const writes = t.writes.filter((x) => x[0]! >= t0);
  out.push(line("write: first submit → drain", writes.map((x) => x[1]! - x[0]!)));
  out.push(line("write: coalesce + encode", writes.map((x) => x[2]! - x[1]!)));
  out.push(line("write: native sync part", writes.map((x) => x[3]! - x[2]!)));
  out.push(line("write: thread pool (log + fdatasync)", writes.map((x) => x[4]! - x[3]!)));
  out.push(`write batches ${writes.length}, mean submissions ${f(writes.reduce((s, x) => s + x[5]!, 0) / Math.max(1, writes.length))}`);
  const gc: [number, number][] = [];
  for (let i = 0; i < t.gc.length; i += 3) if (t.gc[i]! >= t0) gc.push([t.gc[i]!, t.gc[i + 1]!]);
  out.push(line("GC pauses", gc.map((x) => x[1])));
  out.push(`event loop delay (ms, 1 ms resolution): p50 ${f(t.eld.p50)} p99 ${f(t.eld.p99)} p99.9 ${f(t.eld.p999)} max ${f(t.eld.max)}`);
  const slow = g.filter((x) => x[4]! - x[0]! > slowMs);
  out.push(`\ngroups over ${slowMs} ms: ${slow.length} (${f((100 * slow.length) / Math.max(1, g.length))} %); per slow group, mean ms:`);
  if (slow.length) {
    const mean = (fn: (x: number[]) => number) => f(slow.reduce((s, x) => s + fn(x), 0) / slow.length);
    // The write batch that answered the group: the first whose done ≥ handed and ≤ done + ε.
    const wOf = (x: number[]) => writes.find((w) => w[4]! >= x[3]! && w[4]! <= x[4]! + 0.001);
    const rOf = (x: number[]) => reads.find((r) => r[3]! <= x[2]! + 0.001 && r[3]! >= x[0]!);
    out.push(`  total ${mean((x) => x[4]! - x[0]!)}, read ${mean((x) => x[2]! - x[0]!)}, read→handed ${mean((x) => x[3]! - x[2]!)}, handed→answered ${mean((x) => x[4]! - x[3]!)}`);
    out.push(`  GC inside the group ${mean((x) => overlap(gc, x[0]!, x[4]!))}`);
    out.push(`  its read tick: queued→issued ${mean((x) => { const r = rOf(x); return r ? r[1]! - r[0]! : 0; })}, sync ${mean((x) => { const r = rOf(x); return r ? r[2]! - r[1]! : 0; })}, issued→values ${mean((x) => { const r = rOf(x); return r ? r[3]! - r[2]! : 0; })}`);
    out.push(`  its write: handed→first submit… drain ${mean((x) => { const w = wOf(x); return w ? w[1]! - x[3]! : 0; })}, encode ${mean((x) => { const w = wOf(x); return w ? w[2]! - w[1]! : 0; })}, sync ${mean((x) => { const w = wOf(x); return w ? w[3]! - w[2]! : 0; })}, pool ${mean((x) => { const w = wOf(x); return w ? w[4]! - w[3]! : 0; })}, submissions ${mean((x) => wOf(x)?.[5] ?? 0)}`);
  }
  return out.join("\n");
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const file = process.argv[2];
  if (!file) throw new Error("usage: consumeTraceReport.ts FILE.json [slowMs]");
  process.stdout.write(report(JSON.parse(readFileSync(file, "utf8")) as Trace, Number(process.argv[3] ?? 3)) + "\n");
}
