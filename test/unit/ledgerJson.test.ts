// A ledger entry's stored text (store/level/codecs.ts, schema 4): a Consume's record is a compact
// JSON array of its values (no field names, no request id: the entry's key), written without
// JSON.stringify; a record the array cannot hold is its JSON object. Whatever is written reads
// back (decodeLedgerRecord, with the entry's key) as JSON.parse(JSON.stringify(record)) would,
// and the fast path's text is JSON.stringify's of the same array, byte for byte.
import { expect } from "chai";
import { decodeLedgerRecord, encodeLedgerRecord, parseLedgerRecord } from "../../src/store/level/codecs.js";
import type { ConsumeRecord } from "../../src/store/types.js";

const FIELDS = ["keyId", "accountId", "group", "model", "inputTokens", "outputTokens", "units", "at", "reservationId", "keyRemaining", "keyUnlimited", "accountBalance", "cacheReadTokens", "cacheWriteTokens", "reasoningTokens", "source"];

/** The array JSON.stringify would write for a compact entry (absent = null, trailing optional ones dropped). */
function compactText(r: Record<string, unknown>): string {
  const a = FIELDS.map((f) => r[f] ?? null);
  while (a.length > 12 && a[a.length - 1] === null) a.pop();
  return JSON.stringify(a);
}

/** What reading the entry back gives: the record as JSON keeps it. */
function roundTrip(r: object): unknown {
  const key = (r as { requestId?: unknown }).requestId;
  return parseLedgerRecord(typeof key === "string" ? key : "k", encodeLedgerRecord(r));
}

function rng(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s * 1664525 + 1013904223) >>> 0;
    return s / 2 ** 32;
  };
}

describe("encodeLedgerRecord", () => {
  const base: ConsumeRecord = {
    requestId: "req-1",
    keyId: "key_abc",
    accountId: "default",
    group: "default",
    model: "gpt-4o-mini",
    inputTokens: 1200,
    outputTokens: 300,
    units: 180,
    at: 1765000000000,
    reservationId: "",
    keyRemaining: 0,
    keyUnlimited: true,
    accountBalance: 999_999_999_999_820,
    source: "consume",
  };

  it("a Consume's record is the compact array, under half its JSON object's length, and reads back the same, in the same key order", () => {
    const text = encodeLedgerRecord(base);
    expect(text).to.equal(compactText(base as unknown as Record<string, unknown>));
    expect(text).to.equal('["key_abc","default","default","gpt-4o-mini",1200,300,180,1765000000000,"",0,true,999999999999820,null,null,null,"consume"]');
    expect(text.length).to.be.below(JSON.stringify(base).length / 2 + 20);
    const back = parseLedgerRecord("req-1", text);
    expect(back).to.deep.equal(base);
    expect(Object.keys(back)).to.deep.equal(Object.keys(base));
    const kinds: ConsumeRecord = { ...base, source: undefined, cacheReadTokens: 5, cacheWriteTokens: 6, reasoningTokens: 7 };
    delete kinds.source;
    kinds.source = "ext_proc";
    expect(encodeLedgerRecord(kinds)).to.equal(compactText(kinds as unknown as Record<string, unknown>));
    expect(parseLedgerRecord("req-1", encodeLedgerRecord(kinds))).to.deep.equal(kinds);
    // Without the optional fields: the array ends at the last required one.
    const bare = { ...base } as Partial<ConsumeRecord>;
    delete bare.source;
    expect(encodeLedgerRecord(bare)).to.equal('["key_abc","default","default","gpt-4o-mini",1200,300,180,1765000000000,"",0,true,999999999999820]');
    expect(parseLedgerRecord("req-1", encodeLedgerRecord(bare))).to.deep.equal(bare);
  });

  it("an entry stored as a JSON object (schema 3 and before) reads as it is; an entry that is neither is refused, naming it", () => {
    expect(parseLedgerRecord("req-1", JSON.stringify(base))).to.deep.equal(base);
    expect(decodeLedgerRecord("req-1", { ...base })).to.deep.equal(base);
    for (const bad of ["[1,2,3]", JSON.stringify(Array(17).fill(1)), "42", '"text"', "null", "{"]) {
      expect(() => parseLedgerRecord("req-9", bad), bad).to.throw(/ledger.*req-9/);
    }
  });

  it("random records read back as JSON keeps them: escapes, non-ASCII, negative, fractional and huge numbers, NaN, null, other key orders and keys", () => {
    const r = rng(42);
    const chars = ["a", "Z", "0", "-", "_", ".", ":", " ", '"', "\\", "\n", "\u0001", "\u007f", "é", "…", "😀", "/", "|"];
    const str = () => Array.from({ length: Math.floor(r() * 12) }, () => chars[Math.floor(r() * (r() < 0.8 ? 7 : chars.length))]).join("");
    const num = () => {
      const x = r();
      if (x < 0.5) return Math.floor(r() * 1e6);
      if (x < 0.6) return -Math.floor(r() * 1e15);
      if (x < 0.7) return Number.MAX_SAFE_INTEGER - Math.floor(r() * 3);
      if (x < 0.75) return 2 ** 60;
      if (x < 0.8) return r() * 100;
      if (x < 0.85) return -0;
      if (x < 0.9) return NaN;
      return 0;
    };
    let compact = 0;
    for (let i = 0; i < 5000; i++) {
      const rec: Record<string, unknown> = {
        requestId: str(),
        keyId: str(),
        accountId: str(),
        group: str(),
        model: str(),
        inputTokens: num(),
        outputTokens: num(),
        units: num(),
        at: num(),
        reservationId: str(),
        keyRemaining: num(),
        keyUnlimited: r() < 0.5,
        accountBalance: num(),
      };
      if (r() < 0.3) rec["cacheReadTokens"] = num();
      if (r() < 0.3) rec["cacheWriteTokens"] = num();
      if (r() < 0.3) rec["reasoningTokens"] = num();
      if (r() < 0.9) rec["source"] = r() < 0.5 ? "consume" : "ext_proc";
      if (r() < 0.05) rec["extra"] = str();
      if (r() < 0.05) rec["model"] = undefined;
      if (r() < 0.05) rec["units"] = null;
      if (r() < 0.03) rec["requestId"] = num();
      const shuffled = r() < 0.05 ? Object.fromEntries(Object.entries(rec).reverse()) : rec;
      const text = encodeLedgerRecord(shuffled);
      const asJson = JSON.parse(JSON.stringify(shuffled)) as Record<string, unknown>;
      expect(roundTrip(shuffled), JSON.stringify(shuffled)).to.deep.equal(asJson);
      // The array whenever it holds the record exactly; then JSON.stringify's text of it.
      const plain = typeof rec["requestId"] === "string" && !("extra" in rec) && !Object.values(rec).some((v) => v === null || (typeof v === "number" && !Number.isFinite(v)));
      if (plain) expect(text, JSON.stringify(shuffled)).to.equal(compactText(shuffled));
      else expect(text, JSON.stringify(shuffled)).to.equal(JSON.stringify(shuffled));
      if (plain) compact++;
    }
    // Both forms were exercised.
    expect(compact).to.be.within(1000, 4900);
  });

  it("a record near or past its buffer's length is the array's JSON.stringify text, and reads back", () => {
    for (const n of [5000, 4000, 3900, 3850, 3800, 3700, 3000]) {
      const long = { ...base, keyId: "x".repeat(n), model: "m".repeat(Math.max(0, 4090 - n)) };
      expect(encodeLedgerRecord(long)).to.equal(compactText(long as unknown as Record<string, unknown>));
      expect(roundTrip(long)).to.deep.equal(long);
      const longLast = { ...base, source: "s".repeat(n) } as unknown as ConsumeRecord;
      expect(encodeLedgerRecord(longLast)).to.equal(compactText(longLast as unknown as Record<string, unknown>));
      expect(roundTrip(longLast)).to.deep.equal(longLast);
    }
  });
});
