// The benchmark's smoke mode (1000 keys, 0.5 s load runs, 1 s Consume runs) in the test suite, so `npm run bench`
// cannot rot. It asserts that every section was produced and measured something — never a
// timing threshold (benchmarks are not tests).
import { expect } from "chai";
import { spawn } from "node:child_process";
import { existsSync, readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { onPath, programAvailable, requireProgram } from "./helpers/programs.js";
import { removeDir, tempDir } from "./helpers/tmp.js";

const ROOT = fileURLToPath(new URL("..", import.meta.url));



/** Runs the bench (or another bench script) as a child process, stopped by pid if it overruns: its exit and stderr. */
function runBench(args: string[], timeoutMs: number, script = "bench/run.ts"): Promise<{ code: number | string; stderr: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, ["--import", "tsx", join(ROOT, script), ...args], { cwd: ROOT, stdio: ["ignore", "ignore", "pipe"] });
    let stderr = "";
    child.stderr!.on("data", (d: Buffer) => (stderr += d.toString("utf8")));
    const timer = setTimeout(() => child.kill("SIGTERM"), timeoutMs);
    child.once("exit", (code, signal) => {
      clearTimeout(timer);
      resolve({ code: code ?? signal ?? -1, stderr });
    });
  });
}

describe("bench: npm run bench -- --smoke", function () {
  this.timeout(360_000);
  let out = "";

  before(async function () {
    requireProgram(this, "h2load", "nghttp2-client", onPath("h2load") || onPath("ghz"));
    out = await tempDir("aisa-bench-smoke-");
  });

  after(async () => {
    if (out) await removeDir(out);
  });

  it("produces a results JSON and markdown with every section, each with non-zero throughput", async () => {
    const { code, stderr } = await runBench(["--smoke", "--out", out, "--name", "smoke"], 320_000);
    expect(code, stderr.slice(-3000)).to.equal(0);
    const file = join(out, "smoke.json");
    expect(existsSync(file), "smoke.json").to.equal(true);
    const r = JSON.parse(readFileSync(file, "utf8"));

    expect(r.machine.nproc).to.be.greaterThan(0);
    expect(r.machine.node).to.match(/^v\d+/);
    expect(r.machine.loadgen).to.match(/h2load|ghz/);
    for (const step of ["decode", "toAuthInput", "check", "response", "encode", "total"]) expect(r.hotPath.allow[step], `hotPath.${step}`).to.be.greaterThan(0);

    // ext_proc metering: CPU per Check, per metered request and per message, on every transport.
    expect(r.extProc.checkUs.total).to.be.greaterThan(0);
    for (const t of ["envoyEndpoint", "dataPort", "observability"]) expect(r.extProc.metered[t].perRequestUs, `extProc.${t}`).to.be.greaterThan(0);

    // Heap bytes per durable Consume (store, ConsumeService); bulk SetKeysEnabled (phase admin).
    expect(r.consumeAlloc.store).to.be.greaterThan(0);
    expect(r.consumeAlloc.service).to.be.greaterThan(0);
    // Bytes promoted per Consume (consumeAlloc.ts promoted): counted, possibly 0 in a short window.
    expect(r.consumeAlloc.promoted).to.be.a("number").and.at.least(0);
    expect(r.consumeAlloc.promotedInFlight).to.equal(128);
    expect(r.bulkEnable.ids).to.equal(100);
    expect(r.bulkEnable.enableMs).to.be.greaterThan(0);

    expect(r.sizes).to.have.length(1);
    const s = r.sizes[0];
    expect(s.keys).to.equal(1000);
    // 1–2. Saturation: the three baselines, the allow path and every deny path; aisa.v1 Check (3).
    for (const t of ["noop", "noopRaw", "floor", "envoyAllow", "envoyAllowGrpcJs", "denyInvalid", "denyIp", "denyQuota", "appCheck"]) {
      expect(s.throughput[t], `throughput.${t}`).to.be.greaterThan(0);
      const runs = s.saturation.filter((x: any) => x.target === t);
      expect(runs.length, `runs of ${t}`).to.be.greaterThan(0);
      for (const x of runs) {
        expect(x.failed + x.errored, `${t} failures`).to.equal(0);
        expect(x.verified, `${t} verified`).to.match(/grpc-status 0/);
        // The sidecar's GC pauses in each window (AISA_TRACE_GC); none for the baselines.
        if (!["noop", "noopRaw", "floor"].includes(t)) expect(x.gc?.count, `${t} gc`).to.be.a("number");
      }
    }
    for (const k of ["checkVsNoop", "checkVsNoopRaw", "checkVsFloor", "denyInvalidVsAllow", "denyIpVsAllow", "denyQuotaVsAllow"]) expect(s.ratios[k], k).to.be.greaterThan(0);
    // Latency at a fixed offered load.
    for (const t of ["noop", "noopRaw", "floor", "envoyAllow", "envoyAllowGrpcJs", "appCheck"]) {
      const l = s.latency.find((x: any) => x.target === t);
      expect(l, `latency ${t}`).to.not.equal(undefined);
      expect(l.count).to.be.greaterThan(0);
      expect(l.p99).to.be.greaterThan(0);
    }
    // One request in flight, the floor and the Check alternating by round.
    for (const t of ["floor", "envoyAllow"]) {
      const one = s.latency.filter((x: any) => x.inFlight === 1 && x.target === t);
      expect(one.map((x: any) => x.round), `one in flight ${t}`).to.deep.equal([0]);
      expect(one[0].count, `one in flight ${t}`).to.be.greaterThan(0);
      expect(one[0].p99, `one in flight ${t}`).to.be.greaterThan(0);
    }
    // 3. Durable Consume and ConsumeBatch, end to end (both clients, sidecar and no-op) and at the store level.
    for (const server of ["sidecar", "noop"]) {
      for (const client of ["grpc-js", "http2"]) {
        for (const batched of [false, true]) {
          const c = s.consume.find((x: any) => x.server === server && x.client === client && (x.batch > 1) === batched);
          expect(c, `${batched ? "ConsumeBatch" : "Consume"} ${client} → ${server}`).to.not.equal(undefined);
          expect(c.throughput).to.be.greaterThan(0);
          expect(c.errors).to.equal(0);
          expect(c.serverCpuUsPerCall).to.be.greaterThan(0);
        }
      }
    }
    // ConsumeBatch open loop (lean client, --consume-batch-open's shape): the saturation run that set
    // the rate, then the no-op and the sidecar at that rate, each with its schedule's counts.
    const open = s.consume.filter((x: any) => x.openLoop);
    for (const server of ["noop", "sidecar"]) {
      const c = open.find((x: any) => x.server === server);
      expect(c, `open-loop ConsumeBatch → ${server}`).to.not.equal(undefined);
      expect(c.client).to.equal("lean");
      expect(c.errors).to.equal(0);
      expect(c.openLoop.rate).to.be.greaterThan(0);
      expect(c.openLoop.rateFrom).to.match(/^sidecar\/2: /);
      expect(c.openLoop.due).to.be.greaterThan(0);
      // Every call due in the window was sent and answered, or counted as dropped.
      expect(c.latencyMs.count + c.openLoop.dropped).to.equal(c.openLoop.due);
      expect(c.clientCpuUsPerCall).to.be.greaterThan(0);
    }
    expect(s.consume.some((x: any) => x.client === "lean" && !x.openLoop && x.server === "sidecar"), "the saturation run").to.equal(true);
    expect(s.lookup.consume[0].throughput).to.be.greaterThan(0);
    // 4. Start-up, RSS, disk; 5. lookup microbenchmark.
    expect(s.startupMs).to.be.greaterThan(0);
    expect(s.rssMb.ready).to.be.greaterThan(0);
    expect(s.rssMb.afterLoad).to.be.greaterThan(0);
    // The split of RSS from the sidecar's own /metrics, at ready and after the load.
    for (const v of [s.rssMb.readyV8, s.rssMb.afterLoadV8]) {
      expect(v.heapTotalMb).to.be.greaterThan(0).and.at.least(v.heapUsedMb);
      expect(v.heapUsedMb).to.be.greaterThan(0);
      expect(v.externalMb).to.be.greaterThan(0);
    }
    expect(s.diskMb.afterSeed).to.be.greaterThan(0);
    expect(s.lookup.lookupNsPerOp).to.be.greaterThan(0);
    expect(s.lookup.openMs).to.be.greaterThan(0);
    expect(s.sidecarExit).to.equal(0);

    // 6. HTTP forward-auth against a no-op node:http server; nginx with and without the check.
    const fa = r.forwardAuth;
    expect(fa, "forwardAuth").to.not.equal(null);
    for (const run of [fa.direct.forwardAuth, fa.direct.noop]) {
      expect(run.reqPerSec).to.be.greaterThan(0);
      expect(run.ok, "every forward-auth request allowed").to.equal(run.done);
      expect(run.serverCpuUsPerReq).to.be.greaterThan(0);
    }
    expect(fa.direct.ratioReqPerSec).to.be.greaterThan(0);
    if (programAvailable("nginx", "nginx", onPath("nginx") || existsSync("/usr/sbin/nginx"))) {
      expect(fa.nginx.withCheck.reqPerSec).to.be.greaterThan(0);
      expect(fa.nginx.withCheck.ok, "nginx with the check: every request admitted").to.equal(fa.nginx.withCheck.done);
      expect(fa.nginx.withoutCheck.reqPerSec).to.be.greaterThan(0);
    }

    // 7. The Terminal UI in tmux (bench/tui.ts): every action measured, the table painted.
    if (programAvailable("tmux", "tmux")) {
      const t = r.tui.runs[0];
      expect(t.keys).to.equal(1000);
      for (const a of ["move", "page", "search", "filter"]) expect(t.latency[a].count, `tui ${a}`).to.be.greaterThan(0);
      expect(t.firstPaintMs).to.be.greaterThan(0);
      expect(t.firstRowsMs).to.be.greaterThan(0).and.at.most(t.firstPaintMs);
    }

    // 8. Fleet (bench/fleet.ts): the embedded baseline, then sidecars on one redis-server.
    if (programAvailable("redis-server", "redis-server")) {
      const f = r.fleet;
      expect(f, "fleet").to.not.equal(null);
      const stores = f.check.map((c: any) => `${c.store}×${c.sidecars}`);
      expect(stores).to.deep.equal(["level×1", "redis×1", "redis×1", "redis×2"]);
      expect(f.check.map((c: any) => c.leases)).to.deep.equal([false, false, true, false]);
      for (const c of f.check) {
        expect(c.reqPerSec, c.label).to.be.greaterThan(0);
        expect(c.p99Ms, c.label).to.be.greaterThan(0);
      }
      // At most one script (round trip) per Check on Redis — fewer when a turn's Checks share one
      // BATCH call — and Redis's own CPU measured.
      const one = f.check.find((c: any) => c.store === "redis" && c.sidecars === 1 && !c.leases);
      expect(one.redisCommandsPerReq).to.be.greaterThan(0).and.at.most(1.2);
      expect(one.redisCpuUsPerReq).to.be.greaterThan(0);
      for (const c of f.consume) expect(c.throughput, c.label).to.be.greaterThan(0);
      expect(f.consume.find((c: any) => c.store === "redis" && !c.leases).redisCommandsPerCall).to.be.greaterThan(0).and.at.most(1.2);
      expect(f.ratios.redisCheckVsEmbedded).to.be.greaterThan(0);
    }

    // 9. Fleet start-up (bench/fleetStart.ts): the same keys on LevelDB and on Redis, each started.
    if (programAvailable("redis-server", "redis-server")) {
      const s = r.fleetStart;
      expect(s, "fleetStart").to.not.equal(null);
      for (const run of s.runs) {
        expect(run.keys, `${run.store} keys at ready`).to.equal(s.keys);
        expect(run.readyMs, run.store).to.be.greaterThan(0);
        expect(run.rssSettledMb, run.store).to.be.greaterThan(0);
      }
      expect(s.runs.map((x: any) => x.store)).to.deep.equal(["level", "redis"]);
      expect(s.ratios.readyMs).to.be.greaterThan(0);
      expect(s.ratios.rssSettled).to.be.greaterThan(0);
    }

    expect(r.targets.length).to.be.greaterThan(5);
    // Issue 18's goals, a line each, judged (pass true or false) from this run's own figures.
    for (const re of [/^Envoy Check server CPU per request/, /^Envoy Check ÷ a grpc-js server that decodes nothing/, /^Envoy Check ÷ the raw node:http2 floor/, /^One request in flight: Envoy Check p99 − the floor's p99, each round/, /^Half the no-op's saturation load: Envoy Check p99 ÷ the floor's p99/]) {
      const t = r.targets.find((x: any) => re.test(x.name));
      expect(t, String(re)).to.not.equal(undefined);
      expect(t.value, String(re)).to.match(/\d/);
      expect(t.pass, String(re)).to.be.a("boolean");
    }
    // One ConsumeBatch summary line per client.
    for (const client of ["grpc-js", "raw http2"]) expect(r.targets.some((t: any) => t.name.startsWith(`Durable Consume end to end via ConsumeBatch, ${client} client`)), client).to.equal(true);
    // The open-loop goal line, with the no-op's p99 at the same rate beside it.
    const goal = r.targets.find((t: any) => /^ConsumeBatch 8 × 2 end to end, OPEN loop/.test(t.name));
    expect(goal, "open-loop goal line").to.not.equal(undefined);
    expect(goal.name).to.match(/goal (MET|NOT MET)/);
    expect(goal.value).to.match(/no-op at the same rate: p99 \d/);
    const md = readFileSync(join(out, "smoke.md"), "utf8");
    expect(md).to.contain("## Targets").and.to.contain("## Figures").and.to.contain("Envoy Check").and.to.contain("one request in flight").and.to.contain("## Forward-auth").and.to.contain("## ext_proc metering").and.to.contain("## Terminal UI").and.to.contain("## Fleet").and.to.contain("## Fleet start-up");
    expect(r.notes.some((n: string) => n.startsWith("Consume request ids: a counter")), "the ids in the notes").to.equal(true);
  });

  it("--consume-ids random: every Consume phase (store level, each client, the open loop) runs with random ids, none replayed, and the notes say so", async () => {
    const { code, stderr } = await runBench(["--smoke", "--only", "consume", "--consume-ids", "random", "--out", out, "--name", "ids"], 240_000);
    expect(code, stderr.slice(-3000)).to.equal(0);
    const r = JSON.parse(readFileSync(join(out, "ids.json"), "utf8"));
    expect(r.config.consumeIds).to.equal("random");
    expect(r.notes.some((n: string) => n.startsWith("Consume request ids: random UUIDs")), "the ids in the notes").to.equal(true);
    const s = r.sizes[0];
    expect(s.lookup.consume[0].throughput).to.be.greaterThan(0);
    const clients = new Set(s.consume.filter((c: any) => c.server === "sidecar").map((c: any) => c.client));
    expect([...clients].sort()).to.deep.equal(["grpc-js", "http2", "lean"]);
    for (const c of s.consume) {
      expect(c.errors, `${c.client} → ${c.server}`).to.equal(0);
      expect(c.throughput).to.be.greaterThan(0);
    }
  });

  it("refuses an unknown --consume-ids by name", async () => {
    const { code, stderr } = await runBench(["--consume-ids", "uuid"], 30_000);
    expect(code).to.not.equal(0);
    expect(stderr).to.include('--consume-ids: "uuid" is not counter or random');
  });
});

/** A bench script run as a program (tsx), its output; fails the test, with its stderr, unless it exits 0 (killed after `killAfterMs`). */
async function runBenchScript(script: string, args: string[], killAfterMs = 50_000, env?: NodeJS.ProcessEnv): Promise<{ stdout: string; stderr: string }> {
  const child = spawn(process.execPath, ["--import", "tsx", join(ROOT, script), ...args], { cwd: ROOT, stdio: ["ignore", "pipe", "pipe"], ...(env ? { env } : {}) });
  const timer = setTimeout(() => child.kill("SIGTERM"), killAfterMs);
  let stdout = "";
  let stderr = "";
  child.stdout!.on("data", (d: Buffer) => (stdout += d.toString("utf8")));
  child.stderr!.on("data", (d: Buffer) => (stderr += d.toString("utf8")));
  const code = await new Promise<number | string>((resolve) => child.once("exit", (c, s) => resolve(c ?? s ?? -1)));
  clearTimeout(timer);
  expect(code, stderr).to.equal(0);
  return { stdout, stderr };
}

describe("bench: consumeReplay (a SIGKILL with a nearly full LevelDB log, then the open that replays it)", function () {
  this.timeout(120_000);

  it("crashes a store with its log ~0.9 full, reopens it with every acknowledged Consume charged, and reports the replay", async () => {
    const { stdout, stderr } = await runBenchScript("bench/consumeReplay.ts", ["--buffers", "1", "--rounds", "1", "--json"], 100_000);
    const r = JSON.parse(stdout.trim().split("\n").pop()!);
    const [row] = r.rows["1"];
    // The bench itself fails when fewer Consumes were charged after the crash than acknowledged.
    expect(row.acked).to.be.greaterThan(100);
    expect(row.charged).to.be.at.least(row.acked * 180);
    expect(row.logMb).to.be.greaterThan(0.3).and.at.most(1.2);
    expect(row.crashOpenMs).to.be.greaterThan(0);
    expect(row.cleanOpenMs).to.be.greaterThan(0);
    expect(stderr).to.match(/median 1 MB: log [\d.]+ MB; open after a crash \d+ ms/);
  });
});

describe("bench: levelOps (the main thread's part of a Consume batch write and ledger read, by path)", function () {
  this.timeout(60_000);

  it("times both write paths and both read paths, and what the native batch wrote reads back", async () => {
    const { stdout } = await runBenchScript("bench/levelOps.ts", ["--rounds", "1", "--batches", "50"]);
    const m = /^round 0: write array ([\d.]+) µs \([\d.]+ per op\), write native ([\d.]+) µs \([\d.]+ per op\), read sublevel ([\d.]+) µs, read raw ([\d.]+) µs/m.exec(stdout);
    expect(m, stdout).to.not.equal(null);
    for (const v of m!.slice(1)) expect(Number(v)).to.be.greaterThan(0);
  });
});

describe("bench: levelStall (the main thread's read calls while LevelDB drops obsolete files)", function () {
  this.timeout(60_000);

  it("runs both variants; with second names, the files LevelDB dropped are freed by deferredUnlink", async () => {
    const { stdout } = await runBenchScript("bench/levelStall.ts", ["--mb", "1", "--ms", "1500", "--rounds", "1", "--json"]);
    const runs = JSON.parse(stdout) as { variant: string; reads: number; writtenMb: number; maxMs: number; freed: number }[];
    expect(runs.map((r) => r.variant).sort()).to.deep.equal(["deferred", "plain"]);
    for (const r of runs) {
      expect(r.reads, r.variant).to.be.greaterThan(0);
      expect(r.writtenMb, r.variant).to.be.greaterThan(1);
      expect(r.maxMs, r.variant).to.be.greaterThan(0);
    }
    // A 1 MB buffer switches logs within the run: LevelDB dropped some, and their second names went.
    expect(runs.find((r) => r.variant === "deferred")!.freed).to.be.at.least(1);
    expect(runs.find((r) => r.variant === "plain")!.freed).to.equal(0);
  });
});

describe("bench: consumeTail (store-level durable Consume, builds interleaved)", function () {
  this.timeout(60_000);

  it("reports the main thread's µs per Consume, the ledger read's and the native write's times, and each root's ratios to the first", async () => {
    const { stdout } = await runBenchScript("bench/consumeTail.ts", ["--roots", ".,.", "--inflight", "8", "--rounds", "1", "--ms", "600", "--floor", "none"]);
    const rows = stdout.split("\n").filter((l) => l.startsWith("round 0 ×8 ") && l.includes("/s p50"));
    expect(rows, stdout).to.have.length(2);
    for (const row of rows) {
      const m = /µs CPU\/call \(main thread ([\d.]+)\).*native write p50 ([\d.]+) p99 [\d.]+, (?:ledger read p50 ([\d.]+) p99 [\d.]+|no ledger read) ms/.exec(row);
      expect(m, row).to.not.equal(null);
      // Each figure measured: the main thread busy per Consume, a write per batch; a ledger read
      // only for the ledger filter's false positives (~0.15 % of fresh ids: a short window may
      // have none, and says so).
      for (const v of m!.slice(1).filter((x) => x !== undefined)) expect(Number(v), row).to.be.greaterThan(0);
    }
    // The same root twice: each round's two runs are both roots' (the ratios are of like to like).
    expect(stdout).to.match(/^×8 \S+ ÷ \S+: calls\/s [\d. ]+ \(median [\d.]+×\); main µs\/call [\d. ]+ \(median [\d.]+×\); p99 [\d. ]+ \(median [\d.]+×\)$/m);
  });

  it("--ids random: the store and the LevelDB floor both run with random request ids (none replayed); an unknown --ids is refused by name", async () => {
    const { stdout } = await runBenchScript("bench/consumeTail.ts", ["--ids", "random", "--inflight", "8", "--rounds", "1", "--ms", "600", "--floor", "level"]);
    expect(stdout).to.match(/^request ids: random UUIDs/m);
    const rows = stdout.split("\n").filter((l) => l.startsWith("round 0 ×8 ") && /\d+\/s p50/.test(l));
    expect(rows.map((r) => r.split(":")[0]).sort(), stdout).to.deep.equal([`round 0 ×8 ${ROOT.replace(/\/$/, "")}`, "round 0 ×8 floor"]);
    const bad = await runBench(["--ids", "uuid"], 30_000, "bench/consumeTail.ts");
    expect(bad.code).to.not.equal(0);
    expect(bad.stderr).to.include("--ids: uuid is not one of counter, random");
  });
});

describe("bench: consumeTail's floors alone, with busy processes beside them", function () {
  this.timeout(60_000);

  it("--roots none --floor wal,fs --busy 1: one row per floor, the spinners named and gone after; a wrong --busy is refused by name", async () => {
    const spinning = () =>
      readdirSync("/proc")
        .filter((d) => /^\d+$/.test(d))
        .filter((d) => {
          try {
            return readFileSync(`/proc/${d}/cmdline`, "utf8").includes("for (;;) {}");
          } catch {
            return false;
          }
        });
    expect(spinning()).to.deep.equal([]);
    const { stdout } = await runBenchScript("bench/consumeTail.ts", ["--roots", "none", "--floor", "wal,fs", "--busy", "1", "--inflight", "8", "--rounds", "1", "--ms", "600"]);
    expect(stdout).to.match(/^1 busy process\(es\) spinning beside each child$/m);
    const rows = stdout.split("\n").filter((l) => l.startsWith("round 0 ×8 ") && /\d+\/s p50/.test(l));
    expect(rows.map((r) => r.split(":").slice(0, 2).join(":")).sort(), stdout).to.deep.equal(["round 0 ×8 floor:fs", "round 0 ×8 floor:wal"]);
    for (const row of rows) expect(Number(/: (\d+)\/s p50/.exec(row)![1]), row).to.be.greaterThan(0);
    expect(spinning()).to.deep.equal([]);
    const bad = await runBench(["--busy", "9"], 30_000, "bench/consumeTail.ts");
    expect(bad.code).to.not.equal(0);
    expect(bad.stderr).to.include("--busy: 9 is not a whole number of processes from 0 to 8");
  });
});

describe("bench: checkRss (the sidecar's memory, split, round by round under Check then ConsumeBatch load)", function () {
  this.timeout(150_000);
  let tmp = "";

  before(async function () {
    requireProgram(this, "h2load", "nghttp2-client", onPath("h2load"));
    tmp = await tempDir("aisa-checkrss-smoke-");
  });

  after(async () => {
    if (tmp) await removeDir(tmp);
  });

  it("runs each round's Check window and its ConsumeBatch window, and reports RSS after a full GC per round", async () => {
    // TMPDIR: the seed it caches and its scratch go under this test's temp dir, removed after.
    const spec = { targets: [{ label: "head", root: "." }], keys: 1000, rounds: 2, durationS: 1, consumeS: 1, settleS: 1 };
    const { stdout, stderr } = await runBenchScript("bench/checkRss.ts", [JSON.stringify(spec)], 140_000, { ...process.env, TMPDIR: tmp });
    const head = JSON.parse(stdout).summary.head;
    expect(head.reqPerSec, stderr.slice(-2000)).to.be.greaterThan(0);
    expect(head.consumesPerSec, "the ConsumeBatch windows").to.be.greaterThan(0);
    expect(head.afterGcRssMbPerRound).to.have.length(2);
    for (const mb of [...head.afterGcRssMbPerRound, ...head.afterGcNativeAnonMbPerRound]) expect(mb).to.be.greaterThan(0);
    expect(stderr).to.match(/r1 head .* req\/s cpu [\d.]+ µs, then \d+ Consumes\/s/);
  });
});
