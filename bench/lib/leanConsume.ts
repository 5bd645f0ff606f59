// A lean ConsumeBatch client's two halves (bench/consumeLoad.ts, client "lean"): requests built
// from per-key pre-encoded templates with the request ids written in place (no protobuf encode,
// no id strings per call), and replies scanned rather than decoded (no objects per item). So the
// client's cost per call is a copy, a few byte writes and a scan, far below the server's.
import { ConsumeBatchRequest, ConsumeRequest } from "../../src/gen/aisa/v1/authorizer.js";

/** Characters of the per-call counter in every request id (base 36: 36^10 ids per prefix). */
export const COUNTER_CHARS = 10;
const DIGITS = Buffer.from("0123456789abcdefghijklmnopqrstuvwxyz", "latin1");

/** One key's gRPC frame (5-byte header + ConsumeBatchRequest) and where each item's id counter sits. */
export interface BatchTemplate {
  frame: Buffer;
  /** Byte offset of each item's counter (COUNTER_CHARS bytes) inside `frame`. */
  counters: number[];
}

export interface TemplateItem {
  keyId: string;
  model: string;
  inputTokens: string;
  outputTokens: string;
}

/**
 * The frame of a `batch`-item ConsumeBatchRequest for one key, every item's request_id
 * `prefix` + COUNTER_CHARS placeholder characters. The placeholders are found in the encoded
 * bytes, so writing a counter there keeps every length (and the frame) valid.
 */
export function batchTemplate(prefix: string, batch: number, item: TemplateItem): BatchTemplate {
  if (!/^[\x21-\x7e]+$/.test(prefix)) throw new Error(`lean client: id prefix must be printable ASCII (got ${JSON.stringify(prefix)})`);
  const placeholder = prefix + "~".repeat(COUNTER_CHARS);
  const items = Array.from({ length: batch }, () =>
    ConsumeRequest.fromPartial({ requestId: placeholder, target: { $case: "keyId", value: item.keyId }, model: item.model, inputTokens: item.inputTokens, outputTokens: item.outputTokens }),
  );
  const message = ConsumeBatchRequest.encode({ items }).finish();
  const frame = Buffer.allocUnsafe(5 + message.length);
  frame[0] = 0;
  frame.writeUInt32BE(message.length, 1);
  frame.set(message, 5);
  const needle = Buffer.from(placeholder, "latin1");
  const counters: number[] = [];
  for (let at = frame.indexOf(needle); at >= 0; at = frame.indexOf(needle, at + needle.length)) counters.push(at + prefix.length);
  if (counters.length !== batch) throw new Error(`lean client: found ${counters.length} request ids in a ${batch}-item template (the key id or model contains the prefix?)`);
  return { frame, counters };
}

/**
 * The first counter of connection `channel` of `channels` sharing one id prefix: each gets its
 * own 1/channels of the counter's range, so no two connections send the same id (each counted
 * from 0 before, and a second connection replayed the first's ids).
 */
export function channelFirstId(channel: number, channels: number): number {
  if (!Number.isInteger(channels) || channels < 1 || !Number.isInteger(channel) || channel < 0 || channel >= channels) throw new Error(`lean client: channel ${channel} of ${channels}`);
  return channel * Math.floor(36 ** COUNTER_CHARS / channels);
}

/**
 * Writes `first`, `first + 1`, … (base 36, zero-padded) into the counters of `frame` (a copy of
 * the template's): every item gets a request id no other call of this prefix has. No allocation.
 * `scatter`: the digits are written least significant first, so consecutive ids differ in their
 * first character and spread over the whole key space, as random ids do (still distinct: the
 * digit order is fixed).
 */
export function writeIds(frame: Buffer, counters: readonly number[], first: number, scatter = false): void {
  for (let i = 0; i < counters.length; i++) {
    let n = first + i;
    const at = counters[i]!;
    for (let j = COUNTER_CHARS - 1; j >= 0; j--) {
      frame[at + (scatter ? COUNTER_CHARS - 1 - j : j)] = DIGITS[n % 36]!;
      n = Math.floor(n / 36);
    }
    if (n !== 0) throw new Error("lean client: request id counter overflow");
  }
}

/** What a ConsumeBatchResponse said, counted while scanning it. */
export interface BatchScan {
  /** Items answered. */
  results: number;
  /** Of them, failed (the `error` case). */
  errors: number;
  /** Of the ok ones, replays (`replayed` true). */
  replayed: number;
  /** Of the ok ones, those that charged nothing (`units_charged` 0 or absent). */
  zeroCharge: number;
}

/** The offset after the last varint read (module state: the scan allocates no pairs). */
let after = 0;

/** Reads a varint at b[at] (at most 10 bytes; exact below 2^53), leaving the next offset in `after`; throws when truncated. */
function varint(b: Uint8Array, at: number, end: number): number {
  let v = 0;
  let mul = 1;
  for (let i = 0; i < 10; i++) {
    if (at >= end) throw new Error("truncated varint");
    const c = b[at++]!;
    v += (c & 0x7f) * mul;
    if (c < 0x80) {
      after = at;
      return v;
    }
    mul *= 128;
  }
  throw new Error("varint over 10 bytes");
}

/** Skips a field of wire type `wt` at `at`; returns the offset after it. */
function skip(b: Uint8Array, wt: number, at: number, end: number): number {
  switch (wt) {
    case 0:
      varint(b, at, end);
      return after;
    case 1:
      return at + 8;
    case 2:
      return varint(b, at, end) + after;
    case 5:
      return at + 4;
    default:
      throw new Error(`wire type ${wt}`);
  }
}

/**
 * Scans a ConsumeBatchResponse message (no gRPC header) at b[start, end): per result, ok or
 * error, and in an ok one `replayed` (field 5) and `units_charged` (field 1). Throws on bytes
 * that are not such a message. Allocates only its answer.
 */
export function scanBatchResponse(b: Uint8Array, start: number, end: number): BatchScan {
  const out: BatchScan = { results: 0, errors: 0, replayed: 0, zeroCharge: 0 };
  let at = start;
  while (at < end) {
    const tag = varint(b, at, end);
    if (tag !== 0x0a) {
      at = skip(b, tag & 7, after, end);
      continue;
    }
    const len = varint(b, after, end);
    const rStart = after;
    const rEnd = rStart + len;
    if (rEnd > end) throw new Error("truncated result");
    out.results++;
    // ConsumeBatchResult: oneof ok = 1 / error = 2.
    let kind = 0;
    let r = rStart;
    while (r < rEnd) {
      const t = varint(b, r, rEnd);
      if (t === 0x0a || t === 0x12) {
        kind = t >> 3;
        const l = varint(b, after, rEnd);
        const sEnd = after + l;
        if (sEnd > rEnd) throw new Error("truncated result");
        if (kind === 1) {
          let units = 0;
          let replayed = 0;
          let s = after;
          while (s < sEnd) {
            const ft = varint(b, s, sEnd);
            if (ft === 0x08) units = varint(b, after, sEnd);
            else if (ft === 0x28) replayed = varint(b, after, sEnd);
            else {
              s = skip(b, ft & 7, after, sEnd);
              continue;
            }
            s = after;
          }
          if (replayed) out.replayed++;
          if (units === 0) out.zeroCharge++;
        }
        r = sEnd;
      } else r = skip(b, t & 7, after, rEnd);
    }
    if (kind !== 1) out.errors++;
    at = rEnd;
  }
  return out;
}
