// ListKeys' first page at N keys (default 100k; the TUI's first paint waits for it): the listing
// in creation order from the key book in memory (store.keyIdsByCreation, then the page's 1,000
// records) beside the record path (every record read, decoded, filtered and sorted), in the same
// process on the same LevelDB, interleaved. The record path is what the same listing takes with
// a search that every key matches ("key_", a prefix of every id): the same rows, the old way.
// Usage: node --import tsx bench/listKeys.ts [--keys N] [--rounds R]
import { execFileSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { SecretBox } from "../src/keys/secrets.js";
import { AdminService } from "../src/service/admin.js";
import { LevelStore } from "../src/store/level/levelStore.js";

const arg = (name: string, dflt: number): number => {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? Number(process.argv[i + 1]) : dflt;
};
const keys = arg("keys", 100_000);
const rounds = arg("rounds", 5);

const dir = mkdtempSync(join(tmpdir(), "aisa-listkeys-"));
try {
  const spec = { dir, keys, allow: 1, consume: 0, ipRestricted: 0, quotaEmpty: 0, hashesFile: join(dir, "hashes.bin") };
  execFileSync(process.execPath, ["--import", "tsx", "bench/seed.ts", JSON.stringify(spec)], { stdio: ["ignore", "ignore", "inherit"] });
  const store = new LevelStore({ dir });
  await store.open(Date.now());
  const admin = new AdminService({ store, box: new SecretBox(randomBytes(32)), clock: Date.now, operatorTokenHash: "x" });
  const operator = { tokenId: "operator", accountId: null, readOnly: false };
  const time = async (query: string): Promise<{ ms: number; ids: string[] }> => {
    const t0 = performance.now();
    const r = await admin.listKeys(operator, { pageSize: 1000, query });
    return { ms: performance.now() - t0, ids: r.keys.map((k) => k.record.id) };
  };
  const fast: number[] = [];
  const slow: number[] = [];
  for (let i = 0; i < rounds; i++) {
    const a = await time("");
    const b = await time("key_");
    if (a.ids.join() !== b.ids.join()) throw new Error("the two paths listed different first pages");
    fast.push(a.ms);
    slow.push(b.ms);
  }
  await store.close();
  const med = (xs: number[]): number => [...xs].sort((x, y) => x - y)[Math.floor(xs.length / 2)]!;
  console.log(
    JSON.stringify({
      keys,
      rounds,
      firstPageMs: { fromMemory: +med(fast).toFixed(1), fromRecords: +med(slow).toFixed(1) },
      ratio: +(med(fast) / med(slow)).toFixed(3),
      samePage: true,
    }),
  );
} finally {
  rmSync(dir, { recursive: true, force: true });
}
