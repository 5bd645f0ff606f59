// The key list model: search + filters over every loaded key, client side, so
// the list narrows on each keystroke without a round trip.
//
// Performance contract (100k keys): `indexKeys` runs once per load (O(n),
// lower-casing each name/id once); `filterKeys` is one O(n) pass of cheap
// comparisons and a substring test on the precomputed haystack, reading the key
// objects only for the group, account and model filters; no search and no filter
// is the prebuilt list of every row (no pass). The caller memoises both, so moving
// the cursor never re-filters, and `KeyFilterCache` keeps the results of the query
// being typed: a character typed narrows the last result, a backspace is a lookup.
import { KeyStatus, type Key } from "../../src/gen/aisa/v1/types.js";
import { allowsModel, matchesStatusFilter, type KeyUsability } from "../../src/domain/keyView.js";

/** "enabled" = usable now (enabled, not expired); "expired" = past its expiry (src/domain/keyView.ts). */
export type StatusFilter = "any" | KeyUsability;
export type ExpiredFilter = "any" | "expired" | "active";

export interface KeyFilters {
  readonly status: StatusFilter;
  /** Group name, or null for any. */
  readonly group: string | null;
  /** Account id, or null for any. */
  readonly accountId: string | null;
  readonly expired: ExpiredFilter;
  /** Keys that may use this model by their own AND their group's lists (as Check), or null for any. */
  readonly model: string | null;
}

export const NO_FILTERS: KeyFilters = { status: "any", group: null, accountId: null, expired: "any", model: null };

export interface KeyIndex {
  readonly keys: readonly Key[];
  /** Lower-cased "name\0id" per key: what `/` searches. */
  readonly haystacks: readonly string[];
  /** Expiry per key in epoch ms; +Infinity for never. */
  readonly expiresMs: Float64Array;
  /** 1 where the stored switch is on (KEY_STATUS_ENABLED): the status filter reads no key object. */
  readonly enabled: Uint8Array;
  /** Every row, in order: the list with no search and no filter. */
  readonly all: readonly number[];
}

export function indexKeys(keys: readonly Key[]): KeyIndex {
  const haystacks = new Array<string>(keys.length);
  const expiresMs = new Float64Array(keys.length);
  const enabled = new Uint8Array(keys.length);
  const all = new Array<number>(keys.length);
  for (let i = 0; i < keys.length; i++) {
    const k = keys[i] as Key;
    haystacks[i] = `${k.name}\u0000${k.id}`.toLowerCase();
    expiresMs[i] = k.expiresAt ? k.expiresAt.getTime() : Number.POSITIVE_INFINITY;
    enabled[i] = k.status === KeyStatus.KEY_STATUS_ENABLED ? 1 : 0;
    all[i] = i;
  }
  return { keys, haystacks, expiresMs, enabled, all };
}

/** The search text as it is matched (trimmed, lower-cased). */
export function normalizeQuery(query: string): string {
  return query.trim().toLowerCase();
}

/**
 * Indices (into index.keys, in order) of the keys matching the search and filters. `within`
 * (ascending indices) limits the pass to those keys: a previous result whose query this query
 * extends, with the same index, filters and time (see `KeyFilterCache`).
 */
export function filterKeys(index: KeyIndex, query: string, filters: KeyFilters, now: number, within?: readonly number[]): readonly number[] {
  const q = normalizeQuery(query);
  if (q === "" && activeFilterCount(filters) === 0) return within ?? index.all;
  const { keys, haystacks, expiresMs, enabled } = index;
  const wantStatus = filters.status === "any" ? null : filters.status;
  const objects = filters.group !== null || filters.accountId !== null || filters.model !== null;
  const out: number[] = [];
  const n = within ? within.length : keys.length;
  for (let j = 0; j < n; j++) {
    const i = within ? (within[j] as number) : j;
    if (q !== "" && !(haystacks[i] as string).includes(q)) continue;
    const expired = (expiresMs[i] as number) <= now;
    if (wantStatus !== null && !matchesStatusFilter(wantStatus, enabled[i] === 1, expired)) continue;
    if (filters.expired !== "any" && expired !== (filters.expired === "expired")) continue;
    if (objects) {
      const k = keys[i] as Key;
      if (filters.group !== null && k.group !== filters.group) continue;
      if (filters.accountId !== null && k.accountId !== filters.accountId) continue;
      if (filters.model !== null && !allowsModel({ models: k.effectiveModels, restricted: k.modelsRestricted }, filters.model)) continue;
    }
    out.push(i);
  }
  return out;
}

/** Whether a filter compares expiry with the clock (else a result holds at any time). */
function timeDependent(f: KeyFilters): boolean {
  return f.status !== "any" || f.expired !== "any";
}

/** Results kept for the query being typed (longer queries are typed one character at a time). */
const MAX_KEPT_QUERIES = 64;

/**
 * filterKeys with the results of the query being typed kept, for one index, set of filters and
 * (when a filter reads the clock) time: a stack of results, each for a query extending the one
 * below it. A character typed only re-tests the keys the shorter query matched — every key
 * containing "abc" contains "ab" — so it costs the matches left, not every loaded key; a
 * backspace returns the shorter query's result kept below (no pass); a query that is not an
 * extension drops the results it does not extend and narrows from the longest one left (at worst
 * a full pass). Same result as filterKeys (test/tui/windowing.test.tsx checks random sequences).
 */
export class KeyFilterCache {
  #index: KeyIndex | null = null;
  #filters: KeyFilters | null = null;
  #now = Number.NaN;
  readonly #kept: { readonly q: string; readonly out: readonly number[] }[] = [];

  filter(index: KeyIndex, query: string, filters: KeyFilters, now: number): readonly number[] {
    const q = normalizeQuery(query);
    if (index !== this.#index || filters !== this.#filters || (now !== this.#now && timeDependent(filters))) {
      this.#index = index;
      this.#filters = filters;
      this.#kept.length = 0;
    }
    this.#now = now;
    const kept = this.#kept;
    while (kept.length > 0 && !q.startsWith((kept[kept.length - 1] as { q: string }).q)) kept.pop();
    const top = kept[kept.length - 1];
    if (top && top.q === q) return top.out;
    const out = filterKeys(index, q, filters, now, top?.out);
    if (kept.length >= MAX_KEPT_QUERIES) kept.shift();
    kept.push({ q, out });
    return out;
  }
}

export function activeFilterCount(f: KeyFilters): number {
  return (
    (f.status !== "any" ? 1 : 0) +
    (f.group !== null ? 1 : 0) +
    (f.accountId !== null ? 1 : 0) +
    (f.expired !== "any" ? 1 : 0) +
    (f.model !== null ? 1 : 0)
  );
}

/** "status:disabled group:prod" (empty when no filter is set). */
export function describeFilters(f: KeyFilters): string {
  const parts: string[] = [];
  if (f.status !== "any") parts.push(`status:${f.status}`);
  if (f.group !== null) parts.push(`group:${f.group}`);
  if (f.accountId !== null) parts.push(`account:${f.accountId}`);
  if (f.expired !== "any") parts.push(f.expired === "expired" ? "expired" : "not expired");
  if (f.model !== null) parts.push(`model:${f.model}`);
  return parts.join(" ");
}

/** How many marked ids are not among the visible rows (k9s: "N currently hidden by filter"). */
export function hiddenMarkCount(marks: ReadonlySet<string>, index: KeyIndex, visible: readonly number[]): number {
  if (marks.size === 0) return 0;
  let shown = 0;
  for (const i of visible) if (marks.has((index.keys[i] as Key).id)) shown++;
  return marks.size - shown;
}
