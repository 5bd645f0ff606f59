// CPU cost of the store's hot steps, in-process, as CPU time (robust on a shared machine where
// wall-clock throughput of a durable Consume swings with the other tenants' disk use):
//  - Check's store steps: lookup(hash) + reserve + release, best of 3 passes of 300k (ns/round);
//  - durable Consume, 64 in flight for 4 s: CPU µs per call (and calls/s, for reference).
// Usage: node --import tsx bench/storeCpu.ts <seeded dir (a copy: it is charged)> <seed.json> <hashes file>
// (bench/seed.ts writes the last two). Run two builds interleaved on copies of one seeded dir.
import { readFileSync } from "node:fs";
import { LevelStore } from "../src/store/level/levelStore.js";
const [dir, seedFile, hashesFile] = process.argv.slice(2) as [string, string, string];
const seed = JSON.parse(readFileSync(seedFile, "utf8"));
const hashes = readFileSync(hashesFile);
const store = new LevelStore({ dir });
await store.open(Date.now());
const n = hashes.length / 32;
const views: Uint8Array[] = [];
for (let i = 0; i < 4096; i++) views.push(new Uint8Array(hashes.buffer, hashes.byteOffset + ((i * 7919) % n) * 32, 32));
// 1. lookup + reserve + release (Check's store steps), CPU ns per round
const cpu = () => { const u = process.cpuUsage(); return (u.user + u.system) * 1000; };
let best = Infinity;
for (let pass = 0; pass < 3; pass++) {
  const N = 300_000;
  const c0 = cpu();
  const now = Date.now();
  for (let i = 0; i < N; i++) {
    const s = store.lookup(views[i & 4095]!, now)!;
    const r = store.reserve({ handle: s.handle, keyId: s.key.id, units: 1, now, ttlMs: 600_000 });
    if (r.ok) store.release(r.reservationId);
  }
  best = Math.min(best, (cpu() - c0) / N);
}
// 2. durable Consume, 64 in flight for 4 s: CPU µs per call
const ids: string[] = seed.consume.map((k: { id: string }) => k.id);
let seq = 0, calls = 0, stop = false;
const c0 = cpu(); const t0 = performance.now();
setTimeout(() => (stop = true), 4000);
await Promise.all(Array.from({ length: 64 }, async (_, w) => {
  let k = w;
  while (!stop) { await store.consume({ requestId: `cpu-${seq++}`, keyId: ids[k++ % ids.length]!, reservationId: "", model: "m", inputTokens: 1200, outputTokens: 300, units: 180, now: Date.now() }); calls++; }
}));
const cpuUs = (cpu() - c0) / 1000 / calls;
const secs = (performance.now() - t0) / 1000;
await store.close();
console.log(JSON.stringify({ checkStepsNs: Math.round(best), consumeCpuUsPerCall: +cpuUs.toFixed(1), consumePerSec: Math.round(calls / secs) }));
