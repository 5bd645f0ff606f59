// The fleet phase of `npm run bench` (issue 15): the same Envoy Check load (h2load, the same
// payloads as the embedded figures) and the same Consume load (bench/consumeLoad.ts) against
//   - one sidecar on the embedded LevelDB (the baseline of this run),
//   - one sidecar on Redis,
//   - 1, 2 and 3 sidecars on one Redis at once,
//   - one sidecar on Redis with budget-slice leases on (--redis-lease-ms 1000; the runs above
//     have them off: every Check a reserve item on Redis),
// with each sidecar's and redis-server's CPU per request (from /proc) and Redis commands per
// request (the scripts called, from INFO commandstats: one EVALSHA = one round trip). Figures are
// ratios against the embedded run measured in the same run: the machine is shared.
// Runs alone too: node --import tsx bench/fleet.ts [--smoke]
import * as grpc from "@grpc/grpc-js";
import { randomBytes } from "node:crypto";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { delimiter, dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import * as adminPb from "../src/gen/aisa/v1/admin.js";
import { generateTokenSecret } from "../src/keys/secrets.js";
import { RedisStore } from "../src/store/redis/redisStore.js";
import { startRedis } from "../test/helpers/redis.js";
import type { ConsumeLoadResult, ConsumeLoadSpec } from "./consumeLoad.js";
import { runLoad, which, type Shot } from "./lib/loadgen.js";
import { BENCH_MODEL, encodeEnvoyCheck, ENVOY_CHECK_PATH, envoyCheckRequest, grpcFrame } from "./lib/payloads.js";
import { cpuSecondsOf, memoryOf, spawnTracked, stop, waitExit, waitReady, type Spawned } from "./lib/proc.js";
import { summarize } from "./lib/stats.js";
import { verifyCall } from "./lib/verify.js";

const ROOT = fileURLToPath(new URL("..", import.meta.url));
const BIN = join(ROOT, "bin/aisa-authz.js");
const TSX = ["--import", "tsx"];

export interface FleetBenchOptions {
  durationS: number;
  warmupS: number;
  /** h2load processes per sidecar (one key each). */
  procs: number;
  conns: number;
  streams: number;
  consumeConcurrency: number;
  consumeDurationS: number;
  /** The fleet sizes measured together on one Redis. */
  fleetSizes: number[];
  /** Extra interleaved rounds: the embedded sidecar, then the leasing one, each round (0 = none). */
  abRounds?: number;
  log: (msg: string) => void;
}

export interface FleetCheckRun {
  label: string;
  store: "level" | "redis";
  sidecars: number;
  /** Budget-slice leases on (redis only). */
  leases: boolean;
  reqPerSec: number;
  /** Sidecar CPU per Check (summed over the sidecars). */
  sidecarCpuUsPerReq: number;
  /** redis-server CPU per Check (0 on the embedded store). */
  redisCpuUsPerReq: number;
  /** Redis round trips per Check (scripts called; usage flushes once a second included). */
  redisCommandsPerReq: number;
  p50Ms: number | null;
  p99Ms: number | null;
  /** Offered load of the latency run, req/s in total. */
  latencyRps: number;
}

export interface FleetConsumeRun {
  label: string;
  store: "level" | "redis";
  leases: boolean;
  throughput: number;
  p50Ms: number;
  p99Ms: number;
  sidecarCpuUsPerCall: number;
  redisCpuUsPerCall: number;
  redisCommandsPerCall: number;
}

export interface FleetResult {
  check: FleetCheckRun[];
  consume: FleetConsumeRun[];
  /** Sidecar start to "ready" (ms) and RSS after the runs (MB), per store. */
  start: { store: "level" | "redis"; readyMs: number; rssMb: number }[];
  /** Redis used_memory growth per Consume at steady state (bytes). */
  redisBytesPerConsume: number;
  /** A change committed through one sidecar's store until another's book shows it (ms): the change feed's lag. */
  propagationMs: { samples: number; p50: number; p99: number; max: number };
  ratios: { redisCheckVsEmbedded: number; redisConsumeVsEmbedded: number; leasedCheckVsEmbedded: number; leasedConsumeVsEmbedded: number };
  /** Interleaved A/B rounds of the embedded sidecar and the one leasing on Redis: Checks/s of each, and leased ÷ embedded per round. */
  ab: { embedded: number[]; leased: number[]; ratios: number[] };
  /** Capacity arithmetic: Checks/s one Redis core carries, and Redis cores for 10 and 100 sidecars at the measured per-sidecar rate. */
  capacity: { checksPerRedisCore: number; perSidecarRps: number; redisCoresFor10: number; redisCoresFor100: number };
}

interface Node {
  p: Spawned;
  dataAddress: string;
  envoyAddress: string;
  adminAddress: string;
  readyMs: number;
  dir: string;
}

function unary<Res>(client: any, method: string, req: unknown, meta: grpc.Metadata): Promise<Res> {
  const msg = (adminPb as any)[`${method[0]!.toUpperCase()}${method.slice(1)}Request`].fromPartial(req);
  return new Promise((resolve, reject) => client[method](msg, meta, { deadline: Date.now() + 30_000 }, (e: Error | null, r: Res) => (e ? reject(e) : resolve(r))));
}

async function startNode(env: NodeJS.ProcessEnv): Promise<Node> {
  const dir = mkdtempSync(join(tmpdir(), "aisa-fleet-"));
  const t0 = performance.now();
  const p = spawnTracked(BIN, ["serve", "--data", dir, "--listen", "127.0.0.1:0", "--envoy-listen", "127.0.0.1:0", "--http-listen", "", "--admin-listen", "127.0.0.1:0", "--metrics-listen", ""], {
    cwd: ROOT,
    env: { ...process.env, PATH: `${dirname(process.execPath)}${delimiter}${process.env.PATH ?? ""}`, ...env },
  });
  const { line, ms } = await waitReady(p, 120_000, t0);
  return { p, dataAddress: line.dataAddress, envoyAddress: line.envoyAddress, adminAddress: line.adminAddress, readyMs: ms, dir };
}

async function stopNode(n: Node): Promise<void> {
  await stop(n.p);
  rmSync(n.dir, { recursive: true, force: true });
}

/** Balance, a price for the bench model and `keys` unlimited keys; their ids and secrets. */
async function seedVia(n: Node, token: string, keys: number, seedAccount = true): Promise<{ ids: string[]; secrets: string[] }> {
  const meta = new grpc.Metadata();
  meta.set("authorization", `Bearer ${token}`);
  const admin = new adminPb.AdminClient(n.adminAddress, grpc.credentials.createInsecure());
  try {
    if (seedAccount) {
      await unary(admin, "adjustBalance", { accountId: "default", delta: String(2 ** 52), reason: "bench" }, meta);
      await unary(admin, "setPrice", { price: { model: BENCH_MODEL, inputPerMillion: "75000", outputPerMillion: "300000", perRequest: "0" } }, meta);
    }
    const ids: string[] = [];
    const secrets: string[] = [];
    for (let i = 0; i < keys; i++) {
      const r = await unary<adminPb.CreateKeyResponse>(admin, "createKey", { spec: { name: `bench-${i}`, unlimited: true } }, meta);
      ids.push(r.key!.id);
      secrets.push(r.secret);
    }
    return { ids, secrets };
  } finally {
    admin.close();
  }
}

function shotsFor(nodes: readonly Node[], secrets: readonly string[], procs: number, dir: string): { shots: Shot[]; verify: { address: string; message: Buffer }[] } {
  const shots: Shot[] = [];
  const verify: { address: string; message: Buffer }[] = [];
  nodes.forEach((n, ni) => {
    for (let i = 0; i < procs; i++) {
      const message = encodeEnvoyCheck(envoyCheckRequest({ secret: secrets[(ni * procs + i) % secrets.length]! }));
      const frameFile = join(dir, `n${ni}-${i}.frame`);
      const messageFile = join(dir, `n${ni}-${i}.bin`);
      writeFileSync(frameFile, grpcFrame(message));
      writeFileSync(messageFile, message);
      shots.push({ address: n.envoyAddress, method: ENVOY_CHECK_PATH, frameFile, messageFile });
      verify.push({ address: n.envoyAddress, message });
    }
  });
  return { shots, verify };
}

interface Probe {
  pid: number;
  commands(): number;
  usedMemory(): number;
}

async function checkRuns(label: string, store: "level" | "redis", nodes: readonly Node[], secrets: readonly string[], o: FleetBenchOptions, redis: Probe | null, dir: string, leases = false): Promise<FleetCheckRun> {
  const { shots, verify } = shotsFor(nodes, secrets, o.procs, dir);
  for (const v of verify) await verifyCall(v.address, ENVOY_CHECK_PATH, v.message, { kind: "envoy", allowed: true });
  // Saturation: throughput and CPU per request over the measured window.
  let cpu0 = 0;
  let r0 = 0;
  let c0 = 0;
  const sample = () => ({ cpu: nodes.reduce((s, n) => s + (cpuSecondsOf(n.p.pid) ?? NaN), 0), r: redis ? (cpuSecondsOf(redis.pid) ?? NaN) : 0, c: redis ? redis.commands() : 0 });
  const timer = setTimeout(() => {
    const s = sample();
    cpu0 = s.cpu;
    r0 = s.r;
    c0 = s.c;
  }, o.warmupS * 1000);
  const sat = await runLoad("h2load", shots, { conns: o.conns, streams: o.streams, durationS: o.durationS, warmupS: o.warmupS, tmpDir: dir });
  clearTimeout(timer);
  const s1 = sample();
  if (sat.failed > 0 || sat.errored > 0 || sat.done === 0) throw new Error(`${label}: load run had failures: ${JSON.stringify(sat)}`);
  const n = Math.max(1, sat.reqPerSec * o.durationS);
  // Latency at half the measured saturation, spread over the connections.
  const latencyRps = Math.max(10, Math.round(sat.reqPerSec / 2));
  const lat = await runLoad("h2load", shots, { conns: 1, streams: 1, durationS: o.durationS, warmupS: o.warmupS, tmpDir: dir, latency: true, rpsPerConn: Math.max(1, Math.round(latencyRps / shots.length)) });
  for (const v of verify.slice(0, 1)) await verifyCall(v.address, ENVOY_CHECK_PATH, v.message, { kind: "envoy", allowed: true });
  const run: FleetCheckRun = {
    label,
    store,
    sidecars: nodes.length,
    leases,
    reqPerSec: sat.reqPerSec,
    sidecarCpuUsPerReq: ((s1.cpu - cpu0) * 1e6) / n,
    redisCpuUsPerReq: redis ? ((s1.r - r0) * 1e6) / n : 0,
    redisCommandsPerReq: redis ? (s1.c - c0) / n : 0,
    p50Ms: lat.latencyMs?.p50 ?? null,
    p99Ms: lat.latencyMs?.p99 ?? null,
    latencyRps,
  };
  o.log(`fleet: ${label}: ${Math.round(run.reqPerSec)} Checks/s, sidecar ${run.sidecarCpuUsPerReq.toFixed(1)} µs CPU, redis ${run.redisCpuUsPerReq.toFixed(1)} µs CPU and ${run.redisCommandsPerReq.toFixed(2)} commands per Check; p50/p99 ${run.p50Ms?.toFixed(2)}/${run.p99Ms?.toFixed(2)} ms at ${latencyRps}/s`);
  return run;
}

async function consumeRun(label: string, store: "level" | "redis", node: Node, keyIds: string[], o: FleetBenchOptions, redis: Probe | null, leases = false): Promise<{ run: FleetConsumeRun; calls: number; mem0: number; mem1: number }> {
  const spec: ConsumeLoadSpec = { address: node.dataAddress, keyIds, model: BENCH_MODEL, concurrency: o.consumeConcurrency, warmupMs: o.warmupS * 1000, durationMs: o.consumeDurationS * 1000 };
  const p = spawnTracked(process.execPath, [...TSX, join(ROOT, "bench/consumeLoad.ts"), JSON.stringify(spec)], { cwd: ROOT });
  let a = { cpu: NaN, r: NaN, c: 0, mem: 0 };
  let b = { cpu: NaN, r: NaN, c: 0, mem: 0 };
  const sample = () => ({ cpu: cpuSecondsOf(node.p.pid) ?? NaN, r: redis ? (cpuSecondsOf(redis.pid) ?? NaN) : 0, c: redis ? redis.commands() : 0, mem: redis ? redis.usedMemory() : 0 });
  let seen = 0;
  const poll = setInterval(() => {
    for (; seen < p.stdout.length; seen++) {
      const line = p.stdout[seen]!;
      if (line.includes('"measure-start"')) a = sample();
      else if (line.includes('"measure-end"')) b = sample();
    }
  }, 5);
  const code = await waitExit(p, (o.warmupS + o.consumeDurationS) * 1000 + 90_000);
  clearInterval(poll);
  if (code !== 0) throw new Error(`consumeLoad exited ${code}: ${p.stderr.join("").slice(-2000)}`);
  const r = JSON.parse(p.stdout[p.stdout.length - 1]!) as ConsumeLoadResult;
  if (r.errors > 0) throw new Error(`${label}: Consume run had ${r.errors} errors: ${r.firstError}`);
  const calls = Math.max(1, r.calls);
  const run: FleetConsumeRun = {
    label,
    store,
    leases,
    throughput: r.throughput,
    p50Ms: r.latencyMs.p50,
    p99Ms: r.latencyMs.p99,
    sidecarCpuUsPerCall: ((b.cpu - a.cpu) * 1e6) / calls,
    redisCpuUsPerCall: redis ? ((b.r - a.r) * 1e6) / calls : 0,
    redisCommandsPerCall: redis ? (b.c - a.c) / calls : 0,
  };
  o.log(`fleet: ${label}: ${Math.round(run.throughput)} Consumes/s, p50/p99 ${run.p50Ms.toFixed(2)}/${run.p99Ms.toFixed(2)} ms, sidecar ${run.sidecarCpuUsPerCall.toFixed(1)} µs, redis ${run.redisCpuUsPerCall.toFixed(1)} µs CPU and ${run.redisCommandsPerCall.toFixed(2)} commands per Consume`);
  return { run, calls: r.calls, mem0: a.mem, mem1: b.mem };
}

/**
 * The change feed's lag: two stores (two sidecars' engines) on one Redis; a balance change
 * committed through A, timed from the start of A's call until B's book (what B's Checks read)
 * shows it.
 */
async function propagation(url: string, samples: number): Promise<FleetResult["propagationMs"]> {
  const mk = async () => {
    const s = new RedisStore({ url, prefix: "lag:", clock: Date.now, callTimeoutMs: 2000 });
    await s.open(Date.now());
    return s;
  };
  const a = await mk();
  const b = await mk();
  const audit = { actor: "bench", action: "AdjustBalance", target: "default" };
  const lags: number[] = [];
  try {
    for (let i = 0; i < samples; i++) {
      // From the start of A's call (its round trip included): the feed entry is written by the
      // same script as the change, so B may see it before A's answer arrives.
      const t0 = performance.now();
      const r = await a.adjustBalance("default", 1, audit);
      const want = r.counters.balance;
      while (b.getAccount("default")?.counters.balance !== want) {
        if (performance.now() - t0 > 5000) throw new Error("a balance change did not reach the other store in 5 s");
        await new Promise((res) => setImmediate(res));
      }
      lags.push(performance.now() - t0);
    }
  } finally {
    await a.close();
    await b.close();
  }
  const s = summarize(lags);
  return { samples, p50: s.p50, p99: s.p99, max: s.max };
}

export async function fleetBench(o: FleetBenchOptions): Promise<FleetResult> {
  if (!which("h2load")) throw new Error("h2load is not on PATH (apt-get install -y nghttp2-client)");
  if (!which("redis-server")) throw new Error("redis-server is not on PATH (apt-get install -y redis-server)");
  const work = mkdtempSync(join(tmpdir(), "aisa-fleet-bench-"));
  const token = generateTokenSecret();
  const masterKey = randomBytes(32).toString("hex");
  // AISA_REDIS_TIMEOUT_MS 500: the runs measure throughput and CPU; on a shared 2-core machine a
  // 50 ms deadline (the default) fails calls whenever another process holds both cores.
  const common = { AISA_ADMIN_TOKEN: token, AISA_MASTER_KEY: masterKey, AISA_RESERVATION_TTL_MS: "5000", AISA_REDIS_TIMEOUT_MS: "500" };
  const maxSidecars = Math.max(1, ...o.fleetSizes);
  const keys = o.procs * maxSidecars;
  const result: FleetResult = {
    check: [],
    consume: [],
    start: [],
    redisBytesPerConsume: NaN,
    propagationMs: { samples: 0, p50: NaN, p99: NaN, max: NaN },
    ratios: { redisCheckVsEmbedded: NaN, redisConsumeVsEmbedded: NaN, leasedCheckVsEmbedded: NaN, leasedConsumeVsEmbedded: NaN },
    capacity: { checksPerRedisCore: NaN, perSidecarRps: NaN, redisCoresFor10: NaN, redisCoresFor100: NaN },
    ab: { embedded: [], leased: [], ratios: [] },
  };
  let embedded: { node: Node; secrets: string[] } | undefined;
  try {
    // 1. The embedded baseline.
    {
      const n = await startNode(common);
      let keep = false;
      try {
        const { ids, secrets } = await seedVia(n, token, keys);
        result.check.push(await checkRuns("embedded, 1 sidecar", "level", [n], secrets, o, null, work));
        result.consume.push((await consumeRun("embedded", "level", n, ids.slice(0, 8), o, null)).run);
        result.start.push({ store: "level", readyMs: n.readyMs, rssMb: memoryOf(n.p.pid)?.rssMb ?? NaN });
        // Kept (idle) for the interleaved rounds.
        if ((o.abRounds ?? 0) > 0) {
          embedded = { node: n, secrets };
          keep = true;
        }
      } finally {
        if (!keep) await stopNode(n);
      }
    }
    // 2. Redis: one sidecar, then 1..N together.
    const redis = await startRedis();
    const probe: Probe = {
      pid: redis.pid,
      // Round trips: the scripts called (EVALSHA, or EVAL after a NOSCRIPT). INFO's
      // total_commands_processed also counts the commands each script runs inside Redis.
      commands: () => {
        const stats = redis.cli(["INFO", "commandstats"]);
        return [...stats.matchAll(/cmdstat_(?:evalsha|eval):calls=(\d+)/g)].reduce((n, m) => n + Number(m[1]), 0);
      },
      usedMemory: () => Number(/used_memory:(\d+)/.exec(redis.cli(["INFO", "memory"]))?.[1] ?? NaN),
    };
    const nodes: Node[] = [];
    try {
      result.propagationMs = await propagation(redis.url, o.durationS >= 5 ? 500 : 100);
      o.log(`fleet: change feed lag over ${result.propagationMs.samples} balance changes: p50 ${result.propagationMs.p50.toFixed(2)} ms, p99 ${result.propagationMs.p99.toFixed(2)} ms`);
      const env = { ...common, AISA_STORE: redis.url, AISA_REDIS_PREFIX: "bench:", AISA_REDIS_LEASE_MS: "0" };
      nodes.push(await startNode(env));
      const { ids, secrets } = await seedVia(nodes[0]!, token, keys);
      // The leasing sidecar (its own keys' Checks: the same load, on keys the others never touch).
      const leased = await startNode({ ...env, AISA_REDIS_LEASE_MS: "1000" });
      nodes.push(leased);
      const lease = await seedVia(leased, token, keys, false);
      const off = nodes.filter((n) => n !== leased);
      for (const size of o.fleetSizes) {
        while (off.length < size) {
          const n = await startNode(env);
          nodes.push(n);
          off.push(n);
        }
        result.check.push(await checkRuns(`redis, ${size} sidecar${size > 1 ? "s" : ""}`, "redis", off.slice(0, size), secrets, o, probe, work));
        if (size === 1) result.check.push(await checkRuns("redis, 1 sidecar, leases on", "redis", [leased], lease.secrets, o, probe, work, true));
      }
      // Interleaved A/B: the embedded sidecar, then the leasing one, round after round.
      for (let i = 0; embedded && i < (o.abRounds ?? 0); i++) {
        const a = await checkRuns(`A/B ${i + 1}: embedded`, "level", [embedded.node], embedded.secrets, o, null, work);
        const b = await checkRuns(`A/B ${i + 1}: redis, leases on`, "redis", [leased], lease.secrets, o, probe, work, true);
        result.ab.embedded.push(a.reqPerSec);
        result.ab.leased.push(b.reqPerSec);
        result.ab.ratios.push(b.reqPerSec / a.reqPerSec);
      }
      const c = await consumeRun("redis", "redis", nodes[0]!, ids.slice(0, 8), o, probe);
      result.consume.push(c.run);
      result.consume.push((await consumeRun("redis, leases on", "redis", leased, lease.ids.slice(0, 8), o, probe, true)).run);
      result.redisBytesPerConsume = (c.mem1 - c.mem0) / Math.max(1, c.calls);
      result.start.push({ store: "redis", readyMs: nodes[0]!.readyMs, rssMb: memoryOf(nodes[0]!.p.pid)?.rssMb ?? NaN });
    } finally {
      for (const n of nodes) await stopNode(n);
      await redis.cleanup();
    }
    const emb = result.check.find((r) => r.store === "level")!;
    const one = result.check.find((r) => r.store === "redis" && r.sidecars === 1 && !r.leases);
    const oneLeased = result.check.find((r) => r.store === "redis" && r.sidecars === 1 && r.leases);
    const embC = result.consume.find((r) => r.store === "level")!;
    const redC = result.consume.find((r) => r.store === "redis" && !r.leases);
    const leaC = result.consume.find((r) => r.store === "redis" && r.leases);
    result.ratios = {
      redisCheckVsEmbedded: one ? one.reqPerSec / emb.reqPerSec : NaN,
      redisConsumeVsEmbedded: redC ? redC.throughput / embC.throughput : NaN,
      leasedCheckVsEmbedded: oneLeased ? oneLeased.reqPerSec / emb.reqPerSec : NaN,
      leasedConsumeVsEmbedded: leaC ? leaC.throughput / embC.throughput : NaN,
    };
    if (one && one.redisCpuUsPerReq > 0) {
      const checksPerRedisCore = 1e6 / one.redisCpuUsPerReq;
      result.capacity = { checksPerRedisCore, perSidecarRps: one.reqPerSec, redisCoresFor10: (10 * one.reqPerSec) / checksPerRedisCore, redisCoresFor100: (100 * one.reqPerSec) / checksPerRedisCore };
    }
    return result;
  } finally {
    if (embedded) await stopNode(embedded.node);
    rmSync(work, { recursive: true, force: true });
  }
}

/** The fleet section of the bench report. */
export function fleetMarkdown(f: FleetResult): string {
  const f1 = (x: number | null, d = 1) => (x === null || !Number.isFinite(x) ? "–" : x.toFixed(d));
  const lines = [
    "| run | sidecars | Checks/s | × embedded | sidecar CPU µs/Check | Redis CPU µs/Check | Redis round trips/Check | p50 / p99 ms (at ½ saturation) |",
    "|---|---|---|---|---|---|---|---|",
  ];
  const emb = f.check.find((r) => r.store === "level");
  for (const r of f.check)
    lines.push(`| ${r.label} | ${r.sidecars} | ${Math.round(r.reqPerSec)} | ${emb ? f1(r.reqPerSec / emb.reqPerSec, 2) : "–"} | ${f1(r.sidecarCpuUsPerReq)} | ${f1(r.redisCpuUsPerReq)} | ${f1(r.redisCommandsPerReq, 2)} | ${f1(r.p50Ms, 2)} / ${f1(r.p99Ms, 2)} |`);
  lines.push("", "| Consume | Consumes/s | × embedded | p50 / p99 ms | sidecar CPU µs | Redis CPU µs | Redis round trips |", "|---|---|---|---|---|---|---|");
  const embC = f.consume.find((r) => r.store === "level");
  for (const r of f.consume) lines.push(`| ${r.label} | ${Math.round(r.throughput)} | ${embC ? f1(r.throughput / embC.throughput, 2) : "–"} | ${f1(r.p50Ms, 2)} / ${f1(r.p99Ms, 2)} | ${f1(r.sidecarCpuUsPerCall)} | ${f1(r.redisCpuUsPerCall)} | ${f1(r.redisCommandsPerCall, 2)} |`);
  lines.push("", `Start-up to ready and RSS after the runs: ${f.start.map((s) => `${s.store} ${Math.round(s.readyMs)} ms, ${f1(s.rssMb)} MB`).join("; ")}. Redis memory per Consume at steady state: ${f1(f.redisBytesPerConsume, 0)} bytes. Change feed lag (a commit through one sidecar's store until another's book shows it, ${f.propagationMs.samples} samples): p50 ${f1(f.propagationMs.p50, 2)} ms, p99 ${f1(f.propagationMs.p99, 2)} ms.`);
  if (f.ab.ratios.length > 0)
    lines.push(
      "",
      `Interleaved A/B (embedded, then one sidecar leasing on Redis, ${f.ab.ratios.length} rounds): Checks/s ${f.ab.embedded.map((x, i) => `${Math.round(x)} / ${Math.round(f.ab.leased[i]!)}`).join(", ")}; leased ÷ embedded per round ${f.ab.ratios.map((r) => f1(r, 2)).join(", ")}.`,
    );
  const leased = f.check.find((r) => r.leases);
  if (leased && leased.redisCpuUsPerReq > 0)
    lines.push(
      "",
      `With leases (one sidecar, --redis-lease-ms 1000): Redis spends ${f1(leased.redisCpuUsPerReq)} µs and ${f1(leased.redisCommandsPerReq, 3)} round trips per Check (grants, renewals and usage flushes; /proc counts CPU in 10 ms ticks, so a figure this small is coarse), so one Redis core would carry ≈ ${Math.round(1e6 / leased.redisCpuUsPerReq)} leased Checks/s: the sidecars, not Redis, bound a leasing fleet.`,
    );
  const c = f.capacity;
  if (Number.isFinite(c.checksPerRedisCore))
    lines.push(
      "",
      `Capacity: one Redis core carries 10⁶ / ${f1(1e6 / c.checksPerRedisCore)} µs ≈ ${Math.round(c.checksPerRedisCore)} Checks/s. At the ${Math.round(c.perSidecarRps)} Checks/s one sidecar did here, 10 sidecars need ${f1(c.redisCoresFor10, 2)} Redis cores and 100 need ${f1(c.redisCoresFor100, 2)} — Redis runs scripts on one thread, so past one core the fleet needs Redis Cluster (accounts spread over slots).`,
    );
  return lines.join("\n");
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  const smoke = process.argv.includes("--smoke");
  const o: FleetBenchOptions = {
    durationS: smoke ? 2 : 10,
    warmupS: smoke ? 1 : 3,
    procs: 2,
    conns: smoke ? 2 : 5,
    streams: 10,
    consumeConcurrency: 32,
    consumeDurationS: smoke ? 2 : 10,
    fleetSizes: [1, 2, 3],
    abRounds: smoke ? 0 : 3,
    log: (m) => process.stderr.write(`${m}\n`),
  };
  fleetBench(o).then(
    (r) => {
      process.stdout.write(`${fleetMarkdown(r)}\n`);
      process.stdout.write(`${JSON.stringify(r)}\n`);
    },
    (err) => {
      process.stderr.write(`${(err as Error).stack}\n`);
      process.exit(1);
    },
  );
}
