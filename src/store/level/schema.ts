// The LevelDB engine's schema: its sublevels (see levelStore.ts for the layout), the versions
// a data dir is marked with, and what to tell the operator when LevelDB does not open.
import { readFile, stat } from "node:fs/promises";
import { join } from "node:path";
import type { UsageBucket } from "../types.js";
import { RAW_SYNC, RESTORE, toRawOps, type Op } from "./codecs.js";
import { USAGE_DIMS, USAGE_GRANS, usagePuts } from "./usageBuckets.js";

/**
 * 3: usage buckets are indexed by account and time (USAGE_LAYOUT); 2: keys carry a `khot`
 * projection; 1: neither. 1 and 2 are upgraded on open, each step with its own marker written
 * last; the bump keeps an older build (which would write the old layouts) from opening the dir.
 */
export const SCHEMA_VERSION = 3;
/** meta "usage": the usage sublevel's layout (see levelStore.ts). */
export const USAGE_LAYOUT = 2;

export type SubName = "keys" | "khash" | "khot" | "kctr" | "kdel" | "auditacct" | "accts" | "actr" | "groups" | "gctr" | "tokens" | "prices" | "audit" | "ledger" | "usage" | "meta";

/**
 * Why LevelDB did not open, and what to do. LevelDB says only what it found ("Corruption:
 * CURRENT file does not end with newline", "IO error: …/MANIFEST-000012: No such file"); the
 * operator needs the file and the repair.
 */
export async function openFailure(db: string, err: unknown): Promise<string> {
  const cause = (err as { cause?: { message?: string } })?.cause?.message ?? (err as Error)?.message ?? String(err);
  const current = await readFile(join(db, "CURRENT"), "utf8").catch(() => undefined);
  const currentBad = current !== undefined && (!/^MANIFEST-\d+\n$/.test(current) || !(await stat(join(db, current.trim())).then((st) => st.isFile(), () => false)));
  if (currentBad || /CURRENT/.test(cause) || /MANIFEST/.test(cause)) {
    return (
      `${cause}. ${db}/CURRENT (it holds ${JSON.stringify((current ?? "").slice(0, 40))}) names the store's current manifest (one line, e.g. "MANIFEST-000012", and a newline) and that manifest lists the table files: ` +
      `one of them is damaged or missing. ${RESTORE}; if only CURRENT is damaged and ${db} holds a MANIFEST-* file, write the name of the newest one followed by a newline into CURRENT`
    );
  }
  if (/Corruption/i.test(cause)) return `${cause}. The store's files are damaged: ${RESTORE}`;
  return `${cause}. Check that ${db} exists, is readable and writable by this user and its disk is not full; if its files are damaged, ${RESTORE}`;
}

/**
 * Usage layout 1 (`gran|dim|id|startHex`: a query scanned every id of its dimension over all
 * time) → 2 (see levelStore.ts). Runs once, after the keys are loaded: a key row's account
 * comes from the index; rows of keys deleted before the upgrade get only the time-ordered
 * entry (no account query could attribute them before either). The new entries are written
 * first (synced batches), then the old range is cleared, then the marker (and the schema):
 * an interrupted run starts over, which is harmless (bucket values are absolute). Clearing
 * at the end instead of deleting in each batch halves the ops written (500k buckets:
 * bench/usageQuery.ts).
 */
export async function migrateUsage(db: any, subs: Record<SubName, any>, accountOfKey: (keyId: string) => string | undefined): Promise<void> {
  const BATCH = 5000;
  // Layout-1 keys start with "d|", "h|" or "m|"; layout 2's with "a|" or "t|", outside this range.
  const it = subs.usage.iterator({ gte: "d|", lt: "n" });
  let writing: Promise<void> = Promise.resolve();
  try {
    for (;;) {
      const batch: [string, UsageBucket][] = await it.nextv(BATCH);
      if (batch.length === 0) break;
      const ops: Op[] = [];
      for (const [k, v] of batch) {
        const [gran, dim] = k.split("|", 2) as [string, string];
        if (!(USAGE_GRANS as readonly string[]).includes(gran) || !(USAGE_DIMS as readonly string[]).includes(dim) || !v || typeof v !== "object") continue;
        const b = { ...v, gran, dim } as UsageBucket;
        if (dim === "key" && !b.account) {
          const account = accountOfKey(b.id);
          if (account !== undefined) b.account = account;
        }
        for (const op of usagePuts(b, subs.usage)) ops.push(op);
      }
      // One write in flight while the next batch is read; each synced (plain string ops:
      // see toRawOps).
      await writing;
      writing = db.batch(toRawOps(ops) as any, RAW_SYNC);
    }
    await writing;
  } finally {
    await Promise.allSettled([writing]);
    await it.close();
  }
  await subs.usage.clear({ gte: "d|", lt: "n" });
  await db.batch(
    [
      { type: "put", sublevel: subs.meta, key: "usage", value: USAGE_LAYOUT },
      { type: "put", sublevel: subs.meta, key: "schema", value: SCHEMA_VERSION },
    ] as any,
    { sync: true },
  );
}

