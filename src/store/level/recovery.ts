// The LevelDB engine's recovery after a failed write (LevelStore.recover runs it under the admin
// lock, so no admin mutation interleaves): reopen LevelDB, probe the disk, reload memory from
// disk, let the writer acknowledge again.
//
// The reopen is not optional. A failed append (ENOSPC part-way through a record) leaves
// LevelDB's log writer torn: its block offset moved on while only part of the record reached
// the file, so every record appended to that log file afterwards sits misaligned and is
// skipped as corrupt when the log is replayed at the next open — acknowledged writes lost,
// until a memtable flush starts a new log file. (A failed sync also sets LevelDB's sticky
// background error.) Closing and reopening replays the log as it is on disk and starts a
// fresh one. Until that succeeded nothing is acknowledged: the writer refuses every write.
//
// Then memory is reloaded from what the reopened store holds, so memory never runs ahead of
// disk (a failed batch may have moved counters in memory, or — a sync that failed after the
// append — be on disk after all): accounts and their counters, groups, tokens, prices, every
// key's projection, counters and refill state; keys no longer on disk leave the index with
// their open reservations. Open reservations of the keys that remain are kept (they are
// memory only, as after a restart they would be gone, but here nothing was restarted).
import type { KeyBook } from "../book/keyBook.js";
import { RAW_SYNC } from "./codecs.js";
import type { LevelDisk } from "./disk.js";
import type { Ledger } from "./ledger.js";
import { reloadFromDisk } from "./load.js";
import type { GroupCommitWriter } from "./writer.js";

export interface RecoveryParts {
  disk: LevelDisk;
  book: KeyBook;
  writer: GroupCommitWriter;
  ledger: Ledger;
  clock: () => number;
  /** Test hook (fault injection): an error here fails the recovery. */
  fault: (() => Error | null) | undefined;
  /** Called in the same synchronous step as the writer's recovered() (the engine serves again). */
  onRecovered: () => void;
}

/** Reopens, probes and reloads; throws when the disk still fails (the caller reports and retries later). */
export async function recoverFromFailedWrite(p: RecoveryParts): Promise<void> {
  const fault = p.fault?.();
  if (fault) throw fault;
  // The ledger filter's start-up scan, if still running, lets go of its iterator first.
  await p.ledger.interruptScan();
  await p.disk.reopen();
  await p.disk.db.batch([{ type: "put", key: p.disk.subs.meta.prefix + "probe", value: String(p.clock()) }] as any, RAW_SYNC);
  for (let attempt = 0; ; attempt++) {
    // A Consume refused while this reload ran may have moved counters: reload again.
    if (attempt === 5) throw new Error("store recovery: memory kept changing during the reload; retrying");
    p.writer.memoryStale = false;
    await reloadFromDisk(p.disk, p.book, p.clock());
    // A reopen may show ledger entries a failed batch wrote after all: forget kept "absent"s.
    p.ledger.forgetAbsent();
    if (!p.writer.memoryStale) break;
  }
  // Synchronously after the last check of memoryStale: nothing moved memory in between.
  p.writer.recovered();
  // An unfinished (interrupted or failed) filter scan resumes on the reopened database.
  void p.ledger.scanLedgerIds();
  p.onRecovered();
}
