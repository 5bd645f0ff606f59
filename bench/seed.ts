// Seeds a data directory with N keys through LevelStore.importKeys (before the sidecar
// starts). The lookup microbenchmark (bench/lookup.ts) runs separately, on the current code.
// Usage: node --import tsx bench/seed.ts '<json SeedSpec>'
// Prints one JSON line (SeedResult) on stdout.
import { createHash, randomBytes } from "node:crypto";
import { writeFile } from "node:fs/promises";
import { join } from "node:path";
import { SecretBox } from "../src/keys/secrets.js";
import { generateId } from "../src/keys/secrets.js";
import { LevelStore } from "../src/store/level/levelStore.js";
import { DEFAULT_ACCOUNT, DEFAULT_GROUP, type KeyRecord } from "../src/domain/types.js";
import { fastSecret } from "./lib/fastSecret.js";
import { BENCH_MODEL } from "./lib/payloads.js";

export interface SeedSpec {
  dir: string;
  keys: number;
  /** How many keys of each special kind to place, spread evenly across the N. */
  allow: number;
  consume: number;
  ipRestricted: number;
  quotaEmpty: number;
  /** Where to write the SHA-256 of every stored secret (N × 32 bytes), for the lookup microbenchmark. */
  hashesFile: string;
}

export interface SpecialKey {
  id: string;
  secret: string;
  /** Position among the N keys (import order). */
  position: number;
}

export interface SeedResult {
  keys: number;
  seedMs: number;
  allow: SpecialKey[];
  consume: SpecialKey[];
  ipRestricted: SpecialKey[];
  quotaEmpty: SpecialKey[];
  /** Secrets that are not stored (KEY_INVALID). */
  invalid: string[];
}


async function main(): Promise<void> {
  const spec = JSON.parse(process.argv[2]!) as SeedSpec;
  const t0 = performance.now();
  const master = randomBytes(32);
  // The sidecar reads this master key, so sealed secrets stay revealable.
  await writeFile(join(spec.dir, "master.key"), master.toString("hex") + "\n", { mode: 0o600 });
  const box = new SecretBox(master);
  const store = new LevelStore({ dir: spec.dir });
  const now = Date.now();
  await store.open(now);
  const actor = "bench";
  await store.adjustBalance(DEFAULT_ACCOUNT, 1_000_000_000_000_000, { actor, action: "AdjustBalance", target: DEFAULT_ACCOUNT, detail: "bench seed" });
  // gpt-4o-mini prices (units per 1M tokens at 500000 units/USD), so MODEL_NOT_PRICED never interferes.
  await store.setPrice({ model: BENCH_MODEL, inputPerMillion: 75_000, outputPerMillion: 300_000, perRequest: 0 }, { actor, action: "SetPrice", target: BENCH_MODEL });

  // Special keys at evenly spaced positions (offset so kinds do not collide).
  const kinds: [keyof Pick<SeedResult, "allow" | "consume" | "ipRestricted" | "quotaEmpty">, number][] = [
    ["allow", spec.allow],
    ["consume", spec.consume],
    ["ipRestricted", spec.ipRestricted],
    ["quotaEmpty", spec.quotaEmpty],
  ];
  const special = new Map<number, keyof SeedResult>();
  const total = kinds.reduce((a, [, n]) => a + n, 0);
  if (total > spec.keys) throw new Error(`need at least ${total} keys`);
  let k = 0;
  for (const [kind, n] of kinds) {
    for (let i = 0; i < n; i++, k++) {
      let pos = Math.floor(((k + 0.5) * spec.keys) / total);
      while (special.has(pos)) pos = (pos + 1) % spec.keys;
      special.set(pos, kind);
    }
  }
  const out: SeedResult = { keys: spec.keys, seedMs: 0, allow: [], consume: [], ipRestricted: [], quotaEmpty: [], invalid: [] };

  const allHashes = new Uint8Array(spec.keys * 32);
  const CHUNK = 50_000;
  for (let start = 0; start < spec.keys; start += CHUNK) {
    const records: KeyRecord[] = [];
    for (let i = start; i < Math.min(spec.keys, start + CHUNK); i++) {
      const secret = fastSecret();
      const id = generateId("key_");
      const hash = createHash("sha256").update(secret, "utf8").digest();
      allHashes.set(hash, i * 32);
      const kind = special.get(i);
      // A realistic mix for the rest: half with a quota, some with model or IP lists.
      const quota = kind === "quotaEmpty" ? 0 : kind ? -1 : i % 2 === 0 ? 5_000_000 : -1;
      records.push({
        id,
        name: `bench key ${i}`,
        accountId: DEFAULT_ACCOUNT,
        group: DEFAULT_GROUP,
        status: "enabled",
        unlimited: quota < 0,
        quotaTotal: quota < 0 ? 0 : quota,
        expiresAt: kind ? null : i % 3 === 0 ? now + 30 * 86_400_000 : null,
        models: !kind && i % 10 === 1 ? [BENCH_MODEL, "gpt-4o"] : [],
        ips: kind === "ipRestricted" ? ["10.0.0.0/8"] : !kind && i % 20 === 3 ? ["10.0.0.0/8", "2001:db8::/32"] : [],
        createdAt: now,
        updatedAt: now,
        limits: { rpm: 0, tpm: 0, concurrency: 0 },
        refill: "none",
        metadata: {},
        secretHash: hash.toString("hex"),
        secretEnc: box.seal(secret, id),
        masked: `sk-…${secret.slice(-4)}`,
        prevSecretHash: null,
        prevSecretExpiresAt: null,
      });
      if (kind) (out[kind] as SpecialKey[]).push({ id, secret, position: i });
    }
    await store.importKeys(records, { actor, action: "ImportKeys", target: "*" });
  }
  for (let i = 0; i < Math.max(spec.allow, 1); i++) out.invalid.push(fastSecret());
  out.seedMs = performance.now() - t0;

  await writeFile(spec.hashesFile, allHashes);
  await store.close();
  process.stdout.write(JSON.stringify(out) + "\n");
}

main().catch((err) => {
  process.stderr.write(`seed failed: ${err?.stack ?? err}\n`);
  process.exit(1);
});
