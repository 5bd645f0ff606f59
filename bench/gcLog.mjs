// A preload that logs a process's garbage collections, for bench/tui.ts's `nodeOptions`
// (--trace-gc is not allowed in NODE_OPTIONS, and would print on the TUI's screen):
//   "nodeOptions": "--import file:///abs/path/bench/gcLog.mjs?out=/tmp/gc.json"
// At exit it writes { clock, gc } to `out`: gc = [epoch ms at the start, duration ms, kind] per
// collection (kind: 1 minor (scavenge), 4 major (mark-compact), 8 incremental marking, 16 weak
// callbacks); clock = { epochMs, monoUs }, one instant on both clocks, to place a --cpu-prof
// profile's timestamps (monotonic µs) on the epoch.
import { writeFileSync } from "node:fs";
import { performance, PerformanceObserver } from "node:perf_hooks";

const out = new URL(import.meta.url).searchParams.get("out");
const rows = [];
const clock = { epochMs: Date.now(), monoUs: Number(process.hrtime.bigint() / 1000n) };
if (out) {
  new PerformanceObserver((list) => {
    for (const e of list.getEntries()) rows.push([Math.round(performance.timeOrigin + e.startTime), Number(e.duration.toFixed(1)), e.detail?.kind ?? 0]);
  }).observe({ entryTypes: ["gc"] });
  process.on("exit", () => writeFileSync(out, JSON.stringify({ clock, gc: rows })));
}
