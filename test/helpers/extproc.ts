// An Envoy-shaped ext_proc client: plays one HTTP request's phases on a Process stream the way
// Envoy's ext_proc filter does (request headers → response headers → response body chunks →
// end_of_stream), each message waiting for its answer unless in observability mode. Headers go
// in raw_value with `value` empty, as Envoy sends them; the Check's dynamic metadata goes in
// metadata_context under envoy.filters.http.ext_authz when forwarded.
import * as grpc from "@grpc/grpc-js";
import { ExternalProcessorClient, ProcessingRequest, ProcessingResponse } from "../../src/gen/envoy/service/ext_proc/v3/external_processor.js";

export interface Phase {
  /** Response status and headers. */
  status: number;
  headers?: Record<string, string>;
  /** Body chunks (none: the response headers end the stream). */
  chunks?: Uint8Array[];
  /** Stop after this many chunks without end_of_stream, then cancel (client disconnect) or half-close. */
  cutAfter?: number;
  cut?: "cancel" | "halfclose";
  /** Called once the response headers were answered, before the body (an app's Consume, say). */
  beforeBody?: () => Promise<void>;
}

export interface PlayOptions {
  /** The Check's dynamic metadata, forwarded as Envoy's metadata_options would. */
  metadata?: Record<string, unknown>;
  /** Request headers (x-aisa-reservation …). */
  requestHeaders?: Record<string, string>;
  observability?: boolean;
  /** A request body, sent whole after the request headers (request_body_mode BUFFERED). */
  requestBody?: Buffer;
}

function headerMap(h: Record<string, string>) {
  return { headers: Object.entries(h).map(([key, v]) => ({ key, value: "", rawValue: Buffer.from(v, "latin1") })) };
}

export class EnvoyExtProc {
  readonly client: ExternalProcessorClient;
  /** `token`: sent as `authorization: Bearer …` (Envoy: grpc_service.initial_metadata). */
  constructor(
    address: string,
    readonly token?: string,
  ) {
    this.client = new ExternalProcessorClient(address, grpc.credentials.createInsecure());
  }
  close(): void {
    this.client.close();
  }

  /** Plays one request; resolves to every answer received (in order). */
  async play(p: Phase, o: PlayOptions = {}): Promise<ProcessingResponse[]> {
    const md = new grpc.Metadata();
    if (this.token) md.set("authorization", `Bearer ${this.token}`);
    const call = this.client.process(md);
    const answers: ProcessingResponse[] = [];
    const waiting: { resolve: (r: ProcessingResponse) => void; reject: (e: Error) => void }[] = [];
    let failed: Error | undefined;
    const ended = new Promise<void>((resolve) => {
      call.on("data", (r: ProcessingResponse) => {
        answers.push(r);
        waiting.shift()?.resolve(r);
      });
      call.on("error", (err: Error) => {
        failed = err;
        for (const w of waiting.splice(0)) w.reject(err);
        resolve();
      });
      call.on("end", () => resolve());
    });
    const mdContext = o.metadata ? { filterMetadata: { "envoy.filters.http.ext_authz": o.metadata }, typedFilterMetadata: {} } : undefined;
    const send = async (req: Partial<ProcessingRequest>): Promise<ProcessingResponse | undefined> => {
      const msg = ProcessingRequest.fromPartial({ ...req, metadataContext: mdContext, observabilityMode: !!o.observability } as ProcessingRequest);
      if (o.observability) {
        call.write(msg);
        return undefined;
      }
      if (failed) throw failed;
      const answer = new Promise<ProcessingResponse>((resolve, reject) => {
        waiting.push({ resolve, reject });
        setTimeout(() => reject(new Error(`no answer to ${req.request?.$case} within 5 s`)), 5000).unref();
      });
      call.write(msg);
      return answer;
    };
    const reqHeaders = { ":method": "POST", ":path": "/v1/chat/completions", ":authority": "llm.example", "content-type": "application/json", ...(o.requestHeaders ?? {}) };
    await send({ request: { $case: "requestHeaders", value: { headers: headerMap(reqHeaders), endOfStream: false } } });
    if (o.requestBody) await send({ request: { $case: "requestBody", value: { body: o.requestBody, endOfStream: true } } });
    const chunks = p.chunks ?? [];
    const respHeaders = { ":status": String(p.status), ...(p.headers ?? {}) };
    await send({ request: { $case: "responseHeaders", value: { headers: headerMap(respHeaders), endOfStream: chunks.length === 0 } } });
    if (p.beforeBody) await p.beforeBody();
    const last = p.cutAfter ?? chunks.length;
    for (let i = 0; i < Math.min(last, chunks.length); i++) {
      const eos = p.cutAfter === undefined && i === chunks.length - 1;
      await send({ request: { $case: "responseBody", value: { body: Buffer.from(chunks[i]!), endOfStream: eos } } });
    }
    if (p.cutAfter !== undefined && p.cut === "cancel") call.cancel();
    else call.end();
    await ended;
    if (failed && p.cut !== "cancel") throw failed;
    return answers;
  }
}

/** Splits `body` into `n` chunks of near-equal size (at arbitrary bytes). */
export function chunked(body: Buffer, n: number): Buffer[] {
  const out: Buffer[] = [];
  const size = Math.max(1, Math.ceil(body.length / n));
  for (let i = 0; i < body.length; i += size) out.push(body.subarray(i, i + size));
  return out;
}
