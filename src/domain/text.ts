// THE text rules: what user-supplied text that is stored (key, account and token names,
// metadata keys and values, group descriptions, balance reasons, model names) may contain,
// the one secret shape (for refusing and for redacting), and the sanitizer every terminal
// output (CLI tables and plain output, the TUI) passes stored text through.
//
// Imports nothing (errors.ts imports from here): callers turn a problem into their own error
// (INVALID_ARGUMENT naming the field in the service, a usage error in the CLI, a form error in
// the TUI).

/**
 * Characters no stored text may contain, by Unicode general category:
 *  - Cc: C0 controls (NUL, TAB, LF, CR, ESC, …), DEL and the C1 controls (U+0080–U+009F, e.g. CSI U+009B);
 *  - Cf: invisible format characters — the bidi controls (U+200E/F, U+202A–U+202E,
 *    U+2066–U+2069, U+061C), zero-width characters (U+200B–U+200D, U+2060, U+FEFF), soft hyphen, …;
 *  - Zl, Zp: U+2028 LINE SEPARATOR, U+2029 PARAGRAPH SEPARATOR;
 *  - Cs: unpaired surrogates.
 */
const UNSAFE_EXACT = /[\p{Cc}\p{Cf}\p{Zl}\p{Zp}\p{Cs}]/u;
const UNSAFE_ALL = /[\p{Cc}\p{Cf}\p{Zl}\p{Zp}\p{Cs}]/gu;
/**
 * A cheap superset of UNSAFE_EXACT (no Unicode property lookups; ~10x faster): every BMP
 * character of those categories, plus every surrogate (so any astral character — an emoji, a
 * tag character — takes the exact test). Exported for the test that checks it is a superset.
 */
export const UNSAFE_MAYBE = /[\u0000-\u001f\u007f-\u009f\u00ad\u0600-\u0605\u061c\u06dd\u070f\u0890\u0891\u08e2\u180e\u200b-\u200f\u2028-\u202e\u2060-\u206f\ufeff\ufff9-\ufffb\ud800-\udfff]/;
const UNSAFE = { test: (s: string): boolean => UNSAFE_MAYBE.test(s) && UNSAFE_EXACT.test(s) };
// What JSON.stringify leaves raw of the above (it escapes C0 and unpaired surrogates itself;
// the C0 left in its output are the layout's own line breaks).
const JSON_UNSAFE = /[\u007f-\u009f\p{Cf}\p{Zl}\p{Zp}\p{Cs}]/u;
const JSON_UNSAFE_ALL = /[\u007f-\u009f\p{Cf}\p{Zl}\p{Zp}\p{Cs}]/gu;

/** The prefixes of the secrets this sidecar issues: API keys and admin tokens (src/keys/secrets.ts uses these). */
export const KEY_PREFIX = "sk-";
export const TOKEN_PREFIX = "aat-";

/**
 * THE secret shape: a secret prefix followed by base62 characters, wherever it appears in a
 * string (whatever precedes it: "xsk-…", "_sk-…", "1sk-…", "aaat-…", a JSON-escaped "\tsk-…").
 * Issued secrets have 43 base62 characters after the prefix.
 *  - Redaction (error messages, logs) is broad: 8 or more characters are cut, since
 *    over-redacting a message costs nothing.
 *  - Refusal (stored text) fires on 32 or more — a whole secret's worth — since refusing a
 *    legitimate name such as "mask-production" would.
 */
const SECRET_BODY = "[0-9A-Za-z]";
const REDACT = new RegExp(`(sk|aat)-${SECRET_BODY}{8,}`, "g");
const SECRET_LIKE = new RegExp(`(?:sk|aat)-${SECRET_BODY}{32,}`);

/** Cuts every secret-shaped token in `text` to its prefix: "sk-[REDACTED]", "aat-[REDACTED]". */
export function redactSecrets(text: string): string {
  return text.replace(REDACT, "$1-[REDACTED]");
}

/** True when `text` contains something shaped like a whole API key or admin token. */
export function looksLikeSecret(text: string): boolean {
  return SECRET_LIKE.test(text);
}

function codePoint(c: string): string {
  return `U+${c.codePointAt(0)!.toString(16).toUpperCase().padStart(4, "0")}`;
}

function describeUnsafe(c: string): string {
  if (/\p{Cc}/u.test(c)) return "control characters";
  if (/[\p{Zl}\p{Zp}]/u.test(c)) return "line or paragraph separators";
  if (/\p{Cs}/u.test(c)) return "unpaired surrogates";
  return "invisible or bidirectional formatting characters";
}

/**
 * What is wrong with `text` as stored text, or null when it is fine. The problem names the
 * first offending character and its position (in code points), never the text itself:
 * `must not contain control characters (U+001B at 2)`.
 */
export function textProblem(text: string): string | null {
  if (UNSAFE.test(text)) {
    let i = 0;
    for (const c of text) {
      if (UNSAFE.test(c)) return `must not contain ${describeUnsafe(c)} (${codePoint(c)} at ${i})`;
      i++;
    }
  }
  if (looksLikeSecret(text)) return "looks like an API key or admin token; secrets must not be stored here";
  return null;
}

/** Longest model name a key, group or price may name (src/domain/limits.ts re-exports it). */
export const MODEL_NAME_MAX = 128;

/** A model name: stored text without whitespace, 1..MODEL_NAME_MAX characters. */
export function modelNameProblem(name: string): string | null {
  if (name.length === 0) return "model names must not be empty";
  const p = textProblem(name);
  if (p) return p;
  if (name.length > MODEL_NAME_MAX) return `model names must be at most ${MODEL_NAME_MAX} characters (got ${name.length})`;
  if (/\s/.test(name)) return "model names must not contain spaces";
  return null;
}

function escapeChar(c: string): string {
  switch (c) {
    case "\n":
      return "\\n";
    case "\r":
      return "\\r";
    case "\t":
      return "\\t";
  }
  const n = c.codePointAt(0)!;
  if (n <= 0xff) return `\\x${n.toString(16).padStart(2, "0")}`;
  if (n <= 0xffff) return `\\u${n.toString(16).padStart(4, "0")}`;
  return `\\u{${n.toString(16)}}`;
}

/**
 * Text that is safe to write to a terminal: every control character (C0, DEL, C1 — so every
 * ESC/CSI/OSC sequence loses its introducer and BEL its effect), every invisible or
 * bidirectional formatting character and U+2028/U+2029 becomes a visible escape
 * (`\x1b`, `\x07`, `\u202e`, `\n`). Everything else is returned unchanged (the same string
 * when nothing needs escaping). For stored text written before the input rules existed, and
 * for messages that echo input.
 */
export function terminalSafe(text: string): string {
  return UNSAFE.test(text) ? text.replace(UNSAFE_ALL, escapeChar) : text;
}

/** `terminalSafe` for multi-line output: each line is made safe, the line breaks stay. */
export function terminalSafeLines(text: string): string {
  return UNSAFE.test(text) ? text.split("\n").map(terminalSafe).join("\n") : text;
}

/**
 * JSON text (from JSON.stringify, which escapes only C0 controls) with every other character
 * `terminalSafe` escapes — DEL, C1 controls such as CSI U+009B, bidi and zero-width
 * characters, U+2028/U+2029 — also escaped as `\uXXXX`: the same JSON value, safe to print.
 */
export function jsonTerminalSafe(json: string): string {
  return JSON_UNSAFE.test(json)
    ? json.replace(JSON_UNSAFE_ALL, (c) =>
        c
          .split("")
          .map((u) => `\\u${u.charCodeAt(0).toString(16).padStart(4, "0")}`)
          .join(""),
      )
    : json;
}

/**
 * A JSON string literal of `text`, safe to print: for quoting user input inside a message or
 * a field name (`spec.metadata["k\u001b"]`).
 */
export function quoteText(text: string): string {
  return jsonTerminalSafe(JSON.stringify(text));
}
