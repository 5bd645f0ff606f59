// envoy.service.ext_proc.v3.ExternalProcessor/Process: one bidirectional stream per HTTP request
// Envoy proxies, through which the sidecar reads the upstream's response and settles the
// request's reservation from the provider's own usage (service/metering.ts).
//
// Per stream (the phases arrive in Envoy's order; the wire facts are in the proto's comments):
//  1. request_headers: the Check's reservation — from metadata_context (namespace
//     envoy.filters.http.ext_authz: reservation_id, model, reserved_units, as the Check put them in
//     CheckResponse.dynamic_metadata), else the x-aisa-reservation header the Check set on the
//     request. Without one, nothing is metered: every message is answered CONTINUE and the
//     response body is not asked for.
//  2. response_headers: :status, content-type, content-encoding. Non-2xx → the reservation is
//     released and the body not asked for (mode_override response_body_mode NONE). 2xx event
//     stream → mode_override STREAMED (each chunk comes as it passes, answered at once). 2xx JSON →
//     the filter's own body mode (BUFFERED in deploy/envoy.yaml: one message). 2xx of any other
//     type (audio, images) → no usage to read: the estimate is charged, the body not asked for.
//  3. response_body chunks → the meter (metering/meter.ts), each answered CONTINUE at once; the
//     chunk with end_of_stream (or trailers, or headers with end_of_stream) settles, and its
//     answer is sent only once the charge is durable (it carries dynamic_metadata "aisa.authz").
//  4. The stream ends without that (the client went away, the upstream aborted, Envoy's timeout):
//     settled with the usage read so far, else the reservation's estimate.
// Every answer is CONTINUE: nothing is ever mutated or held back beyond one round trip. In
// observability mode Envoy ignores answers, so none is sent.
import { status, type ServerDuplexStream } from "@grpc/grpc-js";
import { BinaryReader } from "@bufbuild/protobuf/wire";
import { Metadata, type HeaderValue } from "../../gen/envoy/config/core/v3/base.js";
import { ProcessingMode_BodySendMode } from "../../gen/envoy/extensions/filters/http/ext_proc/v3/processing_mode.js";
import { ExternalProcessorService, HttpBody, HttpHeaders, HttpTrailers, ProcessingResponse, type ProcessingRequest } from "../../gen/envoy/service/ext_proc/v3/external_processor.js";
import { acceptsIncludeUsage, withIncludeUsage } from "../../metering/includeUsage.js";
import { isEventStream, isMeterable, ResponseMeter } from "../../metering/meter.js";
import type { MeteringService, Settlement, SettleResult } from "../../service/metering.js";
import type { StreamMethod } from "../h2stream.js";
import { decodeTolerantly, isMalformed, malformedReason, type Malformed } from "../tolerant.js";

export const EXT_AUTHZ_NAMESPACE = "envoy.filters.http.ext_authz";
/** The namespace of the dynamic metadata the last answer carries (list it in receiving_namespaces). */
export const METERING_NAMESPACE = "aisa.authz";
export const RESERVATION_HEADER = "x-aisa-reservation";
export const PROCESS_PATH = "/envoy.service.ext_proc.v3.ExternalProcessor/Process";
/** A settlement is a charge: with a consume token configured, Process requires it as Consume does. */
export const PROCESS_UNAUTHENTICATED = "ext_proc Process requires metadata 'authorization: Bearer <consume token>' (this sidecar sets AISA_CONSUME_TOKEN; Envoy: grpc_service.initial_metadata)";

export interface ExtProcOptions {
  metering: MeteringService;
  /** Largest JSON response body kept for reading its usage (bytes). */
  maxBodyBytes?: number;
}

const CONTINUE = { response: { status: 0, headerMutation: undefined, bodyMutation: undefined, trailers: undefined, clearRouteCache: false } };

function encode(r: ProcessingResponse): Buffer {
  return Buffer.from(ProcessingResponse.encode(r).finish());
}

function reply(c: "requestHeaders" | "responseHeaders" | "requestBody" | "responseBody", bodyMode?: ProcessingMode_BodySendMode): Buffer {
  return encode(
    ProcessingResponse.fromPartial({
      response: { $case: c, value: CONTINUE },
      modeOverride: bodyMode === undefined ? undefined : { responseBodyMode: bodyMode },
    } as ProcessingResponse),
  );
}

/** Pre-encoded answers: the common replies cost no encoding. */
export const REPLIES = {
  requestHeaders: reply("requestHeaders"),
  requestBody: reply("requestBody"),
  requestTrailers: encode(ProcessingResponse.fromPartial({ response: { $case: "requestTrailers", value: {} } })),
  responseHeaders: reply("responseHeaders"),
  responseHeadersStreamed: reply("responseHeaders", ProcessingMode_BodySendMode.STREAMED),
  responseHeadersNoBody: reply("responseHeaders", ProcessingMode_BodySendMode.NONE),
  responseBody: reply("responseBody"),
  responseTrailers: encode(ProcessingResponse.fromPartial({ response: { $case: "responseTrailers", value: {} } })),
};

/**
 * The request body replaced by one with stream_options.include_usage, and its content-length
 * set to match (the headers are still held: BUFFERED request bodies come before they go upstream).
 */
function includeUsageReply(body: Buffer): ProcessingResponse {
  return ProcessingResponse.fromPartial({
    response: {
      $case: "requestBody",
      value: {
        response: {
          status: 0,
          headerMutation: { setHeaders: [{ header: { key: "content-length", value: "", rawValue: Buffer.from(String(body.length)) }, appendAction: 2 }], removeHeaders: [] },
          bodyMutation: { mutation: { $case: "body", value: body } },
        },
      },
    },
  });
}

/** A header's value: Envoy sends it in raw_value (bytes), `value` usually empty. */
function headerValue(h: HeaderValue): string {
  return h.value !== "" ? h.value : h.rawValue && h.rawValue.length > 0 ? Buffer.from(h.rawValue).toString("latin1") : "";
}

function findHeaders(headers: readonly HeaderValue[] | undefined, names: readonly string[]): string[] {
  const out = names.map(() => "");
  if (!headers) return out;
  for (const h of headers) {
    const i = names.indexOf(h.key.toLowerCase());
    if (i >= 0 && out[i] === "") out[i] = headerValue(h);
  }
  return out;
}

function str(v: unknown): string {
  return typeof v === "string" ? v : "";
}

function units(v: unknown): number | undefined {
  const n = typeof v === "number" ? v : typeof v === "string" && /^\d+$/.test(v) ? Number(v) : NaN;
  return Number.isSafeInteger(n) && n > 0 ? n : undefined;
}

/** What an answer is: pre-encoded bytes or a message to encode (the settled last answer). */
export type ExtProcReply = Buffer | ProcessingResponse;

/**
 * One Process stream's state. `onMessage` returns the answer (or a promise of it, for the
 * message that settles; null: no answer, observability mode). `onEnd` settles what is left
 * when the stream ends early. Transport-free: the grpc-js adapter below and tests drive it.
 */
export class ExtProcStream {
  readonly #o: ExtProcOptions;
  #reservationId = "";
  #model = "";
  #metering = false;
  #settled = false;
  #status = 0;
  #meter: ResponseMeter | undefined;
  #sawResponse = false;
  #path = "";

  constructor(o: ExtProcOptions) {
    this.#o = o;
  }

  onMessage(req: ProcessingRequest): ExtProcReply | Promise<ExtProcReply> | null {
    const quiet = req.observabilityMode;
    const r = req.request;
    if (!this.#metering && !this.#settled && r && (r.$case === "requestHeaders" || r.$case === "responseHeaders")) this.#tie(req);
    switch (r?.$case) {
      case "requestHeaders":
        if (this.#metering) this.#path = findHeaders(r.value.headers?.headers, [":path"])[0]!;
        return quiet ? null : REPLIES.requestHeaders;
      case "requestBody":
        if (quiet) return null;
        // Sent only where the filter asks for request bodies (the include_usage option).
        if (this.#metering && r.value.endOfStream && acceptsIncludeUsage(this.#path)) {
          const body = withIncludeUsage(r.value.body);
          if (body) return includeUsageReply(body);
        }
        return REPLIES.requestBody;
      case "requestTrailers":
        return quiet ? null : REPLIES.requestTrailers;
      case "responseHeaders":
        return this.#responseHeaders(r.value.headers?.headers, r.value.endOfStream, quiet);
      case "responseBody": {
        if (this.#meter) this.#meter.push(r.value.body);
        if (!r.value.endOfStream) return quiet ? null : REPLIES.responseBody;
        return this.#finishAndAnswer(true, quiet, "responseBody");
      }
      case "responseTrailers":
        return this.#finishAndAnswer(true, quiet, "responseTrailers");
      default:
        return null;
    }
  }

  /** The stream ended (half-closed by Envoy, cancelled or broken). */
  async onEnd(): Promise<void> {
    if (this.#metering && !this.#settled) await this.#finish(false);
  }

  #tie(req: ProcessingRequest): void {
    const md = req.metadataContext?.filterMetadata?.[EXT_AUTHZ_NAMESPACE];
    let id = str(md?.reservation_id);
    let estimate: number | undefined;
    if (id) {
      this.#model = str(md?.model);
      estimate = units(md?.reserved_units);
    } else if (req.request?.$case === "requestHeaders") {
      id = findHeaders(req.request.value.headers?.headers, [RESERVATION_HEADER])[0]!;
    }
    if (!id) return;
    this.#reservationId = id;
    this.#metering = this.#o.metering.begin(id, estimate);
  }

  #responseHeaders(headers: readonly HeaderValue[] | undefined, endOfStream: boolean, quiet: boolean): ExtProcReply | Promise<ExtProcReply> | null {
    this.#sawResponse = true;
    if (!this.#metering) return quiet ? null : REPLIES.responseHeadersNoBody;
    const [statusText, contentType, contentEncoding] = findHeaders(headers, [":status", "content-type", "content-encoding"]);
    this.#status = Number(statusText) || 0;
    const ok = this.#status >= 200 && this.#status < 300;
    if (!ok) return this.#settleAndAnswer({ kind: "release", why: `upstream ${this.#status}` }, quiet, REPLIES.responseHeadersNoBody);
    if (endOfStream) return this.#settleAndAnswer({ kind: "estimate", model: this.#model, why: "no body" }, quiet, REPLIES.responseHeaders);
    if (!isMeterable(contentType!)) return this.#settleAndAnswer({ kind: "estimate", model: this.#model, why: `content-type ${contentType}` }, quiet, REPLIES.responseHeadersNoBody);
    this.#meter = new ResponseMeter(contentType!, contentEncoding!, { maxBodyBytes: this.#o.maxBodyBytes });
    if (quiet) return null;
    return isEventStream(contentType!) ? REPLIES.responseHeadersStreamed : REPLIES.responseHeaders;
  }

  #finishAndAnswer(eos: boolean, quiet: boolean, c: "responseBody" | "responseTrailers"): ExtProcReply | Promise<ExtProcReply> | null {
    const plain = c === "responseBody" ? REPLIES.responseBody : REPLIES.responseTrailers;
    if (!this.#metering || this.#settled) return quiet ? null : plain;
    const done = this.#finish(eos);
    if (quiet) {
      done.catch(() => {});
      return null;
    }
    return done.then((res) => this.#answer(res, c));
  }

  #settleAndAnswer(s: Settlement, quiet: boolean, plain: Buffer): ExtProcReply | Promise<ExtProcReply> | null {
    this.#settled = true;
    const done = this.#o.metering.settle(this.#reservationId, s);
    if (quiet) {
      done.catch(() => {});
      return null;
    }
    // A release is in memory: no need to wait for anything durable, but the answer is the same.
    return done.then((res) => {
      if (!res.record) return plain;
      const r = ProcessingResponse.decode(plain);
      r.dynamicMetadata = this.#metadata(res);
      return r;
    });
  }

  async #finish(eos: boolean): Promise<SettleResult> {
    this.#settled = true;
    const m = this.#meter;
    const read = m ? await m.finish(eos) : undefined;
    let s: Settlement;
    if (read?.usage) s = { kind: "usage", usage: read.usage, model: this.#model, responseModel: read.model };
    else s = { kind: "estimate", model: this.#model || read?.model || "", why: this.#sawResponse ? "no usage in the response" : "no response" };
    return this.#o.metering.settle(this.#reservationId, s);
  }

  #answer(res: SettleResult, c: "responseBody" | "responseTrailers"): ExtProcReply {
    const r = ProcessingResponse.fromPartial({ response: c === "responseBody" ? { $case: c, value: CONTINUE } : { $case: c, value: {} } } as ProcessingResponse);
    r.dynamicMetadata = this.#metadata(res);
    return r;
  }

  #metadata(res: SettleResult): { [k: string]: any } {
    const rec = res.record;
    return {
      [METERING_NAMESPACE]: {
        settlement: res.outcome,
        reservation_id: this.#reservationId,
        units: rec ? rec.units : 0,
        input_tokens: rec ? rec.inputTokens : 0,
        output_tokens: rec ? rec.outputTokens : 0,
        // Token kinds the ledger does not keep yet (issue 16 item 5): for access logs.
        cache_read_tokens: res.usage?.cacheReadTokens ?? 0,
        cache_write_tokens: res.usage?.cacheWriteTokens ?? 0,
        reasoning_tokens: res.usage?.reasoningTokens ?? 0,
      },
    };
  }
}

/**
 * The grpc-js service definition of Process, with answers that may be pre-encoded bytes and
 * requests that do not decode turned into INVALID_ARGUMENT (the stream ends; what it metered settles).
 */
export const ExtProcServiceDefinition = {
  process: {
    ...ExternalProcessorService.process,
    responseSerialize: (value: ExtProcReply): Buffer => toBytes(value),
    requestDeserialize: (bytes: Buffer): ProcessingRequest | Malformed => decodeTolerantly(ExternalProcessorService.process.path, decodeProcessingRequest, bytes),
  },
} as const;

/** The grpc-js handler: messages answered in order; the stream's end settles what is left. */
export function createExtProcServer(o: ExtProcOptions & { log: (err: unknown) => void }): { process: (call: ServerDuplexStream<ProcessingRequest | Malformed, ExtProcReply>) => void } {
  return {
    process(call) {
      const s = new ExtProcStream(o);
      /** The answer being waited for (a settlement); later messages queue behind it. */
      let tail: Promise<void> | undefined;
      let ended = false;
      const write = (r: ExtProcReply | null) => {
        if (r !== null && !call.cancelled && call.writable) call.write(r);
      };
      const step = (req: ProcessingRequest | Malformed): Promise<void> | undefined => {
        if (isMalformed(req)) {
          ended = true;
          call.emit("error", { code: status.INVALID_ARGUMENT, details: malformedReason(req) });
          return undefined;
        }
        const r = s.onMessage(req);
        if (r instanceof Promise) return r.then(write, (err) => o.log(err));
        write(r);
        return undefined;
      };
      call.on("data", (req: ProcessingRequest | Malformed) => {
        if (ended) return;
        if (tail) tail = tail.then(() => step(req));
        else tail = step(req);
      });
      let finished = false;
      const finish = () => {
        if (finished) return;
        finished = true;
        ended = true;
        const last = (tail ?? Promise.resolve()).then(() => s.onEnd());
        last.then(
          () => {
            if (!call.cancelled && call.writable) call.end();
          },
          (err) => o.log(err),
        );
      };
      call.on("end", finish);
      call.on("cancelled", finish);
      call.on("error", () => finish());
    },
  };
}

/**
 * ProcessingRequest.decode, except that metadata_context and attributes are skipped on body and
 * trailer messages: Envoy repeats the forwarded metadata on every message, and only the header
 * phases read it (decoding its Struct on each of 200 body chunks was most of a chunk's cost).
 */
export function decodeProcessingRequest(bytes: Uint8Array): ProcessingRequest {
  const reader = new BinaryReader(bytes);
  const msg: ProcessingRequest = { request: undefined, metadataContext: undefined, attributes: {}, observabilityMode: false };
  let mdStart = -1;
  let mdEnd = -1;
  while (reader.pos < reader.len) {
    const tag = reader.uint32();
    const field = tag >>> 3;
    const wire = tag & 7;
    if (wire === 2 && field >= 2 && field <= 7) {
      const len = reader.uint32();
      if (field === 2) msg.request = { $case: "requestHeaders", value: HttpHeaders.decode(reader, len) };
      else if (field === 3) msg.request = { $case: "responseHeaders", value: HttpHeaders.decode(reader, len) };
      else if (field === 4) msg.request = { $case: "requestBody", value: HttpBody.decode(reader, len) };
      else if (field === 5) msg.request = { $case: "responseBody", value: HttpBody.decode(reader, len) };
      else if (field === 6) msg.request = { $case: "requestTrailers", value: HttpTrailers.decode(reader, len) };
      else msg.request = { $case: "responseTrailers", value: HttpTrailers.decode(reader, len) };
    } else if (field === 8 && wire === 2) {
      const len = reader.uint32();
      mdStart = reader.pos;
      mdEnd = reader.pos + len;
      if (mdEnd > reader.len) throw new RangeError("premature end of metadata_context");
      reader.pos = mdEnd;
    } else if (field === 10 && wire === 0) msg.observabilityMode = reader.bool();
    else reader.skip(wire);
  }
  const c = msg.request?.$case;
  if (mdStart >= 0 && (c === "requestHeaders" || c === "responseHeaders")) msg.metadataContext = Metadata.decode(bytes.subarray(mdStart, mdEnd));
  return msg;
}

const toBytes = (r: ExtProcReply): Buffer => (Buffer.isBuffer(r) ? r : Buffer.from(ProcessingResponse.encode(r).finish()));

/** Process on the Envoy endpoint (transport/h2stream.ts): the same ExtProcStream, bytes in and out. */
export function extProcStreamMethod(o: ExtProcOptions & { admit?: (authorization: string | undefined) => string | null }): { path: string; method: StreamMethod<ProcessingRequest> } {
  return {
    path: ExternalProcessorService.process.path,
    method: {
      admit: o.admit ? (headers) => o.admit!(typeof headers.authorization === "string" ? headers.authorization : undefined) : undefined,
      decode: decodeProcessingRequest,
      open() {
        const s = new ExtProcStream(o);
        return {
          message(req) {
            const r = s.onMessage(req);
            if (r === null) return null;
            return r instanceof Promise ? r.then(toBytes) : toBytes(r);
          },
          end: () => s.onEnd(),
        };
      },
    },
  };
}
