// Load generators: h2load (Debian nghttp2-client) with pre-encoded gRPC frames, or ghz when
// it is on PATH. Several processes run at once, each sending its own pre-encoded body
// (h2load sends one body per process), and their figures are summed.
import { execFileSync } from "node:child_process";
import { readFileSync, writeFileSync } from "node:fs";
import { spawnTracked, waitExit } from "./proc.js";
import { summarize, type LatencySummary } from "./stats.js";

export type LoadGenName = "h2load" | "ghz";

export function which(cmd: string): string | null {
  try {
    return execFileSync("sh", ["-c", `command -v ${cmd}`], { encoding: "utf8" }).trim() || null;
  } catch {
    return null;
  }
}

export function loadGenVersion(name: LoadGenName): string {
  try {
    const out = execFileSync(name, ["--version"], { encoding: "utf8", stdio: ["ignore", "pipe", "pipe"] });
    return out.trim().split("\n")[0]!;
  } catch {
    return "unknown";
  }
}

export interface Shot {
  /** host:port */
  address: string;
  /** gRPC method path, e.g. /envoy.service.auth.v3.Authorization/Check */
  method: string;
  /** The pre-encoded frame (5-byte prefix + protobuf) file for h2load; ghz gets the bare message. */
  frameFile: string;
  messageFile: string;
}

export interface LoadOptions {
  /** Connections per process. */
  conns: number;
  /** Concurrent streams per connection. */
  streams: number;
  durationS: number;
  warmupS: number;
  /** Fixed offered load per connection (req/s); absent = closed loop at saturation. */
  rpsPerConn?: number;
  /** Collect per-request latency (h2load --log-file). */
  latency?: boolean;
  /** Scratch directory for log files. */
  tmpDir: string;
  /** Proto files for ghz. */
  protoDir?: string;
  protoFile?: string;
}

export interface LoadResult {
  /** Summed over processes. */
  reqPerSec: number;
  done: number;
  succeeded: number;
  failed: number;
  errored: number;
  /** Responses with HTTP 2xx (h2load) / gRPC OK (ghz). */
  ok: number;
  /** Per-request latency (ms) when requested. */
  latencyMs: LatencySummary | null;
  /** h2load's own mean time-for-request per process (ms), closed loop. */
  meanMs: number[];
  processes: number;
}

const num = (s: string | undefined) => (s === undefined ? NaN : Number(s));

function durationArg(s: number): string {
  return s >= 1 && Number.isInteger(s) ? `${s}s` : `${Math.round(s * 1000)}ms`;
}

/** One h2load process; returns its parsed summary (and log file path). */
async function h2loadOnce(shot: Shot, o: LoadOptions, idx: number): Promise<{ res: Omit<LoadResult, "latencyMs" | "processes" | "meanMs"> & { meanMs: number }; log: string | null }> {
  const log = o.latency ? `${o.tmpDir}/h2load-${process.pid}-${Date.now()}-${idx}.log` : null;
  const args = [
    "-D", durationArg(o.durationS),
    ...(o.warmupS > 0 ? ["--warm-up-time", durationArg(o.warmupS)] : []),
    "-c", String(o.conns),
    "-m", String(o.streams),
    "-t", "1",
    "-d", shot.frameFile,
    "-H", "content-type: application/grpc",
    "-H", "te: trailers",
    // As Envoy sends it (the ext_authz timeout of deploy/envoy.yaml): every server under test
    // then runs its per-call deadline as it would behind Envoy.
    "-H", "grpc-timeout: 250m",
  ];
  if (o.rpsPerConn !== undefined) args.push("--rps", String(Math.max(1, Math.round(o.rpsPerConn))));
  if (log) args.push("--log-file", log);
  args.push(`http://${shot.address}${shot.method}`);
  const p = spawnTracked("h2load", args);
  const code = await waitExit(p, (o.durationS + o.warmupS) * 1000 + 30_000);
  const text = p.stdout.join("\n");
  if (code !== 0) throw new Error(`h2load exited ${code}: ${text.slice(-1500)} ${p.stderr.join("").slice(-500)}`);
  const fin = /finished in [\d.]+\w+, ([\d.]+) req\/s/.exec(text);
  const req = /requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, (\d+) failed, (\d+) errored/.exec(text);
  const codes = /status codes: (\d+) 2xx/.exec(text);
  const tfr = /time for request:\s+\S+\s+\S+\s+([\d.]+)(us|ms|s)/.exec(text);
  if (!fin || !req) throw new Error(`cannot parse h2load output: ${text.slice(-1500)}`);
  const unit = tfr?.[2] === "us" ? 1e-3 : tfr?.[2] === "s" ? 1e3 : 1;
  return {
    res: {
      reqPerSec: num(fin[1]),
      done: num(req[3]),
      succeeded: num(req[4]),
      failed: num(req[5]),
      errored: num(req[6]),
      ok: num(codes?.[1]),
      meanMs: tfr ? num(tfr[1]) * unit : NaN,
    },
    log,
  };
}

function readH2loadLog(file: string): number[] {
  const out: number[] = [];
  const text = readFileSync(file, "utf8");
  let i = 0;
  while (i < text.length) {
    let j = text.indexOf("\n", i);
    if (j < 0) j = text.length;
    const line = text.slice(i, j);
    i = j + 1;
    const t2 = line.lastIndexOf("\t");
    if (t2 < 0) continue;
    const us = Number(line.slice(t2 + 1));
    if (Number.isFinite(us)) out.push(us / 1000);
  }
  return out;
}

/** ghz: one process per shot, JSON output. (Used only when ghz is on PATH.) */
async function ghzOnce(shot: Shot, o: LoadOptions): Promise<{ res: Omit<LoadResult, "latencyMs" | "processes" | "meanMs"> & { meanMs: number }; lat: number[] }> {
  const method = shot.method.replace(/^\//, "").replace("/", ".");
  const args = [
    "--insecure",
    "--proto", o.protoFile ?? "",
    "--import-paths", o.protoDir ?? "",
    "--call", method,
    "--binary-file", shot.messageFile,
    "--connections", String(o.conns),
    "--concurrency", String(o.conns * o.streams),
    "--duration", durationArg(o.durationS),
    "--format", "json",
  ];
  if (o.rpsPerConn !== undefined) args.push("--rps", String(Math.round(o.rpsPerConn * o.conns)));
  args.push(shot.address);
  const p = spawnTracked("ghz", args);
  const code = await waitExit(p, (o.durationS + o.warmupS) * 1000 + 30_000);
  const text = p.stdout.join("\n");
  if (code !== 0 && code !== 1) throw new Error(`ghz exited ${code}: ${p.stderr.join("").slice(-1000)}`);
  const j = JSON.parse(text);
  const okCount = Number(j.statusCodeDistribution?.OK ?? 0);
  const lat = (j.details ?? []).map((d: any) => Number(d.latency) / 1e6);
  return {
    res: {
      reqPerSec: Number(j.rps),
      done: Number(j.count),
      succeeded: okCount,
      failed: Number(j.count) - okCount,
      errored: Number(j.errorDistribution ? Object.values(j.errorDistribution).reduce((a: number, b: any) => a + Number(b), 0) : 0),
      ok: okCount,
      meanMs: Number(j.average) / 1e6,
    },
    lat,
  };
}

/** Runs one load process per shot, all at once, and sums their figures. */
export async function runLoad(gen: LoadGenName, shots: readonly Shot[], o: LoadOptions): Promise<LoadResult> {
  const lat: number[] = [];
  let runs: (Omit<LoadResult, "latencyMs" | "processes" | "meanMs"> & { meanMs: number })[];
  if (gen === "ghz") {
    const r = await Promise.all(shots.map((s) => ghzOnce(s, o)));
    runs = r.map((x) => x.res);
    if (o.latency) for (const x of r) for (const v of x.lat) lat.push(v);
  } else {
    const r = await Promise.all(shots.map((s, i) => h2loadOnce(s, o, i)));
    runs = r.map((x) => x.res);
    if (o.latency) {
      for (const x of r) {
        if (!x.log) continue;
        for (const v of readH2loadLog(x.log)) lat.push(v);
        try {
          writeFileSync(x.log, ""); // keep the scratch dir small
        } catch {
          // ignore
        }
      }
    }
  }
  const sum = (f: (r: (typeof runs)[number]) => number) => runs.reduce((a, r) => a + f(r), 0);
  return {
    reqPerSec: sum((r) => r.reqPerSec),
    done: sum((r) => r.done),
    succeeded: sum((r) => r.succeeded),
    failed: sum((r) => r.failed),
    errored: sum((r) => r.errored),
    ok: sum((r) => r.ok),
    latencyMs: o.latency ? summarize(lat) : null,
    meanMs: runs.map((r) => r.meanMs),
    processes: runs.length,
  };
}
