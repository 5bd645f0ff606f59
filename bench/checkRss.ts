// RSS of two or more builds (or node flag sets) under the Envoy Check load, in one run, and where
// it is: V8's heap (its spaces' committed pages) or native memory (glibc's arenas, node:http2's
// nghttp2 sessions, LevelDB), from a probe loaded into each sidecar (bench/lib/memProbe.mjs:
// process.memoryUsage() and V8's heap spaces every 100 ms) beside /proc/PID/status.
// Rounds interleave the targets in rotated order. Per target and round: h2load at saturation
// (`procs` processes × 1 connection × `streams` streams) for durationS, RSS sampled every 100 ms
// (its peak, and the probe's figures at that peak), then settleS with no load and RSS again
// ("after"), then after a full GC the probe runs ("afterGc"). RSS only grows back slowly, so each round's figures include the rounds before.
// With consumeS, each round's window is followed by durable ConsumeBatch load on the data port
// (bench/consumeLoad.ts, its own process: the lean client, 32 per call, 4 calls in flight, closed
// loop) for that many seconds, sampled the same way: the sidecar's memory under both of its loads,
// round after round (does it settle, or grow?).
// Usage: node --import tsx bench/checkRss.ts '{"targets":[{"label":"base","root":"/work/wt/base"},
//   {"label":"head","root":"."},{"label":"head+pscav","root":".","nodeArgs":["--min-semi-space-size=4","--parallel-scavenge"]}],"keys":10000}'
//   A target without nodeArgs runs ROOT/bin/aisa-authz.js as a program (its shell prologue picks
//   node's flags); with nodeArgs, node runs the bin with exactly those flags and the prologue's
//   environment (MALLOC_ARENA_MAX=2, NODE_OPTIONS=--max-semi-space-size=4).
//   (optional: rounds 3, durationS 6, settleS 2, procs 2, streams 16, consumeS 0, malloc false)
// Prints progress on stderr and one JSON object on stdout.
import { execFileSync } from "node:child_process";
import { cpSync, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { loadavg, tmpdir } from "node:os";
import { delimiter, dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { gcIn } from "./lib/gc.js";
import { runLoad, type Shot } from "./lib/loadgen.js";
import { cpuSecondsOf, killAllTracked, memoryOf, spawnTracked, stop, waitExit, waitReady, type Spawned } from "./lib/proc.js";
import { median } from "./lib/stats.js";
import { BENCH_MODEL, ENVOY_CHECK_PATH, encodeEnvoyCheck, envoyCheckRequest, grpcFrame } from "./lib/payloads.js";
import type { ConsumeLoadResult, ConsumeLoadSpec } from "./consumeLoad.js";
import { cachedSeed } from "./lib/seedCache.js";

const PROBE = fileURLToPath(new URL("./lib/memProbe.mjs", import.meta.url));
const HERE = fileURLToPath(new URL("..", import.meta.url));
interface Target {
  label: string;
  root: string;
  nodeArgs?: string[];
  /** Added to the sidecar's environment (e.g. a glibc malloc setting; MALLOC_ARENA_MAX here overrides the prologue's 2). */
  env?: Record<string, string>;
}
interface Spec {
  targets: Target[];
  keys?: number;
  rounds?: number;
  durationS?: number;
  settleS?: number;
  procs?: number;
  streams?: number;
  /** Seconds of ConsumeBatch load after each round's Check window (0: none). */
  consumeS?: number;
  /** At the end, per sidecar: glibc's malloc_stats() (system vs in-use bytes, all arenas) and RSS before and after malloc_trim(0), both called in with gdb. */
  malloc?: boolean;
}
const spec = JSON.parse(process.argv[2] ?? "{}") as Spec;
if (!Array.isArray(spec.targets) || spec.targets.length === 0) throw new Error("checkRss: give targets: [{label, root, nodeArgs?}]");
for (const [i, t] of spec.targets.entries()) {
  if (typeof t.label !== "string" || t.label === "") throw new Error(`checkRss: targets[${i}].label: a non-empty string`);
  if (!existsSync(join(resolve(t.root ?? ""), "bin/aisa-authz.js"))) throw new Error(`checkRss: targets[${i}].root: no bin/aisa-authz.js under ${JSON.stringify(t.root)}`);
  if (t.nodeArgs !== undefined && !(Array.isArray(t.nodeArgs) && t.nodeArgs.every((a) => typeof a === "string"))) throw new Error(`checkRss: targets[${i}].nodeArgs: an array of strings`);
  if (t.env !== undefined && !(t.env && typeof t.env === "object" && Object.values(t.env).every((v) => typeof v === "string"))) throw new Error(`checkRss: targets[${i}].env: an object of strings`);
}
const keys = spec.keys ?? 10_000;
const rounds = spec.rounds ?? 3;
const durationS = spec.durationS ?? 6;
const settleS = spec.settleS ?? 2;
const procs = spec.procs ?? 2;
const streams = spec.streams ?? 16;
const consumeS = spec.consumeS ?? 0;
if (!(Number.isInteger(consumeS) && consumeS >= 0)) throw new Error("checkRss: consumeS: whole seconds, ≥ 0");
const log = (s: string) => process.stderr.write(`[${new Date().toISOString().slice(11, 19)}] ${s}\n`);

interface Probe {
  seq: number;
  /** Full GCs the bench asked for so far. */
  gcs: number;
  rssMb: number;
  heapTotalMb: number;
  heapUsedMb: number;
  externalMb: number;
  arrayBuffersMb: number;
  spaces: Record<string, { sizeMb: number; physicalMb: number; usedMb: number }>;
}
interface Server {
  t: Target;
  p: Spawned;
  address: string;
  /** The data port (aisa.v1: ConsumeBatch). */
  dataAddress: string;
  probeFile: string;
  /** Spawn → the ready line. */
  readyMs: number;
}
/** One moment's memory: /proc (RSS, anon, file) and the probe (V8's heap, node's counters). */
interface Mem {
  rssMb: number;
  anonMb: number;
  fileMb: number;
  /** Pages V8's heap spaces hold (physical_space_size summed). */
  v8Mb: number;
  newSpaceMb: number;
  oldSpaceMb: number;
  heapUsedMb: number;
  externalMb: number;
  arrayBuffersMb: number;
  /** Anonymous RSS outside V8's heap: glibc's arenas (nghttp2, LevelDB, Buffers' backing stores), thread stacks, code. */
  nativeAnonMb: number;
}

function probeOf(s: Server): Probe | null {
  try {
    return JSON.parse(readFileSync(s.probeFile, "utf8")) as Probe;
  } catch {
    return null;
  }
}

function memNow(s: Server): Mem | null {
  const m = memoryOf(s.p.pid);
  const pr = probeOf(s);
  if (!m || !pr) return null;
  const v8Mb = Object.values(pr.spaces).reduce((a, x) => a + x.physicalMb, 0);
  return {
    rssMb: m.rssMb,
    anonMb: m.anonMb,
    fileMb: m.fileMb,
    v8Mb,
    newSpaceMb: pr.spaces.new_space?.physicalMb ?? NaN,
    oldSpaceMb: pr.spaces.old_space?.physicalMb ?? NaN,
    heapUsedMb: pr.heapUsedMb,
    externalMb: pr.externalMb,
    arrayBuffersMb: pr.arrayBuffersMb,
    nativeAnonMb: m.anonMb - v8Mb,
  };
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function startSidecar(t: Target, dataDir: string, scratch: string, i: number): Promise<Server> {
  const root = resolve(t.root);
  const bin = join(root, "bin/aisa-authz.js");
  const probeFile = join(scratch, `mem-${i}.json`);
  const args = ["serve", "--data", dataDir, "--listen", "127.0.0.1:0", "--envoy-listen", "127.0.0.1:0", "--http-listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0", "--metrics-listen", ""];
  const env: NodeJS.ProcessEnv = { ...process.env, PATH: `${dirname(process.execPath)}${delimiter}${process.env.PATH ?? ""}`, AISA_RESERVATION_TTL_MS: "10000", AISA_TRACE_GC: "1", AISA_MEMPROBE_FILE: probeFile };
  let p: Spawned;
  if (t.nodeArgs) {
    env.MALLOC_ARENA_MAX = "2";
    env.NODE_OPTIONS = `--max-semi-space-size=4 --import ${PROBE}`;
    p = spawnTracked(process.execPath, [...t.nodeArgs, bin, ...args], { cwd: root, env: { ...env, ...t.env } });
  } else {
    env.NODE_OPTIONS = `--import ${PROBE}`; // the prologue puts its own flags before it
    p = spawnTracked(bin, args, { cwd: root, env: { ...env, ...t.env } });
  }
  const { line, ms } = await waitReady(p, 300_000);
  if (line.build !== "dist") throw new Error(`${t.label}: not running from dist/`);
  log(`${t.label}: ready in ${ms.toFixed(0)} ms, VmHWM ${memoryOf(p.pid)?.hwmMb.toFixed(1)} MB`);
  return { t, p, address: line.envoyAddress, dataAddress: line.dataAddress, probeFile, readyMs: ms };
}

interface Run {
  round: number;
  target: string;
  reqPerSec: number;
  cpuUsPerReq: number;
  /** With consumeS: the ConsumeBatch window's Consumes/s. */
  consumesPerSec?: number;
  majorGcs: number;
  scavenges: number;
  load1: number;
  /** Highest RSS sampled in the window, and the memory at that sample. */
  peak: Mem;
  /** At the end of the window. */
  end: Mem;
  /** settleS after the window, no load. */
  after: Mem;
  /** Then right after a full GC (the probe's), no load. */
  afterGc: Mem;
}

/** Asks the probe for a full GC and waits until it has run (and 200 ms more for the sweep). */
async function fullGc(s: Server): Promise<Mem> {
  const before = probeOf(s)?.gcs ?? 0;
  writeFileSync(`${s.probeFile}.gc`, "");
  for (let i = 0; i < 50 && (probeOf(s)?.gcs ?? 0) === before; i++) await sleep(100);
  await sleep(300);
  return memNow(s)!;
}

/** consumeS of ConsumeBatch load on the sidecar's data port (bench/consumeLoad.ts, its own process); Consumes/s. */
async function consumeWindow(s: Server, keyIds: string[]): Promise<number> {
  const ls: ConsumeLoadSpec = { address: s.dataAddress, keyIds, model: BENCH_MODEL, concurrency: 4, warmupMs: 0, durationMs: consumeS * 1000, client: "lean", batch: 32 };
  const p = spawnTracked(process.execPath, ["--import", "tsx", join(HERE, "bench/consumeLoad.ts"), JSON.stringify(ls)], { cwd: HERE });
  const code = await waitExit(p, consumeS * 1000 + 90_000);
  const out = p.stdout.filter((l) => l.startsWith("{")).pop();
  if (code !== 0 || !out) throw new Error(`${s.t.label}: consumeLoad exited ${code}: ${p.stderr.join("").slice(-1500)}`);
  const r = JSON.parse(out) as ConsumeLoadResult;
  if (r.errors > 0) throw new Error(`${s.t.label}: ${r.errors} Consumes failed (${r.firstError})`);
  return r.throughput;
}

async function measure(s: Server, shots: Shot[], round: number, scratch: string, consumeKeys: string[]): Promise<Run> {
  let peak: Mem | null = null;
  const poll = setInterval(() => {
    const m = memNow(s);
    if (m && (!peak || m.rssMb > peak.rssMb)) peak = m;
  }, 100);
  const gc0 = s.p.stdout.length;
  const cpu0 = cpuSecondsOf(s.p.pid) ?? NaN;
  const r = await runLoad("h2load", shots, { conns: 1, streams, durationS, warmupS: 0, tmpDir: scratch });
  const cpu1 = cpuSecondsOf(s.p.pid) ?? NaN;
  const gc = gcIn(s.p.stdout, gc0, s.p.stdout.length);
  if (r.done === 0) throw new Error(`${s.t.label}: nothing done ${JSON.stringify(r)}`);
  const consumesPerSec = consumeS > 0 ? await consumeWindow(s, consumeKeys) : undefined;
  clearInterval(poll);
  const end = memNow(s)!;
  await sleep(settleS * 1000);
  const after = memNow(s)!;
  const afterGc = await fullGc(s);
  const run: Run = { round, target: s.t.label, reqPerSec: r.reqPerSec, cpuUsPerReq: ((cpu1 - cpu0) * 1e6) / Math.max(1, r.done), ...(consumesPerSec !== undefined ? { consumesPerSec } : {}), majorGcs: gc.count - gc.scavenges, scavenges: gc.scavenges, load1: loadavg()[0]!, peak: peak ?? end, end, after, afterGc };
  const f = (m: Mem) => `${m.rssMb.toFixed(0)} (v8 ${m.v8Mb.toFixed(0)}: new ${m.newSpaceMb.toFixed(0)} old ${m.oldSpaceMb.toFixed(0)} used ${m.heapUsedMb.toFixed(0)}; native anon ${m.nativeAnonMb.toFixed(0)}, file ${m.fileMb.toFixed(0)}, ext ${m.externalMb.toFixed(1)})`;
  log(`r${round} ${s.t.label.padEnd(14)} ${r.reqPerSec.toFixed(0).padStart(6)} req/s cpu ${run.cpuUsPerReq.toFixed(1)} µs${consumesPerSec !== undefined ? `, then ${consumesPerSec.toFixed(0)} Consumes/s` : ""}  GC ${run.scavenges}+${run.majorGcs} major  peak ${f(run.peak)}  after ${f(after)}  after full GC ${f(afterGc)}  load ${run.load1.toFixed(2)}`);
  return run;
}

/**
 * glibc's own account of the sidecar's malloc heap (malloc_stats() prints it on the process's
 * stderr; gdb calls it), then malloc_trim(0): what RSS drops by is memory glibc held free.
 */
async function mallocOf(s: Server): Promise<{ systemMb: number; inUseMb: number; arenas: { systemMb: number; inUseMb: number }[]; rssMb: number; rssAfterTrimMb: number } | null> {
  const from = s.p.stderr.length;
  const rssMb = memoryOf(s.p.pid)?.rssMb ?? NaN;
  try {
    execFileSync("gdb", ["-p", String(s.p.pid), "-batch", "-ex", "call (void)malloc_stats()", "-ex", "call (int)malloc_trim(0)"], { stdio: "ignore", timeout: 60_000 });
  } catch (err) {
    log(`${s.t.label}: gdb failed (${(err as Error).message.split("\n")[0]})`);
    return null;
  }
  await sleep(300);
  const text = s.p.stderr.slice(from).join("");
  const total = /Total \(incl\. mmap\):\s*system bytes\s*=\s*(\d+)\s*in use bytes\s*=\s*(\d+)/.exec(text);
  if (!total) return null;
  const arenas = [...text.matchAll(/Arena \d+:\s*system bytes\s*=\s*(\d+)\s*in use bytes\s*=\s*(\d+)/g)].map((m) => ({ systemMb: +(Number(m[1]) / 2 ** 20).toFixed(1), inUseMb: +(Number(m[2]) / 2 ** 20).toFixed(1) }));
  return { systemMb: Number(total[1]) / 2 ** 20, inUseMb: Number(total[2]) / 2 ** 20, arenas, rssMb, rssAfterTrimMb: memoryOf(s.p.pid)?.rssMb ?? NaN };
}

async function main(): Promise<void> {
  const seed = await cachedSeed("checkab", { keys, allow: procs, consume: consumeS > 0 ? 64 : 0, ipRestricted: 0, quotaEmpty: 0 });
  const consumeKeys = seed.seeded.consume.map((k) => k.id);
  const scratch = mkdtempSync(join(tmpdir(), "aisa-checkrss-"));
  const servers: Server[] = [];
  try {
    for (const [i, t] of spec.targets.entries()) {
      const d = join(scratch, `data-${i}`);
      cpSync(seed.dir, d, { recursive: true });
      servers.push(await startSidecar(t, d, scratch, i));
    }
    await sleep(1500);
    const idle = new Map(servers.map((s) => [s.t.label, memNow(s)]));
    for (const s of servers) log(`${s.t.label}: idle after ready ${idle.get(s.t.label)?.rssMb.toFixed(1)} MB (v8 ${idle.get(s.t.label)?.v8Mb.toFixed(1)}, native anon ${idle.get(s.t.label)?.nativeAnonMb.toFixed(1)})`);
    const shotsOf = (s: Server, i: number): Shot[] =>
      seed.seeded.allow.slice(0, procs).map((k, j) => {
        const message = encodeEnvoyCheck(envoyCheckRequest({ secret: k.secret }));
        const frameFile = join(scratch, `${i}-${j}.frame`);
        const messageFile = join(scratch, `${i}-${j}.bin`);
        writeFileSync(frameFile, grpcFrame(message));
        writeFileSync(messageFile, message);
        return { address: s.address, method: ENVOY_CHECK_PATH, frameFile, messageFile };
      });
    const shots = servers.map((s, i) => shotsOf(s, i));
    const runs: Run[] = [];
    for (let round = 0; round < rounds; round++) {
      for (let k = 0; k < servers.length; k++) {
        const i = (k + round) % servers.length;
        runs.push(await measure(servers[i]!, shots[i]!, round, scratch, consumeKeys));
      }
    }
    const malloc = new Map<string, Awaited<ReturnType<typeof mallocOf>>>();
    if (spec.malloc) {
      for (const s of servers) {
        const m = await mallocOf(s);
        malloc.set(s.t.label, m);
        if (m) log(`${s.t.label}: malloc system ${m.systemMb.toFixed(1)} MB, in use ${m.inUseMb.toFixed(1)} MB (arenas ${m.arenas.map((a) => `${a.systemMb}/${a.inUseMb}`).join(", ")}); RSS ${m.rssMb.toFixed(1)} → ${m.rssAfterTrimMb.toFixed(1)} MB after malloc_trim(0)`);
      }
    }
    // Per-round ratios of every target to the first, then their medians.
    const first = spec.targets[0]!.label;
    const summary: Record<string, unknown> = {};
    for (const t of spec.targets) {
      const mine = runs.filter((r) => r.target === t.label);
      const per = (f: (r: Run) => number) => mine.map((r) => f(r) - f(runs.find((x) => x.round === r.round && x.target === first)!));
      const med = (f: (r: Run) => number) => median(mine.map(f));
      summary[t.label] = {
        readyMs: servers.find((x) => x.t.label === t.label)?.readyMs,
        idleRssMb: idle.get(t.label)?.rssMb,
        malloc: malloc.get(t.label),
        peakRssMb: med((r) => r.peak.rssMb),
        afterRssMb: med((r) => r.after.rssMb),
        afterGcRssMb: med((r) => r.afterGc.rssMb),
        afterGcNativeAnonMb: med((r) => r.afterGc.nativeAnonMb),
        peakV8Mb: med((r) => r.peak.v8Mb),
        peakNativeAnonMb: med((r) => r.peak.nativeAnonMb),
        reqPerSec: med((r) => r.reqPerSec),
        ...(consumeS > 0 ? { consumesPerSec: med((r) => r.consumesPerSec ?? NaN) } : {}),
        // Round by round (the rounds before included): does it settle, or grow?
        afterGcRssMbPerRound: mine.map((r) => +r.afterGc.rssMb.toFixed(1)),
        afterGcNativeAnonMbPerRound: mine.map((r) => +r.afterGc.nativeAnonMb.toFixed(1)),
        [`peak − ${first} per round (MB)`]: per((r) => r.peak.rssMb).map((x) => +x.toFixed(1)),
        [`after − ${first} per round (MB)`]: per((r) => r.after.rssMb).map((x) => +x.toFixed(1)),
        [`after full GC − ${first} per round (MB)`]: per((r) => r.afterGc.rssMb).map((x) => +x.toFixed(1)),
        [`after full GC native anon − ${first} per round (MB)`]: per((r) => r.afterGc.nativeAnonMb).map((x) => +x.toFixed(1)),
        [`peak v8 − ${first} per round (MB)`]: per((r) => r.peak.v8Mb).map((x) => +x.toFixed(1)),
        [`peak native anon − ${first} per round (MB)`]: per((r) => r.peak.nativeAnonMb).map((x) => +x.toFixed(1)),
        [`req/s ÷ ${first} per round`]: mine.map((r) => +(r.reqPerSec / runs.find((x) => x.round === r.round && x.target === first)!.reqPerSec).toFixed(3)),
      };
    }
    process.stdout.write(JSON.stringify({ spec, summary, runs }, null, 1) + "\n");
  } finally {
    for (const s of servers) await stop(s.p);
    rmSync(scratch, { recursive: true, force: true });
  }
}

main().catch((err) => {
  process.stderr.write(`checkRss failed: ${(err as Error).stack ?? err}\n`);
  killAllTracked();
  process.exit(1);
});
