// Loading the key book from the LevelDB engine: at open (with the first-start records, the
// schema checks and upgrades: the projection rebuilt from the full records, the usage layout
// migrated) and again after a failed write (the recovery's reload). A record that does not
// decode stops the load naming the sublevel, the key and the repair.
import type { AccountRecord, GroupBudgetCounters, GroupRecord, KeyRecord, PriceRecord, TokenRecord } from "../../domain/types.js";
import { DEFAULT_ACCOUNT, DEFAULT_GROUP } from "../../domain/types.js";
import { SidecarError } from "../../domain/errors.js";
import type { KeyBook } from "../book/keyBook.js";
import type { AccountCounterValues } from "../book/tables.js";
import type { HotKey } from "../book/hotKey.js";
import { decodeProjection, encodeProjection, hotKeyOf, PROJECTION_VERSION } from "../keyProjection.js";
import { ACCOUNT_COUNTERS, checkCounters, GROUP_BUDGET_COUNTERS, decodeCounters, encodeCounters, KEY_COUNTERS, parseRecord, RAW_SYNC, RESTORE, toRawOps, type KeyCountersDisk, type Op } from "./codecs.js";
import type { LevelDisk } from "./disk.js";
import { migrateUsage, SCHEMA_VERSION, USAGE_LAYOUT } from "./schema.js";

export async function loadStore(disk: LevelDisk, book: KeyBook, now: number, rebuildProjection: boolean): Promise<{ from: "projection" | "records"; auditIndexFrom: string }> {
  const schema = await named(() => disk.readMeta("schema"));
  if (schema === undefined) {
    // First start: the default account and group, in one batch.
    const ops: Op[] = [
      { type: "put", sublevel: disk.subs.meta, key: "schema", value: SCHEMA_VERSION },
      { type: "put", sublevel: disk.subs.meta, key: "hot", value: PROJECTION_VERSION },
      { type: "put", sublevel: disk.subs.meta, key: "usage", value: USAGE_LAYOUT },
      { type: "put", sublevel: disk.subs.accts, key: DEFAULT_ACCOUNT, value: { id: DEFAULT_ACCOUNT, name: "Default account", createdAt: now } satisfies AccountRecord },
      { type: "put", sublevel: disk.subs.actr, key: DEFAULT_ACCOUNT, value: { balance: 0, credited: 0, charged: 0 } satisfies AccountCounterValues },
      {
        type: "put",
        sublevel: disk.subs.groups,
        key: DEFAULT_GROUP,
        value: { name: DEFAULT_GROUP, description: "Keys with no other group", ratioPpm: 1_000_000, models: [], createdAt: now } satisfies GroupRecord,
      },
    ];
    await disk.db.batch(ops as any, { sync: true });
  } else if (schema !== SCHEMA_VERSION && schema !== 1 && schema !== 2 && schema !== 3) {
    throw new Error(`data directory has schema ${schema}; this build reads ${SCHEMA_VERSION} (and upgrades 1, 2 and 3)`);
  }

  // The audit-by-account index exists from this point of the log on: a new dir indexes
  // everything; an older dir keeps its earlier entries in the (scanned) legacy range.
  const stored = await disk.subs.meta.get("auditIndexFrom");
  let indexFrom: string;
  if (typeof stored === "string") indexFrom = stored;
  else {
    indexFrom = schema === undefined ? "" : now.toString(16).padStart(12, "0");
    await disk.db.batch([{ type: "put", sublevel: disk.subs.meta, key: "auditIndexFrom", value: indexFrom }] as any, { sync: true });
  }

  const { accounts, groups, tokens, prices, budgets } = await named(() => readSmallTables(disk));
  book.tables.loadTables(accounts, groups, tokens, prices, now, budgets);

  const hot = await named(() => disk.readMeta("hot"));
  // How many keys the last open found: sizes the index up front (only a hint).
  const hint = await named(() => disk.readMeta("keysHint"));
  if (typeof hint === "number" && hint > 0 && hint < 2 ** 28) book.index.reserve(hint);
  let from: "projection" | "records";
  if (schema === undefined || ((schema === 2 || schema === 3 || schema === SCHEMA_VERSION) && hot === PROJECTION_VERSION && !rebuildProjection)) {
    await named(() => scanKeys(disk, book, disk.subs.khot, (id, v: string) => decodeProjection(id, v)));
    from = "projection";
  } else {
    await named(() => rebuildFromRecords(disk, book));
    from = "records";
  }
  book.endKeyLoad();
  if (hint !== book.index.size) await disk.subs.meta.put("keysHint", book.index.size);
  // After the keys: the usage migration reads each key row's account from the index.
  if ((await disk.subs.meta.get("usage")) !== USAGE_LAYOUT) {
    await migrateUsage(disk.db, disk.subs, (id) => {
      const slot = book.index.slotOf(id);
      return slot >= 0 ? book.index.accountOf(slot) : undefined;
    });
  }
  else if (schema !== undefined && schema !== SCHEMA_VERSION) await disk.db.batch([{ type: "put", sublevel: disk.subs.meta, key: "schema", value: SCHEMA_VERSION }] as any, { sync: true });
  return { from, auditIndexFrom: indexFrom };
}


/**
 * Reads accounts (with their counters, checked), groups, tokens and prices as stored. A record
 * that does not decode, or counters out of range, throw naming the sublevel and the key.
 */
async function readSmallTables(
  disk: LevelDisk,
): Promise<{ accounts: [AccountRecord, AccountCounterValues][]; groups: GroupRecord[]; tokens: TokenRecord[]; prices: PriceRecord[]; budgets: Map<string, GroupBudgetCounters> }> {
  const accounts: [AccountRecord, AccountCounterValues][] = [];
  for await (const [id, text] of disk.rawEntries("accts")) {
    const record = parseRecord<AccountRecord>("accts", id, text);
    const ctext = await disk.rawGet("actr", id);
    const c = ctext === undefined ? { balance: 0, credited: 0, charged: 0 } : parseRecord<AccountCounterValues>("actr", id, ctext);
    checkCounters("account", "actr", id, c as unknown as Record<string, unknown>, ACCOUNT_COUNTERS);
    accounts.push([record, c]);
  }
  const groups: GroupRecord[] = [];
  for await (const [k, text] of disk.rawEntries("groups")) groups.push(parseRecord("groups", k, text));
  // Budget counters (absent in data dirs from before budgets: none is read, none needed).
  const budgets = new Map<string, GroupBudgetCounters>();
  for await (const [k, text] of disk.rawEntries("gctr")) {
    const c = parseRecord<GroupBudgetCounters>("gctr", k, text);
    checkCounters("group", "gctr", k, c as unknown as Record<string, unknown>, GROUP_BUDGET_COUNTERS);
    budgets.set(k, c);
  }
  const tokens: TokenRecord[] = [];
  for await (const [k, text] of disk.rawEntries("tokens")) tokens.push(parseRecord("tokens", k, text));
  const prices: PriceRecord[] = [];
  for await (const [k, text] of disk.rawEntries("prices")) prices.push(parseRecord("prices", k, text));
  return { accounts, groups, tokens, prices, budgets };
}


/** Runs a step of the load: a record it names as bad stops the open with the repair. */
async function named<T>(step: () => Promise<T>): Promise<T> {
  try {
    return await step();
  } catch (err) {
    if (err instanceof SidecarError) throw new SidecarError("FAILED_PRECONDITION", `cannot load the store: ${err.message}; ${RESTORE}`, { cause: err });
    throw err;
  }
}


/**
 * Loads every key from `source` (`khot` or `keys`, both by id) merge-joined with `kctr`
 * (same key space): two ordered scans read in batches, each next batch requested before the
 * current one is processed, so LevelDB's reads (thread pool) overlap the decoding and
 * indexing (main thread). `each` sees every key and its counters (the upgrade writes them).
 */
async function scanKeys<V>(disk: LevelDisk, book: KeyBook, source: any, decode: (id: string, v: V) => HotKey, each?: (id: string, v: V, c: KeyCountersDisk | undefined) => Promise<void> | void): Promise<void> {
  const BATCH = 1000;
  const keys = source.iterator();
  const ctrs = disk.subs.kctr.iterator();
  let nextKeys: Promise<[string, V][]> | undefined = keys.nextv(BATCH);
  let nextCtrs: Promise<[string, string][]> | undefined = ctrs.nextv(BATCH);
  try {
    let ctrBatch: [string, string][] = [];
    let ci = 0;
    let ctrsDone = false;
    for (;;) {
      const batch: [string, V][] = await nextKeys!;
      nextKeys = undefined;
      if (batch.length === 0) break;
      nextKeys = keys.nextv(BATCH);
      for (const [id, v] of batch) {
        let c: KeyCountersDisk | undefined;
        while (!ctrsDone) {
          if (ci === ctrBatch.length) {
            ctrBatch = await nextCtrs!;
            nextCtrs = undefined;
            ci = 0;
            if (ctrBatch.length === 0) {
              ctrsDone = true;
              break;
            }
            nextCtrs = ctrs.nextv(BATCH);
          }
          const cid = ctrBatch[ci]![0];
          if (cid < id) ci++;
          else {
            if (cid === id) {
              c = decodeCounters(id, ctrBatch[ci++]![1]);
              checkCounters("key", "kctr", id, c as unknown as Record<string, unknown>, KEY_COUNTERS);
            }
            break;
          }
        }
        book.loadKey(decode(id, v), c);
        if (each) await each(id, v, c);
      }
    }
  } finally {
    // Settle the read-ahead before closing (an error path may leave one pending).
    await Promise.allSettled([nextKeys, nextCtrs]);
    await keys.close();
    await ctrs.close();
  }
}


/**
 * The upgrade (and repair) path: loads from the full records and writes every key's
 * projection (and its counters, re-encoded), then the markers. Until the markers are written the dir still reads as
 * "no projection", so a crash part-way redoes it; stale entries of an earlier attempt are
 * cleared first. Nothing else writes during open.
 */
async function rebuildFromRecords(disk: LevelDisk, book: KeyBook): Promise<void> {
  // A forced rebuild (rebuildProjection) of a current dir starts by removing the projection's
  // marker, synced: if it is interrupted, the next open finds no marker and rebuilds again,
  // instead of trusting a half-written projection (its keys would be missing, i.e. denied).
  await disk.db.batch([{ type: "del", key: disk.subs.meta.prefix + "hot" }] as any, RAW_SYNC);
  await disk.subs.khot.clear();
  const WRITE = 5000;
  let ops: Op[] = [];
  let writing: Promise<void> = Promise.resolve();
  const flush = async (): Promise<void> => {
    const batch = toRawOps(ops);
    ops = [];
    await writing; // one write in flight, in order
    // Every batch synced: an unsynced one in an older log file is not covered by a later sync.
    writing = disk.db.batch(batch as any, RAW_SYNC);
  };
  await scanKeys(
    disk,
    book,
    disk.subs.keys,
    (_id, rec: KeyRecord) => hotKeyOf(rec),
    async (id, rec: KeyRecord, c) => {
      ops.push({ type: "put", sublevel: disk.subs.khot, key: id, value: encodeProjection(rec), raw: true });
      // The same counters in the compact encoding (earlier builds wrote JSON).
      if (c) ops.push({ type: "put", sublevel: disk.subs.kctr, key: id, value: encodeCounters(c), raw: true });
      if (ops.length >= WRITE) await flush();
    },
  );
  ops.push({ type: "put", sublevel: disk.subs.meta, key: "hot", value: PROJECTION_VERSION });
  ops.push({ type: "put", sublevel: disk.subs.meta, key: "schema", value: SCHEMA_VERSION });
  const last = toRawOps(ops);
  await writing;
  await disk.db.batch(last as any, RAW_SYNC);
}


/** Replaces what memory holds of accounts, groups, tokens, prices and keys by what is on disk. */
export async function reloadFromDisk(disk: LevelDisk, book: KeyBook, now: number): Promise<void> {
  const { accounts, groups, tokens, prices, budgets } = await readSmallTables(disk);

  book.tables.loadTables(accounts, groups, tokens, prices, now, budgets);

  // Keys: every one on disk is upserted (projection and counters; an existing slot keeps its
  // reservations), refill states are rebuilt, keys that are not on disk leave the index
  // together with their open reservations, and group counts are counted from the index.
  book.beginKeyReload();
  const onDisk = new Set<string>();
  await scanKeys(disk, book, disk.subs.khot, (id, v: string) => decodeProjection(id, v), (id: string) => {
    onDisk.add(id);
  });
  book.removeKeysNotIn(onDisk);
  book.endKeyLoad();
}

