// Alert marks in the LevelDB engine (Store.claimAlertMark): `alerts` id → expiresAt (ms, JSON).
// This process is the store's only writer, so a claim is atomic when it runs under the engine's
// serial lock (read, then put in the same critical section). Expired marks are pruned on open
// and, from the claim path, at most once a day: a full scan of a sublevel that holds a few marks
// per key and period.
import type { Op } from "./codecs.js";

/** The mark's expiry, or undefined when none is stored. */
export async function readMark(sub: any, id: string): Promise<number | undefined> {
  try {
    const v: unknown = await sub.get(id);
    return typeof v === "number" ? v : undefined;
  } catch (err: any) {
    if (err?.code === "LEVEL_NOT_FOUND") return undefined;
    throw err;
  }
}

/** Deletes of every mark expired at `now` (at most `limit`). */
export async function expiredMarkOps(sub: any, now: number, limit = 100_000): Promise<Op[]> {
  const ops: Op[] = [];
  for await (const [k, v] of sub.iterator() as AsyncIterable<[string, unknown]>) {
    if (typeof v !== "number" || v <= now) ops.push({ type: "del", sublevel: sub, key: k });
    if (ops.length >= limit) break;
  }
  return ops;
}
