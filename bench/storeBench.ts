// In-process store benchmarks on a seeded data directory, before the sidecar starts:
//  - open: LevelDB open + building the hot index from disk (the bulk of start-up);
//  - lookup: store.lookup(hash) with uniform random draws over ALL N stored keys — the
//    worst case for caches, unlike a real key mix; best of 3 passes (the machine is shared);
//  - durable Consume at the store level: LevelStore.consume with C calls in flight, each
//    answered only after its group-committed batch is synced — the engine without gRPC.
// Usage: node --expose-gc --import tsx bench/storeBench.ts '<json StoreBenchSpec>'
// Prints one JSON line (LookupResult) on stdout.
import { randomUUID } from "node:crypto";
import { readFile } from "node:fs/promises";
import { LevelStore } from "../src/store/level/levelStore.js";
import { summarize, type LatencySummary } from "./lib/stats.js";

export interface StoreBenchSpec {
  dir: string;
  hashesFile: string;
  draws: number;
  /** ids: "random" gives each Consume a UUID for its request id (default: a counter). */
  consume: { keyIds: string[]; concurrency: number[]; durationMs: number; warmupMs: number; ids?: "counter" | "random" };
}

export interface StoreConsumeResult {
  concurrency: number;
  calls: number;
  throughput: number;
  latencyMs: LatencySummary;
  batches: number;
  meanBatch: number;
}

export interface LookupResult {
  keys: number;
  /** LevelStore.open(): LevelDB open + building the hot index from disk, in-process. */
  openMs: number;
  /** Heap and typed arrays after open and a full GC (MB). */
  heapMb: number;
  arrayBuffersMb: number;
  draws: number;
  lookupNsPerOp: number;
  findByHashNsPerOp: number;
  consume: StoreConsumeResult[];
}

async function consumeBench(store: LevelStore, keyIds: string[], concurrency: number, warmupMs: number, durationMs: number, tag: string, randomIds: boolean): Promise<StoreConsumeResult> {
  let batches = 0;
  let submissions = 0;
  let measuring = false;
  let stop = false;
  let seq = 0;
  const lat: number[] = [];
  store.onBatch = (n) => {
    if (measuring) {
      batches++;
      submissions += n;
    }
  };
  const worker = async (w: number) => {
    let k = w;
    while (!stop) {
      const s = performance.now();
      const was = measuring;
      const r = await store.consume({ requestId: randomIds ? randomUUID() : `${tag}-${concurrency}-${seq++}`, keyId: keyIds[k++ % keyIds.length]!, reservationId: "", model: "gpt-4o-mini", inputTokens: 1200, outputTokens: 300, units: 180, now: Date.now() });
      if (r.replayed) throw new Error("unexpected replay");
      if (was && measuring) lat.push(performance.now() - s);
    }
  };
  const workers = Array.from({ length: concurrency }, (_, i) => worker(i));
  await new Promise((r) => setTimeout(r, warmupMs));
  measuring = true;
  const t0 = performance.now();
  await new Promise((r) => setTimeout(r, durationMs));
  measuring = false;
  const seconds = (performance.now() - t0) / 1000;
  stop = true;
  await Promise.all(workers);
  store.onBatch = undefined;
  return { concurrency, calls: lat.length, throughput: lat.length / seconds, latencyMs: summarize(lat), batches, meanBatch: batches ? submissions / batches : 0 };
}

/** Best of 3 passes over `draws` uniform draws: store.lookup and the bare hash probe (ns/op). */
function lookupBench(store: LevelStore, all: Uint8Array, n: number, draws: number): { best: number; bestFind: number } {
  const views: Uint8Array[] = new Array(draws);
  for (let i = 0; i < draws; i++) {
    const j = Math.floor(Math.random() * n);
    views[i] = all.subarray(j * 32, j * 32 + 32);
  }
  const now = Date.now();
  const pass = (fn: (h: Uint8Array) => boolean) => {
    let ok = 0;
    const s = process.hrtime.bigint();
    for (let i = 0; i < draws; i++) if (fn(views[i]!)) ok++;
    const ns = Number(process.hrtime.bigint() - s) / draws;
    if (ok !== draws) throw new Error(`lookup missed ${draws - ok} of ${draws}`);
    return ns;
  };
  const lookup = (h: Uint8Array) => store.lookup(h, now) !== undefined;
  const find = (h: Uint8Array) => store.index.findByHash(h, now) >= 0;
  let best = Infinity;
  let bestFind = Infinity;
  for (let r = 0; r < 3; r++) {
    best = Math.min(best, pass(lookup));
    bestFind = Math.min(bestFind, pass(find));
  }
  return { best, bestFind };
}

async function main(): Promise<void> {
  const spec = JSON.parse(process.argv[2]!) as StoreBenchSpec;
  const all = new Uint8Array(await readFile(spec.hashesFile));
  const n = all.length / 32;
  const store = new LevelStore({ dir: spec.dir });
  const t0 = performance.now();
  await store.open(Date.now());
  const openMs = performance.now() - t0;
  try {
    if (store.index.size !== n) throw new Error(`store has ${store.index.size} keys, hashes file ${n}`);
    (globalThis as any).gc?.();
    const mu = process.memoryUsage();
    const draws = Math.max(1, spec.draws);
    const { best, bestFind } = lookupBench(store, all, n, draws);
    // The draws' 2M views are garbage now: collect them before the Consume runs, so a major
    // GC walking them does not land in (and set) the Consume latency tail.
    (globalThis as any).gc?.();
    const consume: StoreConsumeResult[] = [];
    const tag = `store-${Date.now().toString(36)}`;
    for (const c of spec.consume.concurrency) consume.push(await consumeBench(store, spec.consume.keyIds, c, spec.consume.warmupMs, spec.consume.durationMs, tag, spec.consume.ids === "random"));
    const out: LookupResult = {
      keys: n,
      openMs,
      heapMb: mu.heapUsed / 1048576,
      arrayBuffersMb: mu.arrayBuffers / 1048576,
      draws,
      lookupNsPerOp: best,
      findByHashNsPerOp: bestFind,
      consume,
    };
    process.stdout.write(JSON.stringify(out) + "\n");
  } finally {
    await store.close();
  }
}

main().catch((err) => {
  process.stderr.write(`storeBench failed: ${err?.stack ?? err}\n`);
  process.exit(1);
});
