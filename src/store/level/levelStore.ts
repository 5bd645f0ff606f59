// The embedded default engine: LevelDB (`level`) plus the in-memory hot index.
//
// Layout (sublevels, JSON values unless noted):
//   keys   id → KeyRecord            khash  sha256hex → id (current and grace secrets)
//   khot   id → the key's hot projection (compact text, src/store/keyProjection.ts)
//   kctr   id → KeyCountersDisk (compact text, encodeCounters)
//   accts  id → AccountRecord        actr   id → AccountCountersDisk
//   groups name → GroupRecord        tokens id → TokenRecord
//   prices model → PriceRecord       audit  auditId (time-ordered) → AuditRecord
//   auditacct account|auditId → "" (the entries about an account's keys, for account-scoped
//          ListAudit; entries older than meta "auditIndexFrom" are not in it)
//   ledger requestId → ConsumeRecord (the usage ledger and idempotency record)
//   kdel   id → DeletedKey (what a deleted key's late Consumes need: account, group, ratio)
//   usage  t|gran|dim|startHex|id → UsageBucket (every bucket, time-ordered per granularity
//          and dimension: operator queries, retention)
//          a|gran|dim|account|startHex|id → the same bucket again for key and account rows
//          (an account's query is a range scan over its own prefix and time range)
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
// Writes: every mutation goes through ONE serial writer that group-commits
// (all submissions waiting while a batch is being synced go into the next
// batch, one fsync for all). A submission resolves only after its batch is on
// disk. Admin mutations are also serialised among themselves (one at a time),
// so each reads, validates and commits with no interleaving: that is the
// compare-and-set the Store interface promises.
//
// Memory: record changes are applied to the hot index after their batch
// commits; counter changes are applied when the batch is built, and the batch
// carries the absolute counter values, so batches (which commit in submission
// order) always leave disk equal to memory at that point.
import { mkdir, readdir } from "node:fs/promises";
import { Level } from "level";
import type {
  AccountRecord,
  AccountState,
  AuditRecord,
  GroupRecord,
  KeyRecord,
  KeyState,
  PriceRecord,
  TokenRecord,
} from "../../domain/types.js";
import { DEFAULT_ACCOUNT, DEFAULT_GROUP } from "../../domain/types.js";
import { failedPrecondition, notFound, SidecarError, StoreUnavailableError } from "../../domain/errors.js";
import type { HotIndex } from "../hotIndex.js";
import { KeyBook, type AccountCounterValues, type DeletedKey } from "../book/keyBook.js";
import { reservationKeyId } from "../reservations.js";
import { decodeProjection, encodeProjection, hotKeyOf, PROJECTION_VERSION } from "../keyProjection.js";
import type { HotKey } from "../hotKey.js";
import type {
  AuditInput,
  ConsumeInput,
  ConsumeRecord,
  ConsumeTarget,
  KeyRef,
  UsageBucket,
  UsageQueryRange,
  GroupWithCount,
  HotSnapshot,
  KeyChange,
  ListAuditQuery,
  ReserveRequest,
  ReserveResult,
  Store,
  StoreHealth,
} from "../types.js";
import {
  ACCOUNT_COUNTERS,
  checkCounters,
  decodeCounters,
  encodeCounters,
  KEY_COUNTERS,
  parseRecord,
  RAW_SYNC,
  RESTORE,
  toRawOps,
  undecodable,
  type KeyCountersDisk,
  type Op,
} from "./codecs.js";
import { GroupCommitWriter } from "./writer.js";
import { AuditLog } from "./audit.js";
import { migrateUsage, openFailure, SCHEMA_VERSION, USAGE_LAYOUT, type SubName } from "./schema.js";
import { getUsageBuckets, pruneUsageOps, queryUsageBuckets, usagePuts } from "./usageBuckets.js";







export interface LevelStoreOptions {
  dir: string;
  /** Called with store errors (for logging/metrics). */
  onError?: (err: unknown) => void;
  /** Clock for audit ids, refills, TTLs. */
  clock?: () => number;
  /** Test hook: when it returns an error, the next batch write fails with it (fault injection). */
  faultInjector?: () => Error | null;
  /**
   * Ignore the `khot` projection: load from the full records and rewrite the projection
   * (the upgrade path, forced). For tests and for repair.
   */
  rebuildProjection?: boolean;
}





export class LevelStore implements Store {
  readonly #dir: string;
  readonly #clock: () => number;
  readonly #onError: (err: unknown) => void;
  #db!: Level<string, any>;
  #subs!: Record<SubName, any>;

  /** What this sidecar holds in memory and every rule over it (store/book/keyBook.ts). */
  readonly book = new KeyBook();
  /** The book's key index (its size is the key count). */
  get index(): HotIndex {
    return this.book.index;
  }
  readonly #consumeInflight = new Map<string, Promise<{ record: ConsumeRecord; replayed: boolean }>>();
  #ledgerQueue: { id: string; resolve: (r: ConsumeRecord | undefined) => void; reject: (e: unknown) => void }[] = [];
  // "Not in the ledger" answers that are still true. ConsumeService reads the ledger
  // (findConsume) right before consume(), which would read it again. Only #consumeOnce writes
  // ledger entries, so a "not found" stays true until a consume of that id starts — unless
  // the read overlapped a consume of the same id, in which case it is not kept. consume()
  // takes the answer (once) and skips its own read: one LevelDB round trip per Consume
  // instead of two. Bounded: cleared when it reaches ABSENT_CAP.
  readonly #absent = new Set<string>();
  /** Ledger reads in flight, per request id (reads by findConsume only). */
  readonly #ledgerReads = new Map<string, number>();
  /** Request ids a consume touched while one of their reads was in flight. */
  readonly #overlapped = new Set<string>();
  #sweep: NodeJS.Timeout | undefined;
  readonly #writer: GroupCommitWriter;
  #recovering = false;
  readonly #fault: (() => Error | null) | undefined;
  readonly #rebuildProjection: boolean;
  /** How the last open loaded the keys (tests). */
  loadedFrom: "projection" | "records" | undefined;

  #health: StoreHealth = "NOT_SERVING";
  readonly #healthListeners: ((h: StoreHealth) => void)[] = [];

  // Serial admin lock and group-commit writer.
  #lock: Promise<unknown> = Promise.resolve();
  #audit!: AuditLog;
  /** Sizes of recent group-commit batches (for metrics). */
  onBatch: ((submissions: number, ops: number) => void) | undefined;

  constructor(opts: LevelStoreOptions) {
    this.#dir = opts.dir;
    this.#clock = opts.clock ?? Date.now;
    this.#onError = opts.onError ?? (() => {});
    this.#fault = opts.faultInjector;
    this.#writer = new GroupCommitWriter({
      write: (ops) => this.#db.batch(ops as any, RAW_SYNC),
      fault: this.#fault,
      onError: (err) => this.#onError(err),
      onCommitted: (submissions, ops) => {
        this.onBatch?.(submissions, ops);
        this.#setHealth("SERVING");
      },
      onFailed: () => this.#setHealth("NOT_SERVING"),
    });
    this.#rebuildProjection = opts.rebuildProjection === true;
  }

  // ---- lifecycle ---------------------------------------------------------

  async open(now: number): Promise<void> {
    await mkdir(this.#dir, { recursive: true, mode: 0o700 });
    // maxOpenFiles: LevelDB mmaps every open table file, and the load at start reads them
    // all, so with the default (1000) the whole store stays mapped and counts in RSS (~370 MB
    // at 1M keys). 64 (LevelDB raises it to its minimum, 74, which leaves 64 table files in its
    // table cache) bounds that to ~130 MB, and the reopen after the load (#unmapLoadedTables)
    // drops those too; Check never reads LevelDB, and admin reads and Consume's recent ledger
    // entries barely notice. (bench/README.md, "RSS".)
    this.#db = new Level<string, any>(`${this.#dir}/db`, { valueEncoding: "json", maxOpenFiles: 64 });
    await this.#openDb();
    const sub = (name: string) => this.#db.sublevel<string, any>(name, { valueEncoding: "json" });
    this.#subs = {
      keys: sub("keys"),
      khash: sub("khash"),
      khot: this.#db.sublevel<string, string>("khot", { valueEncoding: "utf8" }),
      kctr: this.#db.sublevel<string, string>("kctr", { valueEncoding: "utf8" }),
      kdel: sub("kdel"),
      auditacct: this.#db.sublevel<string, string>("auditacct", { valueEncoding: "utf8" }),
      accts: sub("accts"),
      actr: sub("actr"),
      groups: sub("groups"),
      tokens: sub("tokens"),
      prices: sub("prices"),
      audit: sub("audit"),
      ledger: sub("ledger"),
      usage: sub("usage"),
      meta: sub("meta"),
    };
    try {
      await this.#load(now);
      await this.#unmapLoadedTables();
    } catch (err) {
      // Release the directory's lock: a failed open leaves nothing open.
      await this.#db.close().catch(() => {});
      throw err;
    }
    this.#sweep = setInterval(() => this.#tick(), 1000);
    this.#sweep.unref();
    this.#setHealth("SERVING");
  }

  /**
   * Closes and reopens LevelDB once the load has read what it needs. LevelDB mmaps the table
   * files it reads, and keeps the last 64 of them open (and mapped; see maxOpenFiles in open)
   * until something else evicts them: after the load's scan of every key that is ~64 tables, ~130 MB of
   * file-backed RSS at 1M keys that nothing reads again (Check never reads LevelDB). Reopening
   * drops the table cache; the page cache keeps the pages for whoever reads them next. It runs
   * before anything can write (no Check, Consume or admin call is served yet) and takes a few
   * ms (the log is replayed; it holds only what the load itself wrote). The directory lock is
   * released for that moment: a second serve racing this one for it makes one of the two fail
   * with "data directory in use", as it would have anyway.
   */
  async #unmapLoadedTables(): Promise<void> {
    await this.#db.close();
    await this.#openDb();
    // Closing the database closed its sublevels; they reopen on their own, but reads on a
    // closed sublevel fail, so wait for them here.
    await Promise.all(Object.values(this.#subs).map((s) => s.open()));
  }

  async #openDb(): Promise<void> {
    // Without CURRENT, LevelDB would create a new, empty store here and delete the old files
    // as obsolete: a store whose CURRENT is gone must not open.
    const db = `${this.#dir}/db`;
    const files = await readdir(db).catch(() => [] as string[]);
    if (!files.includes("CURRENT") && files.some((f) => /^MANIFEST-\d+$|\.(ldb|sst|log)$/.test(f))) {
      throw new SidecarError(
        "FAILED_PRECONDITION",
        `cannot open the LevelDB store ${db}: ${db}/CURRENT is missing while the store's files are there (opening would start an empty store over them). ` +
          `${RESTORE}; if only CURRENT is lost and ${db} holds a MANIFEST-* file, write the name of the newest one followed by a newline into ${db}/CURRENT`,
      );
    }
    try {
      await this.#db.open();
    } catch (err: any) {
      if (err?.cause?.code === "LEVEL_LOCKED" || err?.code === "LEVEL_LOCKED") {
        throw new SidecarError("FAILED_PRECONDITION", `data directory in use: ${this.#dir} (another aisa-authz serve holds its lock)`, { cause: err });
      }
      throw new SidecarError("FAILED_PRECONDITION", `cannot open the LevelDB store ${this.#dir}/db: ${await openFailure(`${this.#dir}/db`, err)}`, { cause: err });
    }
  }

  async close(): Promise<void> {
    if (this.#sweep) clearInterval(this.#sweep);
    // Let queued writes finish before closing.
    await this.#lock.catch(() => {});
    while (!this.#writer.idle) await new Promise((r) => setTimeout(r, 5));
    this.#setHealth("NOT_SERVING");
    if (this.#db) await this.#db.close();
  }

  health(): StoreHealth {
    return this.#health;
  }

  onHealth(listener: (h: StoreHealth) => void): void {
    this.#healthListeners.push(listener);
  }

  #setHealth(h: StoreHealth): void {
    if (h === this.#health) return;
    this.#health = h;
    for (const l of this.#healthListeners) l(h);
  }

  async #load(now: number): Promise<void> {
    const schema = await this.#named(() => this.readMeta("schema"));
    if (schema === undefined) {
      // First start: the default account and group, in one batch.
      const ops: Op[] = [
        { type: "put", sublevel: this.#subs.meta, key: "schema", value: SCHEMA_VERSION },
        { type: "put", sublevel: this.#subs.meta, key: "hot", value: PROJECTION_VERSION },
        { type: "put", sublevel: this.#subs.meta, key: "usage", value: USAGE_LAYOUT },
        { type: "put", sublevel: this.#subs.accts, key: DEFAULT_ACCOUNT, value: { id: DEFAULT_ACCOUNT, name: "Default account", createdAt: now } satisfies AccountRecord },
        { type: "put", sublevel: this.#subs.actr, key: DEFAULT_ACCOUNT, value: { balance: 0, credited: 0, charged: 0 } satisfies AccountCounterValues },
        {
          type: "put",
          sublevel: this.#subs.groups,
          key: DEFAULT_GROUP,
          value: { name: DEFAULT_GROUP, description: "Keys with no other group", ratioPpm: 1_000_000, models: [], createdAt: now } satisfies GroupRecord,
        },
      ];
      await this.#db.batch(ops as any, { sync: true });
    } else if (schema !== SCHEMA_VERSION && schema !== 1 && schema !== 2) {
      throw new Error(`data directory has schema ${schema}; this build reads ${SCHEMA_VERSION} (and upgrades 1 and 2)`);
    }

    // The audit-by-account index exists from this point of the log on: a new dir indexes
    // everything; an older dir keeps its earlier entries in the (scanned) legacy range.
    const from = await this.#subs.meta.get("auditIndexFrom");
    let indexFrom: string;
    if (typeof from === "string") indexFrom = from;
    else {
      indexFrom = schema === undefined ? "" : now.toString(16).padStart(12, "0");
      await this.#db.batch([{ type: "put", sublevel: this.#subs.meta, key: "auditIndexFrom", value: indexFrom }] as any, { sync: true });
    }
    this.#audit = new AuditLog(this.#subs.audit, this.#subs.auditacct, this.#clock, indexFrom, (keyId) => {
      const slot = this.book.index.slotOf(keyId);
      return slot >= 0 ? this.book.index.accountOf(slot) : undefined;
    });

    const { accounts, groups, tokens, prices } = await this.#named(() => this.#readSmallTables());
    this.book.loadTables(accounts, groups, tokens, prices);

    const hot = await this.#named(() => this.readMeta("hot"));
    // How many keys the last open found: sizes the index up front (only a hint).
    const hint = await this.#named(() => this.readMeta("keysHint"));
    if (typeof hint === "number" && hint > 0 && hint < 2 ** 28) this.book.index.reserve(hint);
    if (schema === undefined || ((schema === 2 || schema === SCHEMA_VERSION) && hot === PROJECTION_VERSION && !this.#rebuildProjection)) {
      await this.#named(() => this.#scanKeys(this.#subs.khot, (id, v: string) => decodeProjection(id, v)));
      this.loadedFrom = "projection";
    } else {
      await this.#named(() => this.#rebuildFromRecords());
      this.loadedFrom = "records";
    }
    if (hint !== this.book.index.size) await this.#subs.meta.put("keysHint", this.book.index.size);
    // After the keys: the usage migration reads each key row's account from the index.
    if ((await this.#subs.meta.get("usage")) !== USAGE_LAYOUT) {
      await migrateUsage(this.#db, this.#subs, (id) => {
        const slot = this.book.index.slotOf(id);
        return slot >= 0 ? this.book.index.accountOf(slot) : undefined;
      });
    }
    else if (schema !== undefined && schema !== SCHEMA_VERSION) await this.#db.batch([{ type: "put", sublevel: this.#subs.meta, key: "schema", value: SCHEMA_VERSION }] as any, { sync: true });
    this.#refill(now);
  }

  /**
   * Reads accounts (with their counters, checked), groups, tokens and prices as stored. A record
   * that does not decode, or counters out of range, throw naming the sublevel and the key.
   */
  async #readSmallTables(): Promise<{ accounts: [AccountRecord, AccountCounterValues][]; groups: GroupRecord[]; tokens: TokenRecord[]; prices: PriceRecord[] }> {
    const accounts: [AccountRecord, AccountCounterValues][] = [];
    for await (const [id, text] of this.#rawEntries("accts")) {
      const record = parseRecord<AccountRecord>("accts", id, text);
      const ctext = await this.#rawGet("actr", id);
      const c = ctext === undefined ? { balance: 0, credited: 0, charged: 0 } : parseRecord<AccountCounterValues>("actr", id, ctext);
      checkCounters("account", "actr", id, c as unknown as Record<string, unknown>, ACCOUNT_COUNTERS);
      accounts.push([record, c]);
    }
    const groups: GroupRecord[] = [];
    for await (const [k, text] of this.#rawEntries("groups")) groups.push(parseRecord("groups", k, text));
    const tokens: TokenRecord[] = [];
    for await (const [k, text] of this.#rawEntries("tokens")) tokens.push(parseRecord("tokens", k, text));
    const prices: PriceRecord[] = [];
    for await (const [k, text] of this.#rawEntries("prices")) prices.push(parseRecord("prices", k, text));
    return { accounts, groups, tokens, prices };
  }

  /** The stored text of one record of sublevel `name` (undefined when absent). */
  async #rawGet(name: SubName, key: string): Promise<string | undefined> {
    return (await this.#db.get(this.#subs[name].prefix + key, RAW_SYNC)) ?? undefined;
  }

  /** Every record of sublevel `name` as [key, stored text], in key order. */
  async *#rawEntries(name: SubName): AsyncIterable<[string, string]> {
    const prefix: string = this.#subs[name].prefix;
    // Sublevel prefixes are "!name!": every key of this one sorts below "!name" + ("!" + 1).
    const it = this.#db.iterator({ gte: prefix, lt: prefix.slice(0, -1) + String.fromCharCode(prefix.charCodeAt(prefix.length - 1) + 1), ...RAW_SYNC });
    try {
      for (;;) {
        const batch: [string, string][] = await it.nextv(1000);
        if (batch.length === 0) return;
        for (const [k, v] of batch) yield [k.slice(prefix.length), v];
      }
    } finally {
      await it.close();
    }
  }

  /**
   * A key record as stored, or `unreadable` when its value does not decode (a torn disk, a bad
   * copy): such a key is still in the index (its projection decoded), so it can be deleted.
   */
  #decodeKey(id: string, text: string | undefined): KeyRecord | undefined | "unreadable" {
    if (text === undefined) return undefined;
    try {
      return parseRecord<KeyRecord>("keys", id, text);
    } catch (err) {
      this.#onError(new SidecarError("FAILED_PRECONDITION", `key ${id}: ${(err as Error).message}; it is left out of listings and cannot be shown or changed; delete it (aisa-authz keys delete ${id}) or ${RESTORE}`, { cause: err }));
      return "unreadable";
    }
  }

  /** What the index knows of a key whose record is unreadable: enough to check access, delete and audit it. */
  #recordFromIndex(id: string): KeyRecord {
    const e = this.book.index.entry(this.book.index.slotOf(id));
    return {
      id,
      name: "",
      accountId: e.accountId,
      group: e.group,
      status: e.enabled ? "enabled" : "disabled",
      unlimited: e.unlimited,
      quotaTotal: 0,
      expiresAt: e.expiresAt,
      models: e.models ?? [],
      ips: [],
      createdAt: 0,
      updatedAt: 0,
      limits: e.limits,
      refill: "none",
      metadata: {},
      secretHash: e.secretHash,
      secretEnc: "",
      masked: "",
      prevSecretHash: e.prevSecretHash,
      prevSecretExpiresAt: e.prevSecretExpiresAt,
    };
  }

  /** A value of the `meta` sublevel (JSON), or undefined. */
  async readMeta(name: string): Promise<unknown> {
    const text = await this.#rawGet("meta", name);
    if (text === undefined) return undefined;
    try {
      return JSON.parse(text) as unknown;
    } catch (err) {
      throw undecodable("meta", name, err);
    }
  }

  /** Writes a value of the `meta` sublevel, synced. */
  writeMeta(name: string, value: unknown): Promise<void> {
    return this.#submit([{ type: "put", sublevel: this.#subs.meta, key: name, value }]);
  }

  /** Runs a step of the load: a record it names as bad stops the open with the repair. */
  async #named<T>(step: () => Promise<T>): Promise<T> {
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
  async #scanKeys<V>(source: any, decode: (id: string, v: V) => HotKey, each?: (id: string, v: V, c: KeyCountersDisk | undefined) => Promise<void> | void): Promise<void> {
    const BATCH = 1000;
    const keys = source.iterator();
    const ctrs = this.#subs.kctr.iterator();
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
          this.book.loadKey(decode(id, v), c);
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
  async #rebuildFromRecords(): Promise<void> {
    // A forced rebuild (rebuildProjection) of a current dir starts by removing the projection's
    // marker, synced: if it is interrupted, the next open finds no marker and rebuilds again,
    // instead of trusting a half-written projection (its keys would be missing, i.e. denied).
    await this.#db.batch([{ type: "del", key: this.#subs.meta.prefix + "hot" }] as any, RAW_SYNC);
    await this.#subs.khot.clear();
    const WRITE = 5000;
    let ops: Op[] = [];
    let writing: Promise<void> = Promise.resolve();
    const flush = async (): Promise<void> => {
      const batch = toRawOps(ops);
      ops = [];
      await writing; // one write in flight, in order
      // Every batch synced: an unsynced one in an older log file is not covered by a later sync.
      writing = this.#db.batch(batch as any, RAW_SYNC);
    };
    await this.#scanKeys(
      this.#subs.keys,
      (_id, rec: KeyRecord) => hotKeyOf(rec),
      async (id, rec: KeyRecord, c) => {
        ops.push({ type: "put", sublevel: this.#subs.khot, key: id, value: encodeProjection(rec), raw: true });
        // The same counters in the compact encoding (earlier builds wrote JSON).
        if (c) ops.push({ type: "put", sublevel: this.#subs.kctr, key: id, value: encodeCounters(c), raw: true });
        if (ops.length >= WRITE) await flush();
      },
    );
    ops.push({ type: "put", sublevel: this.#subs.meta, key: "hot", value: PROJECTION_VERSION });
    ops.push({ type: "put", sublevel: this.#subs.meta, key: "schema", value: SCHEMA_VERSION });
    const last = toRawOps(ops);
    await writing;
    await this.#db.batch(last as any, RAW_SYNC);
  }

  /** Queues ops for the next group-committed batch (writer.ts); resolves once synced. */
  #submit(ops: Op[]): Promise<void> {
    return this.#writer.submit(ops);
  }

  /** Runs admin mutations one at a time. */
  #serial<T>(fn: () => Promise<T>): Promise<T> {
    const p = this.#lock.then(() => {
      if (this.#health === "NOT_SERVING" && !this.#db) throw new StoreUnavailableError();
      return fn();
    });
    this.#lock = p.catch(() => {});
    return p;
  }

  // ---- keys ------------------------------------------------------------------

  #ctrOp(id: string, refilledAt?: number | null): Op {
    return { type: "put", sublevel: this.#subs.kctr, key: id, value: encodeCounters(this.book.keyCounters(id, refilledAt)), raw: true };
  }

  /** The full record and its hot projection: every write of a key writes both (one batch). */
  #putKeyOps(record: KeyRecord): [Op, Op] {
    return [
      { type: "put", sublevel: this.#subs.keys, key: record.id, value: record },
      { type: "put", sublevel: this.#subs.khot, key: record.id, value: encodeProjection(record), raw: true },
    ];
  }

  insertKey(record: KeyRecord, audit: AuditInput): Promise<KeyState> {
    return this.#serial(async () => {
      this.book.checkNewKey(record);
      const hot = hotKeyOf(record);
      const start = record.unlimited ? 0 : record.quotaTotal;
      const counters: KeyCountersDisk = { remaining: start, used: 0, credited: start, lastUsedAt: null, refilledAt: null };
      await this.#submit([
        ...this.#putKeyOps(record),
        { type: "put", sublevel: this.#subs.khash, key: record.secretHash, value: record.id },
        { type: "put", sublevel: this.#subs.kctr, key: record.id, value: encodeCounters(counters), raw: true },
        ...this.#audit.ops({ ...audit, after: audit.after ?? record }),
      ]);
      this.book.addKey(hot, { remaining: counters.remaining, used: 0, credited: counters.credited, lastUsedAt: null }, record.createdAt);
      return this.book.keyState(record);
    });
  }

  /**
   * Bulk import (migrations, benchmarks): inserts many keys in large atomic
   * batches, with one audit entry per batch. Every record must be new and
   * reference an existing account and group; a batch with a bad record writes
   * nothing.
   */
  importKeys(records: readonly KeyRecord[], audit: AuditInput, batchSize = 10_000): Promise<number> {
    return this.#serial(async () => {
      let n = 0;
      for (let i = 0; i < records.length; i += batchSize) {
        const chunk = records.slice(i, i + batchSize);
        const ops: Op[] = [];
        for (const record of chunk) {
          this.book.checkNewKey(record);
          const start = record.unlimited ? 0 : record.quotaTotal;
          ops.push(
            ...this.#putKeyOps(record),
            { type: "put", sublevel: this.#subs.khash, key: record.secretHash, value: record.id },
            { type: "put", sublevel: this.#subs.kctr, key: record.id, value: encodeCounters({ remaining: start, used: 0, credited: start, lastUsedAt: null, refilledAt: null }), raw: true },
          );
        }
        ops.push(...this.#audit.ops({ ...audit, detail: `${chunk.length} keys` }));
        await this.#submit(ops);
        for (const record of chunk) {
          const start = record.unlimited ? 0 : record.quotaTotal;
          this.book.addKey(hotKeyOf(record), { remaining: start, used: 0, credited: start, lastUsedAt: null }, record.createdAt);
        }
        n += chunk.length;
      }
      return n;
    });
  }

  async getKey(id: string): Promise<KeyState | undefined> {
    if (!this.book.hasKey(id)) return undefined;
    const record = this.#decodeKey(id, await this.#rawGet("keys", id));
    if (record === "unreadable") throw failedPrecondition(`key ${id}: its record is unreadable (see the server log); delete it, or ${RESTORE}`);
    return record ? this.book.keyState(record) : undefined;
  }

  /** Every key (of `accountId`); a record that does not decode is left out and logged (#decodeKey). */
  async *scanKeys(accountId?: string): AsyncIterable<KeyState> {
    for await (const [id, text] of this.#rawEntries("keys")) {
      if (!this.book.hasKey(id)) continue;
      const rec = this.#decodeKey(id, text);
      if (!rec || rec === "unreadable") continue;
      if (accountId !== undefined && rec.accountId !== accountId) continue;
      yield this.book.keyState(rec);
    }
  }

  async #readKeys(ids: readonly string[]): Promise<(KeyRecord | undefined | "unreadable")[]> {
    if (ids.length === 0) return [];
    const texts: (string | undefined)[] = await this.#db.getMany(ids.map((id) => this.#subs.keys.prefix + id), RAW_SYNC);
    return texts.map((t, i) => this.#decodeKey(ids[i]!, t ?? undefined));
  }

  updateKeys(ids: readonly string[], change: (current: KeyState) => KeyChange, audit: (before: KeyState, after: KeyState) => AuditInput): Promise<KeyState[]> {
    return this.#serial(async () => {
      const records = await this.#readKeys(ids);
      const befores: KeyState[] = records.map((r, i) => {
        if (r === "unreadable") throw failedPrecondition(`key ${ids[i]}: its record is unreadable (see the server log); delete it, or ${RESTORE}`);
        if (!r || !this.book.hasKey(r.id)) throw notFound("key", ids[i]!);
        return this.book.keyState(r);
      });
      // Compute every change first: a throw aborts the whole call with nothing written.
      const changes = befores.map((b) => change(b));
      for (const c of changes) this.book.checkKeyChange(c.record);
      const hots = changes.map((c) => hotKeyOf(c.record));
      // A key's refill period starts (or goes on) at `since`. One that starts now is written
      // with the counters in this batch: a reload must not start it at createdAt, which would
      // reset the quota at once (a free refill) at the next open.
      const now = this.#clock();
      const sinces = changes.map((c) => this.book.refillSinceFor(c.record.id, now));
      const ops: Op[] = [];
      const afters: KeyState[] = [];
      for (let i = 0; i < changes.length; i++) {
        const before = befores[i]!;
        const c = changes[i]!;
        const refillStarts = this.book.refillStarts(c.record);
        this.book.changeQuota(c.record.id, c.remainingSet, c.remainingDelta);
        ops.push(...this.#putKeyOps(c.record));
        if (c.record.secretHash !== before.record.secretHash) {
          ops.push({ type: "put", sublevel: this.#subs.khash, key: c.record.secretHash, value: c.record.id });
          if (before.record.prevSecretHash && before.record.prevSecretHash !== c.record.prevSecretHash) {
            ops.push({ type: "del", sublevel: this.#subs.khash, key: before.record.prevSecretHash });
          }
          if (c.record.prevSecretHash !== before.record.secretHash) {
            ops.push({ type: "del", sublevel: this.#subs.khash, key: before.record.secretHash });
          }
        }
        if (c.remainingSet !== undefined || c.remainingDelta || refillStarts) ops.push(this.#ctrOp(c.record.id, refillStarts ? sinces[i]! : undefined));
        const after: KeyState = { record: c.record, counters: { ...before.counters, remaining: this.book.keyState(c.record).counters.remaining } };
        afters.push(after);
        ops.push(...this.#audit.ops(audit(before, after)));
      }
      await this.#submit(ops);
      for (let i = 0; i < changes.length; i++) this.book.updateKey(hots[i]!, sinces[i]!, befores[i]!.record.group);
      return afters.map((a) => this.book.keyState(a.record));
    });
  }

  deleteKeys(ids: readonly string[], check: (current: KeyState) => void, audit: (before: KeyState) => AuditInput): Promise<void> {
    return this.#serial(async () => {
      // An unreadable record is deleted from what the index knows of it (its hashes included).
      const records = (await this.#readKeys(ids)).map((r, i) => (r === "unreadable" ? (this.book.hasKey(ids[i]!) ? this.#recordFromIndex(ids[i]!) : undefined) : r));
      const befores = records.map((r, i) => {
        if (!r || !this.book.hasKey(r.id)) throw notFound("key", ids[i]!);
        const s = this.book.keyState(r);
        check(s);
        return s;
      });
      const ops: Op[] = [];
      const tombs = new Map<string, DeletedKey>();
      for (const b of befores) {
        const r = b.record;
        ops.push({ type: "del", sublevel: this.#subs.keys, key: r.id });
        ops.push({ type: "del", sublevel: this.#subs.khot, key: r.id });
        ops.push({ type: "del", sublevel: this.#subs.kctr, key: r.id });
        // The tombstone: a request admitted before this delete is still charged to the account.
        const tomb = this.book.tombstoneOf(r, this.#clock());
        tombs.set(r.id, tomb);
        ops.push({ type: "put", sublevel: this.#subs.kdel, key: r.id, value: tomb });
        ops.push({ type: "del", sublevel: this.#subs.khash, key: r.secretHash });
        if (r.prevSecretHash) ops.push({ type: "del", sublevel: this.#subs.khash, key: r.prevSecretHash });
        ops.push(...this.#audit.ops(audit(b)));
      }
      this.book.beginDelete(tombs);
      try {
        await this.#submit(ops);
      } finally {
        this.book.endDelete(tombs.keys());
      }
      this.book.removeKeys(befores.map((b) => b.record.id));
    });
  }

  // ---- accounts ----------------------------------------------------------------

  insertAccount(record: AccountRecord, initialBalance: number, audit: AuditInput): Promise<AccountState> {
    return this.#serial(async () => {
      this.book.checkNewAccount(record.id);
      const c: AccountCounterValues = { balance: initialBalance, credited: initialBalance, charged: 0 };
      await this.#submit([
        { type: "put", sublevel: this.#subs.accts, key: record.id, value: record },
        { type: "put", sublevel: this.#subs.actr, key: record.id, value: c },
        ...this.#audit.ops({ ...audit, after: audit.after ?? { ...record, balance: initialBalance } }),
      ]);
      return this.book.putAccount(record, c);
    });
  }

  getAccount(id: string): AccountState | undefined {
    return this.book.getAccount(id);
  }

  listAccounts(): AccountState[] {
    return this.book.listAccounts();
  }

  #actrOp(id: string): Op {
    return { type: "put", sublevel: this.#subs.actr, key: id, value: this.book.accountCounters(id) };
  }

  adjustBalance(id: string, delta: number, audit: AuditInput): Promise<AccountState> {
    return this.#serial(async () => {
      // Counters move now (see the file comment); the batch carries absolute values.
      const before = this.book.adjustBalance(id, delta);
      const after = this.book.getAccount(id)!;
      await this.#submit([
        this.#actrOp(id),
        ...this.#audit.ops({ ...audit, before: audit.before ?? { id, balance: before.counters.balance }, after: audit.after ?? { id, balance: after.counters.balance } }),
      ]);
      return after;
    });
  }

  // ---- groups ------------------------------------------------------------------

  insertGroup(record: GroupRecord, audit: AuditInput): Promise<GroupRecord> {
    return this.#serial(async () => {
      this.book.checkNewGroup(record.name);
      await this.#submit([{ type: "put", sublevel: this.#subs.groups, key: record.name, value: record }, ...this.#audit.ops({ ...audit, after: audit.after ?? record })]);
      this.book.putGroup(record);
      return { ...record };
    });
  }

  getGroup(name: string): GroupRecord | undefined {
    return this.book.getGroup(name);
  }

  listGroups(accountId?: string): GroupWithCount[] {
    return this.book.listGroups(accountId);
  }

  updateGroup(name: string, change: (current: GroupRecord) => GroupRecord, audit: (before: GroupRecord, after: GroupRecord) => AuditInput): Promise<GroupRecord> {
    return this.#serial(async () => {
      const before = this.book.getGroup(name);
      if (!before) throw notFound("group", name);
      const after = change(before);
      await this.#submit([{ type: "put", sublevel: this.#subs.groups, key: name, value: after }, ...this.#audit.ops(audit(before, after))]);
      this.book.putGroup(after);
      return { ...after };
    });
  }

  deleteGroup(name: string, audit: AuditInput): Promise<void> {
    return this.#serial(async () => {
      const g = this.book.groupRecord(name);
      if (!g) throw notFound("group", name);
      if (name === DEFAULT_GROUP) throw failedPrecondition('group "default" cannot be deleted');
      const n = this.book.keysInGroup(name);
      if (n > 0) throw failedPrecondition(`group ${JSON.stringify(name)} is used by ${n} key(s); move or delete them first`);
      await this.#submit([{ type: "del", sublevel: this.#subs.groups, key: name }, ...this.#audit.ops({ ...audit, before: audit.before ?? g })]);
      this.book.deleteGroup(name);
    });
  }

  // ---- tokens ------------------------------------------------------------------

  insertToken(record: TokenRecord, audit: AuditInput): Promise<TokenRecord> {
    return this.#serial(async () => {
      this.book.checkNewToken(record);
      await this.#submit([{ type: "put", sublevel: this.#subs.tokens, key: record.id, value: record }, ...this.#audit.ops({ ...audit, after: audit.after ?? record })]);
      this.book.putToken(record);
      return { ...record };
    });
  }

  listTokens(): TokenRecord[] {
    return this.book.listTokens();
  }

  deleteToken(id: string, audit: AuditInput): Promise<void> {
    return this.#serial(async () => {
      const t = this.book.getToken(id);
      if (!t) throw notFound("token", id);
      await this.#submit([{ type: "del", sublevel: this.#subs.tokens, key: id }, ...this.#audit.ops({ ...audit, before: audit.before ?? t })]);
      this.book.deleteToken(t);
    });
  }

  findTokenByHash(hashHex: string): TokenRecord | undefined {
    return this.book.findTokenByHash(hashHex);
  }

  // ---- prices ------------------------------------------------------------------

  setPrice(record: PriceRecord, audit: AuditInput): Promise<PriceRecord> {
    return this.#serial(async () => {
      const before = this.book.getPrice(record.model);
      await this.#submit([{ type: "put", sublevel: this.#subs.prices, key: record.model, value: record }, ...this.#audit.ops({ ...audit, before: audit.before ?? before, after: audit.after ?? record })]);
      this.book.putPrice(record);
      return { ...record };
    });
  }

  getPrice(model: string): PriceRecord | undefined {
    return this.book.getPrice(model);
  }

  listPrices(): PriceRecord[] {
    return this.book.listPrices();
  }

  deletePrice(model: string, audit: AuditInput): Promise<void> {
    return this.#serial(async () => {
      const p = this.book.getPrice(model);
      if (!p) throw notFound("price for model", model);
      await this.#submit([{ type: "del", sublevel: this.#subs.prices, key: model }, ...this.#audit.ops({ ...audit, before: audit.before ?? p })]);
      this.book.deletePrice(model);
    });
  }

  // ---- audit -------------------------------------------------------------------

  listAudit(q: ListAuditQuery): Promise<AuditRecord[]> {
    return this.#audit.list(q);
  }

  appendAudit(audit: AuditInput | readonly AuditInput[]): Promise<void> {
    const list = Array.isArray(audit) ? audit : [audit as AuditInput];
    return this.#serial(() => this.#submit(list.flatMap((a) => this.#audit.ops(a))));
  }

  // ---- hot path ------------------------------------------------------------------

  lookup(secretHash: Uint8Array, now: number): HotSnapshot | undefined {
    return this.book.lookup(secretHash, now);
  }

  reserve(req: ReserveRequest): ReserveResult {
    return this.book.reserve(req);
  }

  release(reservationId: string): boolean {
    return this.book.release(reservationId);
  }

  reservationUnits(reservationId: string): number | undefined {
    return this.book.reservationUnits(reservationId);
  }

  /**
   * Cross-checks the on-disk indexes: every key has its hash index entry,
   * counters and hot projection (byte for byte what its record projects to), and
   * every hash index entry and projection belongs to a key. Returns the problems
   * found (empty = consistent). Used by the crash tests.
   */
  async checkIntegrity(): Promise<string[]> {
    const problems: string[] = [];
    const keys = new Map<string, KeyRecord>();
    for await (const [id, rec] of this.#subs.keys.iterator()) keys.set(id, rec as KeyRecord);
    const ctrs = new Set<string>();
    for await (const [id, v] of this.#subs.kctr.iterator()) {
      ctrs.add(id as string);
      try {
        decodeCounters(id as string, v as string);
      } catch {
        problems.push(`key ${id}: counters unreadable`);
      }
    }
    const hashes = new Map<string, string>();
    for await (const [h, id] of this.#subs.khash.iterator()) hashes.set(h as string, id as string);
    for (const [id, rec] of keys) {
      if (hashes.get(rec.secretHash) !== id) problems.push(`key ${id}: hash index missing`);
      if (!ctrs.has(id)) problems.push(`key ${id}: counters missing`);
    }
    for (const [h, id] of hashes) {
      const rec = keys.get(id);
      if (!rec) problems.push(`hash ${h.slice(0, 8)}…: points at missing key ${id}`);
      else if (rec.secretHash !== h && rec.prevSecretHash !== h) problems.push(`hash ${h.slice(0, 8)}…: stale entry for key ${id}`);
    }
    for (const id of ctrs) if (!keys.has(id)) problems.push(`counters for missing key ${id}`);
    const hot = new Set<string>();
    for await (const [id, v] of this.#subs.khot.iterator()) {
      hot.add(id as string);
      const rec = keys.get(id as string);
      if (!rec) problems.push(`hot projection for missing key ${id}`);
      else if (encodeProjection(rec) !== v) problems.push(`key ${id}: hot projection differs from the record`);
    }
    for (const id of keys.keys()) if (!hot.has(id)) problems.push(`key ${id}: hot projection missing`);
    if ((await this.#subs.meta.get("hot")) !== PROJECTION_VERSION) problems.push("hot projection marker missing");
    return problems;
  }

  // ---- consume (usage ledger) --------------------------------------------------

  resolveConsumeTarget(target: ConsumeTarget, now: number): KeyRef | undefined {
    return this.book.resolveConsumeTarget(target, now);
  }

  async resolveDeletedTarget(target: ConsumeTarget): Promise<KeyRef | undefined> {
    const keyId = target.kind === "key" ? target.id : target.kind === "reservation" ? reservationKeyId(target.id) : undefined;
    if (!keyId || this.book.hasKey(keyId)) return undefined;
    const t = await this.#deletedKey(keyId);
    return t ? this.book.deletedRef(keyId, t) : undefined;
  }

  async #deletedKey(keyId: string): Promise<DeletedKey | undefined> {
    try {
      return ((await this.#subs.kdel.get(keyId)) as DeletedKey | undefined) ?? undefined;
    } catch (err) {
      this.#onError(err);
      throw new StoreUnavailableError(err);
    }
  }

  /** Ledger reads of one tick go to LevelDB as one getMany. */
  findConsume(requestId: string): Promise<ConsumeRecord | undefined> {
    this.#ledgerReads.set(requestId, (this.#ledgerReads.get(requestId) ?? 0) + 1);
    if (this.#consumeInflight.has(requestId)) this.#overlapped.add(requestId);
    return this.#readLedger(requestId).then(
      (r) => {
        this.#ledgerReadDone(requestId, r === undefined);
        return r;
      },
      (err) => {
        this.#ledgerReadDone(requestId, false);
        throw err;
      },
    );
  }

  #ledgerReadDone(requestId: string, absent: boolean): void {
    if (absent && !this.#overlapped.has(requestId)) {
      if (this.#absent.size >= ABSENT_CAP) this.#absent.clear();
      this.#absent.add(requestId);
    }
    const n = (this.#ledgerReads.get(requestId) ?? 1) - 1;
    if (n > 0) this.#ledgerReads.set(requestId, n);
    else {
      this.#ledgerReads.delete(requestId);
      this.#overlapped.delete(requestId);
    }
  }

  #readLedger(requestId: string): Promise<ConsumeRecord | undefined> {
    return new Promise((resolve, reject) => {
      this.#ledgerQueue.push({ id: requestId, resolve, reject });
      if (this.#ledgerQueue.length === 1) {
        setImmediate(() => {
          const q = this.#ledgerQueue.splice(0);
          this.#subs.ledger.getMany(q.map((e) => e.id)).then(
            (vals: (ConsumeRecord | undefined)[]) => q.forEach((e, i) => e.resolve(vals[i] ?? undefined)),
            (err: unknown) => {
              this.#onError(err);
              const e = new StoreUnavailableError(err);
              q.forEach((x) => x.reject(e));
            },
          );
        });
      }
    });
  }

  consume(input: ConsumeInput): Promise<{ record: ConsumeRecord; replayed: boolean }> {
    const running = this.#consumeInflight.get(input.requestId);
    if (running) return running.then((r) => ({ record: r.record, replayed: true }));
    // A kept "not found" is used once, by this consume; reads now in flight may not keep theirs.
    const knownAbsent = this.#absent.delete(input.requestId);
    if (this.#ledgerReads.has(input.requestId)) this.#overlapped.add(input.requestId);
    const p = this.#consumeOnce(input, knownAbsent);
    this.#consumeInflight.set(input.requestId, p);
    const done = () => this.#consumeInflight.delete(input.requestId);
    p.then(done, done);
    return p;
  }

  async #consumeOnce(c: ConsumeInput, knownAbsent: boolean): Promise<{ record: ConsumeRecord; replayed: boolean }> {
    if (this.#writer.failed) throw new StoreUnavailableError();
    const prior = knownAbsent ? undefined : await this.#readLedger(c.requestId);
    if (prior) return { record: prior, replayed: true };
    // A key deleted since (or before) resolution, or being deleted: its tombstone names the
    // account to charge. Deletion is final and committed before the key leaves the index.
    const deleting = this.book.deleting(c.keyId);
    if (deleting) return this.#consumeDeleted(c, deleting);
    if (!this.book.hasKey(c.keyId)) {
      const tomb = await this.#deletedKey(c.keyId);
      if (!tomb) throw notFound("key", c.keyId);
      return this.#consumeDeleted(c, tomb);
    }
    // From here to #submit everything is synchronous: the charge, the
    // settlement and the absolute counter values form one atomic step.
    const record = this.book.charge(c);
    await this.#submit([this.#ctrOp(c.keyId), this.#actrOp(record.accountId), { type: "put", sublevel: this.#subs.ledger, key: c.requestId, value: record }]);
    return { record, replayed: false };
  }

  /** A deleted key's charge: the account and the ledger (no key counters are left to move). */
  async #consumeDeleted(c: ConsumeInput, tomb: DeletedKey): Promise<{ record: ConsumeRecord; replayed: boolean }> {
    if (this.#writer.failed) throw new StoreUnavailableError();
    const record = this.book.chargeDeleted(c, tomb);
    await this.#submit([this.#actrOp(record.accountId), { type: "put", sublevel: this.#subs.ledger, key: c.requestId, value: record }]);
    return { record, replayed: false };
  }

  async *scanLedger(): AsyncIterable<ConsumeRecord> {
    const it = this.#subs.ledger.iterator();
    try {
      for (;;) {
        const batch: [string, ConsumeRecord][] = await it.nextv(1000);
        if (batch.length === 0) return;
        for (const [, rec] of batch) yield rec;
      }
    } finally {
      await it.close();
    }
  }

  // ---- usage buckets (usageBuckets.ts) ---------------------------------------------

  /** Usage entries read by queries since open (a stat for tests and diagnostics). */
  usageEntriesRead = 0;

  putUsageBuckets(buckets: readonly UsageBucket[]): Promise<void> {
    if (buckets.length === 0) return Promise.resolve();
    const ops: Op[] = [];
    for (const b of buckets) for (const op of usagePuts(b, this.#subs.usage)) ops.push(op);
    return this.#submit(ops);
  }

  getUsageBuckets(refs: readonly Pick<UsageBucket, "gran" | "dim" | "id" | "start">[]): Promise<(UsageBucket | undefined)[]> {
    return getUsageBuckets(this.#subs.usage, refs);
  }

  queryUsageBuckets(q: UsageQueryRange): Promise<UsageBucket[]> {
    return queryUsageBuckets(this.#subs.usage, q, (n) => (this.usageEntriesRead += n));
  }

  async pruneUsage(before: Readonly<Record<UsageBucket["gran"], number>>, limit: number): Promise<number> {
    const { ops, n } = await pruneUsageOps(this.#subs.usage, before, limit);
    if (ops.length) await this.#submit(ops);
    return n;
  }

  // ---- refill, TTLs and recovery (once a second) -----------------------------------

  /** Refills every key whose period turned (domain/refill.ts) and writes their counters. */
  #refill(now: number): void {
    const ids = this.book.refillDue(now);
    if (ids.length) this.#submit(ids.map((id) => this.#ctrOp(id))).catch(() => {});
  }

  /** Releases reservations whose TTL passed (Consume never came). */
  releaseExpired(now: number): number {
    return this.book.releaseExpired(now);
  }

  #tick(): void {
    const now = this.#clock();
    this.releaseExpired(now);
    if (this.#writer.failed) void this.#recover();
    else this.#refill(now);
  }

  /**
   * After a failed write: reopen LevelDB, probe the disk, reload memory from disk, serve again.
   *
   * The reopen is not optional. A failed append (ENOSPC part-way through a record) leaves
   * LevelDB's log writer torn: its block offset moved on while only part of the record reached
   * the file, so every record appended to that log file afterwards sits misaligned and is
   * skipped as corrupt when the log is replayed at the next open — acknowledged writes lost,
   * until a memtable flush starts a new log file. (A failed sync also sets LevelDB's sticky
   * background error.) Closing and reopening replays the log as it is on disk and starts a
   * fresh one. Until that succeeded nothing is acknowledged: the writer refuses every write.
   *
   * Then memory is reloaded from what the reopened store holds, so memory never runs ahead of
   * disk (a failed batch may have moved counters in memory, or — a sync that failed after the
   * append — be on disk after all): accounts and their counters, groups, tokens, prices, every
   * key's projection, counters and refill state; keys no longer on disk leave the index with
   * their open reservations. Open reservations of the keys that remain are kept (they are
   * memory only, as after a restart they would be gone, but here nothing was restarted).
   * Runs under the admin lock, so no admin mutation interleaves.
   */
  async #recover(): Promise<void> {
    if (this.#recovering || this.#writer.writing) return;
    this.#recovering = true;
    const run = this.#lock.then(async () => {
      try {
        const fault = this.#fault?.();
        if (fault) throw fault;
        await this.#reopenDb();
        await this.#db.batch([{ type: "put", key: this.#subs.meta.prefix + "probe", value: String(this.#clock()) }] as any, RAW_SYNC);
        for (let attempt = 0; ; attempt++) {
          // A Consume refused while this reload ran may have moved counters: reload again.
          if (attempt === 5) throw new Error("store recovery: memory kept changing during the reload; retrying");
          this.#writer.memoryStale = false;
          await this.#reloadFromDisk();
          if (!this.#writer.memoryStale) break;
        }
        // Synchronously after the last check of memoryStale: nothing moved memory in between.
        this.#writer.recovered();
        this.#setHealth("SERVING");
      } catch (err) {
        this.#onError(err);
      } finally {
        this.#recovering = false;
      }
    });
    this.#lock = run;
    await run;
  }

  /** Closes LevelDB (if open) and opens it again: the log is replayed and a new one started. */
  async #reopenDb(): Promise<void> {
    if (this.#db.status === "open" || this.#db.status === "opening") await this.#db.close();
    await this.#openDb();
    await Promise.all(Object.values(this.#subs).map((s) => s.open()));
  }

  /** Replaces what memory holds of accounts, groups, tokens, prices and keys by what is on disk. */
  async #reloadFromDisk(): Promise<void> {
    const { accounts, groups, tokens, prices } = await this.#readSmallTables();

    this.book.loadTables(accounts, groups, tokens, prices);
    // A reopen may show ledger entries a failed batch wrote after all: forget kept "absent"s.
    this.#absent.clear();

    // Keys: every one on disk is upserted (projection and counters; an existing slot keeps its
    // reservations), group counts and refill states are rebuilt, and keys that are not on disk
    // leave the index together with their open reservations.
    this.book.beginKeyReload();
    const onDisk = new Set<string>();
    await this.#scanKeys(this.#subs.khot, (id, v: string) => decodeProjection(id, v), (id: string) => {
      onDisk.add(id);
    });
    this.book.removeKeysNotIn(onDisk);
  }

  get openReservations(): number {
    return this.book.openReservations;
  }

  /** The directory this store lives in. */
  get dir(): string {
    return this.#dir;
  }
}

/** Most "not in the ledger" answers kept for consume() (see LevelStore.#absent). */
const ABSENT_CAP = 65_536;

