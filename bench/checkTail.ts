// What sets the Envoy Check's p99 at one request in flight (issue 18 item 2)? Each target (a
// sidecar from ROOT/bin/aisa-authz.js with its own NODE_OPTIONS / env, or a bench/servers.ts
// baseline) runs with bench/lib/tailEvents.mjs preloaded: every GC pause (perf_hooks: minor,
// major, incremental marking step, weak callbacks) and every setInterval callback over 50 µs,
// with wall-clock start times. Rounds run each target in rotated order under h2load at one
// request in flight (-c1 -m1) with --log-file, whose lines carry each request's wall-clock
// start and duration. Per window: p50/p99/p99.9, the requests at or over the p99 and the
// events they overlap (first match in the order major, incremental, minor, weakcb, timer), and
// the p99 with every request that overlaps a GC pause left out (what the p99 would be without
// them). GC reasons from --trace-gc (AISA_TAIL_TRACE_GC=1) are counted per target.
// Usage: node --import tsx bench/checkTail.ts '{"keys":10000,"targets":[{"label":"check","kind":"sidecar","root":"."},{"label":"floor","kind":"floor"}]}'
//   (optional: rounds 3, durationS 8, warmupS 4 (saturation, unmeasured), nodeOptions / env per target)
// Prints progress on stderr and one JSON object on stdout.
import { cpSync, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { loadavg, tmpdir } from "node:os";
import { delimiter, dirname, join, resolve } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import { runLoad, type Shot } from "./lib/loadgen.js";
import { cpuSecondsOf, killAllTracked, memoryOf, spawnTracked, stop, waitExit, waitReady, type Spawned } from "./lib/proc.js";
import { ENVOY_CHECK_PATH, encodeEnvoyCheck, envoyCheckRequest, grpcFrame } from "./lib/payloads.js";
import type { SeedResult } from "./seed.js";
import { cachedSeed } from "./lib/seedCache.js";

const HERE = fileURLToPath(new URL("..", import.meta.url));
const PRELOAD = join(HERE, "bench/lib/tailEvents.mjs");
interface Target {
  label: string;
  kind: "sidecar" | "floor" | "noop-raw" | "noop";
  root?: string;
  nodeOptions?: string;
  /** V8 flags node refuses in NODE_OPTIONS (e.g. --min-semi-space-size): node runs the bin with them, the prologue's settings given here. */
  nodeArgs?: string[];
  env?: Record<string, string>;
}
interface Spec {
  keys?: number;
  targets: Target[];
  rounds?: number;
  durationS?: number;
  warmupS?: number;
}
const spec = JSON.parse(process.argv[2] ?? "{}") as Spec;
const keys = spec.keys ?? 10000;
const rounds = spec.rounds ?? 3;
const durationS = spec.durationS ?? 8;
const warmupS = spec.warmupS ?? 4;
const log = (s: string) => process.stderr.write(`[${new Date().toISOString().slice(11, 19)}] ${s}\n`);

function seed(n: number): Promise<{ dir: string; seeded: SeedResult }> {
  return cachedSeed("checktail", { keys: n, allow: 2, consume: 0, ipRestricted: 0, quotaEmpty: 0 });
}

interface Running {
  t: Target;
  p: Spawned;
  address: string;
  eventsFile: string;
}

type Ev = [number, number, string];
interface Window {
  round: number;
  label: string;
  fromMs: number;
  toMs: number;
  reqs: Float64Array; // start ms, duration ms, pairs
  load1: number;
  cpuUsPerReq: number;
  rssMb?: number;
}

const q = (sorted: ArrayLike<number>, p: number) => (sorted.length ? sorted[Math.min(sorted.length - 1, Math.ceil(p * sorted.length) - 1)]! : NaN);

function readLog(file: string): Float64Array {
  const lines = readFileSync(file, "utf8").split("\n");
  const out = new Float64Array(lines.length * 2);
  let n = 0;
  for (const line of lines) {
    const f = line.split("\t");
    if (f.length < 3) continue;
    out[n++] = Number(f[0]) / 1000;
    out[n++] = Number(f[2]) / 1000;
  }
  return out.slice(0, n);
}

/** --trace-gc-nvp lines (ms since the isolate started, ≈ performance.timeOrigin) in [from, to] epoch ms. */
function nvpIn(lines: readonly string[], origin: number, from: number, to: number, n: number): Record<string, number> | undefined {
  let allocated = 0;
  let promoted = 0;
  let s = 0;
  let mc = 0;
  let sPause = 0;
  for (const l of lines) {
    const m = /^\[\d+:0x[0-9a-f]+\]\s+(\d+) ms: pause=([\d.]+) .*? gc=(\w+) .*? allocated=(\d+) promoted=(\d+)/.exec(l);
    if (!m) continue;
    const t = origin + Number(m[1]);
    if (t < from || t > to) continue;
    allocated += Number(m[4]);
    promoted += Number(m[5]);
    if (m[3] === "s") {
      s++;
      sPause += Number(m[2]);
    } else mc++;
  }
  if (s + mc === 0) return undefined;
  return { scavenges: s, otherGcs: mc, scavengeMeanMs: s ? sPause / s : 0, allocatedKbPerReq: allocated / 1024 / n, promotedBPerReq: promoted / n, reqsPerScavenge: s ? n / s : NaN };
}

const ORDER = ["gc:major", "gc:incremental", "gc:minor", "gc:weakcb"];
function analyse(w: Window, events: Ev[], nvp?: Record<string, number>): Record<string, unknown> {
  const n = w.reqs.length / 2;
  const durs = new Float64Array(n);
  for (let i = 0; i < n; i++) durs[i] = w.reqs[2 * i + 1]!;
  const sorted = Float64Array.from(durs).sort();
  const p99 = q(sorted, 0.99);
  const evs = events.filter((e) => e[0] + e[1] >= w.fromMs - 50 && e[0] <= w.toMs + 50).sort((a, b) => a[0] - b[0]);
  const kindOf = (e: Ev) => (e[2].startsWith("timer:") ? e[2] : e[2]);
  // Per request: the events it overlaps (two-pointer over start-sorted events; events are short).
  const hitBy: string[] = new Array(n);
  const evHits = new Map<string, { count: number; totalMs: number; maxMs: number; hitReqs: number }>();
  for (const e of evs) {
    const k = kindOf(e).startsWith("timer:") ? kindOf(e) : kindOf(e);
    const s = evHits.get(k) ?? { count: 0, totalMs: 0, maxMs: 0, hitReqs: 0 };
    if (e[0] >= w.fromMs && e[0] <= w.toMs) {
      s.count++;
      s.totalMs += e[1];
      s.maxMs = Math.max(s.maxMs, e[1]);
    }
    evHits.set(k, s);
  }
  let j = 0;
  const exGc: number[] = [];
  for (let i = 0; i < n; i++) {
    const s = w.reqs[2 * i]!;
    const d = w.reqs[2 * i + 1]!;
    while (j < evs.length && evs[j]![0] + evs[j]![1] + 100 < s) j++; // events end long before
    let best = "";
    for (let k = j; k < evs.length && evs[k]![0] <= s + d; k++) {
      const e = evs[k]!;
      if (e[0] + e[1] < s) continue;
      const name = e[2];
      const st = evHits.get(name);
      if (st) st.hitReqs++;
      const rank = (x: string) => (ORDER.includes(x) ? ORDER.indexOf(x) : x ? ORDER.length : 99);
      if (!best || rank(name) < rank(best)) best = name;
    }
    hitBy[i] = best;
    if (!best.startsWith("gc:")) exGc.push(d);
  }
  const slow: Record<string, number> = {};
  for (let i = 0; i < n; i++) if (durs[i]! >= p99) slow[hitBy[i] || "none"] = (slow[hitBy[i] || "none"] ?? 0) + 1;
  exGc.sort((a, b) => a - b);
  return {
    round: w.round,
    label: w.label,
    n,
    reqPerSec: n / ((w.toMs - w.fromMs) / 1000),
    p50: q(sorted, 0.5),
    p90: q(sorted, 0.9),
    p99,
    p999: q(sorted, 0.999),
    p99ExGc: q(exGc, 0.99),
    slowOverlapping: slow,
    nvp,
    events: Object.fromEntries([...evHits].filter(([, v]) => v.count > 0 || v.hitReqs > 0)),
    cpuUsPerReq: w.cpuUsPerReq,
    rssMb: w.rssMb,
    load1: w.load1,
  };
}

async function main(): Promise<void> {
  const { dir, seeded } = await seed(keys);
  const scratch = mkdtempSync(join(tmpdir(), "aisa-checktail-"));
  const running: Running[] = [];
  const windows: Window[] = [];
  try {
    try {
      await measureAll(scratch, dir, seeded, running, windows);
    } finally {
      for (const r of running) await stop(r.p);
    }
    report(running, windows);
  } finally {
    rmSync(scratch, { recursive: true, force: true });
  }
}

async function measureAll(scratch: string, dir: string, seeded: SeedResult, running: Running[], windows: Window[]): Promise<void> {
  {
    for (const [i, t] of spec.targets.entries()) {
      const eventsFile = join(scratch, `events-${i}.json`);
      const env: Record<string, string> = { ...(process.env as Record<string, string>), AISA_TAIL_EVENTS: eventsFile, AISA_TAIL_TRACE_GC: "1", ...t.env };
      const preload = `--import ${pathToFileURL(PRELOAD).href}`;
      let p: Spawned;
      if (t.kind === "sidecar") {
        const d = join(scratch, `data-${i}`);
        cpSync(dir, d, { recursive: true });
        // The bin's prologue puts its own --max-semi-space-size=4 first; a value given here comes later and wins.
        env.NODE_OPTIONS = `${preload} ${t.nodeOptions ?? ""} ${process.env.NODE_OPTIONS ?? ""}`.trim();
        env.PATH = `${dirname(process.execPath)}${delimiter}${process.env.PATH ?? ""}`;
        env.AISA_RESERVATION_TTL_MS = "10000";
        const bin = join(resolve(t.root ?? "."), "bin/aisa-authz.js");
        if (t.nodeArgs) {
          env.NODE_OPTIONS = `--max-semi-space-size=4 ${env.NODE_OPTIONS}`;
          env.MALLOC_ARENA_MAX = "2";
        }
        const [cmd, pre] = t.nodeArgs ? [process.execPath, [...t.nodeArgs, bin]] : [bin, []];
        p = spawnTracked(cmd, [...pre, "serve", "--data", d, "--listen", "127.0.0.1:0", "--envoy-listen", "127.0.0.1:0", "--http-listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0", "--metrics-listen", ""], { cwd: resolve(t.root ?? "."), env });
      } else {
        env.NODE_OPTIONS = `${preload} ${t.nodeOptions ?? ""}`.trim();
        p = spawnTracked(process.execPath, ["--import", "tsx", join(HERE, "bench/servers.ts"), t.kind], { cwd: HERE, env });
      }
      const { line } = await waitReady(p, 300_000);
      const address = (t.kind === "sidecar" ? line.envoyAddress : line.address) as string;
      running.push({ t, p, address, eventsFile });
      log(`${t.label}: pid ${p.pid} on ${address}`);
    }
    const shotOf = (r: Running): Shot => {
      const message = encodeEnvoyCheck(envoyCheckRequest({ secret: seeded.allow[0]!.secret }));
      const frameFile = join(scratch, `${r.t.label}.frame`);
      const messageFile = join(scratch, `${r.t.label}.bin`);
      writeFileSync(frameFile, grpcFrame(message));
      writeFileSync(messageFile, message);
      return { address: r.address, method: ENVOY_CHECK_PATH, frameFile, messageFile };
    };
    const shots = new Map(running.map((r) => [r.t.label, shotOf(r)]));
    for (const r of running) await runLoad("h2load", [shots.get(r.t.label)!], { conns: 1, streams: 16, durationS: warmupS, warmupS: 0, tmpDir: scratch });
    for (let round = 0; round < rounds; round++) {
      for (let k = 0; k < running.length; k++) {
        const r = running[(k + round) % running.length]!;
        const s = shots.get(r.t.label)!;
        const logFile = join(scratch, `h2load-${round}-${r.t.label}.log`);
        const c0 = cpuSecondsOf(r.p.pid)!;
        const from = Date.now();
        const h = spawnTracked("h2load", ["-D", `${durationS}s`, "-c", "1", "-m", "1", "-t", "1", "-d", s.frameFile, "-H", "content-type: application/grpc", "-H", "te: trailers", "-H", "grpc-timeout: 250m", "--log-file", logFile, `http://${s.address}${s.method}`]);
        const code = await waitExit(h, durationS * 1000 + 30_000);
        const to = Date.now();
        if (code !== 0) throw new Error(`h2load exited ${code}`);
        const reqs = readLog(logFile);
        rmSync(logFile);
        const n = reqs.length / 2;
        windows.push({ round, label: r.t.label, fromMs: from, toMs: to, reqs, load1: loadavg()[0]!, cpuUsPerReq: ((cpuSecondsOf(r.p.pid)! - c0) * 1e6) / Math.max(1, n), rssMb: memoryOf(r.p.pid)?.rssMb });
        const sorted = Float64Array.from({ length: n }, (_, i) => reqs[2 * i + 1]!).sort();
        log(`r${round} ${r.t.label.padEnd(14)} ${(n / durationS).toFixed(0)} req/s p50 ${q(sorted, 0.5).toFixed(3)} p99 ${q(sorted, 0.99).toFixed(3)} p99.9 ${q(sorted, 0.999).toFixed(3)} ms  load ${loadavg()[0]!.toFixed(2)}`);
      }
    }
  }
}

function report(running: Running[], windows: Window[]): void {
  const out: Record<string, unknown>[] = [];
  const perTarget: Record<string, unknown> = {};
  for (const r of running) {
    const ev = existsSync(r.eventsFile) ? (JSON.parse(readFileSync(r.eventsFile, "utf8")) as { origin: number; events: Ev[]; heap: unknown; spaces: unknown }) : { origin: NaN, events: [], heap: null, spaces: null };
    const reasons: Record<string, number> = {};
    for (const l of r.p.stdout) {
      const m = /ms: (Mark-Compact|Scavenge|Minor Mark-Sweep)[^]*?(?:ms\)|current mu = [\d.]+\)) (.+)$/.exec(l);
      if (m) reasons[`${m[1]}: ${m[2]!.trim()}`] = (reasons[`${m[1]}: ${m[2]!.trim()}`] ?? 0) + 1;
    }
    perTarget[r.t.label] = { heapAtExit: ev.heap, spaces: ev.spaces, gcReasonsWholeRun: reasons, markCompactLines: r.p.stdout.filter((l) => l.includes("Mark-Compact")).slice(-40) };
    for (const w of windows.filter((x) => x.label === r.t.label)) {
      const a = analyse(w, ev.events, nvpIn(r.p.stdout, ev.origin, w.fromMs, w.toMs, w.reqs.length / 2));
      out.push(a);
      log(`r${a.round} ${String(a.label).padEnd(14)} p99 ${(a.p99 as number).toFixed(3)} ex-GC ${(a.p99ExGc as number).toFixed(3)} slow: ${JSON.stringify(a.slowOverlapping)} events: ${Object.entries(a.events as Record<string, { count: number; totalMs: number; maxMs: number; hitReqs: number }>).map(([k, v]) => `${k} ${v.count}× ${v.totalMs.toFixed(1)} ms max ${v.maxMs.toFixed(2)} hit ${v.hitReqs}`).join("; ")}${a.nvp ? ` nvp ${JSON.stringify(a.nvp)}` : ""}`);
    }
  }
  process.stdout.write(JSON.stringify({ spec, perTarget, windows: out }, null, 1) + "\n");
}

main().catch((err) => {
  process.stderr.write(`checkTail failed: ${(err as Error).stack ?? err}\n`);
  killAllTracked();
  process.exit(1);
});
