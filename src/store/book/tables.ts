// The key book's tables: accounts (with their counters), groups, tokens and prices, as a
// sidecar holds them. Reads return copies; the live account state (account()) and group entry
// (group()) are for the book's own rules only.
import type { AccountRecord, AccountState, GroupBudget, GroupBudgetCounters, GroupRecord, PriceRecord, TokenRecord } from "../../domain/types.js";
import { alreadyExists, notFound } from "../../domain/errors.js";
import { addExact, DEFAULT_RATIO_PPM } from "../../domain/units.js";
import { periodSpec, samePeriod, trackFrom, UTC, type PeriodSpec, type RefillState } from "../../domain/refill.js";
import type { BudgetView, PolicyGroup } from "../../policy/types.js";

/**
 * A group budget as the book holds it: the cap, what the current period spent, what open
 * reservations hold, and its period tracking (domain/refill.ts; `track.since` is the instant
 * `spent` counts from). The policy reads it live (PolicyGroup.budget).
 */
export interface BudgetState extends BudgetView {
  units: number;
  spent: number;
  reserved: number;
  track: RefillState;
}

/** The period of a budget record. */
export function budgetPeriod(b: GroupBudget): PeriodSpec {
  return periodSpec(b.period, b.every ?? 1, b.anchor ?? 0);
}

type GroupEntry = { record: GroupRecord; policy: PolicyGroup; budget: BudgetState | null };

/** An account's counters as an engine stores them (balance = credited − charged). */
export interface AccountCounterValues {
  balance: number;
  credited: number;
  charged: number;
}

export class BookTables {
  readonly #accounts = new Map<string, AccountState>();
  readonly #groups = new Map<string, GroupEntry>();
  readonly #tokens = new Map<string, TokenRecord>();
  readonly #tokensByHash = new Map<string, TokenRecord>();
  readonly #prices = new Map<string, PriceRecord>();

  /** The live state of an account (the book's rules move its counters). */
  account(id: string): AccountState | undefined {
    return this.#accounts.get(id);
  }

  /** The live entry of a group: its record and what the policy reads of it. */
  group(name: string): GroupEntry | undefined {
    return this.#groups.get(name);
  }

  /** The live budget of a group, or undefined when it has none (or is unknown). */
  budget(name: string): BudgetState | undefined {
    return this.#groups.get(name)?.budget ?? undefined;
  }

  /** A group budget's counters as an engine stores them (`gctr`). */
  budgetCounters(name: string): GroupBudgetCounters | undefined {
    const b = this.budget(name);
    return b ? { spent: b.spent, since: b.track.since } : undefined;
  }

  groupEntries(): GroupEntry[] {
    return [...this.#groups.values()];
  }

  hasGroup(name: string): boolean {
    return this.#groups.has(name);
  }

  accountCounters(id: string): AccountCounterValues {
    const c = this.#accounts.get(id)!.counters;
    return { balance: c.balance, credited: c.credited, charged: c.charged };
  }

  hasAccount(id: string): boolean {
    return this.#accounts.has(id);
  }

  getAccount(id: string): AccountState | undefined {
    const a = this.#accounts.get(id);
    return a ? structuredClone(a) : undefined;
  }

  listAccounts(): AccountState[] {
    return [...this.#accounts.values()].map((a) => structuredClone(a)).sort((a, b) => (a.record.id < b.record.id ? -1 : 1));
  }

  /** The stored record of a group (shared: do not modify). */
  groupRecord(name: string): GroupRecord | undefined {
    return this.#groups.get(name)?.record;
  }

  getGroup(name: string): GroupRecord | undefined {
    const g = this.#groups.get(name);
    return g ? copyGroup(g.record) : undefined;
  }

  /** The group's ratio, 1.0 when the group is unknown (a dangling reference). */
  ratioOf(group: string): number {
    return this.#groups.get(group)?.record.ratioPpm ?? DEFAULT_RATIO_PPM;
  }

  getToken(id: string): TokenRecord | undefined {
    return this.#tokens.get(id);
  }

  listTokens(): TokenRecord[] {
    return [...this.#tokens.values()].map((t) => ({ ...t })).sort((a, b) => a.createdAt - b.createdAt);
  }

  findTokenByHash(hashHex: string): TokenRecord | undefined {
    return this.#tokensByHash.get(hashHex);
  }

  getPrice(model: string): PriceRecord | undefined {
    return this.#prices.get(model);
  }

  listPrices(): PriceRecord[] {
    return [...this.#prices.values()].map((p) => ({ ...p })).sort((a, b) => (a.model < b.model ? -1 : 1));
  }

  checkNewAccount(id: string): void {
    if (this.#accounts.has(id)) throw alreadyExists("account", id);
  }

  checkNewGroup(name: string): void {
    if (this.#groups.has(name)) throw alreadyExists("group", name);
  }

  checkNewToken(record: TokenRecord): void {
    if (this.#tokens.has(record.id)) throw alreadyExists("token", record.id);
    if (record.accountId !== null && !this.#accounts.has(record.accountId)) throw notFound("account", record.accountId);
  }

  /** A changed account record (name, zone): its live state keeps its counters and `reserved`. */
  setAccountRecord(record: AccountRecord): void {
    const a = this.#accounts.get(record.id);
    if (!a) throw notFound("account", record.id);
    a.record = record;
  }

  putAccount(record: AccountRecord, c: AccountCounterValues): AccountState {
    const state: AccountState = { record, counters: { balance: c.balance, credited: c.credited, charged: c.charged, reserved: 0 } };
    this.#accounts.set(record.id, state);
    return structuredClone(state);
  }

  /**
   * A group's record (insert, update, load). Its budget, if any, keeps its counters (`stored`
   * when loading) — THE mid-period rule (domain/refill.ts): a budget that is added starts
   * counting at `now` with nothing spent (what its keys spent before does not count against
   * it); a changed period or zone starts its tracking at `now` and keeps what the current
   * period spent (no free reset); changed units apply at once to what was spent. Open
   * reservations stay held against it.
   */
  putGroup(rec: GroupRecord, now: number, stored?: GroupBudgetCounters): void {
    const old = this.#groups.get(rec.name);
    let budget: BudgetState | null = null;
    if (rec.budget) {
      const period = budgetPeriod(rec.budget);
      const tz = rec.budget.timezone ?? UTC;
      const prev = old?.budget;
      if (stored) budget = { units: rec.budget.units, spent: stored.spent, reserved: prev?.reserved ?? 0, track: trackFrom(period, tz, rec.budget.units, stored.since) };
      else if (prev && samePeriod(prev.track.period, prev.track.tz, period, tz)) budget = { units: rec.budget.units, spent: prev.spent, reserved: prev.reserved, track: prev.track };
      else if (prev) budget = { units: rec.budget.units, spent: prev.spent, reserved: prev.reserved, track: trackFrom(period, tz, rec.budget.units, now) };
      else budget = { units: rec.budget.units, spent: 0, reserved: 0, track: trackFrom(period, tz, rec.budget.units, now) };
      // The live object stays the same where one existed: open reservations point at it.
      if (prev) budget = Object.assign(prev, budget);
    }
    this.#groups.set(rec.name, { record: rec, policy: { ratioPpm: rec.ratioPpm, models: rec.models.length ? new Set(rec.models) : null, budget }, budget });
  }

  /** Whether putting `rec` (re)starts its budget's tracking (its counters must then be written with it). */
  budgetChanges(rec: GroupRecord): boolean {
    const prev = this.#groups.get(rec.name)?.budget;
    if (!rec.budget) return false;
    return !prev || !samePeriod(prev.track.period, prev.track.tz, budgetPeriod(rec.budget), rec.budget.timezone ?? UTC);
  }

  deleteGroup(name: string): void {
    this.#groups.delete(name);
  }

  putToken(t: TokenRecord): void {
    this.#tokens.set(t.id, t);
    this.#tokensByHash.set(t.secretHash, t);
  }

  deleteToken(t: TokenRecord): void {
    this.#tokens.delete(t.id);
    this.#tokensByHash.delete(t.secretHash);
  }

  putPrice(p: PriceRecord): void {
    this.#prices.set(p.model, p);
  }

  deletePrice(model: string): void {
    this.#prices.delete(model);
  }

  /**
   * Replaces accounts, groups, tokens and prices by what the engine holds. Accounts that stay keep
   * their `reserved` (open reservations hold it).
   */
  loadTables(
    accounts: readonly [AccountRecord, AccountCounterValues][],
    groups: readonly GroupRecord[],
    tokens: readonly TokenRecord[],
    prices: readonly PriceRecord[],
    now = 0,
    budgets: ReadonlyMap<string, GroupBudgetCounters> = new Map(),
  ): void {
    const seen = new Set<string>();
    for (const [record, c] of accounts) {
      seen.add(record.id);
      const counters = { credited: c.credited, charged: c.charged, balance: c.credited - c.charged };
      const a = this.#accounts.get(record.id);
      if (a) {
        a.record = record;
        Object.assign(a.counters, counters);
      } else this.#accounts.set(record.id, { record, counters: { ...counters, reserved: 0 } });
    }
    for (const id of [...this.#accounts.keys()]) if (!seen.has(id)) this.#accounts.delete(id);
    // Budgets of groups that stay keep their live objects (open reservations point at them).
    const names = new Set(groups.map((g) => g.name));
    for (const n of [...this.#groups.keys()]) if (!names.has(n)) this.#groups.delete(n);
    for (const g of groups) this.putGroup(g, now, budgets.get(g.name) ?? (g.budget ? { spent: 0, since: now } : undefined));
    this.#tokens.clear();
    this.#tokensByHash.clear();
    for (const t of tokens) this.putToken(t);
    this.#prices.clear();
    for (const p of prices) this.#prices.set(p.model, p);
  }

  /** balance += delta (refused whole when a counter would pass 2^53 − 1); returns the state before. */
  adjustBalance(id: string, delta: number): AccountState {
    const a = this.#accounts.get(id);
    if (!a) throw notFound("account", id);
    const before = structuredClone(a);
    const credited = addExact(a.counters.credited, delta, "delta", `account ${id}'s credited total`);
    addExact(credited, -a.counters.charged, "delta", `account ${id}'s balance`);
    a.counters.credited = credited;
    a.counters.balance = a.counters.credited - a.counters.charged;
    return before;
  }
}

/** A copy of a group record (lists and budget copied). */
export function copyGroup(r: GroupRecord): GroupRecord {
  const out: GroupRecord = { ...r, models: [...r.models], accounts: [...(r.accounts ?? [])] };
  if (r.budget) out.budget = { ...r.budget };
  return out;
}
