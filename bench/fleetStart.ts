// The fleet start-up phase of `npm run bench` (issue 15 item 8): N keys over a realistic spread
// of accounts (by default 1M keys: 900k over 1,000 accounts and one account of 100k), seeded
// into an embedded LevelDB data dir and into a real redis-server, then the real sidecar
// (`bin/aisa-authz.js serve`, compiled) started on each, alternately, `rounds` times:
// spawn → the "ready" line, and VmRSS at ready and after a settle (from /proc/PID/status).
// Figures are same-run ratios, Redis against embedded: the machine is shared.
//
// Seeding is fast and not through the admin API: accounts through each engine's insertAccount;
// keys through LevelStore.importKeys (embedded) and, on Redis, pipelined HSETs of the engine's
// own layout (keys.ts for the names, portable.ts's keyHashFields for a key's fields,
// keyProjection.ts's encoder for its projection) — the same records on both.
//
// Runs alone too:
//   node --import tsx bench/fleetStart.ts [--keys 1000000] [--accounts 1000] [--big 100000] [--rounds 2]
//     [--profile DIR]  (each Redis sidecar start with --cpu-prof into DIR)
//     [--keep DIR]     (seed into DIR and leave its redis-server running: DIR/state.json has its pid)
//     [--reuse DIR]    (start on what --keep left; no seeding)
//     [--other-bins A/bin/aisa-authz.js,…]  (another build's bin started on Redis too, each round: A/B)
import { createHash, randomBytes } from "node:crypto";
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import os, { tmpdir } from "node:os";
import { delimiter, dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { createClient } from "redis";
import { DEFAULT_GROUP, type KeyRecord } from "../src/domain/types.js";
import { generateId, generateTokenSecret, masterKeyCheckValue, SecretBox } from "../src/keys/secrets.js";
import { encodeProjection } from "../src/store/keyProjection.js";
import { LevelStore } from "../src/store/level/levelStore.js";
import { RedisKeys } from "../src/store/redis/keys.js";
import { keyHashFields } from "../src/store/redis/portable.js";
import { RedisStore } from "../src/store/redis/redisStore.js";
import { startRedis } from "../test/helpers/redis.js";
import { fastSecret } from "./lib/fastSecret.js";
import { BENCH_MODEL } from "./lib/payloads.js";
import { cpuSecondsOf, memoryOf, spawnTracked, stop, waitReady } from "./lib/proc.js";
import { median } from "./lib/stats.js";

const ROOT = fileURLToPath(new URL("..", import.meta.url));
const BIN = join(ROOT, "bin/aisa-authz.js");

export interface FleetStartOptions {
  /** Keys in all. */
  keys: number;
  /** Accounts the keys other than the big account's are spread over. */
  accounts: number;
  /** Keys of the one big account (part of `keys`). */
  bigAccount: number;
  /** Starts of each store, alternately (embedded, Redis, embedded, …). */
  rounds: number;
  /** RSS is read at ready and again after this long (ms). */
  settleMs: number;
  /** A directory for CPU profiles of the Redis sidecar's starts (node --cpu-prof), or null. */
  profileDir: string | null;
  /** Seed into this directory and leave it and its redis-server running (state.json), for `reuse`. */
  keep?: string;
  /** Start on what a `keep` run left (no seeding; its redis-server stays up). */
  reuse?: string;
  /** Other builds' bins (a checkout's bin/aisa-authz.js) started on Redis too, each round after this one's: A/B runs. */
  otherBins?: string[];
  log: (msg: string) => void;
}

export interface FleetStartRun {
  store: "level" | "redis";
  /** The bin started (this checkout's, or an `otherBins` one). */
  bin: string;
  round: number;
  /** spawn → the "ready" line (ms). */
  readyMs: number;
  /** Keys the ready line reports. */
  keys: number;
  /** VmRSS at ready, after the settle, and VmHWM (peak) after the settle (MB). */
  rssReadyMb: number;
  rssSettledMb: number;
  hwmMb: number;
  /** CPU seconds the sidecar used until ready, and redis-server used meanwhile (0 on the embedded store). */
  cpuS: number;
  redisCpuS: number;
}

export interface Medians {
  readyMs: number;
  rssReadyMb: number;
  rssSettledMb: number;
  hwmMb: number;
  cpuS: number;
  redisCpuS: number;
}

export interface FleetStartResult {
  keys: number;
  accounts: number;
  bigAccount: number;
  seedMs: { level: number; redis: number };
  /** redis-server's used_memory after the seed (MB). */
  redisUsedMemoryMb: number;
  runs: FleetStartRun[];
  /** Medians over the rounds. */
  level: Medians;
  redis: Medians;
  /** Redis ÷ embedded, of the medians. */
  ratios: { readyMs: number; rssSettled: number; rssReady: number; hwm: number };
  /** Each `otherBins` build on Redis: its medians, and this build's ÷ its (A/B, same rounds). */
  others: { bin: string; redis: Medians; thisOverOther: { readyMs: number; rssSettled: number; cpuS: number; redisCpuS: number } }[];
  loadavg: { start: number[]; end: number[] };
}


/** The accounts and how many keys each gets: `accounts` even ones, then the big one. */
export function accountPlan(o: Pick<FleetStartOptions, "keys" | "accounts" | "bigAccount">): { id: string; keys: number }[] {
  const rest = Math.max(0, o.keys - o.bigAccount);
  const out: { id: string; keys: number }[] = [];
  for (let i = 0; i < o.accounts; i++) out.push({ id: `acct-${String(i).padStart(5, "0")}`, keys: Math.floor(rest / o.accounts) + (i < rest % o.accounts ? 1 : 0) });
  if (o.bigAccount > 0) out.push({ id: "acct-big", keys: Math.min(o.bigAccount, o.keys) });
  return out;
}

/** One key record, with the realistic mix of bench/seed.ts (quota, expiry, model and IP lists) and some refills. */
function keyRecord(box: SecretBox, account: string, i: number, now: number): KeyRecord {
  const secret = fastSecret();
  const id = generateId("key_");
  const quota = i % 2 === 0 ? 5_000_000 : -1;
  return {
    id,
    name: `start ${account} ${i}`,
    accountId: account,
    group: DEFAULT_GROUP,
    status: i % 50 === 7 ? "disabled" : "enabled",
    unlimited: quota < 0,
    quotaTotal: quota < 0 ? 0 : quota,
    expiresAt: i % 3 === 0 ? now + 30 * 86_400_000 : null,
    models: i % 10 === 1 ? [BENCH_MODEL, "gpt-4o"] : [],
    ips: i % 20 === 3 ? ["10.0.0.0/8", "2001:db8::/32"] : [],
    createdAt: now,
    updatedAt: now,
    limits: i % 25 === 4 ? { rpm: 600, tpm: 100_000, concurrency: 8 } : { rpm: 0, tpm: 0, concurrency: 0 },
    refill: i % 10 === 5 ? "monthly" : "none",
    metadata: {},
    secretHash: createHash("sha256").update(secret, "utf8").digest("hex"),
    secretEnc: box.seal(secret, id),
    masked: `sk-…${secret.slice(-4)}`,
    prevSecretHash: null,
    prevSecretExpiresAt: null,
  };
}

/**
 * Seeds both stores with the same records, account by account in chunks: embedded through
 * LevelStore (insertAccount, importKeys), Redis through RedisStore.insertAccount and pipelined
 * HSETs of the engine's layout (a few commands in flight).
 */
async function seedBoth(o: FleetStartOptions, dataDir: string, redisUrl: string, masterKey: Buffer): Promise<{ level: number; redis: number }> {
  const box = new SecretBox(masterKey);
  const now = Date.now();
  const plan = accountPlan(o);
  const audit = (action: string, target: string) => ({ actor: "bench", action, target });
  const level = new LevelStore({ dir: dataDir });
  await level.open(now);
  const rstore = new RedisStore({ url: redisUrl, clock: Date.now, callTimeoutMs: 10_000 });
  await rstore.open(now);
  // No command timeout (node-redis's default is 5 s a command): a large HSET may wait behind others.
  const client: any = createClient({ url: redisUrl, commandOptions: { timeout: 0 } } as any);
  client.on("error", () => {});
  await client.connect();
  const keys = new RedisKeys("aisa:");
  let levelMs = 0;
  let redisMs = 0;
  const inFlight = new Set<Promise<unknown>>();
  let failure: unknown;
  const send = async (args: string[]): Promise<void> => {
    while (inFlight.size >= 8) await Promise.race(inFlight);
    if (failure) throw failure;
    const p: Promise<unknown> = client.sendCommand(args).then(
      () => inFlight.delete(p),
      (err: unknown) => {
        inFlight.delete(p);
        failure ??= err;
      },
    );
    inFlight.add(p);
  };
  try {
    // Accounts first (both engines' own insertAccount), then the keys account by account.
    for (const a of plan) {
      const record = { id: a.id, name: a.id, createdAt: now };
      let t = performance.now();
      await level.insertAccount(record, 1e15, audit("CreateAccount", a.id));
      levelMs += performance.now() - t;
      t = performance.now();
      await rstore.insertAccount(record, 1e15, audit("CreateAccount", a.id));
      redisMs += performance.now() - t;
    }
    let done = 0;
    let nextLog = 100_000;
    // LevelDB takes keys in batches of 20,000 (one synced write per 10,000) whatever their accounts.
    let pendingLevel: KeyRecord[] = [];
    const flushLevel = async () => {
      const t = performance.now();
      await level.importKeys(pendingLevel, audit("ImportKeys", "*"));
      levelMs += performance.now() - t;
      pendingLevel = [];
    };
    for (const a of plan) {
      for (let start = 0; start < a.keys; start += 2000) {
        const recs: KeyRecord[] = [];
        for (let i = start; i < Math.min(a.keys, start + 2000); i++) recs.push(keyRecord(box, a.id, i, now));
        pendingLevel.push(...recs);
        if (pendingLevel.length >= 20_000) await flushLevel();
        const t = performance.now();
        const h = keys.a(a.id);
        const p = keys.a(a.id, "p");
        const hArgs = ["HSET", h];
        const pArgs = ["HSET", p];
        for (const r of recs) {
          const s = r.unlimited ? 0 : r.quotaTotal;
          hArgs.push(...keyHashFields(r, { remaining: s, used: 0, credited: s, lastUsedAt: null, refilledAt: null }));
          pArgs.push(r.id, encodeProjection(r));
        }
        await send(hArgs);
        await send(pArgs);
        redisMs += performance.now() - t;
        done += recs.length;
        if (done >= nextLog) {
          o.log(`fleetstart: seeded ${done} of ${o.keys} keys (embedded ${(levelMs / 1000).toFixed(1)} s, Redis ${(redisMs / 1000).toFixed(1)} s)`);
          nextLog += 100_000;
        }
      }
    }
    if (pendingLevel.length) await flushLevel();
    const t = performance.now();
    await Promise.all(inFlight);
    if (failure) throw failure;
    redisMs += performance.now() - t;
    // The master key's check value, as a sidecar's first start (or migrate) writes it: without it a
    // sidecar's first start looks for a stored secret to open (main.ts checkMasterKey).
    const check = masterKeyCheckValue(masterKey);
    await level.writeMeta("masterKeyCheck", check);
    await rstore.writeMeta("masterKeyCheck", check);
  } finally {
    await client.close().catch(() => client.destroy());
    await rstore.close();
    await level.close();
  }
  return { level: levelMs, redis: redisMs };
}

async function startOnce(store: "level" | "redis", round: number, dataDir: string, env: NodeJS.ProcessEnv, o: FleetStartOptions, redisPid: number, bin = BIN): Promise<FleetStartRun> {
  const dir = store === "level" ? dataDir : mkdtempSync(join(tmpdir(), "aisa-fleetstart-node-"));
  const args = ["serve", "--data", dir, "--listen", "127.0.0.1:0", "--envoy-listen", "127.0.0.1:0", "--http-listen", "", "--admin-listen", "127.0.0.1:0", "--metrics-listen", ""];
  // node refuses --cpu-prof in NODE_OPTIONS: with a profile dir, node runs the bin with it and the
  // bin's memory settings are given as its prologue would (bench/run.ts does the same).
  const profile = store === "redis" && o.profileDir;
  const [cmd, pre] = profile ? [process.execPath, ["--cpu-prof", `--cpu-prof-dir=${o.profileDir}`, "--max-semi-space-size=4", bin]] : [bin, []];
  const r0 = store === "redis" ? (cpuSecondsOf(redisPid) ?? NaN) : 0;
  const t0 = performance.now();
  const p = spawnTracked(cmd, [...pre, ...args], {
    cwd: dirname(dirname(bin)),
    env: { ...process.env, PATH: `${dirname(process.execPath)}${delimiter}${process.env.PATH ?? ""}`, ...(profile ? { MALLOC_ARENA_MAX: process.env.MALLOC_ARENA_MAX ?? "2" } : {}), ...env, ...(store === "level" ? { AISA_STORE: "" } : {}) },
  });
  try {
    const { line, ms } = await waitReady(p, 300_000, t0);
    if (line.build !== "dist") throw new Error(`the sidecar ran ${line.build}, not dist/: build first (node scripts/build.mjs)`);
    const ready = memoryOf(p.pid);
    const cpuS = cpuSecondsOf(p.pid) ?? NaN;
    const redisCpuS = store === "redis" ? (cpuSecondsOf(redisPid) ?? NaN) - r0 : 0;
    await new Promise((r) => setTimeout(r, o.settleMs));
    const settled = memoryOf(p.pid);
    const run: FleetStartRun = { store, bin, round, readyMs: ms, keys: Number(line.keys ?? NaN), rssReadyMb: ready?.rssMb ?? NaN, rssSettledMb: settled?.rssMb ?? NaN, hwmMb: settled?.hwmMb ?? NaN, cpuS, redisCpuS };
    o.log(`fleetstart: ${store === "level" ? "embedded" : "Redis"}${bin === BIN ? "" : ` (${bin})`} start ${round + 1}: ready in ${(ms / 1000).toFixed(2)} s with ${run.keys} keys; RSS ${run.rssReadyMb.toFixed(0)} MB at ready, ${run.rssSettledMb.toFixed(0)} MB after ${o.settleMs} ms, peak ${run.hwmMb.toFixed(0)} MB; CPU ${run.cpuS.toFixed(1)} s${store === "redis" ? `, redis-server ${run.redisCpuS.toFixed(1)} s` : ""} (load average ${os.loadavg()[0]!.toFixed(2)})`);
    return run;
  } finally {
    await stop(p, 10_000);
    if (store === "redis") rmSync(dir, { recursive: true, force: true });
  }
}

interface Seeded {
  url: string;
  redisPid: number;
  dataDir: string;
  masterKey: string;
  seedMs: { level: number; redis: number };
  redisUsedMemoryMb: number;
}

export async function fleetStartBench(o: FleetStartOptions): Promise<FleetStartResult> {
  const loadStart = os.loadavg().map((x) => Math.round(x * 100) / 100);
  let seeded: Seeded;
  let cleanup = async () => {};
  if (o.reuse) {
    seeded = JSON.parse(readFileSync(join(o.reuse, "state.json"), "utf8")) as Seeded;
    o.log(`fleetstart: reusing ${o.reuse} (redis-server pid ${seeded.redisPid}, ${seeded.url})`);
  } else {
    const work = o.keep ?? mkdtempSync(join(tmpdir(), "aisa-fleetstart-"));
    const dataDir = join(work, "data");
    mkdirSync(dataDir, { recursive: true, mode: 0o700 });
    // No AOF for the bench's own Redis: seeding a million keys with appendfsync always (the
    // tests' setting) only slows the seed; a start-up only reads.
    const redis = await startRedis(["--appendonly", "no"]);
    cleanup = async () => {
      if (o.keep) return;
      await redis.cleanup();
      rmSync(work, { recursive: true, force: true });
    };
    try {
      const masterKey = randomBytes(32);
      o.log(`fleetstart: seeding ${o.keys} keys over ${o.accounts} accounts${o.bigAccount ? ` and one of ${o.bigAccount}` : ""} into LevelDB and redis-server (pid ${redis.pid})`);
      const seedMs = await seedBoth(o, dataDir, redis.url, masterKey);
      const usedMemory = Number(/used_memory:(\d+)/.exec(redis.cli(["INFO", "memory"]))?.[1] ?? NaN) / 2 ** 20;
      o.log(`fleetstart: seeded (embedded ${(seedMs.level / 1000).toFixed(1)} s, Redis ${(seedMs.redis / 1000).toFixed(1)} s; redis used_memory ${usedMemory.toFixed(0)} MB)`);
      seeded = { url: redis.url, redisPid: redis.pid, dataDir, masterKey: masterKey.toString("hex"), seedMs, redisUsedMemoryMb: usedMemory };
      if (o.keep) writeFileSync(join(o.keep, "state.json"), JSON.stringify(seeded));
    } catch (err) {
      await redis.cleanup();
      rmSync(work, { recursive: true, force: true });
      throw err;
    }
  }
  try {
    const env = { AISA_MASTER_KEY: seeded.masterKey, AISA_ADMIN_TOKEN: generateTokenSecret(), AISA_STORE: seeded.url, AISA_REDIS_TIMEOUT_MS: "500" };
    const runs: FleetStartRun[] = [];
    for (let round = 0; round < o.rounds; round++) {
      runs.push(await startOnce("level", round, seeded.dataDir, env, o, seeded.redisPid));
      runs.push(await startOnce("redis", round, seeded.dataDir, env, o, seeded.redisPid));
      for (const bin of o.otherBins ?? []) runs.push(await startOnce("redis", round, seeded.dataDir, env, o, seeded.redisPid, resolve(bin)));
    }
    const of = (store: "level" | "redis", bin = BIN): Medians => {
      const rs = runs.filter((r) => r.store === store && r.bin === bin);
      return { readyMs: median(rs.map((r) => r.readyMs)), rssReadyMb: median(rs.map((r) => r.rssReadyMb)), rssSettledMb: median(rs.map((r) => r.rssSettledMb)), hwmMb: median(rs.map((r) => r.hwmMb)), cpuS: median(rs.map((r) => r.cpuS)), redisCpuS: median(rs.map((r) => r.redisCpuS)) };
    };
    const level = of("level");
    const red = of("redis");
    return {
      keys: o.keys,
      accounts: o.accounts,
      bigAccount: o.bigAccount,
      seedMs: seeded.seedMs,
      redisUsedMemoryMb: seeded.redisUsedMemoryMb,
      runs,
      level,
      redis: red,
      ratios: { readyMs: red.readyMs / level.readyMs, rssSettled: red.rssSettledMb / level.rssSettledMb, rssReady: red.rssReadyMb / level.rssReadyMb, hwm: red.hwmMb / level.hwmMb },
      others: (o.otherBins ?? []).map((b) => {
        const m = of("redis", resolve(b));
        return { bin: resolve(b), redis: m, thisOverOther: { readyMs: red.readyMs / m.readyMs, rssSettled: red.rssSettledMb / m.rssSettledMb, cpuS: red.cpuS / m.cpuS, redisCpuS: red.redisCpuS / m.redisCpuS } };
      }),
      loadavg: { start: loadStart, end: os.loadavg().map((x) => Math.round(x * 100) / 100) },
    };
  } finally {
    await cleanup();
  }
}

export function fleetStartMarkdown(r: FleetStartResult): string {
  const f0 = (x: number) => (Number.isFinite(x) ? x.toFixed(0) : "n/a");
  const f2 = (x: number) => (Number.isFinite(x) ? x.toFixed(2) : "n/a");
  return [
    `Start-up at ${r.keys} keys (${r.accounts} accounts${r.bigAccount ? ` + one of ${r.bigAccount} keys` : ""}), medians of ${r.runs.filter((x) => x.store === "level").length} alternating starts each; load average ${r.loadavg.start.join(" ")} → ${r.loadavg.end.join(" ")}:`,
    "",
    "| store | spawn → ready (s) | RSS at ready (MB) | RSS settled (MB) | peak RSS (MB) | sidecar CPU to ready (s) | redis-server CPU meanwhile (s) |",
    "|---|---:|---:|---:|---:|---:|---:|",
    `| embedded (LevelDB) | ${f2(r.level.readyMs / 1000)} | ${f0(r.level.rssReadyMb)} | ${f0(r.level.rssSettledMb)} | ${f0(r.level.hwmMb)} | ${f2(r.level.cpuS)} | – |`,
    `| Redis | ${f2(r.redis.readyMs / 1000)} | ${f0(r.redis.rssReadyMb)} | ${f0(r.redis.rssSettledMb)} | ${f0(r.redis.hwmMb)} | ${f2(r.redis.cpuS)} | ${f2(r.redis.redisCpuS)} |`,
    `| **Redis ÷ embedded** | **${f2(r.ratios.readyMs)}×** | ${f2(r.ratios.rssReady)}× | **${f2(r.ratios.rssSettled)}×** | ${f2(r.ratios.hwm)}× | ${f2(r.redis.cpuS / r.level.cpuS)}× | |`,
    ...(r.others ?? []).flatMap((x) => [
      `| Redis, ${x.bin} | ${f2(x.redis.readyMs / 1000)} | ${f0(x.redis.rssReadyMb)} | ${f0(x.redis.rssSettledMb)} | ${f0(x.redis.hwmMb)} | ${f2(x.redis.cpuS)} | ${f2(x.redis.redisCpuS)} |`,
      `| **Redis, this build ÷ that one** | **${f2(x.thisOverOther.readyMs)}×** | | **${f2(x.thisOverOther.rssSettled)}×** | | ${f2(x.thisOverOther.cpuS)}× | ${f2(x.thisOverOther.redisCpuS)}× |`,
    ]),
    "",
    `Seeding: embedded ${f2(r.seedMs.level / 1000)} s, Redis ${f2(r.seedMs.redis / 1000)} s; redis-server used_memory ${f0(r.redisUsedMemoryMb)} MB.`,
  ].join("\n");
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const arg = (name: string, def: string) => {
    const i = process.argv.indexOf(name);
    return i >= 0 ? process.argv[i + 1]! : def;
  };
  const keys = Number(arg("--keys", "1000000"));
  const o: FleetStartOptions = {
    keys,
    accounts: Number(arg("--accounts", String(Math.min(1000, Math.max(1, Math.floor(keys / 100)))))),
    bigAccount: Number(arg("--big", String(Math.floor(keys / 10)))),
    rounds: Number(arg("--rounds", "2")),
    settleMs: Number(arg("--settle-ms", "3000")),
    profileDir: process.argv.includes("--profile") ? resolve(arg("--profile", "bench/results/profiles/fleetstart")) : null,
    keep: process.argv.includes("--keep") ? resolve(arg("--keep", "")) : undefined,
    reuse: process.argv.includes("--reuse") ? resolve(arg("--reuse", "")) : undefined,
    otherBins: process.argv.includes("--other-bins") ? arg("--other-bins", "").split(",").filter(Boolean) : [],
    log: (m) => process.stderr.write(`[${new Date().toISOString().slice(11, 19)}] ${m}\n`),
  };
  if (o.profileDir) mkdirSync(o.profileDir, { recursive: true });
  fleetStartBench(o).then(
    (r) => {
      process.stdout.write(`${fleetStartMarkdown(r)}\n${JSON.stringify(r)}\n`);
      process.exit(0);
    },
    (err) => {
      process.stderr.write(`${(err as Error).stack}\n`);
      process.exit(1);
    },
  );
}
