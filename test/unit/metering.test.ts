// Usage parsers (src/metering): every fixture whole, split in two at every byte boundary, and
// byte by byte; CRLF; gzip split at every byte; streams cut mid-event; the SSE splitter's rules.
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { gzipSync } from "node:zlib";
import { expect } from "chai";
import { mayHoldUsage, ResponseMeter, type MeterResult } from "../../src/metering/meter.js";
import { SseSplitter } from "../../src/metering/sse.js";
import type { Usage } from "../../src/metering/usage.js";

const DIR = join(import.meta.dirname, "..", "fixtures", "metering");
const fixture = (name: string) => readFileSync(join(DIR, name));

function usage(inputTokens: number, outputTokens: number, more: Partial<Usage> = {}): Usage {
  return { inputTokens, outputTokens, cacheReadTokens: 0, cacheWriteTokens: 0, reasoningTokens: 0, ...more };
}

const SSE = "text/event-stream; charset=utf-8";
const JSON_CT = "application/json";

const CASES: { file: string; ct: string; want: Usage; format: string; model: string }[] = [
  { file: "openai-chat.json", ct: JSON_CT, want: usage(1200, 345, { cacheReadTokens: 1024 }), format: "openai", model: "gpt-4o-mini-2024-07-18" },
  { file: "openai-chat-stream.sse", ct: SSE, want: usage(87, 412, { reasoningTokens: 256 }), format: "openai", model: "gpt-4o-mini-2024-07-18" },
  { file: "openai-chat-stream-crlf.sse", ct: SSE, want: usage(87, 412, { reasoningTokens: 256 }), format: "openai", model: "gpt-4o-mini-2024-07-18" },
  { file: "openai-responses.json", ct: JSON_CT, want: usage(50, 70, { reasoningTokens: 64 }), format: "openai-responses", model: "o4-mini-2025-04-16" },
  { file: "openai-responses-stream.sse", ct: SSE, want: usage(2000, 900, { cacheReadTokens: 1500, reasoningTokens: 640 }), format: "openai-responses", model: "o4-mini-2025-04-16" },
  { file: "openai-embeddings.json", ct: JSON_CT, want: usage(8, 0), format: "openai", model: "text-embedding-3-small" },
  { file: "openai-completions.json", ct: JSON_CT, want: usage(5, 7), format: "openai", model: "gpt-3.5-turbo-instruct" },
  { file: "anthropic.json", ct: JSON_CT, want: usage(5021, 150, { cacheWriteTokens: 2000, cacheReadTokens: 3000 }), format: "anthropic", model: "claude-sonnet-4-5" },
  // message_delta is cumulative: its counts replace message_start's (480 input, 503 output), never add.
  { file: "anthropic-stream.sse", ct: SSE, want: usage(480 + 1000 + 8000, 503, { cacheWriteTokens: 1000, cacheReadTokens: 8000 }), format: "anthropic", model: "claude-sonnet-4-5" },
  { file: "gemini.json", ct: JSON_CT, want: usage(640, 520, { cacheReadTokens: 512, reasoningTokens: 400 }), format: "gemini", model: "gemini-2.5-flash" },
  { file: "gemini-stream.sse", ct: SSE, want: usage(30, 109, { reasoningTokens: 100 }), format: "gemini", model: "gemini-2.5-pro" },
  { file: "gemini-stream-array.json", ct: JSON_CT, want: usage(11, 6), format: "gemini", model: "gemini-2.0-flash" },
];

async function meter(chunks: Uint8Array[], ct: string, enc = "", eos = true): Promise<MeterResult> {
  const m = new ResponseMeter(ct, enc);
  for (const c of chunks) m.push(c);
  return m.finish(eos);
}

function splits(buf: Buffer): Buffer[][] {
  const out: Buffer[][] = [];
  for (let i = 0; i <= buf.length; i++) out.push([buf.subarray(0, i), buf.subarray(i)]);
  return out;
}

describe("metering: usage parsers", () => {
  for (const c of CASES) {
    it(`${c.file}: whole, split at every byte, byte by byte`, async () => {
      const body = fixture(c.file);
      const whole = await meter([body], c.ct);
      expect(whole.usage).to.deep.equal(c.want);
      expect(whole.format).to.equal(c.format);
      expect(whole.model).to.equal(c.model);
      expect(whole.complete).to.equal(true);
      for (const parts of splits(body)) {
        const r = await meter(parts, c.ct);
        expect(r.usage, `split at ${parts[0]!.length}`).to.deep.equal(c.want);
        expect(r.complete).to.equal(true);
      }
      const bytes = [...body].map((b) => Uint8Array.of(b));
      expect((await meter(bytes, c.ct)).usage).to.deep.equal(c.want);
    });
  }

  it("gzip: whole, split at every byte of the compressed stream", async () => {
    for (const file of ["anthropic-stream.sse", "openai-chat.json"]) {
      const c = CASES.find((x) => x.file === file)!;
      const gz = gzipSync(fixture(file));
      expect((await meter([gz], c.ct, "gzip")).usage).to.deep.equal(c.want);
      for (const parts of splits(gz)) expect((await meter(parts, c.ct, "gzip")).usage, `${file} split at ${parts[0]!.length}`).to.deep.equal(c.want);
    }
  });

  it("gzip cut short: what arrived is read, the result is incomplete, nothing throws", async () => {
    const gz = gzipSync(fixture("openai-chat-stream.sse"));
    const r = await meter([gz.subarray(0, gz.length - 30)], SSE, "gzip", false);
    expect(r.complete).to.equal(false);
  });

  it("usage only in the last chunk: nothing before it, then the whole usage", async () => {
    const body = fixture("openai-chat-stream.sse").toString("utf8");
    const cut = body.indexOf('data: {"id":"chatcmpl-B2","object":"chat.completion.chunk","created":1764979200,"model":"gpt-4o-mini-2024-07-18","choices":[],');
    const m = new ResponseMeter(SSE, "");
    m.push(Buffer.from(body.slice(0, cut)));
    const early = new ResponseMeter(SSE, "");
    early.push(Buffer.from(body.slice(0, cut)));
    expect((await early.finish(false)).usage).to.equal(undefined);
    m.push(Buffer.from(body.slice(cut)));
    expect((await m.finish(true)).usage).to.deep.equal(usage(87, 412, { reasoningTokens: 256 }));
  });

  it("a stream cut mid-event: the cut event is not read, the result is incomplete", async () => {
    const body = fixture("anthropic-stream.sse").toString("utf8");
    const lastDelta = body.lastIndexOf("event: message_delta");
    const r = await meter([Buffer.from(body.slice(0, lastDelta + 60))], SSE, "", false);
    expect(r.complete).to.equal(false);
    // message_start and the first message_delta (15 output tokens) were read; the cut one not.
    expect(r.usage).to.deep.equal(usage(472 + 1000 + 8000, 15, { cacheWriteTokens: 1000, cacheReadTokens: 8000 }));
  });

  it("no usage (chat stream without include_usage, an error body): undefined", async () => {
    const noUsage = 'data: {"id":"x","object":"chat.completion.chunk","choices":[{"index":0,"delta":{"content":"hi"}}]}\n\ndata: [DONE]\n\n';
    expect((await meter([Buffer.from(noUsage)], SSE)).usage).to.equal(undefined);
    expect((await meter([fixture("error-429.json")], JSON_CT)).usage).to.equal(undefined);
  });

  it("a truncated JSON body is incomplete", async () => {
    const body = fixture("openai-chat.json");
    const r = await meter([body.subarray(0, body.length - 20)], JSON_CT, "", false);
    expect(r.complete).to.equal(false);
    expect(r.usage).to.equal(undefined);
  });
});

describe("metering: the usage pre-filter", () => {
  it("parses only events whose usage is an object", () => {
    expect(mayHoldUsage('{"choices":[],"usage":{"prompt_tokens":1}}')).to.equal(true);
    expect(mayHoldUsage('{"usage" :\n {"output_tokens":15}}')).to.equal(true);
    expect(mayHoldUsage('{"usageMetadata": {"promptTokenCount": 30}}')).to.equal(true);
    expect(mayHoldUsage('{"message":{"usage":{"input_tokens":1}}}')).to.equal(true);
    expect(mayHoldUsage('{"choices":[{"delta":{"content":"usage"}}],"usage":null}')).to.equal(false);
    expect(mayHoldUsage('{"delta":{"text":"\\"usage\\": later"},"usage":null}')).to.equal(false);
    expect(mayHoldUsage('{"type":"ping"}')).to.equal(false);
  });
});

describe("metering: SSE splitter", () => {
  function events(chunks: string[]): [string, string][] {
    const out: [string, string][] = [];
    const s = new SseSplitter((e, d) => out.push([e, d]));
    for (const c of chunks) s.push(Buffer.from(c));
    return out;
  }
  it("fields, comments, one leading space, multi-line data, CR / LF / CRLF line ends", () => {
    expect(events(["event: a\ndata: 1\ndata:  2\n\n: comment\n\ndata:x\r\rdata: y\r\n\r\nid: 7\nretry: 10\n\n"])).to.deep.equal([
      ["a", "1\n 2"],
      ["", "x"],
      ["", "y"],
    ]);
  });
  it("a CRLF split between its CR and LF is one line end", () => {
    expect(events(["data: 1\r", "\n\r", "\ndata: 2\r\n\r\n"])).to.deep.equal([["", "1"], ["", "2"]]);
  });
  it("a UTF-8 character split across chunks", () => {
    const b = Buffer.from("data: 🌍é\n\n");
    const out: string[] = [];
    const s = new SseSplitter((_e, d) => out.push(d));
    for (const x of b) s.push(Uint8Array.of(x));
    expect(out).to.deep.equal(["🌍é"]);
  });
  it("an event without a final blank line is pending, not dispatched", () => {
    const out: string[] = [];
    const s = new SseSplitter((_e, d) => out.push(d));
    s.push(Buffer.from("data: 1\n\ndata: 2\n"));
    expect(out).to.deep.equal(["1"]);
    expect(s.pending).to.equal(true);
  });
  it("an over-long line is dropped whole, later events still read", () => {
    const out: string[] = [];
    const s = new SseSplitter((_e, d) => out.push(d), { maxLineBytes: 16 });
    s.push(Buffer.from("data: " + "x".repeat(40)));
    s.push(Buffer.from("y".repeat(40) + "\n\ndata: ok\n\n"));
    expect(out).to.deep.equal(["ok"]);
  });
});

describe("metering: the include_usage option", () => {
  it("adds stream_options.include_usage to a streaming request that left it out, without re-serialising", async () => {
    const { withIncludeUsage, acceptsIncludeUsage } = await import("../../src/metering/includeUsage.js");
    const body = ' \n{"model":"gpt-4o-mini","n":1.0,"seed":12345678901234567890,"stream":true}';
    const out = withIncludeUsage(Buffer.from(body))!.toString();
    expect(out).to.equal(' \n{"stream_options":{"include_usage":true},"model":"gpt-4o-mini","n":1.0,"seed":12345678901234567890,"stream":true}');
    expect(withIncludeUsage(Buffer.from('\ufeff{"stream":true}'))!.toString()).to.equal('\ufeff{"stream_options":{"include_usage":true},"stream":true}');
    expect(withIncludeUsage(Buffer.from('{"stream":false}'))).to.equal(undefined);
    expect(withIncludeUsage(Buffer.from('{"model":"x"}'))).to.equal(undefined);
    expect(withIncludeUsage(Buffer.from('{"stream":true,"stream_options":{"include_usage":false}}'))).to.equal(undefined);
    expect(withIncludeUsage(Buffer.from('{"stream":true'))).to.equal(undefined);
    expect(withIncludeUsage(Buffer.from('[{"stream":true}]'))).to.equal(undefined);
    expect(acceptsIncludeUsage("/v1/chat/completions?x=1")).to.equal(true);
    expect(acceptsIncludeUsage("/openai/deployments/d/chat/completions?api-version=2024-10-21")).to.equal(true);
    expect(acceptsIncludeUsage("/v1/completions")).to.equal(true);
    expect(acceptsIncludeUsage("/v1/messages")).to.equal(false);
  });
});
