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
import { randomBytes } from "node:crypto";
import type {
  AccountCounters,
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
import { alreadyExists, failedPrecondition, notFound, SidecarError, StoreUnavailableError } from "../../domain/errors.js";
import { addExact } from "../../domain/units.js";
import { refillDue, refillStateOf, type RefillState } from "../../domain/refill.js";
import { admit } from "../../policy/admit.js";
import type { PolicyGroup, RateView } from "../../policy/types.js";
import { HotIndex, type HotCounters, type HotEntry } from "../hotIndex.js";
import { RESERVATION_KEY_AT, ReservationSlab, reservationKeyId } from "../reservations.js";
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
import { base62 } from "../../keys/secrets.js";
import {
  ACCOUNT_COUNTERS,
  auditSafe,
  checkCounters,
  coalesce,
  decodeCounters,
  encodeCounters,
  KEY_COUNTERS,
  parseRecord,
  RAW_SYNC,
  RESTORE,
  toRawOps,
  undecodable,
  type AccountCountersDisk,
  type DeletedKey,
  type KeyCountersDisk,
  type Op,
} from "./codecs.js";
import { migrateUsage, openFailure, SCHEMA_VERSION, USAGE_LAYOUT, type SubName } from "./schema.js";
import { getUsageBuckets, pruneUsageOps, queryUsageBuckets, usagePuts } from "./usageBuckets.js";





const NO_RATE: RateView = Object.freeze({ requestsInWindow: 0, tokensInWindow: 0, open: 0, windowResetMs: 0 });


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




/** One key of the index as loaded (LevelStore.hotDump): the index entry and refill state. */
export interface HotDumpEntry extends HotEntry {
  refill: { period: string; total: number; since: number } | null;
}

export class LevelStore implements Store {
  readonly #dir: string;
  readonly #clock: () => number;
  readonly #onError: (err: unknown) => void;
  #db!: Level<string, any>;
  #subs!: Record<SubName, any>;

  readonly index = new HotIndex();
  readonly #accounts = new Map<string, AccountState>();
  readonly #groups = new Map<string, { record: GroupRecord; policy: PolicyGroup }>();
  readonly #groupCounts = new Map<string, number>();
  readonly #tokens = new Map<string, TokenRecord>();
  readonly #tokensByHash = new Map<string, TokenRecord>();
  readonly #prices = new Map<string, PriceRecord>();
  /** Open reservations (typed arrays; src/store/reservations.ts). */
  readonly #reservations = new ReservationSlab();
  // Reservations are kept in creation order. While every new one expires no earlier than
  // the one before (one TTL, a clock that does not step back), that is also expiry order
  // and the once-a-second sweep stops at the first live one instead of visiting them all
  // (at thousands of Checks a second and a 10-minute TTL, hundreds of thousands).
  #reservationsInExpiryOrder = true;
  /** reserve()'s view of a key's rate window, reused (reserve is synchronous and allocates nothing on this). */
  readonly #rateScratch: RateView = { requestsInWindow: 0, tokensInWindow: 0, open: 0, windowResetMs: 0 };
  #lastReservationExpiry = -Infinity;
  readonly #refills = new Map<string, RefillState>();
  /**
   * Keys whose delete batch is submitted but not yet applied to memory, with their tombstones.
   * A Consume in that window charges the account only, like one after it: its batch commits
   * after the delete's, and a key-counter write there would outlive the key on disk.
   */
  readonly #deleting = new Map<string, DeletedKey>();
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
  #failed = false;
  #recovering = false;
  /** Set when a write is refused or fails; a recovery's reload is redone until it stays clear. */
  #memoryStale = false;
  readonly #fault: (() => Error | null) | undefined;
  readonly #rebuildProjection: boolean;
  /** How the last open loaded the keys (tests). */
  loadedFrom: "projection" | "records" | undefined;

  #health: StoreHealth = "NOT_SERVING";
  readonly #healthListeners: ((h: StoreHealth) => void)[] = [];

  // Serial admin lock and group-commit writer.
  #lock: Promise<unknown> = Promise.resolve();
  #pending: { ops: Op[]; resolve: () => void; reject: (e: unknown) => void }[] = [];
  #writing = false;
  #auditSeq = 0;
  /** Audit ids from here on are indexed by account (`auditacct`); "" = all of them. */
  #auditIndexFrom = "";
  /** Sizes of recent group-commit batches (for metrics). */
  onBatch: ((submissions: number, ops: number) => void) | undefined;

  constructor(opts: LevelStoreOptions) {
    this.#dir = opts.dir;
    this.#clock = opts.clock ?? Date.now;
    this.#onError = opts.onError ?? (() => {});
    this.#fault = opts.faultInjector;
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
    while (this.#writing || this.#pending.length) await new Promise((r) => setTimeout(r, 5));
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
        { type: "put", sublevel: this.#subs.actr, key: DEFAULT_ACCOUNT, value: { balance: 0, credited: 0, charged: 0 } satisfies AccountCountersDisk },
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
    if (typeof from === "string") this.#auditIndexFrom = from;
    else {
      this.#auditIndexFrom = schema === undefined ? "" : now.toString(16).padStart(12, "0");
      await this.#db.batch([{ type: "put", sublevel: this.#subs.meta, key: "auditIndexFrom", value: this.#auditIndexFrom }] as any, { sync: true });
    }

    const { accounts, groups, tokens, prices } = await this.#named(() => this.#readSmallTables());
    for (const [id, record, c] of accounts) this.#accounts.set(id, { record, counters: { ...c, balance: c.credited - c.charged, reserved: 0 } });
    for (const g of groups) this.#putGroupMemory(g);
    for (const t of tokens) {
      this.#tokens.set(t.id, t);
      this.#tokensByHash.set(t.secretHash, t);
    }
    for (const p of prices) this.#prices.set(p.model, p);

    const hot = await this.#named(() => this.readMeta("hot"));
    // How many keys the last open found: sizes the index up front (only a hint).
    const hint = await this.#named(() => this.readMeta("keysHint"));
    if (typeof hint === "number" && hint > 0 && hint < 2 ** 28) this.index.reserve(hint);
    if (schema === undefined || ((schema === 2 || schema === SCHEMA_VERSION) && hot === PROJECTION_VERSION && !this.#rebuildProjection)) {
      await this.#named(() => this.#scanKeys(this.#subs.khot, (id, v: string) => decodeProjection(id, v)));
      this.loadedFrom = "projection";
    } else {
      await this.#named(() => this.#rebuildFromRecords());
      this.loadedFrom = "records";
    }
    if (hint !== this.index.size) await this.#subs.meta.put("keysHint", this.index.size);
    // After the keys: the usage migration reads each key row's account from the index.
    if ((await this.#subs.meta.get("usage")) !== USAGE_LAYOUT) {
      await migrateUsage(this.#db, this.#subs, (id) => {
        const slot = this.index.slotOf(id);
        return slot >= 0 ? this.index.accountOf(slot) : undefined;
      });
    }
    else if (schema !== undefined && schema !== SCHEMA_VERSION) await this.#db.batch([{ type: "put", sublevel: this.#subs.meta, key: "schema", value: SCHEMA_VERSION }] as any, { sync: true });
    this.#refillDue(now);
  }

  /**
   * Reads accounts (with their counters, checked), groups, tokens and prices as stored. A record
   * that does not decode, or counters out of range, throw naming the sublevel and the key.
   */
  async #readSmallTables(): Promise<{ accounts: [string, AccountRecord, AccountCountersDisk][]; groups: GroupRecord[]; tokens: TokenRecord[]; prices: PriceRecord[] }> {
    const accounts: [string, AccountRecord, AccountCountersDisk][] = [];
    for await (const [id, text] of this.#rawEntries("accts")) {
      const record = parseRecord<AccountRecord>("accts", id, text);
      const ctext = await this.#rawGet("actr", id);
      const c = ctext === undefined ? { balance: 0, credited: 0, charged: 0 } : parseRecord<AccountCountersDisk>("actr", id, ctext);
      checkCounters("account", "actr", id, c as unknown as Record<string, unknown>, ACCOUNT_COUNTERS);
      accounts.push([id, record, c]);
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
    const e = this.index.entry(this.index.slotOf(id));
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

  /** Indexes one loaded key. */
  #indexKey(k: HotKey, c: KeyCountersDisk | undefined): void {
    // (A KeyCountersDisk is a HotCounters: decodeCounters fills in credited for old values.)
    const counters: HotCounters = c ?? { remaining: k.quotaTotal, used: 0, credited: k.quotaTotal, lastUsedAt: null };
    this.index.upsert(k, counters);
    if (k.refill !== "none") this.#trackRefill(k, c?.refilledAt ?? k.createdAt);
    this.#groupCounts.set(k.group, (this.#groupCounts.get(k.group) ?? 0) + 1);
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
          this.#indexKey(decode(id, v), c);
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

  // ---- writer --------------------------------------------------------------

  /** Queues ops for the next group-committed batch; resolves once synced. */
  #submit(ops: Op[]): Promise<void> {
    if (this.#failed) {
      // The caller may have moved counters in memory before submitting (a Consume, a balance
      // change, a refill): a recovery that already reloaded them must reload again.
      this.#memoryStale = true;
      return Promise.reject(new StoreUnavailableError());
    }
    return new Promise((resolve, reject) => {
      this.#pending.push({ ops, resolve, reject });
      if (!this.#writing) void this.#drain();
    });
  }

  async #drain(): Promise<void> {
    this.#writing = true;
    try {
      while (this.#pending.length) {
        const batch = this.#pending.splice(0);
        const ops = coalesce(batch.flatMap((b) => b.ops));
        try {
          if (this.#failed) throw new Error("store is recovering from a failed write");
          const fault = this.#fault?.();
          if (fault) throw fault;
          await this.#db.batch(toRawOps(ops) as any, RAW_SYNC);
          this.onBatch?.(batch.length, ops.length);
          this.#setHealth("SERVING");
          for (const b of batch) b.resolve();
        } catch (err) {
          // Memory may now be ahead of disk, and LevelDB's log writer may be torn: refuse
          // every write and serve no Check (fail closed) until #recover has reopened LevelDB
          // and reloaded memory from disk.
          this.#onError(err);
          this.#failed = true;
          this.#memoryStale = true;
          this.#setHealth("NOT_SERVING");
          const e = new StoreUnavailableError(err);
          for (const b of batch) b.reject(e);
        }
      }
    } finally {
      this.#writing = false;
    }
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

  /** The audit entry's put and, when it names an account, its `auditacct` index entry. */
  #auditOps(a: AuditInput): Op[] {
    const at = this.#clock();
    // Time-ordered id: 12 hex digits of ms + a 6-digit sequence + 4 random chars.
    const id = `${at.toString(16).padStart(12, "0")}${(this.#auditSeq++ % 1_000_000).toString().padStart(6, "0")}${base62(randomBytes(3), 4)}`;
    const rec: AuditRecord = {
      id,
      at,
      actor: a.actor,
      action: a.action,
      target: a.target,
      ...(a.account !== undefined ? { account: a.account } : {}),
      before: a.before === undefined ? "" : JSON.stringify(auditSafe(a.before)),
      after: a.after === undefined ? "" : JSON.stringify(auditSafe(a.after)),
      detail: a.detail ?? "",
    };
    const put: Op = { type: "put", sublevel: this.#subs.audit, key: id, value: rec };
    if (a.account === undefined) return [put];
    return [put, { type: "put", sublevel: this.#subs.auditacct, key: `${a.account}|${id}`, value: "", raw: true }];
  }

  // ---- keys ------------------------------------------------------------------

  #keyState(record: KeyRecord): KeyState {
    const slot = this.index.slotOf(record.id);
    return {
      record,
      counters: {
        remaining: slot >= 0 ? this.index.remaining(slot) : record.quotaTotal,
        used: slot >= 0 ? this.index.used(slot) : 0,
        reserved: slot >= 0 ? this.index.reserved(slot) : 0,
        lastUsedAt: slot >= 0 ? this.index.lastUsedAt(slot) : null,
        refilledAt: this.#refills.get(record.id)?.since ?? null,
      },
    };
  }

  #ctrOp(id: string, slot: number, refilledAt: number | null = this.#refills.get(id)?.since ?? null): Op {
    const v: KeyCountersDisk = {
      remaining: this.index.remaining(slot),
      used: this.index.used(slot),
      credited: this.index.credited(slot),
      lastUsedAt: this.index.lastUsedAt(slot),
      refilledAt,
    };
    return { type: "put", sublevel: this.#subs.kctr, key: id, value: encodeCounters(v), raw: true };
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
      if (!this.#accounts.has(record.accountId)) throw notFound("account", record.accountId);
      if (!this.#groups.has(record.group)) throw notFound("group", record.group);
      if (this.index.slotOf(record.id) >= 0) throw alreadyExists("key", record.id);
      const hot = hotKeyOf(record);
      const start = record.unlimited ? 0 : record.quotaTotal;
      const counters: KeyCountersDisk = { remaining: start, used: 0, credited: start, lastUsedAt: null, refilledAt: null };
      await this.#submit([
        ...this.#putKeyOps(record),
        { type: "put", sublevel: this.#subs.khash, key: record.secretHash, value: record.id },
        { type: "put", sublevel: this.#subs.kctr, key: record.id, value: encodeCounters(counters), raw: true },
        ...this.#auditOps({ ...audit, after: audit.after ?? record }),
      ]);
      this.index.upsert(hot, { remaining: counters.remaining, used: 0, credited: counters.credited, lastUsedAt: null });
      this.#trackRefill(record, record.createdAt);
      this.#groupCounts.set(record.group, (this.#groupCounts.get(record.group) ?? 0) + 1);
      return this.#keyState(record);
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
          if (!this.#accounts.has(record.accountId)) throw notFound("account", record.accountId);
          if (!this.#groups.has(record.group)) throw notFound("group", record.group);
          if (this.index.slotOf(record.id) >= 0) throw alreadyExists("key", record.id);
          const start = record.unlimited ? 0 : record.quotaTotal;
          ops.push(
            ...this.#putKeyOps(record),
            { type: "put", sublevel: this.#subs.khash, key: record.secretHash, value: record.id },
            { type: "put", sublevel: this.#subs.kctr, key: record.id, value: encodeCounters({ remaining: start, used: 0, credited: start, lastUsedAt: null, refilledAt: null }), raw: true },
          );
        }
        ops.push(...this.#auditOps({ ...audit, detail: `${chunk.length} keys` }));
        await this.#submit(ops);
        for (const record of chunk) {
          const start = record.unlimited ? 0 : record.quotaTotal;
          this.index.upsert(hotKeyOf(record), { remaining: start, used: 0, credited: start, lastUsedAt: null });
          this.#groupCounts.set(record.group, (this.#groupCounts.get(record.group) ?? 0) + 1);
          this.#trackRefill(record, record.createdAt);
        }
        n += chunk.length;
      }
      return n;
    });
  }

  async getKey(id: string): Promise<KeyState | undefined> {
    if (this.index.slotOf(id) < 0) return undefined;
    const record = this.#decodeKey(id, await this.#rawGet("keys", id));
    if (record === "unreadable") throw failedPrecondition(`key ${id}: its record is unreadable (see the server log); delete it, or ${RESTORE}`);
    return record ? this.#keyState(record) : undefined;
  }

  /** Every key (of `accountId`); a record that does not decode is left out and logged (#decodeKey). */
  async *scanKeys(accountId?: string): AsyncIterable<KeyState> {
    for await (const [id, text] of this.#rawEntries("keys")) {
      if (this.index.slotOf(id) < 0) continue;
      const rec = this.#decodeKey(id, text);
      if (!rec || rec === "unreadable") continue;
      if (accountId !== undefined && rec.accountId !== accountId) continue;
      yield this.#keyState(rec);
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
        if (!r || this.index.slotOf(r.id) < 0) throw notFound("key", ids[i]!);
        return this.#keyState(r);
      });
      // Compute every change first: a throw aborts the whole call with nothing written.
      const changes = befores.map((b) => change(b));
      for (const c of changes) {
        if (!this.#groups.has(c.record.group)) throw notFound("group", c.record.group);
        if (!this.#accounts.has(c.record.accountId)) throw notFound("account", c.record.accountId);
      }
      const hots = changes.map((c) => hotKeyOf(c.record));
      // A key's refill period starts (or goes on) at `since`. One that starts now is written
      // with the counters in this batch: a reload must not start it at createdAt, which would
      // reset the quota at once (a free refill) at the next open.
      const now = this.#clock();
      const sinces = changes.map((c) => this.#refills.get(c.record.id)?.since ?? now);
      const ops: Op[] = [];
      const afters: KeyState[] = [];
      for (let i = 0; i < changes.length; i++) {
        const before = befores[i]!;
        const c = changes[i]!;
        const slot = this.index.slotOf(before.record.id);
        const refillStarts = c.record.refill !== "none" && !c.record.unlimited && !this.#refills.has(c.record.id);
        if (c.remainingSet !== undefined) this.index.resetRemaining(slot, c.remainingSet);
        if (c.remainingDelta) this.index.addQuota(slot, c.remainingDelta);
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
        if (c.remainingSet !== undefined || c.remainingDelta || refillStarts) ops.push(this.#ctrOp(c.record.id, slot, refillStarts ? sinces[i]! : undefined));
        const after: KeyState = { record: c.record, counters: { ...before.counters, remaining: this.index.remaining(slot) } };
        afters.push(after);
        ops.push(...this.#auditOps(audit(before, after)));
      }
      await this.#submit(ops);
      for (let i = 0; i < changes.length; i++) {
        const c = changes[i]!;
        const before = befores[i]!;
        const slot = this.index.slotOf(c.record.id);
        this.index.upsert(hots[i]!, {
          remaining: this.index.remaining(slot),
          used: this.index.used(slot),
          credited: this.index.credited(slot),
          lastUsedAt: this.index.lastUsedAt(slot),
        });
        this.#trackRefill(c.record, sinces[i]!);
        if (before.record.group !== c.record.group) {
          this.#groupCounts.set(before.record.group, (this.#groupCounts.get(before.record.group) ?? 1) - 1);
          this.#groupCounts.set(c.record.group, (this.#groupCounts.get(c.record.group) ?? 0) + 1);
        }
      }
      return afters.map((a) => this.#keyState(a.record));
    });
  }

  deleteKeys(ids: readonly string[], check: (current: KeyState) => void, audit: (before: KeyState) => AuditInput): Promise<void> {
    return this.#serial(async () => {
      // An unreadable record is deleted from what the index knows of it (its hashes included).
      const records = (await this.#readKeys(ids)).map((r, i) => (r === "unreadable" ? (this.index.slotOf(ids[i]!) >= 0 ? this.#recordFromIndex(ids[i]!) : undefined) : r));
      const befores = records.map((r, i) => {
        if (!r || this.index.slotOf(r.id) < 0) throw notFound("key", ids[i]!);
        const s = this.#keyState(r);
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
        const tomb: DeletedKey = { accountId: r.accountId, group: r.group, ratioPpm: this.#groups.get(r.group)?.record.ratioPpm ?? 1_000_000, deletedAt: this.#clock() };
        tombs.set(r.id, tomb);
        ops.push({ type: "put", sublevel: this.#subs.kdel, key: r.id, value: tomb });
        ops.push({ type: "del", sublevel: this.#subs.khash, key: r.secretHash });
        if (r.prevSecretHash) ops.push({ type: "del", sublevel: this.#subs.khash, key: r.prevSecretHash });
        ops.push(...this.#auditOps(audit(b)));
      }
      for (const [id, t] of tombs) this.#deleting.set(id, t);
      try {
        await this.#submit(ops);
      } finally {
        for (const id of tombs.keys()) this.#deleting.delete(id);
      }
      // Their open reservations first (one pass), while the slots still hold these keys.
      const slots = new Set(befores.map((b) => this.index.slotOf(b.record.id)));
      const rs = this.#reservations;
      for (let r = rs.first(); r !== -1; ) {
        const next = rs.after(r);
        if (slots.has(rs.keySlot(r))) this.#dropReservation(r);
        r = next;
      }
      for (const b of befores) {
        this.index.remove(b.record.id);
        this.#refills.delete(b.record.id);
        this.#groupCounts.set(b.record.group, (this.#groupCounts.get(b.record.group) ?? 1) - 1);
      }
    });
  }

  // ---- accounts ----------------------------------------------------------------

  insertAccount(record: AccountRecord, initialBalance: number, audit: AuditInput): Promise<AccountState> {
    return this.#serial(async () => {
      if (this.#accounts.has(record.id)) throw alreadyExists("account", record.id);
      const c: AccountCountersDisk = { balance: initialBalance, credited: initialBalance, charged: 0 };
      await this.#submit([
        { type: "put", sublevel: this.#subs.accts, key: record.id, value: record },
        { type: "put", sublevel: this.#subs.actr, key: record.id, value: c },
        ...this.#auditOps({ ...audit, after: audit.after ?? { ...record, balance: initialBalance } }),
      ]);
      const state: AccountState = { record, counters: { ...c, reserved: 0 } };
      this.#accounts.set(record.id, state);
      return structuredClone(state);
    });
  }

  getAccount(id: string): AccountState | undefined {
    const a = this.#accounts.get(id);
    return a ? structuredClone(a) : undefined;
  }

  listAccounts(): AccountState[] {
    return [...this.#accounts.values()].map((a) => structuredClone(a)).sort((a, b) => (a.record.id < b.record.id ? -1 : 1));
  }

  #actrOp(id: string, c: AccountCounters): Op {
    return { type: "put", sublevel: this.#subs.actr, key: id, value: { balance: c.balance, credited: c.credited, charged: c.charged } satisfies AccountCountersDisk };
  }

  adjustBalance(id: string, delta: number, audit: AuditInput): Promise<AccountState> {
    return this.#serial(async () => {
      const a = this.#accounts.get(id);
      if (!a) throw notFound("account", id);
      const before = structuredClone(a);
      // Refused whole when a counter would pass 2^53 − 1 (checked before anything moves).
      const credited = addExact(a.counters.credited, delta, "delta", `account ${id}'s credited total`);
      addExact(credited, -a.counters.charged, "delta", `account ${id}'s balance`);
      // Counters move now (see the file comment); the batch carries absolute values.
      a.counters.credited = credited;
      a.counters.balance = a.counters.credited - a.counters.charged;
      await this.#submit([
        this.#actrOp(id, a.counters),
        ...this.#auditOps({ ...audit, before: audit.before ?? { id, balance: before.counters.balance }, after: audit.after ?? { id, balance: a.counters.balance } }),
      ]);
      return structuredClone(a);
    });
  }

  // ---- groups ------------------------------------------------------------------

  #putGroupMemory(rec: GroupRecord): void {
    this.#groups.set(rec.name, { record: rec, policy: { ratioPpm: rec.ratioPpm, models: rec.models.length ? new Set(rec.models) : null } });
  }

  insertGroup(record: GroupRecord, audit: AuditInput): Promise<GroupRecord> {
    return this.#serial(async () => {
      if (this.#groups.has(record.name)) throw alreadyExists("group", record.name);
      await this.#submit([{ type: "put", sublevel: this.#subs.groups, key: record.name, value: record }, ...this.#auditOps({ ...audit, after: audit.after ?? record })]);
      this.#putGroupMemory(record);
      return { ...record };
    });
  }

  getGroup(name: string): GroupRecord | undefined {
    const g = this.#groups.get(name);
    return g ? { ...g.record, models: [...g.record.models], accounts: [...(g.record.accounts ?? [])] } : undefined;
  }

  listGroups(accountId?: string): GroupWithCount[] {
    let counts: ReadonlyMap<string, number> = this.#groupCounts;
    if (accountId !== undefined) {
      const mine = new Map<string, number>();
      for (const slot of this.index.slots()) {
        if (this.index.accountOf(slot) !== accountId) continue;
        const g = this.index.groupOf(slot);
        mine.set(g, (mine.get(g) ?? 0) + 1);
      }
      counts = mine;
    }
    return [...this.#groups.values()]
      .map((g) => ({ ...g.record, models: [...g.record.models], accounts: [...(g.record.accounts ?? [])], keyCount: counts.get(g.record.name) ?? 0 }))
      .sort((a, b) => (a.name < b.name ? -1 : 1));
  }

  updateGroup(name: string, change: (current: GroupRecord) => GroupRecord, audit: (before: GroupRecord, after: GroupRecord) => AuditInput): Promise<GroupRecord> {
    return this.#serial(async () => {
      const g = this.#groups.get(name);
      if (!g) throw notFound("group", name);
      const before = { ...g.record, models: [...g.record.models], accounts: [...(g.record.accounts ?? [])] };
      const after = change(before);
      await this.#submit([{ type: "put", sublevel: this.#subs.groups, key: name, value: after }, ...this.#auditOps(audit(before, after))]);
      this.#putGroupMemory(after);
      return { ...after };
    });
  }

  deleteGroup(name: string, audit: AuditInput): Promise<void> {
    return this.#serial(async () => {
      const g = this.#groups.get(name);
      if (!g) throw notFound("group", name);
      if (name === DEFAULT_GROUP) throw failedPrecondition('group "default" cannot be deleted');
      const n = this.#groupCounts.get(name) ?? 0;
      if (n > 0) throw failedPrecondition(`group ${JSON.stringify(name)} is used by ${n} key(s); move or delete them first`);
      await this.#submit([{ type: "del", sublevel: this.#subs.groups, key: name }, ...this.#auditOps({ ...audit, before: audit.before ?? g.record })]);
      this.#groups.delete(name);
      this.#groupCounts.delete(name);
    });
  }

  // ---- tokens ------------------------------------------------------------------

  insertToken(record: TokenRecord, audit: AuditInput): Promise<TokenRecord> {
    return this.#serial(async () => {
      if (this.#tokens.has(record.id)) throw alreadyExists("token", record.id);
      if (record.accountId !== null && !this.#accounts.has(record.accountId)) throw notFound("account", record.accountId);
      await this.#submit([{ type: "put", sublevel: this.#subs.tokens, key: record.id, value: record }, ...this.#auditOps({ ...audit, after: audit.after ?? record })]);
      this.#tokens.set(record.id, record);
      this.#tokensByHash.set(record.secretHash, record);
      return { ...record };
    });
  }

  listTokens(): TokenRecord[] {
    return [...this.#tokens.values()].map((t) => ({ ...t })).sort((a, b) => a.createdAt - b.createdAt);
  }

  deleteToken(id: string, audit: AuditInput): Promise<void> {
    return this.#serial(async () => {
      const t = this.#tokens.get(id);
      if (!t) throw notFound("token", id);
      await this.#submit([{ type: "del", sublevel: this.#subs.tokens, key: id }, ...this.#auditOps({ ...audit, before: audit.before ?? t })]);
      this.#tokens.delete(id);
      this.#tokensByHash.delete(t.secretHash);
    });
  }

  findTokenByHash(hashHex: string): TokenRecord | undefined {
    return this.#tokensByHash.get(hashHex);
  }

  // ---- prices ------------------------------------------------------------------

  setPrice(record: PriceRecord, audit: AuditInput): Promise<PriceRecord> {
    return this.#serial(async () => {
      const before = this.#prices.get(record.model);
      await this.#submit([{ type: "put", sublevel: this.#subs.prices, key: record.model, value: record }, ...this.#auditOps({ ...audit, before: audit.before ?? before, after: audit.after ?? record })]);
      this.#prices.set(record.model, record);
      return { ...record };
    });
  }

  getPrice(model: string): PriceRecord | undefined {
    return this.#prices.get(model);
  }

  listPrices(): PriceRecord[] {
    return [...this.#prices.values()].map((p) => ({ ...p })).sort((a, b) => (a.model < b.model ? -1 : 1));
  }

  deletePrice(model: string, audit: AuditInput): Promise<void> {
    return this.#serial(async () => {
      const p = this.#prices.get(model);
      if (!p) throw notFound("price for model", model);
      await this.#submit([{ type: "del", sublevel: this.#subs.prices, key: model }, ...this.#auditOps({ ...audit, before: audit.before ?? p })]);
      this.#prices.delete(model);
    });
  }

  // ---- audit -------------------------------------------------------------------

  async listAudit(q: ListAuditQuery): Promise<AuditRecord[]> {
    const out: AuditRecord[] = [];
    const since = q.since !== undefined ? q.since.toString(16).padStart(12, "0") : "";
    let before = q.before;
    if (q.account !== undefined) {
      // The account's entries from its index: a page reads what it returns. Then, if the page is
      // not full, the legacy range (entries older than the index) by scanning, as before.
      if (await this.#listIndexedAudit(q, since, out)) return out;
      if (!this.#auditIndexFrom) return out;
      if (!before || before > this.#auditIndexFrom) before = this.#auditIndexFrom;
    }
    const range: Record<string, string> = {};
    if (before) range["lt"] = before;
    if (since) range["gte"] = since;
    const it = this.#subs.audit.iterator({ ...range, reverse: true });
    try {
      for (;;) {
        const batch: [string, AuditRecord][] = await it.nextv(500);
        if (batch.length === 0) break;
        for (const [, rec] of batch) {
          if (q.target && rec.target !== q.target) continue;
          if (q.actor && rec.actor !== q.actor) continue;
          if (q.account !== undefined && !this.#auditAbout(rec, q.account)) continue;
          out.push(rec);
          if (out.length >= q.limit) return out;
        }
      }
    } finally {
      await it.close();
    }
    return out;
  }

  /** Appends the account's indexed entries (ids >= #auditIndexFrom) to `out`; true when it filled the page. */
  async #listIndexedAudit(q: ListAuditQuery, since: string, out: AuditRecord[]): Promise<boolean> {
    const prefix = `${q.account}|`;
    const lo = since > this.#auditIndexFrom ? since : this.#auditIndexFrom;
    const it = this.#subs.auditacct.keys({ gte: prefix + lo, lt: prefix + (q.before ?? "\uffff"), reverse: true });
    try {
      for (;;) {
        const keys: string[] = await it.nextv(Math.min(500, Math.max(16, q.limit)));
        if (keys.length === 0) return false;
        const recs: (AuditRecord | undefined)[] = await this.#subs.audit.getMany(keys.map((k) => k.slice(prefix.length)));
        for (const rec of recs) {
          if (!rec) continue;
          if (q.target && rec.target !== q.target) continue;
          if (q.actor && rec.actor !== q.actor) continue;
          out.push(rec);
          if (out.length >= q.limit) return true;
        }
      }
    } finally {
      await it.close();
    }
  }

  /** Is an audit entry about `accountId`'s keys? (ListAuditQuery.account) */
  #auditAbout(rec: AuditRecord, accountId: string): boolean {
    if (rec.account !== undefined) return rec.account === accountId;
    // Written before entries named their account: a key entry whose recorded record names it
    // (every key mutation recorded one), or a live key of the account (reveals recorded none).
    if (!rec.target.startsWith("key_")) return false;
    for (const json of [rec.before, rec.after]) {
      if (!json) continue;
      try {
        const owner = (JSON.parse(json) as { accountId?: unknown }).accountId;
        if (owner !== undefined) return owner === accountId;
      } catch {
        // not a record: fall through to the live key
      }
    }
    const slot = this.index.slotOf(rec.target);
    return slot >= 0 && this.index.accountOf(slot) === accountId;
  }

  appendAudit(audit: AuditInput | readonly AuditInput[]): Promise<void> {
    const list = Array.isArray(audit) ? audit : [audit as AuditInput];
    return this.#serial(() => this.#submit(list.flatMap((a) => this.#auditOps(a))));
  }

  // ---- hot path ------------------------------------------------------------------

  lookup(secretHash: Uint8Array, now: number): HotSnapshot | undefined {
    const ix = this.index;
    const slot = ix.findByHash(secretHash, now);
    if (slot < 0) return undefined;
    const r = ix.restrictions(slot);
    const account = this.#accounts.get(ix.accountOf(slot));
    const group = this.#groups.get(ix.groupOf(slot));
    const w = ix.rateWindow(slot);
    let rate = NO_RATE;
    const open = ix.open(slot);
    if (w || open) {
      const read = w ? w.read(now) : { requests: 0, tokens: 0, resetMs: 0 };
      rate = { requestsInWindow: read.requests, tokensInWindow: read.tokens, open, windowResetMs: read.resetMs };
    }
    return {
      handle: slot,
      key: {
        id: ix.idOf(slot),
        accountId: ix.accountOf(slot),
        group: ix.groupOf(slot),
        enabled: ix.isEnabled(slot),
        expiresAt: ix.expiresAt(slot),
        models: r ? r.models : null,
        ips: r ? r.ips : null,
        unlimited: ix.isUnlimited(slot),
        quotaAvailable: ix.remaining(slot) - ix.reserved(slot),
        limits: ix.limits(slot),
      },
      group: group?.policy,
      account: account ? { available: account.counters.balance - account.counters.reserved } : undefined,
      rate,
    };
  }

  reserve(req: ReserveRequest): ReserveResult {
    const ix = this.index;
    const slot = req.handle;
    if (!ix.hasId(slot, req.keyId)) return { ok: false, reason: "KEY_INVALID", retryAfterMs: 0 };
    const account = this.#accounts.get(ix.accountOf(slot));
    const units = req.units;
    // The same money rule as Check's verdict (policy/admit.ts), on the counters as they are now.
    const rate = this.#rateScratch;
    const w = ix.rateWindow(slot);
    if (w) {
      const read = w.read(req.now);
      rate.requestsInWindow = read.requests;
      rate.tokensInWindow = read.tokens;
      rate.windowResetMs = read.resetMs;
    } else {
      rate.requestsInWindow = 0;
      rate.tokensInWindow = 0;
      rate.windowResetMs = 0;
    }
    rate.open = ix.open(slot);
    const denial = admit(units, account ? account.counters.balance - account.counters.reserved : NaN, ix.isUnlimited(slot), ix.remaining(slot) - ix.reserved(slot), ix.limits(slot), rate);
    if (denial !== null || !account) return { ok: false, reason: denial?.reason ?? "ACCOUNT_BALANCE_EXHAUSTED", retryAfterMs: denial?.retryAfterMs ?? 0 };
    // All checks passed in this same synchronous step: hold the units.
    // The key id rides in the reservation id, so a Consume whose reservation
    // already expired (or outlived a restart) still finds what to charge.
    ix.addReserved(slot, units, 1);
    account.counters.reserved += units;
    ix.rateWindowForWrite(slot)?.addRequest(req.now);
    ix.touch(slot, req.now);
    const expiresAt = req.now + req.ttlMs;
    if (expiresAt < this.#lastReservationExpiry) this.#reservationsInExpiryOrder = false;
    else this.#lastReservationExpiry = expiresAt;
    const id = this.#reservations.add(slot, req.keyId, ix.accountIndexOf(slot), units, expiresAt);
    return {
      ok: true,
      reservationId: id,
      units,
      keyRemaining: ix.isUnlimited(slot) ? 0 : ix.remaining(slot) - ix.reserved(slot),
      accountBalance: account.counters.balance - account.counters.reserved,
    };
  }

  /** The slab slot of the open reservation `id` (its key id included), or -1. */
  #liveReservation(id: string): number {
    const r = this.#reservations.find(id);
    return r >= 0 && this.index.hasId(this.#reservations.keySlot(r), id, RESERVATION_KEY_AT) ? r : -1;
  }

  #dropReservation(r: number): void {
    const rs = this.#reservations;
    const slot = rs.keySlot(r);
    const units = rs.units(r);
    const a = this.#accounts.get(this.index.accountNames[rs.account(r)]!);
    rs.remove(r);
    // A reservation's key is live: deleteKeys drops a key's reservations before its slot goes.
    if (this.index.isLive(slot)) this.index.addReserved(slot, -units, -1);
    if (a) a.counters.reserved -= units;
  }

  release(reservationId: string): boolean {
    const r = this.#liveReservation(reservationId);
    if (r < 0) return false;
    this.#dropReservation(r);
    return true;
  }

  reservationUnits(reservationId: string): number | undefined {
    const r = this.#liveReservation(reservationId);
    return r < 0 ? undefined : this.#reservations.units(r);
  }

  /** Releases reservations whose TTL passed (Consume never came). */
  releaseExpired(now: number): number {
    let n = 0;
    const rs = this.#reservations;
    for (let r = rs.first(); r !== -1; ) {
      const next = rs.after(r);
      if (rs.expiresAt(r) <= now) {
        this.#dropReservation(r);
        n++;
      } else if (this.#reservationsInExpiryOrder) break; // every later one expires later
      r = next;
    }
    if (this.#reservations.size === 0) {
      this.#reservationsInExpiryOrder = true;
      this.#lastReservationExpiry = -Infinity;
    }
    return n;
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

  /**
   * Every indexed key as plain data, by id, with its refill state (tests: the index loaded
   * from the projection must equal the index loaded from the full records).
   */
  hotDump(): HotDumpEntry[] {
    const out: HotDumpEntry[] = [];
    for (const slot of this.index.slots()) {
      const e = this.index.entry(slot);
      const r = this.#refills.get(e.id);
      out.push({ ...e, refill: r ? { period: r.period, total: r.total, since: r.since } : null });
    }
    return out.sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
  }

  /** Keys per group, as the store counts them (tests). */
  groupKeyCounts(): Record<string, number> {
    return Object.fromEntries([...this.#groupCounts].filter(([, n]) => n !== 0).sort(([a], [b]) => (a < b ? -1 : 1)));
  }

  // ---- consume (usage ledger) --------------------------------------------------

  resolveConsumeTarget(target: ConsumeTarget, now: number): KeyRef | undefined {
    let keyId: string;
    let reservationId = "";
    if (target.kind === "reservation") {
      const live = this.#liveReservation(target.id);
      if (live >= 0) {
        keyId = target.id.slice(RESERVATION_KEY_AT);
        reservationId = target.id;
      } else {
        const dot = target.id.indexOf(".");
        if (!target.id.startsWith("rsv_") || dot < 0) return undefined;
        keyId = target.id.slice(dot + 1);
      }
    } else if (target.kind === "key") {
      keyId = target.id;
    } else {
      const slot = this.index.findByHash(target.hash, now);
      if (slot < 0) return undefined;
      keyId = this.index.idOf(slot);
    }
    const slot = this.index.slotOf(keyId);
    if (slot < 0) return undefined;
    const group = this.index.groupOf(slot);
    return {
      keyId,
      accountId: this.index.accountOf(slot),
      group,
      ratioPpm: this.#groups.get(group)?.record.ratioPpm ?? 1_000_000,
      unlimited: this.index.isUnlimited(slot),
      reservationId,
      deleted: false,
    };
  }

  async resolveDeletedTarget(target: ConsumeTarget): Promise<KeyRef | undefined> {
    const keyId = target.kind === "key" ? target.id : target.kind === "reservation" ? reservationKeyId(target.id) : undefined;
    if (!keyId || this.index.slotOf(keyId) >= 0) return undefined;
    const t = await this.#deletedKey(keyId);
    if (!t) return undefined;
    // The group's ratio now, as for a live key; the one at deletion if the group is gone too.
    const ratioPpm = this.#groups.get(t.group)?.record.ratioPpm ?? t.ratioPpm;
    return { keyId, accountId: t.accountId, group: t.group, ratioPpm, unlimited: false, reservationId: "", deleted: true };
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
    if (this.#failed) throw new StoreUnavailableError();
    const prior = knownAbsent ? undefined : await this.#readLedger(c.requestId);
    if (prior) return { record: prior, replayed: true };
    // A key deleted since (or before) resolution, or being deleted: its tombstone names the
    // account to charge. Deletion is final and committed before the key leaves the index.
    const deleting = this.#deleting.get(c.keyId);
    if (deleting) return this.#consumeDeleted(c, deleting);
    if (this.index.slotOf(c.keyId) < 0) {
      const tomb = await this.#deletedKey(c.keyId);
      if (!tomb) throw notFound("key", c.keyId);
      return this.#consumeDeleted(c, tomb);
    }
    // From here to #submit everything is synchronous: the charge, the
    // settlement and the absolute counter values form one atomic step.
    const slot = this.index.slotOf(c.keyId);
    const account = this.#accounts.get(this.index.accountOf(slot));
    if (!account) throw notFound("account", this.index.accountOf(slot));
    this.#checkChargeExact(c, account.counters, slot);
    if (c.reservationId) {
      const r = this.#liveReservation(c.reservationId);
      if (r >= 0 && this.#reservations.keySlot(r) === slot) this.#dropReservation(r);
    }
    this.index.addUsage(slot, c.units, c.now);
    account.counters.charged += c.units;
    account.counters.balance = account.counters.credited - account.counters.charged;
    this.index.rateWindowForWrite(slot)?.addTokens(c.now, c.inputTokens + c.outputTokens);
    const unlimited = this.index.isUnlimited(slot);
    const record: ConsumeRecord = {
      requestId: c.requestId,
      keyId: c.keyId,
      accountId: account.record.id,
      group: this.index.groupOf(slot),
      model: c.model,
      inputTokens: c.inputTokens,
      outputTokens: c.outputTokens,
      units: c.units,
      at: c.now,
      reservationId: c.reservationId,
      keyRemaining: unlimited ? 0 : this.index.remaining(slot) - this.index.reserved(slot),
      keyUnlimited: unlimited,
      accountBalance: account.counters.balance - account.counters.reserved,
    };
    await this.#submit([
      this.#ctrOp(c.keyId, slot),
      this.#actrOp(account.record.id, account.counters),
      { type: "put", sublevel: this.#subs.ledger, key: c.requestId, value: record },
    ]);
    return { record, replayed: false };
  }

  /**
   * Refuses (INVALID_ARGUMENT naming units, nothing charged) a charge that would take a counter
   * past 2^53 − 1: the key's used and remaining (and used + total, what its next refill grants),
   * the account's charged and balance. Past that a JS number silently drops units.
   */
  #checkChargeExact(c: ConsumeInput, a: AccountCounters, slot: number): void {
    const u = c.units;
    if (slot >= 0) {
      const used = addExact(this.index.used(slot), u, "units", `key ${c.keyId}'s used units`);
      addExact(this.index.remaining(slot), -u, "units", `key ${c.keyId}'s remaining quota`);
      const refill = this.#refills.get(c.keyId);
      if (refill) addExact(used, refill.total, "units", `key ${c.keyId}'s quota granted at its next refill (used + total)`);
    }
    const charged = addExact(a.charged, u, "units", "the account's charged units");
    addExact(a.credited, -charged, "units", "the account's balance");
  }

  /** A deleted key's charge: the account and the ledger (no key counters are left to move). */
  async #consumeDeleted(c: ConsumeInput, tomb: DeletedKey): Promise<{ record: ConsumeRecord; replayed: boolean }> {
    if (this.#failed) throw new StoreUnavailableError();
    const account = this.#accounts.get(tomb.accountId);
    if (!account) throw notFound("account", tomb.accountId);
    this.#checkChargeExact(c, account.counters, -1);
    account.counters.charged += c.units;
    account.counters.balance = account.counters.credited - account.counters.charged;
    const record: ConsumeRecord = {
      requestId: c.requestId,
      keyId: c.keyId,
      accountId: tomb.accountId,
      group: tomb.group,
      model: c.model,
      inputTokens: c.inputTokens,
      outputTokens: c.outputTokens,
      units: c.units,
      at: c.now,
      reservationId: "",
      keyRemaining: 0,
      keyUnlimited: false,
      accountBalance: account.counters.balance - account.counters.reserved,
    };
    await this.#submit([this.#actrOp(account.record.id, account.counters), { type: "put", sublevel: this.#subs.ledger, key: c.requestId, value: record }]);
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

  #trackRefill(rec: Pick<HotKey, "id" | "refill" | "unlimited" | "quotaTotal">, since: number): void {
    const r = refillStateOf(rec, since);
    if (r === null) this.#refills.delete(rec.id);
    else this.#refills.set(rec.id, r);
  }

  /** Resets the quota of every key whose refill period turned since its last reset. */
  #refillDue(now: number): void {
    const ops: Op[] = [];
    for (const [id, r] of this.#refills) {
      const start = refillDue(r, now);
      if (start === null) continue;
      const slot = this.index.slotOf(id);
      if (slot < 0 || this.#deleting.has(id)) continue; // (a counter write would outlive the key)
      this.index.resetRemaining(slot, r.total);
      r.since = start;
      ops.push(this.#ctrOp(id, slot));
    }
    if (ops.length) this.#submit(ops).catch(() => {});
  }

  #tick(): void {
    const now = this.#clock();
    this.releaseExpired(now);
    if (this.#failed) void this.#recover();
    else this.#refillDue(now);
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
   * fresh one. Until that succeeded nothing is acknowledged: #failed refuses every write.
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
    if (this.#recovering || this.#writing) return;
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
          this.#memoryStale = false;
          await this.#reloadFromDisk();
          if (!this.#memoryStale) break;
        }
        // Synchronously after the last check of #memoryStale: nothing moved memory in between.
        this.#failed = false;
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

    const seen = new Set<string>();
    for (const [id, record, c] of accounts) {
      seen.add(id);
      const counters = { credited: c.credited, charged: c.charged, balance: c.credited - c.charged };
      const a = this.#accounts.get(id);
      if (a) {
        a.record = record;
        Object.assign(a.counters, counters); // `reserved` stays: open reservations hold it
      } else this.#accounts.set(id, { record, counters: { ...counters, reserved: 0 } });
    }
    for (const id of [...this.#accounts.keys()]) if (!seen.has(id)) this.#accounts.delete(id);
    this.#groups.clear();
    for (const g of groups) this.#putGroupMemory(g);
    this.#tokens.clear();
    this.#tokensByHash.clear();
    for (const t of tokens) {
      this.#tokens.set(t.id, t);
      this.#tokensByHash.set(t.secretHash, t);
    }
    this.#prices.clear();
    for (const p of prices) this.#prices.set(p.model, p);
    // A reopen may show ledger entries a failed batch wrote after all: forget kept "absent"s.
    this.#absent.clear();

    // Keys: every one on disk is upserted (projection and counters; an existing slot keeps its
    // reservations), group counts and refill states are rebuilt, and keys that are not on disk
    // leave the index together with their open reservations.
    this.#groupCounts.clear();
    this.#refills.clear();
    const onDisk = new Set<string>();
    await this.#scanKeys(this.#subs.khot, (id, v: string) => decodeProjection(id, v), (id) => {
      onDisk.add(id);
    });
    const gone = new Set<number>();
    for (const slot of this.index.slots()) if (!onDisk.has(this.index.idOf(slot))) gone.add(slot);
    if (gone.size) {
      const rs = this.#reservations;
      for (let r = rs.first(); r !== -1; ) {
        const next = rs.after(r);
        if (gone.has(rs.keySlot(r))) this.#dropReservation(r);
        r = next;
      }
      for (const slot of gone) this.index.remove(this.index.idOf(slot));
    }
  }

  get openReservations(): number {
    return this.#reservations.size;
  }

  /** The directory this store lives in. */
  get dir(): string {
    return this.#dir;
  }
}

/** Most "not in the ledger" answers kept for consume() (see LevelStore.#absent). */
const ABSENT_CAP = 65_536;

