// Bytes allocated per durable Consume at the store level (issue 18, item 3).
//
// Node 20 has no allocated-bytes counter, so: a young generation large enough that N Consumes
// fit in it without a scavenge (run with --max-semi-space-size=256 --min-semi-space-size=256,
// as `node --import tsx bench/consumeAlloc.ts` re-execs itself), a GC before each batch, and
// heapUsed after minus before, over N. A batch during which a GC ran (PerformanceObserver
// 'gc') is discarded. C Consumes in flight, as the store bench's durable Consume.
// `service` as the 4th argument: the same through ConsumeService.consume (validation, the ledger
// read of findConsume, then the store's consume: what Consume and each ConsumeBatch item run
// below gRPC).
// `batch` as the 4th argument: through the data port's ConsumeBatch as serve wires it, below
// grpc-js, with a reservation gate set as serve sets one: the request bytes (items of C Consumes)
// decoded by the data port's service definition (authorizerServiceDefinition: tolerant, bounded),
// createAuthorizerServer's consumeBatch, the reply encoded by its reused writer — one call of C
// items at a time, C Consumes in flight.
// `promoted` as the 5th argument: instead, bytes PROMOTED per Consume — what a scavenge found
// still live and copied to old space (what fills old space and brings the mark-compacts that set
// the tail): V8's own young generation (no flags but --trace-gc-nvp), N × rounds Consumes after
// a warm-up, the `promoted=` of every scavenge in that window summed, over the Consumes; and the
// window's scavenges and mark-compacts. PROMOTED_PROFILE=FILE also writes a sampling heap
// profile of that window without what minor GCs collected (`bench/heapProfileTop.ts FILE --per N×rounds` reads it).
// Usage: node --import tsx bench/consumeAlloc.ts [N=2000] [C=32] [rounds=5] [store|service] [promoted]
import { execFileSync } from "node:child_process";
import { PerformanceObserver } from "node:perf_hooks";
import { fileURLToPath } from "node:url";
import { Session } from "node:inspector/promises";
import { writeFileSync } from "node:fs";
import { LevelStore } from "../src/store/level/levelStore.js";
import { ConsumeService } from "../src/service/consume.js";
import { makeKey } from "../test/contract/store.contract.js";
import { ConsumeBatchRequest, ConsumeRequest } from "../src/gen/aisa/v1/authorizer.js";
import { authorizerServiceDefinition, createAuthorizerServer } from "../src/transport/authorizer.js";
import "../src/transport/asciiStrings.js"; // as in serve (the Envoy transport installs it process-wide)
import { Metadata } from "@grpc/grpc-js";
import type { Authorizer } from "../src/service/authorizer.js";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

const [N = 2000, C = 32, ROUNDS = 5] = process.argv.slice(2, 5).map(Number);
const MODE = process.argv[5] === "service" || process.argv[5] === "batch" ? process.argv[5] : "store";
const PROMOTED = process.argv[6] === "promoted";

if (PROMOTED && !process.execArgv.includes("--trace-gc-nvp")) {
  const out = execFileSync(process.execPath, ["--trace-gc-nvp", "--import", "tsx", fileURLToPath(import.meta.url), String(N), String(C), String(ROUNDS), MODE, "promoted"], { stdio: ["ignore", "pipe", "inherit"], maxBuffer: 256 << 20 }).toString();
  const window = out.slice(out.indexOf("@@start\n"), out.indexOf("@@end\n"));
  let promoted = 0;
  let scavenges = 0;
  let majors = 0;
  for (const line of window.split("\n")) {
    if (/\bgc=s\b/.test(line)) {
      scavenges++;
      promoted += Number(/\bpromoted=(\d+)/.exec(line)?.[1] ?? 0);
    } else if (/\bgc=(mc|ms|mmc)\b/.test(line)) majors++;
  }
  const consumes = N * ROUNDS;
  process.stdout.write(JSON.stringify({ mode: MODE, inFlight: C, consumes, promotedBytesPerConsume: Math.round(promoted / consumes), scavenges, majors }) + "\n");
  process.exit(0);
}

if (!PROMOTED && typeof globalThis.gc !== "function") {
  const out = execFileSync(process.execPath, ["--expose-gc", "--max-semi-space-size=256", "--min-semi-space-size=256", "--import", "tsx", fileURLToPath(import.meta.url), String(N), String(C), String(ROUNDS), MODE], { stdio: ["ignore", "pipe", "inherit"] });
  process.stdout.write(out);
  process.exit(0);
}

const dir = mkdtempSync(join(tmpdir(), "aisa-consume-alloc-"));
const actor = { actor: "operator", action: "Bench", target: "t" };
const store = new LevelStore({ dir });
try {
  await store.open(Date.now());
  await store.adjustBalance("default", 1e15, actor);
  const keys = Array.from({ length: 64 }, () => makeKey({ unlimited: true, quotaTotal: 0 }));
  for (const k of keys) await store.insertKey(k.record, actor);
  let gcs = 0;
  const obs = new PerformanceObserver((list) => (gcs += list.getEntries().length));
  obs.observe({ entryTypes: ["gc"] });
  let seq = 0;
  const service = new ConsumeService({ store, clock: Date.now });
  const one = (k: (typeof keys)[number]) =>
    MODE === "service"
      ? service.consume({ requestId: `alloc-${seq++}`, target: { keyId: k.record.id }, model: "gpt-4o-mini", inputTokens: "1200", outputTokens: "300", units: "180" })
      : store.consume({ requestId: `alloc-${seq++}`, keyId: k.record.id, reservationId: "", model: "gpt-4o-mini", inputTokens: 1200, outputTokens: 300, units: 180, now: Date.now() });
  // MODE batch: the data port's ConsumeBatch as main.ts wires it, without grpc-js's call machinery.
  const def = authorizerServiceDefinition().consumeBatch;
  // serve's ConsumeService always has ext_proc metering's reservation gate (main.ts); the
  // key-id Consumes here never claim through it.
  if (MODE === "batch") service.gate = { claim: async () => undefined, unclaim: () => {} };
  const server = createAuthorizerServer({ authorizer: undefined as unknown as Authorizer, consume: service, clock: Date.now, log: () => {}, onConsumeLatency: () => {} });
  const metadata = new Metadata();
  const item = (k: (typeof keys)[number]) => ConsumeRequest.fromPartial({ requestId: `alloc-${seq++}`, target: { $case: "keyId", value: k.record.id }, model: "gpt-4o-mini", inputTokens: "1200", outputTokens: "300", units: "180" });
  const batchCall = (bytes: Buffer) =>
    new Promise<void>((resolve, reject) => {
      const request = def.requestDeserialize(bytes);
      server.consumeBatch({ request, metadata } as never, (err, res) => {
        if (err) return reject(err);
        def.responseSerialize(res!);
        resolve();
      });
    });
  // The request bytes of the next batch(), encoded before it (and before its heap is read): the
  // client's work is not the sidecar's.
  let requests: Buffer[] = [];
  const prepare = () => {
    if (MODE === "batch") requests = Array.from({ length: Math.ceil(N / C) }, () => Buffer.from(ConsumeBatchRequest.encode({ items: Array.from({ length: C }, () => item(keys[seq % keys.length]!)) }).finish()));
  };
  const batch = async () => {
    if (MODE === "batch") {
      // Calls of C items, one at a time: C Consumes in flight, one group commit per call.
      for (const bytes of requests) await batchCall(bytes);
      return;
    }
    let next = 0;
    await Promise.all(
      Array.from({ length: C }, async () => {
        while (next < N) {
          next++;
          const k = keys[seq % keys.length]!;
          await one(k);
        }
      }),
    );
  };
  prepare();
  await batch(); // warm-up (JIT)
  if (PROMOTED) {
    // young generation grown to its working size
    for (let r = 0; r < 3; r++) {
      prepare();
      await batch();
    }
    // PROMOTED_PROFILE=FILE: a sampling heap profile of the window that drops what minor GCs
    // collected: what is left was promoted (or is still live), by allocating function.
    const session = process.env.PROMOTED_PROFILE ? new Session() : undefined;
    if (session) {
      session.connect();
      await session.post("HeapProfiler.startSampling", { samplingInterval: 128, includeObjectsCollectedByMajorGC: true, includeObjectsCollectedByMinorGC: false } as never);
    }
    process.stdout.write("@@start\n");
    for (let r = 0; r < ROUNDS; r++) {
      prepare();
      await batch();
    }
    process.stdout.write("@@end\n");
    if (session) {
      const { profile } = await session.post("HeapProfiler.stopSampling");
      writeFileSync(process.env.PROMOTED_PROFILE!, JSON.stringify(profile));
    }
    obs.disconnect();
    await store.close();
    rmSync(dir, { recursive: true, force: true });
    process.exit(0); // the window is on stdout; nothing else to report
  }
  // ALLOC_PROFILE=FILE: a sampling heap profile of every allocation in one batch, garbage included
  // (node bench/consumeAlloc-top: by function). Not part of the figure.
  if (process.env.ALLOC_PROFILE) {
    const session = new Session();
    session.connect();
    prepare();
    await session.post("HeapProfiler.startSampling", { samplingInterval: 256, includeObjectsCollectedByMajorGC: true, includeObjectsCollectedByMinorGC: true } as never);
    await batch();
    const { profile } = await session.post("HeapProfiler.stopSampling");
    writeFileSync(process.env.ALLOC_PROFILE, JSON.stringify(profile));
    session.disconnect();
  }
  const perConsume: number[] = [];
  const external: number[] = []; // array-buffer bytes still held after the batch (not garbage measured: a lower bound)
  for (let r = 0; r < ROUNDS * 3 && perConsume.length < ROUNDS; r++) {
    prepare();
    globalThis.gc!();
    await new Promise((res) => setTimeout(res, 20)); // the forced GC's own entry arrives first
    const g0 = gcs;
    const m0 = process.memoryUsage();
    await batch();
    const m1 = process.memoryUsage();
    const h0 = m0.heapUsed;
    const h1 = m1.heapUsed;
    external.push((m1.arrayBuffers - m0.arrayBuffers) / N);
    await new Promise((res) => setTimeout(res, 20)); // let the observer report
    if (gcs === g0) perConsume.push((h1 - h0) / N);
    else if (process.env.DEBUG) process.stderr.write(`round ${r}: ${gcs - g0} GCs, discarded\n`);
  }
  obs.disconnect();
  perConsume.sort((a, b) => a - b);
  const median = perConsume[Math.floor(perConsume.length / 2)] ?? NaN;
  process.stdout.write(JSON.stringify({ mode: MODE, n: N, inFlight: C, rounds: perConsume.length, bytesPerConsume: Math.round(median), all: perConsume.map(Math.round) }) + "\n");
} finally {
  await store.close();
  rmSync(dir, { recursive: true, force: true });
}
