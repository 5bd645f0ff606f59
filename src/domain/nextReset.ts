// When a key's quota is next refilled (issue 19 item 6: "each key's next reset"): the boundary
// after `now` of the key's refill period (domain/refill.ts: keyPeriod + nextBoundary, so every
// period rule — every N days, anchors, time zones — applies as it does to the refill itself).
// Pure. null when the key has no refill (none, or unlimited). `tz`: the account's zone
// (AccountRecord.timezone; UTC when it has none).
import { keyPeriod, nextBoundary, UTC, type RefillKey } from "./refill.js";

export function nextReset(k: Pick<RefillKey, "refill" | "unlimited"> & Partial<RefillKey>, now: number, tz: string = UTC): number | null {
  const p = keyPeriod({ quotaTotal: 0, ...k });
  return p === null ? null : nextBoundary(p, tz, now);
}
