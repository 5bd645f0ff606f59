// What ext_proc metering costs the sidecar: server CPU per ext_proc message and per metered
// request (a Check, then an ext_proc stream carrying a 200-chunk SSE response with the usage in
// its last event, as Envoy plays it), beside the Check alone, on both transports Process is
// served on (the Envoy endpoint, node:http2; the grpc-js data port), and in observability mode.
// The sidecar runs as its own process (the real bin); its CPU is read from /proc (all threads,
// and the main thread alone), so the load generator's own CPU is not counted.
// Usage: node --import tsx bench/extproc.ts '{"requests":400,"checks":4000,"concurrency":16}'
// Prints one JSON line (ExtProcBenchResult) on stdout; with --table also a markdown table.
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { delimiter, dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import * as grpc from "@grpc/grpc-js";
import { AdjustBalanceRequest, AdminClient, CreateKeyRequest, SetPriceRequest } from "../src/gen/aisa/v1/admin.js";
import { AuthorizationClient, type CheckRequest, type CheckResponse } from "../src/gen/envoy/service/auth/v3/external_auth.js";
import { ExternalProcessorClient, ProcessingRequest, type ProcessingResponse } from "../src/gen/envoy/service/ext_proc/v3/external_processor.js";
import { chatBody, envoyCheckRequest } from "./lib/payloads.js";
import { cpuSecondsOf, spawnTracked, stop, waitReady } from "./lib/proc.js";

const ROOT = fileURLToPath(new URL("..", import.meta.url));
const BIN = join(ROOT, "bin/aisa-authz.js");

export interface ExtProcBenchResult {
  chunks: number;
  requests: number;
  checks: number;
  concurrency: number;
  /** Server CPU µs (all threads / main thread) per Envoy Check alone. */
  checkUs: { total: number; main: number };
  /** Per transport: server CPU µs per metered request (Check + stream), per ext_proc message, and what metering adds per request. */
  metered: Record<"envoyEndpoint" | "dataPort" | "observability", { perRequestUs: number; perRequestMainUs: number; perMessageUs: number; addedPerRequestUs: number; requestsPerS: number }>;
}

function sseChunks(n: number): Buffer[] {
  const out: Buffer[] = [];
  for (let i = 0; i < n - 1; i++) {
    out.push(Buffer.from(`data: {"id":"chatcmpl-bench","object":"chat.completion.chunk","created":1764979200,"model":"gpt-4o-mini-2024-07-18","choices":[{"index":0,"delta":{"content":"token ${i} "},"finish_reason":null}],"usage":null}\n\n`));
  }
  out.push(Buffer.from('data: {"id":"chatcmpl-bench","object":"chat.completion.chunk","created":1764979200,"model":"gpt-4o-mini-2024-07-18","choices":[],"usage":{"prompt_tokens":812,"completion_tokens":199,"total_tokens":1011}}\n\ndata: [DONE]\n\n'));
  return out;
}

const hm = (h: Record<string, string>) => ({ headers: Object.entries(h).map(([key, v]) => ({ key, value: "", rawValue: Buffer.from(v) })) });

/** One Envoy-shaped stream: request headers, response headers, the chunks (each answered unless observing). */
function playStream(client: ExternalProcessorClient, metadata: Record<string, unknown>, chunks: Buffer[], observe: boolean): Promise<void> {
  return new Promise((resolve, reject) => {
    const call = client.process();
    const md = { filterMetadata: { "envoy.filters.http.ext_authz": metadata }, typedFilterMetadata: {} };
    const msgs: ProcessingRequest[] = [
      ProcessingRequest.fromPartial({ request: { $case: "requestHeaders", value: { headers: hm({ ":method": "POST", ":path": "/v1/chat/completions", "content-type": "application/json" }), endOfStream: false } }, metadataContext: md, observabilityMode: observe } as any),
      ProcessingRequest.fromPartial({ request: { $case: "responseHeaders", value: { headers: hm({ ":status": "200", "content-type": "text/event-stream" }), endOfStream: false } }, metadataContext: md, observabilityMode: observe } as any),
      ...chunks.map((c, i) => ProcessingRequest.fromPartial({ request: { $case: "responseBody", value: { body: c, endOfStream: i === chunks.length - 1 } }, metadataContext: md, observabilityMode: observe } as any)),
    ];
    let next = 0;
    const send = () => call.write(msgs[next++]!);
    call.on("data", (_r: ProcessingResponse) => {
      if (next < msgs.length) send();
      else call.end();
    });
    call.on("error", reject);
    call.on("end", () => resolve());
    if (observe) {
      for (const m of msgs) call.write(m);
      call.end();
    } else send();
  });
}

async function pool(n: number, concurrency: number, job: (i: number) => Promise<void>): Promise<number> {
  let i = 0;
  const t0 = performance.now();
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (i < n) await job(i++);
    }),
  );
  return (performance.now() - t0) / 1000;
}

async function main(): Promise<void> {
  const spec = JSON.parse(process.argv[2] ?? "{}") as { requests?: number; checks?: number; concurrency?: number; chunks?: number; profileDir?: string };
  const requests = spec.requests ?? 400;
  const checks = spec.checks ?? 4000;
  const concurrency = spec.concurrency ?? 16;
  const nChunks = spec.chunks ?? 200;
  const dir = await mkdtemp(join(tmpdir(), "aisa-extproc-bench-"));
  // With profileDir, node itself runs the bin (as the tests do) with --cpu-prof (not allowed in NODE_OPTIONS).
  const [cmd, pre] = spec.profileDir ? [process.execPath, ["--cpu-prof", `--cpu-prof-dir=${spec.profileDir}`, BIN]] : [BIN, []];
  const p = spawnTracked(cmd, [...pre, "serve", "--data", dir, "--listen", "127.0.0.1:0", "--envoy-listen", "127.0.0.1:0", "--http-listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0", "--metrics-listen", ""], {
    cwd: ROOT,
    env: { ...process.env, PATH: `${dirname(process.execPath)}${delimiter}${process.env.PATH ?? ""}` },
  });
  try {
    const { line } = await waitReady(p, 120_000);
    const token = (await readFile(join(dir, "admin.token"), "utf8")).trim();
    const admin = new AdminClient(line.adminAddress, grpc.credentials.createInsecure());
    const md = new grpc.Metadata();
    md.set("authorization", `Bearer ${token}`);
    const adm = <T>(m: string, req: unknown) => new Promise<T>((res, rej) => (admin as any)[m](req, md, (e: Error | null, r: T) => (e ? rej(e) : res(r))));
    await adm("adjustBalance", AdjustBalanceRequest.fromPartial({ accountId: "default", delta: "1000000000000", reason: "bench" }));
    await adm("setPrice", SetPriceRequest.fromPartial({ price: { model: "gpt-4o-mini", inputPerMillion: "75000", outputPerMillion: "300000", perRequest: "0" } }));
    const key = await adm<{ secret: string }>("createKey", CreateKeyRequest.fromPartial({ spec: { name: "bench", unlimited: true } }));
    admin.close();

    const checkClient = new AuthorizationClient(line.envoyAddress, grpc.credentials.createInsecure());
    const req: CheckRequest = envoyCheckRequest({ secret: key.secret, body: chatBody() });
    const check = () => new Promise<CheckResponse>((res, rej) => checkClient.check(req, (e, r) => (e ? rej(e) : res(r!))));
    const first = await check();
    if (first.status?.code !== 0) throw new Error(`bench Check denied: ${JSON.stringify(first.dynamicMetadata)}`);
    const chunks = sseChunks(nChunks);
    const cpu = () => [cpuSecondsOf(p.pid) ?? 0, cpuSecondsOf(p.pid, true) ?? 0] as const;

    // Warm-up, then the Check alone.
    await pool(500, concurrency, async () => void (await check()));
    let [a0, m0] = cpu();
    await pool(checks, concurrency, async () => void (await check()));
    let [a1, m1] = cpu();
    const checkUs = { total: ((a1 - a0) / checks) * 1e6, main: ((m1 - m0) / checks) * 1e6 };

    const metered = {} as ExtProcBenchResult["metered"];
    const runs: [keyof ExtProcBenchResult["metered"], string, boolean][] = [
      ["envoyEndpoint", line.envoyAddress, false],
      ["dataPort", line.dataAddress, false],
      ["observability", line.envoyAddress, true],
    ];
    for (const [name, address, observe] of runs) {
      const client = new ExternalProcessorClient(address, grpc.credentials.createInsecure());
      const one = async () => {
        const r = await check();
        await playStream(client, r.dynamicMetadata!, chunks, observe);
      };
      await pool(Math.min(50, requests), concurrency, one); // warm-up
      [a0, m0] = cpu();
      const secs = await pool(requests, concurrency, one);
      [a1, m1] = cpu();
      client.close();
      const perRequestUs = ((a1 - a0) / requests) * 1e6;
      const messages = 2 + nChunks;
      metered[name] = {
        perRequestUs,
        perRequestMainUs: ((m1 - m0) / requests) * 1e6,
        addedPerRequestUs: perRequestUs - checkUs.total,
        perMessageUs: (perRequestUs - checkUs.total) / messages,
        requestsPerS: requests / secs,
      };
    }
    checkClient.close();
    const result: ExtProcBenchResult = { chunks: nChunks, requests, checks, concurrency, checkUs, metered };
    process.stdout.write(JSON.stringify(result) + "\n");
    if (process.argv.includes("--table")) process.stdout.write(extProcTable(result) + "\n");
  } finally {
    await stop(p);
    await rm(dir, { recursive: true, force: true });
  }
}

/** The markdown rows the bench report shows (bench/run.ts). */
export function extProcTable(r: ExtProcBenchResult): string {
  const f = (x: number) => x.toFixed(x < 10 ? 1 : 0);
  const rows = [
    "| server CPU, µs | all threads | main thread |",
    "|---|---:|---:|",
    `| Envoy Check alone (per Check) | ${f(r.checkUs.total)} | ${f(r.checkUs.main)} |`,
  ];
  const label = { envoyEndpoint: "Envoy endpoint (node:http2)", dataPort: "grpc-js data port", observability: "Envoy endpoint, observability mode (no answers)" };
  for (const [k, v] of Object.entries(r.metered)) {
    rows.push(`| metered request via the ${label[k as keyof typeof label]}: Check + ${r.chunks + 2} ext_proc messages | ${f(v.perRequestUs)} | ${f(v.perRequestMainUs)} |`);
    rows.push(`| … of which metering (per request · per ext_proc message) | ${f(v.addedPerRequestUs)} · ${f(v.perMessageUs)} | |`);
  }
  return rows.join("\n");
}

if (import.meta.url === `file://${process.argv[1]}`) {
  main().catch((err) => {
    process.stderr.write(`${(err as Error).stack}\n`);
    process.exit(1);
  });
}
