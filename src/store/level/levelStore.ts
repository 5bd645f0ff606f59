// The embedded default engine: LevelDB (`level`) plus the in-memory hot index.
//
// Layout (sublevels, JSON values unless noted):
//   keys   id → KeyRecord            khash  sha256hex → id (current and grace secrets)
//   khot   id → the key's hot projection (compact text, src/store/keyProjection.ts)
//   kctr   id → KeyCountersDisk (compact text, encodeCounters)
//   accts  id → AccountRecord        actr   id → AccountCountersDisk
//   groups name → GroupRecord        tokens id → TokenRecord
//   prices model → PriceRecord       audit  auditId (time-ordered) → AuditRecord
//   ledger requestId → ConsumeRecord (the usage ledger and idempotency record)
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
import { mkdir } from "node:fs/promises";
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
import { failedPrecondition, notFound, SidecarError, StoreUnavailableError } from "../../domain/errors.js";
import type { PolicyGroup, RateView } from "../../policy/types.js";
import { HotIndex, type HotCounters, type HotEntry } from "../hotIndex.js";
import { RESERVATION_KEY_AT, ReservationSlab } from "../reservations.js";
import { compileRestrictions, decodeProjection, encodeProjection, hotKeyOf, PROJECTION_VERSION, type HotKey } from "../keyProjection.js";
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

export { compileRestrictions };

export interface KeyCountersDisk {
  remaining: number;
  used: number;
  /** Quota ever granted (initial + changes + refills); credited − used = remaining. */
  credited: number;
  lastUsedAt: number | null;
  refilledAt: number | null;
}

// Key counters on disk (`kctr`, rewritten by every Consume and refill): base64 of
//   u8 version (1), u8 flags (1 lastUsedAt, 2 refilledAt), f64 remaining, used, credited,
//   [f64 lastUsedAt], [f64 refilledAt]   (little-endian)
// — ~36–48 characters instead of ~85 of JSON, decoded without JSON.parse (1M of them are read
// at every start). Values written as JSON by earlier builds (they start with "{") still read.
const CTR_VERSION = 1;
const ctrScratch = Buffer.alloc(2 + 5 * 8 + 3);

export function encodeCounters(c: KeyCountersDisk): string {
  const b = ctrScratch;
  b[0] = CTR_VERSION;
  b[1] = (c.lastUsedAt !== null ? 1 : 0) | (c.refilledAt !== null ? 2 : 0);
  b.writeDoubleLE(c.remaining, 2);
  b.writeDoubleLE(c.used, 10);
  b.writeDoubleLE(c.credited, 18);
  let o = 26;
  if (c.lastUsedAt !== null) o = b.writeDoubleLE(c.lastUsedAt, o);
  if (c.refilledAt !== null) o = b.writeDoubleLE(c.refilledAt, o);
  return b.toString("base64", 0, o);
}

export function decodeCounters(id: string, v: string): KeyCountersDisk {
  if (v.charCodeAt(0) === 123 /* { */) {
    const j = JSON.parse(v) as KeyCountersDisk;
    return { remaining: j.remaining, used: j.used, credited: j.credited ?? j.remaining + j.used, lastUsedAt: j.lastUsedAt, refilledAt: j.refilledAt ?? null };
  }
  const b = ctrScratch;
  const n = b.write(v, 0, "base64");
  const flags = b[1]!;
  if (b[0] !== CTR_VERSION || n !== 26 + (flags & 1 ? 8 : 0) + (flags & 2 ? 8 : 0)) throw new Error(`key ${id}: bad counters (version ${b[0]}, ${n} bytes)`);
  let o = 26;
  let lastUsedAt: number | null = null;
  if (flags & 1) {
    lastUsedAt = b.readDoubleLE(o);
    o += 8;
  }
  return { remaining: b.readDoubleLE(2), used: b.readDoubleLE(10), credited: b.readDoubleLE(18), lastUsedAt, refilledAt: flags & 2 ? b.readDoubleLE(o) : null };
}

interface AccountCountersDisk {
  balance: number;
  credited: number;
  charged: number;
}

/** `raw`: the value is already its stored text (not JSON-encoded again). */
type Op = { type: "put"; sublevel: any; key: string; value: unknown; raw?: true } | { type: "del"; sublevel: any; key: string };

/** Keys with a refill period: when their quota was last reset. */
interface RefillState {
  period: "daily" | "weekly" | "monthly";
  total: number;
  /** Start of the period the current quota belongs to. */
  since: number;
}

/** Start (UTC) of the refill period containing `now`. */
export function periodStart(period: RefillState["period"], now: number): number {
  const d = new Date(now);
  const day = Date.UTC(d.getUTCFullYear(), d.getUTCMonth(), d.getUTCDate());
  if (period === "daily") return day;
  if (period === "weekly") return day - ((d.getUTCDay() + 6) % 7) * 86_400_000; // ISO weeks start on Monday
  return Date.UTC(d.getUTCFullYear(), d.getUTCMonth(), 1);
}

/**
 * 3: usage buckets are indexed by account and time (USAGE_LAYOUT); 2: keys carry a `khot`
 * projection; 1: neither. 1 and 2 are upgraded on open, each step with its own marker written
 * last; the bump keeps an older build (which would write the old layouts) from opening the dir.
 */
const SCHEMA_VERSION = 3;
/** meta "usage": the usage sublevel's layout (see the file comment). */
const USAGE_LAYOUT = 2;
/** Bucket starts are 12 hex digits (ms, up to year 10889); a bound above that sorts after every one. */
const MAX_START_HEX = 0xffffffffffff;
const USAGE_GRANS = ["m", "h", "d"] as const;
const USAGE_DIMS = ["key", "account", "group", "model"] as const;

function startHex(t: number): string {
  return t.toString(16).padStart(12, "0");
}

/** A range bound for bucket starts: below every start, a start, or above every start. */
function startBound(t: number): string {
  if (!(t > 0)) return "";
  if (t > MAX_START_HEX) return "g";
  return startHex(Math.ceil(t));
}

/** The account a bucket belongs to: key rows carry it, account rows are it; group and model rows have none. */
function usageOwner(b: Pick<UsageBucket, "dim" | "id" | "account">): string {
  return b.dim === "account" ? b.id : b.dim === "key" ? (b.account ?? "") : "";
}
const NO_RATE: RateView = Object.freeze({ requestsInWindow: 0, tokensInWindow: 0, open: 0, windowResetMs: 0 });

/** Removes secret material from a record before it goes into the audit log. */
export function auditSafe(v: unknown): unknown {
  if (!v || typeof v !== "object") return v;
  const { secretHash: _a, secretEnc: _b, prevSecretHash: _c, ...rest } = v as Record<string, unknown>;
  return rest;
}

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
  #subs!: Record<"keys" | "khash" | "khot" | "kctr" | "accts" | "actr" | "groups" | "tokens" | "prices" | "audit" | "ledger" | "usage" | "meta", any>;

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
  #lastReservationExpiry = -Infinity;
  readonly #refills = new Map<string, RefillState>();
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
    try {
      await this.#db.open();
    } catch (err: any) {
      if (err?.cause?.code === "LEVEL_LOCKED" || err?.code === "LEVEL_LOCKED") {
        throw new SidecarError("FAILED_PRECONDITION", `data directory in use: ${this.#dir} (another aisa-authz serve holds its lock)`, { cause: err });
      }
      throw err;
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
    const schema = await this.#subs.meta.get("schema");
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

    for await (const [id, rec] of this.#subs.accts.iterator()) {
      const c: AccountCountersDisk = (await this.#subs.actr.get(id)) ?? { balance: 0, credited: 0, charged: 0 };
      c.balance = c.credited - c.charged;
      this.#accounts.set(id, { record: rec, counters: { ...c, reserved: 0 } });
    }
    for await (const [, rec] of this.#subs.groups.iterator()) this.#putGroupMemory(rec);
    for await (const [, rec] of this.#subs.tokens.iterator()) {
      this.#tokens.set(rec.id, rec);
      this.#tokensByHash.set(rec.secretHash, rec);
    }
    for await (const [, rec] of this.#subs.prices.iterator()) this.#prices.set(rec.model, rec);

    const hot = await this.#subs.meta.get("hot");
    // How many keys the last open found: sizes the index up front (only a hint).
    const hint = await this.#subs.meta.get("keysHint");
    if (typeof hint === "number" && hint > 0 && hint < 2 ** 28) this.index.reserve(hint);
    if (schema === undefined || ((schema === 2 || schema === SCHEMA_VERSION) && hot === PROJECTION_VERSION && !this.#rebuildProjection)) {
      await this.#scanKeys(this.#subs.khot, (id, v: string) => decodeProjection(id, v));
      this.loadedFrom = "projection";
    } else {
      await this.#rebuildFromRecords();
      this.loadedFrom = "records";
    }
    if (hint !== this.index.size) await this.#subs.meta.put("keysHint", this.index.size);
    // After the keys: the usage migration reads each key row's account from the index.
    if ((await this.#subs.meta.get("usage")) !== USAGE_LAYOUT) await this.#migrateUsage();
    else if (schema !== undefined && schema !== SCHEMA_VERSION) await this.#db.batch([{ type: "put", sublevel: this.#subs.meta, key: "schema", value: SCHEMA_VERSION }] as any, { sync: true });
    this.#refillDue(now);
  }

  /**
   * Usage layout 1 (`gran|dim|id|startHex`: a query scanned every id of its dimension over all
   * time) → 2 (see the file comment). Runs once, after the keys are loaded: a key row's account
   * comes from the index; rows of keys deleted before the upgrade get only the time-ordered
   * entry (no account query could attribute them before either). The new entries are written
   * first (synced batches), then the old range is cleared, then the marker (and the schema):
   * an interrupted run starts over, which is harmless (bucket values are absolute). Clearing
   * at the end instead of deleting in each batch halves the ops written (500k buckets:
   * bench/usageQuery.ts).
   */
  async #migrateUsage(): Promise<void> {
    const BATCH = 5000;
    // Layout-1 keys start with "d|", "h|" or "m|"; layout 2's with "a|" or "t|", outside this range.
    const it = this.#subs.usage.iterator({ gte: "d|", lt: "n" });
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
            const slot = this.index.slotOf(b.id);
            if (slot >= 0) b.account = this.index.accountOf(slot);
          }
          for (const op of LevelStore.#usagePuts(b, this.#subs.usage)) ops.push(op);
        }
        // One write in flight while the next batch is read; each synced (plain string ops:
        // see toRawOps).
        await writing;
        writing = this.#db.batch(toRawOps(ops) as any, RAW_SYNC);
      }
      await writing;
    } finally {
      await Promise.allSettled([writing]);
      await it.close();
    }
    await this.#subs.usage.clear({ gte: "d|", lt: "n" });
    await this.#db.batch(
      [
        { type: "put", sublevel: this.#subs.meta, key: "usage", value: USAGE_LAYOUT },
        { type: "put", sublevel: this.#subs.meta, key: "schema", value: SCHEMA_VERSION },
      ] as any,
      { sync: true },
    );
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
              if (cid === id) c = decodeCounters(id, ctrBatch[ci++]![1]);
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
    if (this.#failed) return Promise.reject(new StoreUnavailableError());
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
          // Memory may now be ahead of disk: refuse every write and serve no
          // Check (fail closed) until a probe write succeeds and the counters
          // are reloaded from disk.
          this.#onError(err);
          this.#failed = true;
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

  #auditOp(a: AuditInput): Op {
    const at = this.#clock();
    // Time-ordered id: 12 hex digits of ms + a 6-digit sequence + 4 random chars.
    const id = `${at.toString(16).padStart(12, "0")}${(this.#auditSeq++ % 1_000_000).toString().padStart(6, "0")}${base62(randomBytes(3), 4)}`;
    const rec: AuditRecord = {
      id,
      at,
      actor: a.actor,
      action: a.action,
      target: a.target,
      before: a.before === undefined ? "" : JSON.stringify(auditSafe(a.before)),
      after: a.after === undefined ? "" : JSON.stringify(auditSafe(a.after)),
      detail: a.detail ?? "",
    };
    return { type: "put", sublevel: this.#subs.audit, key: id, value: rec };
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
      if (this.index.slotOf(record.id) >= 0) throw new SidecarError("ALREADY_EXISTS", `key ${record.id} already exists`);
      const hot = hotKeyOf(record);
      const start = record.unlimited ? 0 : record.quotaTotal;
      const counters: KeyCountersDisk = { remaining: start, used: 0, credited: start, lastUsedAt: null, refilledAt: null };
      await this.#submit([
        ...this.#putKeyOps(record),
        { type: "put", sublevel: this.#subs.khash, key: record.secretHash, value: record.id },
        { type: "put", sublevel: this.#subs.kctr, key: record.id, value: encodeCounters(counters), raw: true },
        this.#auditOp({ ...audit, after: audit.after ?? record }),
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
          if (this.index.slotOf(record.id) >= 0) throw new SidecarError("ALREADY_EXISTS", `key ${record.id} already exists`);
          const start = record.unlimited ? 0 : record.quotaTotal;
          ops.push(
            ...this.#putKeyOps(record),
            { type: "put", sublevel: this.#subs.khash, key: record.secretHash, value: record.id },
            { type: "put", sublevel: this.#subs.kctr, key: record.id, value: encodeCounters({ remaining: start, used: 0, credited: start, lastUsedAt: null, refilledAt: null }), raw: true },
          );
        }
        ops.push(this.#auditOp({ ...audit, detail: `${chunk.length} keys` }));
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
    const record: KeyRecord | undefined = await this.#subs.keys.get(id);
    return record ? this.#keyState(record) : undefined;
  }

  async *scanKeys(accountId?: string): AsyncIterable<KeyState> {
    const it = this.#subs.keys.iterator();
    try {
      for (;;) {
        const batch: [string, KeyRecord][] = await it.nextv(1000);
        if (batch.length === 0) return;
        for (const [, rec] of batch) {
          if (accountId !== undefined && rec.accountId !== accountId) continue;
          if (this.index.slotOf(rec.id) < 0) continue;
          yield this.#keyState(rec);
        }
      }
    } finally {
      await it.close();
    }
  }

  updateKeys(ids: readonly string[], change: (current: KeyState) => KeyChange, audit: (before: KeyState, after: KeyState) => AuditInput): Promise<KeyState[]> {
    return this.#serial(async () => {
      const records: (KeyRecord | undefined)[] = ids.length ? await this.#subs.keys.getMany([...ids]) : [];
      const befores: KeyState[] = records.map((r, i) => {
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
        ops.push(this.#auditOp(audit(before, after)));
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
      const records: (KeyRecord | undefined)[] = ids.length ? await this.#subs.keys.getMany([...ids]) : [];
      const befores = records.map((r, i) => {
        if (!r || this.index.slotOf(r.id) < 0) throw notFound("key", ids[i]!);
        const s = this.#keyState(r);
        check(s);
        return s;
      });
      const ops: Op[] = [];
      for (const b of befores) {
        const r = b.record;
        ops.push({ type: "del", sublevel: this.#subs.keys, key: r.id });
        ops.push({ type: "del", sublevel: this.#subs.khot, key: r.id });
        ops.push({ type: "del", sublevel: this.#subs.kctr, key: r.id });
        ops.push({ type: "del", sublevel: this.#subs.khash, key: r.secretHash });
        if (r.prevSecretHash) ops.push({ type: "del", sublevel: this.#subs.khash, key: r.prevSecretHash });
        ops.push(this.#auditOp(audit(b)));
      }
      await this.#submit(ops);
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
      if (this.#accounts.has(record.id)) throw new SidecarError("ALREADY_EXISTS", `account ${JSON.stringify(record.id)} already exists`);
      const c: AccountCountersDisk = { balance: initialBalance, credited: initialBalance, charged: 0 };
      await this.#submit([
        { type: "put", sublevel: this.#subs.accts, key: record.id, value: record },
        { type: "put", sublevel: this.#subs.actr, key: record.id, value: c },
        this.#auditOp({ ...audit, after: audit.after ?? { ...record, balance: initialBalance } }),
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
      // Counters move now (see the file comment); the batch carries absolute values.
      a.counters.credited += delta;
      a.counters.balance = a.counters.credited - a.counters.charged;
      await this.#submit([
        this.#actrOp(id, a.counters),
        this.#auditOp({ ...audit, before: audit.before ?? { id, balance: before.counters.balance }, after: audit.after ?? { id, balance: a.counters.balance } }),
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
      if (this.#groups.has(record.name)) throw new SidecarError("ALREADY_EXISTS", `group ${JSON.stringify(record.name)} already exists`);
      await this.#submit([{ type: "put", sublevel: this.#subs.groups, key: record.name, value: record }, this.#auditOp({ ...audit, after: audit.after ?? record })]);
      this.#putGroupMemory(record);
      return { ...record };
    });
  }

  getGroup(name: string): GroupRecord | undefined {
    const g = this.#groups.get(name);
    return g ? { ...g.record, models: [...g.record.models] } : undefined;
  }

  listGroups(): GroupWithCount[] {
    return [...this.#groups.values()]
      .map((g) => ({ ...g.record, models: [...g.record.models], keyCount: this.#groupCounts.get(g.record.name) ?? 0 }))
      .sort((a, b) => (a.name < b.name ? -1 : 1));
  }

  updateGroup(name: string, change: (current: GroupRecord) => GroupRecord, audit: (before: GroupRecord, after: GroupRecord) => AuditInput): Promise<GroupRecord> {
    return this.#serial(async () => {
      const g = this.#groups.get(name);
      if (!g) throw notFound("group", name);
      const before = { ...g.record, models: [...g.record.models] };
      const after = change(before);
      await this.#submit([{ type: "put", sublevel: this.#subs.groups, key: name, value: after }, this.#auditOp(audit(before, after))]);
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
      await this.#submit([{ type: "del", sublevel: this.#subs.groups, key: name }, this.#auditOp({ ...audit, before: audit.before ?? g.record })]);
      this.#groups.delete(name);
      this.#groupCounts.delete(name);
    });
  }

  // ---- tokens ------------------------------------------------------------------

  insertToken(record: TokenRecord, audit: AuditInput): Promise<TokenRecord> {
    return this.#serial(async () => {
      if (this.#tokens.has(record.id)) throw new SidecarError("ALREADY_EXISTS", `token ${record.id} already exists`);
      if (record.accountId !== null && !this.#accounts.has(record.accountId)) throw notFound("account", record.accountId);
      await this.#submit([{ type: "put", sublevel: this.#subs.tokens, key: record.id, value: record }, this.#auditOp({ ...audit, after: audit.after ?? record })]);
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
      await this.#submit([{ type: "del", sublevel: this.#subs.tokens, key: id }, this.#auditOp({ ...audit, before: audit.before ?? t })]);
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
      await this.#submit([{ type: "put", sublevel: this.#subs.prices, key: record.model, value: record }, this.#auditOp({ ...audit, before: audit.before ?? before, after: audit.after ?? record })]);
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
      await this.#submit([{ type: "del", sublevel: this.#subs.prices, key: model }, this.#auditOp({ ...audit, before: audit.before ?? p })]);
      this.#prices.delete(model);
    });
  }

  // ---- audit -------------------------------------------------------------------

  async listAudit(q: ListAuditQuery): Promise<AuditRecord[]> {
    const out: AuditRecord[] = [];
    const range: Record<string, string> = {};
    if (q.before) range["lt"] = q.before;
    if (q.since !== undefined) range["gte"] = q.since.toString(16).padStart(12, "0");
    const it = this.#subs.audit.iterator({ ...range, reverse: true });
    try {
      for (;;) {
        const batch: [string, AuditRecord][] = await it.nextv(500);
        if (batch.length === 0) break;
        for (const [, rec] of batch) {
          if (q.target && rec.target !== q.target) continue;
          if (q.actor && rec.actor !== q.actor) continue;
          out.push(rec);
          if (out.length >= q.limit) return out;
        }
      }
    } finally {
      await it.close();
    }
    return out;
  }

  appendAudit(audit: AuditInput | readonly AuditInput[]): Promise<void> {
    const list = Array.isArray(audit) ? audit : [audit as AuditInput];
    return this.#serial(() => this.#submit(list.map((a) => this.#auditOp(a))));
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
    if (!account) return { ok: false, reason: "ACCOUNT_BALANCE_EXHAUSTED", retryAfterMs: 0 };
    const units = req.units;
    const acctAvail = account.counters.balance - account.counters.reserved;
    if (acctAvail <= 0 || acctAvail < units) return { ok: false, reason: "ACCOUNT_BALANCE_EXHAUSTED", retryAfterMs: 0 };
    if (!ix.isUnlimited(slot)) {
      const keyAvail = ix.remaining(slot) - ix.reserved(slot);
      if (keyAvail <= 0 || keyAvail < units) return { ok: false, reason: "KEY_QUOTA_EXHAUSTED", retryAfterMs: 0 };
    }
    const lim = ix.limits(slot);
    const w = ix.rateWindow(slot);
    if (w) {
      const read = w.read(req.now);
      if ((lim.rpm > 0 && read.requests >= lim.rpm) || (lim.tpm > 0 && read.tokens >= lim.tpm)) {
        return { ok: false, reason: "RATE_LIMITED", retryAfterMs: Math.max(1000, read.resetMs) };
      }
    }
    if (lim.concurrency > 0 && ix.open(slot) >= lim.concurrency) return { ok: false, reason: "RATE_LIMITED", retryAfterMs: 1000 };
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
    };
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
    // From here to #submit everything is synchronous: the charge, the
    // settlement and the absolute counter values form one atomic step.
    const slot = this.index.slotOf(c.keyId);
    if (slot < 0) throw notFound("key", c.keyId);
    const account = this.#accounts.get(this.index.accountOf(slot));
    if (!account) throw notFound("account", this.index.accountOf(slot));
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

  // ---- usage buckets -----------------------------------------------------------

  /** Usage entries read by queries since open (a stat for tests and diagnostics). */
  usageEntriesRead = 0;

  static #timeKey(b: Pick<UsageBucket, "gran" | "dim" | "id" | "start">): string {
    return `t|${b.gran}|${b.dim}|${startHex(b.start)}|${b.id}`;
  }

  static #accountKey(b: Pick<UsageBucket, "gran" | "dim" | "id" | "start">, account: string): string {
    return `a|${b.gran}|${b.dim}|${account}|${startHex(b.start)}|${b.id}`;
  }

  /** The puts of one bucket: its time-ordered entry and, for key and account rows with a known account, the account's. */
  static #usagePuts(b: UsageBucket, usage: unknown): Op[] {
    const ops: Op[] = [{ type: "put", sublevel: usage, key: LevelStore.#timeKey(b), value: b }];
    const owner = usageOwner(b);
    if (owner) ops.push({ type: "put", sublevel: usage, key: LevelStore.#accountKey(b, owner), value: b });
    return ops;
  }

  putUsageBuckets(buckets: readonly UsageBucket[]): Promise<void> {
    if (buckets.length === 0) return Promise.resolve();
    const ops: Op[] = [];
    for (const b of buckets) for (const op of LevelStore.#usagePuts(b, this.#subs.usage)) ops.push(op);
    return this.#submit(ops);
  }

  async getUsageBuckets(refs: readonly Pick<UsageBucket, "gran" | "dim" | "id" | "start">[]): Promise<(UsageBucket | undefined)[]> {
    if (refs.length === 0) return [];
    const got: (UsageBucket | undefined)[] = await this.#subs.usage.getMany(refs.map((r) => LevelStore.#timeKey(r)));
    return got.map((b) => b ?? undefined);
  }

  async queryUsageBuckets(q: UsageQueryRange): Promise<UsageBucket[]> {
    const out: UsageBucket[] = [];
    // An account's key and account rows: its own prefix; anything else: the time-ordered entries.
    const byAccount = q.account !== undefined && q.account !== "" && (q.dim === "key" || q.dim === "account");
    const prefix = byAccount ? `a|${q.gran}|${q.dim}|${q.account}|` : `t|${q.gran}|${q.dim}|`;
    const it = this.#subs.usage.iterator({ gte: prefix + startBound(q.since), lt: prefix + startBound(q.until) });
    try {
      for (;;) {
        const batch: [string, UsageBucket][] = await it.nextv(1000);
        if (batch.length === 0) break;
        this.usageEntriesRead += batch.length;
        for (const [, b] of batch) if ((q.id === undefined || b.id === q.id) && b.start >= q.since && b.start < q.until) out.push(b);
      }
    } finally {
      await it.close();
    }
    return out;
  }

  async pruneUsage(before: Readonly<Record<UsageBucket["gran"], number>>, limit: number): Promise<number> {
    const dels: Op[] = [];
    let n = 0;
    for (const gran of USAGE_GRANS) {
      for (const dim of USAGE_DIMS) {
        if (n >= limit) break;
        const prefix = `t|${gran}|${dim}|`;
        const it = this.#subs.usage.iterator({ gte: prefix, lt: prefix + startBound(before[gran]), limit: limit - n });
        try {
          for (;;) {
            const batch: [string, UsageBucket][] = await it.nextv(1000);
            if (batch.length === 0) break;
            for (const [k, b] of batch) {
              dels.push({ type: "del", sublevel: this.#subs.usage, key: k });
              const owner = usageOwner(b);
              if (owner) dels.push({ type: "del", sublevel: this.#subs.usage, key: LevelStore.#accountKey(b, owner) });
              n++;
            }
          }
        } finally {
          await it.close();
        }
      }
    }
    if (dels.length) await this.#submit(dels);
    return n;
  }

  // ---- refill, TTLs and recovery (once a second) -----------------------------------

  #trackRefill(rec: Pick<HotKey, "id" | "refill" | "unlimited" | "quotaTotal">, since: number): void {
    if (rec.refill === "none" || rec.unlimited) this.#refills.delete(rec.id);
    else this.#refills.set(rec.id, { period: rec.refill, total: rec.quotaTotal, since });
  }

  /** Resets the quota of every key whose refill period turned since its last reset. */
  #refillDue(now: number): void {
    const ops: Op[] = [];
    for (const [id, r] of this.#refills) {
      const start = periodStart(r.period, now);
      if (r.since >= start) continue;
      const slot = this.index.slotOf(id);
      if (slot < 0) continue;
      // remaining := total; the difference is credited, so charges made before
      // this instant stay in `used` and charges after it count against the new
      // period — none is lost.
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

  /** After a failed write: probe the disk, reload counters, serve again. */
  async #recover(): Promise<void> {
    if (this.#recovering || this.#writing) return;
    this.#recovering = true;
    try {
      const fault = this.#fault?.();
      if (fault) throw fault;
      await this.#db.batch([{ type: "put", sublevel: this.#subs.meta, key: "probe", value: this.#clock() }] as any, { sync: true });
      for await (const [id, c] of this.#subs.kctr.iterator()) {
        const slot = this.index.slotOf(id as string);
        if (slot < 0) continue;
        const k = decodeCounters(id as string, c as string);
        this.index.setCounters(slot, { remaining: k.remaining, used: k.used, credited: k.credited, lastUsedAt: k.lastUsedAt });
      }
      for (const [id, a] of this.#accounts) {
        const c: AccountCountersDisk | undefined = await this.#subs.actr.get(id);
        if (c) Object.assign(a.counters, { credited: c.credited, charged: c.charged, balance: c.credited - c.charged });
      }
      this.#failed = false;
      this.#setHealth("SERVING");
    } catch (err) {
      this.#onError(err);
    } finally {
      this.#recovering = false;
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

/** Batch options for pre-encoded ops: strings in, strings out, one fsync. */
const RAW_SYNC = Object.freeze({ sync: true, keyEncoding: "utf8", valueEncoding: "utf8" });

/**
 * Ops → root-level ops with the key already prefixed (the sublevel's public `prefix`) and the
 * value already JSON (what the sublevels' json encoding writes: the same bytes on disk).
 * abstract-level's per-op path for sublevel ops (clone, encodings, prefixing) measured
 * 4–30 µs per op on Node 20; these plain string ops take a fraction of that, and a durable
 * Consume writes two or three ops. (bench/README.md, "Consume".)
 */
type RawOp = { type: "put" | "del"; key: string; value?: string };
function toRawOps(ops: readonly Op[]): RawOp[] {
  const raw = new Array<RawOp>(ops.length);
  for (let i = 0; i < ops.length; i++) {
    const o = ops[i]!;
    const key = (o.sublevel.prefix as string) + o.key;
    if (o.type === "del") raw[i] = { type: "del", key };
    else raw[i] = { type: "put", key, value: o.raw ? (o.value as string) : JSON.stringify(o.value) };
  }
  return raw;
}

/**
 * Within one group-committed batch, several submissions may put the same
 * record (e.g. one key's counters by 100 Consumes). Every put carries the
 * absolute value at its submission, so only the last one matters.
 */
function coalesce(ops: Op[]): Op[] {
  if (ops.length < 8) return ops;
  const last = new Map<any, Map<string, number>>();
  ops.forEach((o, i) => {
    let m = last.get(o.sublevel);
    if (!m) last.set(o.sublevel, (m = new Map()));
    m.set(o.key, i);
  });
  return ops.filter((o, i) => last.get(o.sublevel)!.get(o.key) === i);
}
