// What a group budget's charge costs a Consume on Redis, A/B between builds (redisStore.ts
// "GROUP"): in-process RedisStores of each root's dist/ on one real redis-server, interleaved
// rounds; each round a fresh prefix with a budgeted group, one funded account and 8 keys, and
// `concurrency` workers doing Check (reserve) → Consume for `durationMs`, each round of each root
// in a child process of its own. Per round: Consumes/s,
// the store's Redis round trips per Consume, and redis-server's CPU (µs) per Consume (/proc).
// Usage: node --import tsx bench/groupCharge.ts '{"roots":["/work/wt/base","."],"rounds":3,"durationMs":4000,"concurrency":16}'
// (each root's dist/ must be built: node scripts/build.mjs). Prints one JSON line per round, then the medians.
import { spawn, spawnSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import { resolve } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import { startRedis } from "../test/helpers/redis.js";
import { cpuSecondsOf } from "./lib/proc.js";
import { median } from "./lib/stats.js";

interface Spec {
  roots: string[];
  rounds: number;
  durationMs: number;
  concurrency: number;
  /** Whether the keys' group has a budget (false: the same load without one, for scale). */
  budget?: boolean;
}

interface Round {
  root: string;
  round: number;
  consumes: number;
  perSecond: number;
  roundTripsPerConsume: number;
  redisCpuUsPerConsume: number;
  /** Redis commands (INFO commandstats: the scripts' own commands, EVALSHA itself not counted) per Consume: exact, load-independent. */
  commandsPerConsume: number;
}

/** Calls of every command but the script calls themselves (INFO commandstats). */
function commandCalls(info: string): number {
  let n = 0;
  for (const m of info.matchAll(/^cmdstat_([a-z|_-]+):calls=(\d+)/gm)) if (!/^(evalsha|eval|script|info|ping)/.test(m[1]!)) n += Number(m[2]);
  return n;
}

const actor = { actor: "bench", action: "Bench", target: "bench" };

async function one(root: string, round: number, url: string, redisPid: number, spec: Spec, info: () => string): Promise<Round> {
  const { RedisStore } = await import(pathToFileURL(resolve(root, "dist/src/store/redis/redisStore.js")).href);
  const { generateKeySecret, hashSecret, hashSecretBytes } = await import(pathToFileURL(resolve(root, "dist/src/keys/secrets.js")).href);
  let now = Date.now();
  const store = new RedisStore({ url, prefix: `gcb${randomBytes(5).toString("hex")}:`, clock: () => now, callTimeoutMs: 5000 });
  await store.open(now);
  try {
    await store.adjustBalance("default", 1e15, actor);
    const group = spec.budget === false ? "default" : "team";
    if (group === "team") await store.insertGroup({ name: "team", description: "", ratioPpm: 1_000_000, models: [], createdAt: now, budget: { units: 1e15, period: "monthly" } }, actor);
    const keys: { id: string; secret: string }[] = [];
    for (let i = 0; i < 8; i++) {
      const secret = generateKeySecret();
      const id = `key_bench${i}${randomBytes(4).toString("hex")}`;
      await store.insertKey(
        { id, name: "bench", accountId: "default", group, status: "enabled", unlimited: true, quotaTotal: 0, expiresAt: null, models: [], ips: [], createdAt: now, updatedAt: now, limits: { rpm: 0, tpm: 0, concurrency: 0 }, refill: "none", metadata: {}, secretHash: hashSecret(secret), secretEnc: "c2VhbGVk", masked: "sk-…", prevSecretHash: null, prevSecretExpiresAt: null },
        actor,
      );
      keys.push({ id, secret });
    }
    let n = 0;
    let stop = false;
    const worker = async (w: number) => {
      for (let i = 0; !stop; i++) {
        now = Date.now();
        const k = keys[(w + i) % keys.length]!;
        const r = await store.reserve({ handle: store.lookup(hashSecretBytes(k.secret), now)!.handle, keyId: k.id, units: 10, now, ttlMs: 60_000 });
        if (!r.ok) throw new Error(`refused: ${r.reason}`);
        await store.consume({ requestId: `r${w}-${i}-${randomBytes(3).toString("hex")}`, keyId: k.id, reservationId: r.reservationId, model: "m", inputTokens: 1, outputTokens: 1, units: 7, now });
        n++;
      }
    };
    // Warm-up (scripts cached, JIT), then the measured window.
    const warm = Array.from({ length: spec.concurrency }, (_, w) => worker(w));
    await new Promise((r) => setTimeout(r, 500));
    stop = true;
    await Promise.all(warm);
    stop = false;
    n = 0;
    const trips0 = store.roundTrips as number;
    const cmds0 = commandCalls(info());
    const cpu0 = cpuSecondsOf(redisPid)!;
    const t0 = performance.now();
    const run = Array.from({ length: spec.concurrency }, (_, w) => worker(w));
    await new Promise((r) => setTimeout(r, spec.durationMs));
    stop = true;
    await Promise.all(run);
    const ms = performance.now() - t0;
    const cpu = cpuSecondsOf(redisPid)! - cpu0;
    const cmds = commandCalls(info()) - cmds0;
    return { root, round, consumes: n, perSecond: Math.round((n / ms) * 1000), roundTripsPerConsume: Number(((store.roundTrips - trips0) / n).toFixed(3)), redisCpuUsPerConsume: Number(((cpu * 1e6) / n).toFixed(1)), commandsPerConsume: Number((cmds / n).toFixed(2)) };
  } finally {
    await store.close();
  }
}

/** One round of one root in a child process of its own (two builds' modules in one process skewed an A/A run by 1.1–1.4×). */
function child(root: string, round: number, url: string, redisPid: number, port: number, spec: Spec): Promise<Round> {
  return new Promise((res, rej) => {
    const p = spawn(process.execPath, ["--import", "tsx", fileURLToPath(import.meta.url), "--one", JSON.stringify({ root, round, url, redisPid, port, spec })], { stdio: ["ignore", "pipe", "inherit"] });
    let out = "";
    p.stdout.on("data", (d: Buffer) => (out += d.toString()));
    p.once("error", rej);
    p.once("exit", (code) => (code === 0 ? res(JSON.parse(out.trim().split("\n").pop()!) as Round) : rej(new Error(`round ${round} of ${root} exited with ${code}`))));
  });
}

export async function main(spec: Spec): Promise<void> {
  const redis = await startRedis();
  try {
    const rows: Round[] = [];
    for (let round = 0; round < spec.rounds; round++) {
      // Interleaved: every root once per round, the order alternating.
      const order = round % 2 === 0 ? spec.roots : [...spec.roots].reverse();
      for (const root of order) {
        const r = await child(root, round, redis.url, redis.pid, redis.port, spec);
        rows.push(r);
        console.log(JSON.stringify(r));
      }
    }
    const base = spec.roots[0]!;
    const med = (root: string, f: (r: Round) => number) => median(rows.filter((r) => r.root === root).map(f));
    for (const root of spec.roots) {
      console.log(
        JSON.stringify({
          root,
          medianPerSecond: med(root, (r) => r.perSecond),
          throughputVsFirst: Number((med(root, (r) => r.perSecond) / med(base, (r) => r.perSecond)).toFixed(2)),
          roundTripsPerConsume: med(root, (r) => r.roundTripsPerConsume),
          redisCpuUsPerConsume: med(root, (r) => r.redisCpuUsPerConsume),
          redisCpuVsFirst: Number((med(root, (r) => r.redisCpuUsPerConsume) / med(base, (r) => r.redisCpuUsPerConsume)).toFixed(2)),
          commandsPerConsume: med(root, (r) => r.commandsPerConsume),
          // Each round against its pair in the same round (the interleaved baseline).
          cpuPairRatios: rows.filter((r) => r.root === root).map((r) => Number((r.redisCpuUsPerConsume / rows.find((b) => b.root === base && b.round === r.round)!.redisCpuUsPerConsume).toFixed(2))),
          throughputPairRatios: rows.filter((r) => r.root === root).map((r) => Number((r.perSecond / rows.find((b) => b.root === base && b.round === r.round)!.perSecond).toFixed(2))),
        }),
      );
    }
  } finally {
    await redis.cleanup();
  }
}

if (process.argv[1] === fileURLToPath(import.meta.url) && process.argv[2] === "--one") {
  const a = JSON.parse(process.argv[3]!) as { root: string; round: number; url: string; redisPid: number; port: number; spec: Spec };
  const info = () => spawnSync("redis-cli", ["-h", "127.0.0.1", "-p", String(a.port), "INFO", "commandstats"], { encoding: "utf8" }).stdout;
  console.log(JSON.stringify(await one(a.root, a.round, a.url, a.redisPid, a.spec, info)));
  process.exit(0);
} else if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const spec = { rounds: 3, durationMs: 4000, concurrency: 16, ...(JSON.parse(process.argv[2] ?? "{}") as Partial<Spec>) } as Spec;
  if (!spec.roots?.length) throw new Error('roots: the checkouts to compare, e.g. ["/work/wt/base","."] (each with dist/ built)');
  await main(spec);
}
