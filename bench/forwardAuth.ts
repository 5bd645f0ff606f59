// The HTTP forward-auth endpoint under load (h2load --h1), in the same run as its baselines:
//   1. GET /auth (an allow: X-Original-URI + Bearer key, as nginx asks) against a no-op
//      node:http server answering 200 with the same x-aisa-* headers: req/s and server CPU
//      µs per request, and their ratios;
//   2. nginx → sidecar → upstream (deploy/nginx.conf) against nginx → upstream (the same file
//      with `auth_request off`): what the check adds per request, in req/s, mean latency and
//      the sidecar's CPU per request.
// Used by bench/run.ts (`npm run bench`, phase "forwardauth"); its helper servers are this
// file run as `node --import tsx bench/forwardAuth.ts noop|upstream`.
import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync, chmodSync, mkdtempSync } from "node:fs";
import * as http from "node:http";
import os from "node:os";
import { delimiter, dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { cpuSecondsOf, spawnTracked, stop, waitExit, waitReady, type Spawned } from "./lib/proc.js";
import { median } from "./lib/stats.js";
import type { SeedResult, SeedSpec } from "./seed.js";

const ROOT = fileURLToPath(new URL("..", import.meta.url));
const BIN = join(ROOT, "bin/aisa-authz.js");
const TSX = ["--import", "tsx"];
const NGINX = ["/usr/sbin/nginx", "/usr/bin/nginx"];

export interface ForwardAuthSpec {
  durationS: number;
  warmupS: number;
  rounds: number;
  /** Connections of the h2load --h1 client (one request in flight each). */
  conns: number;
  reservationTtlS: number;
}

export interface HttpRun {
  reqPerSec: number;
  done: number;
  ok: number;
  meanMs: number;
  /** Server CPU µs per request (the sidecar's, or the no-op's). */
  serverCpuUsPerReq: number;
}

export interface ForwardAuthResult {
  /** Medians over rounds. */
  direct: { forwardAuth: HttpRun; noop: HttpRun; ratioReqPerSec: number; ratioCpu: number };
  /** null when nginx is not installed. */
  nginx: null | {
    withCheck: HttpRun;
    withoutCheck: HttpRun;
    ratioReqPerSec: number;
    addedMeanMs: number;
    /** The sidecar's CPU per request proxied through nginx. */
    sidecarCpuUsPerReq: number;
  };
  notes: string[];
}

// --- helper servers (this file run as a process) ------------------------------------------

function serveForever(handler: http.RequestListener): void {
  const server = http.createServer({ keepAliveTimeout: 60_000 }, handler);
  server.listen(0, "127.0.0.1", () => {
    const a = server.address() as { port: number };
    process.stdout.write(JSON.stringify({ msg: "ready", address: `127.0.0.1:${a.port}`, pid: process.pid }) + "\n");
  });
  process.on("SIGTERM", () => server.close(() => process.exit(0)));
}

/** The no-op: what a forward-auth allow looks like on the wire, without deciding anything. */
const NOOP_HEADERS = {
  "cache-control": "no-store",
  "x-aisa-key-id": "key_0000000000000000000A",
  "x-aisa-account-id": "default",
  "x-aisa-group": "default",
  "x-aisa-reservation": "rsv_00000000000000000000000000",
  "content-length": "0",
};
const UPSTREAM_BODY = JSON.stringify({ id: "chatcmpl-1", object: "chat.completion", choices: [{ index: 0, message: { role: "assistant", content: "ok" }, finish_reason: "stop" }] });

// --- the measurement ------------------------------------------------------------------------

function log(msg: string): void {
  process.stderr.write(`[bench] ${msg}\n`);
}

async function startHelper(mode: "noop" | "upstream"): Promise<{ p: Spawned; address: string }> {
  const p = spawnTracked(process.execPath, [...TSX, fileURLToPath(import.meta.url), mode], { cwd: ROOT });
  const { line } = await waitReady(p, 60_000);
  return { p, address: line.address };
}

/** One h2load --h1 run; `pid` is the server whose CPU is sampled. */
async function h1load(url: string, headers: string[], spec: ForwardAuthSpec, pid: number | null): Promise<HttpRun> {
  const dur = (x: number) => (x >= 1 && Number.isInteger(x) ? `${x}s` : `${Math.round(x * 1000)}ms`);
  const args = ["--h1", "-D", dur(spec.durationS), ...(spec.warmupS > 0 ? ["--warm-up-time", dur(spec.warmupS)] : []), "-c", String(spec.conns), "-m", "1", "-t", "1"];
  for (const h of headers) args.push("-H", h);
  args.push(url);
  // CPU over the whole run (warm-up included), per request done in it: h2load reports only the
  // measured window's count, so warm-up requests are estimated at the measured rate.
  const cpu0 = pid !== null ? cpuSecondsOf(pid) : null;
  const p = spawnTracked("h2load", args);
  const code = await waitExit(p, (spec.durationS + spec.warmupS) * 1000 + 30_000);
  const cpu1 = pid !== null ? cpuSecondsOf(pid) : null;
  const text = p.stdout.join("\n");
  if (code !== 0) throw new Error(`h2load ${args.join(" ")} exited ${code}: ${text.slice(-1500)} ${p.stderr.join("").slice(-500)}`);
  const fin = /finished in [\d.]+\w+, ([\d.]+) req\/s/.exec(text);
  const req = /requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded/.exec(text);
  const codes = /status codes: (\d+) 2xx/.exec(text);
  const tfr = /time for request:\s+\S+\s+\S+\s+([\d.]+)(us|ms|s)/.exec(text);
  if (!fin || !req) throw new Error(`cannot parse h2load output: ${text.slice(-1500)}`);
  const reqPerSec = Number(fin[1]);
  const done = Number(req[3]);
  const unit = tfr?.[2] === "us" ? 1e-3 : tfr?.[2] === "s" ? 1e3 : 1;
  const all = done + reqPerSec * spec.warmupS;
  return {
    reqPerSec,
    done,
    ok: Number(codes?.[1] ?? 0),
    meanMs: tfr ? Number(tfr[1]) * unit : NaN,
    serverCpuUsPerReq: cpu0 !== null && cpu1 !== null && all > 0 ? ((cpu1 - cpu0) * 1e6) / all : NaN,
  };
}

function medianRun(runs: HttpRun[]): HttpRun {
  return {
    reqPerSec: median(runs.map((r) => r.reqPerSec)),
    done: median(runs.map((r) => r.done)),
    ok: median(runs.map((r) => r.ok)),
    meanMs: median(runs.map((r) => r.meanMs)),
    serverCpuUsPerReq: median(runs.map((r) => r.serverCpuUsPerReq)),
  };
}

function nginxBinary(): string | null {
  return NGINX.find((p) => existsSync(p)) ?? null;
}

async function freePort(): Promise<number> {
  return new Promise((res, rej) => {
    const s = http.createServer();
    s.once("error", rej);
    s.listen(0, "127.0.0.1", () => {
      const port = (s.address() as { port: number }).port;
      s.close(() => res(port));
    });
  });
}

/** nginx from deploy/nginx.conf (addresses, port and paths substituted); `check` false: auth_request off. */
async function startNginx(bin: string, dir: string, sidecar: string, upstream: string, check: boolean): Promise<{ p: Spawned; port: number }> {
  const port = await freePort();
  const conf = readFileSync(join(ROOT, "deploy/nginx.conf"), "utf8")
    .replaceAll("127.0.0.1:9195", sidecar)
    .replaceAll("127.0.0.1:8000", upstream)
    .replace("listen 8080;", `listen 127.0.0.1:${port};`)
    .replaceAll("/run/", `${dir}/run/`)
    .replaceAll("/var/log/nginx/", `${dir}/log/`)
    .replaceAll("/var/lib/nginx/", `${dir}/lib/`)
    .replace("worker_processes auto;", "worker_processes 1;")
    .replace(/access_log [^;]+;/, "access_log off;")
    .replace("auth_request /_aisa_auth;", check ? "auth_request /_aisa_auth;" : "auth_request off;");
  for (const d of ["run", "log", "lib"]) mkdirSync(join(dir, d), { recursive: true });
  const file = join(dir, check ? "nginx-check.conf" : "nginx-plain.conf");
  writeFileSync(file, conf);
  const p = spawnTracked(bin, ["-p", dir, "-c", file, "-g", "daemon off;"], { cwd: dir });
  const until = Date.now() + 15_000;
  for (;;) {
    const up = await new Promise<boolean>((res) => {
      const r = http.get({ host: "127.0.0.1", port, path: "/nginx-probe" }, (x) => {
        x.resume();
        res(true);
      });
      r.on("error", () => res(false));
    });
    if (up) return { p, port };
    if (p.child.exitCode !== null || Date.now() > until) throw new Error(`nginx did not start: ${p.stderr.join("")}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

export async function forwardAuthBench(spec: ForwardAuthSpec): Promise<ForwardAuthResult> {
  const work = mkdtempSync(join(os.tmpdir(), "aisa-bench-fa-"));
  chmodSync(work, 0o755);
  const tracked: Spawned[] = [];
  try {
    const dataDir = join(work, "data");
    mkdirSync(dataDir, { mode: 0o700 });
    const seedSpec: SeedSpec = { dir: dataDir, keys: 1000, allow: 1, consume: 0, ipRestricted: 0, quotaEmpty: 0, hashesFile: join(work, "hashes.bin") };
    const seedP = spawnTracked(process.execPath, [...TSX, join(ROOT, "bench/seed.ts"), JSON.stringify(seedSpec)], { cwd: ROOT });
    if ((await waitExit(seedP, 120_000)) !== 0) throw new Error(`seed failed: ${seedP.stderr.join("").slice(-2000)}`);
    const seeded = JSON.parse(seedP.stdout[seedP.stdout.length - 1]!) as SeedResult;
    const key = seeded.allow[0]!.secret;

    const sidecar = spawnTracked(BIN, ["serve", "--data", dataDir, "--listen", "127.0.0.1:0", "--envoy-listen", "", "--http-listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0", "--metrics-listen", ""], {
      cwd: ROOT,
      env: { ...process.env, PATH: `${dirname(process.execPath)}${delimiter}${process.env.PATH ?? ""}`, AISA_RESERVATION_TTL_MS: String(Math.round(spec.reservationTtlS * 1000)) },
    });
    tracked.push(sidecar);
    const { line } = await waitReady(sidecar, 120_000);
    const httpAddress = line.httpAddress as string;
    const noop = await startHelper("noop");
    tracked.push(noop.p);
    const upstream = await startHelper("upstream");
    tracked.push(upstream.p);

    const authHeaders = [`authorization: Bearer ${key}`, "x-original-uri: /v1/chat/completions", "x-original-method: POST", "x-forwarded-for: 203.0.113.7"];
    // Warm the sidecar (JIT) before measuring.
    await h1load(`http://${httpAddress}/auth`, authHeaders, { ...spec, durationS: Math.max(1, spec.warmupS), warmupS: 0 }, null);

    const fa: HttpRun[] = [];
    const nop: HttpRun[] = [];
    for (let round = 0; round < spec.rounds; round++) {
      fa.push(await h1load(`http://${httpAddress}/auth`, authHeaders, spec, sidecar.pid));
      nop.push(await h1load(`http://${noop.address}/auth`, authHeaders, spec, noop.p.pid));
      log(`forward-auth round ${round + 1}: /auth ${fa.at(-1)!.reqPerSec.toFixed(0)} req/s (${fa.at(-1)!.serverCpuUsPerReq.toFixed(0)} µs CPU/req), no-op node:http ${nop.at(-1)!.reqPerSec.toFixed(0)} req/s (${nop.at(-1)!.serverCpuUsPerReq.toFixed(0)} µs CPU/req)`);
    }
    const forwardAuth = medianRun(fa);
    const noopRun = medianRun(nop);
    const result: ForwardAuthResult = {
      direct: {
        forwardAuth,
        noop: noopRun,
        ratioReqPerSec: median(fa.map((r, i) => r.reqPerSec / nop[i]!.reqPerSec)),
        ratioCpu: median(fa.map((r, i) => nop[i]!.serverCpuUsPerReq / r.serverCpuUsPerReq)),
      },
      nginx: null,
      notes: [
        `h2load --h1, ${spec.conns} connections (one request in flight each), ${spec.rounds} interleaved round(s) of ${spec.durationS} s after ${spec.warmupS} s warm-up; medians. /auth is an allow (reservation made) of one of 1,000 stored keys.`,
        "The no-op is a node:http server answering every request 200 with the same x-aisa-* headers: the cost of node's HTTP/1.1 itself. Ratios below 1 are what deciding costs on top.",
      ],
    };

    const bin = nginxBinary();
    if (bin === null) {
      result.notes.push("nginx is not installed: the nginx comparison was skipped (apt-get install nginx).");
      return result;
    }
    const withC: HttpRun[] = [];
    const without: HttpRun[] = [];
    const nginxDir = join(work, "nginx");
    mkdirSync(nginxDir, { recursive: true });
    chmodSync(nginxDir, 0o755);
    const withCheck = await startNginx(bin, nginxDir, httpAddress, upstream.address, true);
    tracked.push(withCheck.p);
    const plain = await startNginx(bin, join(nginxDir, "plain"), httpAddress, upstream.address, false);
    tracked.push(plain.p);
    const clientHeaders = [`authorization: Bearer ${key}`];
    for (let round = 0; round < spec.rounds; round++) {
      withC.push(await h1load(`http://127.0.0.1:${withCheck.port}/v1/chat/completions`, clientHeaders, spec, sidecar.pid));
      without.push(await h1load(`http://127.0.0.1:${plain.port}/v1/chat/completions`, clientHeaders, spec, null));
      log(`nginx round ${round + 1}: with the check ${withC.at(-1)!.reqPerSec.toFixed(0)} req/s (mean ${withC.at(-1)!.meanMs.toFixed(2)} ms), without ${without.at(-1)!.reqPerSec.toFixed(0)} req/s (mean ${without.at(-1)!.meanMs.toFixed(2)} ms)`);
    }
    const w = medianRun(withC);
    const wo = medianRun(without);
    result.nginx = {
      withCheck: w,
      withoutCheck: wo,
      ratioReqPerSec: median(withC.map((r, i) => r.reqPerSec / without[i]!.reqPerSec)),
      addedMeanMs: median(withC.map((r, i) => r.meanMs - without[i]!.meanMs)),
      sidecarCpuUsPerReq: w.serverCpuUsPerReq,
    };
    result.notes.push(
      "nginx (1 worker) from deploy/nginx.conf in front of a node:http upstream stand-in, with the check (auth_request to the sidecar) and with `auth_request off` (the same file otherwise): the ratio and the added mean latency are what the check adds per request; nginx, the sidecar, the upstream and h2load share the machine.",
    );
    return result;
  } finally {
    for (const p of tracked.reverse()) await stop(p, 5000);
    rmSync(work, { recursive: true, force: true });
  }
}

/** Markdown section for bench/results/*.md. */
export function forwardAuthMarkdown(r: ForwardAuthResult | null | undefined): string {
  if (!r) return "";
  const f0 = (x: number) => (Number.isFinite(x) ? x.toFixed(0) : "n/a");
  const f2 = (x: number) => (Number.isFinite(x) ? x.toFixed(2) : "n/a");
  const d = r.direct;
  const rows = [
    "| | req/s | server CPU µs/request | mean latency (ms) |",
    "|---|---:|---:|---:|",
    `| forward-auth GET /auth (allow) | ${f0(d.forwardAuth.reqPerSec)} | ${f0(d.forwardAuth.serverCpuUsPerReq)} | ${f2(d.forwardAuth.meanMs)} |`,
    `| no-op node:http | ${f0(d.noop.reqPerSec)} | ${f0(d.noop.serverCpuUsPerReq)} | ${f2(d.noop.meanMs)} |`,
    `| **ratio** forward-auth / no-op | **${f2(d.ratioReqPerSec)}×** | **${f2(d.ratioCpu)}×** (no-op µs / forward-auth µs) | |`,
  ];
  if (r.nginx) {
    const n = r.nginx;
    rows.push(
      `| nginx → sidecar → upstream | ${f0(n.withCheck.reqPerSec)} | sidecar: ${f0(n.sidecarCpuUsPerReq)} | ${f2(n.withCheck.meanMs)} |`,
      `| nginx → upstream (auth_request off) | ${f0(n.withoutCheck.reqPerSec)} | | ${f2(n.withoutCheck.meanMs)} |`,
      `| **ratio** with / without the check | **${f2(n.ratioReqPerSec)}×** | | **+${f2(n.addedMeanMs)} ms** |`,
    );
  }
  return `## Forward-auth (HTTP/1.1, nginx)\n\n${rows.join("\n")}\n\n${r.notes.map((x) => `- ${x}`).join("\n")}\n`;
}

const isMain = process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url);
if (isMain) {
  const mode = process.argv[2];
  if (mode === "noop") {
    serveForever((req, res) => {
      req.resume();
      req.on("end", () => {
        res.writeHead(200, NOOP_HEADERS);
        res.end();
      });
    });
  } else if (mode === "upstream") {
    serveForever((req, res) => {
      req.resume();
      req.on("end", () => {
        res.writeHead(200, { "content-type": "application/json", "content-length": Buffer.byteLength(UPSTREAM_BODY) });
        res.end(UPSTREAM_BODY);
      });
    });
  } else {
    const spec: ForwardAuthSpec = { durationS: 5, warmupS: 1, rounds: 2, conns: 16, reservationTtlS: 10, ...(process.argv[2] ? (JSON.parse(process.argv[2]) as Partial<ForwardAuthSpec>) : {}) };
    forwardAuthBench(spec).then(
      (r) => {
        process.stdout.write(JSON.stringify(r) + "\n");
        process.stdout.write(forwardAuthMarkdown(r));
        process.exit(0);
      },
      (err) => {
        process.stderr.write(`forward-auth bench failed: ${err?.stack ?? err}\n`);
        process.exit(1);
      },
    );
  }
}
