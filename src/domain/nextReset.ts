// When a key's quota is next refilled (issue 19 item 6: "each key's next reset"), from the
// refill rule of domain/refill.ts: the start of the period after the one containing `now`.
// Pure. null when the key has no refill (none, or unlimited).
import { periodStart } from "./refill.js";
import type { RefillPeriod } from "./types.js";

export function nextReset(k: { refill: RefillPeriod; unlimited: boolean }, now: number): number | null {
  if (k.refill === "none" || k.unlimited) return null;
  const start = periodStart(k.refill, now);
  if (k.refill === "daily") return start + 86_400_000;
  if (k.refill === "weekly") return start + 7 * 86_400_000;
  const d = new Date(start);
  return Date.UTC(d.getUTCFullYear(), d.getUTCMonth() + 1, 1);
}
