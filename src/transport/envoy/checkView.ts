// The Envoy endpoint's CheckRequest decode, reading only what the decision reads (issue 18).
//
// ts-proto's CheckRequest.decode builds the whole message: an object with every field
// defaulted for each of ~10 messages (both peers, the request, its Timestamp as a Date), an
// entry object per header, ~30 strings (header names and values, id, method, host, protocol…)
// and the body as a string through TextDecoder — ~4 KB of garbage and ~9 % of the endpoint's
// main thread per Check (bench/README.md). The decision reads a handful of them: toAuthInput and
// dialectOf read the path, the body (or raw_body), the L4 peer's address, header_map, and the
// `headers` entries named in ENVOY_HEADERS_READ.
//
// decodeCheckView walks the same bytes with the same BinaryReader calls, in the same order, as
// the generated decoders (src/gen), so it accepts and rejects exactly what they do: every loop is
// `while (pos < end)` over `reader.uint32()` tags, a tag 0 or an end-group wire type ends the
// message, a field with an unexpected wire type or an unknown number is `reader.skip`ped, scalars
// are read with the method the generated code uses, strings and bytes are bounds-checked, and the
// subtrees it does not model (metadata_context, route_metadata_context: Struct and Any) are
// decoded by their generated decoders at the recursion depth they would have. What it builds is a
// CheckRequest holding only the read fields (same values, same presence, except that an ASCII
// `body` arrives as `raw_body` bytes when there is no raw_body: see httpRequest): `headers` keeps the
// entries named in ENVOY_HEADERS_READ, and one other entry when none of those is present but the
// map is not empty (toAuthInput prefers a non-empty `headers` to header_map). Anything that
// throws returns null: the caller then runs the generated decoder, whose error is the answer.
// test/unit/checkView.test.ts compares the decision's input (toAuthInput, dialectOf) of both over
// the fixtures and fuzzed requests, and the accept/reject verdict over mutated bytes.
import { isAscii } from "node:buffer";
import { BinaryReader } from "@bufbuild/protobuf/wire";
import { Metadata } from "../../gen/envoy/config/core/v3/base.js";
import type { CheckRequest } from "../../gen/envoy/service/auth/v3/external_auth.js";
import "../asciiStrings.js";
import { asciiAt } from "../ascii.js";

/** The `headers` names the decision reads (toAuthInput, and dialectOf through policy/denyShape.ts). */
export const ENVOY_HEADERS_READ: ReadonlySet<string> = new Set([
  "authorization",
  "x-api-key",
  "api-key",
  "x-goog-api-key",
  "x-forwarded-for",
  "x-envoy-auth-partial-body",
  "x-aisa-model",
  "anthropic-version",
]);

type Reader = BinaryReader & { __tsProtoDecodeDepth?: number };
/** The reader's bytes (`buf` is private in the typings). */
const bufOf = (r: Reader): Uint8Array => (r as unknown as { buf: Uint8Array }).buf;
type Obj = Record<string, unknown>;
/** int64()'s read and bounds check (the varint, at most 10 bytes), without the BigInt it makes of it. */
const skipInt64 = (r: Reader): void => (r as unknown as { varint64(): void }).varint64();

/** A length-delimited field skipped as the generated code's string()/bytes() would read it (bounds-checked). */
function skipLength(r: Reader): void {
  const len = u32(r);
  r.pos += len;
  if (r.pos > r.len) throw new RangeError("premature EOF");
}

/**
 * reader.uint32(), its one-byte case read here (most tags and lengths): the same value, position
 * and bounds check (a byte past the end goes to the library, which throws). `buf`: the reader's
 * bytes, where a hot loop has them at hand.
 */
function u32(r: Reader, buf: Uint8Array = bufOf(r)): number {
  const p = r.pos;
  if (p < r.len) {
    const b = buf[p]!;
    if (b < 0x80) {
      r.pos = p + 1;
      return b;
    }
  }
  return r.uint32();
}

/** End of a sub-message whose length prefix is next (the generated `reader.pos + length`). */
function subEnd(r: Reader): number {
  const len = u32(r);
  return r.pos + len;
}

/** The generated decoders' depth guard, as each message decode applies it. */
function enter(r: Reader): number {
  const d = r.__tsProtoDecodeDepth ?? 0;
  if (d >= 100) throw new Error("protobuf decode recursion limit exceeded");
  r.__tsProtoDecodeDepth = d + 1;
  return d;
}

/** A message whose fields are all strings (numbers in `strings`), none kept: TLSSession, map entries, Pipe's path. */
function skipStringsMessage(r: Reader, end: number, strings: number, varints = 0): void {
  const d = enter(r);
  while (r.pos < end) {
    const tag = u32(r);
    const f = tag >>> 3;
    if (f > 0 && f < 32 && (strings >>> f) & 1 && tag === ((f << 3) | 2)) {
      skipLength(r);
      continue;
    }
    if (f > 0 && f < 32 && (varints >>> f) & 1 && tag === f << 3) {
      u32(r);
      continue;
    }
    if ((tag & 7) === 4 || tag === 0) break;
    r.skip(tag & 7);
  }
  r.__tsProtoDecodeDepth = d;
}

const bit = (...fields: number[]) => fields.reduce((a, f) => a | (1 << f), 0);
/** Map entries key/value strings (1, 2); TLSSession sni (1); EnvoyInternalAddress (1, 2). */
const STR_1_2 = bit(1, 2);

/** envoy.config.core.v3.SocketAddress: keeps `address` when `keep`. */
function socketAddress(r: Reader, end: number, keep: boolean): Obj | undefined {
  const d = enter(r);
  let addr = "";
  while (r.pos < end) {
    const tag = u32(r);
    switch (tag) {
      case 8: // protocol (enum)
        r.int32();
        continue;
      case 18:
        // string() and skipLength accept and refuse the same bytes (bounds only).
        if (keep) addr = r.string();
        else skipLength(r);
        continue;
      case 24: // port_value
        u32(r);
        continue;
      case 34: // named_port
      case 42: // resolver_name
      case 58: // network_namespace_filepath
        skipLength(r);
        continue;
      case 48: // ipv4_compat
        r.bool();
        continue;
    }
    if ((tag & 7) === 4 || tag === 0) break;
    r.skip(tag & 7);
  }
  r.__tsProtoDecodeDepth = d;
  return keep ? { address: addr } : undefined;
}

/** envoy.config.core.v3.Address: the oneof's case (and the socket address) when `keep`. */
function address(r: Reader, end: number, keep: boolean): Obj | undefined {
  const d = enter(r);
  let out: unknown = undefined;
  while (r.pos < end) {
    const tag = u32(r);
    if (tag === 10) {
      const value = socketAddress(r, subEnd(r), keep);
      if (keep) out = { $case: "socketAddress", value };
      continue;
    }
    if (tag === 18) {
      skipStringsMessage(r, subEnd(r), bit(1), bit(2)); // Pipe: path, mode
      if (keep) out = { $case: "pipe", value: {} };
      continue;
    }
    if (tag === 26) {
      skipStringsMessage(r, subEnd(r), STR_1_2); // EnvoyInternalAddress
      if (keep) out = { $case: "envoyInternalAddress", value: {} };
      continue;
    }
    if ((tag & 7) === 4 || tag === 0) break;
    r.skip(tag & 7);
  }
  r.__tsProtoDecodeDepth = d;
  return keep ? { address: out } : undefined;
}

// The source peer's view, shared per address (issue 18): Envoy sends the L4 peer of every
// request, and peers repeat, so its four objects (Peer, Address, the oneof, SocketAddress) and
// the address string were ~0.3 KB of garbage per Check. A Peer's view holds only its last
// Address field (as the generated decoder: a later one replaces an earlier one), so it is a
// function of that field's bytes: a direct-mapped table of PEER_SLOTS entries, keyed by those
// bytes (at most PEER_BYTES_MAX of them), each holding a deep-frozen view. Bytes are compared in
// full on a hit; a miss decodes (refusing what the decoder refuses: nothing is stored then) and
// replaces the slot. The Address is always at the same depth (4), so the same bytes always
// decode to the same view. So memory is bounded (PEER_SLOTS × PEER_BYTES_MAX bytes and views) however
// many distinct addresses arrive.
export const PEER_SLOTS = 1024;
const PEER_BYTES_MAX = 160;
const peerKeys: (Uint8Array | undefined)[] = new Array<Uint8Array | undefined>(PEER_SLOTS).fill(undefined);
const peerViews: (Obj | undefined)[] = new Array<Obj | undefined>(PEER_SLOTS).fill(undefined);
const NO_PEER_ADDRESS: Obj = Object.freeze({ address: undefined });

/** Entries held in the peer table now (tests: the bound). */
export function peerCacheSize(): number {
  let n = 0;
  for (let i = 0; i < PEER_SLOTS; i++) if (peerKeys[i] !== undefined) n++;
  return n;
}

function deepFreeze<T>(o: T): T {
  if (o !== null && typeof o === "object" && !Object.isFrozen(o)) {
    for (const v of Object.values(o)) deepFreeze(v);
    Object.freeze(o);
  }
  return o;
}

/** The shared Peer view for the Address field in [start, end) of the reader's bytes, decoding (and keeping) it on a miss. */
function sharedPeerOf(r: Reader, start: number, end: number): Obj {
  const buf = bufOf(r);
  const n = end - start;
  if (n > PEER_BYTES_MAX || end > r.len) return { address: address(r, end, true) };
  let h = 0x811c9dc5;
  for (let i = start; i < end; i++) h = Math.imul(h ^ buf[i]!, 0x01000193);
  const slot = (h >>> 0) & (PEER_SLOTS - 1);
  const key = peerKeys[slot];
  if (key !== undefined && key.length === n) {
    let i = 0;
    while (i < n && key[i] === buf[start + i]) i++;
    if (i === n) {
      r.pos = end;
      return peerViews[slot]!;
    }
  }
  const view: Obj = { address: address(r, end, true) };
  // Kept only when the decode read exactly these bytes: one that stopped early (a tag 0 or an
  // end-group inside) or read past them leaves the reader elsewhere, which a hit could not repeat.
  if (r.pos !== end) return view;
  peerKeys[slot] = buf.slice(start, end);
  peerViews[slot] = deepFreeze(view);
  return view;
}

/** AttributeContext.Peer: keeps `address` when `keep` (the source: shared per address, above). */
function peer(r: Reader, end: number, keep: boolean): Obj | undefined {
  const d = enter(r);
  let out = NO_PEER_ADDRESS;
  while (r.pos < end) {
    const tag = u32(r);
    switch (tag) {
      case 10: {
        const e = subEnd(r);
        if (keep) out = sharedPeerOf(r, r.pos, e);
        else address(r, e, false);
        continue;
      }
      case 18: // service
      case 34: // principal
      case 42: // certificate
        skipLength(r);
        continue;
      case 26: // labels entry
        skipStringsMessage(r, subEnd(r), STR_1_2);
        continue;
    }
    if ((tag & 7) === 4 || tag === 0) break;
    r.skip(tag & 7);
  }
  r.__tsProtoDecodeDepth = d;
  return keep ? out : undefined;
}

/** google.protobuf.Timestamp, read and dropped. */
function skipTimestamp(r: Reader, end: number): void {
  const d = enter(r);
  while (r.pos < end) {
    const tag = u32(r);
    if (tag === 8) {
      skipInt64(r);
      continue;
    }
    if (tag === 16) {
      r.int32();
      continue;
    }
    if ((tag & 7) === 4 || tag === 0) break;
    r.skip(tag & 7);
  }
  r.__tsProtoDecodeDepth = d;
}

/**
 * One `headers` entry: into `headers` when its name is read. Returns true when it was, else
 * false, or the key when `wantKey` (the first key that is not read, for the map's presence).
 */
function headersEntry(r: Reader, end: number, headers: Record<string, string>, wantKey: boolean): boolean | string {
  // No depth bookkeeping (enter): an entry is always at depth 5 (request → attributes → request
  // → http → entry), far from the limit, and holds no message that would read the depth.
  const buf = bufOf(r);
  let keyStart = -1;
  let keyEnd = -1;
  let valueStart = -1;
  let valueEnd = -1;
  while (r.pos < end) {
    const tag = u32(r, buf);
    if (tag === 10 || tag === 18) {
      const len = u32(r, buf);
      const start = r.pos;
      r.pos += len;
      if (r.pos > r.len) throw new RangeError("premature EOF");
      if (tag === 10) {
        keyStart = start;
        keyEnd = r.pos;
      } else {
        valueStart = start;
        valueEnd = r.pos;
      }
      continue;
    }
    if ((tag & 7) === 4 || tag === 0) break;
    r.skip(tag & 7);
  }
  const name = keyStart < 0 ? undefined : readName(buf, keyStart, keyEnd);
  if (name === undefined) return wantKey ? (keyStart < 0 ? "" : stringAt(buf, keyStart, keyEnd)) : false;
  headers[name] = valueStart < 0 ? "" : stringAt(buf, valueStart, valueEnd);
  return true;
}

/** The ENVOY_HEADERS_READ names by length, with their bytes. */
const NAMES_BY_LENGTH: { name: string; bytes: Buffer }[][] = [];
for (const name of ENVOY_HEADERS_READ) (NAMES_BY_LENGTH[name.length] ??= []).push({ name, bytes: Buffer.from(name, "latin1") });

/**
 * The read name (ENVOY_HEADERS_READ) that bytes [start, end) spell, or undefined: compared as
 * bytes, so no string is made of a key that is not read. The names are ASCII, and the string
 * reader.string() makes of other bytes is never one of them (non-ASCII bytes decode to non-ASCII
 * characters), so this is the key's string's set membership.
 */
function readName(buf: Uint8Array, start: number, end: number): string | undefined {
  const candidates = NAMES_BY_LENGTH[end - start];
  if (candidates === undefined) return undefined;
  for (let c = 0; c < candidates.length; c++) {
    const bytes = candidates[c]!.bytes;
    let i = 0;
    while (i < bytes.length && buf[start + i] === bytes[i]) i++;
    if (i === bytes.length) return candidates[c]!.name;
  }
  return undefined;
}

const TEXT = new TextDecoder("utf-8", { ignoreBOM: true });

/**
 * The string the generated code's reader.string() returns for bytes [start, end): ASCII as
 * latin1 (the same text), anything else through @bufbuild's non-strict decoder (TextDecoder,
 * U+FFFD for invalid bytes, a leading BOM kept).
 */
function stringAt(buf: Uint8Array, start: number, end: number): string {
  return asciiAt(buf, start, end) ?? TEXT.decode(buf.subarray(start, end));
}

/** envoy.config.core.v3.HeaderMap, whole: every entry's key, value and raw_value (toAuthInput reads them all). */
function headerMap(r: Reader, end: number): Obj {
  const d = enter(r);
  const list: Obj[] = [];
  while (r.pos < end) {
    const tag = u32(r);
    if (tag === 10) {
      const e = subEnd(r);
      const d2 = enter(r);
      const hv: Obj = { key: "", value: "", rawValue: EMPTY };
      while (r.pos < e) {
        const t = u32(r);
        if (t === 10) {
          hv.key = r.string();
          continue;
        }
        if (t === 18) {
          hv.value = r.string();
          continue;
        }
        if (t === 26) {
          hv.rawValue = r.bytes();
          continue;
        }
        if ((t & 7) === 4 || t === 0) break;
        r.skip(t & 7);
      }
      r.__tsProtoDecodeDepth = d2;
      list.push(hv);
      continue;
    }
    if ((tag & 7) === 4 || tag === 0) break;
    r.skip(tag & 7);
  }
  r.__tsProtoDecodeDepth = d;
  return { headers: list };
}

const EMPTY = new Uint8Array(0);

/** AttributeContext.HttpRequest: headers (read names), header_map, path, body, raw_body. */
function httpRequest(r: Reader, end: number): Obj {
  const d = enter(r);
  const headers: Record<string, string> = {};
  let kept = false;
  let other: string | undefined; // a key present on the wire, when none of the read ones is
  const out: Obj = { headers, headerMap: undefined, path: "", body: "", rawBody: EMPTY };
  let bodyStart = -1;
  let bodyEnd = -1;
  let rawBody = false;
  while (r.pos < end) {
    const tag = u32(r);
    switch (tag) {
      case 26: {
        const got = headersEntry(r, subEnd(r), headers, !kept && other === undefined);
        if (got === true) kept = true;
        else if (typeof got === "string" && got !== "__proto__") other = got;
        continue;
      }
      case 106:
        out.headerMap = headerMap(r, subEnd(r));
        continue;
      case 34:
        out.path = r.string();
        continue;
      case 90: {
        // Kept as a range: decoded (or handed over as bytes) once the message is read.
        const len = u32(r);
        bodyStart = r.pos;
        r.pos += len;
        if (r.pos > r.len) throw new RangeError("premature EOF");
        bodyEnd = r.pos;
        continue;
      }
      case 98:
        out.rawBody = r.bytes();
        rawBody = true;
        continue;
      case 10: // id
      case 18: // method
      case 42: // host
      case 50: // scheme
      case 58: // query
      case 66: // fragment
      case 82: // protocol
        skipLength(r);
        continue;
      case 72: // size (int64)
        skipInt64(r);
        continue;
    }
    if ((tag & 7) === 4 || tag === 0) break;
    r.skip(tag & 7);
  }
  r.__tsProtoDecodeDepth = d;
  if (bodyEnd > bodyStart) {
    const buf = bufOf(r);
    // An ASCII body (a JSON request's usual bytes) is handed over as raw_body when the request
    // has none: extractBodyFields reads ASCII bytes exactly as it reads their string (same
    // characters, lengths and cut), and a 1 KB string is not built per Check. Otherwise the
    // string, as the generated decoder builds it.
    const body = buf.subarray(bodyStart, bodyEnd);
    if (!rawBody && isAscii(body)) out.rawBody = body;
    else out.body = stringAt(buf, bodyStart, bodyEnd);
  }
  // The map is not empty on the wire: keep it non-empty here (its value is never read).
  if (!kept && other !== undefined) headers[other] = "";
  return out;
}

/** AttributeContext.Request: time (dropped), http. */
function request(r: Reader, end: number): Obj {
  const d = enter(r);
  const out: Obj = { time: undefined, http: undefined };
  while (r.pos < end) {
    const tag = u32(r);
    if (tag === 10) {
      skipTimestamp(r, subEnd(r));
      continue;
    }
    if (tag === 18) {
      out.http = httpRequest(r, subEnd(r));
      continue;
    }
    if ((tag & 7) === 4 || tag === 0) break;
    r.skip(tag & 7);
  }
  r.__tsProtoDecodeDepth = d;
  return out;
}

/** AttributeContext: source, request; the rest read and dropped. */
function attributeContext(r: Reader, end: number): Obj {
  const d = enter(r);
  const out: Obj = { source: undefined, request: undefined };
  while (r.pos < end) {
    const tag = u32(r);
    switch (tag) {
      case 10:
        out.source = peer(r, subEnd(r), true);
        continue;
      case 18: // destination: not read by the decision; walked (and refused) as the decoder would, nothing built
        peer(r, subEnd(r), false);
        continue;
      case 34:
        out.request = request(r, subEnd(r));
        continue;
      case 82: // context_extensions entry
        skipStringsMessage(r, subEnd(r), STR_1_2);
        continue;
      case 90: // metadata_context
      case 106: // route_metadata_context
        withView(r);
        Metadata.decode(r, u32(r)); // its own depth guard, from this depth
        continue;
      case 98: // tls_session
        skipStringsMessage(r, subEnd(r), bit(1));
        continue;
    }
    if ((tag & 7) === 4 || tag === 0) break;
    r.skip(tag & 7);
  }
  r.__tsProtoDecodeDepth = d;
  return out;
}

/**
 * The CheckRequest as the decision reads it (see the file comment), or null when the bytes do
 * not decode (the generated decoder then gives the error).
 */
export function decodeCheckView(bytes: Uint8Array): CheckRequest | null {
  const r = READER;
  try {
    READER_BYTES.buf = bytes;
    READER_BYTES.len = bytes.length;
    r.pos = 0;
    r.__tsProtoDecodeDepth = 0;
    const d = enter(r);
    const out: Obj = { attributes: undefined };
    while (r.pos < r.len) {
      const tag = u32(r);
      if (tag === 10) {
        out.attributes = attributeContext(r, subEnd(r));
        continue;
      }
      if ((tag & 7) === 4 || tag === 0) break;
      r.skip(tag & 7);
    }
    r.__tsProtoDecodeDepth = d;
    return out as unknown as CheckRequest;
  } catch {
    return null;
  } finally {
    // The request's bytes are not held until the next Check.
    READER_BYTES.buf = EMPTY;
    READER_BYTES.len = 0;
    READER_BYTES.view = NO_VIEW;
  }
}

/**
 * The one reader every decode uses (a BinaryReader and its DataView per Check were garbage): a
 * decode runs start to end synchronously and never nests in another. Its `view` is read only
 * by fixed-width fields, which only the metadata subtrees have: it is set before those are
 * decoded (withView), and is otherwise a view of nothing. (A getter in its place would turn the
 * reader into a dictionary-mode object and slow every read.)
 */
const READER = new BinaryReader(EMPTY) as Reader;
/** The reader's bytes, their length and view (private and read-only in the typings). */
const READER_BYTES = READER as unknown as { buf: Uint8Array; len: number; view: DataView };
const NO_VIEW = READER_BYTES.view;

function withView(r: Reader): void {
  const s = r as unknown as { buf: Uint8Array; view: DataView };
  if (s.view === NO_VIEW) s.view = new DataView(s.buf.buffer, s.buf.byteOffset, s.buf.byteLength);
}
