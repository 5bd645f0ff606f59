// Usage buckets in the `usage` sublevel: each bucket under its time-ordered key and, for key and
// account rows, again under its account's prefix (see schema.ts for the layout).
import type { UsageBucket, UsageQueryRange } from "../types.js";
import type { Op } from "./codecs.js";

/** Bucket starts are 12 hex digits (ms, up to year 10889); a bound above that sorts after every one. */
const MAX_START_HEX = 0xffffffffffff;
export const USAGE_GRANS = ["m", "h", "d"] as const;
export const USAGE_DIMS = ["key", "account", "group", "model"] as const;

function startHex(t: number): string {
  return t.toString(16).padStart(12, "0");
}

/** A range bound for bucket starts: below every start, a start, or above every start. */
function startBound(t: number): string {
  if (!(t > 0)) return "";
  if (t > MAX_START_HEX) return "g";
  return startHex(Math.ceil(t));
}

/** The account a bucket belongs to: key rows carry it, account rows are it; group and model rows have none. */
function usageOwner(b: Pick<UsageBucket, "dim" | "id" | "account">): string {
  return b.dim === "account" ? b.id : b.dim === "key" ? (b.account ?? "") : "";
}

function timeKey(b: Pick<UsageBucket, "gran" | "dim" | "id" | "start">): string {
  return `t|${b.gran}|${b.dim}|${startHex(b.start)}|${b.id}`;
}

function accountKey(b: Pick<UsageBucket, "gran" | "dim" | "id" | "start">, account: string): string {
  return `a|${b.gran}|${b.dim}|${account}|${startHex(b.start)}|${b.id}`;
}

/** The puts of one bucket: its time-ordered entry and, for key and account rows with a known account, the account's. */
export function usagePuts(b: UsageBucket, usage: unknown): Op[] {
  const ops: Op[] = [{ type: "put", sublevel: usage, key: timeKey(b), value: b }];
  const owner = usageOwner(b);
  if (owner) ops.push({ type: "put", sublevel: usage, key: accountKey(b, owner), value: b });
  return ops;
}

export async function getUsageBuckets(usage: any, refs: readonly Pick<UsageBucket, "gran" | "dim" | "id" | "start">[]): Promise<(UsageBucket | undefined)[]> {
  if (refs.length === 0) return [];
  const got: (UsageBucket | undefined)[] = await usage.getMany(refs.map((r) => timeKey(r)));
  return got.map((b) => b ?? undefined);
}

/** The buckets a query asks for; `onRead` counts the entries read (a stat for tests). */
export async function queryUsageBuckets(usage: any, q: UsageQueryRange, onRead: (entries: number) => void): Promise<UsageBucket[]> {
  const out: UsageBucket[] = [];
  // An account's key and account rows: its own prefix; anything else: the time-ordered entries.
  const byAccount = q.account !== undefined && q.account !== "" && (q.dim === "key" || q.dim === "account");
  const prefix = byAccount ? `a|${q.gran}|${q.dim}|${q.account}|` : `t|${q.gran}|${q.dim}|`;
  const it = usage.iterator({ gte: prefix + startBound(q.since), lt: prefix + startBound(q.until) });
  try {
    for (;;) {
      const batch: [string, UsageBucket][] = await it.nextv(1000);
      if (batch.length === 0) break;
      onRead(batch.length);
      for (const [, b] of batch) if ((q.id === undefined || b.id === q.id) && b.start >= q.since && b.start < q.until) out.push(b);
    }
  } finally {
    await it.close();
  }
  return out;
}

/** The deletes of up to `limit` buckets older than `before[gran]` (both entries of each), and how many buckets. */
export async function pruneUsageOps(usage: any, before: Readonly<Record<UsageBucket["gran"], number>>, limit: number): Promise<{ ops: Op[]; n: number }> {
  const ops: Op[] = [];
  let n = 0;
  for (const gran of USAGE_GRANS) {
    for (const dim of USAGE_DIMS) {
      if (n >= limit) break;
      const prefix = `t|${gran}|${dim}|`;
      const it = usage.iterator({ gte: prefix, lt: prefix + startBound(before[gran]), limit: limit - n });
      try {
        for (;;) {
          const batch: [string, UsageBucket][] = await it.nextv(1000);
          if (batch.length === 0) break;
          for (const [k, b] of batch) {
            ops.push({ type: "del", sublevel: usage, key: k });
            const owner = usageOwner(b);
            if (owner) ops.push({ type: "del", sublevel: usage, key: accountKey(b, owner) });
            n++;
          }
        }
      } finally {
        await it.close();
      }
    }
  }
  return { ops, n };
}
