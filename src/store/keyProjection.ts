// The hot projection of a key: exactly what the hot index (and the refill tracker) needs of
// a KeyRecord, as a compact value. The LevelDB engine writes it to the `khot` sublevel in
// the same atomic batch as every write or delete of the full record (`keys`), and rebuilds
// the hot index at start from `khot` (+ `kctr`) instead of JSON.parse-ing every full record
// (~577 B each, most of it the sealed secret, names and metadata): at 1M keys that was
// ~560 MB of JSON and most of start-up. A projection is ~95 B.
//
// Why a string and not a Buffer value: classic-level hands each Buffer value to JS through
// its own N-API allocation, which measured ~1.4 µs per entry (1M entries: 2.4 s for the scan
// alone, vs 1.0 s for string values); read time also grows with the bytes read. So the value
// is ASCII text: base64 of a small binary header, then a JSON tail.
//
//   value  = base64(header) + JSON.stringify([accountId, group, models, ips, [refillEvery, refillAnchor]?])
//   header = u8 format version (1), u8 flags, 32 B SHA-256 of the current secret,
//            f64 createdAt, then only what the flags say is there (little-endian):
//            [F_QUOTA] f64 quotaTotal  [F_EXPIRES] f64 expiresAt
//            [F_LIMITS] f64 rpm, f64 tpm, f64 concurrency
//            [F_PREV] 32 B grace secret hash, f64 its expiry
//   flags  = 1 enabled, 2 unlimited, 4 F_PREV, 8 F_EXPIRES, bits 4–5 refill period,
//            64 F_LIMITS, 128 F_QUOTA
//
// The tail starts with "[" (never in base64), which splits the two. Keys share a handful of
// tails (account, group, lists), so decoded tails are cached by their text (bounded) and most
// keys decode with a base64 write into a scratch buffer and a Map hit. Numbers are f64 as the
// record holds them; absent ones are exactly +0 (quota, limits) or null (expiry). A grace
// secret is stored only when both its hash and its expiry are set: the index ignores it
// otherwise.
import type { KeyRecord, RateLimits, RefillPeriod } from "../domain/types.js";
import { NO_LIMITS } from "../domain/types.js";
import { toCidrRange } from "../domain/ip.js";
import type { HotKey, Restrictions } from "./book/hotKey.js";

/** Bump when the format changes: a data dir with another version rebuilds its projection. */
export const PROJECTION_VERSION = 1;

/** Shared by every decoded key without limits (the index copies the numbers). */
const ZERO_LIMITS: RateLimits = NO_LIMITS;
const REFILLS: readonly RefillPeriod[] = ["none", "daily", "weekly", "monthly"];

export const NO_RESTRICTIONS: Restrictions = Object.freeze({ models: null, ips: null });
/** Compiled restrictions shared by every key with the same lists (bounded). */
const restrictionsCache = new Map<string, Restrictions>();
const RESTRICTIONS_CACHE_CAP = 10_000;

/**
 * A key's model and IP lists, compiled for the policy. Keys with the same lists share one
 * (frozen) object: many keys carry the same few lists, and 1M keys each with their own Set
 * and CIDR array cost hundreds of MB. Unrestricted keys share NO_RESTRICTIONS.
 */
function compileRestrictions(r: Pick<KeyRecord, "models" | "ips">): Restrictions {
  if (r.models.length === 0 && r.ips.length === 0) return NO_RESTRICTIONS;
  const cacheKey = JSON.stringify([r.models, r.ips]);
  const hit = restrictionsCache.get(cacheKey);
  if (hit) return hit;
  const out: Restrictions = Object.freeze({
    models: r.models.length ? new Set(r.models) : null,
    ips: r.ips.length ? Object.freeze(r.ips.map((s) => toCidrRange(s))) : null,
  });
  if (restrictionsCache.size < RESTRICTIONS_CACHE_CAP) restrictionsCache.set(cacheKey, out);
  return out;
}

/** 32 bytes from a hex SHA-256 (as the index has always decoded it: zero-padded). */
function hashBytes(hex: string): Uint8Array {
  const b = new Uint8Array(32);
  Buffer.from(b.buffer, b.byteOffset, 32).write(hex, 0, 32, "hex");
  return b;
}

/** The hot fields of a full record. */
export function hotKeyOf(r: KeyRecord): HotKey {
  const prev = r.prevSecretHash && r.prevSecretExpiresAt !== null;
  return {
    id: r.id,
    secretHash: hashBytes(r.secretHash),
    // The index has always decoded the grace hash unpadded; a SHA-256 hex is 32 bytes anyway.
    prevSecretHash: prev ? Uint8Array.from(Buffer.from(r.prevSecretHash!, "hex")) : null,
    prevSecretExpiresAt: prev ? r.prevSecretExpiresAt! : NaN,
    accountId: r.accountId,
    group: r.group,
    enabled: r.status === "enabled",
    unlimited: r.unlimited,
    expiresAt: r.expiresAt,
    quotaTotal: r.quotaTotal,
    createdAt: r.createdAt,
    refill: r.refill,
    refillEvery: r.refillEvery ?? 1,
    refillAnchor: r.refillAnchor ?? 0,
    limits: r.limits,
    restrictions: compileRestrictions(r),
  };
}

const F_ENABLED = 1;
const F_UNLIMITED = 2;
const F_PREV = 4;
const F_EXPIRES = 8;
const F_LIMITS = 64;
const F_QUOTA = 128;
const HEADER_MAX = 2 + 32 + 8 + 8 + 8 + 24 + 40;
/** Encoding scratch (one key at a time; the encoder is synchronous). */
const encScratch = Buffer.alloc(HEADER_MAX);

/** The projection of a full record (the `khot` value). */
export function encodeProjection(r: KeyRecord): string {
  const prev = r.prevSecretHash !== null && r.prevSecretHash !== "" && r.prevSecretExpiresAt !== null;
  const refill = REFILLS.indexOf(r.refill);
  if (refill < 0) throw new TypeError(`unknown refill period ${JSON.stringify(r.refill)}`);
  const quota = !Object.is(r.quotaTotal, 0);
  const limits = !Object.is(r.limits.rpm, 0) || !Object.is(r.limits.tpm, 0) || !Object.is(r.limits.concurrency, 0);
  const b = encScratch.fill(0);
  b[0] = PROJECTION_VERSION;
  b[1] =
    (r.status === "enabled" ? F_ENABLED : 0) |
    (r.unlimited ? F_UNLIMITED : 0) |
    (prev ? F_PREV : 0) |
    (r.expiresAt !== null ? F_EXPIRES : 0) |
    (refill << 4) |
    (limits ? F_LIMITS : 0) |
    (quota ? F_QUOTA : 0);
  b.write(r.secretHash, 2, 32, "hex");
  b.writeDoubleLE(r.createdAt, 34);
  let o = 42;
  if (quota) o = b.writeDoubleLE(r.quotaTotal, o);
  if (r.expiresAt !== null) o = b.writeDoubleLE(r.expiresAt, o);
  if (limits) {
    o = b.writeDoubleLE(r.limits.rpm, o);
    o = b.writeDoubleLE(r.limits.tpm, o);
    o = b.writeDoubleLE(r.limits.concurrency, o);
  }
  if (prev) {
    // Decoded exactly as hotKeyOf decodes it (Buffer.from(hex); a SHA-256 is 32 bytes).
    b.write(r.prevSecretHash!, o, 32, "hex");
    o = b.writeDoubleLE(r.prevSecretExpiresAt!, o + 32);
  }
  // A refill's N and anchor ride in the tail, only when not the defaults (older values have
  // four elements and read as the defaults).
  const every = r.refillEvery ?? 1;
  const anchor = r.refillAnchor ?? 0;
  const tail = every > 1 || anchor > 0 ? [r.accountId, r.group, r.models, r.ips, [every, anchor]] : [r.accountId, r.group, r.models, r.ips];
  return b.toString("base64", 0, o) + JSON.stringify(tail);
}

interface Tail {
  accountId: string;
  group: string;
  restrictions: Restrictions;
  refillEvery: number;
  refillAnchor: number;
}
/** Decoded tails by their text (shared; bounded). */
const tailCache = new Map<string, Tail>();
const TAIL_CACHE_CAP = 10_000;
/** Decoding scratch: the hashes of a decoded HotKey are views into it. */
const decScratch = Buffer.alloc(HEADER_MAX + 3);
/**
 * The secret hash's view into the scratch, made once: every decoded key's hash is at the same
 * place (a subarray per key was ~0.2 µs and an object for the GC, at 1M keys in a load).
 */
const decSecretHash = new Uint8Array(decScratch.buffer, decScratch.byteOffset + 2, 32);

/**
 * Decodes a `khot` value. The hashes of the result are views into a scratch buffer that the
 * next decode overwrites: copy them to keep them (HotIndex.upsert does). Throws on a value of
 * another format version or a malformed one.
 */
export function decodeProjection(id: string, v: string): HotKey {
  try {
    return decodeProjectionOrThrow(id, v);
  } catch (err) {
    if (err instanceof ProjectionError) throw err;
    throw new ProjectionError(`key ${id}: bad hot projection (${(err as Error).message})`);
  }
}

/**
 * A `khot` value that does not decode. The full key records are the source of truth, so this is
 * repairable: open with `rebuildProjection` (serve --rebuild-projection) rebuilds it from them.
 */
export class ProjectionError extends Error {
  override readonly name = "ProjectionError";
}

function decodeProjectionOrThrow(id: string, v: string): HotKey {
  const split = v.indexOf("[");
  if (split < 0 || split > ((HEADER_MAX + 2) / 3) * 4 + 4) throw new ProjectionError(`key ${id}: bad hot projection`);
  const b = decScratch;
  const n = b.write(split === v.length ? v : v.slice(0, split), 0, "base64");
  const flags = b[1]!;
  const need = 42 + (flags & F_QUOTA ? 8 : 0) + (flags & F_EXPIRES ? 8 : 0) + (flags & F_LIMITS ? 24 : 0) + (flags & F_PREV ? 40 : 0);
  if (b[0] !== PROJECTION_VERSION || n !== need) throw new ProjectionError(`key ${id}: bad hot projection (version ${b[0]}, ${n} bytes)`);
  let o = 42;
  let quotaTotal = 0;
  if (flags & F_QUOTA) {
    quotaTotal = b.readDoubleLE(o);
    o += 8;
  }
  let expiresAt: number | null = null;
  if (flags & F_EXPIRES) {
    expiresAt = b.readDoubleLE(o);
    o += 8;
  }
  let limits: RateLimits = ZERO_LIMITS;
  if (flags & F_LIMITS) {
    limits = { rpm: b.readDoubleLE(o), tpm: b.readDoubleLE(o + 8), concurrency: b.readDoubleLE(o + 16) };
    o += 24;
  }
  let prevSecretHash: Uint8Array | null = null;
  let prevSecretExpiresAt = NaN;
  if (flags & F_PREV) {
    prevSecretHash = b.subarray(o, o + 32);
    prevSecretExpiresAt = b.readDoubleLE(o + 32);
  }
  const tailText = v.slice(split);
  let tail = tailCache.get(tailText);
  if (!tail) {
    const [accountId, group, models, ips, period] = JSON.parse(tailText) as [string, string, string[], string[], [number, number]?];
    tail = { accountId, group, restrictions: compileRestrictions({ models, ips }), refillEvery: period?.[0] ?? 1, refillAnchor: period?.[1] ?? 0 };
    if (tailCache.size >= TAIL_CACHE_CAP) tailCache.clear();
    // The key is a string of its own: a slice would keep all of `v` alive (and `v` itself may be a
    // slice of a larger text) for as long as the cache holds it.
    tailCache.set(JSON.parse(JSON.stringify(tailText)) as string, tail);
  }
  return {
    id,
    secretHash: decSecretHash,
    prevSecretHash,
    prevSecretExpiresAt,
    accountId: tail.accountId,
    group: tail.group,
    enabled: (flags & F_ENABLED) !== 0,
    unlimited: (flags & F_UNLIMITED) !== 0,
    expiresAt,
    quotaTotal,
    createdAt: b.readDoubleLE(34),
    refill: REFILLS[(flags >> 4) & 3]!,
    refillEvery: tail.refillEvery,
    refillAnchor: tail.refillAnchor,
    limits,
    restrictions: tail.restrictions,
  };
}
