// Bytes as a string without garbage when they are ASCII: ASCII is its own latin1 and UTF-8, so
// Buffer's latin1 slice makes the same string a UTF-8 decode would, as one string and nothing
// else (no view to decode from, no char-code array). Used by the protobuf readers' short strings
// (asciiStrings.ts), the Envoy Check's partial decode (envoy/checkView.ts) and the body's model
// string (envoy/extractModel.ts).
const latin1Slice = Buffer.prototype.latin1Slice as unknown as (this: Uint8Array, start: number, end: number) => string;

/** Bytes [start, end) of `buf` as a string when every one is ASCII (< 0x80), else undefined. */
export function asciiAt(buf: Uint8Array, start: number, end: number): string | undefined {
  let i = start;
  while (i < end && buf[i]! < 0x80) i++;
  return i === end ? latin1Slice.call(buf, start, end) : undefined;
}
