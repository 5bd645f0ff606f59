// The ledger archive of the Redis engine (issue 15, item 4): ledger entries older than the
// idempotency window leave Redis for files, which scanLedger (and so reconciliation) still reads.
//
// Layout: <dir>/p-<prefix>/a-<account>/<firstId>_<lastId>.ndjson.gz — one segment per archive
// step of one account's stream, named by the stream ids of its first and last entry; each line
// {"id": <stream id>, "rec": <the ConsumeRecord as scanLedger yields it>}. Names are
// percent-encoded (and "." too: no account id can name "..").
//
// A segment is written to a hidden temp file, fsync'd, renamed into place and the directory
// fsync'd: it is either whole under its name or absent. Only then does the engine trim the
// stream up to its last id (redisStore.ts, archiveLedger), so:
//   - a crash before the rename leaves the entries in the stream (and a temp file the next pass
//     removes): nothing lost;
//   - a crash between the rename and the trim leaves them in both: readers skip stream entries
//     with ids ≤ the newest archived id (and segment entries ≤ one already read), and the next
//     pass trims them first and archives from after that id: nothing twice.
// newest() — the highest last id of the account's segments — is THE mark of what is archived:
// the files are the truth, Redis keeps no copy of it that could disagree.
//
// Compaction (compact(), run by the archiver under the same fleet lock): an account's segments
// that are old enough (their last id a day before the archive's cutoff) and small are merged, a run
// of consecutive ones at a time, into one segment named by the run's first and last id — the
// members' gzip files concatenated (a multi-member gzip reads as their lines in order), to a temp
// file, fsync'd, renamed, the directory fsync'd, and only then the members deleted. The name
// scheme is what makes every step safe: a merged segment's range covers its members', so
//   - readers list segments by first id, the widest first, and skip a segment whose last id is not
//     after the last entry read (a member beside its merged segment is never opened; a reader
//     that finds a listed member deleted meanwhile lists again and goes on after its last entry);
//   - a crash after the rename and before (or during) the deletes leaves members beside their
//     merged segment: read once, and the next compaction deletes every segment another covers.
//
// <dir>/p-<prefix>/archive-id names the archive; the engine keeps the same id in Redis, and a
// sidecar whose directory holds another id (or none, once the fleet has one) does not archive:
// a fleet whose sidecars named different directories would split its ledger among them.
import { randomBytes } from "node:crypto";
import { mkdir, open, readdir, readFile, rename, stat, unlink, type FileHandle } from "node:fs/promises";
import { basename, join } from "node:path";
import { gunzipSync, gzipSync } from "node:zlib";
import type { ConsumeRecord } from "../types.js";
import { cmpId } from "./feed.js";

export interface ArchivedEntry {
  /** The entry's stream id. */
  id: string;
  rec: ConsumeRecord;
}

interface Segment {
  first: string;
  last: string;
  path: string;
}

/** When and how compact() merges (redisStore.ts passes the archiver's). */
export interface CompactOptions {
  /** Only segments whose last id is before this stream id are merged (old enough). */
  before: string;
  /** Merge only when the account has at least this many such segments (small ones). */
  minSegments: number;
  /** A merged segment's size bound (bytes, gzip'd); segments this big or bigger are left alone. */
  maxBytes: number;
  /** Checked before each merge: false (the fleet lock was lost) stops. */
  held?: () => Promise<boolean>;
  /** Tests: called after a merged segment's rename ("renamed") and after each member's delete ("deleted"). */
  fault?: (step: "renamed" | "deleted") => void;
}

const SEGMENT = /^(\d+-\d+)_(\d+-\d+)\.ndjson\.gz$/;

/** A name part: percent-encoded, "." included (so never "." or ".."). */
function part(s: string): string {
  return encodeURIComponent(s).replace(/\./g, "%2E").replace(/\*/g, "%2A");
}

/** The stream id right after `id` (XTRIM MINID keeps it and everything later). */
export function nextStreamId(id: string): string {
  const [ms, seq] = id.split("-");
  return `${ms}-${(BigInt(seq ?? "0") + 1n).toString()}`;
}

/** fsync of a file or a directory (its entries: a rename or unlink in it made durable). */
async function syncPath(path: string): Promise<void> {
  const fh = await open(path, "r");
  try {
    await fh.sync();
  } finally {
    await fh.close();
  }
}

/**
 * Writes `dir/name` so that it is there whole or not at all after a crash: a temp file in the same
 * directory, written and fsynced, renamed to `name`, then the directory fsynced. A failure removes
 * the temp file and throws.
 */
async function writeDurably(dir: string, name: string, write: (fh: FileHandle) => Promise<unknown>): Promise<void> {
  const tmp = join(dir, `.${name}.${randomBytes(4).toString("hex")}.tmp`);
  try {
    const fh = await open(tmp, "wx");
    try {
      await write(fh);
      await fh.sync();
    } finally {
      await fh.close();
    }
    await rename(tmp, join(dir, name));
  } catch (err) {
    await unlink(tmp).catch(() => {});
    throw err;
  }
  await syncPath(dir);
}

/** Deletes a file; one already gone is fine (another compactor, or a crash, took it). */
async function unlinkGone(path: string): Promise<void> {
  await unlink(path).catch((err: NodeJS.ErrnoException) => {
    if (err.code !== "ENOENT") throw err;
  });
}

export class LedgerArchive {
  readonly dir: string;
  readonly #root: string;

  /** `dir`: the archive directory; `prefix`: the engine's key prefix (several fleets can share a dir). */
  constructor(dir: string, prefix: string) {
    this.dir = dir;
    this.#root = join(dir, `p-${part(prefix)}`);
  }

  get #idFile(): string {
    return join(this.#root, "archive-id");
  }

  /** The archive's id (undefined: none written yet). */
  async readId(): Promise<string | undefined> {
    try {
      return (await readFile(this.#idFile, "utf8")).trim() || undefined;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === "ENOENT") return undefined;
      throw err;
    }
  }

  /** Writes the archive's id durably (temp, fsync, rename, directory fsync). */
  async writeId(id: string): Promise<void> {
    await mkdir(this.#root, { recursive: true });
    await writeDurably(this.#root, basename(this.#idFile), (fh) => fh.writeFile(`${id}\n`));
  }

  /** Where the id file is (messages). */
  get idPath(): string {
    return this.#idFile;
  }

  accountDir(account: string): string {
    return join(this.#root, `a-${part(account)}`);
  }

  /** The account's segments, oldest first (none when its directory does not exist). */
  async segments(account: string): Promise<Segment[]> {
    const d = this.accountDir(account);
    let names: string[];
    try {
      names = await readdir(d);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === "ENOENT") return [];
      throw err;
    }
    const out: Segment[] = [];
    for (const n of names) {
      const m = SEGMENT.exec(n);
      if (m) out.push({ first: m[1]!, last: m[2]!, path: join(d, n) });
    }
    // The widest first among those with one first id: a merged segment before its members.
    return out.sort((a, b) => cmpId(a.first, b.first) || cmpId(b.last, a.last));
  }

  /** The newest archived stream id of the account (undefined: nothing archived). */
  async newest(account: string): Promise<string | undefined> {
    let best: string | undefined;
    for (const s of await this.segments(account)) if (best === undefined || cmpId(s.last, best) > 0) best = s.last;
    return best;
  }

  /**
   * Writes one segment (entries in stream order, at least one) durably: temp file, fsync,
   * rename, directory fsync. Resolves with its path once it is on disk under its name; on any
   * failure it is not under its name (the temp file is removed when possible).
   */
  async write(account: string, entries: readonly ArchivedEntry[]): Promise<string> {
    const d = this.accountDir(account);
    await mkdir(d, { recursive: true });
    const name = `${entries[0]!.id}_${entries[entries.length - 1]!.id}.ndjson.gz`;
    const body = gzipSync(entries.map((e) => JSON.stringify({ id: e.id, rec: e.rec })).join("\n") + "\n");
    await writeDurably(d, name, (fh) => fh.writeFile(body));
    return join(d, name);
  }

  /** Removes temp files a crashed pass left (call only while holding the archive lock). */
  async removeTemp(account: string): Promise<void> {
    const d = this.accountDir(account);
    let names: string[];
    try {
      names = await readdir(d);
    } catch {
      return;
    }
    await Promise.all(names.filter((n) => n.startsWith(".") && n.endsWith(".tmp")).map((n) => unlink(join(d, n)).catch(() => {})));
  }

  /**
   * The account's archived entries in stream order, each once (a segment whose entries were all
   * read — a member beside its merged segment — is skipped unopened). A segment deleted after it
   * was listed (a compaction merged it) makes it list again and go on after the last entry read.
   */
  async *read(account: string): AsyncIterable<ArchivedEntry> {
    let last: string | undefined;
    for (let relist = 0; ; relist++) {
      let gone = false;
      for (const s of await this.segments(account)) {
        if (last !== undefined && cmpId(s.last, last) <= 0) continue;
        let bytes: Buffer;
        try {
          bytes = await readFile(s.path);
        } catch (err) {
          if ((err as NodeJS.ErrnoException).code !== "ENOENT" || relist >= 100) throw err;
          gone = true;
          break;
        }
        for (const line of gunzipSync(bytes).toString("utf8").split("\n")) {
          if (!line) continue;
          const e = JSON.parse(line) as ArchivedEntry;
          if (last !== undefined && cmpId(e.id, last) <= 0) continue;
          last = e.id;
          yield e;
        }
      }
      if (!gone) return;
    }
  }

  /**
   * Merges the account's old, small segments (see the top of this file), when it has at least
   * `minSegments` of them; first deletes every segment another one covers (a crashed compaction's
   * members). Call only while holding the archive lock. Resolves with the segments merged and
   * the files deleted.
   */
  async compact(account: string, o: CompactOptions): Promise<{ merged: number; deleted: number }> {
    const d = this.accountDir(account);
    let deleted = 0;
    let segs = await this.segments(account);
    // Members a crashed compaction left beside their merged segment: the merged one made durable
    // again (file and directory) before any member goes.
    // (Listed by first id, the widest first: a segment is covered when one listed before it ends at or after it.)
    const covered: Segment[] = [];
    let reach: string | undefined;
    for (const s of segs) {
      if (reach !== undefined && cmpId(s.last, reach) <= 0) covered.push(s);
      else reach = s.last;
    }
    if (covered.length > 0) {
      for (const m of segs) if (!covered.includes(m)) await syncPath(m.path);
      await syncPath(d);
      for (const s of covered) {
        await unlinkGone(s.path);
        deleted++;
      }
      await syncPath(d);
      segs = segs.filter((s) => !covered.includes(s));
    }
    // By name first (a listing the archiver reads anyway): sizes only when there are enough.
    if (segs.filter((s) => cmpId(s.last, o.before) < 0).length < o.minSegments) return { merged: 0, deleted };
    const sized = await Promise.all(segs.map(async (s) => ({ ...s, bytes: (await stat(s.path)).size })));
    const old = sized.map((s) => cmpId(s.last, o.before) < 0 && s.bytes < o.maxBytes);
    if (old.filter(Boolean).length < o.minSegments) return { merged: 0, deleted };
    // Runs of consecutive old, small segments, each within maxBytes.
    const runs: (typeof sized)[] = [];
    let run: typeof sized = [];
    let bytes = 0;
    sized.forEach((s, i) => {
      if (!old[i] || bytes + s.bytes > o.maxBytes) {
        if (run.length > 1) runs.push(run);
        run = [];
        bytes = 0;
      }
      if (old[i]) {
        run.push(s);
        bytes += s.bytes;
      }
    });
    if (run.length > 1) runs.push(run);
    let merged = 0;
    for (const r of runs) {
      if (o.held && !(await o.held())) break;
      const name = `${r[0]!.first}_${r[r.length - 1]!.last}.ndjson.gz`;
      await writeDurably(d, name, async (fh) => {
        for (const s of r) await fh.write(await readFile(s.path));
      });
      o.fault?.("renamed");
      for (const s of r) {
        await unlinkGone(s.path);
        deleted++;
        o.fault?.("deleted");
      }
      await syncPath(d);
      merged += r.length;
    }
    return { merged, deleted };
  }
}
