// The LevelDB engine's schema: its sublevels and their layout, the versions a data dir is marked
// with, and what to tell the operator when LevelDB does not open.
//
// Layout (sublevels, JSON values unless noted):
//   keys   id → KeyRecord            khash  sha256hex → id (current and grace secrets)
//   khot   id → the key's hot projection (compact text, src/store/keyProjection.ts)
//   kctr   id → KeyCountersDisk (compact text, codecs.ts encodeCounters)
//   accts  id → AccountRecord        actr   id → AccountCounterValues (book/tables.ts)
//   groups name → GroupRecord        tokens id → TokenRecord
//   gctr   name → GroupBudgetCounters (a budgeted group's spent and period start; absent = 0 from load)
//   prices model → PriceRecord       audit  auditId (time-ordered) → AuditRecord
//   auditacct account|auditId → "" (the entries about an account's keys, for account-scoped
//          ListAudit; entries older than meta "auditIndexFrom" are not in it)
//   ledger requestId → ConsumeRecord (the usage ledger and idempotency record; schema 4 writes
//          it as a compact array of its values, codecs.ts encodeLedgerRecord)
//   kdel   id → DeletedKey (what a deleted key's late Consumes need: account, group, ratio)
//   usage  t|gran|dim|startHex|id → UsageBucket (every bucket, time-ordered per granularity
//          and dimension: operator queries, retention)
//          a|gran|dim|account|startHex|id → the same bucket again for key and account rows
//          (an account's query is a range scan over its own prefix and time range)
//   alerts markId → expiresAt (ms): threshold alerts already sent (Store.claimAlertMark; alertMarks.ts)
//   meta   "schema" → number, "hot" → projection format version, "keysHint" → key count
//          at the last open (sizes the index before the load; only a hint), "usage" → usage
//          layout (USAGE_LAYOUT; layout 1, gran|dim|id|startHex, is migrated on open)
//
// Start-up reads `khot` + `kctr`, not the full records: the hot index needs ~100 B of each
// key's ~577 B record, and decoding it is far cheaper than JSON.parse (1M keys: ~560 MB
// of JSON was most of start-up; bench/README.md). Every batch that puts or deletes a `keys`
// entry puts or deletes its `khot` entry too, so disk never holds one without the other
// (checkIntegrity verifies it, byte for byte). Schema 2 means "khot is maintained"; a schema-1
// dir (written before khot existed) is upgraded on open: the projection is built once from
// the full records (the old, slow load) and the marker is written after it. The schema bump
// also keeps an older build (which would write keys without khot) from opening the dir.
// A "hot" marker other than PROJECTION_VERSION (a future format) rebuilds the same way.
//
import { readFile, stat } from "node:fs/promises";
import { join } from "node:path";
import type { UsageBucket } from "../types.js";
import { RAW_SYNC, RESTORE, toRawOps, type Op } from "./codecs.js";
import { USAGE_DIMS, USAGE_GRANS, usagePuts } from "./usageBuckets.js";

/**
 * 4: new ledger entries are compact arrays (codecs.ts encodeLedgerRecord; entries written
 * before stay JSON objects and are read as they are, so the upgrade from 3 rewrites nothing and
 * writes only the marker; the bump keeps an older build, which would read an array as a record,
 * from opening the dir). 3: usage buckets are indexed by account and time (USAGE_LAYOUT); 2:
 * keys carry a `khot` projection; 1: none of these. 1, 2 and 3 are upgraded on open, each step
 * with its own marker written last; the bump keeps an older build (which would write the old
 * layouts) from opening the dir.
 */
export const SCHEMA_VERSION = 4;
/** meta "usage": the usage sublevel's layout (see above). */
export const USAGE_LAYOUT = 2;

export type SubName = "keys" | "khash" | "khot" | "kctr" | "kdel" | "auditacct" | "accts" | "actr" | "groups" | "gctr" | "tokens" | "prices" | "audit" | "ledger" | "usage" | "alerts" | "meta";

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
 * time) → 2 (see the layout above). Runs once, after the keys are loaded: a key row's account
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

