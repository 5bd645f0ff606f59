// Short ASCII protobuf strings without garbage (issue 18, item 1).
//
// @bufbuild/protobuf's BinaryReader.string() decodes a string of up to 32 bytes through a
// `new Array(len)` of char codes and String.fromCharCode.apply: for a CheckRequest's ~30 short
// strings (header names and values, addresses, the path) that was ~5 KB of garbage per Check,
// a third of all the Check allocated (bench/checkAlloc.ts; bench/README.md). Here a string of up
// to 64 bytes that is all ASCII is read with Buffer's latin1 slice (one string, nothing else);
// anything else goes to the library's own method. The result is the same string either way
// (ASCII is its own latin1 and UTF-8): test/unit/asciiStrings.test.ts compares them.
//
// Installed once, process-wide, on import (every decoder shares BinaryReader's prototype).
import { BinaryReader } from "@bufbuild/protobuf/wire";
import { asciiAt } from "./ascii.js";

const SHORT = 64;
type Reader = { pos: number; buf: Uint8Array; uint32(): number };
const proto = BinaryReader.prototype as unknown as { string(this: Reader, strict?: boolean): string; __asciiStrings?: true };

/** The library's own string(): the reference (tests) and the path for everything else. */
export const stockString = proto.__asciiStrings ? undefined : proto.string;

if (!proto.__asciiStrings) {
  const stock = proto.string;
  proto.string = function (this: Reader, strict?: boolean): string {
    const at = this.pos;
    const len = this.uint32();
    const start = this.pos;
    const end = start + len;
    const buf = this.buf;
    if (len <= SHORT && end <= buf.length) {
      const ascii = asciiAt(buf, start, end);
      if (ascii !== undefined) {
        this.pos = end;
        return ascii;
      }
    }
    this.pos = at; // the library reads the length again, and checks the bounds
    return stock.call(this, strict);
  };
  proto.__asciiStrings = true;
}
