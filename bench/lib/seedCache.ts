// A seeded data dir (bench/seed.ts, run in its own process) kept in the temp dir between runs,
// named by the bench and by its seed spec, so two benches (or one bench with other options)
// never take each other's seed: checkAB, checkTail and consumeAB copy it for each sidecar.
import { createHash } from "node:crypto";
import { SCHEMA_VERSION } from "../../src/store/level/schema.js";
import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import type { SeedResult, SeedSpec } from "../seed.js";
import { spawnTracked } from "./proc.js";

const ROOT = fileURLToPath(new URL("../..", import.meta.url));

/** The data dir seeded with `spec` (seeding it on the first call), and what the seed reported. */
export async function cachedSeed(bench: string, spec: Omit<SeedSpec, "dir" | "hashesFile">): Promise<{ dir: string; seeded: SeedResult }> {
  // The schema version too: a seed of a newer schema is refused by an older build (and one of
  // an older schema is upgraded in each copy), so a schema bump seeds afresh.
  const tag = createHash("sha256").update(JSON.stringify(spec)).update(`schema ${SCHEMA_VERSION}`).digest("hex").slice(0, 10);
  const base = join(tmpdir(), `aisa-${bench}-seed-${spec.keys}-${tag}`);
  const meta = join(base, "seed.json");
  if (existsSync(meta)) return { dir: join(base, "data"), seeded: JSON.parse(readFileSync(meta, "utf8")) as SeedResult };
  rmSync(base, { recursive: true, force: true });
  mkdirSync(join(base, "data"), { recursive: true });
  const s: SeedSpec = { ...spec, dir: join(base, "data"), hashesFile: join(base, "hashes") };
  const p = spawnTracked(process.execPath, ["--max-old-space-size=4096", "--import", "tsx", join(ROOT, "bench/seed.ts"), JSON.stringify(s)], { cwd: ROOT });
  const code = await p.exited;
  if (code !== 0) throw new Error(`seed exited ${code}: ${p.stderr.join("").slice(-2000)}`);
  writeFileSync(meta, p.stdout.filter((l) => l.startsWith("{")).pop()!);
  return { dir: join(base, "data"), seeded: JSON.parse(readFileSync(meta, "utf8")) as SeedResult };
}
