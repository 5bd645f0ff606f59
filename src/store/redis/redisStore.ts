// The fleet engine: many sidecars share keys, quotas and balances on Redis 7 (issue 15).
//
// Each sidecar keeps a KeyBook in memory (store/book/): every read (lookup, getAccount,
// listGroups, getPrice, resolveConsumeTarget …) is synchronous from it, exactly as with LevelDB.
// Redis is the authority for money and state: the scripts (scripts.ts) do on the server only what
// must be atomic there, with limits the book and policy/admit.ts computed; every rule stays in
// TypeScript. After a commit the store applies the ABSOLUTE values Redis returned to its own book
// (with the same apply step the change feed uses, book/applyChange.ts); other sidecars get them
// from the change feed (feed.ts).
//
// ## Layout (P = the prefix; a hash tag {…} names the slot)
//   P{a:<account>}:h     HASH  the account and its keys, everything one Check/Consume moves:
//                              rec (AccountRecord JSON), cr / ch (credited / charged; balance = cr − ch),
//                              held (units its open reservations hold), sq (the account's sequence:
//                              +1 on every commit that moves its or its keys' counters); per key K:
//                              k:K (KeyRecord JSON), v:K (record version, +1 on every record write),
//                              x:K (state the server re-checks: -1 disabled, else expiresAt or 0),
//                              r:K u:K c:K (remaining, used, credited), l:K (lastUsedAt), f:K (refilledAt),
//                              h:K o:K (units held, reservations open), d:K (tombstone JSON once deleted)
//   P{a:<account>}:p     HASH  keyId → the key's hot projection (store/keyProjection.ts): what a load reads
//   P{a:<account>}:rsv   ZSET  open reservation id → expiry (ms): the lazy sweep's index
//   P{a:<account>}:rd    HASH  open reservation id → "keyId|units"
//   P{a:<account>}:rw:K  HASH  the key's rate window: r<sec> requests, t<sec> tokens (rpm/tpm keys only)
//   P{a:<account>}:i:<requestId>  STRING idempotency record: the id of its ledger entry (expires after the window)
//   P{a:<account>}:led   STREAM the ledger: every entry with its full record, until archived past the window
//   P{a:<account>}:gob   ZSET  the outbox: group budget charges its Consumes owe (groupCharge.ts; member
//                              JSON [requestId, group, units, at, reservationId], score = the request's time)
//   P{gb:<group>}:b / :h / :d  a group budget (spent, since, held, rs: when spent last started from
//                              nothing), its holds' expiries, holds' units
//   P{gb:<group>}:ap     ZSET  request id → expiry: the charges applied (GROUP_MARK_MS, 1 h)
//   P{g}:meta accts groups tokens prices kdel   global tables (HASH / SET); kdel: keyId → tombstone
//   P{g}:rq:<requestId>  STRING the account of a charged request id (findConsume), expires with the window
//   P{g}:gkv             HASH  group → its key-entry version: +1 whenever a key enters the group (insert,
//                              import, move), so deleteGroup's CAS fails when one did after its check
//   P{g}:archlock        STRING the ledger archiver's lock (a token; archiveLedger); the archive's id is
//                              P{g}:meta field ledgerArchiveId
//   P{g}:gclock          STRING the group-charge recovery's lock (a token; recoverGroupCharges)
//   P{g}:audit HASH id → entry; P{g}:auditz (all) and P{g}:audita:<account> ZSETs of ids (lex order)
//   P{g}:feed            STREAM the change feed (feed.ts), MAXLEN ~ feedMaxLen
//   P{u}:b:<gran>|<dim>|<id>|<start> HASH writer → bucket JSON; P{u}:t:<gran>|<dim> and
//   P{u}:a:<gran>|<dim>|<account> ZSETs (score start) — usage buckets, summed over writers on read.
//
// ## Scripts (scripts.ts) and what each guarantees
//   BATCH    the Checks (reserve), Consumes (consume) and releases of one event-loop turn in ONE call
//            (see "Batching"); reserve and consume are local Lua functions, each rule once:
//   reserve  sweeps the account's expired reservations, re-checks the key's record
//            version and state (a disable, delete, rotation or expiry through any sidecar bumps or
//            changes it → KEY_INVALID and this sidecar re-reads the key), then balance − held, quota −
//            held, open < concurrency, requests / tokens in the last minute < rpm / tpm, and holds on
//            all of them. Concurrent reservations from any sidecar never together exceed a limit.
//   consume  exactly once per request id (the idempotency record is the ledger entry; a replay from
//            any sidecar returns the first record), refuses a charge past 2^53 − 1 (the embedded
//            engine's guard: book/charge.ts names the counter), settles the reservation, charges key
//            and account, appends the ledger entry and publishes the absolute counters.
//   GROUP    a group budget lives on its own slot: Check holds there FIRST, then the account's
//            reserve; if the account refuses, the group hold is released (never over-admitted; a
//            crash between leaves a hold that expires with its TTL). Consume charges the budget after
//            the account's consume, never under-counted by a crash between (groupCharge.ts has the
//            rule): the account's consume writes the debt into the account's outbox (gob) in the
//            same script; the GROUP 'charge' applies it once per request id (the ap mark) and drops
//            the request's hold; the entry then leaves the outbox with the account's next BATCH (an
//            O item) or the maintenance step's. A sidecar that died between (or a group call that
//            failed) leaves the entry: recoverGroupCharges, from every sidecar's maintenance step
//            (refill, every GROUP_RECOVERY_EVERY_MS; a full pass after open, a reload or an outage),
//            under the fleet lock gclock, applies entries older than the grace (5 s) through the same
//            charge. A charge whose period was reset since the request (rs > its time) or whose
//            budget is gone adds nothing. Applied twice (normal path + recovery, or a replay): once,
//            unless the mark expired first (the whole fleet down > 1 h in that window: over, never
//            under). The same two phases on a single Redis and on a cluster (one code path).
//   CAS      admin compare-and-set: the caller's pure change is applied in TS to the records read
//            with their versions; the script writes only if every version is still the one read
//            (else the store re-reads and retries), with the audit entry and the feed entry.
//   REFILL   a key's refill for a named period start (idempotent: several sidecars may run it).
//   RELEASE  one reservation, or a sweep of an account's expired ones (releaseExpired).
// Start-up / reload uses no script: per chunk of an account's keys, HSCAN of its projections (P…:p)
// and one HMGET of those keys' counters and versions (#load; plain commands cost Redis ~2.4× less
// CPU than the Lua script that did both before: bench/README.md).
// Round trips: Check and Consume share one BATCH call per event-loop turn (per account on a
// cluster), at most 1 each and < 1 under load (+1 with a group budget: the group's hold or charge
// is its own call — the outbox entry rides in the Consume's item and its removal in a later batch,
// no call of their own; +2 concurrent ones per Consume on a cluster: the request-id pointer and the
// feed entry); findConsume 1 on a miss, 2 on a hit. Admin changes: one read and one CAS (more after
// a conflict). The group-charge recovery: 1 SET NX per sidecar every 2 s; the lock's holder reads
// up to 200 accounts' outboxes (50 concurrent calls at a time), and 2 calls per entry it applies.
//
// ## Batching
//   reserve() and consume() queue an item (kind, keys, arguments) per route — one queue on a single
//   Redis, one per account hash tag on a cluster (one slot) — and the queue goes out as ONE EVALSHA
//   of BATCH at the end of the turn (setImmediate) or at once when it holds BATCH_MAX (64) items.
//   The script runs the items in order, each exactly as if it ran alone after the ones before it:
//   each gets its own reply, a refusal of one never touches another, the same request id twice is
//   charged once (the second item finds the first's idempotency record). O items (an outbox
//   removal after a group charge) are appended to an account's next item of any kind. KEYS are the items' keys,
//   once each. A Check therefore waits at most one event-loop turn before it is sent. A batch has one
//   deadline (one call); past it every item fails with StoreUnavailableError and each failed Check's
//   release goes out in the next batch on the same connection (after the batch on Redis). The group
//   budget's two phases stay their own calls (the account's reserve then joins a batch).
//
// ## Leases (budget slices; lease.ts, scripts.ts lease / shrink / reserveq; --redis-lease-ms, 0 = off)
//   Why: with every Check a reserve on Redis, redis-server's own CPU per Check (Lua + the AOF
//   write of every hold) caps one sidecar well below the embedded Check rate on a shared machine.
//   A lease of sidecar S on key K is a hold like a reservation (id "L:<S>:<K>" in rd / rsv, with a
//   server-side expiry, TTL leaseMs): it holds `hold` units of K's quota (h:K) and of the account's
//   balance (held), which every other sidecar's reserve already subtracts; P{a:<account>}:ls
//   (lid → expiry) lists the account's live leases. Grant, renew and return are one BATCH item
//   (G: lease()), a Consume of a lease-backed reservation one more (S: shrink(), just before its
//   C item), so they share the turn's round trip.
//   Local admission: a Check of a key with no rpm / tpm / concurrency limit and no group budget is
//   admitted from its lease without any Redis call when the lease is live, has room (total − open
//   local reservations ≥ units) and is valid on this sidecar's clock (validUntil = send time of
//   the grant/renew + TTL − margin: it stops before Redis can drop it; clocks of the fleet must
//   agree within the margin). Status, expiry and deletion are still the book's + policy's, as
//   ever. The local invariant "Redis holds ≥ what the sidecar counts on" is argued in lease.ts.
//   Sizing: a key gets a lease after GRANT_AFTER_CHECKS pass-through Checks in a window of TTL/2;
//   the slice asked for is the units its Checks took in the last window or two (≈ rate × TTL),
//   granted up to (available − kept) / (2 × live lessees of the account) of both quota and
//   balance; below a few requests' worth: no slice (the key stays pass-through: today's path).
//   Renewal: the scheduler's leases step (every TTL/4) renews a live lease at TTL/2 while its key
//   is used (top-up to the recent rate), returns it otherwise; a lease that is off keeps holding
//   its open local reservations until they settle or expire.
//   Consume: charges exactly as before (same idempotency, ledger, sequence); the shrink item
//   lowers the lease's hold by the reservation's units. A lease-backed reservation consumed
//   through ANOTHER sidecar: Redis settles nothing, so that sidecar publishes the reservation id
//   on the feed (rs) and its opener shrinks its lease. Release: the units go back to the slice.
//   Exactness near exhaustion: a pass-through reserve (Q: reserveq) that Redis refuses for money
//   while a live lease of the account (balance) or of the key (quota) may hold the units sets the
//   account's recall mark (lrc, for one TTL) and says so: the Check is retried (every 5–15 ms)
//   until admitted, refused with no lease left, or one TTL (+ 2 margins) has passed; while the
//   mark lasts no lease grows, every lease reply carries it and its holder returns the unused part
//   at once; a lessee that does not answer loses its slice at its expiry (≤ TTL). So the refusal
//   that stands is one with every unit charged or held by an admitted reservation (the race
//   tests: exactly 100 of a quota of 100, 50 of a balance of 50, with leases on).
//   Admin key changes (disable, delete, rotate, expiry, quota: anything that bumps the key's
//   version): the CAS commits as before; the lessee's next lease call finds the version changed
//   and Redis drops the lease. The admin call itself returns only once every OTHER sidecar with a
//   live lease of a changed key (read from ls) has stopped using it: it wrote P{g}:ack:<sid> ≥ the
//   change's feed id (each sidecar writes it, once per turn, after applying feed entries while it
//   has leases; applying a change to a leased key turns the lease off first), or the lease's expiry
//   on Redis has passed. Bounded by the TTL (a stalled or dead lessee). Own leases go off at once.
//   Failures: once Redis is marked down (a call past its deadline, then a failed PING: health
//   NOT_SERVING) every Check fails closed, leased ones too; before that a lease is used at most
//   until its local expiry. A dead sidecar's leases expire on Redis after the TTL (its open
//   reservations die with it, as before); close() returns the unused parts.
//   Not leased: keys with rpm / tpm / concurrency limits (their windows and open counts live on
//   Redis) and keys in a group with a budget (the budget's hold is its own slot): pass-through.
//
// ## Counter sequence
//   A sidecar applies absolute counters from two connections: its own script replies and the
//   change feed. A reply may arrive after a feed entry of a later commit; applied last, it would
//   leave the book's remaining or balance stale until the next change. So every script that moves
//   an account's or its keys' counters bumps sq in the account's hash (consume, REFILL, CAS when it
//   reports counters) and returns it with them (reserve returns the one it read; it moves none);
//   kc lines and ac carry it in replies and feed entries, and the book applies none older than the
//   last it applied for that account (account counters) or key (key counters): book/applyChange.ts.
//   A reload forgets the sequences (a Redis restored from an older state counts from lower again)
//   and takes the ones it reads with the counters (HMGET of sq with an account's counters and with
//   each chunk's key counters): a reply or feed entry older than the reloaded state is dropped.
// Expired reservations come back without any sidecar's help: every reserve and consume of the
// account sweeps first (by expiry score; once per account in a batch unless time moved on), and
// releaseExpired sweeps accounts round robin.
//
// ## Cluster caveats (redis-cluster://)
//   Every script touches one slot. On a single Redis a mutation's account part, its audit entry
//   and its feed entry commit in one script; on a cluster they are separate calls, in that order:
//   the account part (with the version checks) first, then the global part; a crash between loses
//   the audit / feed entry of a committed change (a sidecar's resync repairs its book), and
//   feed entries of two sidecars' commits may arrive in the other order than the commits (their
//   counters carry the account's sequence: the older ones are dropped; records are per commit). updateKeys / deleteKeys over keys of several
//   accounts are all-or-none per account only on a cluster (all-or-none overall on one Redis); a
//   check of a later part (e.g. "the group exists" on {g}) cannot undo an earlier part, so on a
//   cluster such checks are the book's alone.
//
// ## Failures
//   Every call has a deadline (callTimeoutMs, 50 ms; one timer in conn.ts for all calls with it,
//   armed for the oldest): past it, or with the connection down (no
//   offline queue), the call fails with StoreUnavailableError, health goes NOT_SERVING and a probe
//   (PING every 50 ms) brings it back: scripts reloaded, the book reloaded if the feed cannot catch
//   it up (a gap, or a Redis that came back with less than this sidecar saw). A reserve that timed
//   out may still have held on Redis: the release sent after it (next batch, same connection)
//   drops it, or its TTL does when Redis is unreachable. A Consume that timed out may
//   have committed: the client's retry with the same request id gets the first record.
//   open() waits for an unreachable Redis (node-redis retries; each failure goes to onError) until
//   it connects or close() is called.
//
// ## Persistence
//   What an acknowledged Consume survives is Redis's setting: appendonly yes + appendfsync always
//   (the tests' setting, and the documented default) loses none on a crash of redis-server;
//   everysec may lose the last second; no AOF (RDB only) loses everything since the last
//   snapshot. With replicas, an acknowledged write is on the replica only after WAIT.
//
// ## Ledger past the idempotency window
//   Idempotency records (i:, rq:) expire after idempotencyWindowMs (7 days): a replay older than
//   the window is charged again, and findConsume reads only the window. The ledger is kept whole:
//   with an archive directory (ledgerArchive; ledgerArchive.ts has the file format and the crash
//   argument) CONSUME trims nothing, and archiveLedger(), run once a minute by every sidecar's
//   scheduler, takes the fleet-wide lock (P{g}:archlock: SET NX PX with a token, renewed before
//   each segment, released by compare), checks that its directory is the fleet's (the archive-id
//   file equals P{g}:meta ledgerArchiveId, which the first pass sets), reads each account's entries
//   older than the window + 1 s on Redis's clock (their idempotency records have expired; the
//   cutoff moves in steps of an hour at most), writes them as a segment (temp,
//   fsync, rename, directory fsync) and only then trims the stream up to the segment's last id
//   (XTRIM MINID, exact). scanLedger reads the segments, then the stream after the newest archived
//   id, so a pass that stopped between rename and trim shows nothing twice, and the next pass trims
//   those first. A segment that cannot be written trims nothing (the pass fails with a line naming
//   the directory): Redis memory grows while the archive is broken, the ledger loses nothing.
//   Redis memory per Consume is bounded by one window of entries as long as a pass can write.
//   After each account's archiving, under the same lock, its old segments are compacted
//   (ledgerArchive.ts compact(): merged into fewer files, crash-safe by their names).
//   Without an archive directory (--ledger-archive off) CONSUME trims the stream by MINID at the
//   window's age on Redis's clock (TIME, not the caller's) on every append, and older entries are dropped.
import { randomBytes } from "node:crypto";
import { setFlagsFromString } from "node:v8";
import { runInNewContext } from "node:vm";
import type { AccountRecord, AccountState, AuditRecord, GroupBudgetCounters, GroupRecord, KeyRecord, KeyState, PriceRecord, TokenRecord } from "../../domain/types.js";
import { DEFAULT_ACCOUNT, DEFAULT_GROUP } from "../../domain/types.js";
import { alreadyExists, failedPrecondition, invalid, notFound, SidecarError, StoreUnavailableError } from "../../domain/errors.js";
import { addExact } from "../../domain/units.js";
import { admit } from "../../policy/admit.js";
import { KeyBook, type DeletedKey, type KeyCounterValues } from "../book/keyBook.js";
import { checkMarkId } from "../alertMarkId.js";
import { RedisKeys } from "./keys.js";
import type { HotIndex } from "../book/hotIndex.js";
import { applyChanges } from "../book/applyChange.js";
import { consumeRecord, deletedRef, refuseInexactCharge, resolveConsumeTarget } from "../book/charge.js";
import { keyIdsByCreation } from "../book/keyOrder.js";
import { reservationKeyId } from "../book/reservations.js";
import type { AccountCounterValues } from "../book/tables.js";
import { decodeProjection, encodeProjection } from "../keyProjection.js";
import { auditRecordOf } from "../level/audit.js";
import type {
  AuditInput,
  BookChange,
  ConsumeInput,
  ConsumeRecord,
  ConsumeTarget,
  FeedAccountCounters,
  FeedKeyCounters,
  GroupWithCount,
  HotSnapshot,
  KeyChange,
  KeyIndexView,
  KeyRef,
  ListAuditQuery,
  ReserveRequest,
  ReserveResult,
  Store,
  StoreHealth,
  UsageBucket,
  UsageCounters,
  UsageQueryRange,
} from "../types.js";
import { RedisConn, script } from "./conn.js";
import { LedgerArchive, nextStreamId, type ArchivedEntry } from "./ledgerArchive.js";
import { RedisFeed, cmpId, hashPairs, parseAccountCounters, parseKeyCounters } from "./feed.js";
import { BATCH, CAS, FIND, GROUP, REFILL, RELEASE } from "./scripts.js";
import { DEFAULT_LEASE_MARGIN_MS, GRANT_AFTER_CHECKS, Lease, LEASED_TAG, newLeaseStats, type LeaseStats } from "./lease.js";
import {
  CHARGE,
  decodeGroupCharge,
  encodeGroupCharge,
  GROUP_MARK_MS,
  GROUP_RECOVERY_ACCOUNTS,
  GROUP_RECOVERY_BATCH,
  GROUP_RECOVERY_EVERY_MS,
  GROUP_RECOVERY_GRACE_MS,
  groupChargeOf,
  type GroupCharge,
} from "./groupCharge.js";

export interface RedisStoreOptions {
  /** redis://[user:pass@]host:port[/db], rediss://…, or redis-cluster://h1:p1,h2:p2 */
  url: string;
  /** Key namespace (tests; several fleets on one Redis). No braces. */
  prefix?: string;
  clock: () => number;
  onError?: (err: unknown) => void;
  /** Per-call deadline: a call past it fails with StoreUnavailableError (default 50 ms). */
  callTimeoutMs?: number;
  /** Open reservations the book caches at most (KeyBook). */
  maxReservations?: number;
  /** How long a Consume's idempotency record (and ledger entry) stays in Redis (default 7 days). */
  idempotencyWindowMs?: number;
  /** The change feed's cap (XADD MAXLEN ~), default 100 000 entries. */
  feedMaxLen?: number;
  /**
   * The ledger archive's directory (ledgerArchive.ts): ledger entries older than the window are
   * moved there by archiveLedger() and scanLedger reads them back. Every sidecar of a fleet must
   * name the same (shared) directory. Unset: the stream is trimmed past the window on append and
   * older entries are dropped.
   */
  ledgerArchive?: string;
  /** Tests: called at a step of the archive pass; a throw there is a crash at that step. */
  archiveFault?: (step: "renamed") => void;
  /**
   * The archive's compaction (ledgerArchive.ts compact(), run by archiveLedger per account):
   * segments older than ageMs (default a day) on the archive's cutoff are merged when an account
   * has at least minSegments (default 24) of them, up to maxBytes (default 2 MiB) per merged one.
   */
  ledgerCompaction?: { ageMs?: number; minSegments?: number; maxBytes?: number; fault?: (step: "renamed" | "deleted") => void };
  /** deleteGroup's scan of every key record on Redis: its overall deadline (default 5000 ms). */
  groupScanDeadlineMs?: number;
  /**
   * The group-charge recovery pass (groupCharge.ts) applies outbox entries older than this
   * (default 5000 ms: well above a Consume's second call).
   */
  groupRecoveryGraceMs?: number;
  /**
   * Tests only: awaited by a Consume between the account's charge and its group budget's charge
   * (with the request id); a throw there is the sidecar dying in that window. Unset, the
   * environment's AISA_TEST_GROUP_CHARGE_PAUSE_MS (a whole number of ms > 0) pauses there instead:
   * the process tests SIGKILL a sidecar in the window with it. Never set it in production.
   */
  groupChargeHook?: (requestId: string) => Promise<void> | void;
  /**
   * Tests: called during a load between a chunk's two reads (the projections' HSCAN and the
   * counters' HMGET) with the chunk's account and key ids; a commit made here lands between them.
   */
  loadStep?: (account: string, ids: readonly string[]) => Promise<void> | void;
  /**
   * Budget-slice leases (lease.ts; "Leases" above): a lease's TTL on Redis in ms. 0 or unset: off
   * (every Check is a reserve item of the turn's BATCH). Every sidecar of a fleet should use the same.
   */
  leaseMs?: number;
  /** How much earlier than Redis a sidecar stops using its lease (default min(250, leaseMs / 4)). */
  leaseMarginMs?: number;
}

/**
 * The archive lock: KEYS lock; ARGV token, ms. Only the holder of `token` renews it (ms > 0) or
 * releases it (ms = 0). 1 when it did, 0 when the lock is not (or no longer) its own.
 */
const ARCHIVE_LOCK = `if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
if ARGV[2] == '0' then return redis.call('DEL', KEYS[1]) end
return redis.call('PEXPIRE', KEYS[1], ARGV[2])`;

const SCRIPTS = { archiveLock: script(ARCHIVE_LOCK), cas: script(CAS), batch: script(BATCH), release: script(RELEASE), group: script(GROUP), refill: script(REFILL), find: script(FIND) };
const DAY = 86_400_000;
/** The group-charge recovery's fleet lock (P{g}:gclock, the ARCHIVE_LOCK script renews and releases it). */
const GROUP_LOCK_MS = 30_000;

/** The test-only pause of AISA_TEST_GROUP_CHARGE_PAUSE_MS (RedisStoreOptions.groupChargeHook); undefined when unset. */
function testGroupChargePause(env: string | undefined): ((requestId: string) => Promise<void>) | undefined {
  if (env === undefined || env === "") return undefined;
  const ms = Number(env);
  if (!Number.isSafeInteger(ms) || ms <= 0) throw new TypeError(`AISA_TEST_GROUP_CHARGE_PAUSE_MS: a whole number of milliseconds > 0 (a test hook), not ${JSON.stringify(env)}`);
  return () => new Promise((r) => setTimeout(r, ms));
}
/** The archive lock's lease (renewed before each segment), and the most entries in one segment. */
const ARCHIVE_LOCK_MS = 60_000;
const SEGMENT_ENTRIES = 10_000;
/**
 * An entry is archived once it is this much older than the window: its idempotency record (set
 * in the same script, expiring after the window on the same Redis clock) has certainly expired,
 * so CONSUME never finds a record whose entry has left the stream.
 */
const ARCHIVE_MARGIN_MS = 1000;
/**
 * The archive cutoff moves in steps of this (at most the window): a pass writes at most one
 * segment per account per step (fewer, larger files), at the price of up to one step of entries
 * more in Redis.
 */
const ARCHIVE_STEP_MS = 3_600_000;
/** Compaction: merge an account's segments a day old once it has this many, into files of at most this size (gzip'd). */
const COMPACT_MIN_SEGMENTS = 24;
const COMPACT_MAX_BYTES = 2 << 20;
/**
 * Keys per load chunk (HSCAN COUNT), and chunks in flight during a load (bench/fleetStart.ts;
 * bench/README.md): a chunk's replies in flight outlive young-generation collections and are
 * promoted (1M keys: ~345 MB promoted with 4 in flight, 500–680 MB with 8), for no faster load.
 */
const LOAD_COUNT = "1000";
const LOAD_WINDOW = 4;
/** A key's fields a load reads from its account's hash (prefixes of `<field>:<keyId>`): remaining, used, credited, lastUsedAt, refilledAt, version. */
const LOAD_FIELDS = ["r:", "u:", "c:", "l:", "f:", "v:"] as const;
/** Keys from which the first load is followed by a full garbage collection (collectLoadGarbage). */
const COLLECT_AFTER_LOAD_KEYS = 100_000;
/** Admin compare-and-set attempts before giving up (ABORTED). */
const CAS_ATTEMPTS = 8;

type Check = [number, string, 0] | [number, string, 1, string] | [number, string, 2];

/** One compare-and-set batch (the CAS script's argument), keys by index. */
class Batch {
  readonly keys: string[] = [];
  readonly checks: Check[] = [];
  /** Per check: the error its failure means (undefined: a concurrent change, retry). */
  readonly fails: ((() => Error) | undefined)[] = [];
  readonly ops: string[][] = [];
  #index = new Map<string, number>();
  k(key: string): number {
    let i = this.#index.get(key);
    if (i === undefined) {
      this.keys.push(key);
      i = this.keys.length;
      this.#index.set(key, i);
    }
    return i;
  }
  absent(key: string, field: string, fail?: () => Error): void {
    this.checks.push([this.k(key), field, 0]);
    this.fails.push(fail);
  }
  equals(key: string, field: string, value: string): void {
    this.checks.push([this.k(key), field, 1, value]);
    this.fails.push(undefined);
  }
  present(key: string, field: string, fail?: () => Error): void {
    this.checks.push([this.k(key), field, 2]);
    this.fails.push(fail);
  }
  op(cmd: string, key: string, ...args: (string | number)[]): void {
    this.ops.push([cmd, String(this.k(key)), ...args.map(String)]);
  }
}

/**
 * One full garbage collection after the first load, before the store serves. The load's replies
 * (two plain commands a chunk: a string per field, bench/README.md) are short-lived, but those in
 * flight outlive young-generation collections and are promoted, so the old generation ends the
 * load at a few times its live size, and V8 keeps those pages: at 1M keys ~30 MB of RSS that one
 * collection returns within a second (RSS 309 → 279 MB in-process). A one-off pause of tens of ms
 * before anything is served, only after a load of COLLECT_AFTER_LOAD_KEYS keys or more; reloads
 * (while serving) do not do it. `gc` is exposed for this call only (V8's flag, read by a new
 * context).
 */
function collectLoadGarbage(): void {
  try {
    setFlagsFromString("--expose-gc");
    const gc = runInNewContext("gc") as () => void;
    setFlagsFromString("--no-expose-gc");
    gc();
  } catch {
    // Not available (another runtime): the memory is returned by V8's own schedule instead.
  }
}

/**
 * One item of a BATCH call (scripts.ts): its kind, its keys (false: none) and arguments, and the
 * handlers of its own reply. Items of one event-loop turn go to Redis together.
 */
interface BatchItem {
  kind: "R" | "C" | "L" | "Q" | "G" | "S" | "O";
  keys: readonly (string | false)[];
  args: readonly string[];
  resolve: (reply: any) => void;
  reject: (err: unknown) => void;
}

/** Items per BATCH call at most: a fuller queue is sent at once, without waiting for the turn's end. */
export const BATCH_MAX = 64;

/** An account's key names the hot path uses (built once per account, not per call). */
interface AccountKeys {
  h: string;
  rsv: string;
  rd: string;
  led: string;
}

/** The hash tag of a key ("{a:x}"), the slot family it lives on. */
function tagOf(key: string): string {
  const i = key.indexOf("{");
  return i < 0 ? key : key.slice(i, key.indexOf("}", i) + 1);
}

interface CommitResult {
  /** The commit's feed entry (undefined: none was written). */
  feedId?: string;
  keyCounters: Map<string, FeedKeyCounters>;
  account: FeedAccountCounters | undefined;
  changes: BookChange[];
}

/** A check failed: `fail` is what it means, or undefined (a concurrent change: retry). */
interface Refused {
  refused: true;
  fail: (() => Error) | undefined;
}

interface Commit {
  /** BookChanges of the batch (a key change's counters are replaced by the engine's). */
  changes: BookChange[];
  versions?: Record<string, number>;
  /** Attach these keys' absolute counters (each with its account's hash). */
  keyCounters?: { h: string; id: string }[];
  /** Attach this account's absolute counters. */
  account?: { h: string; id: string };
}

export function keyState(r: KeyRecord): string {
  return r.status !== "enabled" ? "-1" : String(r.expiresAt ?? 0);
}

export function sumCounters(into: UsageCounters, c: UsageCounters): void {
  into.requests += c.requests;
  into.denied += c.denied;
  for (const [r, n] of Object.entries(c.denies)) into.denies[r] = (into.denies[r] ?? 0) + n;
  into.inputTokens += c.inputTokens;
  into.outputTokens += c.outputTokens;
  into.units += c.units;
  into.consumed += c.consumed;
  for (const f of ["cacheReadTokens", "cacheWriteTokens", "reasoningTokens"] as const) if (c[f]) into[f] = (into[f] ?? 0) + c[f]!;
}

export class RedisStore implements Store {
  readonly book: KeyBook;
  readonly changes: RedisFeed;
  /** This store instance (a sidecar incarnation): tags its feed entries and its usage fields. */
  readonly sid = randomBytes(8).toString("hex");
  readonly #p: string;
  readonly #keys: RedisKeys;
  readonly #clock: () => number;
  readonly #onError: (err: unknown) => void;
  readonly #window: number;
  readonly #feedMax: string;
  readonly #archive: LedgerArchive | undefined;
  readonly #archiveFault: ((step: "renamed") => void) | undefined;
  readonly #compaction: NonNullable<RedisStoreOptions["ledgerCompaction"]>;
  readonly #groupScanMs: number;
  readonly #groupGraceMs: number;
  readonly #groupChargeHook: ((requestId: string) => Promise<void> | void) | undefined;
  /** Per account: outbox entries whose group charge was applied, to leave the outbox with its next batch. */
  readonly #outboxDone = new Map<string, string[]>();
  /** The group-charge recovery: the last periodic pass, one at a time, the next account (round robin), a full pass wanted (open, reload). */
  #groupPassAt = -Infinity;
  #groupPass: Promise<number | undefined> | undefined;
  #groupCursor = 0;
  #groupIds: string[] = [];
  #groupPassAll = true;
  readonly #loadStep: ((account: string, ids: readonly string[]) => Promise<void> | void) | undefined;
  readonly #conn: RedisConn;
  /** Record versions other than 1 (most keys never change: the map stays small). */
  readonly #ver = new Map<string, number>();
  #health: StoreHealth = "NOT_SERVING";
  readonly #timeoutMs: number;
  /** A deadline was missed and a PING is out to tell a blip from an outage. */
  #suspecting = false;
  readonly #healthListeners: ((h: StoreHealth) => void)[] = [];
  #opened = false;
  #closed = false;
  #down = false;
  #recovering: Promise<void> | undefined;
  #unsubscribe: (() => void) | undefined;
  #auditSeq = 0;
  #sweepCursor = 0;
  #sweepIds: string[] = [];
  readonly #consumeInflight = new Map<string, Promise<{ record: ConsumeRecord; replayed: boolean }>>();
  #reloading: Promise<void> | undefined;
  #reloadAgain = false;
  /**
   * Check (R), Consume (C) and release (L) items waiting for this turn's BATCH call, per route:
   * one queue on a single Redis, one per account (its hash tag: one slot) on a cluster.
   */
  readonly #queues = new Map<string, BatchItem[]>();
  #flushScheduled = false;
  /** BATCH calls sent and items they carried (tests, bench). */
  batchCalls = 0;
  batchItems = 0;
  /** Loads of the book completed: the first, then every reload (tests). */
  loads = 0;
  readonly #accountKeys = new Map<string, AccountKeys>();
  /**
   * A load failed after it began putting keys into the book (refill states and versions rebuilt
   * only in part; group counts not yet): the next recovery reloads, and a reload is retried.
   */
  #partial = false;
  /** Leases (lease.ts): their TTL and safety margin (0: off), the rate window, per key the local state. */
  readonly #leaseMs: number;
  readonly #leaseMargin: number;
  readonly #leaseWindow: number;
  readonly #leases = new Map<string, Lease>();
  #ackPosition: string | undefined;
  /** The change feed's entries are being applied to the book (a reservation closed now was settled elsewhere). */
  #applyingFeed = false;
  /** Counters of the lease machinery (metrics, bench, tests). */
  readonly leaseStats: LeaseStats = newLeaseStats();

  constructor(opts: RedisStoreOptions) {
    this.book = new KeyBook({ maxReservations: opts.maxReservations });
    this.#p = opts.prefix ?? "aisa:";
    if (/[{}]/.test(this.#p)) throw new Error("the Redis key prefix may not contain braces");
    this.#keys = new RedisKeys(this.#p);
    this.#clock = opts.clock;
    this.#onError = opts.onError ?? (() => {});
    this.#window = opts.idempotencyWindowMs ?? 7 * DAY;
    this.#feedMax = String(opts.feedMaxLen ?? 100_000);
    this.#archive = opts.ledgerArchive ? new LedgerArchive(opts.ledgerArchive, this.#p) : undefined;
    this.#archiveFault = opts.archiveFault;
    this.#compaction = opts.ledgerCompaction ?? {};
    this.#groupScanMs = opts.groupScanDeadlineMs ?? 5000;
    this.#groupGraceMs = opts.groupRecoveryGraceMs ?? GROUP_RECOVERY_GRACE_MS;
    if (!Number.isInteger(this.#groupGraceMs) || this.#groupGraceMs < 0) throw new TypeError(`groupRecoveryGraceMs: a whole number of milliseconds >= 0, not ${String(opts.groupRecoveryGraceMs)}`);
    this.#groupChargeHook = opts.groupChargeHook ?? testGroupChargePause(process.env["AISA_TEST_GROUP_CHARGE_PAUSE_MS"]);
    this.#loadStep = opts.loadStep;
    this.#timeoutMs = opts.callTimeoutMs ?? 50;
    const leaseMs = opts.leaseMs ?? 0;
    if (!Number.isInteger(leaseMs) || leaseMs < 0) throw new TypeError(`leaseMs: a whole number of milliseconds >= 0 (0 = off), not ${String(opts.leaseMs)}`);
    this.#leaseMs = leaseMs;
    this.#leaseMargin = opts.leaseMarginMs ?? Math.min(DEFAULT_LEASE_MARGIN_MS, Math.floor(leaseMs / 4));
    if (leaseMs > 0 && (!Number.isInteger(this.#leaseMargin) || this.#leaseMargin < 0 || this.#leaseMargin >= leaseMs)) throw new TypeError(`leaseMarginMs: a whole number of milliseconds below leaseMs (${leaseMs}), not ${String(opts.leaseMarginMs)}`);
    this.#leaseWindow = Math.max(1, Math.floor(leaseMs / 2));
    // A lease-backed reservation closed (settled, released, expired, evicted, key removed).
    this.book.onTaggedClose = (slot, units) => {
      const l = this.#leases.get(this.book.index.idOf(slot));
      if (!l) return;
      l.closed(units);
      // Charged through another sidecar (its feed entry's rs): the units leave the lease.
      if (this.#applyingFeed) {
        l.settling(units);
        this.#shrink(l, units, this.#clock());
      }
    };
    this.#conn = new RedisConn(opts.url, this.#timeoutMs, (err) => this.#onError(err));
    this.#conn.onFailure = () => this.#markDown();
    this.#conn.onSlow = () => this.#suspect();
    this.changes = new RedisFeed({
      conn: () => this.#conn,
      key: this.#g("feed"),
      sid: this.sid,
      onError: (err) => this.#onError(err),
      onGap: () => this.#scheduleReload(),
      onEntry: (e) => {
        if (e.sid === this.sid) return;
        for (const [id, v] of Object.entries(e.versions)) this.#setVersion(id, v);
        for (const c of e.changes) if (c.kind === "keyDeleted") this.#ver.delete(c.id);
      },
    });
  }

  // ---- key names -------------------------------------------------------------------------

  #g(name: string): string {
    return this.#keys.g(name);
  }
  #a(account: string, name = "h"): string {
    return this.#keys.a(account, name);
  }
  #ak(account: string): AccountKeys {
    let k = this.#accountKeys.get(account);
    if (!k) this.#accountKeys.set(account, (k = { h: this.#a(account), rsv: this.#a(account, "rsv"), rd: this.#a(account, "rd"), led: this.#a(account, "led") }));
    return k;
  }
  #gb(group: string, name: string): string {
    return this.#keys.gb(group, name);
  }
  #u(name: string): string {
    return this.#keys.u(name);
  }

  get cluster(): boolean {
    return this.#conn.cluster;
  }

  /** Round trips sent to Redis since open (tests, bench). */
  get roundTrips(): number {
    return this.#conn.calls;
  }

  #verOf(id: string): number {
    return this.#ver.get(id) ?? 1;
  }
  #setVersion(id: string, v: number): void {
    if (v === 1) this.#ver.delete(id);
    else this.#ver.set(id, v);
  }

  // ---- lifecycle -------------------------------------------------------------------------

  async open(now: number): Promise<void> {
    await this.#conn.connect();
    await this.#conn.loadScripts(Object.values(SCRIPTS));
    await this.#init(now);
    await this.#load(now);
    if (this.book.index.size >= COLLECT_AFTER_LOAD_KEYS) collectLoadGarbage();
    this.#unsubscribe = this.changes.subscribe(this.changes.position(), (b) => {
      this.#applyingFeed = true;
      try {
        applyChanges(this.book, b.changes, this.#clock());
      } finally {
        this.#applyingFeed = false;
      }
      if (this.#leaseMs > 0) this.#leaseFeed(b.changes, b.position);
    });
    this.#opened = true;
    this.#setHealth("SERVING");
  }

  /**
   * Stops the store. `returnLeases` (default true): the unused part of every lease goes back to
   * Redis first (best effort; a lease not returned expires there after its TTL).
   */
  async close(returnLeases = true): Promise<void> {
    if (this.#closed) return;
    if (returnLeases && this.#opened && !this.#down && this.#leases.size > 0) await this.#returnAll();
    this.#closed = true;
    this.#unsubscribe?.();
    this.changes.stopAll();
    await Promise.allSettled([...this.#consumeInflight.values()]);
    this.#setHealth("NOT_SERVING");
    await this.#conn.close();
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

  /** A call failed (deadline, connection): NOT_SERVING until a probe succeeds and the book is reloaded. */
  #markDown(): void {
    if (!this.#opened || this.#closed) return;
    this.#down = true;
    this.#setHealth("NOT_SERVING");
    if (!this.#recovering) this.#recovering = this.#probeLoop().finally(() => (this.#recovering = undefined));
  }

  /**
   * A call missed its deadline: PING with a longer one; only a Redis that does not answer that
   * either (stopped, unreachable, overloaded for good) takes this sidecar to NOT_SERVING.
   */
  #suspect(): void {
    if (this.#suspecting || this.#down || !this.#opened || this.#closed) return;
    this.#suspecting = true;
    this.#conn
      .call(undefined, ["PING"], Math.max(1000, 4 * this.#timeoutMs))
      .catch(() => this.#markDown())
      .finally(() => (this.#suspecting = false));
  }

  async #probeLoop(): Promise<void> {
    while (this.#down && !this.#closed) {
      await new Promise((r) => setTimeout(r, 50));
      try {
        await this.#recoverOnce();
      } catch (err) {
        this.#onError(err);
      }
    }
  }

  /**
   * Redis answers again: scripts loaded (a restarted Redis has none), and the book reloaded when
   * the feed cannot bring it up to date (entries after our position trimmed, or a Redis that came
   * back with less than we saw). Otherwise the feed's own subscription carries on (it reloads
   * itself if its connection was lost): a slow call does not cost a full reload.
   */
  async #recoverOnce(): Promise<void> {
    await this.#conn.call(undefined, ["PING"]);
    await this.#conn.loadScripts(Object.values(SCRIPTS));
    const pos = this.changes.position();
    const { last, gap } = await this.changes.probe(pos);
    if (gap || cmpId(last, pos) < 0 || this.#partial) {
      // A Redis restored from an older state counts the accounts' sequences from lower again.
      this.book.forgetSeqs();
      await this.#load(this.#clock());
    }
    // Back from an outage: every account's outbox once (a Consume's second call may have failed).
    this.#groupPassAll = true;
    this.#down = false;
    this.#setHealth("SERVING");
  }

  get needsRecovery(): boolean {
    return this.#down;
  }

  async recover(): Promise<void> {
    if (!this.#down) return;
    try {
      await this.#recoverOnce();
    } catch (err) {
      this.#onError(err);
    }
  }

  #scheduleReload(): void {
    if (!this.#opened || this.#closed) return;
    if (this.#reloading) {
      this.#reloadAgain = true;
      return;
    }
    this.#reloading = (async () => {
      do {
        this.#reloadAgain = false;
        try {
          this.book.forgetSeqs();
          await this.#load(this.#clock());
          this.#groupPassAll = true;
        } catch (err) {
          this.#onError(err);
          // Keys only partly reloaded: again, after a pause (a Redis that is down is the probe's).
          if (this.#partial && !this.#down) {
            this.#reloadAgain = true;
            await new Promise((r) => setTimeout(r, 250));
          }
        }
      } while (this.#reloadAgain && !this.#closed);
    })().finally(() => (this.#reloading = undefined));
  }

  #ensureServing(): void {
    if (this.#down || !this.#opened) throw new StoreUnavailableError();
  }

  /** First start: the default account and group (once, whoever comes first). */
  async #init(now: number): Promise<void> {
    const schema = await this.#conn.call(this.#g("meta"), ["HGET", this.#g("meta"), "schema"]);
    if (schema) return;
    const b = new Batch();
    const h = this.#a(DEFAULT_ACCOUNT);
    b.absent(h, "rec");
    b.op("HSET", h, "rec", JSON.stringify({ id: DEFAULT_ACCOUNT, name: "Default account", createdAt: now } satisfies AccountRecord), "cr", 0, "ch", 0, "held", 0);
    b.op("SADD", this.#g("accts"), DEFAULT_ACCOUNT);
    const g: GroupRecord = { name: DEFAULT_GROUP, description: "Keys with no other group", ratioPpm: 1_000_000, models: [], createdAt: now };
    b.op("HSETNX", this.#g("groups"), DEFAULT_GROUP, JSON.stringify(g));
    b.op("HSET", this.#g("meta"), "schema", 1);
    await this.#commit(b, { changes: [] });
  }

  /**
   * Loads (or reloads) the book from Redis: the feed position first, so nothing after it is missed
   * (the subscription starts there and re-applies, with absolute values, every change committed
   * while the load read). Then the small tables and every account's record and key count (one
   * pipelined pass; the index is sized once, as the LevelDB load does from its hint), then the keys:
   * chunks of ~LOAD_COUNT keys (HSCAN of the projections, then HMGET of their counters), LOAD_WINDOW
   * of them in flight across all accounts, each chunk decoded straight into the book when it arrives
   * while the next ones are on the wire — no list of a million decoded keys, and a short queue on
   * Redis for the other sidecars' Checks (plain commands, each short). A key HSCAN returns twice
   * (it may, when the hash shrinks mid-scan) is loaded twice, the second replacing the first; group
   * counts come from the index once the keys are in (book.endKeyLoad). A read that
   * fails partway leaves the book partly reloaded (#partial): the reload is retried, and the
   * recovery after an outage reloads (every key the book had stays until a load completes).
   */
  async #load(now: number): Promise<void> {
    const { last } = await this.changes.probe("0-0");
    const c = this.#conn;
    const T = 0; // loads may take longer than a call's deadline
    const ids: string[] = (await c.call(this.#g("accts"), ["SMEMBERS", this.#g("accts")], T)).map(String);
    const [groupsRaw, tokensRaw, pricesRaw] = await Promise.all(["groups", "tokens", "prices"].map((n) => c.call(this.#g(n), ["HGETALL", this.#g(n)], T)));
    const pairs = hashPairs;
    const groups = pairs(groupsRaw).map(([, v]) => JSON.parse(v) as GroupRecord);
    const tokens = pairs(tokensRaw).map(([, v]) => JSON.parse(v) as TokenRecord);
    const prices = pairs(pricesRaw).map(([, v]) => JSON.parse(v) as PriceRecord);
    const budgets = new Map<string, GroupBudgetCounters>();
    await Promise.all(
      groups
        .filter((g) => g.budget)
        .map(async (g) => {
          const [spent, since] = await c.call(this.#gb(g.name, "b"), ["HMGET", this.#gb(g.name, "b"), "spent", "since"], T);
          budgets.set(g.name, { spent: Number(spent ?? 0), since: since ? Number(since) : now });
        }),
    );
    // Every account's record, counters (with their sequence) and number of keys, pipelined.
    const heads = await Promise.all(
      ids.map(async (id) => {
        const h = this.#a(id);
        const p = this.#a(id, "p");
        const [[rec, cr, ch, sq], n] = await Promise.all([c.call(h, ["HMGET", h, "rec", "cr", "ch", "sq"], T), c.call(p, ["HLEN", p], T)]);
        return { id, rec, cr, ch, sq: Number(sq ?? 0), keys: Number(n ?? 0) };
      }),
    );
    const accounts: [AccountRecord, AccountCounterValues][] = [];
    let keyCount = 0;
    for (const a of heads) {
      if (!a.rec) continue;
      const rec = JSON.parse(String(a.rec)) as AccountRecord;
      // The book takes the sequence it read (a reply or feed entry older than it is dropped
      // later), unless it applied newer counters while these were on the wire: it keeps those.
      const read = { balance: Number(a.cr ?? 0) - Number(a.ch ?? 0), credited: Number(a.cr ?? 0), charged: Number(a.ch ?? 0) };
      const newer = !this.book.acceptAccountSeq(a.id, a.sq) && this.book.tables.hasAccount(a.id);
      accounts.push([rec, newer ? this.book.tables.accountCounters(a.id) : read]);
      keyCount += a.keys;
    }
    this.book.tables.loadTables(accounts, groups, tokens, prices, now, budgets);
    this.book.index.reserve(keyCount);
    this.book.beginKeyReload();
    this.#partial = true;
    // A first load fills an empty book: nothing to remove afterwards, no set of every id.
    const seen = this.book.index.size === 0 ? undefined : new Set<string>();
    if (!seen) this.#ver.clear();
    const counters: KeyCounterValues = { remaining: 0, used: 0, credited: 0, lastUsedAt: null, refilledAt: null };
    /** HMGET of the LOAD_FIELDS of the keys of a chunk (kv = HSCAN's [id, projection, …]), and the account's sequence. */
    const counterFields = (h: string, kv: readonly string[]): string[] => {
      const args = new Array<string>(3 + (kv.length / 2) * LOAD_FIELDS.length);
      args[0] = "HMGET";
      args[1] = h;
      let a = 2;
      for (let j = 0; j < kv.length; j += 2) for (const f of LOAD_FIELDS) args[a++] = f + kv[j];
      args[a] = "sq";
      return args;
    };
    // A key's counter fields in its account's hash, in the order of LOAD_FIELDS.
    const num = (v: unknown, def: number): number => (v === null || v === undefined ? def : Number(v));
    const orNull = (v: unknown): number | null => (v === null || v === undefined ? null : Number(v));
    /**
     * Decodes one chunk: kv = HSCAN's [id, projection, …], v = HMGET's LOAD_FIELDS.length values per
     * key, then the account's sequence at those values (the book keeps it per key: loadKey).
     */
    const decode = (kv: readonly string[], v: readonly unknown[]) => {
      if (v.length !== (kv.length / 2) * LOAD_FIELDS.length + 1) throw new Error(`a load chunk's counters do not match its keys (${v.length} values for ${kv.length / 2} keys)`);
      const seq = num(v[v.length - 1], 0);
      for (let j = 0, o = 0; j < kv.length; j += 2, o += LOAD_FIELDS.length) {
        // Ids and projections are strings of their own (one per RESP element, not slices of a
        // larger text): the ones the book keeps in a Map (refill states, versions, `seen`) hold
        // nothing else alive.
        const hot = decodeProjection(String(kv[j]), String(kv[j + 1]));
        counters.remaining = num(v[o], 0);
        counters.used = num(v[o + 1], 0);
        counters.credited = num(v[o + 2], 0);
        counters.lastUsedAt = orNull(v[o + 3]);
        counters.refilledAt = orNull(v[o + 4]);
        this.book.loadKey(hot, counters, seq);
        // A first load starts from no versions (cleared above): only the few not 1 are set.
        const version = num(v[o + 5], 1);
        if (version !== 1 || seen) this.#setVersion(hot.id, version);
        seen?.add(hot.id);
      }
    };
    /**
     * One chunk of an account's keys: HSCAN of its projections from `cursor` (the account's next
     * chunk is queued as soon as the cursor is known), then one HMGET of those keys' counters and
     * versions from its hash. Two plain commands, no script: Redis does only its C work (a Lua
     * script doing the same cost ~4× the redis-server CPU: bench/README.md). The two reads are
     * not atomic together: a commit between them is after the feed position taken above, so the
     * feed re-applies it after the load (a key deleted between them loads with default counters
     * and leaves with the feed's delete).
     */
    const chunk = async (id: string, cursor: string, requeue: (next: string) => void): Promise<void> => {
      const p = this.#a(id, "p");
      const h = this.#a(id);
      const [next, kv] = (await c.call(p, ["HSCAN", p, cursor, "COUNT", LOAD_COUNT], T)) as [string, string[]];
      if (String(next) !== "0") requeue(String(next));
      if (kv.length === 0) return;
      if (this.#loadStep) await this.#loadStep(id, kv.filter((_, i) => i % 2 === 0));
      // The command's arguments are not kept here while it is on the wire (node-redis drops them
      // once encoded): six field names a key, in flight across garbage collections, are promoted.
      decode(kv, (await c.call(h, counterFields(h, kv), T)) as unknown[]);
    };
    // The chunks: a queue of (account, cursor); LOAD_WINDOW in flight; an account's next chunk is
    // queued as soon as this one's HSCAN has answered, before its counters are read and decoded.
    const queue: [string, string][] = heads.filter((a) => a.rec && a.keys > 0).map((a) => [a.id, "0"]);
    await new Promise<void>((resolve, reject) => {
      let inFlight = 0;
      let failed = false;
      const pump = (): void => {
        while (!failed && inFlight < LOAD_WINDOW && queue.length > 0) {
          const [id, cursor] = queue.pop()!;
          inFlight++;
          chunk(id, cursor, (next) => {
            queue.push([id, next]);
          }).then(
            () => {
              if (failed) return;
              inFlight--;
              pump();
              if (inFlight === 0 && queue.length === 0) resolve();
            },
            (err: unknown) => {
              failed = true;
              reject(err);
            },
          );
        }
      };
      pump();
      if (inFlight === 0) resolve();
    });
    if (seen) {
      this.book.removeKeysNotIn(seen);
      // Versions are replaced key by key as the chunks arrive (a reload keeps serving: a version
      // cleared up front would refuse that key's Checks until its chunk came); a gone key's leaves.
      for (const id of [...this.#ver.keys()]) if (!seen.has(id)) this.#ver.delete(id);
    }
    this.book.endKeyLoad();
    this.#partial = false;
    this.changes.advance(last);
    this.loads++;
  }

  /** A value of the meta table (JSON), or undefined. */
  async readMeta(name: string): Promise<unknown> {
    const v = await this.#conn.call(this.#g("meta"), ["HGET", this.#g("meta"), `m:${name}`]);
    return v === null || v === undefined ? undefined : JSON.parse(String(v));
  }

  async writeMeta(name: string, value: unknown): Promise<void> {
    await this.#conn.call(this.#g("meta"), ["HSET", this.#g("meta"), `m:${name}`, JSON.stringify(value)]);
  }

  // ---- committing (CAS) ------------------------------------------------------------------

  #auditOps(b: Batch, a: AuditInput): void {
    const rec = auditRecordOf(a, this.#clock(), this.#auditSeq++);
    b.op("HSET", this.#g("audit"), rec.id, JSON.stringify(rec));
    b.op("ZADD", this.#g("auditz"), 0, rec.id);
    if (a.account !== undefined) b.op("ZADD", this.#g(`audita:${a.account}`), 0, rec.id);
  }

  /**
   * Commits a batch with its feed entry: on a single Redis in one CAS script; on a cluster one CAS
   * per hash tag (accounts first, then group budgets, then the global tag) and the feed entry last.
   * Returns null when a check failed (nothing written on a single Redis), else the absolute counters.
   */
  async #commit(b: Batch, c: Commit, timeoutMs?: number): Promise<CommitResult | Refused> {
    const changesJson = JSON.stringify(c.changes);
    const versionsJson = JSON.stringify(c.versions ?? {});
    let kcText = "";
    let acText = "";
    let feedId: string | undefined;
    if (!this.#conn.cluster) {
      const arg: Record<string, unknown> = { c: b.checks, o: b.ops };
      if (c.keyCounters) arg["kc"] = c.keyCounters.map((e) => [String(b.k(e.h)), e.id]);
      if (c.account) arg["ac"] = [b.k(c.account.h)];
      arg["f"] = [b.k(this.#g("feed")), this.#feedMax, this.sid, changesJson, versionsJson, c.account?.id ?? ""];
      const r = await this.#conn.eval(SCRIPTS.cas, b.keys, [JSON.stringify(arg)], timeoutMs);
      if (Number(r[0]) !== 1) return { refused: true, fail: b.fails[Number(r[1]) - 1] };
      kcText = String(r[1] ?? "");
      acText = String(r[2] ?? "");
      feedId = r[3] ? String(r[3]) : undefined;
    } else {
      // One part per hash tag: accounts, then group budgets, then the global tag.
      const parts = new Map<string, { keys: string[]; checks: Check[]; fails: ((() => Error) | undefined)[]; ops: string[][]; kc: string[][]; ac?: boolean }>();
      const part = (key: string) => {
        const t = tagOf(key);
        let p = parts.get(t);
        if (!p) parts.set(t, (p = { keys: [], checks: [], fails: [], ops: [], kc: [] }));
        return p;
      };
      const local = (p: { keys: string[] }, key: string) => {
        let i = p.keys.indexOf(key);
        if (i < 0) i = p.keys.push(key) - 1;
        return String(i + 1);
      };
      b.checks.forEach((ch, i) => {
        const key = b.keys[ch[0] - 1]!;
        const p = part(key);
        p.checks.push([Number(local(p, key)), ...ch.slice(1)] as Check);
        p.fails.push(b.fails[i]);
      });
      for (const o of b.ops) {
        const key = b.keys[Number(o[1]) - 1]!;
        const p = part(key);
        const out = [o[0]!, local(p, key)];
        if (o[0] === "DROPKEY") out.push(local(p, b.keys[Number(o[2]) - 1]!), local(p, b.keys[Number(o[3]) - 1]!), o[4]!);
        else out.push(...o.slice(2));
        p.ops.push(out);
      }
      for (const e of c.keyCounters ?? []) {
        const p = part(e.h);
        p.kc.push([local(p, e.h), e.id]);
      }
      if (c.account) {
        part(c.account.h);
        parts.get(tagOf(c.account.h))!.ac = true;
      }
      const order = (t: string) => (t.startsWith("{a:") ? 0 : t.startsWith("{gb:") ? 1 : 2);
      const tags = [...parts.keys()].sort((x, y) => order(x) - order(y));
      for (const t of tags) {
        const p = parts.get(t)!;
        const arg: Record<string, unknown> = { c: p.checks, o: p.ops };
        if (p.kc.length) arg["kc"] = p.kc;
        if (p.ac && c.account) arg["ac"] = [local(p, c.account.h)];
        const r = await this.#conn.eval(SCRIPTS.cas, p.keys, [JSON.stringify(arg)], timeoutMs);
        if (Number(r[0]) !== 1) return { refused: true, fail: p.fails[Number(r[1]) - 1] };
        if (p.kc.length) kcText += (kcText ? "\n" : "") + String(r[1] ?? "");
        if (p.ac) acText = String(r[2] ?? "");
      }
      const fields = ["s", this.sid, "c", changesJson, "v", versionsJson, "kc", kcText];
      if (c.account) fields.push("a", c.account.id, "ac", acText);
      feedId = String(await this.#conn.call(this.#g("feed"), ["XADD", this.#g("feed"), "MAXLEN", "~", this.#feedMax, "*", ...fields], timeoutMs));
    }
    this.changes.advance(feedId);
    const keyCounters = new Map<string, FeedKeyCounters>();
    for (const line of kcText.split("\n")) {
      if (!line) continue;
      const [id, ctr] = parseKeyCounters(line);
      keyCounters.set(id, ctr);
    }
    const account = acText ? parseAccountCounters(acText) : undefined;
    const changes = c.changes.map((ch) => (ch.kind === "key" && keyCounters.has(ch.record.id) ? { ...ch, counters: keyCounters.get(ch.record.id)! } : ch));
    if (c.account && account) changes.push({ kind: "accountCounters", id: c.account.id, counters: account });
    return { feedId, keyCounters, account, changes };
  }

  /** Runs an admin change (read, compute, commit with checks) until no concurrent change intervened. */
  async #cas<T>(attempt: () => Promise<{ batch: Batch; commit: Commit; done: (r: CommitResult) => T } | { result: T }>): Promise<T> {
    this.#ensureServing();
    for (let i = 0; i < CAS_ATTEMPTS; i++) {
      const a = await attempt();
      if ("result" in a) return a.result;
      const r = await this.#commit(a.batch, a.commit);
      if ("refused" in r) {
        if (r.fail) throw r.fail();
      } else {
        applyChanges(this.book, r.changes, this.#clock());
        for (const [id, v] of Object.entries(a.commit.versions ?? {})) this.#setVersion(id, v);
        if (this.#leaseMs > 0) this.#leaseKeysChanged(r.changes);
        await this.#waitLessees(r.feedId, r.changes, a.commit.versions);
        return a.done(r);
      }
      await new Promise((res) => setTimeout(res, 2 + Math.random() * 10 * (i + 1)));
    }
    throw new SidecarError("UNAVAILABLE", "the change conflicted with concurrent changes too many times; try again");
  }

  // ---- keys ------------------------------------------------------------------------------

  async insertKey(record: KeyRecord, audit: AuditInput): Promise<KeyState> {
    return this.#cas(async () => {
      this.book.checkNewKey(record);
      const h = this.#a(record.accountId);
      const b = new Batch();
      const start = record.unlimited ? 0 : record.quotaTotal;
      b.present(h, "rec", () => notFound("account", record.accountId));
      b.absent(h, `k:${record.id}`, () => alreadyExists("key", record.id));
      // (On a cluster the global part commits after the account's: the book's check stands alone.)
      if (!this.cluster) b.present(this.#g("groups"), record.group, () => notFound("group", record.group));
      b.op("HINCRBY", this.#g("gkv"), record.group, 1);
      const id = record.id;
      const fields: (string | number)[] = [`k:${id}`, JSON.stringify(record), `v:${id}`, 1, `x:${id}`, keyState(record), `r:${id}`, start, `u:${id}`, 0, `c:${id}`, start];
      if (this.book.refillStarts(record)) fields.push(`f:${id}`, record.createdAt);
      b.op("HSET", h, ...fields);
      b.op("HSET", this.#a(record.accountId, "p"), id, encodeProjection(record));
      b.op("HDEL", h, `d:${id}`);
      this.#auditOps(b, { ...audit, after: audit.after ?? record });
      const counters: FeedKeyCounters = { remaining: start, used: 0, credited: start, lastUsedAt: null, refilledAt: null };
      return {
        batch: b,
        commit: { changes: [{ kind: "key", record, counters }], versions: { [id]: 1 }, keyCounters: [{ h, id }] },
        done: () => this.book.keyState(record),
      };
    });
  }

  /**
   * Bulk insert of NEW keys (benchmarks, seeding; as LevelStore.importKeys — `migrate` copies keys
   * with their counters through portable.ts instead): many keys per CAS, one audit entry per
   * batch; no per-call deadline (a batch is large), every batch its own feed entry. Each key starts
   * as insertKey starts it. A key that already exists on the engine — even one this sidecar's book
   * has not seen — refuses its account's batch with ALREADY_EXISTS and writes none of it: its
   * counters are never reset. (All-or-none per account's batch; batches before it stay.)
   */
  async importKeys(records: readonly KeyRecord[], audit: AuditInput, batchSize = 2000): Promise<number> {
    let n = 0;
    for (let i = 0; i < records.length; i += batchSize) {
      const chunk = records.slice(i, i + batchSize);
      const byAccount = new Map<string, KeyRecord[]>();
      for (const r of chunk) {
        this.book.checkNewKey(r);
        byAccount.set(r.accountId, [...(byAccount.get(r.accountId) ?? []), r]);
      }
      for (const [account, recs] of byAccount) {
        const h = this.#a(account);
        const b = new Batch();
        b.present(h, "rec", () => notFound("account", account));
        for (const r of recs) {
          b.absent(h, `k:${r.id}`, () => alreadyExists("key", r.id));
          if (!this.cluster) b.present(this.#g("groups"), r.group, () => notFound("group", r.group));
          const start = r.unlimited ? 0 : r.quotaTotal;
          const fields: (string | number)[] = [`k:${r.id}`, JSON.stringify(r), `v:${r.id}`, 1, `x:${r.id}`, keyState(r), `r:${r.id}`, start, `u:${r.id}`, 0, `c:${r.id}`, start];
          if (this.book.refillStarts(r)) fields.push(`f:${r.id}`, r.createdAt);
          b.op("HSET", h, ...fields);
          b.op("HSET", this.#a(account, "p"), r.id, encodeProjection(r));
          b.op("HDEL", h, `d:${r.id}`);
        }
        for (const group of new Set(recs.map((r) => r.group))) b.op("HINCRBY", this.#g("gkv"), group, 1);
        this.#auditOps(b, { ...audit, detail: `${recs.length} keys` });
        const changes: BookChange[] = recs.map((r) => {
          const start = r.unlimited ? 0 : r.quotaTotal;
          return { kind: "key", record: r, counters: { remaining: start, used: 0, credited: start, lastUsedAt: null, refilledAt: this.book.refillStarts(r) ? r.createdAt : null } };
        });
        const res = await this.#commit(b, { changes }, 0);
        if ("refused" in res) throw res.fail ? res.fail() : new SidecarError("UNAVAILABLE", `importKeys: account ${account}'s batch conflicted with a concurrent change; try again`);
        applyChanges(this.book, res.changes, this.#clock());
      }
      n += chunk.length;
    }
    return n;
  }

  /**
   * Keys of `group` in the engine's records (every account Redis knows, whatever the book holds).
   * The whole scan has one deadline (groupScanDeadlineMs, on the real clock): past it — a stalled
   * or unreachable Redis, or more keys than it can walk in that time — StoreUnavailableError, so
   * deleteGroup answers UNAVAILABLE instead of hanging (nothing was written: retry later).
   */
  async #keysInGroupOnEngine(group: string): Promise<number> {
    const deadline = performance.now() + this.#groupScanMs;
    const left = () => {
      const ms = Math.floor(deadline - performance.now());
      if (ms <= 0) throw new StoreUnavailableError(new Error(`deleteGroup ${JSON.stringify(group)}: the scan of every account's keys on Redis did not finish within ${this.#groupScanMs} ms`));
      return ms;
    };
    const accounts: string[] = (await this.#conn.call(this.#g("accts"), ["SMEMBERS", this.#g("accts")], left())).map(String);
    const needle = `"group":${JSON.stringify(group)}`;
    let n = 0;
    for await (const text of this.#keyRecordTexts(accounts, left)) if (text.includes(needle) && (JSON.parse(text) as KeyRecord).group === group) n++;
    return n;
  }

  /**
   * The key records (JSON text) of `accounts` as the engine holds them, account by account (HSCAN).
   * `left`: each call's timeout (throws past an overall deadline); absent: no deadline.
   */
  async *#keyRecordTexts(accounts: readonly string[], left: () => number = () => 0): AsyncIterable<string> {
    for (const a of accounts) {
      const h = this.#a(a);
      let cursor = "0";
      do {
        const [next, raw] = await this.#conn.call(h, ["HSCAN", h, cursor, "MATCH", "k:*", "COUNT", "5000"], left());
        cursor = String(next);
        for (let i = 1; i < raw.length; i += 2) yield String(raw[i]);
      } while (cursor !== "0");
    }
  }

  async #readKeys(ids: readonly string[]): Promise<{ rec: KeyRecord; v: string }[]> {
    return Promise.all(
      ids.map(async (id) => {
        const slot = this.book.index.slotOf(id);
        if (slot < 0) throw notFound("key", id);
        const h = this.#a(this.book.index.accountOf(slot));
        const [rec, v] = await this.#conn.call(h, ["HMGET", h, `k:${id}`, `v:${id}`]);
        if (!rec) {
          this.#resyncKey(id, this.book.index.accountOf(slot));
          throw notFound("key", id);
        }
        return { rec: JSON.parse(String(rec)) as KeyRecord, v: String(v ?? "1") };
      }),
    );
  }

  async getKey(id: string): Promise<KeyState | undefined> {
    const slot = this.book.index.slotOf(id);
    if (slot < 0) return undefined;
    const h = this.#a(this.book.index.accountOf(slot));
    const rec = await this.#conn.call(h, ["HGET", h, `k:${id}`]);
    return rec ? this.book.keyState(JSON.parse(String(rec)) as KeyRecord) : undefined;
  }

  keyIdsByCreation(accountId: string | undefined, newestFirst: boolean, keep: (v: KeyIndexView) => boolean): string[] {
    return keyIdsByCreation(this.book.index, accountId, newestFirst, keep);
  }

  async *scanKeys(accountId?: string): AsyncIterable<KeyState> {
    const accounts = accountId !== undefined ? [accountId] : this.book.tables.listAccounts().map((a) => a.record.id);
    const recs: KeyRecord[] = [];
    for await (const text of this.#keyRecordTexts(accounts)) recs.push(JSON.parse(text) as KeyRecord);
    recs.sort((x, y) => (x.id < y.id ? -1 : x.id > y.id ? 1 : 0));
    for (const r of recs) if (this.book.hasKey(r.id)) yield this.book.keyState(r);
  }

  updateKeys(ids: readonly string[], change: (current: KeyState) => KeyChange, audit: (before: KeyState, after: KeyState) => AuditInput): Promise<KeyState[]> {
    return this.#cas(async () => {
      const read = await this.#readKeys(ids);
      const befores = read.map((r) => this.book.keyState(r.rec));
      const changes = befores.map((b) => change(b));
      for (const c of changes) this.book.checkKeyChange(c.record);
      const now = this.#clock();
      const b = new Batch();
      const versions: Record<string, number> = {};
      const feed: BookChange[] = [];
      const kcs: { h: string; id: string }[] = [];
      for (let i = 0; i < changes.length; i++) {
        const c = changes[i]!;
        const before = befores[i]!;
        const id = c.record.id;
        if (c.record.accountId !== before.record.accountId) throw failedPrecondition(`key ${id}: a key cannot move to another account`);
        const h = this.#a(before.record.accountId);
        b.equals(h, `v:${id}`, read[i]!.v);
        const v = Number(read[i]!.v) + 1;
        versions[id] = v;
        b.op("HSET", h, `k:${id}`, JSON.stringify(c.record), `v:${id}`, v, `x:${id}`, keyState(c.record));
        b.op("HSET", this.#a(before.record.accountId, "p"), id, encodeProjection(c.record));
        if (c.remainingSet !== undefined) b.ops.push(["QSET", String(b.k(h)), id, String(c.remainingSet)]);
        if (c.remainingDelta) {
          b.op("HINCRBY", h, `r:${id}`, c.remainingDelta);
          b.op("HINCRBY", h, `c:${id}`, c.remainingDelta);
        }
        if (this.book.refillStarts(c.record)) b.op("HSET", h, `f:${id}`, this.book.refillSinceFor(c.record, now));
        if (c.record.group !== before.record.group) b.op("HINCRBY", this.#g("gkv"), c.record.group, 1);
        const after: KeyState = { record: c.record, counters: { ...before.counters } };
        this.#auditOps(b, audit(before, after));
        // Its counters are replaced by the engine's (kc) in the committed batch.
        feed.push({ kind: "key", record: c.record, counters: { remaining: 0, used: 0, credited: 0, lastUsedAt: null, refilledAt: null } });
        kcs.push({ h, id });
      }
      return {
        batch: b,
        commit: { changes: feed, versions, keyCounters: kcs },
        done: () => changes.map((c) => this.book.keyState(c.record)),
      };
    });
  }

  deleteKeys(ids: readonly string[], check: (current: KeyState) => void, audit: (before: KeyState) => AuditInput): Promise<void> {
    return this.#cas(async () => {
      const read = await this.#readKeys(ids);
      const befores = read.map((r) => {
        const s = this.book.keyState(r.rec);
        check(s);
        return s;
      });
      const b = new Batch();
      const feed: BookChange[] = [];
      const now = this.#clock();
      for (let i = 0; i < befores.length; i++) {
        const r = befores[i]!.record;
        const id = r.id;
        const h = this.#a(r.accountId);
        b.equals(h, `v:${id}`, read[i]!.v);
        b.ops.push(["DROPKEY", String(b.k(h)), String(b.k(this.#a(r.accountId, "rsv"))), String(b.k(this.#a(r.accountId, "rd"))), id]);
        b.op("HDEL", h, ...["k", "v", "x", "r", "u", "c", "l", "f", "h", "o"].map((f) => `${f}:${id}`));
        b.op("HDEL", this.#a(r.accountId, "p"), id);
        const tomb = this.book.tombstoneOf(r, now);
        b.op("HSET", h, `d:${id}`, JSON.stringify(tomb));
        b.op("DEL", this.#a(r.accountId, `rw:${id}`));
        b.op("HSET", this.#g("kdel"), id, JSON.stringify(tomb));
        this.#auditOps(b, audit(befores[i]!));
        feed.push({ kind: "keyDeleted", id, accountId: tomb.accountId, group: tomb.group, at: now });
      }
      return {
        batch: b,
        commit: { changes: feed },
        done: () => {
          for (const c of feed) if (c.kind === "keyDeleted") this.#ver.delete(c.id);
        },
      };
    });
  }

  /** Re-reads one key from Redis into the book (after a KEY_INVALID: the book was behind). */
  #resyncKey(id: string, account: string): void {
    const h = this.#a(account);
    this.#conn
      .call(h, ["HMGET", h, `k:${id}`, `v:${id}`, `r:${id}`, `u:${id}`, `c:${id}`, `l:${id}`, `f:${id}`, `d:${id}`])
      .then((v: (string | null)[]) => {
        const now = this.#clock();
        if (!v[0]) {
          if (this.book.hasKey(id)) this.book.removeKeys([id]);
          return;
        }
        const record = JSON.parse(String(v[0])) as KeyRecord;
        const counters: FeedKeyCounters = { remaining: Number(v[2] ?? 0), used: Number(v[3] ?? 0), credited: Number(v[4] ?? 0), lastUsedAt: v[5] ? Number(v[5]) : null, refilledAt: v[6] ? Number(v[6]) : null };
        applyChanges(this.book, [{ kind: "key", record, counters }], now);
        this.#setVersion(id, Number(v[1] ?? 1));
      })
      .catch((err: unknown) => this.#onError(err));
  }

  // ---- accounts --------------------------------------------------------------------------

  insertAccount(record: AccountRecord, initialBalance: number, audit: AuditInput): Promise<AccountState> {
    return this.#cas(async () => {
      this.book.tables.checkNewAccount(record.id);
      const h = this.#a(record.id);
      const b = new Batch();
      b.absent(h, "rec", () => alreadyExists("account", record.id));
      b.op("HSET", h, "rec", JSON.stringify(record), "cr", initialBalance, "ch", 0, "held", 0);
      b.op("SADD", this.#g("accts"), record.id);
      this.#auditOps(b, { ...audit, after: audit.after ?? { ...record, balance: initialBalance } });
      const counters = { balance: initialBalance, credited: initialBalance, charged: 0 };
      return { batch: b, commit: { changes: [{ kind: "account", record, counters }] }, done: () => this.book.tables.getAccount(record.id)! };
    });
  }

  /**
   * A changed account record (name, time zone), compare-and-set on the stored record. A changed
   * zone restarts the refill periods of the account's refill keys at now (their `f:` fields, in
   * the same script), so the first refill comes at the next boundary in the new zone: no free
   * refill, none instantly over budget (as LevelStore; the feed carries both to other sidecars).
   * A refill that came due under the old zone is normally applied by the scheduler's refill step
   * within a second; one due at that very moment restarts with the rest.
   */
  updateAccount(id: string, change: (current: AccountRecord) => AccountRecord, audit: (before: AccountRecord, after: AccountRecord) => AuditInput): Promise<AccountState> {
    return this.#cas(async () => {
      const cur = this.book.tables.account(id);
      if (!cur) throw notFound("account", id);
      const before = structuredClone(cur.record);
      const after = change(structuredClone(cur.record));
      if (after.id !== id) throw new TypeError("updateAccount: the change must keep the account id");
      const now = this.#clock();
      const h = this.#a(id);
      const b = new Batch();
      b.present(h, "rec", () => notFound("account", id));
      b.equals(h, "rec", JSON.stringify(before));
      b.op("HSET", h, "rec", JSON.stringify(after));
      const moved: string[] = [];
      if ((before.timezone ?? "UTC") !== (after.timezone ?? "UTC")) {
        for await (const k of this.scanKeys(id)) if (k.record.refill !== "none") moved.push(k.record.id);
        for (const k of moved) b.op("HSET", h, `f:${k}`, now);
      }
      this.#auditOps(b, audit(before, after));
      const counters = { balance: cur.counters.balance, credited: cur.counters.credited, charged: cur.counters.charged };
      return {
        batch: b,
        commit: { changes: [{ kind: "account", record: after, counters }], account: { h, id }, keyCounters: moved.length ? moved.map((kid) => ({ h, id: kid })) : undefined },
        done: (r: CommitResult) => {
          // The moved keys' committed refill starts into this book too (other sidecars get them as keyCounters).
          applyChanges(this.book, [...r.keyCounters].map(([kid, c]): BookChange => ({ kind: "keyCounters", id: kid, counters: c })), this.#clock());
          return this.book.tables.getAccount(id)!;
        },
      };
    });
  }

  /** Store.claimAlertMark: SET NX with the mark's expiry, atomic across the fleet. */
  async claimAlertMark(id: string, expiresAt: number): Promise<boolean> {
    checkMarkId(id);
    this.#ensureServing();
    const key = this.#g(`am:${id}`);
    const ms = Math.max(1, Math.ceil(expiresAt - this.#clock()));
    const r = await this.#conn.call(key, ["SET", key, String(expiresAt), "NX", "PX", String(ms)]);
    return r === "OK";
  }

  /** When a group's budget next resets (memory); null = no budget. */
  groupBudgetResetAt(name: string): number | null {
    return this.book.groupBudgetResetAt(name);
  }

  getAccount(id: string): AccountState | undefined {
    return this.book.tables.getAccount(id);
  }

  listAccounts(): AccountState[] {
    return this.book.tables.listAccounts();
  }

  /** balance += delta: an increment on the engine (no read-modify-write, so no conflicts to retry). */
  adjustBalance(id: string, delta: number, audit: AuditInput): Promise<AccountState> {
    return this.#cas(async () => {
      const a = this.book.tables.account(id);
      if (!a) throw notFound("account", id);
      // The 2^53 guard on the book's values (the engine's may have moved since by other sidecars' charges).
      const credited = addExact(a.counters.credited, delta, "delta", `account ${id}'s credited total`);
      addExact(credited, -a.counters.charged, "delta", `account ${id}'s balance`);
      const h = this.#a(id);
      const b = new Batch();
      b.present(h, "rec", () => notFound("account", id));
      b.op("HINCRBY", h, "cr", delta);
      const balance = a.counters.balance;
      this.#auditOps(b, { ...audit, before: audit.before ?? { id, balance }, after: audit.after ?? { id, balance: balance + delta } });
      return { batch: b, commit: { changes: [], account: { h, id } }, done: () => this.book.tables.getAccount(id)! };
    });
  }

  // ---- groups, tokens, prices ------------------------------------------------------------

  insertGroup(record: GroupRecord, audit: AuditInput): Promise<GroupRecord> {
    return this.#cas(async () => {
      this.book.tables.checkNewGroup(record.name);
      const now = this.#clock();
      const b = new Batch();
      b.absent(this.#g("groups"), record.name, () => alreadyExists("group", record.name));
      b.op("HSET", this.#g("groups"), record.name, JSON.stringify(record));
      const changes: BookChange[] = [{ kind: "group", record }];
      if (record.budget) {
        for (const n of ["b", "h", "d", "ap"]) b.op("DEL", this.#gb(record.name, n));
        b.op("HSET", this.#gb(record.name, "b"), "spent", 0, "since", now, "held", 0, "rs", now);
        changes.push({ kind: "groupBudget", name: record.name, counters: { spent: 0, since: now } });
      }
      this.#auditOps(b, { ...audit, after: audit.after ?? record });
      return { batch: b, commit: { changes }, done: () => this.book.tables.getGroup(record.name)! };
    });
  }

  getGroup(name: string): GroupRecord | undefined {
    return this.book.tables.getGroup(name);
  }

  listGroups(accountId?: string): GroupWithCount[] {
    return this.book.listGroups(accountId);
  }

  updateGroup(name: string, change: (current: GroupRecord) => GroupRecord, audit: (before: GroupRecord, after: GroupRecord) => AuditInput): Promise<GroupRecord> {
    return this.#cas(async () => {
      const text = await this.#conn.call(this.#g("groups"), ["HGET", this.#g("groups"), name]);
      if (!text) throw notFound("group", name);
      const before = JSON.parse(String(text)) as GroupRecord;
      const after = change(before);
      const now = this.#clock();
      const b = new Batch();
      b.equals(this.#g("groups"), name, String(text));
      b.op("HSET", this.#g("groups"), name, JSON.stringify(after));
      const changes: BookChange[] = [{ kind: "group", record: after }];
      if (!after.budget) {
        if (before.budget) for (const n of ["b", "h", "d", "ap"]) b.op("DEL", this.#gb(name, n));
      } else if (this.book.tables.budgetChanges(after)) {
        const [spent] = await this.#conn.call(this.#gb(name, "b"), ["HMGET", this.#gb(name, "b"), "spent"]);
        // A budget new to the group starts from nothing spent (rs: no charge of an earlier request counts).
        if (before.budget) b.op("HSET", this.#gb(name, "b"), "since", now);
        else b.op("HSET", this.#gb(name, "b"), "since", now, "rs", now);
        changes.push({ kind: "groupBudget", name, counters: { spent: Number(spent ?? 0), since: now } });
      }
      this.#auditOps(b, audit(before, after));
      return { batch: b, commit: { changes }, done: () => this.book.tables.getGroup(name)! };
    });
  }

  /**
   * "No key uses the group" is decided by the engine's records, not this sidecar's book (which may
   * not have seen a key another sidecar just put in the group): the group's key-entry version is
   * read, then every key record on Redis (all accounts, raw: a rare admin call, one overall
   * deadline: #keysInGroupOnEngine), and
   * the CAS deletes only if the version is unchanged — a key that entered the group after the read
   * fails it, and the retry's scan finds that key. (On a cluster the version moves in the key
   * change's global part, after its account part: a key committed before the scan is found by it,
   * one committed after moves the version before or after this CAS — the cluster caveat above.)
   */
  deleteGroup(name: string, audit: AuditInput): Promise<void> {
    return this.#cas(async () => {
      const g = this.book.tables.groupRecord(name);
      if (!g) throw notFound("group", name);
      if (name === DEFAULT_GROUP) throw failedPrecondition('group "default" cannot be deleted');
      const gkv = this.#g("gkv");
      const v = await this.#conn.call(gkv, ["HGET", gkv, name]);
      const n = Math.max(this.book.keysInGroup(name), await this.#keysInGroupOnEngine(name));
      if (n > 0) throw failedPrecondition(`group ${JSON.stringify(name)} is used by ${n} key(s); move or delete them first`);
      const b = new Batch();
      if (v === null || v === undefined) b.absent(gkv, name);
      else b.equals(gkv, name, String(v));
      b.op("HDEL", gkv, name);
      b.present(this.#g("groups"), name, () => notFound("group", name));
      b.op("HDEL", this.#g("groups"), name);
      for (const x of ["b", "h", "d", "ap"]) b.op("DEL", this.#gb(name, x));
      this.#auditOps(b, { ...audit, before: audit.before ?? g });
      return { batch: b, commit: { changes: [{ kind: "groupDeleted", name }] }, done: () => undefined };
    });
  }

  insertToken(record: TokenRecord, audit: AuditInput): Promise<TokenRecord> {
    return this.#cas(async () => {
      this.book.tables.checkNewToken(record);
      const b = new Batch();
      b.absent(this.#g("tokens"), record.id, () => alreadyExists("token", record.id));
      b.op("HSET", this.#g("tokens"), record.id, JSON.stringify(record));
      this.#auditOps(b, { ...audit, after: audit.after ?? record });
      return { batch: b, commit: { changes: [{ kind: "token", record }] }, done: () => ({ ...record }) };
    });
  }

  listTokens(): TokenRecord[] {
    return this.book.tables.listTokens();
  }

  deleteToken(id: string, audit: AuditInput): Promise<void> {
    return this.#cas(async () => {
      const t = this.book.tables.getToken(id);
      if (!t) throw notFound("token", id);
      const b = new Batch();
      b.op("HDEL", this.#g("tokens"), id);
      this.#auditOps(b, { ...audit, before: audit.before ?? t });
      return { batch: b, commit: { changes: [{ kind: "tokenDeleted", id }] }, done: () => undefined };
    });
  }

  findTokenByHash(hashHex: string): TokenRecord | undefined {
    return this.book.tables.findTokenByHash(hashHex);
  }

  setPrice(record: PriceRecord, audit: AuditInput): Promise<PriceRecord> {
    return this.#cas(async () => {
      const before = this.book.tables.getPrice(record.model);
      const b = new Batch();
      b.op("HSET", this.#g("prices"), record.model, JSON.stringify(record));
      this.#auditOps(b, { ...audit, before: audit.before ?? before, after: audit.after ?? record });
      return { batch: b, commit: { changes: [{ kind: "price", record }] }, done: () => ({ ...record }) };
    });
  }

  getPrice(model: string): PriceRecord | undefined {
    return this.book.tables.getPrice(model);
  }

  listPrices(): PriceRecord[] {
    return this.book.tables.listPrices();
  }

  deletePrice(model: string, audit: AuditInput): Promise<void> {
    return this.#cas(async () => {
      const p = this.book.tables.getPrice(model);
      if (!p) throw notFound("price for model", model);
      const b = new Batch();
      b.op("HDEL", this.#g("prices"), model);
      this.#auditOps(b, { ...audit, before: audit.before ?? p });
      return { batch: b, commit: { changes: [{ kind: "priceDeleted", model }] }, done: () => undefined };
    });
  }

  // ---- audit -----------------------------------------------------------------------------

  async listAudit(q: ListAuditQuery): Promise<AuditRecord[]> {
    const out: AuditRecord[] = [];
    const index = q.account !== undefined ? this.#g(`audita:${q.account}`) : this.#g("auditz");
    const lo = q.since !== undefined ? `[${q.since.toString(16).padStart(12, "0")}` : "-";
    let hi = q.before ? `(${q.before}` : "+";
    for (;;) {
      const ids: string[] = (await this.#conn.call(index, ["ZREVRANGEBYLEX", index, hi, lo, "LIMIT", "0", String(Math.min(500, Math.max(16, q.limit)))], 0)).map(String);
      if (ids.length === 0) return out;
      const recs: (string | null)[] = await this.#conn.call(this.#g("audit"), ["HMGET", this.#g("audit"), ...ids], 0);
      for (const text of recs) {
        if (!text) continue;
        const rec = JSON.parse(String(text)) as AuditRecord;
        if (q.target && rec.target !== q.target) continue;
        if (q.actor && rec.actor !== q.actor) continue;
        out.push(rec);
        if (out.length >= q.limit) return out;
      }
      hi = `(${ids[ids.length - 1]}`;
    }
  }

  async appendAudit(audit: AuditInput | readonly AuditInput[]): Promise<void> {
    this.#ensureServing();
    const list = Array.isArray(audit) ? audit : [audit as AuditInput];
    const b = new Batch();
    for (const a of list) this.#auditOps(b, a);
    await this.#commit(b, { changes: [] });
  }

  // ---- the hot path ----------------------------------------------------------------------

  lookup(secretHash: Uint8Array, now: number): HotSnapshot | undefined {
    return this.book.lookup(secretHash, now);
  }

  /**
   * One round trip, shared: the Checks and Consumes of one event-loop turn go to Redis as one
   * BATCH call (per account on a cluster). A key whose group has a budget first holds on the
   * group's slot (its own call), then joins the batch.
   */
  reserve(req: ReserveRequest): ReserveResult | Promise<ReserveResult> {
    const ix = this.book.index;
    const slot = req.handle;
    if (!ix.hasId(slot, req.keyId)) return { ok: false, reason: "KEY_INVALID", retryAfterMs: 0 };
    if (this.#down || !this.#opened) return Promise.reject(new StoreUnavailableError());
    const account = ix.accountOf(slot);
    const group = ix.groupOf(slot);
    const unlimited = ix.isUnlimited(slot);
    const limits = ix.limits(slot);
    const budget = this.book.tables.budget(group);
    if (this.#leaseMs > 0 && !budget && limits.rpm === 0 && limits.tpm === 0 && limits.concurrency === 0) return this.#reserveLeasing(req, account, group, unlimited, limits);
    // The book records the hold at once (its own reservations; the id); the engine decides.
    const local = this.book.reserve(req, true);
    if (!local.ok) return local;
    const rid = local.reservationId;
    if (budget) return this.#reserveWithBudget(req, rid, account, group, unlimited, limits, budget.units);
    return this.#reserveOnAccount(req, rid, account, unlimited, limits).then(
      (r) => this.#reserveAnswer(req, rid, account, group, unlimited, limits, r, Infinity, false),
      (err: unknown) => this.#reserveFailed(rid, account, group, false, err),
    );
  }

  /** The account's RESERVE, as an item of this turn's batch. */
  #reserveOnAccount(req: ReserveRequest, rid: string, account: string, unlimited: boolean, limits: { rpm: number; tpm: number; concurrency: number }): Promise<(string | number)[]> {
    const k = this.#ak(account);
    return this.#enqueue(
      account,
      "R",
      [k.h, k.rsv, k.rd, this.#a(account, `rw:${req.keyId}`)],
      [String(req.now), String(req.ttlMs), rid, req.keyId, String(this.#verOf(req.keyId)), String(req.units), unlimited ? "1" : "0", String(limits.concurrency), String(limits.rpm), String(limits.tpm)],
    );
  }

  /** Two phases: the group's hold (its own slot), then the account's RESERVE; a refusal releases the group's hold. */
  async #reserveWithBudget(req: ReserveRequest, rid: string, account: string, group: string, unlimited: boolean, limits: { rpm: number; tpm: number; concurrency: number }, budgetUnits: number): Promise<ReserveResult> {
    let groupHeld = false;
    try {
      const g = await this.#groupCall("hold", group, rid, req.units, req.now, req.ttlMs, budgetUnits);
      const groupAvailable = budgetUnits - Number(g[1]) - Number(g[2]);
      if (Number(g[0]) !== 1) {
        this.book.release(rid);
        return this.#denial(req.units, Infinity, unlimited, Infinity, limits, 0, 0, 0, 0, groupAvailable);
      }
      groupHeld = true;
      const r = await this.#reserveOnAccount(req, rid, account, unlimited, limits);
      return this.#reserveAnswer(req, rid, account, group, unlimited, limits, r, groupAvailable, true);
    } catch (err) {
      return this.#reserveFailed(rid, account, group, groupHeld, err);
    }
  }

  /** A RESERVE's reply: the engine's absolute counters into the book (unless older than its own), and the answer. */
  #reserveAnswer(req: ReserveRequest, rid: string, account: string, group: string, unlimited: boolean, limits: { rpm: number; tpm: number; concurrency: number }, r: readonly (string | number)[], groupAvailable: number, groupHeld: boolean): ReserveResult {
    const ok = Number(r[0]);
    if (ok === -1) {
      this.book.release(rid);
      if (groupHeld) void this.#groupCall("release", group, rid, 0, req.now, 0, 0).catch((e: unknown) => this.#onError(e));
      this.#resyncKey(req.keyId, account);
      return { ok: false, reason: "KEY_INVALID", retryAfterMs: 0 };
    }
    const rem = Number(r[1]);
    const kh = Number(r[4]);
    const cr = Number(r[6]);
    const ch = Number(r[7]);
    const held = Number(r[8]);
    const seq = Number(r[12]);
    // The engine's absolute counters into the book (a peer's charges show in the next lookup) —
    // unless the book already applied newer ones (a feed entry that overtook this reply).
    if (this.book.acceptKeySeq(req.keyId, seq)) {
      this.book.setKeyCounters(req.keyId, { remaining: rem, used: Number(r[2]), credited: Number(r[3]), lastUsedAt: req.now, refilledAt: this.book.keyCounters(req.keyId).refilledAt });
    }
    const a = this.book.tables.account(account);
    if (a && this.book.acceptAccountSeq(account, seq)) {
      a.counters.credited = cr;
      a.counters.charged = ch;
      a.counters.balance = cr - ch;
    }
    if (ok !== 1) {
      this.book.release(rid);
      if (groupHeld) void this.#groupCall("release", group, rid, 0, req.now, 0, 0).catch((e: unknown) => this.#onError(e));
      return this.#denial(req.units, cr - ch - held, unlimited, rem - kh, limits, Number(r[9]), Number(r[10]), Number(r[11]), Number(r[5]), groupAvailable);
    }
    return { ok: true, reservationId: rid, units: req.units, keyRemaining: unlimited ? 0 : rem - kh, accountBalance: cr - ch - held };
  }

  /** A Check that failed (deadline, connection): fails closed, holding nothing. */
  #reserveFailed(rid: string, account: string, group: string, groupHeld: boolean, err: unknown): never {
    this.book.release(rid);
    // The reserve may still run on Redis (it was sent; only its answer came past the deadline):
    // release it there too. Sent on the same connection (the next batch of this route), it runs
    // after the reserve (one connection keeps its calls' order), so a Check that failed closed
    // holds nothing — unless Redis is unreachable, when the hold expires with its TTL.
    const k = this.#ak(account);
    this.#enqueue(account, "L", [k.h, k.rsv, k.rd], [rid]).catch(() => {});
    if (groupHeld) void this.#groupCall("release", group, rid, 0, this.#clock(), 0, 0).catch((e: unknown) => this.#onError(e));
    throw err instanceof StoreUnavailableError ? err : new StoreUnavailableError(err);
  }

  /** Queues one item for this turn's BATCH call of its route; resolves with its own reply. */
  #enqueue(account: string, kind: BatchItem["kind"], keys: readonly (string | false)[], args: readonly string[]): Promise<any> {
    return new Promise((resolve, reject) => {
      const route = this.#conn.cluster ? account : "";
      let q = this.#queues.get(route);
      if (!q) this.#queues.set(route, (q = []));
      q.push({ kind, keys, args, resolve, reject });
      // Group charges applied since this account's last batch leave its outbox with this one.
      const done = this.#outboxDone.get(account);
      if (done) {
        this.#outboxDone.delete(account);
        const gob = this.#a(account, "gob");
        // A failure leaves the entry for the recovery pass, whose charge then finds its mark.
        for (const m of done) q.push({ kind: "O", keys: [gob], args: [m], resolve: () => {}, reject: () => {} });
      }
      if (q.length >= BATCH_MAX) {
        this.#queues.delete(route);
        this.#send(q);
      } else if (!this.#flushScheduled) {
        this.#flushScheduled = true;
        setImmediate(this.#flush);
      }
    });
  }

  /** End of the turn: every route's items, one BATCH call each. */
  readonly #flush = (): void => {
    this.#flushScheduled = false;
    if (this.#queues.size === 0) return;
    const all = [...this.#queues.values()];
    this.#queues.clear();
    for (const q of all) this.#send(q);
  };

  /** One BATCH call: KEYS once each, the items' arguments in order; each item gets its own reply (or the call's failure). */
  #send(items: readonly BatchItem[]): void {
    const keys: string[] = [];
    const index = new Map<string, string>();
    const argv: string[] = [];
    for (const it of items) {
      argv.push(it.kind);
      for (const k of it.keys) {
        if (k === false) {
          argv.push("0");
          continue;
        }
        let i = index.get(k);
        if (i === undefined) {
          keys.push(k);
          i = String(keys.length);
          index.set(k, i);
        }
        argv.push(i);
      }
      for (const a of it.args) argv.push(a);
    }
    this.batchCalls++;
    this.batchItems += items.length;
    this.#conn.eval(SCRIPTS.batch, keys, argv).then(
      (rows: unknown[]) => {
        for (let i = 0; i < items.length; i++) items[i]!.resolve(rows[i]);
      },
      (err: unknown) => {
        for (const it of items) it.reject(err);
      },
    );
  }

  // ---- leases (lease.ts; "Leases" above) ---------------------------------------------------

  /**
   * A Check of a key that may lease (no rpm / tpm / concurrency limit, no group budget): from its
   * lease when the lease has room and is valid on this sidecar's clock (no Redis call), else a
   * pass-through reserve item (retried while a recall frees leased units), and — when the key is
   * busy enough — a grant or top-up item in the same batch.
   */
  #reserveLeasing(req: ReserveRequest, account: string, group: string, unlimited: boolean, limits: { rpm: number; tpm: number; concurrency: number }): ReserveResult | Promise<ReserveResult> {
    let l = this.#leases.get(req.keyId);
    if (!l || l.account !== account) {
      l = new Lease(req.keyId, account, `L:${this.sid}:${req.keyId}`);
      this.#leases.set(req.keyId, l);
    }
    l.noteCheck(req.now, req.units, this.#leaseWindow);
    if (l.admits(req.now, req.units)) {
      const local = this.book.reserve(req, true, LEASED_TAG);
      if (!local.ok) return local;
      l.opened(req.units);
      this.leaseStats.local++;
      if (req.now >= l.renewAt) this.#leaseCall(l, req.now, false);
      return local;
    }
    this.leaseStats.passThrough++;
    const answer = this.#passThrough(req, account, group, unlimited, limits, req.now + this.#leaseMs + 2 * this.#leaseMargin);
    // Busy enough: a grant (or a top-up of a live lease) goes in the same batch, after the reserve.
    if (!l.inflight && (l.state === "live" || (req.now >= l.renewAt && l.recentChecks(req.now, this.#leaseWindow) >= GRANT_AFTER_CHECKS))) this.#leaseCall(l, req.now, false);
    return answer;
  }

  /**
   * A pass-through Check in leasing mode: the reserve item (reserveq) that also says whether a lease
   * may still hold the units it lacked. Such a refusal is not final: the leases of the account are
   * recalled (this sidecar's at once; others see the mark in their next reply) and the Check is
   * retried until admitted, refused with no lease left, or `deadline` (about one lease TTL: by then
   * every slice granted before the recall has been returned or has expired).
   */
  async #passThrough(req: ReserveRequest, account: string, group: string, unlimited: boolean, limits: { rpm: number; tpm: number; concurrency: number }, deadline: number): Promise<ReserveResult> {
    for (;;) {
      const local = this.book.reserve(req, true);
      if (!local.ok) return local;
      const rid = local.reservationId;
      const k = this.#ak(account);
      let r: (string | number)[];
      try {
        r = await this.#enqueue(
          account,
          "Q",
          [k.h, k.rsv, k.rd, this.#a(account, `rw:${req.keyId}`), this.#a(account, "ls")],
          [String(req.now), String(req.ttlMs), rid, req.keyId, String(this.#verOf(req.keyId)), String(req.units), unlimited ? "1" : "0", String(limits.concurrency), String(limits.rpm), String(limits.tpm), String(this.#leaseMs)],
        );
      } catch (err) {
        return this.#reserveFailed(rid, account, group, false, err);
      }
      const answer = this.#reserveAnswer(req, rid, account, group, unlimited, limits, r, Infinity, false);
      if (answer.ok || String(r[13]) !== "1") return answer;
      const now = this.#clock();
      this.#recalled(account, now);
      if (now >= deadline) return answer;
      this.leaseStats.recallRetries++;
      await new Promise((res) => setTimeout(res, 5 + Math.random() * 10));
      if (this.#down || this.#closed) throw new StoreUnavailableError();
      if (!this.book.index.hasId(req.handle, req.keyId)) return { ok: false, reason: "KEY_INVALID", retryAfterMs: 0 };
      req = { ...req, now: this.#clock() };
    }
  }

  /**
   * A grant, renew (top-up) or return of `l` as an item of this turn's batch (lease() in
   * scripts.ts). keep = what this sidecar may still use (all of it; only its open reservations when
   * returning or not live); the reply sets total = hold − what Consumes shrank since (lease.ts).
   */
  #leaseCall(l: Lease, now: number, returning: boolean): void {
    if (l.inflight) {
      if (returning) l.returnAfter = true;
      return;
    }
    const slot = this.book.index.slotOf(l.keyId);
    if (returning) l.state = "off";
    const want = returning || slot < 0 ? 0 : l.want(now, this.#leaseWindow, l.minSlice());
    const wasLive = l.state === "live";
    const keep = wasLive ? l.total : l.openUnits;
    if (!wasLive && want === 0 && keep === l.total && l.openUnits === 0 && l.total <= 0) return; // nothing to grant or give back
    l.inflight = true;
    l.returnAfter = false;
    const shrunkAt = l.shrunk;
    const ver = this.#verOf(l.keyId);
    const k = this.#ak(l.account);
    const unlimited = slot >= 0 && this.book.index.isUnlimited(slot);
    this.#enqueue(l.account, "G", [k.h, k.rsv, k.rd, this.#a(l.account, "ls")], [String(now), String(this.#leaseMs), l.lid, l.keyId, String(ver), String(keep), String(l.openUnits), String(want), String(l.minSlice()), unlimited ? "1" : "0"]).then(
      (r: (string | number)[]) => {
        l.inflight = false;
        const at = this.#clock();
        l.renewAt = now + this.#leaseWindow;
        if (Number(r[0]) === -1) {
          // The key changed or went: Redis dropped the lease (its open reservations settle as usual).
          l.state = "off";
          l.total = 0;
          return;
        }
        const hold = Number(r[1]);
        l.total = hold - (l.shrunk - shrunkAt);
        const changed = this.#verOf(l.keyId) !== ver || !this.book.hasKey(l.keyId);
        if (want === 0) this.leaseStats.returned++;
        else if (hold > keep && !changed && !l.returnAfter) {
          if (wasLive) this.leaseStats.renewed++;
          else this.leaseStats.granted++;
          l.state = "live";
          l.validUntil = now + this.#leaseMs - this.#leaseMargin;
        } else if (wasLive && l.state === "live") {
          this.leaseStats.renewed++;
          l.validUntil = now + this.#leaseMs - this.#leaseMargin;
        }
        if (String(r[2]) === "1") this.#recalled(l.account, at);
        else if (changed || l.returnAfter) this.#leaseCall(l, at, true);
      },
      () => {
        // Unknown whether it ran: Redis holds at least what this side counts on (lease.ts).
        l.inflight = false;
        if (l.returnAfter) l.state = "off";
      },
    );
  }

  /** A lease-backed reservation of `units` was charged: the lease holds that much less on Redis (an item of this turn's batch). */
  #shrink(l: Lease, units: number, now: number): void {
    const k = this.#ak(l.account);
    this.#enqueue(l.account, "S", [k.h, k.rsv, k.rd, this.#a(l.account, "ls")], [String(now), l.lid, String(units)]).then(
      (s: unknown[]) => {
        if (String(s[1]) === "1") this.#recalled(l.account, this.#clock());
      },
      () => {},
    );
  }

  /** The recall mark of `account` is set: every lease of it stops admitting and gives its unused part back. */
  #recalled(account: string, now: number): void {
    for (const l of this.#leases.values()) {
      if (l.account !== account || (l.state !== "live" && l.total <= l.openUnits)) continue;
      this.leaseStats.recalled++;
      l.state = "off";
      this.#leaseCall(l, now, true);
      l.renewAt = now + this.#leaseMs;
    }
  }

  /** Keys changed (own commit or the feed): their leases stop at once and are given back. */
  #leaseKeysChanged(changes: readonly BookChange[]): void {
    const now = this.#clock();
    for (const c of changes) {
      const id = c.kind === "key" ? c.record.id : c.kind === "keyDeleted" ? c.id : undefined;
      const l = id === undefined ? undefined : this.#leases.get(id);
      if (!l || (l.state !== "live" && l.total <= l.openUnits)) continue;
      l.state = "off";
      this.#leaseCall(l, now, true);
    }
  }

  /**
   * Feed entries applied (the store's own subscription): leases of changed keys stop, then the
   * acknowledgement `{g}:ack:<sid>` = the last entry applied (once per turn) — an admin change
   * through another sidecar waits for it (#waitLessees) while this sidecar holds leases.
   */
  #leaseFeed(changes: readonly BookChange[], position: string): void {
    this.#leaseKeysChanged(changes);
    if (this.#leases.size === 0) return;
    const first = this.#ackPosition === undefined;
    this.#ackPosition = position;
    if (!first) return;
    setImmediate(() => {
      const pos = this.#ackPosition;
      this.#ackPosition = undefined;
      if (!pos || this.#closed) return;
      const key = this.#g(`ack:${this.sid}`);
      this.#conn.call(key, ["SET", key, pos, "PX", String(Math.max(60_000, 10 * this.#leaseMs))]).catch((e: unknown) => this.#onError(e));
    });
  }

  /**
   * An admin change of keys committed (feed entry `feedId`): returns once every other sidecar that
   * holds a lease of one of them has stopped using it — it acknowledged the entry, or its lease
   * expired on Redis — so the very next Check anywhere sees the change. Bounded by the lease TTL
   * (a lessee that does not answer: its lease's expiry). Read on every admin key change, leasing
   * on here or not (a peer may lease).
   */
  async #waitLessees(feedId: string | undefined, changes: readonly BookChange[], versions: Readonly<Record<string, number>> | undefined): Promise<void> {
    if (!feedId) return;
    const byAccount = new Map<string, Set<string>>();
    for (const c of changes) {
      const [account, id] = c.kind === "key" ? [c.record.accountId, c.record.id] : c.kind === "keyDeleted" ? [c.accountId, c.id] : [undefined, undefined];
      // A new key (version 1) has no lease yet.
      if (account === undefined || id === undefined || versions?.[id] === 1) continue;
      let ids = byAccount.get(account);
      if (!ids) byAccount.set(account, (ids = new Set()));
      ids.add(id);
    }
    if (byAccount.size === 0) return;
    const pending = new Map<string, number>();
    try {
      const now = this.#clock();
      for (const [account, ids] of byAccount) {
        const ls = this.#a(account, "ls");
        const raw: unknown[] = await this.#conn.call(ls, ["ZRANGEBYSCORE", ls, `(${now}`, "+inf", "WITHSCORES"]);
        const flat = raw.flatMap((x) => (Array.isArray(x) ? x : [x])).map(String);
        for (let i = 0; i + 1 < flat.length; i += 2) {
          const lid = flat[i]!;
          const sid = lid.slice(2, 2 + this.sid.length);
          const keyId = lid.slice(3 + this.sid.length);
          if (sid === this.sid || !ids.has(keyId)) continue;
          pending.set(sid, Math.max(pending.get(sid) ?? 0, Number(flat[i + 1])));
        }
      }
      while (pending.size > 0) {
        const now = this.#clock();
        const sids = [...pending.keys()];
        const acks: unknown[] = await Promise.all(sids.map((sid) => this.#conn.call(this.#g(`ack:${sid}`), ["GET", this.#g(`ack:${sid}`)])));
        sids.forEach((sid, i) => {
          const ack = acks[i];
          if (now >= pending.get(sid)! || (ack && cmpId(String(ack), feedId) >= 0)) pending.delete(sid);
        });
        if (pending.size > 0) await new Promise((r) => setTimeout(r, 3));
      }
    } catch (err) {
      // Redis did not answer: the leases' expiries bound the wait.
      this.#onError(err);
      const until = Math.max(0, ...pending.values(), this.#clock() + (pending.size > 0 ? 0 : this.#leaseMs));
      await new Promise((r) => setTimeout(r, Math.max(0, until - this.#clock())));
    }
  }

  /** How often leaseTick must run (the scheduler's "leases" step): TTL / 4; 0 with leasing off. */
  get leaseTickMs(): number {
    return this.#leaseMs > 0 ? Math.max(20, Math.floor(this.#leaseMs / 4)) : 0;
  }

  /**
   * Every TTL / 4: reservations the book dropped (expiry, its cap) give their units back to their
   * lease; a live lease is renewed at TTL / 2 while its key is used, else returned; a lease that is
   * off keeps holding its open reservations (renewed) and gives back the rest; idle ones go.
   */
  leaseTick(now: number): void {
    if (this.#down || this.#closed || !this.#opened || this.#leases.size === 0) return;
    for (const [id, l] of this.#leases) {
      if (l.inflight) continue;
      const busy = l.want(now, this.#leaseWindow, 1) > 0;
      if (l.state === "live") {
        if (now >= l.validUntil) l.state = "off";
        else if (now >= l.renewAt) this.#leaseCall(l, now, !busy);
        continue;
      }
      if (l.total > l.openUnits || (l.openUnits > 0 && now >= l.renewAt)) this.#leaseCall(l, now, true);
      else if (l.openUnits === 0 && l.total <= 0 && !busy) this.#leases.delete(id);
    }
  }

  /** close(): every lease's unused part back (open reservations die with this store). */
  async #returnAll(): Promise<void> {
    const now = this.#clock();
    const calls: Promise<unknown>[] = [];
    for (const l of this.#leases.values()) {
      if (l.total <= 0 && l.state !== "live") continue;
      const k = this.#ak(l.account);
      calls.push(this.#enqueue(l.account, "G", [k.h, k.rsv, k.rd, this.#a(l.account, "ls")], [String(now), String(this.#leaseMs), l.lid, l.keyId, String(this.#verOf(l.keyId)), "0", "0", "0", "1", "0"]));
      l.state = "off";
    }
    this.#leases.clear();
    await Promise.allSettled(calls);
  }

  /** The reason of an engine's refusal, by THE rule (policy/admit.ts) on the engine's numbers. */
  #denial(units: number, accountAvailable: number, unlimited: boolean, quotaAvailable: number, limits: { rpm: number; tpm: number; concurrency: number }, reqs: number, toks: number, reset: number, open: number, groupAvailable: number): ReserveResult {
    const d = admit(units, accountAvailable, unlimited, quotaAvailable, limits, { requestsInWindow: reqs, tokensInWindow: toks, open, windowResetMs: reset }, groupAvailable);
    return { ok: false, reason: d?.reason ?? "RATE_LIMITED", retryAfterMs: d?.retryAfterMs ?? 1000 };
  }

  #groupCall(mode: string, group: string, rid: string, units: number, now: number, ttl: number, budgetUnits: number, charge?: GroupCharge): Promise<string[]> {
    const keys = [this.#gb(group, "b"), this.#gb(group, "h"), this.#gb(group, "d"), this.#gb(group, "ap")];
    if (!this.#conn.cluster) keys.push(this.#g("feed"));
    const args = [mode, String(now), rid, String(units), String(budgetUnits), String(ttl), this.sid, this.#feedMax, group];
    if (charge) args.push(charge.requestId, String(charge.at), String(GROUP_MARK_MS));
    return this.#conn.eval(SCRIPTS.group, keys, args);
  }

  /**
   * A group budget's charge (groupCharge.ts) on the group's slot, once per request id, then out
   * of the account's outbox: an O item that joins the account's next BATCH (a Check or Consume
   * of it), or the maintenance step's (within a second) on an idle sidecar — no round trip of
   * its own. Lost (a crash, a failed batch), the recovery pass finds the entry and its charge
   * finds the request's mark: it counts once.
   * Resolves with the GROUP script's outcome (CHARGE).
   */
  async #applyGroupCharge(account: string, g: GroupCharge, member: string): Promise<number> {
    const r = await this.#groupCall("charge", g.group, g.reservationId, g.units, this.#clock(), 0, 0, g);
    const outcome = Number(r[0]);
    // The engine's absolute figures into the book (published when this call added the charge).
    if (outcome !== CHARGE.periodOver) await this.#groupPublished(g.group, r);
    const done = this.#outboxDone.get(account);
    if (done) done.push(member);
    else this.#outboxDone.set(account, [member]);
    return outcome;
  }

  /** The outbox removals no batch has carried yet (an idle sidecar): one O item each, in this turn's batches. */
  #flushOutboxDone(): void {
    if (this.#down || this.#closed) return;
    for (const [account, done] of [...this.#outboxDone]) {
      const last = done.pop()!;
      if (done.length === 0) this.#outboxDone.delete(account);
      // Its own item; #enqueue appends the rest of the account's removals after it.
      this.#enqueue(account, "O", [this.#a(account, "gob")], [last]).catch(() => {});
    }
  }

  /**
   * The recovery of group charges a Consume owed but never applied (its sidecar died, or the
   * group's call failed, between the two calls; groupCharge.ts): outbox entries older than the
   * grace period (by their request's time, against `now`) are applied through the same
   * idempotent 'charge' and taken out of the outbox. One sidecar of the fleet at a time (the lock
   * P{g}:gclock, SET NX PX with a token, renewed per account); another that does not get it does
   * nothing this time. `all`: every account (start-up, reload); else the next
   * GROUP_RECOVERY_ACCOUNTS of this sidecar's round robin. Resolves with the charges applied.
   * Run by the store's maintenance step (refill) every GROUP_RECOVERY_EVERY_MS; public for tests.
   */
  async recoverGroupCharges(now: number, all = true): Promise<number | undefined> {
    if (!this.#opened || this.#closed || this.#down) return undefined;
    const lock = this.#g("gclock");
    const token = randomBytes(12).toString("hex");
    if ((await this.#conn.call(lock, ["SET", lock, token, "NX", "PX", String(GROUP_LOCK_MS)])) !== "OK") return undefined;
    let renewed = performance.now();
    const held = async () => {
      if (performance.now() - renewed < GROUP_LOCK_MS / 3) return true;
      renewed = performance.now();
      return Number(await this.#conn.eval(SCRIPTS.archiveLock, [lock], [token, String(GROUP_LOCK_MS)])) === 1;
    };
    try {
      // The account ids, re-read from the book once per round (listAccounts copies every account).
      if (all || this.#groupCursor >= this.#groupIds.length) {
        this.#groupIds = this.book.tables.listAccounts().map((a) => a.record.id);
        this.#groupCursor = 0;
      }
      const accounts = this.#groupIds;
      let picked: string[];
      if (all) picked = accounts;
      else {
        picked = accounts.slice(this.#groupCursor, this.#groupCursor + GROUP_RECOVERY_ACCOUNTS);
        this.#groupCursor += picked.length;
      }
      const before = String(now - this.#groupGraceMs);
      const due = (account: string): Promise<string[]> => {
        const gob = this.#a(account, "gob");
        return this.#conn.call(gob, ["ZRANGEBYSCORE", gob, "-inf", before, "LIMIT", "0", String(GROUP_RECOVERY_BATCH)]).then((v: unknown[]) => v.map(String));
      };
      let applied = 0;
      // The outboxes read 50 accounts at a time (concurrent calls); then each due entry of each.
      for (let i = 0; i < picked.length; i += 50) {
        const chunk = picked.slice(i, i + 50);
        const firsts = await Promise.all(chunk.map(due));
        for (let j = 0; j < chunk.length; j++) {
          const account = chunk[j]!;
          const gob = this.#a(account, "gob");
          for (let members = firsts[j]!; members.length > 0; members = members.length < GROUP_RECOVERY_BATCH ? [] : await due(account)) {
            if (!(await held())) return applied;
            for (const m of members) {
              const g = decodeGroupCharge(m);
              if (!g) {
                // Not an entry this engine writes: named, then dropped (it can never be applied).
                this.#onError(new Error(`group charge recovery: account ${account}'s outbox holds ${JSON.stringify(m.slice(0, 200))}, not a group charge; dropped`));
              } else {
                // A budget gone or reset since the request: the script adds nothing (groupCharge.ts).
                const r = await this.#groupCall("charge", g.group, g.reservationId, g.units, now, 0, 0, g);
                if (Number(r[0]) === CHARGE.applied) {
                  applied++;
                  await this.#groupPublished(g.group, r);
                }
              }
              await this.#conn.call(gob, ["ZREM", gob, m]);
            }
          }
        }
      }
      return applied;
    } finally {
      await this.#conn.eval(SCRIPTS.archiveLock, [lock], [token, "0"]).catch(() => {});
    }
  }

  /** From the maintenance step: a recovery pass every GROUP_RECOVERY_EVERY_MS (a full one after open or a reload), one at a time. */
  #groupRecoveryTick(now: number): void {
    if (this.#groupPass || this.#down || !this.#opened || this.#closed || now - this.#groupPassAt < GROUP_RECOVERY_EVERY_MS) return;
    this.#groupPassAt = now;
    const all = this.#groupPassAll;
    this.#groupPassAll = false;
    this.#groupPass = this.recoverGroupCharges(now, all)
      .then((n) => {
        // Another sidecar held the lock: the full pass is still owed.
        if (n === undefined && all) this.#groupPassAll = true;
        return n;
      })
      .catch((e: unknown) => {
        if (all) this.#groupPassAll = true;
        this.#onError(e);
        return undefined;
      })
      .finally(() => (this.#groupPass = undefined));
  }

  /** After a group script that published (or, on a cluster, must publish): the book and the feed. */
  async #groupPublished(group: string, r: string[]): Promise<void> {
    // The engine's absolute values into the book (also when another sidecar's reset came first).
    const counters = { spent: Number(r[1]), since: Number(r[3]) };
    applyChanges(this.book, [{ kind: "groupBudget", name: group, counters }], this.#clock());
    if (Number(r[4]) === 1 && this.#conn.cluster) {
      const id = await this.#conn.call(this.#g("feed"), ["XADD", this.#g("feed"), "MAXLEN", "~", this.#feedMax, "*", "s", this.sid, "g", group, "gc", `${counters.spent} ${counters.since}`]);
      this.changes.advance(String(id));
    }
  }

  release(reservationId: string): boolean {
    const keyId = reservationKeyId(reservationId);
    // From a lease: its units go back to the lease's slice (the book reports it), no Redis call.
    if (this.book.reservationTag(reservationId) === LEASED_TAG) return this.book.release(reservationId);
    const ok = this.book.release(reservationId);
    const slot = keyId ? this.book.index.slotOf(keyId) : -1;
    if (slot >= 0 && !this.#down) {
      const account = this.book.index.accountOf(slot);
      const group = this.book.index.groupOf(slot);
      const k = this.#ak(account);
      this.#enqueue(account, "L", [k.h, k.rsv, k.rd], [reservationId]).catch((e: unknown) => this.#onError(e));
      if (this.book.tables.budget(group)) this.#groupCall("release", group, reservationId, 0, this.#clock(), 0, 0).catch((e: unknown) => this.#onError(e));
    }
    return ok;
  }

  nextRefillAt(keyId: string): number | null {
    return this.book.nextRefillAt(keyId);
  }

  reservationUnits(reservationId: string): number | undefined {
    return this.book.reservationUnits(reservationId);
  }

  // ---- Consume ---------------------------------------------------------------------------

  resolveConsumeTarget(target: ConsumeTarget, now: number): KeyRef | undefined {
    const ref = resolveConsumeTarget(this.book, target, now);
    // A reservation another sidecar opened: the engine settles it if it is still open.
    if (ref && target.kind === "reservation" && !ref.reservationId) ref.reservationId = target.id;
    return ref;
  }

  async #tombstone(keyId: string): Promise<DeletedKey | undefined> {
    const t = await this.#conn.call(this.#g("kdel"), ["HGET", this.#g("kdel"), keyId]);
    return t ? (JSON.parse(String(t)) as DeletedKey) : undefined;
  }

  async resolveDeletedTarget(target: ConsumeTarget): Promise<KeyRef | undefined> {
    const keyId = target.kind === "key" ? target.id : target.kind === "reservation" ? reservationKeyId(target.id) : undefined;
    if (!keyId || this.book.hasKey(keyId)) return undefined;
    const t = await this.#tombstone(keyId);
    return t ? deletedRef(this.book, keyId, t) : undefined;
  }

  async findConsume(requestId: string): Promise<ConsumeRecord | undefined> {
    const account = await this.#conn.call(this.#g(`rq:${requestId}`), ["GET", this.#g(`rq:${requestId}`)]);
    if (!account) return undefined;
    const v: (string | null)[] = await this.#conn.eval(SCRIPTS.find, [this.#a(String(account), `i:${requestId}`), this.#a(String(account), "led")], []);
    return v && v[0] ? this.#record(v as string[]) : undefined;
  }

  #record(v: readonly (string | null | undefined)[]): ConsumeRecord {
    const r = JSON.parse(String(v[0])) as ConsumeRecord;
    r.keyRemaining = Number(v[1] ?? 0);
    r.accountBalance = Number(v[2] ?? 0);
    r.reservationId = String(v[3] ?? "");
    return r;
  }

  consume(input: ConsumeInput): Promise<{ record: ConsumeRecord; replayed: boolean }> {
    const running = this.#consumeInflight.get(input.requestId);
    if (running) return running.then((r) => ({ record: r.record, replayed: true }));
    const p = this.#consumeOnce(input);
    this.#consumeInflight.set(input.requestId, p);
    const done = () => this.#consumeInflight.delete(input.requestId);
    p.then(done, done);
    return p;
  }

  async #consumeOnce(c: ConsumeInput): Promise<{ record: ConsumeRecord; replayed: boolean }> {
    this.#ensureServing();
    for (let attempt = 0; attempt < 3; attempt++) {
      const slot = this.book.index.slotOf(c.keyId);
      let account: string;
      let group: string;
      let unlimited = false;
      let deleted = false;
      if (slot >= 0) {
        account = this.book.index.accountOf(slot);
        group = this.book.index.groupOf(slot);
        unlimited = this.book.index.isUnlimited(slot);
      } else {
        const t = await this.#tombstone(c.keyId);
        if (!t) throw notFound("key", c.keyId);
        account = t.accountId;
        group = t.group;
        deleted = true;
      }
      if (!this.book.tables.hasAccount(account)) throw notFound("account", account);
      // The record as the ledger keeps it; the script fills in the figures after the charge.
      const json = JSON.stringify(consumeRecord(c, account, group, "", 0, unlimited, 0));
      const k = this.#ak(account);
      const single = !this.#conn.cluster;
      const rid = deleted ? "" : c.reservationId;
      const total = deleted ? undefined : this.book.refillTotal(c.keyId);
      // A lease-backed reservation: the lease holds its units less (an item just before the charge).
      const lease = !deleted && c.reservationId && this.book.reservationTag(c.reservationId) === LEASED_TAG ? this.#leases.get(c.keyId) : undefined;
      const leased = lease ? this.book.reservationUnits(c.reservationId) : undefined;
      if (lease && leased !== undefined && attempt === 0) {
        lease.settling(leased);
        this.#shrink(lease, leased, c.now);
      }
      // A reservation this sidecar did not open (a peer's, perhaps from its lease: Redis does not know those).
      const foreign = this.#leaseMs > 0 && slot >= 0 && !!c.reservationId && leased === undefined && this.book.reservationUnits(c.reservationId) === undefined;
      // The group budget's charge, owed in the account's outbox by the same script (groupCharge.ts).
      const owed = this.book.tables.budget(group) ? groupChargeOf(c, group, rid) : undefined;
      const owedMember = owed ? encodeGroupCharge(owed) : "";
      const r: (string | number)[] = await this.#enqueue(
        account,
        "C",
        [k.h, k.rsv, k.rd, this.#a(account, `rw:${c.keyId}`), this.#a(account, `i:${c.requestId}`), k.led, single && this.#g(`rq:${c.requestId}`), single && this.#g("feed"), !!owed && this.#a(account, "gob")],
        [
          String(c.now),
          c.keyId,
          rid,
          String(c.units),
          String(c.inputTokens + c.outputTokens),
          unlimited ? "1" : "0",
          deleted ? "1" : "0",
          String(this.#window),
          json,
          this.sid,
          this.#feedMax,
          account,
          total === undefined ? "" : String(total),
          this.#archive ? "1" : "0",
          owedMember,
        ],
      );
      const status = Number(r[0]);
      if (status === 2) return { record: this.#record(r.slice(1) as string[]), replayed: true };
      if (status === 3) {
        // Deleted through another sidecar meanwhile: charge its tombstone's account.
        if (this.book.hasKey(c.keyId)) this.book.removeKeys([c.keyId]);
        continue;
      }
      if (status === 4) {
        // A counter would pass 2^53 − 1: THE rule names it (nothing was charged).
        const [used, remaining, charged, credited] = r.slice(1).map(Number) as [number, number, number, number];
        refuseInexactCharge(c.keyId, c.units, deleted ? undefined : { used, remaining, total }, { charged, credited });
        throw invalid("units", `the charge of ${c.units} units would take a counter past 2^53 − 1; nothing was changed`);
      }
      const record = this.#record(r.slice(1) as string[]);
      if (foreign && !r[4]) {
        // Redis settled nothing: tell its opener (the feed's rs), whose lease then holds its units less.
        this.#conn.call(this.#g("feed"), ["XADD", this.#g("feed"), "MAXLEN", "~", this.#feedMax, "*", "s", this.sid, "rs", c.reservationId]).catch((e: unknown) => this.#onError(e));
      }
      const changes: BookChange[] = [];
      if (r[5]) {
        const [id, counters] = parseKeyCounters(String(r[5]));
        changes.push({ kind: "keyCounters", id, counters });
      }
      changes.push({ kind: "accountCounters", id: account, counters: parseAccountCounters(String(r[6])) });
      if (slot >= 0 && c.reservationId) this.book.settle(c.reservationId, slot);
      applyChanges(this.book, changes, this.#clock());
      if (slot >= 0) this.book.index.rateWindowForWrite(slot)?.addTokens(c.now, c.inputTokens + c.outputTokens);
      if (this.#conn.cluster) {
        const fields = ["s", this.sid, "kc", String(r[5] ?? ""), "a", account, "ac", String(r[6]), "rs", String(r[4] ?? "")];
        await Promise.all([
          this.#conn.call(this.#g(`rq:${c.requestId}`), ["SET", this.#g(`rq:${c.requestId}`), account, "PX", String(this.#window)]),
          this.#conn.call(this.#g("feed"), ["XADD", this.#g("feed"), "MAXLEN", "~", this.#feedMax, "*", ...fields]).then((id: string) => this.changes.advance(String(id))),
        ]);
      }
      if (owed) {
        if (this.#groupChargeHook) await this.#groupChargeHook(c.requestId);
        await this.#applyGroupCharge(account, owed, owedMember);
      }
      return { record, replayed: false };
    }
    throw new StoreUnavailableError(new Error(`key ${c.keyId}: changing under this Consume`));
  }

  /** A ledger stream entry's fields → its record. */
  #entryRecord(fields: readonly string[]): ConsumeRecord {
    const m = new Map<string, string>();
    for (let i = 0; i + 1 < fields.length; i += 2) m.set(String(fields[i]), String(fields[i + 1]));
    return this.#record([m.get("j"), m.get("kr"), m.get("ab"), m.get("rs")]);
  }

  /**
   * Per account: its archived entries (ledgerArchive.ts), then its stream after the newest
   * archived id (an entry both archived and still in the stream — a pass that stopped between
   * its segment's rename and the trim — is read once).
   */
  async *scanLedger(): AsyncIterable<ConsumeRecord> {
    for (const a of this.book.tables.listAccounts()) {
      const led = this.#a(a.record.id, "led");
      let from = "-";
      if (this.#archive) {
        for await (const e of this.#archive.read(a.record.id)) {
          from = `(${e.id}`;
          yield e.rec;
        }
      }
      for (;;) {
        const entries: [string, string[]][] = await this.#conn.call(led, ["XRANGE", led, from, "+", "COUNT", "1000"], 0);
        if (!entries || entries.length === 0) break;
        for (const [, fields] of entries) yield this.#entryRecord(fields);
        from = `(${entries[entries.length - 1]![0]}`;
      }
    }
  }

  // ---- the ledger archive (ledgerArchive.ts) ----------------------------------------------

  /**
   * Moves every account's ledger entries older than the window (+ ARCHIVE_MARGIN_MS, on Redis's
   * clock: the stream ids' clock) to the archive, oldest first, a segment at a time: a segment is
   * durably on disk under its name before the stream is trimmed up to its last id (XTRIM MINID,
   * exact). One archiver at a time in the fleet: a lock (SET NX PX, a token; renewed before each
   * segment, released by compare) — a sidecar that does not get it does nothing this time.
   * Resolves with the entries archived; 0 without an archive. A segment that cannot be written
   * stops the pass with an error naming the directory and trims nothing (the entries stay in
   * Redis for the next pass).
   */
  async archiveLedger(): Promise<number> {
    const archive = this.#archive;
    if (!archive || !this.#opened || this.#closed || this.#down) return 0;
    const lock = this.#g("archlock");
    const token = randomBytes(12).toString("hex");
    if ((await this.#conn.call(lock, ["SET", lock, token, "NX", "PX", String(ARCHIVE_LOCK_MS)])) !== "OK") return 0;
    const held = async () => Number(await this.#conn.eval(SCRIPTS.archiveLock, [lock], [token, String(ARCHIVE_LOCK_MS)])) === 1;
    try {
      await this.#checkArchiveId(archive);
      const [sec, usec] = (await this.#conn.call(lock, ["TIME"])) as [string, string];
      const step = Math.min(ARCHIVE_STEP_MS, this.#window);
      const cutoff = Math.floor((Number(sec) * 1000 + Math.floor(Number(usec) / 1000) - this.#window - ARCHIVE_MARGIN_MS) / step) * step;
      let n = 0;
      const c = this.#compaction;
      for (const a of this.book.tables.listAccounts()) {
        const r = await this.#archiveAccount(archive, a.record.id, cutoff, held);
        n += r.archived;
        if (r.lockLost) break;
        // The account's old segments merged (fewer files), under the same lock.
        const compact = { before: `${Math.max(0, cutoff - (c.ageMs ?? DAY))}-0`, minSegments: c.minSegments ?? COMPACT_MIN_SEGMENTS, maxBytes: c.maxBytes ?? COMPACT_MAX_BYTES, held, fault: c.fault };
        try {
          await archive.compact(a.record.id, compact);
        } catch (err) {
          throw new Error(`ledger archive: cannot compact the segments of account ${a.record.id} under ${archive.dir} (${err instanceof Error ? err.message : String(err)}); every entry is still in the archive once`, { cause: err });
        }
      }
      return n;
    } finally {
      await this.#conn.eval(SCRIPTS.archiveLock, [lock], [token, "0"]).catch(() => {});
    }
  }

  /**
   * The archive directory must be the fleet's (ledgerArchive.ts: archive-id): the first pass of a
   * fleet names it (file first, then Redis); a directory with another id, or none once Redis has
   * one, refuses the pass — a sidecar pointed at its own directory would split the ledger.
   */
  async #checkArchiveId(archive: LedgerArchive): Promise<void> {
    const meta = this.#g("meta");
    const fleet = await this.#conn.call(meta, ["HGET", meta, "ledgerArchiveId"]);
    let here: string | undefined;
    try {
      here = await archive.readId();
    } catch (err) {
      throw new Error(`ledger archive: cannot read ${archive.idPath} (${err instanceof Error ? err.message : String(err)}); nothing was archived or trimmed`, { cause: err });
    }
    if (fleet && here === String(fleet)) return;
    if (fleet) {
      throw new Error(
        `ledger archive: ${archive.dir} is not this fleet's ledger archive (${here === undefined ? "it has no archive-id" : `its archive-id is ${here}`}; the fleet's is ${String(fleet)}): every sidecar must name the one shared directory (--ledger-archive / AISA_LEDGER_ARCHIVE); nothing was archived or trimmed. If this is the fleet's archive and its id file was lost, write ${String(fleet)} into ${archive.idPath}`,
      );
    }
    const id = here ?? randomBytes(12).toString("hex");
    if (here === undefined) await archive.writeId(id);
    await this.#conn.call(meta, ["HSETNX", meta, "ledgerArchiveId", id]);
    const now = await this.#conn.call(meta, ["HGET", meta, "ledgerArchiveId"]);
    if (String(now) !== id) throw new Error(`ledger archive: another sidecar named the fleet's archive meanwhile (${String(now)}); this pass stops`);
  }

  async #archiveAccount(archive: LedgerArchive, account: string, cutoff: number, held: () => Promise<boolean>): Promise<{ archived: number; lockLost: boolean }> {
    const led = this.#a(account, "led");
    const trim = (upTo: string) => this.#conn.call(led, ["XTRIM", led, "MINID", nextStreamId(upTo)], 0);
    /** A file step: its failure stops the pass before anything (more) is trimmed, with a line naming the directory. */
    const disk = async <T>(what: string, step: () => Promise<T>): Promise<T> => {
      try {
        return await step();
      } catch (err) {
        throw new Error(
          `ledger archive: cannot ${what} of account ${account} under ${archive.dir} (${err instanceof Error ? err.message : String(err)}); nothing was trimmed: the entries stay in Redis until a pass can write them`,
          { cause: err },
        );
      }
    };
    let done = await disk("read the segments", () => archive.newest(account));
    await archive.removeTemp(account);
    // A pass that stopped between a segment's rename and its trim: trim what is archived first.
    if (done !== undefined) await trim(done);
    let archived = 0;
    for (;;) {
      if (!(await held())) return { archived, lockLost: true };
      const entries: [string, string[]][] = await this.#conn.call(led, ["XRANGE", led, done === undefined ? "-" : `(${done}`, `(${cutoff}-0`, "COUNT", String(SEGMENT_ENTRIES)], 0);
      if (!entries || entries.length === 0) return { archived, lockLost: false };
      const batch: ArchivedEntry[] = entries.map(([id, fields]) => ({ id: String(id), rec: this.#entryRecord(fields) }));
      await disk("write a segment", () => archive.write(account, batch));
      this.#archiveFault?.("renamed");
      done = batch[batch.length - 1]!.id;
      await trim(done);
      archived += batch.length;
      if (entries.length < SEGMENT_ENTRIES) return { archived, lockLost: false };
    }
  }

  // ---- usage buckets ----------------------------------------------------------------------
  // Each writer (this store instance, `sid`) keeps its OWN absolute values in its field of the
  // bucket's hash; getUsageBuckets returns this writer's (what UsageRecorder seeds from), queries
  // return the sum over writers: the fleet's totals, never one sidecar overwriting another.

  #bucketKey(b: Pick<UsageBucket, "gran" | "dim" | "id" | "start">): string {
    return this.#u(`b:${b.gran}|${b.dim}|${b.id}|${b.start}`);
  }

  async putUsageBuckets(buckets: readonly UsageBucket[]): Promise<void> {
    if (buckets.length === 0) return;
    const b = new Batch();
    for (const x of buckets) {
      b.op("HSET", this.#bucketKey(x), this.sid, JSON.stringify(x));
      const member = `${x.start}|${x.id}`;
      b.op("ZADD", this.#u(`t:${x.gran}|${x.dim}`), x.start, member);
      const owner = x.dim === "account" ? x.id : x.dim === "key" ? (x.account ?? "") : "";
      if (owner) b.op("ZADD", this.#u(`a:${x.gran}|${x.dim}|${owner}`), x.start, member);
    }
    // One slot ({u}): one script on a cluster too.
    const r = await this.#conn.eval(SCRIPTS.cas, b.keys, [JSON.stringify({ c: [], o: b.ops })]);
    if (Number(r[0]) !== 1) throw new StoreUnavailableError();
  }

  async getUsageBuckets(refs: readonly Pick<UsageBucket, "gran" | "dim" | "id" | "start">[]): Promise<(UsageBucket | undefined)[]> {
    return Promise.all(
      refs.map(async (r) => {
        const v = await this.#conn.call(this.#bucketKey(r), ["HGET", this.#bucketKey(r), this.sid], 0);
        return v ? (JSON.parse(String(v)) as UsageBucket) : undefined;
      }),
    );
  }

  async #sumBucket(key: string): Promise<UsageBucket | undefined> {
    const vals: string[] = await this.#conn.call(key, ["HVALS", key], 0);
    let out: UsageBucket | undefined;
    for (const v of vals) {
      const b = JSON.parse(String(v)) as UsageBucket;
      if (!out) out = { ...b, denies: { ...b.denies } };
      else sumCounters(out, b);
    }
    return out;
  }

  async queryUsageBuckets(q: UsageQueryRange): Promise<UsageBucket[]> {
    const byAccount = q.account !== undefined && q.account !== "" && (q.dim === "key" || q.dim === "account");
    const index = byAccount ? this.#u(`a:${q.gran}|${q.dim}|${q.account}`) : this.#u(`t:${q.gran}|${q.dim}`);
    const members: string[] = (await this.#conn.call(index, ["ZRANGEBYSCORE", index, String(q.since), `(${q.until}`], 0)).map(String);
    const out: UsageBucket[] = [];
    const picked = members
      .map((m) => {
        const bar = m.indexOf("|");
        return { start: Number(m.slice(0, bar)), id: m.slice(bar + 1) };
      })
      .filter((m) => q.id === undefined || m.id === q.id);
    const sums = await Promise.all(picked.map((m) => this.#sumBucket(this.#bucketKey({ gran: q.gran, dim: q.dim, id: m.id, start: m.start }))));
    for (const s of sums) if (s) out.push(s);
    return out;
  }

  async pruneUsage(before: Readonly<Record<UsageBucket["gran"], number>>, limit: number): Promise<number> {
    let n = 0;
    for (const gran of ["m", "h", "d"] as const) {
      for (const dim of ["key", "account", "group", "model"] as const) {
        if (n >= limit) return n;
        const index = this.#u(`t:${gran}|${dim}`);
        const members: string[] = (await this.#conn.call(index, ["ZRANGEBYSCORE", index, "-inf", `(${before[gran]}`, "LIMIT", "0", String(limit - n)], 0)).map(String);
        if (members.length === 0) continue;
        const b = new Batch();
        for (const m of members) {
          const bar = m.indexOf("|");
          const ref = { gran, dim, id: m.slice(bar + 1), start: Number(m.slice(0, bar)) };
          const one = await this.#sumBucket(this.#bucketKey(ref));
          const owner = dim === "account" ? ref.id : dim === "key" ? (one?.account ?? "") : "";
          if (owner) b.op("ZREM", this.#u(`a:${gran}|${dim}|${owner}`), m);
          b.op("DEL", this.#bucketKey(ref));
          b.op("ZREM", index, m);
          n++;
        }
        await this.#conn.eval(SCRIPTS.cas, b.keys, [JSON.stringify({ c: [], o: b.ops })]);
      }
    }
    return n;
  }

  // ---- maintenance -------------------------------------------------------------------------

  /** Refills due keys and budgets (book first: domain/refill.ts), then on the engine, idempotently per period. */
  refill(now: number): void {
    this.#flushOutboxDone();
    this.#groupRecoveryTick(now);
    const ids = this.book.refillDue(now);
    for (const id of ids) {
      const slot = this.book.index.slotOf(id);
      if (slot < 0 || this.#down) continue;
      const account = this.book.index.accountOf(slot);
      const since = this.book.keyCounters(id).refilledAt;
      const total = this.book.refillTotal(id);
      if (since === null || total === undefined) continue;
      const keys = [this.#a(account)];
      if (!this.#conn.cluster) keys.push(this.#g("feed"));
      this.#conn
        .eval(SCRIPTS.refill, keys, [id, String(since), String(total), this.sid, this.#feedMax, account])
        .then(async (r: string[]) => {
          // Another sidecar refilled this period first: our book's reset is replaced by the engine's values.
          if (Number(r[0]) !== 1) return this.#resyncKey(id, account);
          const [kid, counters] = parseKeyCounters(String(r[1]));
          applyChanges(this.book, [{ kind: "keyCounters", id: kid, counters }], this.#clock());
          if (this.#conn.cluster) this.changes.advance(String(await this.#conn.call(this.#g("feed"), ["XADD", this.#g("feed"), "MAXLEN", "~", this.#feedMax, "*", "s", this.sid, "kc", String(r[1])])));
        })
        .catch((e: unknown) => this.#onError(e));
    }
    for (const g of this.book.resetBudgetsDue(now)) {
      const c = this.book.tables.budgetCounters(g);
      if (!c || this.#down) continue;
      this.#groupCall("reset", g, "", c.since, now, 0, 0)
        .then((r) => this.#groupPublished(g, r))
        .catch((e: unknown) => this.#onError(e));
    }
  }

  /** The book's expired reservations (sync), and a server sweep of a few accounts, round robin. */
  releaseExpired(now: number): number {
    const n = this.book.releaseExpired(now);
    if (this.#opened && !this.#down && !this.#closed) {
      // The account ids, re-read from the book once per round (listAccounts copies every account).
      if (this.#sweepCursor >= this.#sweepIds.length) {
        this.#sweepIds = this.book.tables.listAccounts().map((a) => a.record.id);
        this.#sweepCursor = 0;
      }
      const accounts = this.#sweepIds;
      for (let i = 0; i < 20 && this.#sweepCursor < accounts.length; i++) {
        const a = accounts[this.#sweepCursor++]!;
        this.#conn.eval(SCRIPTS.release, [this.#a(a), this.#a(a, "rsv"), this.#a(a, "rd")], ["", String(now)]).catch((e: unknown) => this.#onError(e));
      }
    }
    return n;
  }

  /** CONSUME reads the idempotency record in the script that charges (AuthzStore.consumeAnswersReplays). */
  readonly consumeAnswersReplays = true;

  // ---- what main.ts reads of the embedded engine too (metrics, logs) --------------------------

  get openReservations(): number {
    return this.book.openReservations;
  }

  /** Reservations the book released early at its cap (a counter). */
  get reservationsEvicted(): number {
    return this.book.reservationsEvicted;
  }

  /** Slots the book's reservation slab holds now. */
  get reservationCapacity(): number {
    return this.book.reservationCapacity;
  }

  /** The book's key index (its size is the key count). */
  get index(): HotIndex {
    return this.book.index;
  }

  /** How the book was loaded (the ready line's "index"): from the keys' hot projections on Redis. */
  readonly loadedFrom = "redis" as const;
}
