// What the composition root (main.ts) needs of a storage engine beyond the Store interface:
// the small metadata records (the master key's check value), and the gauges it exports.
// The embedded LevelStore and the shared RedisStore both provide it; services never see it.
import type { HotIndex } from "./book/hotIndex.js";
import type { Store } from "./types.js";

export interface EngineStore extends Store {
  /** A small named record beside the data (e.g. "masterKeyCheck"); undefined when unset. */
  readMeta(name: string): Promise<unknown>;
  writeMeta(name: string, value: unknown): Promise<void>;
  /** The keys this sidecar's book holds. */
  readonly index: HotIndex;
  /** How the book was loaded (for the ready line): e.g. "projection", "records", "redis". */
  readonly loadedFrom: string | undefined;
  readonly openReservations: number;
  readonly reservationCapacity: number;
  readonly reservationsEvicted: number;
}
