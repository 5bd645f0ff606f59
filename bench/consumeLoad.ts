// Durable Consume load: a grpc-js client with many calls in flight, each with a unique
// request_id (h2load cannot do this: it sends one body per process). Runs as its own
// process so it does not share the sidecar's event loop. With "client":"http2" it sends the
// same gRPC frames over a raw node:http2 session instead (what h2load does for Check): a much
// cheaper client, to tell the sidecar's limit from the grpc-js client's on a 2-vCPU machine.
// Usage: node --import tsx bench/consumeLoad.ts '<json ConsumeLoadSpec>'
// Prints one JSON line (ConsumeLoadResult) on stdout.
import * as grpc from "@grpc/grpc-js";
import { randomBytes } from "node:crypto";
import http2 from "node:http2";
import { AuthorizerService, ConsumeBatchRequest, ConsumeBatchResponse, ConsumeRequest, ConsumeResponse } from "../src/gen/aisa/v1/authorizer.js";
import { summarize, type LatencySummary } from "./lib/stats.js";

export interface ConsumeLoadSpec {
  address: string;
  keyIds: string[];
  model: string;
  /** Calls kept in flight. */
  concurrency: number;
  warmupMs: number;
  durationMs: number;
  /** HTTP/2 connections (grpc-js channels) the calls are spread over. */
  channels?: number;
  /** Against the no-op baseline: fixed replies, so no replay check. */
  noop?: boolean;
  /** grpc-js (default) or raw node:http2 with pre-encoded frames. */
  client?: "grpc-js" | "http2";
  /** Consumes per call: 1 (default) = Consume; more = ConsumeBatch with that many items. */
  batch?: number;
}

export interface ConsumeLoadResult {
  client: "grpc-js" | "http2";
  concurrency: number;
  channels: number;
  /** Consumes per call (1 = unary Consume, more = ConsumeBatch). */
  batch: number;
  /** Consumes answered in the measured window (calls × batch). */
  calls: number;
  errors: number;
  firstError: string | null;
  seconds: number;
  throughput: number;
  latencyMs: LatencySummary;
  verified: { charged: string; replayed: boolean; replayCharged: string };
}

const ser = (b: Buffer) => b;
/** Every item's answer (one for Consume); a failed item of a batch throws. */
function answers(path: string, b: Uint8Array): ConsumeResponse[] {
  if (path === AuthorizerService.consume.path) return [ConsumeResponse.decode(b)];
  return ConsumeBatchResponse.decode(b).results.map((x, i) => {
    if (x.result?.$case !== "ok") throw new Error(`batch item ${i} failed: ${JSON.stringify(x.result)}`);
    return x.result.value;
  });
}

function call(ch: grpc.Client, path: string, req: Buffer): Promise<ConsumeResponse[]> {
  const de = (b: Buffer) => answers(path, b);
  return new Promise((resolve, reject) => {
    ch.makeUnaryRequest(path, ser, de, req, new grpc.Metadata(), { deadline: Date.now() + 30_000 }, (err, res) => (err ? reject(err) : resolve(res!)));
  });
}

/** A unary gRPC call over a raw HTTP/2 session: one frame out, grpc-status checked, reply decoded. */
function h2call(session: http2.ClientHttp2Session, path: string, message: Buffer): Promise<ConsumeResponse[]> {
  return new Promise((resolve, reject) => {
    const frame = Buffer.allocUnsafe(5 + message.length);
    frame[0] = 0;
    frame.writeUInt32BE(message.length, 1);
    message.copy(frame, 5);
    const req = session.request({ ":method": "POST", ":path": path, "content-type": "application/grpc", te: "trailers" });
    const chunks: Buffer[] = [];
    let status: string | undefined;
    req.on("response", (h) => {
      if (h["grpc-status"] !== undefined) status = String(h["grpc-status"]); // trailers-only reply
    });
    req.on("trailers", (t) => {
      status = String(t["grpc-status"]);
    });
    req.on("data", (d: Buffer) => chunks.push(d));
    req.on("end", () => {
      if (status !== "0") return reject(new Error(`grpc-status ${status}`));
      const body = Buffer.concat(chunks);
      try {
        resolve(answers(path, body.subarray(5, 5 + body.readUInt32BE(1))));
      } catch (err) {
        reject(err);
      }
    });
    req.on("error", reject);
    req.end(frame);
  });
}

async function main(): Promise<void> {
  const spec = JSON.parse(process.argv[2]!) as ConsumeLoadSpec;
  const nch = Math.max(1, spec.channels ?? 1);
  const kind = spec.client ?? "grpc-js";
  // Distinct channel options force distinct connections.
  const clients = Array.from({ length: nch }, (_, i) => new grpc.Client(spec.address, grpc.credentials.createInsecure(), { "grpc.primary_user_agent": `bench-${i}` }));
  const sessions = kind === "http2" ? Array.from({ length: nch }, () => http2.connect(`http://${spec.address}`)) : [];
  for (const s of sessions) s.on("error", () => {});
  const batch = Math.max(1, spec.batch ?? 1);
  const path = batch > 1 ? AuthorizerService.consumeBatch.path : AuthorizerService.consume.path;
  const send = (w: number, req: Buffer) => (kind === "http2" ? h2call(sessions[w % nch]!, path, req) : call(clients[w % nch]!, path, req));
  const prefix = `bench-${randomBytes(6).toString("hex")}-`;
  let seq = 0;
  const item = (keyId: string, requestId: string) =>
    ConsumeRequest.fromPartial({ requestId, target: { $case: "keyId", value: keyId }, model: spec.model, inputTokens: "1200", outputTokens: "300" });
  /** One call's bytes: `batch` Consumes (distinct ids unless `ids` repeats one). */
  const encode = (keyId: string, ids: string[]) =>
    Buffer.from(
      batch > 1
        ? ConsumeBatchRequest.encode({ items: ids.map((id) => item(keyId, id)) }).finish()
        : ConsumeRequest.encode(item(keyId, ids[0]!)).finish(),
    );

  // Verify: a real charge (grpc-status 0, units > 0, not replayed), then its replay.
  const vids = Array.from({ length: batch }, (_, i) => `${prefix}verify-${i}`);
  const first = (await send(0, encode(spec.keyIds[0]!, vids)))[0]!;
  const again = (await send(0, encode(spec.keyIds[0]!, vids)))[0]!;
  if (spec.noop) {
    if (Number(first.unitsCharged) <= 0) throw new Error(`no-op Consume verification failed: ${JSON.stringify(first)}`);
  } else if (first.replayed || Number(first.unitsCharged) <= 0 || !again.replayed || again.unitsCharged !== first.unitsCharged) {
    throw new Error(`Consume verification failed: ${JSON.stringify({ first, again })}`);
  }

  const latencies: number[] = [];
  let errors = 0;
  let firstError: string | null = null;
  let measuring = false;
  let stopping = false;
  let calls = 0;
  const t0 = performance.now();
  let tStart = 0;
  let tEnd = 0;

  async function worker(w: number): Promise<void> {
    let k = w;
    while (!stopping) {
      const keyId = spec.keyIds[k++ % spec.keyIds.length]!;
      const req = encode(keyId, Array.from({ length: batch }, () => prefix + (seq++).toString(36)));
      const s = performance.now();
      const wasMeasuring = measuring;
      try {
        const rs = await send(w, req);
        if (rs.length !== batch) throw new Error(`${rs.length} answers for ${batch} Consumes`);
        if (!spec.noop && rs.some((r) => r.replayed)) throw new Error("unexpected replay");
        if (wasMeasuring && measuring) {
          // Every item of a call waited as long as the call.
          latencies.push(performance.now() - s);
          calls += batch;
        }
      } catch (err) {
        errors++;
        firstError ??= String((err as Error).message ?? err);
        if (errors > 1000) stopping = true;
      }
    }
  }

  const workers = Array.from({ length: spec.concurrency }, (_, i) => worker(i));
  await new Promise((r) => setTimeout(r, spec.warmupMs));
  measuring = true;
  tStart = performance.now();
  process.stdout.write(JSON.stringify({ msg: "measure-start" }) + "\n");
  await new Promise((r) => setTimeout(r, spec.durationMs));
  measuring = false;
  tEnd = performance.now();
  process.stdout.write(JSON.stringify({ msg: "measure-end" }) + "\n");
  stopping = true;
  await Promise.all(workers);
  for (const c of clients) c.close();
  for (const s of sessions) s.close();
  const seconds = (tEnd - tStart) / 1000;
  const out: ConsumeLoadResult = {
    client: kind,
    concurrency: spec.concurrency,
    channels: nch,
    batch,
    calls,
    errors,
    firstError,
    seconds,
    throughput: calls / seconds,
    latencyMs: summarize(latencies),
    verified: { charged: first.unitsCharged, replayed: again.replayed, replayCharged: again.unitsCharged },
  };
  void t0;
  process.stdout.write(JSON.stringify(out) + "\n");
}

main().catch((err) => {
  process.stderr.write(`consumeLoad failed: ${err?.stack ?? err}\n`);
  process.exit(1);
});
