// The short-ASCII string path (transport/asciiStrings.ts) decodes exactly what the library does.
import { expect } from "chai";
import { BinaryReader, BinaryWriter } from "@bufbuild/protobuf/wire";
import { stockString } from "../../src/transport/asciiStrings.js";

describe("asciiStrings: BinaryReader.string fast path", () => {
  const cases = ["", "a", "x".repeat(32), "y".repeat(33), "z".repeat(64), "w".repeat(65), "\u0000\u007f", "é", "abc\u00e9", "日本語", "a".repeat(63) + "é", "😀", "\ud800x"];
  it("returns the library's string for ASCII, non-ASCII, lengths around 32 and 64, and lone surrogates", () => {
    for (const s of cases) {
      const bytes = new BinaryWriter().string(s).string("after").finish();
      const fast = new BinaryReader(bytes);
      const stock = new BinaryReader(bytes);
      expect(fast.string(), JSON.stringify(s)).to.equal(stockString!.call(stock as never));
      expect(fast.pos).to.equal(stock.pos);
      expect(fast.string()).to.equal("after");
    }
  });
  it("a truncated string still throws as the library does", () => {
    const bytes = new BinaryWriter().string("hello").finish().subarray(0, 4);
    expect(() => new BinaryReader(bytes).string()).to.throw();
  });
});
