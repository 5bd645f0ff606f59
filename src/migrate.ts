// aisa-authz migrate, the work (the CLI command, src/cli/commands/migrate.ts, parses the flags):
// copies a whole store between engines through their import/export surfaces
// (src/store/portable.ts). The source is only read; a non-empty target is refused (named) unless
// `force`, which wipes it first; a failure midway wipes the target (or says it must be wiped).
// The master key is needed only to carry webhook endpoints to or from a data directory (they are
// plain in its webhooks.json, sealed on Redis): AISA_MASTER_KEY, else that data directory's
// master.key, as serve finds it.
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import type { End } from "./cli/commands/migrate.js";
import { parseMasterKey } from "./keys/secrets.js";
import { emptyCounts, type MasterKeySource, type PortableEngine, type StateChunk, type StateCounts } from "./store/portable.js";

export interface MigrateOptions {
  from: End;
  to: End;
  prefix: string;
  windowMs: number;
  /** A Redis source's ledger archive directory (its entries are exported before the stream's). */
  ledgerArchive?: string;
  force: boolean;
  json: boolean;
  /** AISA_MASTER_KEY (hex or base64), when set. */
  masterKey?: string;
}

interface Out {
  stdout: { write(s: string): unknown };
  stderr: { write(s: string): unknown };
}

/** The master key for a data directory's end: `env` (AISA_MASTER_KEY), else `<dir>/master.key`. */
function masterKeyFor(env: string | undefined, dir: string): MasterKeySource {
  return async () => {
    if (env !== undefined && env !== "") {
      try {
        return parseMasterKey(env);
      } catch (err) {
        throw new Error(`AISA_MASTER_KEY: ${(err as Error).message}`);
      }
    }
    const file = join(dir, "master.key");
    let text: string;
    try {
      text = await readFile(file, "utf8");
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      throw new Error(code === "ENOENT" ? `set AISA_MASTER_KEY (no ${file} either)` : `cannot read ${file}: ${(err as Error).message}`);
    }
    try {
      return parseMasterKey(text);
    } catch (err) {
      throw new Error(`${file}: ${(err as Error).message}`);
    }
  };
}

async function openEnd(e: End, side: "source" | "target", o: MigrateOptions): Promise<PortableEngine> {
  const { prefix, windowMs, ledgerArchive } = o;
  if (e.kind === "level") {
    const { LevelPortable } = await import("./store/level/portable.js");
    const key = masterKeyFor(o.masterKey, e.dir);
    return side === "source" ? LevelPortable.openSource(e.dir, key) : LevelPortable.openTarget(e.dir, key);
  }
  const { RedisPortable } = await import("./store/redis/portable.js");
  let p: Awaited<ReturnType<typeof RedisPortable.open>>;
  try {
    p = await RedisPortable.open(e.url, prefix, windowMs, Date.now, side === "source" ? ledgerArchive : undefined);
  } catch (err) {
    throw new Error(`cannot connect to the ${side} ${e.label}: ${(err as Error).message}`);
  }
  if (side === "source") {
    try {
      await p.checkSourceArchive();
    } catch (err) {
      await p.close();
      throw new Error(`the source ${e.label}: ${(err as Error).message}`, { cause: err });
    }
  }
  return p;
}

const LABELS: Record<keyof StateCounts, string> = {
  meta: "meta records",
  accounts: "accounts",
  groups: "groups",
  tokens: "tokens",
  prices: "prices",
  keys: "keys",
  deletedKeys: "deleted-key tombstones",
  ledger: "ledger entries",
  audit: "audit entries",
  usage: "usage buckets",
  webhooks: "webhook endpoint sets",
  alertMarks: "alert marks",
};

function describe(c: StateCounts): string {
  return (Object.keys(LABELS) as (keyof StateCounts)[]).map((k) => `${c[k]} ${LABELS[k]}`).join(", ");
}


export async function runMigrate(o: MigrateOptions, io: Out): Promise<StateCounts> {
  const started = Date.now();
  const source = await openEnd(o.from, "source", o);
  let target: PortableEngine | undefined;
  const counts = emptyCounts();
  try {
    if ((await source.contents()) === undefined) {
      throw new Error(`the source ${o.from.label} holds nothing${o.from.kind === "redis" ? ` under the prefix ${JSON.stringify(o.prefix)} (--redis-prefix / AISA_REDIS_PREFIX)` : ""}: nothing to migrate`);
    }
    target = await openEnd(o.to, "target", { ...o, ledgerArchive: undefined });
    const there = await target.contents();
    if (there !== undefined) {
      if (!o.force) throw new Error(`the target is not empty: ${there}. Migrate into an empty one, or add --force to wipe it first`);
      await target.wipe();
      io.stderr.write(`wiped the target (${there})\n`);
    }
    try {
      await target.importState(source.exportState(), (c: StateChunk) => (counts[c.kind] += c.items.length));
    } catch (err) {
      const copied = describe(counts);
      let after: string;
      try {
        await target.wipe();
        after = "the target was wiped (it holds nothing of this attempt); fix the cause and run migrate again";
      } catch (e2) {
        after = `wiping the target failed too (${(e2 as Error).message}): it holds a partial copy; wipe it (migrate again with --force) before serving from it`;
      }
      throw new Error(`migration failed: ${(err as Error).message.replace(/[.\s]+$/, "")}. Copied before the failure: ${copied}; ${after}`);
    }
  } finally {
    await target?.close().catch(() => {});
    await source.close().catch(() => {});
  }
  const seconds = (Date.now() - started) / 1000;
  if (o.json) io.stdout.write(`${JSON.stringify({ from: o.from.label, to: o.to.label, seconds, copied: counts })}\n`);
  else
    io.stdout.write(
      `migrated ${o.from.label} → ${o.to.label} in ${seconds.toFixed(2)} s: ${describe(counts)}\n` +
        `Serve the target with the same master key (AISA_MASTER_KEY, or the same master.key file) and the same AISA_ADMIN_TOKEN as the source.\n`,
    );
  return counts;
}
