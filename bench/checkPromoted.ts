// What the Envoy endpoint allocates that OUTLIVES a scavenge (so gets promoted and costs the
// old generation's mark-compacts), by allocation site: the endpoint (createH2UnaryServer +
// createEnvoyH2Methods over an Authorizer, its onDecision feeding the metrics and the usage
// recorder as main.ts wires them, on a LevelStore with one key) in this process, driven by
// h2load from outside (2 processes × 16 streams, saturation) with a sampling heap profile that
// keeps objects collected by major GCs and drops those a minor GC collected: what is left is
// what survived a scavenge. Also counts this process's GCs by kind over the load (--trace-gc
// is not needed: a PerformanceObserver of "gc" entries).
// Usage: node --import tsx bench/checkPromoted.ts [durationS=5] [top=25]
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { Session } from "node:inspector/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { PerformanceObserver, constants as perf } from "node:perf_hooks";
import { HealthState } from "../src/transport/health.js";
import { Authorizer } from "../src/service/authorizer.js";
import { createEnvoyCheck } from "../src/transport/envoy/authorizationService.js";
import { createEnvoyH2Methods } from "../src/transport/envoy/h2Methods.js";
import { createH2UnaryServer } from "../src/transport/h2unary.js";
import { Metrics } from "../src/observability/metrics.js";
import { UsageRecorder } from "../src/service/usage.js";
import { resolvePrice } from "../src/policy/pricing.js";
import { maintainStore } from "../src/service/scheduler.js";
import { openCheckStore } from "./lib/checkStore.js";
import { runLoad } from "./lib/loadgen.js";
import { ENVOY_CHECK_PATH, encodeEnvoyCheck, envoyCheckRequest, grpcFrame } from "./lib/payloads.js";

const [durationS = 5, top = 25] = process.argv.slice(2).map(Number);
const dir = mkdtempSync(join(tmpdir(), "aisa-check-promoted-"));
const scratch = mkdtempSync(join(tmpdir(), "aisa-check-promoted-load-"));
// Removed however the run ends (an h2load that fails to parse throws past the cleanup below).
process.on("exit", () => {
  rmSync(dir, { recursive: true, force: true });
  rmSync(scratch, { recursive: true, force: true });
});
const { store, secret } = await openCheckStore(dir);
const metrics = new Metrics();
const recorder = new UsageRecorder({ store, clock: Date.now, isPriced: (m) => resolvePrice(store, m) !== undefined, onError: () => {} });
const authorizer = new Authorizer({
  store,
  reservationTtlMs: 10_000,
  policy: { denyUnpricedModels: true, defaultEstimateUnits: 1000, inputEstimateTokens: 1000, defaultMaxTokens: 1024 },
  onDecision: (reason, outcome, model) => {
    metrics.countCheck(reason);
    recorder.recordDecision(reason, outcome, model);
  },
});
const methods = createEnvoyH2Methods({ decide: createEnvoyCheck({ authorizer, xffTrustedHops: 0, clock: Date.now }), health: new HealthState(), onLatency: (s) => metrics.observeCheckLatency(s) });
const server = createH2UnaryServer({ methods, maxReceiveMessageBytes: 4 << 20, toStatus: (e) => ({ code: 13, details: String(e) }) });
const port = await server.listen("127.0.0.1", 0);
// The sidecar's once-a-second steps (main.ts's scheduler): reservation expiry, the usage tick.
const flush = setInterval(() => recorder.tick(), 1000);
const sweep = setInterval(() => maintainStore(store, Date.now()), 1000);

const message = encodeEnvoyCheck(envoyCheckRequest({ secret }));
writeFileSync(join(scratch, "f"), grpcFrame(message));
writeFileSync(join(scratch, "m"), message);
const shot = { address: `127.0.0.1:${port}`, method: ENVOY_CHECK_PATH, frameFile: join(scratch, "f"), messageFile: join(scratch, "m") };
await runLoad("h2load", [shot], { conns: 1, streams: 16, durationS: 3, warmupS: 0, tmpDir: scratch });

const gcs = new Map<string, { n: number; ms: number }>();
const kinds: Record<number, string> = { [perf.NODE_PERFORMANCE_GC_MINOR]: "scavenge", [perf.NODE_PERFORMANCE_GC_MAJOR]: "mark-compact", [perf.NODE_PERFORMANCE_GC_INCREMENTAL]: "incremental", [perf.NODE_PERFORMANCE_GC_WEAKCB]: "weak" };
const obs = new PerformanceObserver((list) => {
  for (const e of list.getEntries()) {
    const k = kinds[(e as unknown as { detail: { kind: number } }).detail.kind] ?? "other";
    const g = gcs.get(k) ?? { n: 0, ms: 0 };
    g.n++;
    g.ms += e.duration;
    gcs.set(k, g);
  }
});
obs.observe({ entryTypes: ["gc"] });
const session = new Session();
session.connect();
await session.post("HeapProfiler.startSampling", { samplingInterval: 2048, includeObjectsCollectedByMajorGC: true, includeObjectsCollectedByMinorGC: false });
const r = await runLoad("h2load", [shot, shot], { conns: 1, streams: 16, durationS, warmupS: 0, tmpDir: scratch });
const { profile } = await session.post("HeapProfiler.stopSampling");
obs.disconnect();
session.disconnect();

interface N {
  callFrame: { functionName: string; url: string; lineNumber: number };
  selfSize: number;
  children: N[];
}
// Self size by allocation site (function + file:line), and by the nearest frame in src/ (who asked).
const bySite = new Map<string, number>();
const byOurs = new Map<string, number>();
let total = 0;
const label = (cf: N["callFrame"]) => `${cf.functionName || "(anonymous)"} ${cf.url.replace(/^.*\/(node_modules|src|bench)\//, "$1/").replace(/^node:/, "node:")}:${cf.lineNumber + 1}`;
const walk = (n: N, ours: string | null): void => {
  const mine = /\/src\//.test(n.callFrame.url) ? label(n.callFrame) : ours;
  if (n.selfSize > 0) {
    total += n.selfSize;
    bySite.set(label(n.callFrame), (bySite.get(label(n.callFrame)) ?? 0) + n.selfSize);
    byOurs.set(mine ?? "(no src/ frame)", (byOurs.get(mine ?? "(no src/ frame)") ?? 0) + n.selfSize);
  }
  for (const c of n.children) walk(c, mine);
};
walk(profile.head as unknown as N, null);
const n = Math.max(1, r.done);
const rows = (m: Map<string, number>) =>
  [...m]
    .sort((a, b) => b[1] - a[1])
    .slice(0, top)
    .map(([k, v]) => ({ site: k, bytesPerCheck: Math.round((v / n) * 10) / 10 }));
process.stdout.write(
  JSON.stringify(
    {
      checks: r.done,
      reqPerSec: Math.round(r.reqPerSec),
      survivedScavengeBytesPerCheck: Math.round((total / n) * 10) / 10,
      gc: Object.fromEntries([...gcs].map(([k, v]) => [k, { count: v.n, ms: Math.round(v.ms), perThousandChecks: Math.round((v.n / n) * 1e4) / 10 }])),
      bySite: rows(bySite),
      byNearestSrcFrame: rows(byOurs),
    },
    null,
    1,
  ) + "\n",
);
clearInterval(flush);
clearInterval(sweep);
await server.close(1000);
await recorder.flush();
await store.close();
rmSync(dir, { recursive: true, force: true });
rmSync(scratch, { recursive: true, force: true });
