// THE text rules (src/domain/text.ts) and the strict RFC 3339 parser (src/domain/time.ts):
// pure, table-driven.
import { expect } from "chai";
import { jsonTerminalSafe, looksLikeSecret, UNSAFE_MAYBE, modelNameProblem, quoteText, redactSecrets, terminalSafe, terminalSafeLines, textProblem } from "../../src/domain/text.js";
import { parseRfc3339 } from "../../src/domain/time.js";
import { parseExpiry } from "../../src/domain/expiry.js";
import { generateKeySecret, generateTokenSecret } from "../../src/keys/secrets.js";

const KEY = generateKeySecret();
const TOKEN = generateTokenSecret();
/** Every byte that starts or ends a terminal control sequence: ESC, BEL, CSI (C1), ST (C1), OSC (C1). */
const RAW_CONTROL = /[\u0000-\u0009\u000b-\u001f\u007f-\u009f]/;

describe("text rules: what stored text may contain", () => {
  const refused: { name: string; text: string; problem: string }[] = [
    { name: "ESC sequence (OSC 2 title + SGR)", text: "hi\x1b]2;PWNED\x07\x1b[41m", problem: "must not contain control characters (U+001B at 2)" },
    { name: "BEL", text: "a\x07", problem: "must not contain control characters (U+0007 at 1)" },
    { name: "NUL", text: "\0x", problem: "must not contain control characters (U+0000 at 0)" },
    { name: "CR", text: "a\rb", problem: "must not contain control characters (U+000D at 1)" },
    { name: "LF", text: "a\nb", problem: "must not contain control characters (U+000A at 1)" },
    { name: "TAB", text: "a\tb", problem: "must not contain control characters (U+0009 at 1)" },
    { name: "DEL", text: "a\x7f", problem: "must not contain control characters (U+007F at 1)" },
    { name: "C1 CSI", text: "a\u009b31m", problem: "must not contain control characters (U+009B at 1)" },
    { name: "U+202E RIGHT-TO-LEFT OVERRIDE", text: "invoice\u202Egpj.exe", problem: "must not contain invisible or bidirectional formatting characters (U+202E at 7)" },
    ...["\u202A", "\u202B", "\u202C", "\u202D", "\u2066", "\u2067", "\u2068", "\u2069", "\u200E", "\u200F", "\u061C"].map((c) => ({
      name: `bidi control U+${c.codePointAt(0)!.toString(16).toUpperCase()}`,
      text: `ab${c}`,
      problem: `must not contain invisible or bidirectional formatting characters (U+${c.codePointAt(0)!.toString(16).toUpperCase().padStart(4, "0")} at 2)`,
    })),
    ...["\u200B", "\u200C", "\u200D", "\u2060", "\uFEFF"].map((c) => ({
      name: `zero-width U+${c.codePointAt(0)!.toString(16).toUpperCase()}`,
      text: `a${c}b`,
      problem: `must not contain invisible or bidirectional formatting characters (U+${c.codePointAt(0)!.toString(16).toUpperCase()} at 1)`,
    })),
    { name: "U+2028 LINE SEPARATOR", text: "a\u2028b", problem: "must not contain line or paragraph separators (U+2028 at 1)" },
    { name: "U+2029 PARAGRAPH SEPARATOR", text: "a\u2029b", problem: "must not contain line or paragraph separators (U+2029 at 1)" },
    { name: "unpaired surrogate", text: "a\uD800", problem: "must not contain unpaired surrogates (U+D800 at 1)" },
    { name: "position counts code points (an emoji before is one)", text: "😀\x1b", problem: "must not contain control characters (U+001B at 1)" },
    { name: "an API key", text: `note ${KEY} here`, problem: "looks like an API key or admin token; secrets must not be stored here" },
    { name: "an admin token", text: TOKEN, problem: "looks like an API key or admin token; secrets must not be stored here" },
    { name: "an API key glued to a word", text: `x${KEY}`, problem: "looks like an API key or admin token; secrets must not be stored here" },
  ];
  for (const c of refused) {
    it(`refuses ${c.name}`, () => {
      expect(textProblem(c.text)).to.equal(c.problem);
      // The problem never repeats the text.
      expect(textProblem(c.text)).not.to.include(c.text);
    });
  }

  const accepted = ["prod backend", "Ünïcødé — ok", "日本語のキー", "emoji 😀", "mask-production", "task-runner-1", "sk-short", "a\\x1b literal backslash", "key: value; 100%"];
  for (const t of accepted) it(`accepts ${JSON.stringify(t)}`, () => expect(textProblem(t)).to.equal(null));

  const models: { name: string; model: string; problem: string | null }[] = [
    { name: "plain", model: "gpt-4o-mini", problem: null },
    { name: "with a slash and a colon", model: "anthropic/claude-3.5:beta", problem: null },
    { name: "zero-width space", model: "gpt\u200B-4o", problem: "must not contain invisible or bidirectional formatting characters (U+200B at 3)" },
    { name: "zero-width joiner", model: "gpt-4o\u200D", problem: "must not contain invisible or bidirectional formatting characters (U+200D at 6)" },
    { name: "a space", model: "gpt 4o", problem: "model names must not contain spaces" },
    { name: "a pasted API key", model: KEY, problem: "looks like an API key or admin token; secrets must not be stored here" },
    { name: "empty", model: "", problem: "model names must not be empty" },
  ];
  for (const c of models) it(`model name: ${c.name}`, () => expect(modelNameProblem(c.model)).to.equal(c.problem));
});

describe("text rules: the output sanitizer", () => {
  const cases: { name: string; text: string; want: string }[] = [
    { name: "OSC title + SGR", text: "hi\x1b]2;PWNED\x07\x1b[41m", want: "hi\\x1b]2;PWNED\\x07\\x1b[41m" },
    { name: "OSC 52 clipboard write", text: "\x1b]52;c;ZXZpbA==\x1b\\", want: "\\x1b]52;c;ZXZpbA==\\x1b\\" },
    { name: "C1 CSI and DEL", text: "\u009b2J\x7f", want: "\\x9b2J\\x7f" },
    { name: "newline, CR, tab", text: "a\nb\rc\td", want: "a\\nb\\rc\\td" },
    { name: "bidi override and zero-width", text: "a\u202Eb\u200Bc", want: "a\\u202eb\\u200bc" },
    { name: "line separator", text: "a\u2028b", want: "a\\u2028b" },
    { name: "astral format character (tag)", text: "a\u{E0041}", want: "a\\u{e0041}" },
    { name: "clean text is unchanged", text: "Ünïcødé 😀 ≈ $1.50", want: "Ünïcødé 😀 ≈ $1.50" },
  ];
  for (const c of cases) {
    it(`terminalSafe: ${c.name}`, () => {
      const got = terminalSafe(c.text);
      expect(got).to.equal(c.want);
      expect(got).not.to.match(RAW_CONTROL);
      expect(got).not.to.match(/[\u202A-\u202E\u2066-\u2069\u200B-\u200F\u2028\u2029]/);
    });
  }
  it("the fast pre-check misses no character of the exact rule (every BMP code point; astral ones always take the exact test)", () => {
    const exact = /[\p{Cc}\p{Cf}\p{Zl}\p{Zp}\p{Cs}]/u;
    const missed: string[] = [];
    for (let cp = 0; cp <= 0xffff; cp++) {
      const c = String.fromCharCode(cp);
      if (exact.test(c) && !UNSAFE_MAYBE.test(c)) missed.push(cp.toString(16));
    }
    expect(missed).to.deep.equal([]);
    expect(UNSAFE_MAYBE.test("\u{E0001}")).to.equal(true);
    expect(terminalSafe("a\u{E0001}\u{110BD}")).to.equal("a\\u{e0001}\\u{110bd}");
  });
  it("terminalSafeLines keeps line breaks, escapes the rest", () => {
    expect(terminalSafeLines("a\x1b[2J\nb\u202E\n")).to.equal("a\\x1b[2J\nb\\u202e\n");
  });
  it("jsonTerminalSafe escapes what JSON.stringify leaves raw, and parses back to the same value", () => {
    const v = { name: "hi\x1b]2;x\x07 \u009b1m \u202E \u2028", n: 1 };
    const text = jsonTerminalSafe(JSON.stringify(v, null, 2));
    expect(text).not.to.match(RAW_CONTROL);
    expect(text).not.to.match(/[\u202E\u2028]/);
    expect(JSON.parse(text)).to.deep.equal(v);
  });
  it("quoteText quotes for a message or a field name", () => {
    expect(quoteText("k\x1b\u202E")).to.equal('"k\\u001b\\u202e"');
  });
});

describe("text rules: secret redaction (one secret shape)", () => {
  const body = KEY.slice(3);
  const cases: { name: string; text: string; leaked: string }[] = [
    { name: "a bare key", text: `got ${KEY}`, leaked: body },
    { name: "after a JSON-escaped tab (\\tsk-…)", text: JSON.stringify(`\t${KEY}`), leaked: body },
    { name: "after a letter (xsk-…)", text: `x${KEY}`, leaked: body },
    { name: "after an underscore (_sk-…)", text: `_${KEY}`, leaked: body },
    { name: "after a digit (1sk-…)", text: `1${KEY}`, leaked: body },
    { name: "a token after a letter (aaat-…)", text: `a${TOKEN}`, leaked: TOKEN.slice(4) },
    { name: "a token inside a word", text: `name=foo${TOKEN}bar`, leaked: TOKEN.slice(4) },
    { name: "a fragment of 8 characters", text: "sk-abcdefgh", leaked: "abcdefgh" },
  ];
  for (const c of cases) {
    it(`redacts ${c.name}`, () => {
      const out = redactSecrets(c.text);
      expect(out).not.to.include(c.leaked);
      expect(out).to.match(/(sk|aat)-\[REDACTED\]/);
    });
  }
  it("leaves short sk- words alone", () => expect(redactSecrets("task-1 sk-abc")).to.equal("task-1 sk-abc"));
  it("refuses to store only whole-secret shapes (a legitimate name is not a secret)", () => {
    expect(looksLikeSecret(KEY)).to.equal(true);
    expect(looksLikeSecret(`x${TOKEN}y`)).to.equal(true);
    expect(looksLikeSecret("mask-production-server")).to.equal(false);
  });
});

describe("strict RFC 3339 timestamps", () => {
  const ok: { text: string; iso: string }[] = [
    { text: "2027-02-28T00:00:00Z", iso: "2027-02-28T00:00:00.000Z" },
    { text: "2028-02-29T23:59:59Z", iso: "2028-02-29T23:59:59.000Z" },
    { text: "2027-01-31T12:00:00.123456789+02:00", iso: "2027-01-31T10:00:00.123Z" },
    { text: "9999-12-31T23:59:59Z", iso: "9999-12-31T23:59:59.000Z" },
    { text: "2027-06-01 08:00:00z", iso: "2027-06-01T08:00:00.000Z" },
  ];
  for (const c of ok) {
    it(`accepts ${c.text}`, () => {
      const r = parseRfc3339(c.text);
      expect(r.ok && new Date(r.ms).toISOString()).to.equal(c.iso);
    });
  }
  const bad: { text: string; problem: string }[] = [
    { text: "2027-02-30T00:00:00Z", problem: "day 30 is not 01..28 in 2027-02" },
    { text: "2028-02-30T00:00:00Z", problem: "day 30 is not 01..29 in 2028-02" },
    { text: "2027-04-31T00:00:00Z", problem: "day 31 is not 01..30 in 2027-04" },
    { text: "2027-13-01T00:00:00Z", problem: "month 13 is not 01..12" },
    { text: "2027-01-01T24:00:00Z", problem: "hour 24 is not 00..23" },
    { text: "2027-01-01T23:60:00Z", problem: "minute 60 is not 00..59" },
    { text: "2027-01-01T23:59:60Z", problem: "second 60 is not 00..59" },
    { text: "2027-01-01T00:00:00+24:00", problem: "offset +24:00 is not within ±23:59" },
    { text: "9999-12-31T23:59:59-00:01", problem: "is outside years 0001..9999 (UTC)" },
    { text: "10000-01-01T00:00:00Z", problem: "is not an RFC 3339 time (2026-12-31T23:59:59Z)" },
    { text: "0000-01-01T00:00:00Z", problem: "year must be 0001..9999" },
  ];
  for (const c of bad) {
    it(`refuses ${c.text}`, () => {
      const r = parseRfc3339(c.text);
      expect(r.ok ? "accepted" : r.problem).to.equal(c.problem);
    });
  }
  it("expiry: a rolled-over date is an error naming the field, not March 2", () => {
    expect(() => parseExpiry("2027-02-30T00:00:00Z", 0, "spec.expires")).to.throw('spec.expires: "2027-02-30T00:00:00Z": day 30 is not 01..28 in 2027-02');
    expect(() => parseExpiry("2027-01-01T24:00:00Z", 0, "spec.expires")).to.throw("spec.expires: ");
    expect(parseExpiry("2027-02-28T00:00:00Z", 0)).to.equal(Date.parse("2027-02-28T00:00:00Z"));
  });
});
