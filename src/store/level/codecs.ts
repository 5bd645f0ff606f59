// The LevelDB engine's value encodings and batch ops: how records and counters are stored, how
// a stored value that does not decode is named (with the repair), and the pre-encoded string
// ops every batch is written as.
import { SidecarError } from "../../domain/errors.js";
import type { KeyCounterValues } from "../book/keyBook.js";
import type { ConsumeRecord } from "../types.js";

/** A key's counters as `kctr` holds them. */
export type KeyCountersDisk = KeyCounterValues;

// Key counters on disk (`kctr`, rewritten by every Consume and refill): base64 of
//   u8 version (1), u8 flags (1 lastUsedAt, 2 refilledAt), f64 remaining, used, credited,
//   [f64 lastUsedAt], [f64 refilledAt]   (little-endian)
// — ~36–48 characters instead of ~85 of JSON, decoded without JSON.parse (1M of them are read
// at every start). Values written as JSON by earlier builds (they start with "{") still read.
const CTR_VERSION = 1;
const ctrScratch = Buffer.alloc(2 + 5 * 8 + 3);

export function encodeCounters(c: KeyCountersDisk): string {
  const b = ctrScratch;
  b[0] = CTR_VERSION;
  b[1] = (c.lastUsedAt !== null ? 1 : 0) | (c.refilledAt !== null ? 2 : 0);
  b.writeDoubleLE(c.remaining, 2);
  b.writeDoubleLE(c.used, 10);
  b.writeDoubleLE(c.credited, 18);
  let o = 26;
  if (c.lastUsedAt !== null) o = b.writeDoubleLE(c.lastUsedAt, o);
  if (c.refilledAt !== null) o = b.writeDoubleLE(c.refilledAt, o);
  return b.toString("base64", 0, o);
}

export function decodeCounters(id: string, v: string): KeyCountersDisk {
  if (v.charCodeAt(0) === 123 /* { */) {
    const j = JSON.parse(v) as KeyCountersDisk;
    return { remaining: j.remaining, used: j.used, credited: j.credited ?? j.remaining + j.used, lastUsedAt: j.lastUsedAt, refilledAt: j.refilledAt ?? null };
  }
  const b = ctrScratch;
  const n = b.write(v, 0, "base64");
  const flags = b[1]!;
  if (b[0] !== CTR_VERSION || n !== 26 + (flags & 1 ? 8 : 0) + (flags & 2 ? 8 : 0)) throw new Error(`key ${id}: bad counters (version ${b[0]}, ${n} bytes)`);
  let o = 26;
  let lastUsedAt: number | null = null;
  if (flags & 1) {
    lastUsedAt = b.readDoubleLE(o);
    o += 8;
  }
  return { remaining: b.readDoubleLE(2), used: b.readDoubleLE(10), credited: b.readDoubleLE(18), lastUsedAt, refilledAt: flags & 2 ? b.readDoubleLE(o) : null };
}

/** `raw`: the value is already its stored text (not JSON-encoded again). */
export type Op = { type: "put"; sublevel: any; key: string; value: unknown; raw?: true } | { type: "del"; sublevel: any; key: string };

/** What to do about a damaged store: the store is not derived data, so a backup is the repair. */
export const RESTORE = "restore the data directory from a backup (db/ together with the master key it was written with)";

/** A record in `sublevel` that does not decode: named, with the repair. */
export function undecodable(sublevel: string, key: string, err: unknown): SidecarError {
  const why = err instanceof Error ? err.message : String(err);
  return new SidecarError("FAILED_PRECONDITION", `record ${sublevel}/${JSON.stringify(key)} does not decode (${why})`, { cause: err });
}

/** Parses a JSON record's stored text, naming the record when it does not decode. */
export function parseRecord<T>(sublevel: string, key: string, text: string): T {
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch (err) {
    throw undecodable(sublevel, key, err);
  }
  if (v === null || typeof v !== "object") throw undecodable(sublevel, key, new Error(`not a JSON object: ${text.slice(0, 40)}`));
  return v as T;
}

/** A count of units as stored: a whole number within ±(2^53 − 1), and ≥ 0 where `nonNegative`. */
function badCount(v: unknown, nonNegative: boolean): string | null {
  if (typeof v !== "number" || !Number.isSafeInteger(v)) return `${String(v)} is not a whole number of units within ±(2^53 − 1)`;
  if (nonNegative && v < 0) return `${v} is negative`;
  return null;
}

/** Refuses counters that cannot be right (negative use, fractions, ±1e300, NaN), naming the record. */
export function checkCounters(what: string, sublevel: string, id: string, c: Record<string, unknown>, fields: readonly (readonly [string, boolean])[]): void {
  for (const [f, nonNegative] of fields) {
    const bad = badCount(c[f], nonNegative);
    if (bad) throw new SidecarError("FAILED_PRECONDITION", `${what} ${JSON.stringify(id)}: counter ${f} in record ${sublevel}/${JSON.stringify(id)} is out of range (${bad})`);
  }
}
export const ACCOUNT_COUNTERS = [["credited", false], ["charged", true]] as const;
export const GROUP_BUDGET_COUNTERS = [["spent", true], ["since", false]] as const;
export const KEY_COUNTERS = [["remaining", false], ["used", true], ["credited", false]] as const;

/** Batch options for pre-encoded ops: strings in, strings out, one fsync. */
export const RAW_SYNC = Object.freeze({ sync: true, keyEncoding: "utf8", valueEncoding: "utf8" });

/**
 * Ops → root-level ops with the key already prefixed (the sublevel's public `prefix`) and the
 * value already JSON (what the sublevels' json encoding writes: the same bytes on disk).
 * abstract-level's per-op path for sublevel ops (clone, encodings, prefixing) measured
 * 4–30 µs per op on Node 20; these plain string ops take a fraction of that, and a durable
 * Consume writes two or three ops. (bench/README.md, "Consume".)
 */
export type RawOp = { type: "put" | "del"; key: string; value?: string };
export function toRawOps(ops: readonly Op[]): RawOp[] {
  const raw = new Array<RawOp>(ops.length);
  for (let i = 0; i < ops.length; i++) {
    const o = ops[i]!;
    const key = (o.sublevel.prefix as string) + o.key;
    if (o.type === "del") raw[i] = { type: "del", key };
    else {
      const value = o.raw ? (o.value as string) : JSON.stringify(o.value);
      // The native batch would write what it makes of undefined: refuse it here, as the public batch did.
      if (typeof value !== "string") throw new TypeError(`put ${JSON.stringify(key)}: the value is ${String(o.value)}`);
      raw[i] = { type: "put", key, value };
    }
  }
  return raw;
}

/**
 * Within one group-committed batch, several submissions may put the same
 * record (e.g. one key's counters by 100 Consumes). Every put carries the
 * absolute value at its submission, so only the last one matters.
 */
export function coalesce(ops: Op[]): Op[] {
  if (ops.length < 8) return ops;
  const last = new Map<any, Map<string, number>>();
  ops.forEach((o, i) => {
    let m = last.get(o.sublevel);
    if (!m) last.set(o.sublevel, (m = new Map()));
    m.set(o.key, i);
  });
  return ops.filter((o, i) => last.get(o.sublevel)!.get(o.key) === i);
}

// A ledger entry's stored text (schema 4). A Consume's record is flat (strings, whole numbers, a
// boolean), and most of its ~300 characters of JSON were its 17 field names. It is stored as a
// JSON array of its values in LEDGER_FIELDS' order instead, without the request id (the entry's
// key): ~130 characters. LevelDB's write thread, its log and its compactions then carry less than
// half the bytes per Consume: at the store level, with random request ids, 0.86× / 0.93× the p99
// at 32 / 128 in flight, about half the p99.9 at 128 and 0.8× the peak RSS, at the same
// Consumes/s (bench/README.md, "Stop 35"). An absent field is null
// (trailing ones are dropped). A record this form cannot hold as it is (a key outside
// LEDGER_FIELDS, a null or a number JSON cannot write, a request id that is not a string) is
// stored as its JSON object, as schema 3 stored every entry; decodeLedgerRecord reads both.
//
// The text is written without JSON.stringify: JSON.stringify built it from growing parts joined
// into a cons string that the native batch then flattened again, ~0.7 KB of garbage per Consume
// (bench/README.md, "Consume without GC tails"). Here the bytes go into one reused buffer and come
// out as one flat string, the same text as JSON.stringify(the array) (test/unit/ledgerJson.test.ts);
// a value needing an escape or non-ASCII, or a number that is not a safe integer, is left to
// JSON.stringify.
const LEDGER_FIELDS = [
  "keyId",
  "accountId",
  "group",
  "model",
  "inputTokens",
  "outputTokens",
  "units",
  "at",
  "reservationId",
  "keyRemaining",
  "keyUnlimited",
  "accountBalance",
  "cacheReadTokens",
  "cacheWriteTokens",
  "reasoningTokens",
  "source",
] as const;
/** The fields every entry has (keyId … accountBalance): an array shorter than this is not an entry. */
const LEDGER_REQUIRED = 12;
const ledgerScratch = Buffer.alloc(4096);
const digits = new Uint8Array(20);

/** Writes `v` as JSON.stringify would at `o` (or returns -1: not one this encoder writes). */
function writeLedgerValue(b: Buffer, o: number, v: unknown): number {
  if (typeof v === "string") {
    if (o + v.length + 2 > b.length - 64) return -1;
    b[o++] = 34;
    for (let i = 0; i < v.length; i++) {
      const c = v.charCodeAt(i);
      if (c < 0x20 || c > 0x7e || c === 34 || c === 92) return -1;
      b[o++] = c;
    }
    b[o++] = 34;
    return o;
  }
  if (typeof v === "number") {
    if (!Number.isSafeInteger(v)) return -1;
    let n = v;
    if (n < 0) {
      b[o++] = 45;
      n = -n;
    }
    let d = 0;
    do {
      digits[d++] = 48 + (n % 10);
      n = Math.floor(n / 10);
    } while (n > 0);
    while (d > 0) b[o++] = digits[--d]!;
    return o;
  }
  if (v === true) return o + b.write("true", o, "latin1");
  if (v === false) return o + b.write("false", o, "latin1");
  return -1;
}

/** A ledger entry's stored text: the compact array for a record it can hold, else JSON.stringify(record). */
export function encodeLedgerRecord(record: object): string {
  const r = record as Record<string, unknown>;
  if (!compactable(r)) return JSON.stringify(record);
  // The last field present: the array ends there (it always holds the required ones).
  let last = LEDGER_FIELDS.length - 1;
  while (last >= LEDGER_REQUIRED && r[LEDGER_FIELDS[last]!] === undefined) last--;
  const b = ledgerScratch;
  let o = 0;
  b[o++] = 91;
  for (let k = 0; k <= last; k++) {
    const v = r[LEDGER_FIELDS[k]!];
    // Room for a comma and a number (a string checks its own length).
    if (o > b.length - 128) return compactSlow(r, last);
    if (k > 0) b[o++] = 44;
    if (v === undefined) o += b.write("null", o, "latin1");
    else {
      o = writeLedgerValue(b, o, v);
      if (o < 0) return compactSlow(r, last);
    }
  }
  b[o++] = 93;
  return b.toString("latin1", 0, o);
}

/** The compact array's text by JSON.stringify (a value the fast path does not write). */
function compactSlow(r: Record<string, unknown>, last: number): string {
  const a: unknown[] = [];
  for (let k = 0; k <= last; k++) a.push(r[LEDGER_FIELDS[k]!] ?? null);
  return JSON.stringify(a);
}

/**
 * Whether the array form holds this record exactly: a string request id, no other keys than
 * LEDGER_FIELDS, and every value a string, a boolean or a finite number (JSON writes NaN and
 * Infinity as null, which the array reads as absent) or undefined (absent either way).
 */
function compactable(r: Record<string, unknown>): boolean {
  if (typeof r["requestId"] !== "string") return false;
  for (const key in r) {
    if (key === "requestId") continue;
    if (!LEDGER_FIELD_SET.has(key)) return false;
    const v = r[key];
    if (v === undefined || typeof v === "string" || typeof v === "boolean") continue;
    if (typeof v !== "number" || !Number.isFinite(v)) return false;
  }
  return true;
}
const LEDGER_FIELD_SET: ReadonlySet<string> = new Set(LEDGER_FIELDS);

/**
 * A ledger entry as read (its JSON parsed): the array form becomes the record again, its request
 * id the entry's key and its fields in the order charge.ts builds them; an object (schema 3 and
 * before, or a record the array cannot hold) is the record as stored. Anything else throws,
 * naming the entry.
 */
export function decodeLedgerRecord(key: string, v: unknown): ConsumeRecord {
  if (!Array.isArray(v)) {
    if (v === null || typeof v !== "object") throw undecodable("ledger", key, new Error("not a JSON object or array"));
    return v as ConsumeRecord;
  }
  if (v.length < LEDGER_REQUIRED || v.length > LEDGER_FIELDS.length) throw undecodable("ledger", key, new Error(`an entry of ${v.length} values (it has ${LEDGER_REQUIRED} to ${LEDGER_FIELDS.length})`));
  const r: Record<string, unknown> = { requestId: key };
  for (let k = 0; k < v.length; k++) {
    const x = v[k];
    if (x !== null) r[LEDGER_FIELDS[k]!] = x;
  }
  return r as unknown as ConsumeRecord;
}

/** A ledger entry's stored text as the record it holds (parseRecord, then decodeLedgerRecord). */
export function parseLedgerRecord(key: string, text: string): ConsumeRecord {
  return decodeLedgerRecord(key, parseRecord<unknown>("ledger", key, text));
}

