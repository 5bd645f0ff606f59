// An incremental server-sent-events splitter (https://html.spec.whatwg.org/multipage/server-sent-events.html
// §9.2.6, the parts usage metering needs). Envoy hands the response body over in DATA chunks cut
// at arbitrary bytes: inside a line, between "\r" and "\n", inside a UTF-8 sequence. The splitter
// keeps the unfinished line as bytes and decodes a line only once it is complete, so a chunk
// boundary can fall anywhere.
//
// Lines end with "\r\n", "\n" or "\r"; an empty line ends the event. Fields: `event:` names it,
// `data:` lines are joined with "\n"; one leading space after the colon is stripped; lines that
// start with ":" are comments; other fields (id, retry) are ignored. An event with no data line
// is not dispatched. What is left when the stream ends without a final empty line is not an
// event (the spec drops it): the caller sees it through `pending`.

export type SseHandler = (event: string, data: string) => void;

const LF = 0x0a;
const CR = 0x0d;

export class SseSplitter {
  readonly #onEvent: SseHandler;
  /** Bytes of the line not yet terminated. */
  #partial: Buffer[] = [];
  #partialBytes = 0;
  /** The last chunk ended with "\r": a "\n" starting the next one belongs to that line end. */
  #afterCR = false;
  #event = "";
  #data: string[] = [];
  /** Largest line kept (bytes); a longer one is dropped whole (not an event we read). */
  readonly #maxLine: number;
  #overlong = false;

  constructor(onEvent: SseHandler, opts: { maxLineBytes?: number } = {}) {
    this.#onEvent = onEvent;
    this.#maxLine = opts.maxLineBytes ?? 8 * 1024 * 1024;
  }

  /** Feeds the next bytes of the stream. */
  push(bytes: Uint8Array): void {
    // Buffer's indexOf is a native memchr: line ends are found without a JS loop over the bytes.
    const chunk = Buffer.isBuffer(bytes) ? bytes : Buffer.from(bytes.buffer, bytes.byteOffset, bytes.length);
    const n = chunk.length;
    let start = 0;
    if (this.#afterCR && n > 0) {
      this.#afterCR = false;
      if (chunk[0] === LF) start = 1;
    }
    let cr = chunk.indexOf(CR, start); // CR is rare (CRLF streams): its position is kept until passed
    while (start < n) {
      const lf = chunk.indexOf(LF, start);
      if (cr >= 0 && cr < start) cr = chunk.indexOf(CR, start);
      const end = lf < 0 ? cr : cr < 0 ? lf : Math.min(lf, cr);
      if (end < 0) break;
      this.#line(chunk, start, end);
      start = end + 1;
      if (end === cr) {
        if (start < n) {
          if (chunk[start] === LF) start++;
        } else this.#afterCR = true;
      }
    }
    if (start < n) this.#keep(chunk.subarray(start, n));
  }

  /** Whether the stream so far ends inside an event (a line or an undispatched field). */
  get pending(): boolean {
    return this.#partialBytes > 0 || this.#data.length > 0 || this.#event !== "";
  }

  #keep(bytes: Uint8Array): void {
    if (this.#overlong) return;
    if (this.#partialBytes + bytes.length > this.#maxLine) {
      this.#overlong = true;
      this.#partial = [];
      this.#partialBytes = 0;
      return;
    }
    // Copy: the caller's buffer may be reused.
    this.#partial.push(Buffer.from(bytes));
    this.#partialBytes += bytes.length;
  }

  #line(chunk: Buffer, from: number, to: number): void {
    let line: string;
    if (this.#overlong) {
      this.#overlong = false;
      this.#partial = [];
      this.#partialBytes = 0;
      return; // the rest of an over-long line: dropped with its beginning
    }
    if (this.#partialBytes > 0) {
      this.#partial.push(Buffer.from(chunk.subarray(from, to)));
      line = Buffer.concat(this.#partial).toString("utf8");
      this.#partial = [];
      this.#partialBytes = 0;
    } else {
      line = chunk.toString("utf8", from, to);
    }
    if (line.length === 0) {
      if (this.#data.length > 0) {
        const data = this.#data.length === 1 ? this.#data[0]! : this.#data.join("\n");
        const event = this.#event;
        this.#data = [];
        this.#event = "";
        this.#onEvent(event, data);
      } else this.#event = "";
      return;
    }
    if (line.charCodeAt(0) === 0x3a) return; // ":" comment (keep-alives)
    const colon = line.indexOf(":");
    const field = colon < 0 ? line : line.slice(0, colon);
    let value = colon < 0 ? "" : line.slice(colon + 1);
    if (value.charCodeAt(0) === 0x20) value = value.slice(1);
    if (field === "data") this.#data.push(value);
    else if (field === "event") this.#event = value;
  }
}
