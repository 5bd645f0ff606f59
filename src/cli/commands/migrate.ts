// aisa-authz migrate: copies a whole store from one engine to another (issue 15, item 7) —
// the embedded LevelDB (--from-data / --to-data) and Redis (--from / --to redis://, rediss://,
// redis-cluster://). Records travel with their ABSOLUTE counters (src/store/portable.ts): no
// business operation is replayed. The source is only read; a target that holds anything is
// refused (named) unless --force, which wipes it first. A failure midway wipes what was written
// (or, when that fails too, says the target must be wiped before another attempt) and exits 1.
import type { Command } from "commander";
import { globalsOf, type Io } from "../context.js";
import { UsageError } from "../parse.js";
import { parseStoreUrl } from "../../config/storeUrl.js";
import { redisPrefix } from "../../config/config.js";

interface MigrateFlags {
  fromData?: string;
  from?: string;
  toData?: string;
  to?: string;
  redisPrefix?: string;
  ledgerArchive?: string;
  force?: boolean;
  json?: boolean;
}

export type End = { kind: "level"; dir: string; label: string } | { kind: "redis"; url: string; label: string };

function end(side: "from" | "to", data: string | undefined, url: string | undefined): End {
  const dataFlag = side === "from" ? "--from-data" : "--to-data";
  const urlFlag = side === "from" ? "--from" : "--to";
  if (data !== undefined && url !== undefined) throw new UsageError(`${dataFlag} and ${urlFlag}: give one of them, not both`);
  if (data !== undefined) {
    if (data.trim() === "") throw new UsageError(`${dataFlag}: must name a directory`);
    return { kind: "level", dir: data, label: `data directory ${data}` };
  }
  if (url === undefined) throw new UsageError(`give the ${side === "from" ? "source" : "target"}: ${dataFlag} <dir> (the embedded store) or ${urlFlag} redis://… | rediss://… | redis-cluster://…`);
  let spec;
  try {
    spec = parseStoreUrl(urlFlag, url);
  } catch (err) {
    throw new UsageError((err as Error).message);
  }
  if (spec.kind === "level") throw new UsageError(`${urlFlag}: ${JSON.stringify(url)} names the embedded store; use ${dataFlag} <dir> for it`);
  return { kind: "redis", url: spec.url, label: spec.display };
}

/** Parsed and checked flags (every error here is a usage error: exit 2). */
export function migrateOptions(f: MigrateFlags, env: NodeJS.ProcessEnv): { from: End; to: End; prefix: string; windowMs: number; ledgerArchive: string | undefined; force: boolean } {
  const from = end("from", f.fromData, f.from);
  const to = end("to", f.toData, f.to);
  if (from.label === to.label) throw new UsageError(`--to${to.kind === "level" ? "-data" : ""}: the target is the source (${to.label})`);
  let prefix: string;
  try {
    prefix = redisPrefix(f.redisPrefix ?? env["AISA_REDIS_PREFIX"] ?? "aisa:");
  } catch (err) {
    throw new UsageError(`${f.redisPrefix !== undefined ? "--redis-prefix" : "AISA_REDIS_PREFIX"}: ${(err as Error).message.replace(/^AISA_REDIS_PREFIX: /, "")}`);
  }
  const hours = env["AISA_IDEMPOTENCY_WINDOW_HOURS"];
  const h = hours === undefined || hours === "" ? 168 : Number(hours);
  if (!Number.isSafeInteger(h) || h < 1) throw new UsageError(`AISA_IDEMPOTENCY_WINDOW_HOURS: must be an integer >= 1 (got ${hours})`);
  const archive = (f.ledgerArchive ?? env["AISA_LEDGER_ARCHIVE"] ?? "").trim();
  const ledgerArchive = archive === "" || archive.toLowerCase() === "off" ? undefined : archive;
  return { from, to, prefix, windowMs: h * 3_600_000, ledgerArchive, force: f.force === true };
}

export function migrateCommand(program: Command, io: Io): void {
  program
    .command("migrate")
    .description("copy everything from one store to another: --from-data <dir> --to redis://… (growing into a fleet), or --from redis://… --to-data <dir> (and back); stop the sidecars on the source first")
    .option("--from-data <dir>", "source: the embedded LevelDB store in this data directory (no sidecar may hold it)")
    .option("--from <url>", "source: redis://[user:pass@]host:port[/db], rediss://… or redis-cluster://h1:p1,h2:p2")
    .option("--to <url>", "target: redis://…, rediss://… or redis-cluster://…")
    .option("--to-data <dir>", "target: a new embedded store in this data directory")
    .option("--redis-prefix <prefix>", "key prefix on Redis, as serve uses it (env AISA_REDIS_PREFIX; default aisa:)")
    .option("--ledger-archive <dir>", "a Redis source's ledger archive (the fleet's --ledger-archive): its entries are copied before the stream's (env AISA_LEDGER_ARCHIVE)")
    .option("--force", "wipe a target that is not empty first (everything under the prefix on Redis; the whole store in the data directory)")
    .action(async (_f: unknown, cmd: Command) => {
      const flags = globalsOf(cmd) as MigrateFlags;
      const o = migrateOptions(flags, io.env);
      const { runMigrate } = await import("../../migrate.js");
      await runMigrate({ ...o, json: flags.json === true, masterKey: io.env["AISA_MASTER_KEY"] }, io);
    });
}
