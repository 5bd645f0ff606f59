// The LevelDB engine's handle on its database: opening it (with the checks and messages an
// operator needs), its sublevels, reopening, and raw reads of stored text.
import { readdirSync } from "node:fs";
import { createRequire } from "node:module";
import { Level } from "level";
import { DEFAULT_WRITE_BUFFER_MB } from "../../config/config.js";
import { SidecarError } from "../../domain/errors.js";
import { RAW_SYNC, RESTORE, undecodable, type RawOp } from "./codecs.js";
import { openFailure, type SubName } from "./schema.js";

export class LevelDisk {
  readonly #dir: string;
  /** Whether the open under way (or the last one) may create the store: none of its files were there. */
  #fresh: boolean;
  readonly db: Level<string, any>;
  readonly subs: Record<SubName, any>;

  /**
   * @param writeBufferMb LevelDB's write buffer (memtable), MB: every batch is synced to the log,
   * and when the memtable fills LevelDB switches to a new log and writes the full one out as a
   * table. At the default 4 MB a durable Consume load switches several times a second, and the
   * synced writes around a switch set Consume's tail; at 64 MB (the sidecar's default,
   * `--level-write-buffer-mb`) LevelDB's synced-write p99 is 0.4–0.6× (bench/README.md, "The
   * write buffer"). It costs up to that much RSS while the memtable fills, and a crash leaves up
   * to that much log for the next open to replay (~0.3 s for a 50 MB log here).
   */
  constructor(dir: string, writeBufferMb = DEFAULT_WRITE_BUFFER_MB) {
    this.#dir = dir;
    // Without CURRENT, LevelDB with createIfMissing would create a new, empty store here and
    // delete the old files as obsolete. So where the store's files are, it opens with
    // createIfMissing false: LevelDB then takes the directory's lock first and checks CURRENT
    // under it, and open() names what it found. Decided before Level is constructed: its
    // constructor opens the database on its own in the next microtask (abstract-level's
    // deferred open) with these options. (A check made beside that open raced it: on a fresh
    // dir it could see LevelDB's MANIFEST-000001 before its CURRENT and refuse an empty temp
    // dir, and a store that lost CURRENT was opened empty over its files by the open it failed
    // to stop; a second serve catching the first mid-creation was told CURRENT is missing
    // instead of that the directory is in use.)
    this.#fresh = !hasStoreFiles(`${dir}/db`);
    // maxOpenFiles: LevelDB mmaps every open table file, and the load at start reads them
    // all, so with the default (1000) the whole store stays mapped and counts in RSS (~370 MB
    // at 1M keys). 64 (LevelDB raises it to its minimum, 74, which leaves 64 table files in its
    // table cache) bounds that to ~130 MB, and the reopen after the load (unmapLoadedTables)
    // drops those too; Check never reads LevelDB, and admin reads and Consume's recent ledger
    // entries barely notice. (bench/README.md, "RSS".)
    this.db = new Level<string, any>(`${dir}/db`, { valueEncoding: "json", maxOpenFiles: 64, createIfMissing: this.#fresh, writeBufferSize: writeBufferMb * 2 ** 20 });
    const sub = (name: string) => this.db.sublevel<string, any>(name, { valueEncoding: "json" });
    this.subs = {
      keys: sub("keys"),
      khash: sub("khash"),
      khot: this.db.sublevel<string, string>("khot", { valueEncoding: "utf8" }),
      kctr: this.db.sublevel<string, string>("kctr", { valueEncoding: "utf8" }),
      kdel: sub("kdel"),
      auditacct: this.db.sublevel<string, string>("auditacct", { valueEncoding: "utf8" }),
      accts: sub("accts"),
      actr: sub("actr"),
      groups: sub("groups"),
      gctr: sub("gctr"),
      tokens: sub("tokens"),
      prices: sub("prices"),
      audit: sub("audit"),
      ledger: sub("ledger"),
      usage: sub("usage"),
      alerts: sub("alerts"),
      meta: sub("meta"),
    };
  }

  async open(): Promise<void> {
    const db = `${this.#dir}/db`;
    // A reopen decides again; else this waits for the constructor's open, made with this rule.
    if (this.db.status === "closed") this.#fresh = !hasStoreFiles(db);
    try {
      await this.db.open({ createIfMissing: this.#fresh });
    } catch (err: any) {
      if (err?.cause?.code === "LEVEL_LOCKED" || err?.code === "LEVEL_LOCKED") {
        throw new SidecarError("FAILED_PRECONDITION", `data directory in use: ${this.#dir} (another aisa-authz serve holds its lock)`, { cause: err });
      }
      if (!this.#fresh && !storeFiles(db).includes("CURRENT")) {
        throw new SidecarError(
          "FAILED_PRECONDITION",
          `cannot open the LevelDB store ${db}: ${db}/CURRENT is missing while the store's files are there (opening would start an empty store over them). ` +
            `${RESTORE}; if only CURRENT is lost and ${db} holds a MANIFEST-* file, write the name of the newest one followed by a newline into ${db}/CURRENT`,
          { cause: err },
        );
      }
      throw new SidecarError("FAILED_PRECONDITION", `cannot open the LevelDB store ${this.#dir}/db: ${await openFailure(`${this.#dir}/db`, err)}`, { cause: err });
    }
  }

  /**
   * Closes and reopens LevelDB once the load has read what it needs. LevelDB mmaps the table
   * files it reads, and keeps the last 64 of them open (and mapped; see maxOpenFiles in the constructor)
   * until something else evicts them: after the load's scan of every key that is ~64 tables, ~130 MB of
   * file-backed RSS at 1M keys that nothing reads again (Check never reads LevelDB). Reopening
   * drops the table cache; the page cache keeps the pages for whoever reads them next. It runs
   * before anything can write (no Check, Consume or admin call is served yet) and takes a few
   * ms (the log is replayed; it holds only what the load itself wrote). The directory lock is
   * released for that moment: a second serve racing this one for it makes one of the two fail
   * with "data directory in use", as it would have anyway.
   */
  async unmapLoadedTables(): Promise<void> {
    await this.db.close();
    await this.open();
    // Closing the database closed its sublevels; they reopen on their own, but reads on a
    // closed sublevel fail, so wait for them here.
    await Promise.all(Object.values(this.subs).map((s) => s.open()));
  }

  /** Closes LevelDB (if open) and opens it again: the log is replayed and a new one started. */
  async reopen(): Promise<void> {
    if (this.db.status === "open" || this.db.status === "opening") await this.db.close();
    await this.open();
    await Promise.all(Object.values(this.subs).map((s) => s.open()));
  }

  /**
   * Writes pre-encoded root-level ops (codecs.ts toRawOps) in one synced batch. When nothing
   * observes writes (no prewrite hook, no 'write' listener: the engine adds neither) and the
   * database is open, the ops go into one native LevelDB WriteBatch that this disk keeps and
   * reuses (classic-level's chained-batch binding: `batch_put` / `batch_del` per op, then
   * `batch_write`), and no JS op object is read by native code. The array form (`_batch`, what
   * abstract-level's public `batch` ends in) reads `type`, `key` and `value` of every op through
   * Node-API by name: 0.9–1.7 µs per op on the main thread here, against 0.45–0.9 for the chained
   * calls, ~30–70 µs of a 32-Consume batch's ~500–700 µs cycle (bench/levelOps.ts;
   * bench/README.md, "Group commit"). The
   * public path clones every op and re-encodes strings already encoded (~0.7 KB of garbage per
   * Consume: "Consume without GC tails"). Otherwise (observers, a closed database, a
   * classic-level without these internals, a native write still in flight, or a batch of more
   * than NATIVE_BATCH_MAX_OPS ops, whose size the reused batch would keep allocated), the public
   * `batch` or `_batch`.
   */
  writeRaw(ops: RawOp[]): Promise<void> {
    const db = this.db as any;
    if (db.status === "open" && db.hooks.prewrite.noop && db.listenerCount("write") === 0) {
      const n = (this.#native ??= nativeBatchOf(db));
      if (n && !this.#nativeBusy && ops.length <= NATIVE_BATCH_MAX_OPS) {
        const { binding, batch } = n;
        binding.batch_clear(batch);
        for (let i = 0; i < ops.length; i++) {
          const o = ops[i]!;
          if (o.type === "put") binding.batch_put(batch, o.key, o.value);
          else binding.batch_del(batch, o.key);
        }
        this.#nativeBusy = true;
        const written: Promise<void> = binding.batch_write(batch, RAW_SYNC);
        return written.finally(this.#nativeIdle);
      }
      if (typeof db._batch === "function") return db._batch(ops, RAW_SYNC);
    }
    return this.db.batch(ops as any, RAW_SYNC);
  }

  /** The reusable native batch (undefined until the first write; null: this classic-level does not expose one). */
  #native: NativeBatch | null | undefined;
  /** The native batch is being written: a write meanwhile takes the array form (the writer never does this). */
  #nativeBusy = false;
  readonly #nativeIdle = (): void => {
    this.#nativeBusy = false;
  };

  /** The stored text of one record of sublevel `name` (undefined when absent). */
  async rawGet(name: SubName, key: string): Promise<string | undefined> {
    return (await this.db.get(this.subs[name].prefix + key, RAW_SYNC)) ?? undefined;
  }

  /**
   * The stored texts of records of sublevel `name` (undefined where absent), in `keys`' order.
   * When the database is open, straight to classic-level's `_getMany` with the keys prefixed
   * here (what the sublevel's public getMany ends in, after cloning its options and transcoding
   * every key and value; no faster from call to values in bench/levelOps.ts). The caller parses
   * the texts, so a record that does not decode is named (codecs.ts parseRecord) like every other
   * record. Otherwise the public getMany, which raises the error for a database that is not open.
   */
  rawGetMany(name: SubName, keys: readonly string[]): Promise<(string | undefined)[]> {
    const prefix: string = this.subs[name].prefix;
    const prefixed = new Array<string>(keys.length);
    for (let i = 0; i < keys.length; i++) prefixed[i] = prefix + keys[i];
    const db = this.db as any;
    if (db.status === "open" && typeof db._getMany === "function") return db._getMany(prefixed, RAW_READ);
    return this.db.getMany(prefixed, RAW_SYNC as any);
  }

  /** Every record of sublevel `name` as [key, stored text], in key order. */
  async *rawEntries(name: SubName): AsyncIterable<[string, string]> {
    const prefix: string = this.subs[name].prefix;
    // Sublevel prefixes are "!name!": every key of this one sorts below "!name" + ("!" + 1).
    const it = this.db.iterator({ gte: prefix, lt: prefix.slice(0, -1) + String.fromCharCode(prefix.charCodeAt(prefix.length - 1) + 1), ...RAW_SYNC });
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

  /** A value of the `meta` sublevel (JSON), or undefined. */
  async readMeta(name: string): Promise<unknown> {
    const text = await this.rawGet("meta", name);
    if (text === undefined) return undefined;
    try {
      return JSON.parse(text) as unknown;
    } catch (err) {
      throw undecodable("meta", name, err);
    }
  }
}

interface NativeBatch {
  binding: {
    batch_clear(b: unknown): void;
    batch_put(b: unknown, key: string, value: string | undefined): void;
    batch_del(b: unknown, key: string): void;
    batch_write(b: unknown, options: object): Promise<void>;
  };
  batch: unknown;
}

/**
 * A native WriteBatch bound to `db` (a classic-level database), through the binding its chained
 * batch uses, or null when this classic-level does not have those functions or the database's
 * context under the symbol described "context". The batch lives as long as the database object:
 * it holds the database's native context, which a close and reopen keep.
 */
function nativeBatchOf(db: any): NativeBatch | null {
  try {
    const binding = createRequire(createRequire(import.meta.url).resolve("classic-level"))("./binding.js");
    const ctxSym = Object.getOwnPropertySymbols(db).find((s) => s.description === "context");
    if (!ctxSym || typeof binding?.batch_init !== "function" || typeof binding.batch_write !== "function") return null;
    return { binding, batch: binding.batch_init(db[ctxSym]) };
  } catch {
    return null;
  }
}

/**
 * The most ops a write puts into the reused native batch. LevelDB's WriteBatch keeps its buffer's
 * capacity when cleared, so one bulk write (an import, a bulk enable) through it would stay
 * allocated for the process's life; those few large batches take the array form, and the reused
 * buffer stays at most a few MB (Consume batches are ~2 ops per Consume).
 */
export const NATIVE_BATCH_MAX_OPS = 4096;

/** Options of a raw `_getMany` (what abstract-level hands it for utf8 keys and values). */
const RAW_READ = Object.freeze({ keyEncoding: "utf8", valueEncoding: "utf8", fillCache: true });

/** The names in the store's directory (none when it does not exist yet). */
function storeFiles(db: string): string[] {
  try {
    return readdirSync(db);
  } catch {
    return [];
  }
}

/**
 * Whether `db` holds a store's files (a manifest, tables or a log; LOCK and LOG alone are
 * what an open that never got further leaves). Synchronous: Level's constructor needs it.
 */
function hasStoreFiles(db: string): boolean {
  return storeFiles(db).some((f) => f === "CURRENT" || /^MANIFEST-\d+$|\.(ldb|sst|log)$/.test(f));
}
