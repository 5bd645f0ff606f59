// Usage history: what a small account's 24-hour QueryUsage costs next to a large history of
// other tenants (issue 13 #8), and what the one-time migration from the old layout costs.
//
//   node --import tsx bench/usageQuery.ts [--buckets 500000] [--runs 20]
//
// 1. Writes `buckets` day buckets of other tenants' keys in the OLD layout (gran|dim|id|start,
//    schema 2), plus the small account's rows, straight into LevelDB.
// 2. Opens the store: the migration runs (timed: the whole open, LevelDB's own log replay of
//    step 1 done before).
// 3. Times the small account's 24-hour query (by key, hour and day buckets) through
//    UsageRecorder.query, as an account-scoped token's QueryUsage runs it, and counts the
//    entries the store read; then, for comparison, a scan of every day key row (what the old
//    layout read for the same query).
// Not part of `npm run bench` (it measures no Check path); prints one JSON document.
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Level } from "level";
import { bucketStart, GRAN_MS, UsageRecorder, zeroCounters } from "../src/service/usage.js";
import { LevelStore } from "../src/store/level/levelStore.js";
import type { UsageBucket } from "../src/store/types.js";

function arg(name: string, def: number): number {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? Number(process.argv[i + 1]) : def;
}

const BUCKETS = arg("buckets", 500_000);
const RUNS = arg("runs", 20);
const KEYS_PER_ACCOUNT = 5;
const DAYS = 100;
const now = Date.UTC(2026, 5, 10, 12, 30);
const clock = () => now;
const hex = (t: number) => t.toString(16).padStart(12, "0");

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)]!;
}

async function main(): Promise<void> {
  const dir = await mkdtemp(join(tmpdir(), "aisa-usage-bench-"));
  try {
    // A fresh store (schema, default account), then the old layout written under it.
    let store = new LevelStore({ dir, clock });
    await store.open(now);
    await store.close();
    const db = new Level<string, unknown>(`${dir}/db`, { valueEncoding: "json" });
    const usage = db.sublevel<string, unknown>("usage", { valueEncoding: "json" });
    const meta = db.sublevel<string, unknown>("meta", { valueEncoding: "json" });
    let ops: { type: "put"; key: string; value: UsageBucket }[] = [];
    const flush = async () => {
      await usage.batch(ops);
      ops = [];
    };
    const t0 = performance.now();
    const accounts = Math.ceil(BUCKETS / (KEYS_PER_ACCOUNT * DAYS));
    let written = 0;
    for (let a = 0; a < accounts && written < BUCKETS; a++) {
      for (let k = 0; k < KEYS_PER_ACCOUNT && written < BUCKETS; k++) {
        const id = `key_other${a}_${k}`;
        for (let d = 0; d < DAYS && written < BUCKETS; d++) {
          const start = bucketStart("d", now) - d * GRAN_MS.d;
          ops.push({ type: "put", key: `d|key|${id}|${hex(start)}`, value: { gran: "d", dim: "key", id, start, ...zeroCounters(), requests: 1 } });
          written++;
          if (ops.length >= 10_000) await flush();
        }
      }
    }
    await flush();
    await meta.del("usage");
    await meta.put("schema", 2);
    await db.close();
    const writeMs = performance.now() - t0;
    // Reopen once so LevelDB replays its log here, not inside the timed open below.
    const again = new Level<string, unknown>(`${dir}/db`, { valueEncoding: "json" });
    await again.open();
    await again.close();

    const t1 = performance.now();
    const c1 = process.cpuUsage();
    store = new LevelStore({ dir, clock });
    await store.open(now);
    const migrateMs = performance.now() - t1;
    const c2 = process.cpuUsage(c1);

    const r = new UsageRecorder({ store, clock });
    const who = { keyId: "key_small", accountId: "small", group: "default" };
    for (const t of [now - 30 * 60_000, now - 5 * 3_600_000, now - 20 * 3_600_000]) r.recordDecision("ALLOWED", who, "m1", t);
    await r.flush();

    const small = { tokenId: "tok", accountId: "small", readOnly: true };
    const result: Record<string, unknown> = { buckets: written, accounts, writeOldLayoutMs: Math.round(writeMs), migrateOnOpenMs: Math.round(migrateMs), migrateOnOpenCpuMs: Math.round((c2.user + c2.system) / 1000) };
    for (const gran of ["h", "d"] as const) {
      const times: number[] = [];
      let read = 0;
      let rows = 0;
      for (let i = 0; i < RUNS; i++) {
        const before = store.usageEntriesRead;
        const t = performance.now();
        const res = await r.query({ gran, groupBy: "key", since: now - 86_400_000 }, small);
        times.push(performance.now() - t);
        read = store.usageEntriesRead - before;
        rows = res.rows.length;
      }
      result[`smallAccount24h_${gran}`] = { medianMs: +median(times).toFixed(3), entriesRead: read, rows };
    }
    // What the old layout read for the same query: every key row of the granularity.
    const times: number[] = [];
    let read = 0;
    for (let i = 0; i < Math.min(RUNS, 3); i++) {
      const before = store.usageEntriesRead;
      const t = performance.now();
      await store.queryUsageBuckets({ gran: "d", dim: "key", since: 0, until: Number.MAX_SAFE_INTEGER });
      times.push(performance.now() - t);
      read = store.usageEntriesRead - before;
    }
    result["fullScanOfDayKeyRows_asLayout1"] = { medianMs: Math.round(median(times)), entriesRead: read };
    await r.stop();
    await store.close();
    process.stdout.write(JSON.stringify(result, null, 2) + "\n");
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

await main();
