// The main thread's share of handing a durable Consume batch to LevelDB and of Consume's ledger
// read (issue 18 item 3; bench/README.md, "Group commit"): the synchronous part of each call
// (until it returns its promise; the rest runs in the thread pool), per batch of 32 Consumes
// (65 ops: a 301-character ledger entry and a 48-character counters value per Consume, and the
// account's counters), alternated:
//   array   classic-level's `_batch` with an array of op objects (what abstract-level's batch ends in)
//   native  LevelDisk.writeRaw: the chained-batch binding into one reused WriteBatch
// (both synced, as the writer's batches are)
// and per read of 32 absent ids, from the call until its values are there (the public path's
// work is not all before its first await, so its synchronous part undercounts it; the native
// lookup in the thread pool is the same for both):
//   sublevel  the sublevel's public getMany
//   raw       `_getMany` with the keys prefixed by the caller (LevelDisk.rawGetMany)
// Usage: node --import tsx bench/levelOps.ts [--rounds 3] [--batches 3000]
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { LevelDisk } from "../src/store/level/disk.js";
import type { RawOp } from "../src/store/level/codecs.js";
import { median } from "./lib/stats.js";

const arg = (name: string, d: number) => {
  const i = process.argv.indexOf(name);
  return i > 0 ? Number(process.argv[i + 1]) : d;
};
const rounds = arg("--rounds", 3);
const batches = arg("--batches", 3000);
const dir = mkdtempSync(join(tmpdir(), "aisa-levelops-"));
/** What the engine's writer passes (a synced batch). */
const SYNC = { sync: true, keyEncoding: "utf8", valueEncoding: "utf8" };
const V = "x".repeat(301);
const K = "y".repeat(48);
let seq = 0;
function ops(): RawOp[] {
  const o: RawOp[] = [];
  for (let i = 0; i < 32; i++) {
    o.push({ type: "put", key: `!ledger!req-${seq++}-abcdefghijkl`, value: V });
    o.push({ type: "put", key: `!kctr!key_${String(i).padStart(20, "0")}`, value: K });
  }
  o.push({ type: "put", key: "!actr!default", value: "z".repeat(69) });
  return o;
}

async function main(): Promise<void> {
  // The engine's own disk: `native` is LevelDisk.writeRaw and `raw` LevelDisk.rawGetMany, as they ship.
  const disk = new LevelDisk(dir);
  await disk.open();
  const d = disk.db as any;
  let lastNative = "";
  const write: Record<string, (o: RawOp[]) => Promise<void>> = {
    array: (o) => d._batch(o, SYNC),
    native: (o) => {
      lastNative = o[0]!.key;
      return disk.writeRaw(o);
    },
  };
  const read: Record<string, (ids: string[]) => Promise<unknown>> = {
    sublevel: (ids) => disk.subs.ledger.getMany(ids),
    raw: (ids) => disk.rawGetMany("ledger", ids),
  };
  for (let r = 0; r < rounds; r++) {
    const line: string[] = [];
    for (const [name, f] of Object.entries(write)) {
      const t: number[] = [];
      for (let b = 0; b < batches; b++) {
        const o = ops();
        const s = performance.now();
        const p = f(o);
        t.push((performance.now() - s) * 1000);
        await p;
      }
      line.push(`write ${name} ${median(t).toFixed(1)} µs (${(median(t) / 65).toFixed(2)} per op)`);
    }
    for (const [name, f] of Object.entries(read)) {
      const t: number[] = [];
      for (let b = 0; b < batches; b++) {
        const ids = Array.from({ length: 32 }, () => `req-${seq++}-abcdefghijklmnop`);
        const s = performance.now();
        await f(ids);
        t.push((performance.now() - s) * 1000);
      }
      line.push(`read ${name} ${median(t).toFixed(1)} µs`);
    }
    process.stdout.write(`round ${r}: ${line.join(", ")} (medians: writes' synchronous part, reads' whole)\n`);
  }
  // Both paths wrote what they were given: the last native batch's first entry reads back.
  if ((await disk.db.get(lastNative, SYNC as never)) !== V) throw new Error(`the native batch's ${lastNative} did not read back`);
  await disk.db.close();
  rmSync(dir, { recursive: true, force: true });
}
main().catch((err) => {
  process.stderr.write(`${err instanceof Error ? err.stack : String(err)}\n`);
  rmSync(dir, { recursive: true, force: true });
  process.exit(1);
});
