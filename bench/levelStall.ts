// The main thread's stalls in LevelDB reads while LevelDB drops obsolete files (issue 18 item 3).
// LevelDB 1.20 unlinks a switched memtable's log and compacted tables under its database mutex,
// and a read started on the main thread (getMany, get) takes that mutex for its snapshot: the
// read's *call* blocks the event loop for as long as the unlink frees blocks. This bench writes
// synced batches of 64 × 500 B from two writers (as the store's writer does, in the thread
// pool) and, on the main thread, starts a 32-key getMany back to back, timing each call's
// synchronous part. Two variants of the same run, alternating: LevelDB alone ("plain"), and with
// store/level/deferredUnlink.ts giving each file a second name ("deferred"), whose sweep runs
// once a second as the store's maintenance does.
// Usage: node --import tsx bench/levelStall.ts [--mb 64] [--ms 8000] [--rounds 2] [--json]
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { ClassicLevel } from "classic-level";
import { DeferredUnlink } from "../src/store/level/deferredUnlink.js";

interface StallResult {
  variant: "plain" | "deferred";
  writeBufferMb: number;
  reads: number;
  writtenMb: number;
  /** The read call's synchronous part: p99 and max (ms), and calls over 5 ms. */
  p99Ms: number;
  maxMs: number;
  over5ms: number;
  freed: number;
}

function arg(name: string, dflt: number): number {
  const i = process.argv.indexOf(name);
  return i >= 0 ? Number(process.argv[i + 1]) : dflt;
}

export async function levelStall(variant: "plain" | "deferred", mb: number, ms: number): Promise<StallResult> {
  const dir = mkdtempSync(join(tmpdir(), "aisa-bench-stall-"));
  const db = new ClassicLevel<string, string>(join(dir, "db"), { writeBufferSize: mb * 2 ** 20 });
  await db.open();
  const d = variant === "deferred" ? await DeferredUnlink.start(join(dir, "db"), join(dir, "db-unlinking")) : null;
  const sweep = d ? setInterval(() => void d.sweep(), 1000) : null;
  const val = "x".repeat(500);
  let seq = 0;
  let stop = false;
  const writer = async () => {
    while (!stop) {
      const ops = [];
      for (let i = 0; i < 64; i++) ops.push({ type: "put" as const, key: "k" + (seq++).toString(36).padStart(10, "0"), value: val });
      await db.batch(ops, { sync: true });
    }
  };
  const writers = [writer(), writer()];
  const keys = Array.from({ length: 32 }, (_, i) => "k" + i.toString(36).padStart(10, "0"));
  const calls: number[] = [];
  const t0 = performance.now();
  while (performance.now() - t0 < ms) {
    const a = performance.now();
    const p = db.getMany(keys);
    calls.push(performance.now() - a);
    await p;
  }
  stop = true;
  await Promise.all(writers);
  if (sweep) clearInterval(sweep);
  const freed = d?.stats().freed ?? 0;
  await db.close();
  await d?.stop();
  rmSync(dir, { recursive: true, force: true });
  calls.sort((x, y) => x - y);
  return {
    variant,
    writeBufferMb: mb,
    reads: calls.length,
    writtenMb: Math.round((seq * 515) / 2 ** 20),
    p99Ms: calls[Math.floor(calls.length * 0.99)] ?? NaN,
    maxMs: calls[calls.length - 1] ?? NaN,
    over5ms: calls.filter((c) => c > 5).length,
    freed,
  };
}

async function main(): Promise<void> {
  const mb = arg("--mb", 64);
  const ms = arg("--ms", 8000);
  const rounds = arg("--rounds", 2);
  const out: StallResult[] = [];
  for (let r = 0; r < rounds; r++) {
    for (const v of r % 2 === 0 ? (["plain", "deferred"] as const) : (["deferred", "plain"] as const)) {
      const x = await levelStall(v, mb, ms);
      out.push(x);
      if (!process.argv.includes("--json")) console.log(`r${r} ${v.padEnd(8)} ${mb} MB buffer: ${x.reads} reads, ${x.writtenMb} MB written, read call p99 ${x.p99Ms.toFixed(3)} max ${x.maxMs.toFixed(1)} ms, ${x.over5ms} over 5 ms, ${x.freed} freed`);
    }
  }
  if (process.argv.includes("--json")) console.log(JSON.stringify(out));
}

if (process.argv[1]?.endsWith("levelStall.ts")) {
  main().catch((err) => {
    console.error(err);
    process.exit(1);
  });
}
