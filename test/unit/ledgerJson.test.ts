// encodeLedgerRecord (store/level/codecs.ts) writes a new ledger entry without JSON.stringify:
// its text must be JSON.stringify's, byte for byte, for every record (the ones it writes itself
// and the ones it hands back to JSON.stringify).
import { expect } from "chai";
import { encodeLedgerRecord } from "../../src/store/level/codecs.js";
import type { ConsumeRecord } from "../../src/store/types.js";

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

  it("is JSON.stringify's text for a Consume's record, with and without the token kinds", () => {
    expect(encodeLedgerRecord(base)).to.equal(JSON.stringify(base));
    const kinds: ConsumeRecord = { ...base, source: undefined, cacheReadTokens: 5, cacheWriteTokens: 6, reasoningTokens: 7 };
    delete kinds.source;
    kinds.source = "ext_proc";
    expect(encodeLedgerRecord(kinds)).to.equal(JSON.stringify(kinds));
  });

  it("is JSON.stringify's text for random records: escapes, non-ASCII, negative, fractional and huge numbers, other key orders and keys", () => {
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
      const shuffled = r() < 0.05 ? Object.fromEntries(Object.entries(rec).reverse()) : rec;
      expect(encodeLedgerRecord(shuffled), JSON.stringify(shuffled)).to.equal(JSON.stringify(shuffled));
    }
  });

  it("a record near or past its buffer's length is JSON.stringify's text", () => {
    for (const n of [5000, 4000, 3900, 3850, 3800, 3700, 3000]) {
      const long = { ...base, requestId: "x".repeat(n), model: "m".repeat(Math.max(0, 4090 - n)) };
      expect(encodeLedgerRecord(long)).to.equal(JSON.stringify(long));
      const longLast = { ...base, source: "s".repeat(n) } as unknown as ConsumeRecord;
      expect(encodeLedgerRecord(longLast)).to.equal(JSON.stringify(longLast));
    }
  });
});
