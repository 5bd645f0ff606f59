// The documented option of issue 16: an OpenAI streaming (chat) completion carries usage only when
// the request asked for it (`stream_options: {"include_usage": true}`); without it the stream has
// no token counts and metering can only charge the estimate. When Envoy sends the request body
// (request_body_mode BUFFERED on those routes), the sidecar adds the option to a streaming request
// that left it out. Pure.
//
// The body is not re-serialised (JSON.stringify would change numbers past 2^53, key order,
// escapes): `"stream_options":{"include_usage":true},` is inserted after the opening brace. A
// request that has stream_options already (with include_usage false, or without it) is left as
// the client wrote it: the client decided. The client then receives one more chunk, with
// `"choices": []` and the usage, before `[DONE]`: OpenAI's SDKs expect it; a client that indexes
// choices[0] on every chunk would not — which is why this is an option.

/** Paths of APIs with stream_options.include_usage (query string ignored). */
export function acceptsIncludeUsage(path: string): boolean {
  const p = path.split("?", 1)[0]!;
  return p.endsWith("/chat/completions") || p.endsWith("/completions");
}

const INSERT = '"stream_options":{"include_usage":true},';

/** The body with include_usage added, or undefined when it is to be left alone. */
export function withIncludeUsage(body: Uint8Array, maxBytes = 4 * 1024 * 1024): Buffer | undefined {
  if (body.length === 0 || body.length > maxBytes) return undefined;
  const buf = Buffer.isBuffer(body) ? body : Buffer.from(body.buffer, body.byteOffset, body.length);
  const bom = buf[0] === 0xef && buf[1] === 0xbb && buf[2] === 0xbf ? 3 : 0;
  let parsed: unknown;
  try {
    parsed = JSON.parse(buf.toString("utf8", bom));
  } catch {
    return undefined;
  }
  if (parsed === null || typeof parsed !== "object" || Array.isArray(parsed)) return undefined;
  const o = parsed as Record<string, unknown>;
  if (o.stream !== true || "stream_options" in o) return undefined;
  // The opening brace: after optional whitespace (and a UTF-8 BOM).
  let i = bom;
  while (i < buf.length && (buf[i] === 0x20 || buf[i] === 0x09 || buf[i] === 0x0a || buf[i] === 0x0d)) i++;
  if (buf[i] !== 0x7b) return undefined;
  // `"stream": true` is a member, so the object is not empty: the inserted member takes a comma.
  return Buffer.concat([buf.subarray(0, i + 1), Buffer.from(INSERT), buf.subarray(i + 1)]);
}
