// The Envoy endpoint's Check, two (or more) builds side by side with the baselines, in one run
// (issue 18 items 1–2). Each build's sidecar (ROOT/bin/aisa-authz.js, from ROOT/dist) serves its
// own copy of one seeded data dir; the raw node:http2 floor, the "decodes nothing" grpc-js
// server and the decoding no-op (bench/servers.ts) run beside them. Rounds interleave every
// target in rotated order, so a drift of the shared machine hits all alike:
//   - saturation: `procs` h2load processes × 1 connection × `streams` streams, closed loop:
//     req/s, server CPU µs per request (all threads and the main thread, /proc), GC pauses;
//   - one in flight: 1 process, 1 connection, 1 stream, closed loop: p50/p99 per target;
//   - half load: 2 processes offering half the decoding no-op's saturation figure of the
//     round: p50/p99 per target.
// GC pauses are the sidecars' --trace-gc lines (AISA_TRACE_GC=1) over each measured window.
// Usage: node --import tsx bench/checkAB.ts '{"roots":["/tmp/before","."],"keys":10000}'
//   or, one build at two sizes in the same run:
//   '{"targets":[{"root":".","keys":10000,"label":"10k"},{"root":".","keys":1000000,"label":"1M"}]}'
//   (optional: rounds 3, durationS 5, warmupS 1, procs 2, streams 16, phases ["sat","one","half"])
// Prints progress on stderr and one JSON object on stdout.
import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir, loadavg } from "node:os";
import { delimiter, dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { gcIn } from "./lib/gc.js";
import { runLoad, type Shot } from "./lib/loadgen.js";
import { cpuSecondsOf, killAllTracked, memoryOf, spawnTracked, stop, waitReady, type Spawned } from "./lib/proc.js";
import type { GcPauses } from "./lib/results.js";
import { median } from "./lib/stats.js";
import { closeVerifyClients, verifyCall } from "./lib/verify.js";
import { ENVOY_CHECK_PATH, encodeEnvoyCheck, envoyCheckRequest, grpcFrame } from "./lib/payloads.js";
import type { SeedResult } from "./seed.js";
import { cachedSeed } from "./lib/seedCache.js";

const HERE = fileURLToPath(new URL("..", import.meta.url));
interface Target {
  root: string;
  keys: number;
  label: string;
}
interface Spec {
  roots?: string[];
  keys?: number;
  /** Instead of roots + keys: each build with its own number of keys (e.g. one build at 10k and at 1M, same run). */
  targets?: Target[];
  rounds?: number;
  durationS?: number;
  warmupS?: number;
  procs?: number;
  streams?: number;
  phases?: ("sat" | "one" | "half")[];
}
const spec = JSON.parse(process.argv[2] ?? "{}") as Spec;
const rounds = spec.rounds ?? 3;
const durationS = spec.durationS ?? 5;
const warmupS = spec.warmupS ?? 1;
const procs = spec.procs ?? 2;
const streams = spec.streams ?? 16;
const phases = new Set(spec.phases ?? ["sat", "one", "half"]);
const log = (s: string) => process.stderr.write(`[${new Date().toISOString().slice(11, 19)}] ${s}\n`);

interface Server {
  name: string;
  p: Spawned;
  address: string;
  gc: boolean;
}

function seed(n: number): Promise<{ dir: string; seeded: SeedResult }> {
  return cachedSeed("checkab", { keys: n, allow: procs, consume: 0, ipRestricted: 0, quotaEmpty: 0 });
}

async function startSidecar(root: string, name: string, dataDir: string): Promise<Server> {
  const bin = join(resolve(root), "bin/aisa-authz.js");
  const p = spawnTracked(bin, ["serve", "--data", dataDir, "--listen", "127.0.0.1:0", "--envoy-listen", "127.0.0.1:0", "--http-listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0", "--metrics-listen", ""], {
    cwd: resolve(root),
    env: { ...process.env, PATH: `${dirname(process.execPath)}${delimiter}${process.env.PATH ?? ""}`, AISA_RESERVATION_TTL_MS: "10000", AISA_TRACE_GC: "1" },
  });
  const { line } = await waitReady(p, 300_000);
  if (line.build !== "dist") throw new Error(`${name}: not running from dist/`);
  return { name, p, address: line.envoyAddress, gc: true };
}

async function startBaseline(mode: string): Promise<Server> {
  const p = spawnTracked(process.execPath, ["--import", "tsx", join(HERE, "bench/servers.ts"), mode], { cwd: HERE });
  const { line } = await waitReady(p, 60_000);
  return { name: mode, p, address: line.address, gc: false };
}

interface Run {
  round: number;
  target: string;
  phase: string;
  reqPerSec: number;
  cpuUsPerReq: number;
  mainCpuUsPerReq: number;
  p50?: number;
  p99?: number;
  p999?: number;
  gc?: GcPauses;
  load1: number;
  /** Requests that failed or errored (h2load), e.g. the 250 ms deadline passing on a loaded machine. */
  failed: number;
  /** The server's RSS (VmRSS) at the end of the window. */
  rssMb?: number;
}

async function measure(s: Server, shots: Shot[], phase: string, round: number, o: { conns: number; streams: number; rpsPerConn?: number; latency: boolean }, scratch: string): Promise<Run> {
  let cpu0 = NaN;
  let main0 = NaN;
  let gc0 = s.p.stdout.length;
  const timer = setTimeout(() => {
    cpu0 = cpuSecondsOf(s.p.pid) ?? NaN;
    main0 = cpuSecondsOf(s.p.pid, true) ?? NaN;
    gc0 = s.p.stdout.length;
  }, warmupS * 1000);
  const r = await runLoad("h2load", shots, { ...o, durationS, warmupS, tmpDir: scratch });
  clearTimeout(timer);
  const cpu1 = cpuSecondsOf(s.p.pid) ?? NaN;
  const main1 = cpuSecondsOf(s.p.pid, true) ?? NaN;
  // Deadline resets on a loaded machine are counted (`failed`), not fatal; a run with nothing done is.
  if (r.done === 0) throw new Error(`${s.name} ${phase}: nothing done ${JSON.stringify(r)}`);
  if (r.failed + r.errored > 0) log(`${s.name} ${phase}: ${r.failed} failed, ${r.errored} errored of ${r.done}`);
  const n = Math.max(1, r.reqPerSec * durationS);
  const run: Run = { round, target: s.name, phase, reqPerSec: r.reqPerSec, cpuUsPerReq: ((cpu1 - cpu0) * 1e6) / n, mainCpuUsPerReq: ((main1 - main0) * 1e6) / n, load1: loadavg()[0]!, failed: r.failed + r.errored, rssMb: memoryOf(s.p.pid)?.rssMb };
  if (r.latencyMs) Object.assign(run, { p50: r.latencyMs.p50, p99: r.latencyMs.p99, p999: r.latencyMs.p999 });
  if (s.gc) run.gc = gcIn(s.p.stdout, gc0, s.p.stdout.length);
  const lat = run.p99 !== undefined ? ` p50 ${run.p50!.toFixed(3)} p99 ${run.p99.toFixed(3)} ms` : "";
  const gc = run.gc ? ` GC ${run.gc.count} (${run.gc.count - run.gc.scavenges} major, p99 ${run.gc.p99Ms.toFixed(2)} max ${run.gc.maxMs.toFixed(2)} ms)` : "";
  log(`r${round} ${phase.padEnd(4)} ${s.name.padEnd(12)} ${r.reqPerSec.toFixed(0).padStart(6)} req/s  cpu ${run.cpuUsPerReq.toFixed(1)} µs/req (main ${run.mainCpuUsPerReq.toFixed(1)})${lat}${gc}  RSS ${run.rssMb?.toFixed(0)} MB  load ${run.load1.toFixed(2)}`);
  return run;
}

async function main(): Promise<void> {
  const roots = spec.roots ?? [];
  const targets: Target[] = spec.targets ?? roots.map((root, i) => ({ root, keys: spec.keys!, label: roots.length === 2 ? (i === 0 ? "before" : "after") : `build${i}` }));
  if (targets.length === 0) throw new Error("checkAB: give roots + keys, or targets");
  const seeds = new Map<number, { dir: string; seeded: SeedResult }>();
  for (const t of targets) if (!seeds.has(t.keys)) seeds.set(t.keys, await seed(t.keys));
  const seededOf = new Map<string, SeedResult>();
  const scratch = mkdtempSync(join(tmpdir(), "aisa-checkab-"));
  const servers: Server[] = [];
  try {
    for (const m of ["floor", "noop-raw", "noop"]) servers.push(await startBaseline(m));
    for (let i = 0; i < targets.length; i++) {
      const t = targets[i]!;
      const d = join(scratch, `data-${i}`);
      cpSync(seeds.get(t.keys)!.dir, d, { recursive: true });
      seededOf.set(t.label, seeds.get(t.keys)!.seeded);
      servers.push(await startSidecar(t.root, t.label, d));
      log(`${t.label}: ${t.root}, ${t.keys} keys, on ${servers.at(-1)!.address}`);
    }
    const shotsOf = (s: Server): Shot[] =>
      (seededOf.get(s.name) ?? seeds.get(targets[0]!.keys)!.seeded).allow.slice(0, procs).map((k, i) => {
        const message = encodeEnvoyCheck(envoyCheckRequest({ secret: k.secret }));
        const frameFile = join(scratch, `${s.name}-${i}.frame`);
        const messageFile = join(scratch, `${s.name}-${i}.bin`);
        writeFileSync(frameFile, grpcFrame(message));
        writeFileSync(messageFile, message);
        return { address: s.address, method: ENVOY_CHECK_PATH, frameFile, messageFile };
      });
    const shots = new Map(servers.map((s) => [s.name, shotsOf(s)]));
    for (const s of servers.filter((x) => x.gc)) {
      const verdict = await verifyCall(s.address, ENVOY_CHECK_PATH, readFileSync(shots.get(s.name)![0]!.messageFile), { kind: "envoy", allowed: true });
      log(`${s.name}: ${verdict}`);
      // Unmeasured warm-up (JIT, the GC work of loading the keys).
      await runLoad("h2load", shots.get(s.name)!, { conns: 1, streams, durationS: 4, warmupS: 0, tmpDir: scratch });
    }
    const runs: Run[] = [];
    for (let round = 0; round < rounds; round++) {
      const order = servers.map((_, i) => servers[(i + round) % servers.length]!);
      let noopRps = NaN;
      if (phases.has("sat") || phases.has("half")) {
        for (const s of order) {
          const r = await measure(s, shots.get(s.name)!, "sat", round, { conns: 1, streams, latency: false }, scratch);
          runs.push(r);
          if (s.name === "noop") noopRps = r.reqPerSec;
        }
      }
      if (phases.has("one")) for (const s of order) runs.push(await measure(s, shots.get(s.name)!.slice(0, 1), "one", round, { conns: 1, streams: 1, latency: true }, scratch));
      if (phases.has("half") && Number.isFinite(noopRps)) {
        const lprocs = Math.min(2, procs);
        for (const s of order) runs.push(await measure(s, shots.get(s.name)!.slice(0, lprocs), "half", round, { conns: 1, streams: 256, rpsPerConn: noopRps / 2 / lprocs, latency: true }, scratch));
      }
    }
    // Per-round ratios, then their medians.
    const ratio = (phase: string, a: string, b: string, f: (r: Run) => number) =>
      median(
        [...Array(rounds).keys()]
          .map((round) => {
            const x = runs.find((r) => r.round === round && r.phase === phase && r.target === a);
            const y = runs.find((r) => r.round === round && r.phase === phase && r.target === b);
            return x && y ? f(x) / f(y) : NaN;
          })
          .filter(Number.isFinite),
      );
    const summary: Record<string, number> = {};
    for (const t of servers.filter((x) => x.gc).map((x) => x.name)) {
      summary[`${t}: cpu/req vs floor`] = ratio("sat", t, "floor", (r) => r.cpuUsPerReq);
      summary[`${t}: cpu/req vs noop-raw`] = ratio("sat", t, "noop-raw", (r) => r.cpuUsPerReq);
      summary[`${t}: req/s vs noop-raw`] = ratio("sat", t, "noop-raw", (r) => r.reqPerSec);
      summary[`${t}: req/s vs floor`] = ratio("sat", t, "floor", (r) => r.reqPerSec);
    }
    if (targets.length === 2) {
      const [a, b] = [targets[0]!.label, targets[1]!.label];
      summary[`${b}/${a} cpu/req`] = ratio("sat", b, a, (r) => r.cpuUsPerReq);
      summary[`${b}/${a} main cpu/req`] = ratio("sat", b, a, (r) => r.mainCpuUsPerReq);
    }
    for (const t of servers.map((x) => x.name)) {
      for (const ph of ["sat", "one", "half"]) {
        const rs = runs.filter((r) => r.target === t && r.phase === ph);
        if (rs.length === 0) continue;
        summary[`${t} ${ph}: median cpu µs/req`] = median(rs.map((r) => r.cpuUsPerReq));
        summary[`${t} ${ph}: median req/s`] = median(rs.map((r) => r.reqPerSec));
        if (ph !== "sat") summary[`${t} ${ph}: median p99 ms`] = median(rs.map((r) => r.p99!));
      }
    }
    process.stdout.write(JSON.stringify({ spec, keys: spec.keys, targets, summary, runs }, null, 1) + "\n");
  } finally {
    closeVerifyClients();
    for (const s of servers) await stop(s.p);
    rmSync(scratch, { recursive: true, force: true });
  }
}

main().catch((err) => {
  process.stderr.write(`checkAB failed: ${(err as Error).stack ?? err}\n`);
  killAllTracked();
  process.exit(1);
});
