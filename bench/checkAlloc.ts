// Bytes allocated per Envoy Check in-process: the Envoy endpoint's own decode → decide → encode
// (createEnvoyH2Methods over createEnvoyCheck, as main.ts wires them), without HTTP/2.
// Same method as consumeAlloc.ts: a young generation big enough for a batch, a GC before it,
// heapUsed after minus before over N (batches during which a GC ran are discarded).
// ALLOC_PROFILE=FILE: a sampling heap profile of one batch, garbage included.
// CHECK_ALLOC_WIRED=1: the Authorizer's onDecision and the method's onLatency feed the metrics
// and the usage recorder as main.ts wires them (as checkPromoted.ts does); without it, neither.
// Usage: node --import tsx bench/checkAlloc.ts [N=20000] [rounds=5]
import { execFileSync } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { Session } from "node:inspector/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { PerformanceObserver } from "node:perf_hooks";
import { fileURLToPath } from "node:url";
import { HealthState } from "../src/transport/health.js";
import { Authorizer } from "../src/service/authorizer.js";
import { createEnvoyCheck } from "../src/transport/envoy/authorizationService.js";
import { createEnvoyH2Methods } from "../src/transport/envoy/h2Methods.js";
import { Metrics } from "../src/observability/metrics.js";
import { UsageRecorder } from "../src/service/usage.js";
import { resolvePrice } from "../src/policy/pricing.js";
import { openCheckStore } from "./lib/checkStore.js";
import { encodeEnvoyCheck, envoyCheckRequest } from "./lib/payloads.js";

const [N = 20_000, ROUNDS = 5] = process.argv.slice(2).map(Number);
if (typeof globalThis.gc !== "function") {
  const out = execFileSync(process.execPath, ["--expose-gc", "--max-semi-space-size=256", "--min-semi-space-size=256", "--import", "tsx", fileURLToPath(import.meta.url), String(N), String(ROUNDS)], {
    stdio: ["ignore", "pipe", "inherit"],
    env: process.env,
  });
  process.stdout.write(out);
  process.exit(0);
}

const dir = mkdtempSync(join(tmpdir(), "aisa-check-alloc-"));
const { store, secret } = await openCheckStore(dir);
try {
  const wired = process.env.CHECK_ALLOC_WIRED === "1";
  const metrics = new Metrics();
  const recorder = new UsageRecorder({ store, clock: Date.now, isPriced: (m) => resolvePrice(store, m) !== undefined, onError: () => {} });
  const authorizer = new Authorizer({
    store,
    reservationTtlMs: 600_000,
    policy: { denyUnpricedModels: true, defaultEstimateUnits: 1000, inputEstimateTokens: 1000, defaultMaxTokens: 1024 },
    onDecision: wired
      ? (reason, outcome, model) => {
          metrics.countCheck(reason);
          recorder.recordDecision(reason, outcome, model);
        }
      : undefined,
  });
  const onLatency = wired ? (s: number) => metrics.observeCheckLatency(s) : () => {};
  const methods = createEnvoyH2Methods({ decide: createEnvoyCheck({ authorizer, xffTrustedHops: 0, clock: Date.now }), health: new HealthState(), onLatency });
  const check = methods["/envoy.service.auth.v3.Authorization/Check"]!;
  const bytes = encodeEnvoyCheck(envoyCheckRequest({ secret }));
  let sink = 0;
  const batch = () => {
    // As the endpoint sends it: the whole frame when the method writes one (h2unary.ts send()).
    for (let i = 0; i < N; i++) {
      const res = check.handle(check.decode(bytes));
      sink += (check.frame ? check.frame(res) : check.encode(res)).length;
    }
  };
  batch();
  if (process.env.ALLOC_PROFILE) {
    const session = new Session();
    session.connect();
    await session.post("HeapProfiler.startSampling", { samplingInterval: 256, includeObjectsCollectedByMajorGC: true, includeObjectsCollectedByMinorGC: true } as never);
    batch();
    const { profile } = await session.post("HeapProfiler.stopSampling");
    writeFileSync(process.env.ALLOC_PROFILE, JSON.stringify(profile));
    session.disconnect();
  }
  let gcs = 0;
  const obs = new PerformanceObserver((list) => (gcs += list.getEntries().length));
  obs.observe({ entryTypes: ["gc"] });
  const per: number[] = [];
  for (let r = 0; r < ROUNDS * 3 && per.length < ROUNDS; r++) {
    globalThis.gc!();
    await new Promise((res) => setTimeout(res, 20));
    const g0 = gcs;
    const h0 = process.memoryUsage().heapUsed;
    batch();
    const h1 = process.memoryUsage().heapUsed;
    await new Promise((res) => setTimeout(res, 20));
    if (gcs === g0) per.push((h1 - h0) / N);
  }
  obs.disconnect();
  per.sort((a, b) => a - b);
  process.stdout.write(JSON.stringify({ n: N, wired, rounds: per.length, bytesPerCheck: Math.round(per[Math.floor(per.length / 2)] ?? NaN), all: per.map(Math.round), sink: sink > 0 }) + "\n");
} finally {
  await store.close();
  rmSync(dir, { recursive: true, force: true });
}
