// Where each LLM API puts its token counts, read from parsed JSON (a whole response body, or one
// SSE event's data). Pure: no I/O. Facts per provider (shared/docs/metering-proxies-fleet.md §3):
//
//  - OpenAI Chat Completions, legacy Completions, embeddings: `usage{prompt_tokens,
//    completion_tokens, prompt_tokens_details.cached_tokens, completion_tokens_details.
//    reasoning_tokens}`; prompt_tokens INCLUDES the cached ones, completion_tokens the reasoning
//    ones. Streamed, only with `stream_options.include_usage`: the chunk before `[DONE]` has
//    `choices: []` and the usage; earlier chunks `usage: null`.
//  - OpenAI Responses: `usage{input_tokens, output_tokens, input_tokens_details.cached_tokens,
//    output_tokens_details.reasoning_tokens}` on the response object; streamed, in the
//    `response.completed` (or `response.incomplete` / `response.failed`) event's `response`.
//  - Anthropic Messages: `usage{input_tokens, output_tokens, cache_creation_input_tokens,
//    cache_read_input_tokens}`; input_tokens EXCLUDES both cache counts. Streamed:
//    `message_start.message.usage`, then `message_delta.usage` whose counts are CUMULATIVE
//    finals — each field present replaces (set, never add) the earlier value.
//  - Gemini generateContent / streamGenerateContent: `usageMetadata{promptTokenCount,
//    candidatesTokenCount, thoughtsTokenCount, cachedContentTokenCount}`; promptTokenCount
//    includes the cached ones; the output is candidates + thoughts. Streamed, every chunk
//    carries the running totals: the last one wins.
//
// Billing reads `inputTokens` (every input token, cached and cache-written included) and
// `outputTokens` (reasoning included); the kinds are kept beside them for the ledger.

export interface Usage {
  /** Every input token (cache reads and writes included). */
  inputTokens: number;
  /** Every output token (reasoning included). */
  outputTokens: number;
  /** Of inputTokens: read from the provider's prompt cache. */
  cacheReadTokens: number;
  /** Of inputTokens: written to the prompt cache (Anthropic). */
  cacheWriteTokens: number;
  /** Of outputTokens: reasoning / thinking. */
  reasoningTokens: number;
}

export type UsageFormat = "openai" | "openai-responses" | "anthropic" | "gemini";

/** A count as the providers send it: a non-negative safe integer, else undefined. */
function n(v: unknown): number | undefined {
  return typeof v === "number" && Number.isSafeInteger(v) && v >= 0 ? v : undefined;
}

function obj(v: unknown): Record<string, unknown> | undefined {
  return v !== null && typeof v === "object" && !Array.isArray(v) ? (v as Record<string, unknown>) : undefined;
}

/**
 * The usage state of one response, fed parsed JSON objects in stream order. `observe` returns
 * whether the object carried usage. Anthropic's parts are kept apart (input, cache write, cache
 * read, output) so that a later message_delta can replace any of them.
 */
export class UsageAccumulator {
  #seen = false;
  format: UsageFormat | undefined;
  /** The model the upstream names in its response (it may be a dated version of the asked one). */
  model = "";
  // Anthropic keeps input without cache counts; the others store totals here directly.
  #input = 0;
  #output = 0;
  #cacheRead = 0;
  #cacheWrite = 0;
  #reasoning = 0;

  #final = false;

  get seen(): boolean {
    return this.#seen;
  }

  /**
   * Whether the counts seen are the response's own totals so far, not a preliminary figure: false
   * when the only usage is Anthropic's message_start (its output_tokens is a placeholder until
   * message_delta). A stream cut before that is charged the estimate, not the placeholder.
   */
  get final(): boolean {
    return this.#final;
  }

  usage(): Usage | undefined {
    if (!this.#seen) return undefined;
    const anthropic = this.format === "anthropic";
    return {
      inputTokens: anthropic ? this.#input + this.#cacheRead + this.#cacheWrite : this.#input,
      outputTokens: this.#output,
      cacheReadTokens: this.#cacheRead,
      cacheWriteTokens: this.#cacheWrite,
      reasoningTokens: this.#reasoning,
    };
  }

  /** One parsed JSON value (a body, an array element, an SSE event's data). */
  observe(value: unknown, event = ""): boolean {
    if (Array.isArray(value)) {
      let any = false;
      for (const v of value) any = this.observe(v) || any;
      return any;
    }
    const o = obj(value);
    if (!o) return false;
    const type = typeof o.type === "string" ? o.type : event;
    if (typeof o.model === "string" && !this.model) this.model = o.model;
    // Anthropic stream.
    if (type === "message_start") {
      const m = obj(o.message);
      if (m && typeof m.model === "string") this.model = m.model;
      return this.#anthropic(obj(m?.usage), false);
    }
    if (type === "message_delta") return this.#anthropic(obj(o.usage), true);
    // OpenAI Responses stream.
    if (type === "response.completed" || type === "response.incomplete" || type === "response.failed") {
      const r = obj(o.response);
      if (r && typeof r.model === "string") this.model = r.model;
      return this.#responses(obj(r?.usage));
    }
    // Gemini (JSON, JSON array stream, SSE).
    const meta = obj(o.usageMetadata);
    if (meta) {
      if (typeof o.modelVersion === "string") this.model = o.modelVersion;
      return this.#gemini(meta);
    }
    const u = obj(o.usage);
    if (!u) return false;
    if (n(u.prompt_tokens) !== undefined || n(u.completion_tokens) !== undefined) return this.#openai(u);
    // input_tokens/output_tokens: Anthropic's message or OpenAI's Responses object.
    if (o.type === "message" || "cache_creation_input_tokens" in u || "cache_read_input_tokens" in u) return this.#anthropic(u, true);
    if (n(u.input_tokens) !== undefined || n(u.output_tokens) !== undefined) return this.#responses(u);
    return false;
  }

  #openai(u: Record<string, unknown>): boolean {
    this.format ??= "openai";
    this.#seen = true;
    this.#final = true;
    this.#input = n(u.prompt_tokens) ?? 0;
    this.#output = n(u.completion_tokens) ?? 0;
    this.#cacheRead = n(obj(u.prompt_tokens_details)?.cached_tokens) ?? 0;
    this.#cacheWrite = 0;
    this.#reasoning = n(obj(u.completion_tokens_details)?.reasoning_tokens) ?? 0;
    return true;
  }

  #responses(u: Record<string, unknown> | undefined): boolean {
    if (!u) return false;
    this.format = "openai-responses";
    this.#seen = true;
    this.#final = true;
    this.#input = n(u.input_tokens) ?? 0;
    this.#output = n(u.output_tokens) ?? 0;
    this.#cacheRead = n(obj(u.input_tokens_details)?.cached_tokens) ?? 0;
    this.#cacheWrite = 0;
    this.#reasoning = n(obj(u.output_tokens_details)?.reasoning_tokens) ?? 0;
    return true;
  }

  /** Set, never add: each field present replaces the earlier value (message_delta is cumulative). */
  #anthropic(u: Record<string, unknown> | undefined, final: boolean): boolean {
    if (!u) return false;
    this.format = "anthropic";
    let any = false;
    const set = (v: unknown, f: (x: number) => void) => {
      const x = n(v);
      if (x !== undefined) {
        f(x);
        any = true;
      }
    };
    set(u.input_tokens, (x) => (this.#input = x));
    set(u.output_tokens, (x) => (this.#output = x));
    set(u.cache_creation_input_tokens, (x) => (this.#cacheWrite = x));
    set(u.cache_read_input_tokens, (x) => (this.#cacheRead = x));
    if (any) {
      this.#seen = true;
      if (final) this.#final = true;
    }
    return any;
  }

  #gemini(m: Record<string, unknown>): boolean {
    this.format = "gemini";
    this.#seen = true;
    this.#final = true;
    this.#input = n(m.promptTokenCount) ?? 0;
    const thoughts = n(m.thoughtsTokenCount) ?? 0;
    this.#output = (n(m.candidatesTokenCount) ?? 0) + thoughts;
    this.#cacheRead = n(m.cachedContentTokenCount) ?? 0;
    this.#cacheWrite = 0;
    this.#reasoning = thoughts;
    return true;
  }
}
