// Usage QUERIES: which stored dimension answers a query, scoping to the caller, and the
// rows (stored buckets with memory over them, key rows attributed to account and group).
// The semantics are in service/usage.ts's file comment.
import { invalid, notFound, SidecarError } from "../../domain/errors.js";
import type { Principal } from "../../domain/types.js";
import type { UsageBucket } from "../../store/types.js";
import { addCounters, bucketStart, copyCounters, DAY_MS, DIMS, GRANS, zeroCounters, type Dim, type Gran, type Owner, type UsageCounters, type UsageFilter } from "./counters.js";
import type { UsageHistory, UsageRecorderStore } from "./history.js";

/** A query answers at most this many rows (RESOURCE_EXHAUSTED beyond). */
const MAX_QUERY_ROWS = 50_000;

export interface UsageQuery {
  filter?: Partial<UsageFilter>;
  /** Default "key". */
  groupBy?: Dim;
  /** Default "h". */
  gran?: Gran;
  /** Default: 24 hours before now. */
  since?: number;
  /** Default: now. */
  until?: number;
}

export interface UsageRow {
  /** Bucket start (epoch ms). */
  start: number;
  /** Key id, account id, group or model, per groupBy ("" when a deleted key cannot be attributed). */
  id: string;
  counters: UsageCounters;
}

export interface UsageQueryResult {
  rows: UsageRow[];
  total: UsageCounters;
}

/**
 * Which stored dimension answers a query (see the file comment). Throws
 * INVALID_ARGUMENT for combinations the one-dimensional buckets cannot answer.
 */
export function sourceDim(f: UsageFilter, groupBy: Dim): Dim {
  const narrowed = f.keyId !== "" || f.accountId !== "" || f.group !== "";
  const why = "usage by model is kept server-wide only, not per key, account or group (an account-scoped token is always restricted to its account)";
  if (f.model !== "") {
    if (narrowed) throw invalid("filter.model", `cannot be combined with a key, account or group filter: ${why}`);
    if (groupBy !== "model") throw invalid("group_by", "with a model filter, rows can only be grouped by model");
    return "model";
  }
  if (groupBy === "model") {
    if (narrowed) throw invalid("group_by", `cannot group by model with a key, account or group filter: ${why}`);
    return "model";
  }
  if (groupBy === "key" || f.keyId !== "") return "key";
  if (groupBy === "account") return f.group !== "" ? "key" : "account";
  return f.accountId !== "" ? "key" : "group";
}

/**
 * Normalises a filter and restricts it to what the principal may see: an
 * account token gets its own account forced, and NOT_FOUND for another
 * account or for a key that is not (known to be) its own.
 */
export async function scopeFilter(history: UsageHistory, filter: Partial<UsageFilter> | undefined, p: Principal): Promise<UsageFilter> {
  const f: UsageFilter = {
    keyId: (filter?.keyId ?? "").trim(),
    accountId: (filter?.accountId ?? "").trim(),
    group: (filter?.group ?? "").trim(),
    model: (filter?.model ?? "").trim(),
  };
  if (p.accountId !== null) {
    if (f.accountId && f.accountId !== p.accountId) throw notFound("account", f.accountId);
    f.accountId = p.accountId;
    if (f.keyId) {
      const o = await history.keyOwner(f.keyId);
      if (!o || o.accountId !== p.accountId) throw notFound("key", f.keyId);
    }
  }
  return f;
}

export async function queryUsage(history: UsageHistory, store: UsageRecorderStore, now: number, q: UsageQuery, p: Principal): Promise<UsageQueryResult> {
  const gran = q.gran ?? "h";
  const groupBy = q.groupBy ?? "key";
  if (!GRANS.includes(gran)) throw invalid("granularity", `unknown granularity ${JSON.stringify(gran)}`);
  if (!DIMS.includes(groupBy)) throw invalid("group_by", `unknown dimension ${JSON.stringify(groupBy)}`);
  const until = q.until ?? now;
  const since = q.since ?? now - DAY_MS;
  if (!Number.isFinite(since)) throw invalid("since", "is not a valid time");
  if (!Number.isFinite(until)) throw invalid("until", "is not a valid time");
  if (since >= until) throw invalid("until", "must be after since");
  const f = await scopeFilter(history, q.filter, p);
  const source = sourceDim(f, groupBy);
  const direct = source === "key" ? f.keyId : source === "account" ? f.accountId : source === "group" ? f.group : f.model;
  const lo = bucketStart(gran, since);
  // Whose rows: an account filter reads that account's own index range; a key filter its
  // owner's (an operator's filter on a key of unknown owner reads the time range).
  let account: string | undefined;
  if (source === "key" || source === "account") {
    if (f.accountId) account = f.accountId;
    else if (f.keyId) account = (await history.keyOwner(f.keyId).catch(() => undefined))?.accountId;
  }

  const merged = await history.merged({ gran, dim: source, lo, until, direct }, () =>
    store.queryUsageBuckets({ gran, dim: source, account, id: direct || undefined, since: lo, until }),
  );

  // Key rows: attribute to account and group, filter, relabel per groupBy.
  let label: (b: UsageBucket) => string | undefined = (b) => b.id;
  if (source === "key" && (f.accountId || f.group || groupBy !== "key")) {
    const ids = [...new Set([...merged.values()].map((b) => b.id))];
    const owners = new Map<string, Owner | undefined>();
    await Promise.all(ids.map(async (id) => owners.set(id, await history.keyOwner(id).catch(() => undefined))));
    label = (b) => {
      const o = owners.get(b.id);
      if (f.accountId && o?.accountId !== f.accountId) return undefined;
      if (f.group && o?.group !== f.group) return undefined;
      return groupBy === "key" ? b.id : groupBy === "account" ? (o?.accountId ?? "") : (o?.group ?? "");
    };
  }
  const rows = new Map<string, UsageRow>();
  for (const b of merged.values()) {
    const id = label(b);
    if (id === undefined) continue;
    const k = `${b.start}|${id}`;
    const row = rows.get(k);
    if (row) addCounters(row.counters, b);
    else rows.set(k, { start: b.start, id, counters: copyCounters(b) });
  }
  if (rows.size > MAX_QUERY_ROWS) {
    throw new SidecarError("RESOURCE_EXHAUSTED", `the query matches ${rows.size} rows (at most ${MAX_QUERY_ROWS}): narrow the range, use a coarser granularity or filter`);
  }
  const out = [...rows.values()].sort((a, b) => a.start - b.start || (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
  const total = zeroCounters();
  for (const r of out) addCounters(total, r.counters);
  return { rows: out, total };
}
