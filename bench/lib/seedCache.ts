// A seeded data dir (bench/seed.ts, run in its own process) kept in the temp dir between runs,
// named by the bench and by its seed's fingerprint (seedFingerprint: the spec, the seeder and the
// store's schema), so two benches (or one bench with other options) never take each other's
// seed: checkAB, checkTail and consumeAB copy it for each sidecar. `npm run bench` keys its own
// cache (run.ts) by the same fingerprint.
import { createHash } from "node:crypto";
import { SCHEMA_VERSION } from "../../src/store/level/schema.js";
import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import type { SeedResult, SeedSpec } from "../seed.js";
import { spawnTracked } from "./proc.js";

const ROOT = fileURLToPath(new URL("../..", import.meta.url));

/**
 * What the seeded data depends on: the seeder, the record types, the store's import path and
 * its schema version (a build refuses a dir of a newer schema). A change to any of them
 * invalidates the seed cache: `npm run bench`'s (run.ts) and cachedSeed's alike.
 */
export function seedFingerprint(spec: Omit<SeedSpec, "dir" | "hashesFile">): string {
  const h = createHash("sha256");
  h.update(JSON.stringify(spec));
  h.update(`schema ${SCHEMA_VERSION}`);
  for (const f of ["bench/seed.ts", "src/domain/types.ts", "src/store/level/levelStore.ts"]) {
    let text = readFileSync(join(ROOT, f), "utf8");
    // Of the store, only the layout and the import path matter (not e.g. the hot path).
    if (f.endsWith("levelStore.ts")) text = text.slice(0, text.indexOf("// ---- lifecycle")) + (/importKeys\([\s\S]*?\n  }\n/.exec(text)?.[0] ?? "");
    h.update(text);
  }
  return h.digest("hex").slice(0, 12);
}

/** The data dir seeded with `spec` (seeding it on the first call), and what the seed reported. */
export async function cachedSeed(bench: string, spec: Omit<SeedSpec, "dir" | "hashesFile">): Promise<{ dir: string; seeded: SeedResult }> {
  const tag = seedFingerprint(spec);
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
