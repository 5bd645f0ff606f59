// The key list model: search + filters over every loaded key, client side, so
// the list narrows on each keystroke without a round trip.
//
// Performance contract (100k keys): `indexKeys` runs once per load (O(n),
// lower-casing each name/id once); `filterKeys` is one O(n) pass of cheap
// comparisons and a substring test on the precomputed haystack. The caller
// memoises both, so moving the cursor never re-filters.
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
}

export function indexKeys(keys: readonly Key[]): KeyIndex {
  const haystacks = new Array<string>(keys.length);
  const expiresMs = new Float64Array(keys.length);
  for (let i = 0; i < keys.length; i++) {
    const k = keys[i] as Key;
    haystacks[i] = `${k.name}\u0000${k.id}`.toLowerCase();
    expiresMs[i] = k.expiresAt ? k.expiresAt.getTime() : Number.POSITIVE_INFINITY;
  }
  return { keys, haystacks, expiresMs };
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
export function filterKeys(index: KeyIndex, query: string, filters: KeyFilters, now: number, within?: readonly number[]): number[] {
  const q = normalizeQuery(query);
  const { keys, haystacks, expiresMs } = index;
  const wantStatus = filters.status === "any" ? null : filters.status;
  const out: number[] = [];
  const n = within ? within.length : keys.length;
  for (let j = 0; j < n; j++) {
    const i = within ? (within[j] as number) : j;
    if (q !== "" && !(haystacks[i] as string).includes(q)) continue;
    const k = keys[i] as Key;
    const expired = (expiresMs[i] as number) <= now;
    if (wantStatus !== null && !matchesStatusFilter(wantStatus, k.status === KeyStatus.KEY_STATUS_ENABLED, expired)) continue;
    if (filters.group !== null && k.group !== filters.group) continue;
    if (filters.accountId !== null && k.accountId !== filters.accountId) continue;
    if (filters.expired !== "any" && expired !== (filters.expired === "expired")) continue;
    if (filters.model !== null && !allowsModel({ models: k.effectiveModels, restricted: k.modelsRestricted }, filters.model)) continue;
    out.push(i);
  }
  return out;
}

/**
 * filterKeys with the last result kept: a query that extends the previous one (typing in the
 * search) only re-tests the keys that matched it — every key containing "abc" contains "ab" —
 * so each keystroke costs the matches left, not every loaded key. Same result as filterKeys.
 */
export class KeyFilterCache {
  #last: { index: KeyIndex; q: string; filters: KeyFilters; now: number; out: number[] } | null = null;

  filter(index: KeyIndex, query: string, filters: KeyFilters, now: number): number[] {
    const q = normalizeQuery(query);
    const last = this.#last;
    const within = last && last.index === index && last.filters === filters && last.now === now && q.startsWith(last.q) ? last.out : undefined;
    if (within && last && last.q === q) return last.out;
    const out = filterKeys(index, q, filters, now, within);
    this.#last = { index, q, filters, now, out };
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
