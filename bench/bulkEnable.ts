// SetKeysEnabled (bulk disable / enable) at the service level, as serve wires it (AdminService
// with the usage recorder's key events), on a store of N keys: K ids disabled then enabled
// again (in calls of 1,000 ids, as the TUI sends them), wall time and CPU, per build (`--roots`: this tree and e.g. a `git archive` of
// the baseline with node_modules linked), each in its own process, interleaved (issue 18).
// Usage: node --import tsx bench/bulkEnable.ts [--roots A,B] [--keys 100000] [--ids 10000,1000] [--rounds 2]
//        (a child: node --import tsx bench/bulkEnable.ts --child ROOT N IDS)
import { spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";

export interface BulkEnableResult {
  root: string;
  keys: number;
  ids: number;
  /** Disable, then enable again: ms of wall clock and of CPU, and KB of heap held after (GC'd) minus before. */
  disableMs: number;
  enableMs: number;
  disableCpuMs: number;
  enableCpuMs: number;
}

async function child(root: string, n: number, k: number): Promise<BulkEnableResult> {
  const imp = (p: string) => import(pathToFileURL(join(root, p)).href);
  const { LevelStore } = (await imp("src/store/level/levelStore.ts")) as typeof import("../src/store/level/levelStore.js");
  const { AdminService } = (await imp("src/service/admin.ts")) as typeof import("../src/service/admin.js");
  const { UsageRecorder } = (await imp("src/service/usage.ts")) as typeof import("../src/service/usage.js");
  const { SecretBox } = (await imp("src/keys/secrets.ts")) as typeof import("../src/keys/secrets.js");
  const { makeKey } = (await imp("test/contract/store.contract.ts")) as typeof import("../test/contract/store.contract.js");
  const dir = mkdtempSync(join(tmpdir(), "aisa-bulk-enable-"));
  const store = new LevelStore({ dir });
  try {
    await store.open(Date.now());
    const idOf = (i: number) => `key_bench${String(i).padStart(8, "0")}`;
    for (let i = 0; i < n; i += 10_000) {
      const records = Array.from({ length: Math.min(10_000, n - i) }, (_, j) => makeKey({ id: idOf(i + j), name: `bench ${i + j}` }, `sk-bench-${i + j}-${randomBytes(8).toString("hex")}`).record);
      await store.importKeys(records, { actor: "operator", action: "Bench", target: "import" });
    }
    (globalThis as { gc?: () => void }).gc?.();
    const clock = Date.now;
    const recorder = new UsageRecorder({ store, clock });
    const admin = new AdminService({ store, box: new SecretBox(randomBytes(32)), clock, operatorTokenHash: "x", events: (e) => recorder.keyEvent(e) });
    const operator = { tokenId: "operator", accountId: null, readOnly: false };
    const step = Math.max(1, Math.floor(n / k));
    const ids = Array.from({ length: k }, (_, i) => idOf((i * step) % n));
    // Warm-up on other keys (JIT).
    const warm = Array.from({ length: 100 }, (_, i) => idOf(i * step + 1));
    await admin.setKeysEnabled(operator, warm, false);
    await admin.setKeysEnabled(operator, warm, true);
    const timed = async (enabled: boolean) => {
      const c0 = process.cpuUsage();
      const t0 = performance.now();
      // At most 1,000 ids a call (the API's limit): chunked one call after another, as the TUI does.
      const out = [];
      for (let i = 0; i < ids.length; i += 1000) out.push(...(await admin.setKeysEnabled(operator, ids.slice(i, i + 1000), enabled)));
      const ms = performance.now() - t0;
      const c = process.cpuUsage(c0);
      if (out.length !== k || out.some((s) => s.record.status !== (enabled ? "enabled" : "disabled"))) throw new Error("wrong answer");
      return { ms, cpuMs: (c.user + c.system) / 1000 };
    };
    const d = await timed(false);
    const e = await timed(true);
    return { root, keys: n, ids: k, disableMs: d.ms, enableMs: e.ms, disableCpuMs: d.cpuMs, enableCpuMs: e.cpuMs };
  } finally {
    await store.close();
    rmSync(dir, { recursive: true, force: true });
  }
}

function runChild(root: string, n: number, k: number): Promise<BulkEnableResult> {
  return new Promise((res, rej) => {
    const p = spawn(process.execPath, ["--expose-gc", "--import", "tsx", fileURLToPath(import.meta.url), "--child", root, String(n), String(k)], { cwd: root, stdio: ["ignore", "pipe", "inherit"] });
    let out = "";
    p.stdout.on("data", (d) => (out += d));
    p.on("exit", (code) => (code === 0 ? res(JSON.parse(out.trim().split("\n").pop()!)) : rej(new Error(`bulkEnable child (${root}) exited ${code}`))));
  });
}

const argv = process.argv.slice(2);
if (argv[0] === "--child") {
  process.stdout.write(JSON.stringify(await child(argv[1]!, Number(argv[2]), Number(argv[3]))) + "\n");
  process.exit(0);
} else {
  const opt = (name: string, d: string) => {
    const i = argv.indexOf(name);
    return i >= 0 ? argv[i + 1]! : d;
  };
  const roots = opt("--roots", ".").split(",").map((r) => resolve(r));
  const n = Number(opt("--keys", "100000"));
  const idCounts = opt("--ids", "10000,1000").split(",").map(Number);
  const rounds = Number(opt("--rounds", "2"));
  const results: BulkEnableResult[] = [];
  for (let r = 0; r < rounds; r++) {
    for (const k of idCounts) {
      for (const root of r % 2 ? [...roots].reverse() : roots) {
        const x = await runChild(root, n, k);
        results.push(x);
        if (!argv.includes("--json")) process.stdout.write(`round ${r} ${k} ids of ${n} keys, ${root}: disable ${x.disableMs.toFixed(0)} ms (CPU ${x.disableCpuMs.toFixed(0)}), enable ${x.enableMs.toFixed(0)} ms (CPU ${x.enableCpuMs.toFixed(0)})\n`);
      }
    }
  }
  if (argv.includes("--json")) process.stdout.write(JSON.stringify(results) + "\n");
}
