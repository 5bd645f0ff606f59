// The LevelDB engine's consistency check of its on-disk indexes: every key record has its hash
// index entry, counters and hot projection (byte for byte what the record projects to), and
// every hash entry, counter and projection belongs to a key.
import type { KeyRecord } from "../../domain/types.js";
import { encodeProjection, PROJECTION_VERSION } from "../keyProjection.js";
import { decodeCounters } from "./codecs.js";
import type { SubName } from "./schema.js";

/**
 * Cross-checks the on-disk indexes: every key has its hash index entry,
 * counters and hot projection (byte for byte what its record projects to), and
 * every hash index entry and projection belongs to a key. Returns the problems
 * found (empty = consistent). Used by the crash tests.
 */
export async function checkIntegrity(subs: Record<SubName, any>): Promise<string[]> {
  const problems: string[] = [];
  const keys = new Map<string, KeyRecord>();
  for await (const [id, rec] of subs.keys.iterator()) keys.set(id, rec as KeyRecord);
  const ctrs = new Set<string>();
  for await (const [id, v] of subs.kctr.iterator()) {
    ctrs.add(id as string);
    try {
      decodeCounters(id as string, v as string);
    } catch {
      problems.push(`key ${id}: counters unreadable`);
    }
  }
  const hashes = new Map<string, string>();
  for await (const [h, id] of subs.khash.iterator()) hashes.set(h as string, id as string);
  for (const [id, rec] of keys) {
    if (hashes.get(rec.secretHash) !== id) problems.push(`key ${id}: hash index missing`);
    if (!ctrs.has(id)) problems.push(`key ${id}: counters missing`);
  }
  for (const [h, id] of hashes) {
    const rec = keys.get(id);
    if (!rec) problems.push(`hash ${h.slice(0, 8)}…: points at missing key ${id}`);
    else if (rec.secretHash !== h && rec.prevSecretHash !== h) problems.push(`hash ${h.slice(0, 8)}…: stale entry for key ${id}`);
  }
  for (const id of ctrs) if (!keys.has(id)) problems.push(`counters for missing key ${id}`);
  const hot = new Set<string>();
  for await (const [id, v] of subs.khot.iterator()) {
    hot.add(id as string);
    const rec = keys.get(id as string);
    if (!rec) problems.push(`hot projection for missing key ${id}`);
    else if (encodeProjection(rec) !== v) problems.push(`key ${id}: hot projection differs from the record`);
  }
  for (const id of keys.keys()) if (!hot.has(id)) problems.push(`key ${id}: hot projection missing`);
  if ((await subs.meta.get("hot")) !== PROJECTION_VERSION) problems.push("hot projection marker missing");
  return problems;
}
