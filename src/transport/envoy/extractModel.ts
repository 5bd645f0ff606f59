// Model and max-tokens extraction from an LLM API request, without parsing it.
//
// The body can be megabytes of chat history, and Check runs before every request, so we do
// not JSON.parse it. A single forward scan walks the TOP-LEVEL object only: nested values
// (the messages array, tools, …) are skipped by bracket counting, and strings are skipped
// with native indexOf('"') (the bulk of a chat body is string content, so that is where the
// time goes). No recursion anywhere: a body of 100k '[' costs a counter, not a stack.
//
// Duplicate keys: the LAST occurrence wins, as in JSON.parse, Python's json, Go's
// encoding/json — i.e. what the upstream will act on. We therefore scan the whole top-level
// object (up to the scan cap) instead of stopping at the first "model": stopping early would
// let {"model":"allowed", …, "model":"forbidden"} through a model whitelist.
//
// A truncated body (Envoy's x-envoy-auth-partial-body: true, or a body beyond the scan cap)
// yields the fields that were complete before the cut. A syntax error, or a complete body that
// ends early, yields nothing: the upstream will reject that body anyway, and "nothing" is the
// conservative answer (MODEL_REQUIRED for a restricted key, the default estimate otherwise).
import { isUtf8 } from "node:buffer";
import { asciiAt } from "../ascii.js";

export interface BodyFields {
  model: string | null;
  maxTokens: number | null;
}

/** Longest model name accepted (UTF-16 code units); longer → null. */
export const MAX_MODEL_LENGTH = 256;
/**
 * How much of a body is scanned. OpenAI's SDKs serialise `messages` BEFORE `model` and
 * `max_tokens`, so a small cap would lose the model of every long conversation; this cap sits
 * above Envoy's usual with_request_body.max_request_bytes (1 MiB in our sample) and bounds
 * the worst case for larger settings. Beyond it the body counts as truncated.
 */
export const MAX_BODY_SCAN_BYTES = 4 * 1024 * 1024;

const NOTHING: BodyFields = Object.freeze({ model: null, maxTokens: null });

const QUOTE = 0x22;
const BACKSLASH = 0x5c;
const COMMA = 0x2c;
const COLON = 0x3a;
const LBRACE = 0x7b;
const RBRACE = 0x7d;
const LBRACKET = 0x5b;
const RBRACKET = 0x5d;

// Which top-level keys we care about.
const K_OTHER = 0;
const K_MODEL = 1;
const K_MAX_TOKENS = 2;
const K_MAX_COMPLETION_TOKENS = 3;
const K_MAX_OUTPUT_TOKENS = 4;
const KEY_NAMES: readonly string[] = ["", "model", "max_tokens", "max_completion_tokens", "max_output_tokens"];
const KEY_CODES: readonly (readonly number[])[] = KEY_NAMES.map((k) => Array.from(k, (ch) => ch.charCodeAt(0)));
/** Longest raw (escaped) spelling of a wanted key: every char as \uXXXX. */
const MAX_ESCAPED_KEY = 6 * 21;

const JSON_NUMBER_RE = /^-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?$/;
const UTF8 = new TextDecoder("utf-8", { fatal: true });

// Scan state of one call. Module-level scratch (the scan is synchronous) instead of a
// per-call object.
let src: string | Uint8Array = "";
let isStr = true;
let len = 0;
let seenModel = false;
let model: string | null = null;
const tokens: (number | null | undefined)[] = [undefined, undefined, undefined, undefined, undefined];

/** The char code (string) or byte (raw_body) at i; JSON's structural characters are ASCII in both. */
function at(i: number): number {
  return isStr ? (src as string).charCodeAt(i) : (src as Uint8Array)[i]!;
}

function isWs(c: number): boolean {
  return c === 0x20 || c === 0x0a || c === 0x0d || c === 0x09;
}

function skipWs(i: number): number {
  while (i < len && isWs(at(i))) i++;
  return i;
}

/** Index of the quote closing a string whose content starts at `from`, or -1 if the input ends first. */
function stringEnd(from: number): number {
  for (;;) {
    const q = isStr ? (src as string).indexOf('"', from) : (src as Uint8Array).indexOf(QUOTE, from);
    if (q < 0 || q >= len) return -1;
    // Escaped iff preceded by an odd run of backslashes. Runs are bounded by the string, so
    // the look-back is linear overall.
    let b = q - 1;
    while (b >= from && at(b) === BACKSLASH) b--;
    if (((q - 1 - b) & 1) === 0) return q;
    from = q + 1;
  }
}

/** Skips an object or array starting at `i` ('{' or '['); returns the index after it, or -1 if the input ends first. */
function skipNested(i: number): number {
  let depth = 0;
  while (i < len) {
    const c = at(i);
    if (c === QUOTE) {
      const e = stringEnd(i + 1);
      if (e < 0) return -1;
      i = e + 1;
      continue;
    }
    if (c === LBRACE || c === LBRACKET) depth++;
    else if (c === RBRACE || c === RBRACKET) {
      depth--;
      if (depth === 0) return i + 1;
    }
    i++;
  }
  return -1;
}

function hasBackslash(a: number, b: number): boolean {
  if (isStr) {
    const k = (src as string).indexOf("\\", a);
    return k >= 0 && k < b;
  }
  const k = (src as Uint8Array).indexOf(BACKSLASH, a);
  return k >= 0 && k < b;
}

/** The decoded text of the string token whose content is [a, b) (quotes at a-1 and b), or null if undecodable. */
function decodeString(a: number, b: number): string | null {
  try {
    if (hasBackslash(a, b)) {
      const quoted = isStr ? (src as string).slice(a - 1, b + 1) : UTF8.decode((src as Uint8Array).subarray(a - 1, b + 1));
      const v: unknown = JSON.parse(quoted);
      return typeof v === "string" ? v : null;
    }
    if (isStr) return (src as string).slice(a, b);
    // ASCII bytes: one string, without a view to decode from (ascii.ts).
    const bytes = src as Uint8Array;
    return asciiAt(bytes, a, b) ?? UTF8.decode(bytes.subarray(a, b));
  } catch {
    return null; // invalid escape or invalid UTF-8
  }
}

/** Which wanted key the string token [a, b) spells (raw comparison, escapes decoded when present). */
function classifyKey(a: number, b: number): number {
  const n = b - a;
  if (n <= 21) {
    for (let k = 1; k < KEY_CODES.length; k++) {
      const codes = KEY_CODES[k]!;
      if (codes.length !== n) continue;
      let i = 0;
      while (i < n && at(a + i) === codes[i]) i++;
      if (i === n) return k;
    }
  }
  // "m\u006fdel" is "model" to JSON.parse, so it must be to us.
  if (n <= MAX_ESCAPED_KEY && hasBackslash(a, b)) {
    const text = decodeString(a, b);
    if (text !== null) {
      const k = KEY_NAMES.indexOf(text);
      if (k > 0) return k;
    }
  }
  return K_OTHER;
}

function validModel(v: string | null): string | null {
  if (v === null || v.length === 0 || v.length > MAX_MODEL_LENGTH) return null;
  for (let i = 0; i < v.length; i++) if (v.charCodeAt(i) < 0x20) return null;
  return v;
}

/** A JSON number token [a, b) as a max-tokens count: a safe non-negative integer, else null. */
function tokenCount(a: number, b: number): number | null {
  if (b - a > 32) return null;
  // Fast path, the usual case: plain digits, no leading zero, at most 15 (exact in a double).
  if (b - a <= 15 && (b - a === 1 || at(a) !== 0x30)) {
    let v = 0;
    let i = a;
    for (; i < b; i++) {
      const d = at(i) - 0x30;
      if (d < 0 || d > 9) break;
      v = v * 10 + d;
    }
    if (i === b) return v;
  }
  let text: string;
  if (isStr) text = (src as string).slice(a, b);
  else {
    text = "";
    for (let i = a; i < b; i++) text += String.fromCharCode((src as Uint8Array)[i]!);
  }
  if (!JSON_NUMBER_RE.test(text)) return null;
  const v = Number(text);
  return Number.isSafeInteger(v) && v >= 0 ? v : null;
}

/** What the scan found so far; tokens: the largest of the three max-token fields present. */
function found(): BodyFields {
  let max: number | null = null;
  for (let k = K_MAX_TOKENS; k <= K_MAX_OUTPUT_TOKENS; k++) {
    const v = tokens[k];
    if (typeof v === "number" && (max === null || v > max)) max = v;
  }
  if (!seenModel && max === null) return NOTHING;
  return { model: seenModel ? model : null, maxTokens: max };
}

/**
 * The input ended inside the object: what we have is valid only if the input was a prefix.
 * (A module function, not a closure in scan: under tsx/esbuild keepNames every closure
 * creation costs a defineProperty call, which dominated small-body scans.)
 */
function ended(cut: boolean): BodyFields {
  return cut ? found() : NOTHING;
}

/** The top-level scan over src[0, len). `cut`: the input is a prefix (partial body or scan cap). */
function scan(cut: boolean): BodyFields {
  let i = skipWs(0);
  if (i >= len) return NOTHING;
  if (at(i) !== LBRACE) return NOTHING;
  i = skipWs(i + 1);
  if (i < len && at(i) === RBRACE) return NOTHING;
  for (;;) {
    if (i >= len) return ended(cut);
    if (at(i) !== QUOTE) return NOTHING;
    const keyEnd = stringEnd(i + 1);
    if (keyEnd < 0) return ended(cut);
    const which = classifyKey(i + 1, keyEnd);
    i = skipWs(keyEnd + 1);
    if (i >= len) return ended(cut);
    if (at(i) !== COLON) return NOTHING;
    i = skipWs(i + 1);
    if (i >= len) return ended(cut);

    const c = at(i);
    if (c === QUOTE) {
      const end = stringEnd(i + 1);
      if (end < 0) return ended(cut);
      if (which === K_MODEL) {
        seenModel = true;
        model = end - (i + 1) > MAX_MODEL_LENGTH * 6 ? null : validModel(decodeString(i + 1, end));
      } else if (which !== K_OTHER) {
        tokens[which] = null; // "max_tokens": "100" is not a count
      }
      i = end + 1;
    } else if (c === LBRACE || c === LBRACKET) {
      const end = skipNested(i);
      if (end < 0) return ended(cut);
      if (which === K_MODEL) {
        seenModel = true;
        model = null;
      } else if (which !== K_OTHER) tokens[which] = null;
      i = end;
    } else {
      // A scalar: number, true, false, null. It ends at a delimiter; at the end of input it
      // may have been cut ("max_tokens": 12|8), so it is not taken.
      let j = i;
      while (j < len) {
        const d = at(j);
        if (d === COMMA || d === RBRACE || d === RBRACKET || isWs(d)) break;
        j++;
      }
      if (j >= len) return ended(cut);
      if (which === K_MODEL) {
        seenModel = true;
        model = null;
      } else if (which !== K_OTHER) tokens[which] = tokenCount(i, j);
      i = j;
    }

    i = skipWs(i);
    if (i >= len) return ended(cut);
    const d = at(i);
    if (d === RBRACE) return found();
    if (d !== COMMA) return NOTHING;
    i = skipWs(i + 1);
  }
}

/** Length of the longest prefix of `b` that does not end inside a multi-byte UTF-8 sequence. */
function completeUtf8Length(b: Uint8Array): number {
  const n = b.length;
  // Look back over at most 3 continuation bytes to the lead byte of the last sequence.
  for (let k = 1; k <= 4 && k <= n; k++) {
    const x = b[n - k]!;
    if ((x & 0xc0) === 0x80) continue; // continuation byte
    const need = x < 0x80 ? 1 : x >= 0xf0 ? 4 : x >= 0xe0 ? 3 : x >= 0xc0 ? 2 : 1;
    return need > k ? n - k : n;
  }
  return n;
}

/**
 * Reads the top-level "model" and max-tokens fields of a JSON request body (the body string,
 * or raw_body bytes) without parsing it. `partial`: the body is a prefix
 * (x-envoy-auth-partial-body: true). maxTokens is the largest of max_tokens,
 * max_completion_tokens and max_output_tokens present. Anything that is not a JSON object —
 * or raw bytes that are not UTF-8 — gives nulls. Never throws.
 */
export function extractBodyFields(
  body: string | Uint8Array,
  partial: boolean,
  maxScanBytes: number = MAX_BODY_SCAN_BYTES,
): BodyFields {
  try {
    if (body === null || body === undefined || body.length === 0) return NOTHING;
    let n = body.length;
    let cut = partial;
    if (n > maxScanBytes) {
      n = maxScanBytes;
      cut = true;
    }
    if (typeof body !== "string") {
      // A partial body may end mid-character; validate only whole characters.
      const view = n === body.length ? body : body.subarray(0, n);
      const valid = cut ? completeUtf8Length(view) : n;
      if (!isUtf8(valid === view.length ? view : view.subarray(0, valid))) return NOTHING;
      n = valid;
    }
    src = body;
    isStr = typeof body === "string";
    len = n;
    seenModel = false;
    model = null;
    tokens[K_MAX_TOKENS] = tokens[K_MAX_COMPLETION_TOKENS] = tokens[K_MAX_OUTPUT_TOKENS] = undefined;
    return scan(cut);
  } catch {
    return NOTHING;
  } finally {
    src = ""; // do not pin a multi-megabyte body until the next call
  }
}

/** What a request path says about the model (see extractPathModel). */
export interface PathModel {
  /** The model the path routes to, or null when the path names none. */
  model: string | null;
  /**
   * The path could route differently upstream than it reads here: a dot segment ("." or
   * "..", also percent-encoded), a backslash, an undecodable escape, or a model segment that
   * decodes to a "/" on an API whose names cannot hold one. An upstream that normalises such a
   * path may reach another deployment than the one named, so the caller must not trust it.
   */
  ambiguous: boolean;
}

const NO_PATH_MODEL: PathModel = Object.freeze({ model: null, ambiguous: false });
const AMBIGUOUS_PATH: PathModel = Object.freeze({ model: null, ambiguous: true });
const GEMINI_VERSIONS: ReadonlySet<string> = new Set(["v1", "v1beta", "v1alpha"]);
const VERTEX_VERSIONS: ReadonlySet<string> = new Set(["v1", "v1beta1"]);
const BEDROCK_ACTIONS: ReadonlySet<string> = new Set(["invoke", "invoke-with-response-stream", "converse", "converse-stream"]);

/**
 * The model named by a request path (the raw :path, query included), for the APIs that route
 * by path — there the path, not the body, is what the upstream acts on:
 *  - Gemini: /v1beta/models/{model}:{method} (also /v1/, /v1alpha/, and tunedModels/), the
 *    method alphabetic — so OpenAI's /v1/models/{id} (retrieve/delete) names no model;
 *  - Vertex AI: /v1/projects/{p}/locations/{l}/publishers/{pub}/models/{model}:{method};
 *  - Azure OpenAI: /openai/deployments/{deployment}/…;
 *  - Bedrock: /model/{modelId}/invoke | invoke-with-response-stream | converse | converse-stream
 *    (the id percent-decoded: an ARN's "/" arrives as %2F).
 * Segments are percent-decoded, matched ASCII case-insensitively (except the model), and
 * empty segments ("//") are skipped, as a normalising upstream would. Never throws.
 */
export function parsePathModel(path: string): PathModel {
  if (typeof path !== "string" || path.length === 0) return NO_PATH_MODEL;
  let end = path.indexOf("?");
  if (end < 0) end = path.length;
  const hash = path.indexOf("#");
  if (hash >= 0 && hash < end) end = hash;
  if (end > 8192) return AMBIGUOUS_PATH;
  return quickPathModel(path, end) ?? slowPathModel(path, end);
}

// Segment bounds of the fast path (module scratch: the scan is synchronous).
const SEG_START = new Int32Array(9);
const SEG_END = new Int32Array(9);

/** s[a, b) equals `word` (lower-case ASCII letters and digits), ASCII letters compared case-insensitively. */
function segIs(s: string, a: number, b: number, word: string): boolean {
  if (b - a !== word.length) return false;
  for (let i = 0; i < word.length; i++) {
    const c = s.charCodeAt(a + i);
    const w = word.charCodeAt(i);
    if (c !== w && !(c >= 0x41 && c <= 0x5a && c + 0x20 === w)) return false;
  }
  return true;
}

/**
 * parsePathModel without building segments, for the usual path (ASCII, nothing percent-encoded,
 * no backslash): NO_PATH_MODEL or AMBIGUOUS_PATH when that is the answer, undefined when the
 * path may name a model (or is not such a path): slowPathModel decides those. Issue 18: the
 * split, the decoded segments and their lower-case copies were ~0.7 KB per Check.
 */
function quickPathModel(path: string, end: number): PathModel | undefined {
  let n = 0;
  let start = -1;
  for (let i = 0; i <= end; i++) {
    const c = i < end ? path.charCodeAt(i) : 0x2f;
    if (c === 0x25 || c === 0x5c || c >= 0x80) return undefined; // '%', '\\', non-ASCII: the full rules
    if (c !== 0x2f) {
      if (start < 0) start = i;
      continue;
    }
    if (start < 0) continue; // an empty segment
    const len = i - start;
    if (path.charCodeAt(start) === 0x2e && (len === 1 || (len === 2 && path.charCodeAt(start + 1) === 0x2e))) return AMBIGUOUS_PATH;
    if (n < 9) {
      SEG_START[n] = start;
      SEG_END[n] = i;
    }
    n++;
    start = -1;
  }
  if (n < 3 || (n > 3 && n !== 9)) return n >= 3 && segIs(path, SEG_START[0]!, SEG_END[0]!, "openai") ? undefined : NO_PATH_MODEL;
  const a0 = SEG_START[0]!;
  const b0 = SEG_END[0]!;
  if (segIs(path, a0, b0, "openai")) return undefined;
  if (n === 9) return segIs(path, a0, b0, "v1") || segIs(path, a0, b0, "v1beta1") ? undefined : NO_PATH_MODEL;
  if (segIs(path, a0, b0, "model")) return undefined;
  if (segIs(path, a0, b0, "v1") || segIs(path, a0, b0, "v1beta") || segIs(path, a0, b0, "v1alpha")) {
    const a1 = SEG_START[1]!;
    const b1 = SEG_END[1]!;
    if (segIs(path, a1, b1, "models") || segIs(path, a1, b1, "tunedmodels")) return undefined;
  }
  return NO_PATH_MODEL;
}

/** parsePathModel's rules over the path's first `end` characters: percent-decoded segments, compared lower-cased. */
export function slowPathModel(path: string, end: number): PathModel {
  const raw = path.slice(0, end);
  if (raw.includes("\\")) return AMBIGUOUS_PATH;
  const segs: string[] = [];
  for (const r of raw.split("/")) {
    if (r.length === 0) continue;
    const d = percentDecode(r);
    if (d === null || d.includes("\\")) return AMBIGUOUS_PATH;
    if (d === "." || d === "..") return AMBIGUOUS_PATH;
    segs.push(d);
  }
  const n = segs.length;
  const lower = (i: number) => segs[i]!.toLowerCase();
  // Azure OpenAI.
  if (n >= 3 && lower(0) === "openai" && lower(1) === "deployments") return named(segs[2]!, false);
  // Bedrock runtime.
  if (n === 3 && lower(0) === "model" && BEDROCK_ACTIONS.has(lower(2))) return named(segs[1]!, true);
  // Gemini (Generative Language API).
  if (n === 3 && GEMINI_VERSIONS.has(lower(0)) && (lower(1) === "models" || lower(1) === "tunedmodels")) return methodModel(segs[2]!);
  // Vertex AI publisher models.
  if (n === 9 && VERTEX_VERSIONS.has(lower(0)) && lower(1) === "projects" && lower(3) === "locations" && lower(5) === "publishers" && lower(7) === "models") {
    return methodModel(segs[8]!);
  }
  return NO_PATH_MODEL;
}

/** "{model}:{method}" with an alphabetic method (Gemini ids hold no colon); else no model. */
function methodModel(seg: string): PathModel {
  const colon = seg.indexOf(":");
  if (colon < 0 || !isMethodName(seg, colon + 1, seg.length)) return NO_PATH_MODEL;
  return named(seg.slice(0, colon), false);
}

function named(model: string, slashAllowed: boolean): PathModel {
  if (!slashAllowed && model.includes("/")) return AMBIGUOUS_PATH;
  const m = validModel(model);
  return m === null ? NO_PATH_MODEL : { model: m, ambiguous: false };
}

/** The model a request path routes to (parsePathModel), or null — also when the path is ambiguous. */
export function extractPathModel(path: string): string | null {
  return parsePathModel(path).model;
}

/** [A-Za-z]+ over s[from, end). */
function isMethodName(s: string, from: number, end: number): boolean {
  if (from >= end) return false;
  for (let i = from; i < end; i++) {
    const c = s.charCodeAt(i) | 0x20;
    if (c < 0x61 || c > 0x7a) return false;
  }
  return true;
}

function percentDecode(s: string): string | null {
  if (!s.includes("%")) return s;
  try {
    return decodeURIComponent(s);
  } catch {
    return null;
  }
}
