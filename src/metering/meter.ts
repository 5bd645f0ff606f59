// One response's usage, read from its body as it passes: an event stream is split into events
// as the bytes arrive (sse.ts) and only events that can carry usage are parsed; any other body
// (JSON, or Gemini's JSON-array stream) is kept up to a bound and parsed once at its end.
// gzip / deflate / br bodies are decompressed on the way, with state across chunks.
import zlib from "node:zlib";
import { SseSplitter } from "./sse.js";
import { UsageAccumulator, type Usage, type UsageFormat } from "./usage.js";

export interface MeterResult {
  usage: Usage | undefined;
  format: UsageFormat | undefined;
  /** The model named in the response ("" when none). */
  model: string;
  /** The body ended cleanly: end_of_stream seen, no event cut in the middle, JSON complete. */
  complete: boolean;
  /** The usage is the response's own totals so far (not only Anthropic's message_start placeholder). */
  final: boolean;
}

export interface MeterOptions {
  /** Largest non-event-stream body kept for parsing (bytes, after decompression). */
  maxBodyBytes?: number;
}

/** Whether a content-type is an event stream (metered as it streams). */
export function isEventStream(contentType: string): boolean {
  return /^\s*text\/event-stream\b/i.test(contentType);
}

/** Whether a body of this content-type can carry usage we read (JSON or an event stream). */
export function isMeterable(contentType: string): boolean {
  return isEventStream(contentType) || /^\s*application\/([\w.+-]*\+)?json\b/i.test(contentType) || /^\s*application\/x-ndjson\b/i.test(contentType);
}

// Cheap pre-filter: an event's data is parsed only when it can hold usage.
const USAGE_MARK = "sage"; // "usage", "usageMetadata"

/**
 * Whether an event's data may carry usage: a `"usage"` or `"usageMetadata"` key whose value is an
 * object. Most events of a chat stream carry `"usage":null` (or none): they are not parsed.
 */
export function mayHoldUsage(data: string): boolean {
  let i = data.indexOf('"usage');
  while (i >= 0) {
    let j = i + 6;
    if (data.startsWith("Metadata", j)) j += 8;
    if (data.charCodeAt(j) === 0x22) {
      j++;
      let c = data.charCodeAt(j);
      while (c === 0x20 || c === 0x09 || c === 0x0a || c === 0x0d) c = data.charCodeAt(++j);
      if (c === 0x3a) {
        c = data.charCodeAt(++j);
        while (c === 0x20 || c === 0x09 || c === 0x0a || c === 0x0d) c = data.charCodeAt(++j);
        if (c === 0x7b) return true;
      }
    }
    i = data.indexOf('"usage', i + 6);
  }
  return false;
}

export class ResponseMeter {
  readonly #acc = new UsageAccumulator();
  readonly #sse: SseSplitter | undefined;
  readonly #maxBody: number;
  #body: Buffer[] = [];
  #bodyBytes = 0;
  #bodyOverflow = false;
  #inflate: zlib.Gunzip | zlib.Inflate | zlib.BrotliDecompress | undefined;
  #inflateDone: Promise<void> | undefined;
  #inflateFailed = false;
  #ended = false;

  constructor(contentType: string, contentEncoding: string, opts: MeterOptions = {}) {
    this.#maxBody = opts.maxBodyBytes ?? 8 * 1024 * 1024;
    if (isEventStream(contentType)) {
      this.#sse = new SseSplitter((event, data) => {
        if (mayHoldUsage(data)) this.#parse(data, event);
      });
    }
    const enc = contentEncoding.trim().toLowerCase();
    const make = enc === "gzip" || enc === "x-gzip" ? zlib.createGunzip : enc === "deflate" ? zlib.createInflate : enc === "br" ? zlib.createBrotliDecompress : undefined;
    if (make) {
      // Envoy may cut the stream short: a truncated tail must not throw, only end the input.
      const z = make({ finishFlush: zlib.constants.Z_SYNC_FLUSH } as zlib.ZlibOptions);
      this.#inflate = z;
      z.on("data", (b: Buffer) => this.#plain(b));
      this.#inflateDone = new Promise<void>((resolve) => {
        z.once("end", resolve);
        z.once("error", () => {
          this.#inflateFailed = true;
          resolve();
        });
      });
    }
  }

  /** The next bytes of the body as they came from the upstream. */
  push(chunk: Uint8Array): void {
    if (this.#ended || chunk.length === 0) return;
    if (this.#inflate) {
      if (!this.#inflateFailed) this.#inflate.write(chunk);
    } else this.#plain(chunk);
  }

  /**
   * The body is over (`endOfStream`: Envoy said so; false: the stream broke off). Resolves once
   * everything pushed has been read.
   */
  async finish(endOfStream: boolean): Promise<MeterResult> {
    if (!this.#ended) {
      this.#ended = true;
      if (this.#inflate) {
        this.#inflate.end();
        await this.#inflateDone;
      }
    }
    let complete = endOfStream && !this.#inflateFailed;
    if (this.#sse) {
      if (this.#sse.pending) complete = false;
    } else if (!this.#bodyOverflow && this.#bodyBytes > 0) {
      const text = Buffer.concat(this.#body, this.#bodyBytes).toString("utf8");
      this.#body = [];
      if (!this.#parse(text, "")) {
        complete = false;
        // Newline-delimited JSON (some proxies stream that way): each line on its own.
        for (const line of text.split(/\r?\n/)) if (line.includes(USAGE_MARK)) this.#parse(line, "");
      }
    } else if (this.#bodyOverflow) complete = false;
    return { usage: this.#acc.usage(), format: this.#acc.format, model: this.#acc.model, complete, final: this.#acc.final };
  }

  #plain(bytes: Uint8Array): void {
    if (this.#sse) {
      this.#sse.push(bytes);
      return;
    }
    if (this.#bodyOverflow) return;
    if (this.#bodyBytes + bytes.length > this.#maxBody) {
      this.#bodyOverflow = true;
      this.#body = [];
      return;
    }
    this.#body.push(Buffer.from(bytes));
    this.#bodyBytes += bytes.length;
  }

  /** Parses one JSON text into the accumulator; false when it is not JSON. */
  #parse(text: string, event: string): boolean {
    let v: unknown;
    try {
      v = JSON.parse(text);
    } catch {
      return false;
    }
    this.#acc.observe(v, event);
    return true;
  }
}
