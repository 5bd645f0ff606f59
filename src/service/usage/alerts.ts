// Usage ALERTS, pure: the thresholds a key's quota or an account's credited balance crosses
// (50/80/100 %), a key running out, and keys expiring within 24 h. The live hub keeps the
// levels last seen and calls these with them; nothing here keeps state or reads a clock.
import { formatInteger } from "../../display/format.js";
import type { AccountState, KeyState } from "../../domain/types.js";
import { DAY_MS } from "./counters.js";

/** Alert thresholds, in percent of a key's quota or an account's credited balance used. */
const THRESHOLDS = [50, 80, 100] as const;

export interface LiveAlert {
  kind: "key_quota" | "account_balance" | "key_expiring";
  targetId: string;
  /** 50, 80 or 100 for quota/balance alerts; 0 for key_expiring. */
  percent: number;
  message: string;
  /** key_expiring: when the key expires. */
  expiresAt: number | null;
}

/** The highest threshold reached when `used` of `total` is spent (0 = none). A total <= 0 is reached at once. */
export function quotaLevel(used: number, total: number): 0 | 50 | 80 | 100 {
  if (total <= 0) return used >= 0 ? 100 : 0;
  for (let i = THRESHOLDS.length - 1; i >= 0; i--) {
    const t = THRESHOLDS[i]!;
    if (used * 100 >= t * total) return t;
  }
  return 0;
}

/** Thresholds crossed going from level `from` to level `to` (none when going down). */
export function crossedThresholds(from: number, to: number): number[] {
  return THRESHOLDS.filter((t) => t > from && t <= to);
}

function percentText(n: number, total: number): string {
  return `${formatInteger(n)} of ${formatInteger(total)} units`;
}

/** What a limited key's charges in one second did to its alerts. */
export interface KeyQuotaStep {
  alerts: LiveAlert[];
  /** The key's level now (quotaLevel). */
  level: number;
  /** Whether it is exhausted now (remaining <= 0). */
  exhausted: boolean;
  /** It ran out in this step ("quota_exhausted" key event). */
  ranOut: boolean;
}

/**
 * A limited key `s` was charged `units` this second. `prev` is its level and exhaustion as
 * last seen; undefined on first sight, then they are those before this second's charges.
 */
export function keyQuotaStep(id: string, s: KeyState, units: number, prev: { level: number; exhausted: boolean } | undefined): KeyQuotaStep {
  const r = s.record;
  const total = r.quotaTotal;
  const rem = s.counters.remaining;
  const level = quotaLevel(total - rem, total);
  let from: number;
  let wasExhausted: boolean;
  if (prev === undefined) {
    // First sight since listening began: where was it before this second's charges?
    const before = rem + units;
    from = quotaLevel(total - before, total);
    wasExhausted = before <= 0;
  } else {
    from = prev.level;
    wasExhausted = prev.exhausted;
  }
  const alerts = crossedThresholds(from, level).map((t) => ({
    kind: "key_quota" as const,
    targetId: id,
    percent: t,
    message: `key ${id} (${r.name}) has used ${t}% of its quota: ${percentText(total - rem, total)}`,
    expiresAt: null,
  }));
  return { alerts, level, exhausted: rem <= 0, ranOut: rem <= 0 && !wasExhausted };
}

/** Account `id` was charged `units` this second; `prevLevel` as last seen (undefined: before this second). */
export function accountBalanceStep(id: string, a: AccountState, units: number, prevLevel: number | undefined): { alerts: LiveAlert[]; level: number } {
  const { credited, charged } = a.counters;
  const level = quotaLevel(charged, credited);
  const prev = prevLevel ?? quotaLevel(charged - units, credited);
  const alerts = crossedThresholds(prev, level).map((t) => ({
    kind: "account_balance" as const,
    targetId: id,
    percent: t,
    message: `account ${id} has used ${t}% of its credited balance: ${percentText(charged, credited)}`,
    expiresAt: null,
  }));
  return { alerts, level };
}

/** Whether a key expiring at `expiresAt` gets key_expiring alerts at `now` (within 24 h, not yet expired). */
export function expiresSoon(expiresAt: number | null, now: number): expiresAt is number {
  return expiresAt !== null && expiresAt > now && expiresAt - now <= DAY_MS;
}

/** The key_expiring alert of key `id` at `now`. */
export function expiringAlert(id: string, expiresAt: number, now: number): LiveAlert {
  const hours = Math.max(1, Math.round((expiresAt - now) / 3_600_000));
  return {
    kind: "key_expiring",
    targetId: id,
    percent: 0,
    message: `key ${id} expires in ${hours === 1 && expiresAt - now < 3_600_000 ? "less than an hour" : `about ${hours} h`} (${new Date(expiresAt).toISOString()})`,
    expiresAt,
  };
}
