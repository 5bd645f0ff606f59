// Instructions per Envoy Check on the Envoy endpoint, counted by valgrind (reproducible on a
// shared machine, unlike CPU time; the Check's counterpart of consumeCallgrind.mjs). For each
// build (ROOT/dist: `node scripts/build.mjs` first), the sidecar runs under
// `valgrind --tool=callgrind --instr-atstart=no` on a copy of one seeded data dir; h2load sends
// `warmup` Checks (JIT), then collection is switched on (`callgrind_control -i on`), h2load
// sends N Checks (1 connection, one stream at a time by default, the bench's request with `grpc-timeout: 10S`: the
// deadline path runs, and valgrind's slowness cannot expire it), collection is switched off and
// the sidecar stopped: the dump's total over N is the instructions per Check, all threads (the
// main thread, V8's GC helpers, libuv's pool). Builds run alternately, `reps` times each.
// Usage: node --import tsx bench/checkCallgrind.ts '{"roots":["/tmp/before","."],"keys":10000,"n":4000}'
//   (optional: warmup 3000, reps 2, out "/tmp/cg": keeps the callgrind.out files for callgrind_annotate)
import { execFileSync } from "node:child_process";
import { cpSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { spawnTracked, stop, waitReady } from "./lib/proc.js";
import { ENVOY_CHECK_PATH, encodeEnvoyCheck, envoyCheckRequest, grpcFrame } from "./lib/payloads.js";
import type { SeedResult } from "./seed.js";

interface Spec {
  roots: string[];
  keys: number;
  n: number;
  warmup?: number;
  reps?: number;
  out?: string;
  /** Streams in flight (h2load -m): 1 by default, so every Check is its own event-loop turn and the counts repeat (±1–2 %); at 16 how the requests batch per read varies, and the counts by ±10 %. */
  streams?: number;
}
const spec = JSON.parse(process.argv[2] ?? "{}") as Spec;
const log = (s: string) => process.stderr.write(`[${new Date().toISOString().slice(11, 19)}] ${s}\n`);
const seedBase = join(tmpdir(), `aisa-checkab-seed-${spec.keys}`);
if (!existsSync(join(seedBase, "seed.json"))) throw new Error(`seed ${spec.keys} keys first: bench/checkAB.ts '{"roots":[],"keys":${spec.keys},"rounds":0}'`);
const seeded = JSON.parse(readFileSync(join(seedBase, "seed.json"), "utf8")) as SeedResult;
const scratch = mkdtempSync(join(tmpdir(), "aisa-checkcg-"));
const outDir = spec.out ?? scratch;
mkdirSync(outDir, { recursive: true });
const message = encodeEnvoyCheck(envoyCheckRequest({ secret: seeded.allow[0]!.secret }));
const frameFile = join(scratch, "check.frame");
writeFileSync(frameFile, grpcFrame(message));

/** h2load with a fixed request count (the bench's loadgen runs by duration). */
function h2loadN(address: string, n: number): void {
  const out = execFileSync("h2load", ["-n", String(n), "-c", "1", "-m", String(spec.streams ?? 1), "-t", "1", "-d", frameFile, "-H", "content-type: application/grpc", "-H", "te: trailers", "-H", "grpc-timeout: 10S", `http://${address}${ENVOY_CHECK_PATH}`], { encoding: "utf8", timeout: 1_800_000 });
  const m = /requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, (\d+) failed, (\d+) errored/.exec(out);
  if (!m || Number(m[4]) !== n) throw new Error(`h2load: not all ${n} succeeded: ${out.slice(-800)}`);
}

async function once(root: string, label: string, rep: number): Promise<number> {
  const data = join(scratch, `data-${label}-${rep}`);
  cpSync(join(seedBase, "data"), data, { recursive: true });
  const cgOut = join(outDir, `callgrind.out.${label}.${rep}`);
  const p = spawnTracked(
    "valgrind",
    ["--tool=callgrind", "--instr-atstart=no", `--callgrind-out-file=${cgOut}`, process.execPath, "--max-semi-space-size=4", join(resolve(root), "bin/aisa-authz.js"), "serve", "--data", data, "--listen", "127.0.0.1:0", "--envoy-listen", "127.0.0.1:0", "--http-listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0", "--metrics-listen", ""],
    { cwd: resolve(root), env: { ...process.env, MALLOC_ARENA_MAX: "2", AISA_RESERVATION_TTL_MS: "10000" } },
  );
  try {
    const { line } = await waitReady(p, 900_000);
    h2loadN(line.envoyAddress, spec.warmup ?? 3000);
    execFileSync("callgrind_control", ["-i", "on", String(p.pid)], { stdio: "ignore" });
    h2loadN(line.envoyAddress, spec.n);
    execFileSync("callgrind_control", ["-i", "off", String(p.pid)], { stdio: "ignore" });
  } finally {
    await stop(p, 120_000);
    rmSync(data, { recursive: true, force: true });
  }
  const text = readFileSync(cgOut, "utf8");
  const m = /^totals: (\d+)/m.exec(text);
  if (!m) throw new Error(`no totals in ${cgOut}`);
  if (!spec.out) rmSync(cgOut, { force: true });
  return Number(m[1]) / spec.n;
}

const results: { label: string; rep: number; instructionsPerCheck: number }[] = [];
try {
  for (let rep = 0; rep < (spec.reps ?? 2); rep++) {
    const order = rep % 2 === 0 ? spec.roots.map((r, i) => [r, i] as const) : spec.roots.map((r, i) => [r, i] as const).reverse();
    for (const [root, i] of order) {
      const label = spec.roots.length === 2 ? (i === 0 ? "before" : "after") : `build${i}`;
      const ipc = await once(root, label, rep);
      results.push({ label, rep, instructionsPerCheck: Math.round(ipc) });
      log(`${label} (${root}) rep ${rep}: ${Math.round(ipc)} instructions per Check`);
    }
  }
} finally {
  rmSync(scratch, { recursive: true, force: true });
}
process.stdout.write(JSON.stringify({ spec, results }) + "\n");
