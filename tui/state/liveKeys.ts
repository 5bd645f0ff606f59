// What the live stream changes in the key table, without a reload:
// - key events (created, updated, enabled, disabled, deleted, rotated,
//   quota_exhausted) replace, add or drop keys in the loaded list;
// - KeyRemaining updates the Remaining column through an overlay.
//
// The overlay remembers the exact Key object each remaining value was seen
// against: once that key is replaced (a local edit, a key event, a reload),
// its overlay entry no longer applies and the fresher Key wins. So nothing
// stale survives an edit and a reload needs no explicit reset.
import type { Key, KeyEvent, KeyRemaining } from "../client.js";

function newer(a: Key, b: Key): boolean {
  const ta = a.updatedAt?.getTime() ?? 0;
  const tb = b.updatedAt?.getTime() ?? 0;
  return ta >= tb;
}

/**
 * The key list after `events` (in order). Replaces a key only with a state at
 * least as recent as the one held (a local mutation's answer can arrive before
 * the event of an earlier change). Keys the list does not have yet are added
 * first (newest first, like ListKeys). Returns `keys` itself when nothing changed.
 */
export function applyKeyEvents(keys: readonly Key[], events: readonly KeyEvent[]): readonly Key[] {
  if (events.length === 0) return keys;
  const latest = new Map<string, Key | null>();
  for (const e of events) {
    if (e.kind === "deleted") latest.set(e.keyId, null);
    else if (e.key) latest.set(e.keyId, e.key);
  }
  if (latest.size === 0) return keys;
  let changed = false;
  const seen = new Set<string>();
  const out: Key[] = [];
  for (const k of keys) {
    if (!latest.has(k.id)) {
      out.push(k);
      continue;
    }
    seen.add(k.id);
    const next = latest.get(k.id);
    if (next === null) {
      changed = true;
    } else if (next && next !== k && newer(next, k)) {
      out.push(next);
      changed = true;
    } else {
      out.push(k);
    }
  }
  const added: Key[] = [];
  for (const [id, k] of latest) if (k && !seen.has(id)) added.push(k);
  if (added.length > 0) {
    added.sort((a, b) => (b.createdAt?.getTime() ?? 0) - (a.createdAt?.getTime() ?? 0));
    return [...added, ...out];
  }
  return changed ? out : keys;
}

interface Entry {
  /** The key object the value was seen against. */
  readonly base: Key;
  readonly remaining: string;
  /** The patched key (built once per entry, so memoised rows stay memoised). */
  patched: Key | null;
}

/** Live Remaining values over the loaded keys. */
export class RemainingOverlay {
  readonly #entries = new Map<string, Entry>();

  get size(): number {
    return this.#entries.size;
  }

  /** Records the remaining quotas of one event against the keys currently loaded; the number that changed (each also to `changed`). */
  record(list: readonly KeyRemaining[], current: (id: string) => Key | undefined, changed?: (keyId: string) => void): number {
    let n = 0;
    for (const r of list) {
      const base = current(r.keyId);
      if (!base?.quota || base.quota.unlimited || r.unlimited) {
        this.#entries.delete(r.keyId);
        continue;
      }
      const prev = this.#entries.get(r.keyId);
      if (prev && prev.base === base && prev.remaining === r.remaining) continue;
      this.#entries.set(r.keyId, { base, remaining: r.remaining, patched: null });
      n++;
      changed?.(r.keyId);
    }
    return n;
  }

  /** The key with its live Remaining, or the key itself. */
  apply(k: Key): Key {
    const e = this.#entries.get(k.id);
    if (!e || e.base !== k || !k.quota) return k;
    if (e.remaining === k.quota.remaining) return k;
    e.patched ??= { ...k, quota: { ...k.quota, remaining: e.remaining } };
    return e.patched;
  }

  /** Drops entries whose key was replaced or removed (call when the key list changes). */
  prune(current: (id: string) => Key | undefined): void {
    for (const [id, e] of this.#entries) if (current(id) !== e.base) this.#entries.delete(id);
  }
}
