// In-process CPU per Envoy Check of ROOT's src (decode → handle → frame, as checkAlloc.ts drives it, no
// HTTP/2): µs of process CPU over N Checks, 5 batches, median. Run two roots alternately for an A/B.
// Usage: node --import tsx bench/checkCpu.ts ROOT [N=100000]
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
const root = resolve(process.argv[2] ?? ".");
const N = Number(process.argv[3] ?? 100000);
const { HealthState } = await import(`${root}/src/transport/health.ts`);
const { Authorizer } = await import(`${root}/src/service/authorizer.ts`);
const { createEnvoyCheck } = await import(`${root}/src/transport/envoy/authorizationService.ts`);
const { createEnvoyH2Methods } = await import(`${root}/src/transport/envoy/h2Methods.ts`);
const { openCheckStore } = await import(`${root}/bench/lib/checkStore.ts`);
const { encodeEnvoyCheck, envoyCheckRequest } = await import(`${root}/bench/lib/payloads.ts`);
const dir = mkdtempSync(join(tmpdir(), "aisa-check-cpu-"));
const { store, secret } = await openCheckStore(dir);
const authorizer = new Authorizer({ store, reservationTtlMs: 600_000, policy: { denyUnpricedModels: true, defaultEstimateUnits: 1000, inputEstimateTokens: 1000, defaultMaxTokens: 1024 } });
const methods = createEnvoyH2Methods({ decide: createEnvoyCheck({ authorizer, xffTrustedHops: 0, clock: Date.now }), health: new HealthState(), onLatency: () => {} });
const check = methods["/envoy.service.auth.v3.Authorization/Check"];
const bytes = encodeEnvoyCheck(envoyCheckRequest({ secret }));
let sink = 0;
const batch = () => { for (let i = 0; i < N; i++) sink += check.frame(check.handle(check.decode(bytes))).length; };
batch();
const out: number[] = [];
for (let r = 0; r < 5; r++) { const t0 = process.cpuUsage(); batch(); const t = process.cpuUsage(t0); out.push((t.user + t.system) / N); }
out.sort((a, b) => a - b);
console.log(JSON.stringify({ root, usPerCheck: +out[2]!.toFixed(3), all: out.map((x) => +x.toFixed(3)), sink: sink > 0 }));
await store.close();
rmSync(dir, { recursive: true, force: true });
