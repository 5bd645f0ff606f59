// Durable Consume end to end, two (or more) builds side by side with the no-op server, in one
// run (issue 18 item 3). Each build's sidecar (ROOT/bin/aisa-authz.js, from ROOT/dist) serves its
// own copy of one seeded data dir; the grpc-js no-op (bench/servers.ts noop: fixed replies) runs
// beside them as the floor. Each round runs bench/consumeLoad.ts (its own process) against every
// target in rotated order: Consumes/s, p50/p99, server CPU µs per Consume (all threads and the
// main thread, /proc, over the client's measured window), GC pauses (AISA_TRACE_GC), load average.
// With "rate", every round also runs each target OPEN-loop (consumeLoad.ts with a rate, the lean
// client): `openBatch`-item calls (32) on a fixed schedule, at most `maxInFlight` (4) in flight,
// latency timed from each call's due time; p99 against the 5 ms goal, beside the no-op's at the
// same rate. "rate": calls/s, or "noop/2" (half the no-op's closed-loop saturation with the lean
// client at the same shape, measured in this run) or "sidecar/2" (half the last build's).
// Usage: node --import tsx bench/consumeAB.ts '{"roots":["/tmp/before","."],"keys":10000}'
//   (optional: labels ["base","writer","head"], envs [{"AISA_LEVEL_WRITE_BUFFER_MB":"4"}, …] (one per root: that
//    sidecar's extra environment, so one build can be compared with itself under two settings), rounds 3, durationS 5, warmupS 1, batch 32, inFlight 4, clients ["http2"],
//    rate N|"noop/2"|"sidecar/2", openBatch 32, maxInFlight 4, closed false (open-loop runs only),
//    ids "counter"|"random" (the request ids every client sends: consumeLoad.ts),
//    profileDir DIR — each sidecar under --cpu-prof, one profile per build in DIR/<label>/)
// Prints progress on stderr and one JSON object on stdout.
import { cpSync, mkdirSync, mkdtempSync, rmSync } from "node:fs";
import { loadavg, tmpdir } from "node:os";
import { delimiter, dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import type { ConsumeClient, ConsumeLoadResult, ConsumeLoadSpec } from "./consumeLoad.js";
import { gcIn } from "./lib/gc.js";
import { BENCH_MODEL } from "./lib/payloads.js";
import { cpuSecondsOf, killAllTracked, memoryOf, spawnTracked, stop, waitExit, waitReady, type Spawned } from "./lib/proc.js";
import type { GcPauses } from "./lib/results.js";
import { median } from "./lib/stats.js";
import type { SeedResult } from "./seed.js";
import { cachedSeed } from "./lib/seedCache.js";

const HERE = fileURLToPath(new URL("..", import.meta.url));
interface Spec {
  roots: string[];
  /** One per root; default before/after for two roots, else build0, build1… */
  labels?: string[];
  /** One per root (or fewer): extra environment for that root's sidecar. */
  envs?: Record<string, string>[];
  keys?: number;
  rounds?: number;
  durationS?: number;
  warmupS?: number;
  /** Consumes per call (1 = unary Consume). */
  batch?: number;
  /** Calls in flight. */
  inFlight?: number;
  clients?: ConsumeClient[];
  profileDir?: string;
  /** Open-loop runs: calls/s, or half a closed-loop saturation measured in this run. */
  rate?: number | "noop/2" | "sidecar/2";
  /** Consumes per open-loop call. */
  openBatch?: number;
  /** Open-loop calls in flight at most. */
  maxInFlight?: number;
  /** false: the open-loop runs only. */
  closed?: boolean;
  /** The request ids the load sends (consumeLoad.ts): "counter" (default) or "random". */
  ids?: "counter" | "random";
}
/** The goal (issue 18 item 3): ConsumeBatch p99 ≤ 5 ms end to end. */
const GOAL_P99_MS = 5;
const spec = JSON.parse(process.argv[2] ?? "{}") as Spec;
const keys = spec.keys ?? 10_000;
const rounds = spec.rounds ?? 3;
const durationS = spec.durationS ?? 5;
const warmupS = spec.warmupS ?? 1;
const batch = spec.batch ?? 32;
const inFlight = spec.inFlight ?? 4;
const clients = spec.clients ?? ["http2"];
const openBatch = spec.openBatch ?? 32;
const maxInFlight = spec.maxInFlight ?? 4;
const runClosed = spec.closed !== false;
if (spec.rate !== undefined && !(typeof spec.rate === "number" ? spec.rate > 0 && Number.isFinite(spec.rate) : spec.rate === "noop/2" || spec.rate === "sidecar/2")) {
  throw new Error(`rate: must be calls per second (> 0), "noop/2" or "sidecar/2" (got ${JSON.stringify(spec.rate)})`);
}
for (const [f, v] of [["openBatch", openBatch], ["maxInFlight", maxInFlight], ["batch", batch], ["inFlight", inFlight]] as const) {
  if (!Number.isInteger(v) || v < 1) throw new Error(`${f}: must be an integer ≥ 1 (got ${JSON.stringify(v)})`);
}
const log = (s: string) => process.stderr.write(`[${new Date().toISOString().slice(11, 19)}] ${s}\n`);

interface Server {
  name: string;
  p: Spawned;
  address: string;
  noop: boolean;
}

function seed(n: number): Promise<{ dir: string; seeded: SeedResult }> {
  return cachedSeed("consumeab", { keys: n, allow: 1, consume: 64, ipRestricted: 0, quotaEmpty: 0 });
}

/** The bin as a program (its prologue's memory settings); with profileDir, node --cpu-prof runs it with the prologue's settings given. */
async function startSidecar(root: string, name: string, dataDir: string, extraEnv: Record<string, string> = {}): Promise<Server> {
  const bin = join(resolve(root), "bin/aisa-authz.js");
  const profDir = spec.profileDir ? resolve(spec.profileDir, name) : null;
  if (profDir) mkdirSync(profDir, { recursive: true });
  const [cmd, pre] = profDir ? [process.execPath, ["--max-semi-space-size=4", "--cpu-prof", `--cpu-prof-dir=${profDir}`, bin]] : [bin, []];
  const p = spawnTracked(cmd, [...pre, "serve", "--data", dataDir, "--listen", "127.0.0.1:0", "--envoy-listen", "127.0.0.1:0", "--http-listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0", "--metrics-listen", ""], {
    cwd: resolve(root),
    env: { ...process.env, PATH: `${dirname(process.execPath)}${delimiter}${process.env.PATH ?? ""}`, ...(profDir ? { MALLOC_ARENA_MAX: "2" } : {}), AISA_RESERVATION_TTL_MS: "10000", AISA_TRACE_GC: "1", ...extraEnv },
  });
  const { line } = await waitReady(p, 300_000);
  if (line.build !== "dist") throw new Error(`${name}: not running from dist/`);
  return { name, p, address: line.dataAddress, noop: false };
}

interface Run {
  round: number;
  target: string;
  client: string;
  /** "closed" (saturation) or "open" (the rate below). */
  loop: "closed" | "open";
  rate?: number;
  capped?: number;
  dropped?: number;
  meanInFlight?: number;
  clientCpuUsPerCall: number;
  clientUserUsPerCall: number;
  throughput: number;
  p50: number;
  p99: number;
  p999: number;
  cpuUsPerConsume: number;
  mainCpuUsPerConsume: number;
  gc?: GcPauses;
  load1: number;
  /** The sidecar's RSS (MB) right after this run (null for the no-op, or when /proc has no answer). */
  rssMb?: number;
}

interface Shape {
  batch: number;
  concurrency: number;
  rate?: number;
}

async function measure(s: Server, client: ConsumeClient, keyIds: string[], round: number, warm = false, shape: Shape = { batch, concurrency: inFlight }): Promise<Run> {
  const ls: ConsumeLoadSpec = { address: s.address, keyIds, model: BENCH_MODEL, concurrency: shape.concurrency, warmupMs: warmupS * 1000, durationMs: (warm ? 4 : durationS) * 1000, noop: s.noop, client, batch: shape.batch, ...(shape.rate ? { rate: shape.rate } : {}), ...(spec.ids ? { ids: spec.ids } : {}) };
  const p = spawnTracked(process.execPath, ["--import", "tsx", join(HERE, "bench/consumeLoad.ts"), JSON.stringify(ls)], { cwd: HERE });
  // The client prints measure-start / measure-end: sample the server there.
  const at: { cpu: number; main: number; gc: number }[] = [];
  let seen = 0;
  const poll = setInterval(() => {
    for (; seen < p.stdout.length; seen++) {
      if (/"measure-(start|end)"/.test(p.stdout[seen]!)) at.push({ cpu: cpuSecondsOf(s.p.pid) ?? NaN, main: cpuSecondsOf(s.p.pid, true) ?? NaN, gc: s.p.stdout.length });
    }
  }, 5);
  const code = await waitExit(p, (warmupS + durationS) * 1000 + 90_000);
  clearInterval(poll);
  if (code !== 0) throw new Error(`consumeLoad → ${s.name} exited ${code}: ${p.stderr.join("").slice(-2000)}`);
  const r = JSON.parse(p.stdout[p.stdout.length - 1]!) as ConsumeLoadResult;
  if (r.errors > 0) throw new Error(`${s.name}: ${r.errors} errors: ${r.firstError}`);
  const [a, b] = [at[0]!, at[1]!];
  const n = Math.max(1, r.calls);
  const run: Run = {
    round,
    target: s.name,
    client,
    loop: shape.rate ? "open" : "closed",
    ...(r.openLoop ? { rate: r.openLoop.rate, capped: r.openLoop.capped, dropped: r.openLoop.dropped, meanInFlight: r.openLoop.meanInFlight } : {}),
    clientCpuUsPerCall: r.clientCpuUsPerCall,
    clientUserUsPerCall: r.clientUserUsPerCall,
    throughput: r.throughput,
    p50: r.latencyMs.p50,
    p99: r.latencyMs.p99,
    p999: r.latencyMs.p999,
    cpuUsPerConsume: ((b.cpu - a.cpu) * 1e6) / n,
    mainCpuUsPerConsume: ((b.main - a.main) * 1e6) / n,
    load1: loadavg()[0]!,
    ...(s.noop ? {} : { rssMb: memoryOf(s.p.pid)?.rssMb ?? NaN }),
  };
  if (!s.noop) run.gc = gcIn(s.p.stdout, a.gc, b.gc);
  const gc = run.gc ? ` GC ${run.gc.count} (${run.gc.count - run.gc.scavenges} major, max ${run.gc.maxMs.toFixed(2)} ms)` : "";
  const open = r.openLoop ? ` open ${r.openLoop.rate.toFixed(0)}/s ${shape.batch}×≤${shape.concurrency}: capped ${r.openLoop.capped} dropped ${r.openLoop.dropped} mean in flight ${r.openLoop.meanInFlight.toFixed(1)};` : ` ${shape.batch}×${shape.concurrency}`;
  if (!warm) log(`r${round} ${client.padEnd(7)} ${s.name.padEnd(8)}${open} ${r.throughput.toFixed(0).padStart(6)} Consumes/s p50 ${run.p50.toFixed(2)} p99 ${run.p99.toFixed(2)} p99.9 ${run.p999.toFixed(2)} ms  cpu ${run.cpuUsPerConsume.toFixed(1)} µs/Consume (main ${run.mainCpuUsPerConsume.toFixed(1)}) client ${run.clientCpuUsPerCall.toFixed(1)} µs/call (user ${run.clientUserUsPerCall.toFixed(1)})${gc}${run.rssMb !== undefined ? ` RSS ${run.rssMb.toFixed(0)} MB` : ""}  load ${run.load1.toFixed(2)}`);
  return run;
}

async function main(): Promise<void> {
  if (!spec.roots?.length) throw new Error("consumeAB: give roots");
  const labels = spec.labels ?? spec.roots.map((_, i) => (spec.roots.length === 2 ? (i === 0 ? "before" : "after") : `build${i}`));
  const { dir, seeded } = await seed(keys);
  const keyIds = seeded.consume.map((k) => k.id);
  const scratch = mkdtempSync(join(tmpdir(), "aisa-consumeab-"));
  const servers: Server[] = [];
  try {
    const noop = spawnTracked(process.execPath, ["--import", "tsx", join(HERE, "bench/servers.ts"), "noop"], { cwd: HERE });
    servers.push({ name: "noop", p: noop, address: (await waitReady(noop, 60_000)).line.address, noop: true });
    for (let i = 0; i < spec.roots.length; i++) {
      const d = join(scratch, `data-${i}`);
      cpSync(dir, d, { recursive: true });
      servers.push(await startSidecar(spec.roots[i]!, labels[i]!, d, spec.envs?.[i]));
      log(`${labels[i]}: ${spec.roots[i]}${spec.envs?.[i] ? ` ${JSON.stringify(spec.envs[i])}` : ""}, ${keys} keys, on ${servers.at(-1)!.address}`);
    }
    // Unmeasured warm-up of every sidecar (JIT, the GC work of loading the keys).
    const openShape: Shape = { batch: openBatch, concurrency: maxInFlight };
    for (const s of servers.filter((x) => !x.noop)) {
      if (runClosed) for (const c of clients) await measure(s, c, keyIds, -1, true);
      if (spec.rate !== undefined) await measure(s, "lean", keyIds, -1, true, openShape);
    }
    // The open loop's rate: given, or half a closed-loop saturation at the same shape, same client, this run.
    let rate = typeof spec.rate === "number" ? spec.rate : NaN;
    let rateFrom: Run | undefined;
    if (typeof spec.rate === "string") {
      // Every build's sidecar gets the same saturation run (so none enters the rounds with more
      // load behind it); the rate is half the no-op's, or half the LAST build's (the head's).
      const sat = spec.rate === "noop/2" ? [servers[0]!] : servers.filter((x) => !x.noop);
      for (const s of sat) rateFrom = await measure(s, "lean", keyIds, -1, false, openShape);
      rate = Math.round(rateFrom!.throughput / openBatch / 2);
      log(`open-loop rate: ${spec.rate} = ${rate} calls/s (${rateFrom!.target} saturated at ${(rateFrom!.throughput / openBatch).toFixed(0)} calls/s, ${openBatch}×${maxInFlight}, lean client, load ${rateFrom!.load1.toFixed(2)})`);
    }
    const runs: Run[] = [];
    for (let round = 0; round < rounds; round++) {
      const order = servers.map((_, i) => servers[(i + round) % servers.length]!);
      if (runClosed) for (const c of clients) for (const s of order) runs.push(await measure(s, c, keyIds, round));
      if (spec.rate !== undefined) for (const s of order) runs.push(await measure(s, "lean", keyIds, round, false, { ...openShape, rate }));
    }
    const summary: Record<string, number | number[] | boolean[] | string> = {};
    const sel = (loop: Run["loop"], c: string) => runs.filter((r) => r.loop === loop && r.client === c);
    const byRound = (loop: Run["loop"], c: string, a: string, b: string, f: (x: Run, y: Run) => number) =>
      [...Array(rounds).keys()].map((round) => {
        const x = runs.find((r) => r.round === round && r.loop === loop && r.client === c && r.target === b);
        const y = runs.find((r) => r.round === round && r.loop === loop && r.client === c && r.target === a);
        return x && y ? f(x, y) : NaN;
      });
    for (const c of runClosed ? clients : []) {
      const per = (t: string, f: (r: Run) => number) => sel("closed", c).filter((r) => r.target === t).map(f);
      for (const t of servers.map((x) => x.name)) {
        summary[`${c} ${t}: p50 ms`] = per(t, (r) => r.p50);
        summary[`${c} ${t}: p99 ms`] = per(t, (r) => r.p99);
        summary[`${c} ${t}: Consumes/s`] = per(t, (r) => Math.round(r.throughput));
        summary[`${c} ${t}: cpu µs/Consume`] = per(t, (r) => r.cpuUsPerConsume);
        summary[`${c} ${t}: client cpu µs/call`] = per(t, (r) => r.clientCpuUsPerCall);
        if (t !== "noop") summary[`${c} ${t}: RSS MB after`] = per(t, (r) => Math.round(r.rssMb ?? NaN));
      }
      // Each build against the first, round by round.
      for (const b of labels.slice(1)) {
        const a = labels[0]!;
        const ratios = (f: (r: Run) => number) => byRound("closed", c, a, b, (x, y) => f(x) / f(y));
        summary[`${c} ${b}/${a} p99`] = ratios((r) => r.p99);
        summary[`${c} ${b}/${a} p50`] = ratios((r) => r.p50);
        summary[`${c} ${b}/${a} Consumes/s`] = ratios((r) => r.throughput);
        summary[`${c} ${b}/${a} cpu/Consume`] = ratios((r) => r.cpuUsPerConsume);
        summary[`${c} ${b}/${a} median p99 ratio`] = median(ratios((r) => r.p99).filter(Number.isFinite));
      }
    }
    if (spec.rate !== undefined) {
      const o = `open ${rate}/s ${openBatch}×≤${maxInFlight}`;
      summary[`${o}: rate`] = `${rate} calls/s = ${rate * openBatch} Consumes/s (${typeof spec.rate === "number" ? "given" : `${spec.rate}: ${rateFrom!.target} saturated at ${(rateFrom!.throughput / openBatch).toFixed(0)} calls/s closed-loop`})`;
      const per = (t: string, f: (r: Run) => number) => sel("open", "lean").filter((r) => r.target === t).map(f);
      for (const t of servers.map((x) => x.name)) {
        summary[`${o} ${t}: p50 ms`] = per(t, (r) => r.p50);
        summary[`${o} ${t}: p99 ms`] = per(t, (r) => r.p99);
        summary[`${o} ${t}: p99.9 ms`] = per(t, (r) => r.p999);
        summary[`${o} ${t}: capped calls`] = per(t, (r) => r.capped ?? NaN);
        summary[`${o} ${t}: dropped calls`] = per(t, (r) => r.dropped ?? NaN);
        summary[`${o} ${t}: mean in flight`] = per(t, (r) => r.meanInFlight ?? NaN);
        summary[`${o} ${t}: cpu µs/Consume`] = per(t, (r) => r.cpuUsPerConsume);
        summary[`${o} ${t}: client cpu µs/call`] = per(t, (r) => r.clientCpuUsPerCall);
        if (t !== "noop") {
          summary[`${o} ${t}: p99 ÷ noop p99`] = byRound("open", "lean", "noop", t, (x, y) => x.p99 / y.p99);
          summary[`${o} ${t}: goal p99 ≤ ${GOAL_P99_MS} ms, no drops (per round)`] = runs.filter((r) => r.loop === "open" && r.target === t).map((r) => r.p99 <= GOAL_P99_MS && r.dropped === 0);
        }
      }
      for (const b of labels.slice(1)) summary[`${o} ${b}/${labels[0]} p99`] = byRound("open", "lean", labels[0]!, b, (x, y) => x.p99 / y.p99);
      for (const t of labels) {
        const r = sel("open", "lean").filter((x) => x.target === t);
        const met = r.filter((x) => x.p99 <= GOAL_P99_MS && x.dropped === 0).length;
        log(`${t}: open loop ${rate}/s, p99 ${r.map((x) => x.p99.toFixed(2)).join(" / ")} ms (no-op ${per("noop", (x) => x.p99).map((x) => x.toFixed(2)).join(" / ")}): goal ≤ ${GOAL_P99_MS} ms ${met === r.length ? "MET" : "NOT MET"} in ${met} of ${r.length} rounds`);
      }
    }
    process.stdout.write(JSON.stringify({ spec, keys, rate: spec.rate === undefined ? null : rate, summary, runs }, null, 1) + "\n");
  } finally {
    for (const s of servers) await stop(s.p);
    rmSync(scratch, { recursive: true, force: true });
  }
}

main().catch((err) => {
  process.stderr.write(`consumeAB failed: ${(err as Error).stack ?? err}\n`);
  killAllTracked();
  process.exit(1);
});
