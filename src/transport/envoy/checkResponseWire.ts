// Envoy CheckResponse → gRPC frame, written backwards into one reused buffer (issue 18).
//
// The generated encoder (src/gen, through serialize.ts's reused writer) wraps the metadata as a
// Struct (an object per field and per value: `Struct.wrap`, `Object.entries`), forks the writer
// for each of the ~15 nested messages of an allow reply and joins it again, and the endpoint then
// copies the bytes into a gRPC frame: ~1.3 KB of garbage and ~5 % of the endpoint's main thread
// per Check (bench/README.md). Protobuf can be written from the end: a nested message's bytes
// are written first, then its length, then its tag — no sizes to compute first, nothing to
// fork. Fields go in reverse order of the generated encoder's, so the bytes are the same
// (test/unit/checkResponseWire.test.ts compares them over allow and deny replies and random
// CheckResponses); the 5-byte gRPC prefix goes in front and the frame is copied out once
// (Buffer.allocUnsafe: from Node's pool for a small reply). The usual allow is written straight
// from its arguments (allowFrame), with no CheckResponse built for it.
//
// Only values the generated encoder writes without complaint are handled: anything else (a
// number that is not an int32 where one is expected, a non-string where a string is, a value
// the Struct wrapper would refuse, a reply larger than the buffer) throws Unsupported, and the
// caller encodes with the generated encoder instead, which gives the same bytes or its own error.
import type { HeaderValueOption } from "../../gen/envoy/config/core/v3/base.js";
import type { CheckResponse, DeniedHttpResponse, OkHttpResponse } from "../../gen/envoy/service/auth/v3/external_auth.js";
import type { Status } from "../../gen/google/rpc/status.js";
import { NO_FIGURES } from "../../policy/rateFigures.js";
import { ALLOW_ID_HEADERS, allIdsSet, allowId, allowMetadataPairs, rateHeaderPairs, type AllowArgs } from "./toCheckResponse.js";

/** A reply this writer leaves to the generated encoder. */
class Unsupported extends Error {}

const SIZE = 64 * 1024;
const BUF = Buffer.allocUnsafeSlow(SIZE);
/** The write position: bytes [pos, SIZE) are written. */
let pos = SIZE;

function room(n: number): void {
  if (pos < n) throw new Unsupported("reply larger than the buffer");
}

function varint(v: number): void {
  // v: a non-negative integer below 2^32 (tags, lengths, int32 ≥ 0, bools).
  if (v < 0x80) {
    if (pos === 0) throw new Unsupported("reply larger than the buffer");
    BUF[--pos] = v;
    return;
  }
  let n = 1;
  for (let x = v; x >= 0x80; x = Math.floor(x / 128)) n++;
  room(n);
  pos -= n;
  let i = pos;
  while (v >= 0x80) {
    BUF[i++] = (v & 0x7f) | 0x80;
    v = Math.floor(v / 128);
  }
  BUF[i] = v;
}

function int32(v: unknown): void {
  if (typeof v !== "number" || !Number.isInteger(v) || v < 0 || v > 0x7fffffff) throw new Unsupported("not a non-negative int32");
  varint(v);
}

const utf8Write = Buffer.prototype.utf8Write as unknown as (this: Buffer, s: string, offset: number, length: number) => number;

/** A string field's bytes and length (not its tag). */
function str(s: unknown): void {
  if (typeof s !== "string") throw new Unsupported("not a string");
  // ASCII (the usual case) is written char by char as it is checked; anything else as UTF-8.
  const len = s.length;
  room(len);
  let i = pos - len;
  let j = 0;
  for (; j < len; j++) {
    const c = s.charCodeAt(j);
    if (c >= 0x80) break;
    BUF[i++] = c;
  }
  let n = len;
  if (j < len) {
    n = Buffer.byteLength(s, "utf8");
    room(n);
    utf8Write.call(BUF, s, pos - n, n);
  }
  pos -= n;
  strLen = n;
  varint(n);
}

/** The byte length of the string str() wrote last (its bytes end where the caller's pos was). */
let strLen = 0;

/** `b` written as it is, in front of what is written. */
function put(b: Uint8Array): void {
  const n = b.length;
  room(n);
  pos -= n;
  if (n > 32) BUF.set(b, pos);
  else for (let i = 0; i < n; i++) BUF[pos + i] = b[i]!;
}

/** `tag` and the length of what was written since `end` (a nested message's bytes). */
function close(end: number, tag: number): void {
  varint(end - pos);
  varint(tag);
}

function strField(tag: number, s: unknown, skipEmpty: boolean): void {
  if (skipEmpty && s === "") return;
  str(s);
  varint(tag);
}

function headerValueOption(o: HeaderValueOption, tag: number): void {
  const end = pos;
  if (o.keepEmptyValue !== false) {
    if (typeof o.keepEmptyValue !== "boolean") throw new Unsupported("keepEmptyValue");
    varint(1);
    varint(32);
  }
  if (o.appendAction !== 0) {
    int32(o.appendAction);
    varint(24);
  }
  if (o.append !== undefined) {
    const e = pos;
    if (o.append !== false) {
      if (o.append !== true) throw new Unsupported("append");
      varint(1);
      varint(8);
    }
    close(e, 18);
  }
  const h = o.header;
  if (h !== undefined) {
    const e = pos;
    const raw = h.rawValue;
    if (!(raw instanceof Uint8Array)) throw new Unsupported("rawValue");
    if (raw.length !== 0) {
      room(raw.length);
      pos -= raw.length;
      BUF.set(raw, pos);
      varint(raw.length);
      varint(26);
    }
    strField(18, h.value, true);
    strField(10, h.key, true);
    close(e, 10);
  }
  close(end, tag);
}

function headerList(list: readonly HeaderValueOption[], tag: number): void {
  for (let i = list.length - 1; i >= 0; i--) headerValueOption(list[i]!, tag);
}

function stringList(list: readonly string[], tag: number): void {
  for (let i = list.length - 1; i >= 0; i--) strField(tag, list[i], false);
}

/** google.protobuf.Value of a plain JS value, as Value.wrap + Value.encode write it. */
function value(v: unknown, tag: number): void {
  const end = pos;
  if (v === null) {
    varint(0);
    varint(8);
  } else if (typeof v === "boolean") {
    varint(v ? 1 : 0);
    varint(32);
  } else if (typeof v === "number") {
    room(8);
    pos -= 8;
    BUF.writeDoubleLE(v, pos);
    varint(17);
  } else if (typeof v === "string") {
    str(v);
    varint(26);
  } else if (Array.isArray(v)) {
    const e = pos;
    for (let i = v.length - 1; i >= 0; i--) value(v[i], 10);
    close(e, 50);
  } else if (typeof v === "object") {
    const e = pos;
    struct(v as Record<string, unknown>);
    close(e, 42);
  } else if (v !== undefined) throw new Unsupported("a value Struct cannot hold");
  close(end, tag);
}

/**
 * The keys of the structs being written, a nested struct's above its parent's ([0, nKeys)): one
 * array for every reply rather than an Object.keys array per struct. Never shortened (that would
 * free its backing store, to be grown again by the next reply); entries past nKeys are stale.
 */
const KEYS: string[] = [];
let nKeys = 0;

/** google.protobuf.Struct's fields (entries in Object.keys order, undefined values left out). */
function struct(o: Record<string, unknown>): void {
  const base = nKeys;
  // Own enumerable string keys, in the order Object.keys gives them.
  for (const k in o) if (Object.hasOwn(o, k)) KEYS[nKeys++] = k;
  for (let i = nKeys - 1; i >= base; i--) {
    const k = KEYS[i]!;
    const v = o[k];
    if (v === undefined) continue;
    if (k === "__proto__") throw new Unsupported("__proto__ key"); // Struct.wrap would lose it
    const end = pos;
    value(v, 18);
    strField(10, k, true);
    close(end, 10);
  }
  nKeys = base;
}

function status(s: Status): void {
  const end = pos;
  if (!Array.isArray(s.details) || s.details.length !== 0) throw new Unsupported("status details");
  strField(18, s.message, true);
  if (s.code !== 0) {
    int32(s.code);
    varint(8);
  }
  close(end, 10);
}

function okResponse(ok: OkHttpResponse): void {
  const end = pos;
  stringList(ok.queryParametersToRemove, 66);
  if (ok.queryParametersToSet.length !== 0) throw new Unsupported("query parameters to set");
  headerList(ok.responseHeadersToAdd, 50);
  if (ok.dynamicMetadata !== undefined) throw new Unsupported("ok_response.dynamic_metadata");
  stringList(ok.headersToRemove, 42);
  headerList(ok.headers, 18);
  close(end, 26);
}

function deniedResponse(d: DeniedHttpResponse, tag: number): void {
  const end = pos;
  strField(26, d.body, true);
  headerList(d.headers, 18);
  if (d.status !== undefined) {
    const e = pos;
    if (d.status.code !== 0) {
      int32(d.status.code);
      varint(8);
    }
    close(e, 10);
  }
  close(end, tag);
}

/**
 * Views of BUF's last `n` bytes, by n (up to MAX_VIEW), made the first time a message of that
 * length is framed: the copy out is then one TypedArray.set with no view made per reply (a
 * byte-by-byte loop cost ~0.3 µs for an allow's ~410 bytes; BUF.copy makes a view per call).
 */
const MAX_VIEW = 4096;
const TAIL_VIEWS: (Uint8Array | undefined)[] = new Array<Uint8Array | undefined>(MAX_VIEW + 1).fill(undefined);

/** The gRPC frame of the message written at [pos, SIZE): a new Buffer (Node's pool for a small one). */
function frameOut(): Buffer {
  const len = SIZE - pos;
  const frame = Buffer.allocUnsafe(5 + len);
  frame[0] = 0;
  frame.writeUInt32BE(len, 1);
  if (len <= MAX_VIEW) {
    let view = TAIL_VIEWS[len];
    if (view === undefined) TAIL_VIEWS[len] = view = new Uint8Array(BUF.buffer, BUF.byteOffset + pos, len);
    frame.set(view, 5);
  } else BUF.copy(frame, 5, pos, SIZE);
  return frame;
}

/**
 * The gRPC frame (flag 0, 4-byte length, message) of `res`, byte for byte the generated
 * encoder's message; throws when it cannot (see the file comment).
 */
export function checkResponseFrame(res: CheckResponse): Buffer {
  pos = SIZE;
  nKeys = 0; // a reply that threw Unsupported mid-struct left its keys
  if (res.dynamicMetadata !== undefined) {
    const end = pos;
    if (typeof res.dynamicMetadata !== "object" || res.dynamicMetadata === null) throw new Unsupported("dynamic_metadata");
    struct(res.dynamicMetadata);
    close(end, 34);
  }
  const h = res.httpResponse;
  if (h !== undefined) {
    if (h.$case === "okResponse") okResponse(h.value);
    else if (h.$case === "deniedResponse") deniedResponse(h.value, 18);
    else if (h.$case === "errorResponse") deniedResponse(h.value, 42);
  }
  if (res.status !== undefined) status(res.status);
  return frameOut();
}

/** One header option as toCheckResponse.ts's header() builds it (`append` false, present; nothing else set). */
function plainHeader(name: string, value: string, tag: number): void {
  const end = pos;
  varint(0); // append: an empty BoolValue (false)
  varint(18);
  const e = pos;
  strField(18, value, true);
  nameField(name);
  close(e, 10);
  close(end, tag);
}

/** plainHeader with a value whose bytes (`n` of them, ending at `srcEnd`) are already in the buffer: copied, not written again. */
function copiedHeader(name: string, srcEnd: number, n: number, tag: number): void {
  const end = pos;
  varint(0); // append: an empty BoolValue (false)
  varint(18);
  const e = pos;
  if (n > 0) {
    room(n);
    pos -= n;
    BUF.copyWithin(pos, srcEnd - n, srcEnd);
    varint(n);
    varint(18);
  }
  nameField(name);
  close(e, 10);
  close(end, tag);
}

/** allowFrame's pairs (it is synchronous): emptied after each reply. */
const META_PAIRS: unknown[] = [];
const RATE_PAIRS: string[] = [];

// The constant parts of the usual allow, as bytes (issue 18; bench/README.md, eighth pass): the
// writers above check and copy a string one character at a time, and an allow wrote ~320
// characters a Check, most of them the same from Check to Check.
//
// A name's field (tag, length, bytes) by tag and name, written once by strField and kept: the
// names are toCheckResponse.ts's constants (metadata keys, header names), so a handful. Past
// MAX_NAMES (or a long name) strField writes it each time, as before.
const MAX_NAMES = 64;
const MAX_NAME_LENGTH = 64;
const NAME_FIELDS = new Map<string, Uint8Array>();

/** strField(10, name, true) for a name (a header's key or a Struct entry's key). */
function nameField(name: string): void {
  const b = NAME_FIELDS.get(name);
  if (b !== undefined) return put(b);
  const end = pos;
  strField(10, name, true);
  if (name.length <= MAX_NAME_LENGTH && NAME_FIELDS.size < MAX_NAMES) NAME_FIELDS.set(name, new Uint8Array(BUF.subarray(pos, end)));
}

// A key's id, account and group, as the allow writes them twice (the first three id headers, the
// first three metadata entries: each run contiguous in the reply), kept as bytes per key id and
// checked against the account and group on every use (a key moved to another account or group
// gets its block written again). At most MAX_ID_BLOCKS keys (then the map starts over); a block
// past MAX_ID_BLOCK_BYTES is not kept.
interface IdBlock {
  accountId: string;
  group: string;
  /** The first three metadata entries (key_id, account_id, group), as the loop writes them. */
  meta: Uint8Array;
  /** The first three id headers (x-aisa-key-id, -account-id, -group). */
  headers: Uint8Array;
}
const MAX_ID_BLOCKS = 4096;
const MAX_ID_BLOCK_BYTES = 512;
const ID_BLOCKS = new Map<string, IdBlock>();
/** The metadata pairs that are the key's ids (allowMetadataPairs' first three: key_id, account_id, group). */
const ID_PAIRS = 3;

/** One metadata entry (a Struct's FieldsEntry) of `name` and `v`. */
function metaEntry(name: unknown, v: unknown): void {
  const e = pos;
  value(v, 18);
  if (typeof name === "string") nameField(name);
  else strField(10, name, true);
  close(e, 10);
}

/**
 * The id block of `a` (whose pairs are in META_PAIRS), from the map or written now. Uses the
 * buffer from its end: call before the reply is written. Undefined when too large to keep.
 */
function idBlockOf(a: AllowArgs): IdBlock | undefined {
  // The pairs kept are the key's ids (allowMetadataPairs' order): else nothing is kept.
  if (META_PAIRS[1] !== a.keyId || META_PAIRS[3] !== a.accountId || META_PAIRS[5] !== a.group) return undefined;
  const b = ID_BLOCKS.get(a.keyId);
  if (b !== undefined && b.accountId === a.accountId && b.group === a.group) return b;
  pos = SIZE;
  for (let i = 2 * ID_PAIRS - 2; i >= 0; i -= 2) metaEntry(META_PAIRS[i], META_PAIRS[i + 1]);
  const meta = new Uint8Array(BUF.subarray(pos, SIZE));
  pos = SIZE;
  for (let i = ID_PAIRS - 1; i >= 0; i--) plainHeader(ALLOW_ID_HEADERS[i]!, allowId(a, i), 18);
  const headers = new Uint8Array(BUF.subarray(pos, SIZE));
  pos = SIZE;
  if (meta.length + headers.length > MAX_ID_BLOCK_BYTES) return undefined;
  if (ID_BLOCKS.size >= MAX_ID_BLOCKS) ID_BLOCKS.clear();
  const block: IdBlock = { accountId: a.accountId, group: a.group, meta, headers };
  ID_BLOCKS.set(a.keyId, block);
  return block;
}

/** Id blocks held now (tests: the bound). */
export function idBlockCount(): number {
  return ID_BLOCKS.size;
}

/**
 * The usual allow (every id set: toCheckResponse.ts allIdsSet) written straight from its
 * arguments into its gRPC frame: the bytes `checkResponseFrame(allowResponse(a))` gives, without
 * the CheckResponse object graph in between (issue 18; bench/README.md, seventh pass). The names
 * and pairs are toCheckResponse.ts's (ALLOW_ID_HEADERS, allowMetadataPairs, rateHeaderPairs).
 * Undefined for any other allow, or one this writer cannot write (see the file comment): the
 * caller builds allowResponse(a) and frames that.
 */
export function allowFrame(a: AllowArgs): Buffer | undefined {
  if (!allIdsSet(a)) return undefined;
  nKeys = 0;
  let nMeta = 0;
  let nRate = 0;
  try {
    nMeta = allowMetadataPairs(a, META_PAIRS);
    // The key's ids as kept bytes (written into the buffer's end first when new).
    const ids = idBlockOf(a);
    pos = SIZE;
    // dynamic_metadata (4): the Struct's entries, last first; the reservation id's bytes are
    // noted to be copied into its header below.
    const m = pos;
    const firstKept = ids === undefined ? 0 : 2 * ID_PAIRS;
    let rsvEnd = -1;
    let rsvLen = 0;
    for (let i = nMeta - 2; i >= firstKept; i -= 2) {
      const v = META_PAIRS[i + 1];
      const e = pos;
      value(v, 18);
      if (v === a.reservationId) {
        // value() wrote the string's bytes, then its length, its tag (26), the Value's length and tag (18).
        rsvLen = strLen;
        rsvEnd = e;
      }
      const k = META_PAIRS[i];
      if (typeof k === "string") nameField(k);
      else strField(10, k, true);
      close(e, 10);
    }
    if (ids !== undefined) put(ids.meta);
    close(m, 34);
    // ok_response (3): query_parameters_to_remove (8), response_headers_to_add (6),
    // headers_to_remove (5), headers (2).
    const o = pos;
    const q = a.credentialQueryParams;
    if (q !== undefined) stringList(q, 66);
    const f = a.figures;
    if (f !== undefined && f !== NO_FIGURES) {
      nRate = rateHeaderPairs(f, RATE_PAIRS);
      for (let i = nRate - 2; i >= 0; i -= 2) plainHeader(RATE_PAIRS[i]!, RATE_PAIRS[i + 1]!, 50);
    }
    stringList(a.credentialHeaders, 42);
    const firstWritten = ids === undefined ? 0 : ID_PAIRS;
    for (let i = ALLOW_ID_HEADERS.length - 1; i >= firstWritten; i--) {
      const v = allowId(a, i);
      if (v === a.reservationId && rsvEnd >= 0) copiedHeader(ALLOW_ID_HEADERS[i]!, rsvEnd, rsvLen, 18);
      else plainHeader(ALLOW_ID_HEADERS[i]!, v, 18);
    }
    if (ids !== undefined) put(ids.headers);
    close(o, 26);
    // status (1): code 0, no message: an empty message.
    varint(0);
    varint(10);
    return frameOut();
  } catch (err) {
    if (err instanceof Unsupported) return undefined;
    throw err;
  } finally {
    // Nothing of this Check is held until the next one.
    for (let i = 0; i < nMeta; i++) META_PAIRS[i] = undefined;
    for (let i = 0; i < nRate; i++) RATE_PAIRS[i] = "";
  }
}

/** Frames of the shared, frozen deny replies (toCheckResponse.ts): encoded once each. */
const FROZEN = new WeakMap<CheckResponse, Buffer>();

/**
 * `checkResponseFrame`, or the generated encoder's bytes framed when it cannot (whatever it
 * threw: the generated encoder then answers, or throws its own error). A frozen reply's frame
 * is kept and shared.
 */
export function checkResponseFrameOr(res: CheckResponse, encode: (res: CheckResponse) => Uint8Array): Buffer {
  const frozen = Object.isFrozen(res);
  if (frozen) {
    const f = FROZEN.get(res);
    if (f !== undefined) return f;
  }
  let frame: Buffer;
  try {
    frame = checkResponseFrame(res);
  } catch {
    const body = encode(res);
    frame = Buffer.allocUnsafe(5 + body.length);
    frame[0] = 0;
    frame.writeUInt32BE(body.length, 1);
    frame.set(body, 5);
  }
  if (frozen) FROZEN.set(res, frame);
  return frame;
}
