// Storage interfaces. Services and transports know storage only through these.
//
// Every method is atomic: a mutation either commits whole (records, indexes
// and its audit entry in one durable batch) or writes nothing. Where a change
// depends on the current value, the caller passes a *pure* function and the
// store applies it inside its own critical section (compare-and-set); services
// never read, modify and write back. The contract suite
// (test/contract/store.contract.ts) tests exactly this surface: a second engine
// passes it unchanged.
//
// ## How an engine is built (one copy of each rule)
//
// Business rules are written once, in TypeScript, and never in an engine:
//   - policy/admit.ts     the admission money rule (balance, quota, limits, retry-after)
//   - policy/pricing.ts   what a request costs; resolvePrice(), THE meaning of "priced"
//   - domain/refill.ts    period boundaries (zone, anchor, every N days): when a key's quota is
//                         refilled and to what, when a group budget resets
//   - store/book/         the key book: what a sidecar holds in memory (hot index, accounts,
//                         groups, tokens, prices, open reservations, refill states, tombstones)
//                         and every rule over it, as synchronous (so atomic in-process) steps:
//                         lookup, reserve, release/expiry, Consume target resolution, charge,
//                         balance moves, refills, the admin checks, load/reload.
// An engine persists and reloads what the book holds, and does on its side only what must be
// atomic there. The embedded LevelDB engine (store/level/) is one process's engine: the book IS
// the authority, one serial group-committed writer persists its absolute values in submission
// order, so disk always equals memory after a batch.
//
// ## What a shared engine (a fleet of sidecars on one Redis) must do atomically
//
// With several sidecars the book is a cache and the engine the authority. These primitives must
// then be atomic ON THE ENGINE (MULTI/EXEC or one Lua script each), with the same outcome the
// book's step gives in-process:
//   1. reserve: re-check admit() against the engine's key quota, account balance, the key's
//      group budget (spent + held in its current period) and the key's rate/concurrency
//      counters, and hold the units on all three money counters, in one step. Concurrent
//      reservations from any sidecar never together exceed any limit.
//   2. settle/consume: exactly once per request id — the ledger entry doubles as the
//      idempotency record; the charge to key, account and group budget, the settlement of the
//      reservation and the ledger entry commit together, or not at all; a replay returns the
//      first record.
//      A deleted key's charge goes to the account named by its tombstone.
//   3. admin compare-and-set: updateKeys/deleteKeys/updateGroup/adjustBalance apply a pure
//      change to the CURRENT value (a version or WATCH), all-or-none across the ids given.
// ## How a sidecar learns of changes made elsewhere: the change feed (ChangeFeed below)
//   Every committed mutation and counter move is published with its ABSOLUTE values
//   (BookChange), in commit order, and each sidecar's book applies the batches other sidecars
//   committed with the same put*/remove*/load* steps the LevelDB engine uses after its own
//   commits (store/book/applyChange.ts: the book never derives state from deltas it did not
//   see; applying a change twice is harmless). A sidecar loads, notes the feed's position() first, and subscribes from it:
//   nothing committed after its load is missed. The embedded LevelDB engine is one process,
//   the only writer of its data, so its feed (store/level/changeFeed.ts) delivers nothing; it
//   still translates its committed batches into the BookChanges it would publish (onPublish),
//   and the contract suite feeds a second book from them through the apply step.
//   Refills and reservation expiry run from each sidecar's scheduler (service/scheduler.ts)
//   and must be idempotent on a shared engine: a refill names the period it refills for.
import type {
  AccountState,
  AccountRecord,
  AuditRecord,
  GroupBudgetCounters,
  GroupRecord,
  KeyRecord,
  KeyState,
  PriceRecord,
  TokenRecord,
} from "../domain/types.js";
import type { PolicyAccount, PolicyGroup, PolicyKey, RateView } from "../policy/types.js";

export interface AuditInput {
  actor: string;
  action: string;
  target: string;
  /** The account the entry is about (key mutations and reveals): what an account token may list. */
  account?: string;
  /** Serialised as JSON. Never pass secrets (records carry only hashes and ciphertext, which are stripped). */
  before?: unknown;
  after?: unknown;
  detail?: string;
}

/** A key change: the new record and, optionally, a new counter value. */
export interface KeyChange {
  record: KeyRecord;
  /** Add to the key's remaining quota (e.g. the quota total was raised). */
  remainingDelta?: number;
  /** Set the remaining quota (e.g. switched from unlimited to a total). */
  remainingSet?: number;
}

export interface ListAuditQuery {
  target?: string;
  actor?: string;
  /**
   * Only entries about this account's keys (their `account`; entries written before that
   * field existed: a key target whose recorded record, or live key, belongs to it).
   */
  account?: string;
  since?: number;
  /** Return entries with id < before (newest first paging). */
  before?: string;
  limit: number;
}

export interface GroupWithCount extends GroupRecord {
  keyCount: number;
  /** With a budget: what the current period spent, what open reservations hold, when it resets. */
  budgetUse?: { spent: number; reserved: number; resetsAt: number };
}

/** Everything Check needs about one key, read from memory in one step. */
export interface HotSnapshot {
  /** Opaque handle for reserve(). */
  handle: number;
  key: PolicyKey;
  group: PolicyGroup | undefined;
  account: PolicyAccount | undefined;
  rate: RateView;
}

export type ReserveResult =
  | { ok: true; reservationId: string; units: number; keyRemaining: number; accountBalance: number }
  | { ok: false; reason: "KEY_INVALID" | "KEY_QUOTA_EXHAUSTED" | "GROUP_BUDGET_EXHAUSTED" | "ACCOUNT_BALANCE_EXHAUSTED" | "RATE_LIMITED"; retryAfterMs: number };

export interface ReserveRequest {
  handle: number;
  keyId: string;
  units: number;
  now: number;
  ttlMs: number;
}

export type StoreHealth = "SERVING" | "NOT_SERVING";

/**
 * One charged request: the usage ledger entry, which is also the idempotency
 * record of its request id (a replay returns it unchanged).
 */
export interface ConsumeRecord {
  requestId: string;
  keyId: string;
  accountId: string;
  group: string;
  model: string;
  inputTokens: number;
  outputTokens: number;
  units: number;
  at: number;
  /** The settled reservation ("" when none). */
  reservationId: string;
  /** State right after this charge (what the first answer said). */
  keyRemaining: number;
  keyUnlimited: boolean;
  accountBalance: number;
  /**
   * The token kinds charged apart (store/ledgerEntry.ts): of inputTokens, cache reads and
   * writes; of outputTokens, reasoning. Kept only when not 0; absent in records from before
   * kinds were kept (read as 0).
   */
  cacheReadTokens?: number;
  cacheWriteTokens?: number;
  reasoningTokens?: number;
  /**
   * Who reported the usage: an app's Consume or ext_proc metering. Absent in records from
   * before it was kept: ledgerSource() tells those apart by their request id.
   */
  source?: LedgerSource;
}

/** Where a ledger entry's usage came from. */
export type LedgerSource = "consume" | "ext_proc";

/** A key resolved from a Consume target, with what pricing needs. */
export interface KeyRef {
  keyId: string;
  accountId: string;
  group: string;
  ratioPpm: number;
  unlimited: boolean;
  /** The live reservation to settle, or "" when none is open (expired, restarted, or none given). */
  reservationId: string;
  /** The key was deleted: the charge goes to its account (and the ledger) only. */
  deleted: boolean;
}

export type ConsumeTarget = { kind: "reservation"; id: string } | { kind: "key"; id: string } | { kind: "secret"; hash: Uint8Array };

export interface ConsumeInput {
  requestId: string;
  keyId: string;
  reservationId: string;
  model: string;
  inputTokens: number;
  outputTokens: number;
  units: number;
  now: number;
  /** Of inputTokens / outputTokens: the kinds priced apart (0 or absent = none). */
  cacheReadTokens?: number;
  cacheWriteTokens?: number;
  reasoningTokens?: number;
  /** Who reported the usage (absent = "consume"). */
  source?: LedgerSource;
}

/** A usage bucket as stored (see UsageStore). */
/** The counters of one usage bucket (and of every usage row built from buckets). */
export interface UsageCounters {
  requests: number;
  denied: number;
  denies: Record<string, number>;
  inputTokens: number;
  outputTokens: number;
  units: number;
  consumed: number;
  /**
   * The token kinds (parts of inputTokens / outputTokens), kept only once not 0: absent in
   * buckets from before kinds were kept, and in buckets without any (read as 0).
   */
  cacheReadTokens?: number;
  cacheWriteTokens?: number;
  reasoningTokens?: number;
}

export interface UsageBucket extends UsageCounters {
  /** "m" | "h" | "d" */
  gran: "m" | "h" | "d";
  /** "key" | "account" | "group" | "model" */
  dim: "key" | "account" | "group" | "model";
  id: string;
  /**
   * The account of a key row (key rows are also indexed by account; see UsageStore). Absent
   * for other dimensions, and for rows of keys whose account was not known.
   */
  account?: string;
  start: number;
}

/** Keys, accounts, groups, tokens, prices and the audit log. */
/** What a listing filter may read of a key without its record (keyIdsByCreation). */
export interface KeyIndexView {
  enabled: boolean;
  expiresAt: number | null;
  group: string;
}

export interface AdminStore {
  insertKey(record: KeyRecord, audit: AuditInput): Promise<KeyState>;
  getKey(id: string): Promise<KeyState | undefined>;
  /** All keys (optionally of one account), in id order. */
  scanKeys(accountId?: string): AsyncIterable<KeyState>;
  /**
   * The ids of the keys (of one account, or all) that `keep` accepts, by creation time — newest
   * or oldest first, ties in id order — from what the sidecar holds in memory, without reading a
   * record (ListKeys' pages in creation order; store/book/keyOrder.ts).
   */
  keyIdsByCreation(accountId: string | undefined, newestFirst: boolean, keep: (v: KeyIndexView) => boolean): string[];
  /**
   * Applies `change` to every key in `ids` atomically: all or none. `change`
   * runs inside the store's critical section and may throw a SidecarError
   * (e.g. NOT_FOUND for a key of another account) to abort the whole call.
   */
  updateKeys(ids: readonly string[], change: (current: KeyState) => KeyChange, audit: (before: KeyState, after: KeyState) => AuditInput): Promise<KeyState[]>;
  /** Deletes keys atomically; `check` may throw to abort. Their secrets stop working at once. */
  deleteKeys(ids: readonly string[], check: (current: KeyState) => void, audit: (before: KeyState) => AuditInput): Promise<void>;

  insertAccount(record: AccountRecord, initialBalance: number, audit: AuditInput): Promise<AccountState>;
  getAccount(id: string): AccountState | undefined;
  listAccounts(): AccountState[];
  /**
   * Changes an account's record (name, time zone) atomically with its audit entry; `change` is
   * pure (runs in the store's critical section on the current record, may throw to abort) and
   * must keep the id. The counters are untouched. When the time zone changes, every key of the
   * account with a refill period restarts its period at the change in the new zone (its
   * `refilledAt` := now, remaining as it is; first refill at the new zone's next boundary: THE
   * mid-period rule, domain/refill.ts; KeyBook.retimeAccountKeys) and those key counters commit
   * in the same batch — so a reload, or another sidecar, never derives a refill from the old
   * period start counted in the new zone.
   */
  updateAccount(id: string, change: (current: AccountRecord) => AccountRecord, audit: (before: AccountRecord, after: AccountRecord) => AuditInput): Promise<AccountState>;
  /** balance += delta atomically, with an audit entry. */
  adjustBalance(id: string, delta: number, audit: AuditInput): Promise<AccountState>;

  insertGroup(record: GroupRecord, audit: AuditInput): Promise<GroupRecord>;
  getGroup(name: string): GroupRecord | undefined;
  /** Every group; keyCount counts the keys of `accountId` only when given, else all keys. */
  listGroups(accountId?: string): GroupWithCount[];
  updateGroup(name: string, change: (current: GroupRecord) => GroupRecord, audit: (before: GroupRecord, after: GroupRecord) => AuditInput): Promise<GroupRecord>;
  /** FAILED_PRECONDITION when a key still uses the group. */
  deleteGroup(name: string, audit: AuditInput): Promise<void>;

  insertToken(record: TokenRecord, audit: AuditInput): Promise<TokenRecord>;
  listTokens(): TokenRecord[];
  deleteToken(id: string, audit: AuditInput): Promise<void>;
  /** Memory lookup by SHA-256 hex of the token secret. */
  findTokenByHash(hashHex: string): TokenRecord | undefined;

  setPrice(record: PriceRecord, audit: AuditInput): Promise<PriceRecord>;
  getPrice(model: string): PriceRecord | undefined;
  listPrices(): PriceRecord[];
  deletePrice(model: string, audit: AuditInput): Promise<void>;

  listAudit(query: ListAuditQuery): Promise<AuditRecord[]>;
  /** Appends audit entries on their own, in one batch (e.g. RevealKeys, which changes nothing else). */
  appendAudit(audit: AuditInput | readonly AuditInput[]): Promise<void>;
}

/** The hot path: served from memory, atomic on counters. */
export interface AuthzStore {
  /** Sync memory lookup by SHA-256 of the presented secret; undefined = unknown/deleted/grace over. */
  lookup(secretHash: Uint8Array, now: number): HotSnapshot | undefined;
  /**
   * Atomically re-checks quota, group budget, balance and limits and holds `units` against
   * the key quota, the group budget (when its group has one) and the account balance.
   * Concurrent reservations can never together exceed any of them.
   *
   * The embedded engine answers synchronously from its book (no promise, no allocation of one
   * on the hot path); a shared engine (Redis) answers with a promise: one round trip that
   * re-checks and holds on the engine. Callers handle both (service/authorizer.ts).
   */
  reserve(req: ReserveRequest): ReserveResult | Promise<ReserveResult>;
  /** Releases an open reservation without charging (e.g. the request failed upstream). */
  release(reservationId: string): boolean;
  /** When a key's quota is next refilled (memory; its account's zone); null = no refill. Read on a quota deny only. */
  nextRefillAt?(keyId: string): number | null;
  /**
   * When a group's budget period next resets (memory; the budget's own zone, domain/refill.ts);
   * null = the group is unknown or has no budget. Read on a GROUP_BUDGET_EXHAUSTED deny only.
   */
  groupBudgetResetAt?(group: string): number | null;
  /** The units an open reservation holds (its estimate); undefined when it is not open. */
  reservationUnits?(reservationId: string): number | undefined;
  getPrice(model: string): PriceRecord | undefined;

  /** Resolves a Consume target to its key (sync, memory). undefined = unknown key/reservation. */
  resolveConsumeTarget(target: ConsumeTarget, now: number): KeyRef | undefined;
  /**
   * A reservation or key id target naming a DELETED key: what deleteKeys kept of it (its
   * account, group and ratio), so a request admitted before the delete is still charged to
   * the account. undefined = no such deleted key (and always for a secret: it is gone).
   */
  resolveDeletedTarget(target: ConsumeTarget): Promise<KeyRef | undefined>;
  /** The ledger entry of a request id, if it was charged. */
  findConsume(requestId: string): Promise<ConsumeRecord | undefined>;
  /**
   * consume() reads the request id's record in the same atomic step that charges (a replay
   * resolves replayed = true), so ConsumeService asks findConsume first only when a Consume
   * cannot be charged as given: one round trip per Consume on a shared engine. Unset: findConsume
   * first (cheap in memory and on local disk).
   */
  readonly consumeAnswersReplays?: boolean;
  /**
   * Charges `units` to the key and its account exactly once per request id, in
   * one durable batch with the ledger entry, settling the reservation. Always
   * charges (an admitted request was delivered), even past zero; a deleted key's charge goes
   * to its account and the ledger only (its tombstone names the account). Resolves after
   * the batch is synced; a concurrent or later call with the same request id
   * resolves to the first record with replayed = true.
   */
  consume(input: ConsumeInput): Promise<{ record: ConsumeRecord; replayed: boolean }>;
  /** The whole ledger (reconciliation, tests). */
  scanLedger(): AsyncIterable<ConsumeRecord>;
}

/** What queryUsageBuckets reads. */
export interface UsageQueryRange {
  gran: UsageBucket["gran"];
  dim: UsageBucket["dim"];
  /**
   * Key or account rows of this account only: an engine must read no other account's
   * entries for it (an index by account and time), so a small account's query costs what it
   * returns, whatever the other tenants have stored.
   */
  account?: string;
  /** Only this id (filtered within the range read). */
  id?: string;
  since: number;
  until: number;
}

/**
 * Usage history buckets (aggregates; the ledger is the billing truth). Engines index them by
 * granularity, dimension and time (and key and account rows also by account), so a query
 * reads the range it asks for, not the whole history.
 */
export interface UsageStore {
  /**
   * Writes absolute bucket values (replacing what is stored) — this writer's own. A shared engine
   * keeps each writer's (sidecar's) values apart and queries return their sum, so sidecars never
   * overwrite each other; the embedded engine has one writer, so its own values are the totals.
   */
  putUsageBuckets(buckets: readonly UsageBucket[]): Promise<void>;
  /**
   * The buckets with exactly these coordinates as THIS writer stored them (undefined where none), in
   * order: what UsageRecorder seeds its absolute values from (service/usage.ts). A new writer (a
   * restarted sidecar) has none, so it counts from zero beside its previous incarnation's values.
   */
  getUsageBuckets(refs: readonly Pick<UsageBucket, "gran" | "dim" | "id" | "start">[]): Promise<(UsageBucket | undefined)[]>;
  /** Buckets of one granularity and dimension with start in [since, until) (see UsageQueryRange). */
  queryUsageBuckets(q: UsageQueryRange): Promise<UsageBucket[]>;
  /**
   * Deletes up to `limit` buckets whose start is before `before[gran]`, oldest first per
   * granularity and dimension; returns how many. Called in small batches (once a second).
   */
  pruneUsage(before: Readonly<Record<UsageBucket["gran"], number>>, limit: number): Promise<number>;
}

/**
 * The steps of an engine's periodic maintenance. The engine owns no timer: the service layer's
 * scheduler (service/scheduler.ts, maintainStore) runs them once a second.
 */
export interface StoreMaintenance {
  /** Releases open reservations whose TTL passed (their Consume never came); returns how many. */
  releaseExpired(now: number): number;
  /** Refills every key whose refill period turned (domain/refill.ts) and persists their counters. */
  refill(now: number): void;
  /** A write failed: the engine refuses writes until recover() has succeeded. */
  readonly needsRecovery: boolean;
  /** Brings the engine back after a failed write (reopen, reload memory); failures go to its onError. */
  recover(): Promise<void>;
  /** An engine's upkeep of its own files, once a second (LevelDB: store/level/deferredUnlink.ts's sweep); absent where there is none. */
  maintainFiles?(): void;
  /**
   * An engine that keeps the ledger only for a window (Redis: the idempotency window) moves older
   * entries to durable storage that scanLedger still reads, and only then drops them; resolves
   * with how many it moved. Absent on an engine that keeps the whole ledger (LevelDB). Run
   * periodically (service/scheduler.ts); safe from several sidecars at once (one does the work).
   */
  archiveLedger?(): Promise<number>;
}

// ---- the change feed (see the file comment) ----------------------------------------------

/** A key's counters, absolute (what the key book holds). */
export interface FeedKeyCounters {
  remaining: number;
  used: number;
  credited: number;
  lastUsedAt: number | null;
  /** Start of the key's current refill period (null: no refill). */
  refilledAt: number | null;
  /**
   * The engine's sequence of the key's account at these values (Redis: +1 on every commit that
   * moves the account's or its keys' counters); a book applies no values older than the ones it
   * holds (book/applyChange.ts). Absent: always applied (the embedded engine, a load).
   */
  seq?: number;
}

/** An account's counters, absolute. */
export interface FeedAccountCounters {
  balance: number;
  credited: number;
  charged: number;
  /** The account's sequence at these values (see FeedKeyCounters.seq). */
  seq?: number;
}

/** One committed change, with absolute values: what a book applies to match the authority. */
export type BookChange =
  /** Created, updated, enabled/disabled, rotated: the whole record and its counters. */
  | { kind: "key"; record: KeyRecord; counters: FeedKeyCounters }
  /** A charge, refill or quota move: the key's counters after it. */
  | { kind: "keyCounters"; id: string; counters: FeedKeyCounters }
  /** Deleted: its secrets stop working; its tombstone (account, group) still takes late charges. */
  | { kind: "keyDeleted"; id: string; accountId: string; group: string; at: number }
  | { kind: "account"; record: AccountRecord; counters: FeedAccountCounters }
  | { kind: "accountCounters"; id: string; counters: FeedAccountCounters }
  /** A group's record; a budgeted group's counters follow as groupBudget when they (re)start. */
  | { kind: "group"; record: GroupRecord }
  /** A budgeted group's counters after a charge, a period reset or a (re)started budget. */
  | { kind: "groupBudget"; name: string; counters: GroupBudgetCounters }
  | { kind: "groupDeleted"; name: string }
  | { kind: "token"; record: TokenRecord }
  | { kind: "tokenDeleted"; id: string }
  | { kind: "price"; record: PriceRecord }
  | { kind: "priceDeleted"; model: string }
  /**
   * An open reservation was settled (charged) or released on the engine, possibly by another
   * sidecar than the one that opened it: the book that caches it drops its hold (else that
   * sidecar would count the hold against the key and account until its TTL).
   */
  | { kind: "reservationSettled"; id: string };

/** The changes of one committed batch, and the feed's position after it. */
export interface ChangeBatch {
  position: string;
  changes: readonly BookChange[];
}

/**
 * How a sidecar's book learns of changes committed by OTHER sidecars on a shared engine.
 * Reservations are not in the feed: they are atomic on the engine (reserve, primitive 1),
 * a book only caches them.
 */
export interface ChangeFeed {
  /** The feed's current position (opaque): note it before loading, subscribe from it after. */
  position(): string;
  /**
   * Calls `apply` with every batch committed by another sidecar after `from`, in commit order,
   * each once; never with this sidecar's own commits (its book applied them already). Returns
   * the unsubscribe function.
   */
  subscribe(from: string, apply: (batch: ChangeBatch) => void): () => void;
}

/**
 * Alert marks: which threshold alerts were already sent (the webhooks' quota.threshold and
 * balance.threshold, service/webhooks.ts), kept by the store so a restart neither re-sends nor
 * forgets them and every sidecar on a shared engine sends each one once.
 */
export interface AlertMarkStore {
  /**
   * Sets the mark `id` (1..200 printable ASCII characters; the webhooks pass the alert's event
   * id, a hash of target, threshold and period) unless it is set and not expired. Resolves true
   * when THIS call set it (the caller sends the alert), false when it was already set — by this
   * sidecar before a restart, or by another. Atomic: of concurrent claims of one id, from any
   * sidecar, exactly one resolves true (a shared engine: SET NX PX, or one script). The mark
   * counts until `expiresAt` (ms since the epoch, the store's clock); after it a claim sets it
   * again, and the engine may delete it at any time. Durable once resolved. Throws TypeError for
   * a bad id.
   */
  claimAlertMark(id: string, expiresAt: number): Promise<boolean>;
}

export interface Store extends AdminStore, AuthzStore, UsageStore, StoreMaintenance, AlertMarkStore {
  /** Changes committed elsewhere (see ChangeFeed). */
  readonly changes: ChangeFeed;
  open(now: number): Promise<void>;
  close(): Promise<void>;
  health(): StoreHealth;
  /** Subscribe to health changes. */
  onHealth(listener: (h: StoreHealth) => void): void;
}
