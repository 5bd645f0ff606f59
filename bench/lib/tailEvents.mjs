// Preload for bench/checkTail.ts (NODE_OPTIONS="--import …/tailEvents.mjs"): records, with
// wall-clock (epoch ms) start times, every GC pause V8 reports to perf_hooks (minor = scavenge,
// major = mark-compact, incremental = a marking step, weakcb = weak callbacks) and every
// setInterval callback that runs over 50 µs, and writes them to $AISA_TAIL_EVENTS at exit
// (the sidecar and the baselines all exit through process.exit on SIGTERM). With
// AISA_TAIL_TRACE_GC=1 it also turns on --trace-gc (V8 prints each GC's reason on stdout), with
// =nvp --trace-gc-nvp.
import { PerformanceObserver, performance } from "node:perf_hooks";
import { writeFileSync } from "node:fs";
import v8 from "node:v8";
const file = process.env.AISA_TAIL_EVENTS;
if (process.env.AISA_TAIL_TRACE_GC === "1") v8.setFlagsFromString("--trace-gc");
// "nvp": one line per GC with its phases and `allocated=` / `promoted=` bytes since the last one.
if (process.env.AISA_TAIL_TRACE_GC === "nvp") v8.setFlagsFromString("--trace-gc-nvp");
const origin = performance.timeOrigin;
const events = [];
const KIND = { 1: "minor", 2: "major", 4: "incremental", 8: "weakcb" };
new PerformanceObserver((list) => {
  for (const e of list.getEntries()) events.push([origin + e.startTime, e.duration, "gc:" + (KIND[e.detail?.kind] ?? e.detail?.kind)]);
}).observe({ entryTypes: ["gc"] });
const si = globalThis.setInterval;
globalThis.setInterval = function (fn, ms, ...args) {
  const at = (new Error().stack ?? "").split("\n")[2]?.trim().replace(/^at /, "").replace(/\(?file:\/\/.*\/(dist\/)?/, "") ?? "?";
  const name = `timer:${ms}ms ${fn.name || "anon"} ${at}`;
  return si.call(this, function (...a) {
    const t = performance.now();
    try {
      return fn.apply(this, a);
    } finally {
      const d = performance.now() - t;
      if (d > 0.05) events.push([origin + t, d, name]);
    }
  }, ms, ...args);
};
process.on("exit", () => {
  if (!file) return;
  const h = v8.getHeapStatistics();
  writeFileSync(file, JSON.stringify({ origin, events, heap: { usedMb: h.used_heap_size / 1e6, totalMb: h.total_heap_size / 1e6, limitMb: h.heap_size_limit / 1e6, externalMb: h.external_memory / 1e6 }, spaces: v8.getHeapSpaceStatistics().map((s) => ({ space: s.space_name, usedMb: s.space_used_size / 1e6, sizeMb: s.space_size / 1e6 })) }));
});
