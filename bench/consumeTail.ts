// Durable Consume at the store level: latency tail, throughput, CPU and GC per build, interleaved
// (issue 18, item 3). Each round starts one child process per build (`--root` checkouts: this
// tree and e.g. a `git archive` of the baseline with node_modules linked), on a fresh data dir
// with 64 keys, and runs C Consumes in flight for the duration; rounds alternate the builds'
// order. A child reports calls/s, p50/p99/p99.9 (ms), CPU µs per call, and the GC pauses
// (PerformanceObserver 'gc': count, scavenges, majors, longest, total ms) during the window.
// Usage: node --import tsx bench/consumeTail.ts [--roots A,B] [--inflight 32,128] [--ms 4000] [--rounds 3] [--json]
//        (a child: node --import tsx bench/consumeTail.ts --child ROOT C MS)
import { spawn } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { PerformanceObserver, constants as perf } from "node:perf_hooks";
import { fileURLToPath, pathToFileURL } from "node:url";
import { summarize } from "./lib/stats.js";

export interface TailResult {
  root: string;
  inFlight: number;
  callsPerSec: number;
  p50: number;
  p99: number;
  p999: number;
  cpuUsPerCall: number;
  meanBatch: number;
  /** Time between two committed batches (the writer is never idle under this load: one batch's build + write + fsync), p50 / p99 ms. */
  batchCycle: { p50: number; p99: number };
  gc: { count: number; scavenges: number; majors: number; maxMs: number; totalMs: number };
}

async function child(root: string, c: number, ms: number): Promise<TailResult> {
  const { LevelStore } = (await import(pathToFileURL(join(root, "src/store/level/levelStore.ts")).href)) as typeof import("../src/store/level/levelStore.js");
  const { makeKey } = (await import(pathToFileURL(join(root, "test/contract/store.contract.ts")).href)) as typeof import("../test/contract/store.contract.js");
  const dir = mkdtempSync(join(tmpdir(), "aisa-consume-tail-"));
  const store = new LevelStore({ dir });
  try {
    await store.open(Date.now());
    const actor = { actor: "operator", action: "Bench", target: "t" };
    await store.adjustBalance("default", 1e15, actor);
    const keys: string[] = [];
    for (let i = 0; i < 64; i++) {
      const k = makeKey({ unlimited: true, quotaTotal: 0 });
      await store.insertKey(k.record, actor);
      keys.push(k.record.id);
    }
    let measuring = false;
    let stop = false;
    let seq = 0;
    let batches = 0;
    let submissions = 0;
    const lat: number[] = [];
    const gcs: { kind: number; ms: number }[] = [];
    const obs = new PerformanceObserver((list) => {
      if (!measuring) return;
      for (const e of list.getEntries()) gcs.push({ kind: (e as any).detail?.kind ?? 0, ms: e.duration });
    });
    obs.observe({ entryTypes: ["gc"] });
    const cycles: number[] = [];
    let lastBatch = 0;
    store.onBatch = (n) => {
      const t = performance.now();
      if (measuring) {
        batches++;
        submissions += n;
        if (lastBatch) cycles.push(t - lastBatch);
      }
      lastBatch = t;
    };
    const worker = async (w: number) => {
      let k = w;
      while (!stop) {
        const was = measuring;
        const s = performance.now();
        const r = await store.consume({ requestId: `tail-${seq++}`, keyId: keys[k++ & 63]!, reservationId: "", model: "gpt-4o-mini", inputTokens: 1200, outputTokens: 300, units: 180, now: Date.now() });
        if (r.replayed) throw new Error("unexpected replay");
        if (was && measuring) lat.push(performance.now() - s);
      }
    };
    const workers = Array.from({ length: c }, (_, i) => worker(i));
    await new Promise((r) => setTimeout(r, 1000)); // warm-up (JIT, LevelDB's first compactions)
    const u0 = process.cpuUsage();
    measuring = true;
    const t0 = performance.now();
    await new Promise((r) => setTimeout(r, ms));
    measuring = false;
    const secs = (performance.now() - t0) / 1000;
    const u1 = process.cpuUsage(u0);
    stop = true;
    await Promise.all(workers);
    await new Promise((r) => setTimeout(r, 20));
    obs.disconnect();
    const s = summarize(lat);
    const majors = gcs.filter((g) => g.kind === perf.NODE_PERFORMANCE_GC_MAJOR).length;
    return {
      root,
      inFlight: c,
      callsPerSec: Math.round(lat.length / secs),
      p50: s.p50,
      p99: s.p99,
      p999: s.p999,
      cpuUsPerCall: (u1.user + u1.system) / lat.length,
      meanBatch: batches ? submissions / batches : 0,
      batchCycle: { p50: summarize(cycles).p50, p99: summarize(cycles).p99 },
      gc: {
        count: gcs.length,
        scavenges: gcs.filter((g) => g.kind === perf.NODE_PERFORMANCE_GC_MINOR).length,
        majors,
        maxMs: gcs.reduce((m, g) => Math.max(m, g.ms), 0),
        totalMs: gcs.reduce((t, g) => t + g.ms, 0),
      },
    };
  } finally {
    await store.close();
    rmSync(dir, { recursive: true, force: true });
  }
}

function runChild(root: string, c: number, ms: number): Promise<TailResult> {
  return new Promise((res, rej) => {
    const p = spawn(process.execPath, ["--import", "tsx", fileURLToPath(import.meta.url), "--child", root, String(c), String(ms)], { cwd: root, stdio: ["ignore", "pipe", "inherit"] });
    let out = "";
    p.stdout.on("data", (d) => (out += d));
    p.on("exit", (code) => (code === 0 ? res(JSON.parse(out.trim().split("\n").pop()!)) : rej(new Error(`consumeTail child (${root}) exited ${code}`))));
  });
}

const argv = process.argv.slice(2);
if (argv[0] === "--child") {
  process.stdout.write(JSON.stringify(await child(argv[1]!, Number(argv[2]), Number(argv[3]))) + "\n");
} else {
  const opt = (name: string, d: string) => {
    const i = argv.indexOf(name);
    return i >= 0 ? argv[i + 1]! : d;
  };
  const roots = opt("--roots", ".").split(",").map((r) => resolve(r));
  const inflight = opt("--inflight", "32,128").split(",").map(Number);
  const ms = Number(opt("--ms", "4000"));
  const rounds = Number(opt("--rounds", "3"));
  const results: TailResult[] = [];
  for (let r = 0; r < rounds; r++) {
    for (const c of inflight) {
      const order = r % 2 ? [...roots].reverse() : roots;
      for (const root of order) {
        const x = await runChild(root, c, ms);
        results.push(x);
        if (!argv.includes("--json")) {
          process.stdout.write(
            `round ${r} ×${c} ${root}: ${x.callsPerSec}/s p50 ${x.p50.toFixed(2)} p99 ${x.p99.toFixed(2)} p99.9 ${x.p999.toFixed(2)} ms, ${x.cpuUsPerCall.toFixed(1)} µs CPU/call, batch ${x.meanBatch.toFixed(1)} (cycle p50 ${x.batchCycle.p50.toFixed(2)} p99 ${x.batchCycle.p99.toFixed(2)} ms); GC ${x.gc.count} (${x.gc.majors} major) max ${x.gc.maxMs.toFixed(2)} total ${x.gc.totalMs.toFixed(0)} ms\n`,
          );
        }
      }
    }
  }
  if (argv.includes("--json")) process.stdout.write(JSON.stringify(results) + "\n");
}
