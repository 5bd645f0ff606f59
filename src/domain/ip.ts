// IP utilities: operator input (whitelist entries) and client addresses from the network.
//
// Two kinds of input, two kinds of parser:
//  - Operator input (admin API, CLI) goes through normalizeIpEntry, which uses ipaddr.js and is
//    strict: it runs rarely, its output is stored, and it must reject anything ambiguous
//    ("010.0.0.1" is 8.0.0.1 to inet_aton but 10.0.0.1 to a human; "1" and "0x7f.1" are legal
//    to inet_aton too). An accepted entry is stored in one canonical form.
//  - Network input (Envoy's socket address, an x-forwarded-for entry, a gRPC peer) goes through
//    parseClientIp, a hand-written parser: it runs on every request, must not throw and must
//    not allocate beyond its result. It is exactly as strict as the operator parser about
//    IPv4 (dotted quad, decimal, no leading zeros), so no address can be read one way in the
//    whitelist and another way at the door.
//
// IPv4-mapped IPv6 (::ffff:a.b.c.d) is IPv4 everywhere: a dual-stack listener reports IPv4
// peers that way, and a whitelist of 10.0.0.0/8 must match them. Byte form: 4 bytes for IPv4
// (mapped included), 16 for IPv6.
import ipaddr from "ipaddr.js";
import type { CidrRange } from "../policy/types.js";
import { invalid } from "./errors.js";

// The longest textual IPv6 CIDR is 45 + 4 characters; anything much longer is garbage, and the
// cap keeps ipaddr.js's regular expressions away from adversarially long strings.
const MAX_ENTRY_LENGTH = 64;
// Network input may carry brackets, a zone id and a port: "[fe80::1%eth0]:65535".
const MAX_CLIENT_IP_LENGTH = 128;

const PREFIX_RE = /^(?:0|[1-9][0-9]{0,2})$/;

function notAnAddress(field: string, raw: string) {
  return invalid(field, `${JSON.stringify(raw)} is not an IPv4/IPv6 address or CIDR`);
}

/**
 * Why `entry` (refused by normalizeIpEntry with `problem`) is refused, in the words an operator
 * typing it needs (the TUI form shows it as you type): a zone id, a bad CIDR, a short or octal
 * IPv4 form. Only the wording: whether an entry is accepted is normalizeIpEntry's alone.
 */
export function explainIpProblem(entry: string, problem: string): string {
  const s = entry.trim();
  if (s.includes("%")) return "zone ids are not allowed";
  if (s.includes("/")) {
    if (ipaddr.IPv4.isValidCIDRFourPartDecimal(s) || ipaddr.IPv6.isValidCIDR(s)) return problem;
    return "not a valid CIDR (e.g. 10.0.0.0/8, 2001:db8::/32)";
  }
  if (ipaddr.IPv4.isValidFourPartDecimal(s) || ipaddr.IPv6.isValid(s)) return problem;
  if (ipaddr.isValid(s)) return "IPv4 must be four plain decimal parts (a.b.c.d, no leading zeros)";
  return "not an IPv4 or IPv6 address";
}

/**
 * Validates and canonicalises one whitelist entry typed by an operator: an IPv4 or IPv6
 * address or CIDR. Returns the canonical form:
 *  - IPv4 dotted decimal; IPv6 compressed lower-case (RFC 5952);
 *  - IPv4-mapped IPv6 becomes IPv4 (a CIDR too, when its prefix is >= 96: /104 → /8);
 *  - CIDR host bits are zeroed ("10.1.2.3/8" → "10.0.0.0/8"); a bare address stays bare.
 * Throws invalid(field, …) (INVALID_ARGUMENT) for anything else, including octal/hex/short
 * IPv4 forms, zone ids and prefixes with leading zeros.
 */
export function normalizeIpEntry(s: string, field = "ip"): string {
  if (typeof s !== "string") throw notAnAddress(field, String(s));
  const text = s.trim();
  if (text.length === 0 || text.length > MAX_ENTRY_LENGTH) throw notAnAddress(field, s);
  const slash = text.indexOf("/");
  if (slash >= 0 && text.indexOf("/", slash + 1) >= 0) throw notAnAddress(field, s);
  const addrText = slash < 0 ? text : text.slice(0, slash);

  let bytes: number[];
  let v6: boolean;
  if (addrText.includes(":")) {
    // A zone id names a local interface; it means nothing in a whitelist.
    if (addrText.includes("%")) throw notAnAddress(field, s);
    // ipaddr.js reads the embedded IPv4 of "::ffff:010.0.0.1" as decimal 10.0.0.1; apply the
    // same strictness as for plain IPv4.
    if (addrText.includes(".") && !ipaddr.IPv4.isValidFourPartDecimal(addrText.slice(addrText.lastIndexOf(":") + 1))) {
      throw notAnAddress(field, s);
    }
    // Both parsers must accept it; the bytes come from ours, the one the request path uses.
    // (ipaddr.js reads the deprecated "::1.2.3.4" as IPv4-mapped; RFC 4291 and inet_pton read
    // it as IPv4-compatible ::102:304. Taking ipaddr's bytes would make the stored range and
    // the matched client address disagree.)
    const raw = ipaddr.IPv6.isValid(addrText) ? parseV6Words(addrText, 0, addrText.length, false) : null;
    if (raw === null) throw notAnAddress(field, s);
    bytes = Array.from(raw);
    v6 = true;
  } else {
    if (!ipaddr.IPv4.isValidFourPartDecimal(addrText)) throw notAnAddress(field, s);
    bytes = ipaddr.IPv4.parse(addrText).toByteArray();
    v6 = false;
  }

  let prefix: number | null = null;
  if (slash >= 0) {
    const p = text.slice(slash + 1);
    const max = v6 ? 128 : 32;
    if (!PREFIX_RE.test(p) || Number(p) > max) {
      throw invalid(field, `${JSON.stringify(s)}: the prefix length must be a decimal number from 0 to ${max}`);
    }
    prefix = Number(p);
  }

  if (v6 && isMapped(bytes) && (prefix === null || prefix >= 96)) {
    bytes = bytes.slice(12);
    v6 = false;
    if (prefix !== null) prefix -= 96;
  }
  if (prefix !== null) zeroHostBits(bytes, prefix);

  const addr = v6 ? new ipaddr.IPv6(wordsOf(bytes)).toRFC5952String() : bytes.join(".");
  return prefix === null ? addr : `${addr}/${prefix}`;
}

/**
 * Parses a normalised entry (normalizeIpEntry's output) into the byte form the policy
 * matches against. A bare address is a /32 (IPv4) or /128 (IPv6). Uses the hand-written
 * parser, not ipaddr.js: the store may turn millions of entries into ranges at start-up.
 * Throws invalid(field, …) if the text is not a plain address or CIDR.
 */
export function toCidrRange(normalized: string, field = "ip"): CidrRange {
  const slash = normalized.indexOf("/");
  const end = slash < 0 ? normalized.length : slash;
  const parsed = parseLiteral(normalized, 0, end);
  if (parsed === null) throw notAnAddress(field, normalized);
  const max = parsed.length === 4 ? 32 : 128;
  let prefix = max;
  if (slash >= 0) {
    const p = normalized.slice(slash + 1);
    if (!PREFIX_RE.test(p)) throw notAnAddress(field, normalized);
    prefix = Number(p);
    // A mapped CIDR the normaliser would have rewritten ("::ffff:10.0.0.0/104"): parseLiteral
    // already returned its 4 IPv4 bytes, so shift the prefix into IPv4 terms.
    if (parsed.length === 4 && normalized.includes(":")) prefix -= 96;
    if (prefix < 0 || prefix > max) throw notAnAddress(field, normalized);
  }
  zeroHostBits(parsed, prefix);
  return { bytes: parsed, prefix };
}

/**
 * Parses a client address taken from the network: Envoy's source socket address, one
 * x-forwarded-for entry, a gRPC peer host. Accepts surrounding whitespace, "[v6]", "[v6]:port",
 * "v4:port", a zone id ("fe80::1%eth0", dropped). Returns 4 bytes for IPv4 and IPv4-mapped
 * IPv6, 16 bytes for other IPv6, null for anything else. Never throws.
 */
export function parseClientIp(s: string): Uint8Array | null {
  if (typeof s !== "string") return null;
  let start = 0;
  let end = s.length;
  while (start < end && isSpace(s.charCodeAt(start))) start++;
  while (end > start && isSpace(s.charCodeAt(end - 1))) end--;
  if (end === start || end - start > MAX_CLIENT_IP_LENGTH) return null;

  if (s.charCodeAt(start) === 0x5b /* [ */) {
    const close = s.indexOf("]", start + 1);
    if (close < 0 || close >= end) return null;
    if (close + 1 !== end && !isPortSuffix(s, close + 1, end)) return null;
    return parseV6(s, start + 1, close, true);
  }
  const colon = s.indexOf(":", start);
  if (colon < 0 || colon >= end) return parseV4(s, start, end);
  const colon2 = s.indexOf(":", colon + 1);
  if (colon2 < 0 || colon2 >= end) {
    // Exactly one colon: no IPv6 literal has that. "a.b.c.d:port" is IPv4 with a port.
    return isPortSuffix(s, colon, end) ? parseV4(s, start, colon) : null;
  }
  return parseV6(s, start, end, true);
}

/** Client addresses parseClientIpShared holds at most (then it starts over: see there). */
export const SHARED_CLIENT_IPS_MAX = 4096;
const sharedIps = new Map<string, readonly number[] | null>();

/**
 * parseClientIp's answer as a frozen byte array shared by every request with the same text: the
 * Envoy Check parses its peer's address per request, and client addresses repeat (a Uint8Array
 * and its buffer per Check were ~0.2 KB of garbage, bench/README.md). Frozen, so no reader can
 * change another request's address. Bounded: past SHARED_CLIENT_IPS_MAX texts (say, a peer
 * sending from many addresses) the cache is emptied and starts over, so memory stays bounded
 * whatever arrives; text longer than any address is answered (null) without being kept.
 */
export function parseClientIpShared(s: string): readonly number[] | null {
  if (typeof s !== "string") return null;
  const hit = sharedIps.get(s);
  if (hit !== undefined) return hit;
  const bytes = parseClientIp(s);
  const out = bytes === null ? null : Object.freeze(Array.from(bytes));
  if (s.length <= MAX_CLIENT_IP_LENGTH) {
    if (sharedIps.size >= SHARED_CLIENT_IPS_MAX) sharedIps.clear();
    sharedIps.set(s, out);
  }
  return out;
}

/** How many texts parseClientIpShared holds now (tests: the bound). */
export function sharedClientIpCount(): number {
  return sharedIps.size;
}

/**
 * True when `ip` lies in one of `ranges`. Compares whole bytes, then the masked tail byte;
 * allocates nothing. An IPv4 address (4 bytes) never matches an IPv6 range and vice versa.
 */
export function ipInRanges(ip: ArrayLike<number>, ranges: readonly CidrRange[]): boolean {
  const len = ip.length;
  for (let r = 0; r < ranges.length; r++) {
    const range = ranges[r]!;
    const bytes = range.bytes;
    if (bytes.length !== len) continue;
    const prefix = range.prefix;
    const full = prefix >>> 3;
    let i = 0;
    while (i < full && ip[i] === bytes[i]) i++;
    if (i < full) continue;
    const rest = prefix & 7;
    if (rest === 0) return true;
    const mask = (0xff << (8 - rest)) & 0xff;
    if ((ip[full]! & mask) === (bytes[full]! & mask)) return true;
  }
  return false;
}

// ---------------------------------------------------------------------------------------------
// Internals.

function isSpace(c: number): boolean {
  return c === 0x20 || c === 0x09 || c === 0x0a || c === 0x0d;
}

function isMapped(b: ArrayLike<number>): boolean {
  for (let i = 0; i < 10; i++) if (b[i] !== 0) return false;
  return b[10] === 0xff && b[11] === 0xff;
}

function wordsOf(bytes: readonly number[]): number[] {
  const words: number[] = [];
  for (let i = 0; i < 16; i += 2) words.push((bytes[i]! << 8) | bytes[i + 1]!);
  return words;
}

function zeroHostBits(b: { [i: number]: number; length: number }, prefix: number): void {
  for (let bit = prefix; bit < b.length * 8; ) {
    const i = bit >>> 3;
    const keep = bit & 7;
    b[i] = keep === 0 ? 0 : b[i]! & ((0xff << (8 - keep)) & 0xff);
    bit = (i + 1) * 8;
  }
}

/** ":digits" with a port number 0..65535, covering s[from, end). */
function isPortSuffix(s: string, from: number, end: number): boolean {
  if (s.charCodeAt(from) !== 0x3a || end - from < 2 || end - from > 6) return false;
  let v = 0;
  for (let i = from + 1; i < end; i++) {
    const d = s.charCodeAt(i) - 0x30;
    if (d < 0 || d > 9) return false;
    v = v * 10 + d;
  }
  return v <= 65535;
}

/** A bare IPv4 or IPv6 literal (no brackets, zone or port) in s[start, end). */
function parseLiteral(s: string, start: number, end: number): Uint8Array | null {
  const colon = s.indexOf(":", start);
  return colon < 0 || colon >= end ? parseV4(s, start, end) : parseV6(s, start, end, false);
}

/** Strict dotted-quad decimal: four parts 0..255, no leading zeros, nothing else. */
function parseV4(s: string, start: number, end: number): Uint8Array | null {
  const out = new Uint8Array(4);
  return readV4(s, start, end, out, 0) ? out : null;
}

function readV4(s: string, start: number, end: number, out: Uint8Array, at: number): boolean {
  let i = start;
  for (let part = 0; part < 4; part++) {
    if (part > 0) {
      if (i >= end || s.charCodeAt(i) !== 0x2e /* . */) return false;
      i++;
    }
    const first = i;
    let v = 0;
    while (i < end) {
      const d = s.charCodeAt(i) - 0x30;
      if (d < 0 || d > 9) break;
      v = v * 10 + d;
      i++;
      if (i - first > 3) return false;
    }
    const digits = i - first;
    if (digits === 0 || v > 255 || (digits > 1 && s.charCodeAt(first) === 0x30)) return false;
    out[at + part] = v;
  }
  return i === end;
}

function hexValue(c: number): number {
  if (c >= 0x30 && c <= 0x39) return c - 0x30;
  const l = c | 0x20;
  if (l >= 0x61 && l <= 0x66) return l - 0x61 + 10;
  return -1;
}

/**
 * RFC 4291 text form: up to 8 groups of 1-4 hex digits, at most one "::", optionally ending
 * in a dotted IPv4 (two groups). A "%zone" suffix is dropped when allowZone. IPv4-mapped
 * results come back as 4 bytes.
 */
function parseV6(s: string, start: number, end: number, allowZone: boolean): Uint8Array | null {
  const out = parseV6Words(s, start, end, allowZone);
  if (out === null) return null;
  return isMapped(out) ? out.slice(12) : out;
}

/** parseV6 without the IPv4-mapped collapse: always 16 bytes. */
function parseV6Words(s: string, start: number, end: number, allowZone: boolean): Uint8Array | null {
  const pct = s.indexOf("%", start);
  if (pct >= 0 && pct < end) {
    if (!allowZone || pct === end - 1) return null;
    end = pct;
  }
  if (end - start < 2) return null;
  const out = new Uint8Array(16);
  let n = 0; // groups written (as 16-bit words, at out[2n], out[2n+1])
  let gap = -1; // group index where "::" stands
  let i = start;
  if (s.charCodeAt(i) === 0x3a) {
    if (s.charCodeAt(i + 1) !== 0x3a) return null;
    gap = 0;
    i += 2;
  }
  while (i < end) {
    let v = 0;
    let j = i;
    while (j < end) {
      const h = hexValue(s.charCodeAt(j));
      if (h < 0) break;
      v = (v << 4) | h;
      j++;
      if (j - i > 4) break;
    }
    const digits = j - i;
    if (j < end && s.charCodeAt(j) === 0x2e /* . */) {
      // Embedded IPv4: the last 32 bits.
      if (n > 6 || !readV4(s, i, end, out, n * 2)) return null;
      n += 2;
      i = end;
      break;
    }
    if (digits === 0 || digits > 4 || n >= 8) return null;
    out[n * 2] = v >>> 8;
    out[n * 2 + 1] = v & 0xff;
    n++;
    if (j === end) {
      i = end;
      break;
    }
    if (s.charCodeAt(j) !== 0x3a) return null;
    j++;
    if (j < end && s.charCodeAt(j) === 0x3a) {
      if (gap >= 0) return null;
      gap = n;
      j++;
    } else if (j === end) {
      return null; // a single trailing ':'
    }
    i = j;
  }
  if (gap < 0) {
    if (n !== 8) return null;
  } else {
    if (n > 7) return null;
    // Move the groups after "::" to the end; the gap becomes zeros.
    const tail = (n - gap) * 2;
    const to = 16 - tail;
    const from = gap * 2;
    if (to !== from) {
      out.copyWithin(to, from, from + tail);
      out.fill(0, from, to);
    }
  }
  return out;
}
