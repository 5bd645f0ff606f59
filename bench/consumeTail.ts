// Durable Consume at the store level: latency tail, throughput, CPU and GC per build, interleaved
// (issue 18, item 3). Each round starts one child process per build (`--root` checkouts: this
// tree and e.g. a `git archive` of the baseline with node_modules linked), on a fresh data dir
// with 64 keys, and runs C Consumes in flight for the duration; rounds alternate the builds'
// order. A child reports calls/s, p50/p99/p99.9 (ms), CPU µs per call, and the GC pauses
// (PerformanceObserver 'gc': count, scavenges, majors, longest, total ms) during the window.
//
// The floor, in the same rounds (`--floor level,fs`; `--floor none` to skip): the same durable
// writes with no Consume logic. C workers each submit pre-encoded ops of a Consume's size (a
// real ledger entry's text under a new key, the key's 48-character counters; the account's
// 69-character counters once per batch, keys coalesced per batch as the writer does) to a
// minimal group-commit loop (one batch in flight, the next one gathering; an idle loop starts
// its batch in setImmediate, as the writer does), and wait for it.
// `level`: written through classic-level's `_batch` with `sync: true` (what the engine's writer
// ends in). `fs`: the same bytes per batch appended to a file with `writeSync` then `fdatasync`
// (in the thread pool, as LevelDB's log sync): the disk alone. Each round prints Consume p99 ÷
// the floor's p99 at the same in-flight count. `wal` (not run unless named): a log of our own in
// front of LevelDB at its best: each batch fdatasync'd into a preallocated file, then written to
// LevelDB unsynced behind it, in order, at most 4,096 ops behind (bench/README.md, "Stop 35").
// With two or more roots, the end prints each build's per-round ratios to the first's: calls/s,
// the main thread's busy µs per call (event-loop utilization: the JS side alone, which another
// process's disk traffic does not move as it moves the rate) and p99. `--cpu-prof DIR`: a V8 CPU
// profile per child in DIR (bench/profileTop.ts). `--write-buffer-mb 4,16,64`: every root runs once
// per size (LevelStore's writeBufferMb; a target prints as ROOT@MB), so one build is compared
// with itself: the first root at the first size is the base of the ratios.
// `--ids random`: every Consume's request id (and the floor's ledger key) is a random UUID, as
// Envoy's x-request-id is, instead of a counter (`counter`, the default): LevelDB inserts a random key
// at a random place in its memtable, and that costs its write thread more (bench/README.md, "Stop 34").
// `--busy N`: N processes spin on the CPU beside each child (started before it, killed by pid
// after it). `--roots none`: the floors alone.
// Usage: node --import tsx bench/consumeTail.ts [--roots A,B|none] [--inflight 32,128] [--ms 4000] [--rounds 3] [--floor level,fs,wal] [--busy N] [--write-buffer-mb 4,64] [--ids counter|random] [--cpu-prof DIR] [--json]
//        (a child: node --import tsx bench/consumeTail.ts --child ROOT C MS, or --child floor:level|floor:fs|floor:wal C MS)
import { spawn } from "node:child_process";
import { randomBytes, randomInt, randomUUID } from "node:crypto";
import { closeSync, fdatasync, fsyncSync, mkdtempSync, openSync, rmSync, writeSync } from "node:fs";
import { loadavg, tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { PerformanceObserver, constants as perf } from "node:perf_hooks";
import { fileURLToPath, pathToFileURL } from "node:url";
import { fundAndAddKeys } from "./lib/consumeKeys.js";
import { summarize } from "./lib/stats.js";
import { encodeLedgerRecord } from "../src/store/level/codecs.js";

export interface TailResult {
  root: string;
  inFlight: number;
  callsPerSec: number;
  p50: number;
  p99: number;
  p999: number;
  cpuUsPerCall: number;
  /** The main thread's busy time per call (event-loop utilization's active time over the window ÷ calls, µs): the JS side of a Consume alone, which the disk's speed (the fsync, in the thread pool) does not enter, as it does the rate at C in flight. */
  mainUsPerCall: number;
  meanBatch: number;
  /** Time between two committed batches (the writer is never idle under this load: one batch's build + write + fsync), p50 / p99 ms. */
  batchCycle: { p50: number; p99: number };
  /** The write of one batch (LevelDisk.writeRaw's call to its completion: the ops handed to LevelDB on the main thread, then the log append and fsync in the thread pool), p50 / p99 ms; the rest of the cycle is the main thread's. */
  write: { p50: number; p99: number };
  gc: { count: number; scavenges: number; majors: number; maxMs: number; totalMs: number };
  /** The ledger read of one tick (LevelDisk.rawGetMany's call to its completion: the snapshot on the main thread, the Gets in the thread pool), p50 / p99 ms; with the write, the rest of a cycle at C in flight is the main thread's. Absent for the floors (no read), and when the window had none (the ledger filter skips the read for fresh ids). */
  read?: { p50: number; p99: number };
  /** The child's peak resident set (MB) by the end of its window: the store, its write buffer (memtable) and the heap. */
  maxRssMb: number;
}

/** GC pauses while `measuring()`, summarized on `done()`. */
function gcWatch(measuring: () => boolean): { done: () => TailResult["gc"] } {
  const gcs: { kind: number; ms: number }[] = [];
  const obs = new PerformanceObserver((list) => {
    if (!measuring()) return;
    for (const e of list.getEntries()) gcs.push({ kind: (e as any).detail?.kind ?? 0, ms: e.duration });
  });
  obs.observe({ entryTypes: ["gc"] });
  return {
    done: () => {
      obs.disconnect();
      return {
        count: gcs.length,
        scavenges: gcs.filter((g) => g.kind === perf.NODE_PERFORMANCE_GC_MINOR).length,
        majors: gcs.filter((g) => g.kind === perf.NODE_PERFORMANCE_GC_MAJOR).length,
        maxMs: gcs.reduce((m, g) => Math.max(m, g.ms), 0),
        totalMs: gcs.reduce((t, g) => t + g.ms, 0),
      };
    },
  };
}

/**
 * Latency samples in a preallocated Float64Array (off the JS heap): a growing `number[]` would
 * be the measuring's own garbage and old-space promotion (its backing store copied at every
 * growth), counted in the GC figures of the code measured.
 */
class Samples {
  #a = new Float64Array(1 << 21);
  length = 0;
  push(v: number): void {
    if (this.length === this.#a.length) {
      const b = new Float64Array(this.#a.length * 2);
      b.set(this.#a);
      this.#a = b;
    }
    this.#a[this.length++] = v;
  }
  values(): Float64Array {
    return this.#a.subarray(0, this.length);
  }
}

/** The writer's batches while `measuring()`: how many, their submissions, and the time between two commits. */
class BatchCycles {
  batches = 0;
  submissions = 0;
  readonly cycles = new Samples();
  #last = 0;
  constructor(private readonly measuring: () => boolean) {}
  /** A batch of `n` submissions committed now. */
  committed(n: number): void {
    const t = performance.now();
    if (this.measuring()) {
      this.batches++;
      this.submissions += n;
      if (this.#last) this.cycles.push(t - this.#last);
    }
    this.#last = t;
  }
  get meanBatch(): number {
    return this.batches ? this.submissions / this.batches : 0;
  }
}

/**
 * Times every call of LevelDisk's `method` (as loaded from `root`) from its call to its
 * completion: `writeRaw` (each batch the engine writes), `rawGetMany` (each tick's ledger read).
 */
async function timeNative(root: string, method: "writeRaw" | "rawGetMany", measuring: () => boolean): Promise<Samples> {
  const times = new Samples();
  const { LevelDisk } = (await import(pathToFileURL(join(root, "src/store/level/disk.ts")).href)) as typeof import("../src/store/level/disk.js");
  const proto = LevelDisk.prototype as unknown as Record<string, (...a: unknown[]) => Promise<unknown>>;
  const call = proto[method]!;
  proto[method] = function (this: unknown, ...args: unknown[]) {
    const t = performance.now();
    const p = call.apply(this, args);
    if (!measuring()) return p;
    return p.then((v) => {
      times.push(performance.now() - t);
      return v;
    });
  };
  return times;
}

const pick = (s: { p50: number; p99: number }) => ({ p50: s.p50, p99: s.p99 });

/**
 * The floor's ledger values: 1,024 ledger entries as the engine writes them (encodeLedgerRecord),
 * of random ids, models and counts. (Until stop 35 the floor wrote one 301-character run of one
 * letter, which Snappy shrinks to almost nothing and a real entry's text does not: that floor
 * was kinder to LevelDB than the store's own writes.)
 */
const LEDGER_VALUES = Array.from({ length: 1024 }, (_, i) =>
  encodeLedgerRecord({
    requestId: randomUUID(),
    keyId: `key_${randomBytes(12).toString("hex")}`,
    accountId: "acct_default",
    group: "default",
    model: ["gpt-4o-mini", "claude-3-5-sonnet", "gemini-1.5-pro", "llama-3.1-70b"][i & 3]!,
    inputTokens: randomInt(1, 20000),
    outputTokens: randomInt(1, 4000),
    units: randomInt(1, 5_000_000),
    at: Date.now() + i,
    reservationId: i & 1 ? `rsv_${randomBytes(8).toString("hex")}` : "",
    keyRemaining: randomInt(0, 1e12),
    keyUnlimited: false,
    accountBalance: randomInt(0, 1e12),
    source: "consume",
  }),
);
const KCTR_VALUE = "y".repeat(48);
const ACTR_VALUE = "z".repeat(69);
/** The `wal` floor's preallocated log (it wraps around) and how many ops LevelDB may lag behind it. */
const WAL_PREALLOC_MB = 256;
const WAL_LAG = 4096;

/**
 * The floor: C workers, each "Consume" one submission of pre-encoded ops to a minimal
 * group-commit loop (no read, no charge, no record, no encoding), waiting for its batch's sync.
 */
/**
 * `c` workers call `one(worker)` in a closed loop: 1 s of warm-up (JIT, LevelDB's first
 * compactions), then a window of `ms` with `measure(true)` during it; each call that started and
 * ended inside the window is a latency sample. Returns the samples, the window's seconds and CPU.
 */
async function closedLoop(c: number, ms: number, one: (worker: number) => Promise<void>, measure: (on: boolean) => void): Promise<{ lat: Samples; secs: number; cpu: NodeJS.CpuUsage; activeMs: number }> {
  let on = false;
  let stop = false;
  const lat = new Samples();
  const worker = async (w: number) => {
    while (!stop) {
      const was = on;
      const s = performance.now();
      await one(w);
      if (was && on) lat.push(performance.now() - s);
    }
  };
  const workers = Array.from({ length: c }, (_, i) => worker(i));
  await new Promise((r) => setTimeout(r, 1000));
  const u0 = process.cpuUsage();
  const e0 = performance.eventLoopUtilization();
  on = true;
  measure(true);
  const t0 = performance.now();
  await new Promise((r) => setTimeout(r, ms));
  on = false;
  measure(false);
  const secs = (performance.now() - t0) / 1000;
  const cpu = process.cpuUsage(u0);
  const activeMs = performance.eventLoopUtilization(e0).active;
  stop = true;
  await Promise.all(workers);
  await new Promise((r) => setTimeout(r, 20));
  return { lat, secs, cpu, activeMs };
}

/** One window's figures: latency and throughput of the calls, the writer's batches and native writes, GC. */
function tailResult(root: string, inFlight: number, w: { lat: Samples; secs: number; cpu: NodeJS.CpuUsage; activeMs: number }, bc: BatchCycles, writes: Samples, gc: { done: () => TailResult["gc"] }): TailResult {
  const s = summarize(w.lat.values());
  const cy = summarize(bc.cycles.values());
  const wr = summarize(writes.values());
  return {
    root,
    inFlight,
    callsPerSec: Math.round(w.lat.length / w.secs),
    p50: s.p50,
    p99: s.p99,
    p999: s.p999,
    cpuUsPerCall: (w.cpu.user + w.cpu.system) / w.lat.length,
    mainUsPerCall: (w.activeMs * 1000) / w.lat.length,
    meanBatch: bc.meanBatch,
    batchCycle: { p50: cy.p50, p99: cy.p99 },
    write: { p50: wr.p50, p99: wr.p99 },
    gc: gc.done(),
    maxRssMb: Math.round(process.resourceUsage().maxRSS / 1024),
  };
}

async function floorChild(kind: "level" | "fs" | "wal", c: number, ms: number): Promise<TailResult> {
  const dir = mkdtempSync(join(tmpdir(), "aisa-consume-floor-"));
  const { ClassicLevel } = await import("classic-level");
  const db = kind !== "fs" ? new ClassicLevel<string, string>(join(dir, "db"), { keyEncoding: "utf8", valueEncoding: "utf8" }) : null;
  const fd = kind === "fs" ? openSync(join(dir, "log"), "a") : kind === "wal" ? openSync(join(dir, "log"), "w+") : -1;
  const buf = Buffer.alloc(8 << 20, 120);
  try {
    if (db) await db.open();
    // `wal`: a log of our own in front of LevelDB, as its best case: a preallocated file
    // (an append that grows the file also commits its size in ext4's journal at each fdatasync;
    // an overwrite in place does not), each batch written at its offset and fdatasync'd; the
    // batch goes to LevelDB unsynced behind it, in order, at most WAL_LAG ops behind.
    let walAt = 0;
    let applied: Promise<unknown> = Promise.resolve();
    let lag = 0;
    if (kind === "wal") {
      const zeros = Buffer.alloc(1 << 20);
      for (let i = 0; i < WAL_PREALLOC_MB; i++) writeSync(fd, zeros, 0, zeros.length, i << 20);
      fsyncSync(fd);
    }
    const write: (ops: { type: "put"; key: string; value: string }[], bytes: number) => Promise<void> =
      kind === "wal"
        ? async (ops, bytes) => {
            while (lag > WAL_LAG) await applied;
            lag += ops.length;
            applied = applied.then(() => (db as any)._batch(ops, { sync: false, keyEncoding: "utf8", valueEncoding: "utf8" })).then(() => void (lag -= ops.length));
            const n = Math.min(bytes, buf.length);
            writeSync(fd, buf, 0, n, walAt);
            walAt = (walAt + n) % (WAL_PREALLOC_MB << 20);
            await new Promise<void>((res, rej) => fdatasync(fd, (err) => (err ? rej(err) : res())));
          }
        : db
          ? (ops) => (db as any)._batch(ops, { sync: true, keyEncoding: "utf8", valueEncoding: "utf8" })
          : (_ops, bytes) =>
              new Promise((res, rej) => {
                writeSync(fd, buf, 0, Math.min(bytes, buf.length));
                fdatasync(fd, (err) => (err ? rej(err) : res()));
              });
    // The window is over: the unsynced LevelDB writes behind a `wal` floor finish before the close.
    const settle = () => applied;
    // The loop: what a submission adds to the gathering batch, and that batch's one promise.
    let ops: { type: "put"; key: string; value: string }[] = [];
    let bytes = 0;
    let keySeen = new Uint8Array(64);
    let subs = 0;
    let next: { p: Promise<void>; res: () => void; rej: (e: unknown) => void } | null = null;
    let writing = false;
    let measuring = false;
    const bc = new BatchCycles(() => measuring);
    const writes = new Samples();
    const drain = async () => {
      writing = true;
      while (subs > 0) {
        const d = next!;
        const batch = ops;
        const n = subs;
        batch.push({ type: "put", key: "!actr!default", value: ACTR_VALUE });
        const b = bytes + 13 + ACTR_VALUE.length;
        ops = [];
        bytes = 0;
        keySeen = new Uint8Array(64);
        subs = 0;
        next = null;
        try {
          const w0 = performance.now();
          await write(batch, b);
          if (measuring) writes.push(performance.now() - w0);
          d.res();
        } catch (err) {
          d.rej(err);
        }
        bc.committed(n);
      }
      writing = false;
    };
    const submit = (seq: number, k: number): Promise<void> => {
      const key = RANDOM_IDS ? `!ledger!${randomUUID()}` : `!ledger!tail-${seq}`;
      const value = LEDGER_VALUES[seq & 1023]!;
      ops.push({ type: "put", key, value });
      bytes += key.length + value.length;
      if (!keySeen[k]) {
        keySeen[k] = 1;
        ops.push({ type: "put", key: `!kctr!key_${String(k).padStart(20, "0")}`, value: KCTR_VALUE });
        bytes += 30 + KCTR_VALUE.length;
      }
      subs++;
      if (!next) {
        let res!: () => void, rej!: (e: unknown) => void;
        const p = new Promise<void>((a, b) => ((res = a), (rej = b)));
        next = { p, res, rej };
      }
      const p = next.p;
      // As the engine's writer: an idle loop starts its batch in setImmediate, so every worker
      // a commit released joins it (src/store/level/writer.ts).
      if (!writing) {
        writing = true;
        setImmediate(drain);
      }
      return p;
    };
    let seq = 0;
    const gc = gcWatch(() => measuring);
    const nextKey = Array.from({ length: c }, (_, w) => w);
    const window = await closedLoop(c, ms, (w) => submit(seq++, nextKey[w]!++ & 63), (on) => (measuring = on));
    await settle();
    return tailResult(`floor:${kind}`, c, window, bc, writes, gc);
  } finally {
    if (db) await db.close();
    if (fd >= 0) closeSync(fd);
    rmSync(dir, { recursive: true, force: true });
  }
}

/** A target is ROOT or ROOT@MB (--write-buffer-mb): the store's write buffer in MB, else its default. */
function parseTarget(target: string): { root: string; writeBufferMb?: number } {
  const at = /^(.*)@(\d+)$/.exec(target);
  return at ? { root: at[1]!, writeBufferMb: Number(at[2]) } : { root: target };
}

async function child(target: string, c: number, ms: number): Promise<TailResult> {
  const { root, writeBufferMb } = parseTarget(target);
  const { LevelStore } = (await import(pathToFileURL(join(root, "src/store/level/levelStore.ts")).href)) as typeof import("../src/store/level/levelStore.js");
  const { makeKey } = (await import(pathToFileURL(join(root, "test/contract/store.contract.ts")).href)) as typeof import("../test/contract/store.contract.js");
  const dir = mkdtempSync(join(tmpdir(), "aisa-consume-tail-"));
  const store = new LevelStore({ dir, ...(writeBufferMb ? { writeBufferMb } : {}) });
  try {
    await store.open(Date.now());
    const keys = await fundAndAddKeys(store, makeKey);
    let measuring = false;
    let seq = 0;
    const gc = gcWatch(() => measuring);
    const writes = await timeNative(root, "writeRaw", () => measuring);
    const reads = await timeNative(root, "rawGetMany", () => measuring);
    const bc = new BatchCycles(() => measuring);
    store.onBatch = (n) => bc.committed(n);
    const nextKey = Array.from({ length: c }, (_, w) => w);
    const window = await closedLoop(
      c,
      ms,
      async (w) => {
        const r = await store.consume({ requestId: RANDOM_IDS ? randomUUID() : `tail-${seq++}`, keyId: keys[nextKey[w]!++ & 63]!, reservationId: "", model: "gpt-4o-mini", inputTokens: 1200, outputTokens: 300, units: 180, now: Date.now() });
        if (r.replayed) throw new Error("unexpected replay");
      },
      (on) => (measuring = on),
    );
    // No read at all in a short window is normal: the ledger filter skips them for fresh ids (a
    // false positive reads; ~0.15 %). JSON has no NaN: a summary of none came back as nulls.
    return { ...tailResult(target, c, window, bc, writes, gc), ...(reads.length ? { read: pick(summarize(reads.values())) } : {}) };
  } finally {
    await store.close();
    rmSync(dir, { recursive: true, force: true });
  }
}

function runChild(root: string, c: number, ms: number, profDir: string): Promise<TailResult> {
  return new Promise((res, rej) => {
    const cwd = root.startsWith("floor:") ? process.cwd() : parseTarget(root).root;
    const prof = profDir ? ["--cpu-prof", "--cpu-prof-dir", profDir, "--cpu-prof-name", `${root.startsWith("floor:") ? root.replace(":", "-") : root.split("/").pop()}-c${c}-${Date.now()}.cpuprofile`] : [];
    const p = spawn(process.execPath, [...prof, "--import", "tsx", fileURLToPath(import.meta.url), "--child", root, String(c), String(ms)], { cwd, stdio: ["ignore", "pipe", "inherit"] });
    let out = "";
    p.stdout.on("data", (d) => (out += d));
    p.on("exit", (code) => (code === 0 ? res(JSON.parse(out.trim().split("\n").pop()!)) : rej(new Error(`consumeTail child (${root}) exited ${code}`))));
  });
}

const argv = process.argv.slice(2);
/** --ids random, passed to the children in their environment. */
const RANDOM_IDS = process.env.AISA_TAIL_IDS === "random";
if (argv[0] === "--child") {
  const who = argv[1]!;
  const r = who.startsWith("floor:") ? await floorChild(who.slice(6) as "level" | "fs" | "wal", Number(argv[2]), Number(argv[3])) : await child(who, Number(argv[2]), Number(argv[3]));
  process.stdout.write(JSON.stringify(r) + "\n");
} else {
  const opt = (name: string, d: string) => {
    const i = argv.indexOf(name);
    return i >= 0 ? argv[i + 1]! : d;
  };
  const ids = opt("--ids", "counter");
  if (ids !== "counter" && ids !== "random") throw new Error(`--ids: ${ids} is not one of counter, random`);
  process.env.AISA_TAIL_IDS = ids;
  if (!argv.includes("--json")) console.log(`request ids: ${ids === "random" ? "random UUIDs (as Envoy's x-request-id)" : "a counter (tail-N)"}`);
  const sizes = opt("--write-buffer-mb", "").split(",").filter(Boolean);
  for (const mb of sizes) if (!/^\d+$/.test(mb) || Number(mb) < 1 || Number(mb) > 1024) throw new Error(`--write-buffer-mb: ${mb} is not a whole number of MB from 1 to 1024`);
  const roots = opt("--roots", ".")
    .split(",")
    .filter((r) => r && r !== "none")
    .map((r) => resolve(r))
    .flatMap((r) => (sizes.length ? sizes.map((mb) => `${r}@${mb}`) : [r]));
  const inflight = opt("--inflight", "32,128").split(",").map(Number);
  const ms = Number(opt("--ms", "4000"));
  const rounds = Number(opt("--rounds", "3"));
  const floors = opt("--floor", "level,fs")
    .split(",")
    .filter((f) => f && f !== "none")
    .map((f) => {
      if (f !== "level" && f !== "fs" && f !== "wal") throw new Error(`--floor: ${f} is not one of level, fs, wal, none`);
      return `floor:${f}`;
    });
  // --busy N: N processes spinning on the CPU beside each child (each started before it and
  // killed by pid after it): what the same writes do when the two cores are taken.
  const busy = Number(opt("--busy", "0"));
  if (!Number.isInteger(busy) || busy < 0 || busy > 8) throw new Error(`--busy: ${opt("--busy", "0")} is not a whole number of processes from 0 to 8`);
  if (busy > 0 && !argv.includes("--json")) console.log(`${busy} busy process(es) spinning beside each child`);
  // --cpu-prof DIR: each child writes a V8 CPU profile there (bench/profileTop.ts reads it; the window is its last `--ms`).
  const profDir = argv.includes("--cpu-prof") ? resolve(opt("--cpu-prof", "")) : "";
  const results: TailResult[] = [];
  for (let r = 0; r < rounds; r++) {
    for (const c of inflight) {
      const runs = [...roots, ...floors];
      const order = r % 2 ? [...runs].reverse() : runs;
      const round: TailResult[] = [];
      for (const root of order) {
        const spinners = Array.from({ length: busy }, () => spawn(process.execPath, ["-e", "for (;;) {}"], { stdio: "ignore" }));
        let x: TailResult;
        try {
          x = await runChild(root, c, ms, profDir);
        } finally {
          await Promise.all(spinners.map((p) => new Promise((res) => (p.exitCode !== null || p.signalCode !== null ? res(null) : (p.once("exit", res), p.kill("SIGKILL"))))));
        }
        results.push(x);
        round.push(x);
        if (!argv.includes("--json")) {
          process.stdout.write(
            `round ${r} ×${c} ${root}: ${x.callsPerSec}/s p50 ${x.p50.toFixed(2)} p99 ${x.p99.toFixed(2)} p99.9 ${x.p999.toFixed(2)} ms, ${x.cpuUsPerCall.toFixed(1)} µs CPU/call (main thread ${x.mainUsPerCall.toFixed(1)}), batch ${x.meanBatch.toFixed(1)} (cycle p50 ${x.batchCycle.p50.toFixed(2)} p99 ${x.batchCycle.p99.toFixed(2)}, native write p50 ${x.write.p50.toFixed(2)} p99 ${x.write.p99.toFixed(2)}${x.read ? `, ledger read p50 ${x.read.p50.toFixed(2)} p99 ${x.read.p99.toFixed(2)}` : root.startsWith("floor:") ? "" : ", no ledger read"} ms); GC ${x.gc.count} (${x.gc.majors} major) max ${x.gc.maxMs.toFixed(2)} total ${x.gc.totalMs.toFixed(0)} ms; peak RSS ${x.maxRssMb} MB\n`,
          );
        }
      }
      if (!argv.includes("--json")) {
        const fl = round.filter((x) => x.root.startsWith("floor:"));
        for (const x of round.filter((y) => !y.root.startsWith("floor:"))) {
          const vs = fl.map((f) => `${f.root} ×${(x.p99 / f.p99).toFixed(2)} (floor cycle p99 ${f.batchCycle.p99.toFixed(2)} ms)`).join(", ");
          if (vs) process.stdout.write(`round ${r} ×${c} ${x.root}: Consume p99 ÷ floor p99: ${vs}\n`);
        }
        process.stdout.write(`round ${r} ×${c}: load average ${loadavg().map((l) => l.toFixed(2)).join(" ")}\n`);
      }
    }
  }
  if (argv.includes("--json")) process.stdout.write(JSON.stringify(results) + "\n");
  else if (roots.length > 1) {
    // Each build against the first, per round (the same round's run of each): calls/s, main-thread µs per call, p99.
    const med = (a: number[]) => {
      const s = [...a].sort((x, y) => x - y);
      const h = s.length >> 1;
      return s.length % 2 ? s[h]! : (s[h - 1]! + s[h]!) / 2;
    };
    for (const c of inflight) {
      const of = (root: string) => results.filter((x) => x.root === root && x.inFlight === c);
      const base = of(roots[0]!);
      for (const root of roots.slice(1)) {
        const mine = of(root);
        const ratio = (f: (x: TailResult) => number) => mine.map((x, i) => f(x) / f(base[i]!));
        const line = (name: string, f: (x: TailResult) => number) => {
          const rs = ratio(f);
          return `${name} ${rs.map((v) => v.toFixed(2)).join(" ")} (median ${med(rs).toFixed(2)}×)`;
        };
        process.stdout.write(`×${c} ${root} ÷ ${roots[0]}: ${line("calls/s", (x) => x.callsPerSec)}; ${line("main µs/call", (x) => x.mainUsPerCall)}; ${line("p99", (x) => x.p99)}\n`);
      }
    }
  }
}
