// The fleet's live bus: sidecars sharing one store exchange their live seconds so a WatchUsage
// stream on any of them shows the whole fleet's traffic (issue 15 item 5). The service layer
// knows only this interface; store/redis/liveBus.ts implements it on Redis Pub/Sub, and a
// sidecar with its own store (LevelDB) has none.
import type { AdminKeyEventKind } from "./live.js";
import type { UsageCounters } from "./counters.js";

/**
 * One sidecar's second of live usage as sent on the bus: the raw (key, account, group, model)
 * tuples, the units charged per key and per account, and the admin key events — not events
 * per filter, so every receiver applies its own streams' filters.
 */
export interface LiveSecond {
  v: 1;
  from: number;
  at: number;
  /** [keyId, accountId, group, model, counters]. */
  t: [string, string, string, string, UsageCounters][];
  /** [keyId, units charged]. */
  c: [string, number][];
  /** [accountId, units charged]. */
  a: [string, number][];
  /** Admin key events: [keyId, kind, accountId, group]. */
  e: [string, AdminKeyEventKind, string, string][];
}

export interface LiveBus {
  /** Whether another sidecar watches the fleet: this one then publishes its seconds (publish), else only polls. */
  readonly wanted: boolean;
  /** Whether this sidecar hears the others (its bus connections are up); false → streams say other sidecars' traffic is missing. */
  readonly healthy: boolean;
  /** Sends this sidecar's second (once a second while `wanted`); never throws, fire and forget. */
  publish(s: LiveSecond): void;
  /** Once a second while not `wanted`: finds out whether someone started watching. */
  poll(): void;
  /** Receives the other sidecars' seconds (never this one's own) until the returned function is called. */
  subscribe(fn: (s: LiveSecond, sender: string) => void): () => void;
  close(): Promise<void>;
}

/** Checks a second received from the bus (other processes' JSON). */
export function isLiveSecond(x: unknown): x is LiveSecond {
  const s = x as LiveSecond;
  return !!s && s.v === 1 && typeof s.from === "number" && typeof s.at === "number" && Array.isArray(s.t) && Array.isArray(s.c) && Array.isArray(s.a) && Array.isArray(s.e);
}
