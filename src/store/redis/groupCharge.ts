// What a group budget's charge is on the Redis engine, in one place (redisStore.ts "GROUP").
//
// A Consume of a key whose group has a budget owes that budget the Consume's units, once per
// request id, counted in the budget period the request happened in (its `now`). The account's
// Consume script writes the debt into the account's outbox (P{a:<account>}:gob, a ZSET scored by
// the request's time) atomically with the account's charge; the sidecar then applies it on the
// group's slot (the GROUP script's 'charge': idempotent per request id through the applied marks
// P{gb:<group>}:ap) and takes it out of the outbox. A sidecar that dies between the two leaves
// the entry; the recovery pass (RedisStore.recoverGroupCharges) applies it through the same
// 'charge' once it is older than the grace period. So the budget is charged exactly once whether
// the normal path, the recovery pass, or both (racing) apply it.
//
// A charge that arrives after its period is over (the budget was reset, re-created or removed
// since the request) adds nothing: the period it belongs to no longer has a budget to protect,
// and charging the new period would count spending the team did not do in it. The compare is on
// the group's slot (the GROUP script), because another sidecar's reset may move the period's
// start between a read and the add.
import type { ConsumeInput } from "../types.js";

/** One debt of the outbox: the budget `group` owes `units` for request `requestId` made at `at`. */
export interface GroupCharge {
  requestId: string;
  group: string;
  units: number;
  /** The request's time (its Consume's `now`): the budget period it is counted in. */
  at: number;
  /** The reservation whose group hold the charge settles ('' none). */
  reservationId: string;
}

/** The charge a Consume owes its group's budget: the Consume's units, its request id and time. */
export function groupChargeOf(c: Pick<ConsumeInput, "requestId" | "units" | "now">, group: string, reservationId: string): GroupCharge {
  return { requestId: c.requestId, group, units: c.units, at: c.now, reservationId };
}

/** The outbox member (a JSON array: unique per request id, which is unique per account). */
export function encodeGroupCharge(g: GroupCharge): string {
  return JSON.stringify([g.requestId, g.group, g.units, g.at, g.reservationId]);
}

/** An outbox member back; undefined when it is not one (never written by this engine). */
export function decodeGroupCharge(member: string): GroupCharge | undefined {
  let v: unknown;
  try {
    v = JSON.parse(member);
  } catch {
    return undefined;
  }
  if (!Array.isArray(v) || v.length !== 5) return undefined;
  const [requestId, group, units, at, reservationId] = v as unknown[];
  if (typeof requestId !== "string" || requestId === "" || typeof group !== "string" || group === "" || typeof reservationId !== "string") return undefined;
  if (typeof units !== "number" || !Number.isSafeInteger(units) || typeof at !== "number" || !Number.isSafeInteger(at)) return undefined;
  return { requestId, group, units, at, reservationId };
}

/**
 * Whether an outbox entry still owes its budget (read-only; migrate's export counts it): its
 * period is not over (`at` not before `rs`, the instant the budget's spent last started from
 * nothing) and no live mark says its charge was applied (`mark`: the request id's expiry in the
 * applied marks, if any). The GROUP script's 'charge' (scripts.ts) applies the same two tests
 * atomically on the group's slot; this is their statement for a reader that may not write.
 */
export function groupChargeOwed(g: GroupCharge, rs: number, mark: number | undefined, now: number): boolean {
  return g.at >= rs && (mark === undefined || mark <= now);
}

/** The GROUP script's 'charge' outcome (its first reply value). */
export const CHARGE = { applied: 1, alreadyApplied: 2, periodOver: 3 } as const;

/**
 * How long the group's slot remembers that a request's charge was applied (the ap marks). It must
 * outlast the longest time an outbox entry can wait for the recovery pass (grace + a round of
 * the accounts + the whole fleet being down): an entry applied but not yet taken out of the
 * outbox (the sidecar died right after the group's call) and recovered after its mark expired
 * is counted twice — over, never under.
 */
export const GROUP_MARK_MS = 3_600_000;
/** Recovery applies outbox entries older than this (the normal path's second call takes ms). */
export const GROUP_RECOVERY_GRACE_MS = 5_000;
/** Accounts whose outbox one periodic recovery pass reads (round robin), and how often it runs. */
export const GROUP_RECOVERY_ACCOUNTS = 200;
export const GROUP_RECOVERY_EVERY_MS = 2_000;
/** Outbox entries read per account per call. */
export const GROUP_RECOVERY_BATCH = 100;
