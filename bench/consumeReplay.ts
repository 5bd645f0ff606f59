// What LevelDB's write buffer costs after a crash (issue 18, item 3): the log a crash leaves
// holds up to one write buffer of synced batches, and the next open replays it before the
// store can serve. For each write-buffer size (`--buffers 4,64`, MB), alternated per round:
//   1. a "fill" child opens the store (this tree's LevelStore, `writeBufferMb`), adds 64 keys,
//      runs durable Consumes 64 in flight through one log switch (to learn how large a full log
//      gets), then until the next log reaches `--fill` × that (0.9: the worst case, just before
//      a switch), prints how many were acknowledged,
//      and kills itself with SIGKILL (no close: the log is left as a crash leaves it);
//   2. an "open" child times `store.open()` on that directory (the replay, the load, the
//      reopen that unmaps the load's tables), checks the account was charged for every
//      acknowledged Consume (nothing acknowledged is lost), records its peak RSS, closes, and
//      times a second, clean open of the same directory (no log to replay) as the baseline.
// Prints one line per child and the medians; `--json` one JSON object on stdout.
// Usage: node --import tsx bench/consumeReplay.ts [--buffers 4,64] [--rounds 3] [--fill 0.9]
import { spawn } from "node:child_process";
import { mkdtempSync, readdirSync, rmSync, statSync } from "node:fs";
import { loadavg, tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { fundAndAddKeys } from "./lib/consumeKeys.js";
import { median } from "./lib/stats.js";

const UNITS = 180;
/** A full log is ~0.86× the write buffer here; a last sample below 0.4× was taken too early to say. */
const FULL_LOG_MIN = 0.4;

interface FillResult {
  acked: number;
  logMb: number;
}
interface OpenResult {
  crashOpenMs: number;
  cleanOpenMs: number;
  charged: number;
  peakRssMb: number;
}

/** Size (MB) of LevelDB's newest log file in `db`. */
function liveLogMb(db: string): number {
  const logs = readdirSync(db).filter((f) => f.endsWith(".log")).sort();
  return logs.length ? statSync(join(db, logs[logs.length - 1]!)).size / 2 ** 20 : 0;
}

async function openStore(dir: string, mb: number) {
  const { LevelStore } = await import("../src/store/level/levelStore.js");
  return new LevelStore({ dir, writeBufferMb: mb });
}

async function fillChild(dir: string, mb: number, fill: number): Promise<never> {
  const { makeKey } = await import("../test/contract/store.contract.js");
  const store = await openStore(dir, mb);
  await store.open(Date.now());
  const keys = await fundAndAddKeys(store, makeKey);
  let acked = 0;
  let seq = 0;
  let full = false;
  // A log is switched when the memtable fills, which is before the log holds the buffer's size
  // in bytes (the memtable's nodes cost more than the log's records). So the first log is run
  // to its switch to learn how large a full log gets; the next is filled to `fill` × that.
  const db = join(dir, "db");
  const logName = () => readdirSync(db).filter((f) => f.endsWith(".log")).sort().pop();
  const first = logName();
  let fullMb = 0;
  let lastMb = 0;
  // Polled every 32 acknowledged Consumes (~0.5 % of the log at 1 MB), not on a timer: a
  // timer starved by a busy loop saw the log last at a few KB before the switch, and the fill
  // learned a "full" log of that size (a crash at 0.02 MB in a CI run).
  let current = first;
  const poll = () => {
    const name = logName();
    if (fullMb === 0) {
      if (name === current) lastMb = liveLogMb(db);
      else if (lastMb >= FULL_LOG_MIN * mb) fullMb = lastMb;
      else {
        // Seen too late to tell how full it got: learn from the next switch.
        current = name;
        lastMb = 0;
      }
    } else if (liveLogMb(db) >= fill * fullMb) full = true;
  };
  const worker = async (w: number) => {
    while (!full) {
      await store.consume({ requestId: `replay-${seq++}`, keyId: keys[(w + seq) & 63]!, reservationId: "", model: "gpt-4o-mini", inputTokens: 1200, outputTokens: 300, units: UNITS, now: Date.now() });
      if (++acked % 32 === 0) poll();
    }
  };
  await Promise.all(Array.from({ length: 64 }, (_, w) => worker(w)));
  const out: FillResult = { acked, logMb: liveLogMb(db) };
  process.stdout.write(JSON.stringify(out) + "\n", () => process.kill(process.pid, "SIGKILL"));
  return new Promise<never>(() => {});
}

async function openChild(dir: string, mb: number): Promise<OpenResult> {
  const timeOpen = async () => {
    const store = await openStore(dir, mb);
    const t = performance.now();
    await store.open(Date.now());
    return { store, ms: performance.now() - t };
  };
  const a = await timeOpen();
  const charged = a.store.getAccount("default")!.counters.charged;
  await a.store.close();
  const b = await timeOpen();
  await b.store.close();
  return { crashOpenMs: a.ms, cleanOpenMs: b.ms, charged, peakRssMb: Math.round(process.resourceUsage().maxRSS / 1024) };
}

function runChild<T>(args: string[], killed: boolean): Promise<T> {
  return new Promise((res, rej) => {
    const p = spawn(process.execPath, ["--import", "tsx", fileURLToPath(import.meta.url), "--child", ...args], { stdio: ["ignore", "pipe", "inherit"] });
    let out = "";
    p.stdout.on("data", (d) => (out += d));
    p.on("exit", (code, signal) => {
      const ok = killed ? signal === "SIGKILL" : code === 0;
      if (!ok) return rej(new Error(`consumeReplay child ${args[0]} exited ${code ?? signal}`));
      res(JSON.parse(out.trim().split("\n").pop()!));
    });
  });
}

async function main(): Promise<void> {
  const argv = process.argv.slice(2);
  const opt = (name: string, def: string) => {
    const i = argv.indexOf(name);
    return i >= 0 ? argv[i + 1]! : def;
  };
  if (argv[0] === "--child") {
    const [, kind, dir, mb, fill] = argv;
    if (kind === "fill") await fillChild(dir!, Number(mb), Number(fill));
    process.stdout.write(JSON.stringify(await openChild(dir!, Number(mb))) + "\n");
    return;
  }
  const buffers = opt("--buffers", "4,64").split(",").map(Number);
  const rounds = Number(opt("--rounds", "3"));
  const fill = Number(opt("--fill", "0.9"));
  const rows: Record<number, (FillResult & OpenResult)[]> = {};
  for (let r = 0; r < rounds; r++) {
    const order = r % 2 ? [...buffers].reverse() : buffers;
    for (const mb of order) {
      const dir = mkdtempSync(join(tmpdir(), "aisa-consume-replay-"));
      try {
        const f = await runChild<FillResult>(["fill", dir, String(mb), String(fill)], true);
        const o = await runChild<OpenResult>(["open", dir, String(mb)], false);
        if (o.charged < f.acked * UNITS) throw new Error(`${mb} MB: ${f.acked} Consumes acknowledged but ${o.charged / UNITS} charged after the crash`);
        (rows[mb] ??= []).push({ ...f, ...o });
        process.stderr.write(
          `round ${r} ${mb} MB: log at the crash ${f.logMb.toFixed(1)} MB (${f.acked} Consumes, all charged after it); open after the crash ${o.crashOpenMs.toFixed(0)} ms, clean open ${o.cleanOpenMs.toFixed(0)} ms; peak RSS of the opening process ${o.peakRssMb} MB; load ${loadavg()[0]!.toFixed(2)}\n`,
        );
      } finally {
        rmSync(dir, { recursive: true, force: true });
      }
    }
  }
  const summary = Object.fromEntries(
    buffers.map((mb) => {
      const x = rows[mb]!;
      return [mb, { logMb: median(x.map((y) => y.logMb)), crashOpenMs: median(x.map((y) => y.crashOpenMs)), cleanOpenMs: median(x.map((y) => y.cleanOpenMs)), replayMs: median(x.map((y) => y.crashOpenMs - y.cleanOpenMs)), peakRssMb: median(x.map((y) => y.peakRssMb)) }];
    }),
  );
  for (const [mb, s] of Object.entries(summary)) {
    process.stderr.write(`median ${mb} MB: log ${s.logMb.toFixed(1)} MB; open after a crash ${s.crashOpenMs.toFixed(0)} ms (replay ${s.replayMs.toFixed(0)} ms over a clean open); peak RSS ${s.peakRssMb} MB\n`);
  }
  if (argv.includes("--json")) process.stdout.write(JSON.stringify({ buffers, rounds, fill, summary, rows }) + "\n");
}

await main();
