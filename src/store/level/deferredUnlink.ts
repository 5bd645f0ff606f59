// Obsolete LevelDB files freed off LevelDB's lock (issue 18 item 3: the Consume tail).
//
// LevelDB 1.20 (what classic-level 3 builds) deletes obsolete files — a switched memtable's log,
// the tables a compaction replaced — while it holds its database mutex (DeleteObsoleteFiles),
// and every read the main thread starts (get, getMany) takes that mutex to make the read's
// snapshot (classic-level's workers create it in their constructor, on the main thread). On
// ext4 an unlink frees the file's blocks in the call, so the unlink of a full 64 MB log held the
// mutex, and so the event loop, for 26–35 ms (4 MB: ≤ 5; 16 MB: ≤ 12): every Consume of those
// milliseconds waited (bench/levelStall.ts; bench/README.md, "Obsolete LevelDB files freed off its lock").
//
// So each of LevelDB's .log and .ldb files gets a second name (a hard link) in a directory beside
// the database. LevelDB's unlink then only drops a name; the blocks are freed when this module
// removes the second name, with fs.promises in libuv's thread pool, holding no lock of LevelDB's.
// The sweep (the store's once-a-second maintenance) links the files LevelDB created since the last
// one and removes the second names of those LevelDB deleted, so a deleted file's space comes back
// within a second. (Not an inotify watch: it reports every append to the log as well, a callback
// and a stat per synced batch, 33 ms of 377 in the sidecar's long busy runs under ConsumeBatch.)
// A file LevelDB creates and deletes between two sweeps is LevelDB's to free, as is any file a
// link cannot be made for (another file system, no space for a directory entry).
// The directory holds only extra names: removing it at any time loses no data. A crash leaves it
// behind, and the next open removes it first.
import { link, mkdir, readdir, rm, stat, unlink } from "node:fs/promises";

/** The second names' directory, in the store's data dir beside LevelDB's `db`. */
export const UNLINK_DIR = "db-unlinking";
const FILE = /^\d{6,}\.(log|ldb)$/;

export interface DeferredUnlinkStats {
  /** Files given a second name so far. */
  linked: number;
  /** Second names removed after LevelDB dropped its own (blocks freed here). */
  freed: number;
  /** Second names held now. */
  held: number;
  /** Whether it runs (false: it could not start; LevelDB frees its files itself). */
  active: boolean;
}

export class DeferredUnlink {
  readonly #db: string;
  readonly #grave: string;
  readonly #held = new Set<string>();
  #sweeping = false;
  #stopped = false;
  #linked = 0;
  #freed = 0;

  private constructor(db: string, grave: string) {
    this.#db = db;
    this.#grave = grave;
  }

  /**
   * Starts on LevelDB directory `db` with second names in `grave` (same file system). Removes a
   * `grave` left by a crash first. Never throws: where it cannot run, LevelDB frees as before.
   */
  static async start(db: string, grave: string): Promise<DeferredUnlink> {
    const d = new DeferredUnlink(db, grave);
    try {
      await rm(grave, { recursive: true, force: true });
      await mkdir(grave, { mode: 0o700 });
      // No database directory: nothing to do (stands aside). Else the first sweep, on this listing.
      await d.#sweep(await readdir(db));
    } catch {
      await d.stop();
    }
    return d;
  }

  stats(): DeferredUnlinkStats {
    return { linked: this.#linked, freed: this.#freed, held: this.#held.size, active: !this.#stopped };
  }

  /** Stops, and removes every second name (call after LevelDB is closed: it deletes no more). */
  async stop(): Promise<void> {
    this.#stopped = true;
    this.#held.clear();
    await rm(this.#grave, { recursive: true, force: true }).catch(() => {});
  }

  /** One file of the sweep: link it if it is new, free our name if LevelDB's is gone. */
  async #visit(name: string): Promise<void> {
    if (this.#stopped) return;
    try {
      if (!this.#held.has(name)) {
        try {
          await link(`${this.#db}/${name}`, `${this.#grave}/${name}`);
          this.#linked++;
          this.#held.add(name);
        } catch (err) {
          // EEXIST: linked before. Anything else (gone already: LevelDB was quicker; no space for
          // a directory entry; no links on this file system): this file is LevelDB's to free.
          if ((err as NodeJS.ErrnoException).code === "EEXIST") this.#held.add(name);
        }
        if (this.#stopped) await unlink(`${this.#grave}/${name}`).catch(() => {});
        return;
      }
      const ours = await stat(`${this.#grave}/${name}`).catch(() => null);
      if (ours === null) this.#held.delete(name);
      else if (ours.nlink <= 1) {
        await unlink(`${this.#grave}/${name}`);
        this.#held.delete(name);
        this.#freed++;
      }
    } catch {
      // An unlink that failed: the next sweep tries again.
    }
  }

  /** Links what LevelDB created and frees what it dropped since the last sweep (the store's maintenance calls it once a second). */
  sweep(): Promise<void> {
    return this.#sweep();
  }

  async #sweep(listing?: string[]): Promise<void> {
    if (this.#sweeping || this.#stopped) return;
    this.#sweeping = true;
    try {
      const names = new Set((listing ?? (await readdir(this.#db))).filter((n) => FILE.test(n)));
      for (const n of names) if (!this.#held.has(n)) await this.#visit(n);
      for (const n of [...this.#held]) if (!names.has(n)) await this.#visit(n);
    } catch {
      // The directory is gone (a test removed it, the store closed): the next sweep, or stop().
    } finally {
      this.#sweeping = false;
    }
  }
}
