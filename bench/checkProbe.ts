// Why does the same Envoy Check cost more with more keys loaded? One build, one sidecar per key
// count (the seeded data dirs of checkAB.ts), the same h2load saturation load on each in turn,
// and what differs: server CPU µs per request, the GC by kind (--trace-gc: scavenges and
// mark-compacts, their pauses and total), RSS, and optionally a CPU profile (`cpuProf`) and a
// heap snapshot after the load (`heap`: a count of the heap's objects by kind, the top entries).
// Usage: node --import tsx bench/checkProbe.ts '{"root":".","keys":[10000,1000000]}'
//   (optional: rounds 2, durationS 5, streams 16, cpuProf false, heap false, outDir)
// Prints progress on stderr and one JSON object on stdout.
import { cpSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { loadavg, tmpdir } from "node:os";
import { delimiter, dirname, join, resolve } from "node:path";
import { runLoad, type Shot } from "./lib/loadgen.js";
import { cpuSecondsOf, killAllTracked, memoryOf, spawnTracked, stop, waitReady, type Spawned } from "./lib/proc.js";
import { ENVOY_CHECK_PATH, encodeEnvoyCheck, envoyCheckRequest, grpcFrame } from "./lib/payloads.js";
import { cachedSeed } from "./lib/seedCache.js";

interface Spec {
  root: string;
  keys: number[];
  rounds?: number;
  durationS?: number;
  streams?: number;
  /** Unmeasured load after ready (s; default 4). 0: measure from the first second, start-up GC included. */
  warmupS?: number;
  cpuProf?: boolean;
  heap?: boolean;
  keepSnapshots?: boolean;
  /** V8 flags node refuses in NODE_OPTIONS (e.g. --trace-gc-nvp): node then runs the bin with them. */
  v8Flags?: string[];
  /** Write each sidecar's stdout (the --trace-gc lines) to outDir/stdout-KEYS.txt. */
  keepStdout?: boolean;
  outDir?: string;
}
const spec = JSON.parse(process.argv[2] ?? "{}") as Spec;
const rounds = spec.rounds ?? 2;
const durationS = spec.durationS ?? 5;
const streams = spec.streams ?? 16;
const outDir = resolve(spec.outDir ?? mkdtempSync(join(tmpdir(), "aisa-probe-out-")));
mkdirSync(outDir, { recursive: true });
const log = (s: string) => process.stderr.write(`[${new Date().toISOString().slice(11, 19)}] ${s}\n`);

/** One --trace-gc line → kind and pause (ms). */
function gcLine(line: string): { kind: string; ms: number } | null {
  const m = /ms: ([A-Za-z -]+?) [\d.]+ \([\d.]+\) -> [\d.]+ \([\d.]+\) MB, (?:pooled: [\d.]+ MB, )?([\d.]+) \/ [\d.]+ ms/.exec(line);
  return m ? { kind: m[1]!.trim(), ms: Number(m[2]) } : null;
}

interface Gc {
  byKind: Record<string, { count: number; totalMs: number; maxMs: number }>;
}
function gcOf(lines: readonly string[], from: number, to: number): Gc {
  const byKind: Gc["byKind"] = {};
  for (let i = from; i < to; i++) {
    const g = gcLine(lines[i]!);
    if (!g) continue;
    const e = (byKind[g.kind] ??= { count: 0, totalMs: 0, maxMs: 0 });
    e.count++;
    e.totalMs += g.ms;
    e.maxMs = Math.max(e.maxMs, g.ms);
  }
  return { byKind };
}

/** Heap snapshot → node count and self bytes by kind (type + constructor name), the largest counts first. */
function heapCount(file: string, top = 25): { nodes: number; selfMb: number; top: { kind: string; count: number; mb: number }[]; largest: { kind: string; count: number; mb: number }[] } {
  const s = JSON.parse(readFileSync(file, "utf8")) as { snapshot: { meta: { node_fields: string[]; node_types: [string[]] } }; nodes: number[]; strings: string[] };
  const f = s.snapshot.meta.node_fields;
  const nf = f.length;
  const types = s.snapshot.meta.node_types[0];
  const [ti, ni, si] = [f.indexOf("type"), f.indexOf("name"), f.indexOf("self_size")];
  const by = new Map<string, [number, number]>();
  let bytes = 0;
  for (let i = 0; i < s.nodes.length; i += nf) {
    const t = types[s.nodes[i + ti]!]!;
    const name = t === "object" || t === "closure" || t === "native" || t === "hidden" || t === "array" ? s.strings[s.nodes[i + ni]!]!.slice(0, 50) : "";
    const k = `${t} ${name}`.trim();
    const e = by.get(k) ?? [0, 0];
    e[0]++;
    e[1] += s.nodes[i + si]!;
    by.set(k, e);
    bytes += s.nodes[i + si]!;
  }
  const rows = (cmp: (a: [string, [number, number]], b: [string, [number, number]]) => number) =>
    [...by]
      .sort(cmp)
      .slice(0, top)
      .map(([kind, [count, b]]) => ({ kind, count, mb: b / 1e6 }));
  return { nodes: s.nodes.length / nf, selfMb: bytes / 1e6, top: rows((a, b) => b[1][0] - a[1][0]), largest: rows((a, b) => b[1][1] - a[1][1]) };
}

/** CPU seconds by thread name (/proc/PID/task/TID/comm: V8's GC and compiler helpers, libuv's pool, LevelDB's compaction), the main thread as "main". */
function threadCpu(pid: number): Map<string, number> {
  const by = new Map<string, number>();
  for (const tid of readdirSync(`/proc/${pid}/task`)) {
    try {
      const stat = readFileSync(`/proc/${pid}/task/${tid}/stat`, "utf8");
      const f = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
      const name = Number(tid) === pid ? "main" : readFileSync(`/proc/${pid}/task/${tid}/comm`, "utf8").trim();
      by.set(name, (by.get(name) ?? 0) + (Number(f[11]) + Number(f[12])) / 100);
    } catch {
      // the thread ended
    }
  }
  return by;
}

async function main(): Promise<void> {
  const root = resolve(spec.root);
  const scratch = mkdtempSync(join(tmpdir(), "aisa-probe-"));
  const out: unknown[] = [];
  const sidecars: { keys: number; p: Spawned; shots: Shot[]; profDir: string }[] = [];
  const readyAt = new Map<number, number>();
  try {
    for (const keys of spec.keys) {
      // checkAB.ts's seeded dir (bench/lib/seedCache.ts: the same spec, so the same cache entry).
      const { dir: seedDir, seeded } = await cachedSeed("checkab", { keys, allow: 2, consume: 0, ipRestricted: 0, quotaEmpty: 0 });
      const d = join(scratch, `data-${keys}`);
      cpSync(seedDir, d, { recursive: true });
      const profDir = join(outDir, `prof-${keys}`);
      mkdirSync(profDir, { recursive: true });
      const bin = join(root, "bin/aisa-authz.js");
      // As bench/run.ts --profile: node refuses --cpu-prof in NODE_OPTIONS, so node runs the bin
      // with it, and the bin's prologue settings are given here.
      const flags = [...(spec.cpuProf ? ["--cpu-prof", `--cpu-prof-dir=${profDir}`] : []), ...(spec.v8Flags ?? [])];
      const [cmd, pre] = flags.length ? [process.execPath, [...flags, bin]] : [bin, []];
      const nodeOptions = `--max-semi-space-size=4 --heapsnapshot-signal=SIGUSR2 --diagnostic-dir=${profDir} ${process.env.NODE_OPTIONS ?? ""}`.trim();
      const p = spawnTracked(cmd, [...pre, "serve", "--data", d, "--listen", "127.0.0.1:0", "--envoy-listen", "127.0.0.1:0", "--http-listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0", "--metrics-listen", ""], {
        cwd: root,
        env: { ...process.env, PATH: `${dirname(process.execPath)}${delimiter}${process.env.PATH ?? ""}`, NODE_OPTIONS: nodeOptions, MALLOC_ARENA_MAX: "2", AISA_RESERVATION_TTL_MS: "10000", AISA_TRACE_GC: "1" },
      });
      const { line } = await waitReady(p, 300_000);
      const shots = seeded.allow.slice(0, 2).map((k, i) => {
        const message = encodeEnvoyCheck(envoyCheckRequest({ secret: k.secret }));
        const frameFile = join(scratch, `${keys}-${i}.frame`);
        const messageFile = join(scratch, `${keys}-${i}.bin`);
        writeFileSync(frameFile, grpcFrame(message));
        writeFileSync(messageFile, message);
        return { address: line.envoyAddress as string, method: ENVOY_CHECK_PATH, frameFile, messageFile };
      });
      sidecars.push({ keys, p, shots, profDir });
      log(`${keys} keys: pid ${p.pid} on ${line.envoyAddress}, RSS ${memoryOf(p.pid)?.rssMb.toFixed(0)} MB`);
      if ((spec.warmupS ?? 4) > 0) await runLoad("h2load", shots, { conns: 1, streams, durationS: spec.warmupS ?? 4, warmupS: 0, tmpDir: scratch });
      readyAt.set(keys, performance.now());
    }
    for (let round = 0; round < rounds; round++) {
      for (const s of round % 2 ? [...sidecars].reverse() : sidecars) {
        const l0 = s.p.stdout.length;
        const c0 = cpuSecondsOf(s.p.pid)!;
        const m0 = cpuSecondsOf(s.p.pid, true)!;
        const t0 = threadCpu(s.p.pid);
        const r = await runLoad("h2load", s.shots, { conns: 1, streams, durationS, warmupS: 0, tmpDir: scratch });
        const n = Math.max(1, r.done);
        const t1 = threadCpu(s.p.pid);
        const threads: Record<string, number> = {};
        for (const [k, v] of t1) if (v - (t0.get(k) ?? 0) > 0) threads[k] = ((v - (t0.get(k) ?? 0)) * 1e6) / n;
        const run = {
          round,
          sinceWarmS: Math.round((performance.now() - readyAt.get(s.keys)!) / 1000),
          keys: s.keys,
          reqPerSec: r.reqPerSec,
          cpuUsPerReq: ((cpuSecondsOf(s.p.pid)! - c0) * 1e6) / n,
          mainCpuUsPerReq: ((cpuSecondsOf(s.p.pid, true)! - m0) * 1e6) / n,
          threadsUsPerReq: threads,
          gc: gcOf(s.p.stdout, l0, s.p.stdout.length),
          rssMb: memoryOf(s.p.pid)?.rssMb,
          load1: loadavg()[0],
        };
        out.push(run);
        const gc = Object.entries(run.gc.byKind)
          .map(([k, v]) => `${k} ${v.count}× ${v.totalMs.toFixed(0)} ms (max ${v.maxMs.toFixed(1)})`)
          .join(", ");
        log(`r${round} +${run.sinceWarmS}s ${String(s.keys).padStart(8)} keys ${r.reqPerSec.toFixed(0)} req/s cpu ${run.cpuUsPerReq.toFixed(1)} µs/req (main ${run.mainCpuUsPerReq.toFixed(1)}) RSS ${run.rssMb?.toFixed(0)} MB  GC: ${gc}  load ${run.load1!.toFixed(2)}`);
        log(`   threads µs/req: ${Object.entries(threads).map(([k, v]) => `${k} ${v.toFixed(1)}`).join(", ")}`);
      }
    }
    if (spec.heap) {
      for (const s of sidecars) {
        const before = new Set(readdirSync(s.profDir));
        process.kill(s.p.pid, "SIGUSR2");
        let file: string | undefined;
        for (let i = 0; i < 600 && !file; i++) {
          await new Promise((r) => setTimeout(r, 500));
          const f = readdirSync(s.profDir).find((x) => x.endsWith(".heapsnapshot") && !before.has(x));
          // Written when the sidecar logs nothing more about it: wait until its size holds still.
          if (f) {
            const size = () => readFileSync(join(s.profDir, f)).length;
            let a = size();
            for (;;) {
              await new Promise((r) => setTimeout(r, 1000));
              const b = size();
              if (b === a && b > 0) break;
              a = b;
            }
            file = join(s.profDir, f);
          }
        }
        if (!file) throw new Error(`no heap snapshot from ${s.keys}`);
        const h = heapCount(file);
        out.push({ keys: s.keys, heap: h });
        log(`${s.keys} keys heap: ${h.nodes} objects, ${h.selfMb.toFixed(1)} MB; most: ${h.top.slice(0, 8).map((t) => `${t.kind} ${t.count}`).join(" · ")}; largest: ${h.largest.slice(0, 8).map((t) => `${t.kind} ${t.count}× ${t.mb.toFixed(1)} MB`).join(" · ")}`);
        if (!spec.keepSnapshots) rmSync(file);
      }
    }
  } finally {
    for (const s of sidecars) {
      await stop(s.p);
      if (spec.keepStdout) writeFileSync(join(outDir, `stdout-${s.keys}.txt`), s.p.stdout.join("\n"));
    }
    rmSync(scratch, { recursive: true, force: true });
  }
  process.stdout.write(JSON.stringify({ spec, outDir, runs: out }, null, 1) + "\n");
}

main().catch((err) => {
  process.stderr.write(`checkProbe failed: ${(err as Error).stack ?? err}\n`);
  killAllTracked();
  process.exit(1);
});
