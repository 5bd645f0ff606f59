// Durable Consume load: a grpc-js client with many calls in flight, each with a unique
// request_id (h2load cannot do this: it sends one body per process). Runs as its own
// process so it does not share the sidecar's event loop. With "client":"http2" it sends the
// same gRPC frames over a raw node:http2 session instead (what h2load does for Check): a much
// cheaper client, to tell the sidecar's limit from the grpc-js client's on a 2-vCPU machine.
// With "client":"lean" (ConsumeBatch only): HTTP/2 frames written by hand on a TCP socket (bench/lib/leanH2.ts), requests copied
// from per-key pre-encoded templates with the ids written in place and replies scanned, not
// decoded (bench/lib/leanConsume.ts): the cheapest client here.
// With "rate" (calls/s): OPEN loop (bench/lib/openLoop.ts): a fixed schedule of calls at that
// rate, at most `concurrency` in flight, each call's latency timed from when it was DUE, so a
// late client counts against the result; calls that found the cap full are counted (`capped`),
// those past the backlog dropped and counted (`dropped`). Without "rate": closed loop,
// `concurrency` workers each sending, awaiting, sending again (the saturation figures).
// Usage: node --import tsx bench/consumeLoad.ts '<json ConsumeLoadSpec>'
// Prints one JSON line (ConsumeLoadResult) on stdout.
import * as grpc from "@grpc/grpc-js";
import { randomBytes, randomUUID } from "node:crypto";
import http2 from "node:http2";
import { AuthorizerService, ConsumeBatchRequest, ConsumeBatchResponse, ConsumeRequest, ConsumeResponse } from "../src/gen/aisa/v1/authorizer.js";
import { summarize, type LatencySummary } from "./lib/stats.js";
import { batchTemplate, channelFirstId } from "./lib/leanConsume.js";
import { LeanH2Client } from "./lib/leanH2.js";
import { OpenLoopSchedule } from "./lib/openLoop.js";

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
  /** grpc-js (default), raw node:http2 with pre-encoded frames, or lean (ConsumeBatch: templates, scanned replies). */
  client?: ConsumeClient;
  /** Consumes per call: 1 (default) = Consume; more = ConsumeBatch with that many items. */
  batch?: number;
  /** Open loop: calls per second on a fixed schedule, `concurrency` the most in flight. Absent: closed loop. */
  rate?: number;
  /** Request ids: "counter" (default: a prefix and a counter, adjacent keys) or "random" (as Envoy's x-request-id: a UUID; the lean client scatters its counter's digits instead). */
  ids?: "counter" | "random";
}

export type ConsumeClient = "grpc-js" | "http2" | "lean";

/** The open loop's own counts (calls, not Consumes), over the calls due in the measured window. */
export interface OpenLoopCounts {
  rate: number;
  maxInFlight: number;
  /** Calls due in the window. */
  due: number;
  /** Of them, found the cap full when due (they waited; their wait is in their latency). */
  capped: number;
  /** Never sent (the backlog was full): a run with drops did not sustain the rate. */
  dropped: number;
  /** Most calls in flight at once (whole run). */
  peakInFlight: number;
  /** Where the rate came from (set by bench/run.ts: given, or half of which saturation). */
  rateFrom?: string;
  /** Mean calls due and not yet answered over the window (Little: rate × mean latency from due; includes calls waiting for the cap). */
  meanInFlight: number;
}

export interface ConsumeLoadResult {
  client: ConsumeClient;
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
  /** The client process's own CPU (user + system) per call over the measured window, µs. */
  clientCpuUsPerCall: number;
  /** Of it, user time (the rest is the kernel's: the loopback TCP sends and reads). */
  clientUserUsPerCall: number;
  /** Present when run open-loop. */
  openLoop?: OpenLoopCounts;
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

/**
 * The lean client: one LeanH2Client (hand-written HTTP/2 frames, bench/lib/leanH2.ts) per
 * connection, per-key templates (bench/lib/leanConsume.ts); calls spread round-robin.
 */
async function leanClient(spec: ConsumeLoadSpec, nch: number, path: string, prefix: string, batch: number, done: (err: Error | null, tag: number) => void) {
  const i = spec.address.lastIndexOf(":");
  const host = spec.address.slice(0, i);
  const port = Number(spec.address.slice(i + 1));
  const templates = spec.keyIds.map((keyId) => batchTemplate(prefix, batch, { keyId, model: spec.model, inputTokens: "1200", outputTokens: "300" }));
  const conns = Array.from({ length: nch }, (_, ch) => new LeanH2Client({ host, port, path, templates, batch, allowReplayed: spec.noop === true, scatterIds: spec.ids === "random", firstId: channelFirstId(ch, nch), done }));
  await Promise.all(conns.map((c) => c.ready));
  return { start: (w: number, k: number, tag: number) => conns[w % nch]!.start(k, tag), close: () => conns.forEach((c) => c.close()) };
}

async function main(): Promise<void> {
  const spec = JSON.parse(process.argv[2]!) as ConsumeLoadSpec;
  const nch = Math.max(1, spec.channels ?? 1);
  const kind = spec.client ?? "grpc-js";
  if (!["grpc-js", "http2", "lean"].includes(kind)) throw new Error(`client: ${JSON.stringify(kind)} is not grpc-js, http2 or lean`);
  const batch = Math.max(1, spec.batch ?? 1);
  if (kind === "lean" && batch < 2) throw new Error("client: lean sends ConsumeBatch only (batch ≥ 2)");
  if (spec.rate !== undefined && !(spec.rate > 0 && Number.isFinite(spec.rate))) throw new Error(`rate: must be a positive number of calls per second (got ${spec.rate})`);
  if (!Number.isInteger(spec.concurrency) || spec.concurrency < 1) throw new Error(`concurrency: must be an integer ≥ 1 (got ${spec.concurrency})`);
  // Distinct channel options force distinct connections.
  const clients = kind === "grpc-js" ? Array.from({ length: nch }, (_, i) => new grpc.Client(spec.address, grpc.credentials.createInsecure(), { "grpc.primary_user_agent": `bench-${i}` })) : [];
  const sessions = kind === "http2" || kind === "lean" ? Array.from({ length: nch }, () => http2.connect(`http://${spec.address}`)) : [];
  for (const s of sessions) s.on("error", () => {});
  const path = batch > 1 ? AuthorizerService.consumeBatch.path : AuthorizerService.consume.path;
  const send = (w: number, req: Buffer) => (kind === "grpc-js" ? call(clients[w % nch]!, path, req) : h2call(sessions[w % nch]!, path, req));
  const prefix = `bench-${randomBytes(6).toString("hex")}-`;
  let seq = 0;
  const nextId = spec.ids === "random" ? () => prefix + randomUUID() : () => prefix + (seq++).toString(36);
  const item = (keyId: string, requestId: string) =>
    ConsumeRequest.fromPartial({ requestId, target: { $case: "keyId", value: keyId }, model: spec.model, inputTokens: "1200", outputTokens: "300" });
  /** One call's bytes: `batch` Consumes (distinct ids unless `ids` repeats one). */
  const encode = (keyId: string, ids: string[]) =>
    Buffer.from(
      batch > 1
        ? ConsumeBatchRequest.encode({ items: ids.map((id) => item(keyId, id)) }).finish()
        : ConsumeRequest.encode(item(keyId, ids[0]!)).finish(),
    );

  // Verify (full decode, every client): a real charge (grpc-status 0, units > 0, not replayed), then its replay.
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
  const failed = (err: unknown) => {
    errors++;
    firstError ??= String((err as Error)?.message ?? err);
  };
  let calls = 0;
  let tStart = 0;
  let tEnd = 0;
  let cpu0 = process.cpuUsage();
  let cpu1 = cpu0;
  const markStart = () => {
    tStart = performance.now();
    cpu0 = process.cpuUsage();
    process.stdout.write(JSON.stringify({ msg: "measure-start" }) + "\n");
  };
  const markEnd = () => {
    tEnd = performance.now();
    cpu1 = process.cpuUsage(cpu0);
    process.stdout.write(JSON.stringify({ msg: "measure-end" }) + "\n");
  };
  let openLoop: OpenLoopCounts | undefined;

  if (spec.rate !== undefined) {
    // OPEN loop: call i due at t0 + i/rate; measured = the calls DUE in [t0 + warmup, + duration).
    // The lean client connects first (its callbacks run only for calls started below).
    const lean =
      kind === "lean"
        ? await leanClient(spec, nch, path, prefix, batch, (err, tag) => {
            record(tag, err);
            pump();
          })
        : null;
    const rate = spec.rate;
    const t0 = performance.now() + 5;
    const wStart = t0 + spec.warmupMs;
    const wEnd = wStart + spec.durationMs;
    const total = Math.ceil(((spec.warmupMs + spec.durationMs) * rate) / 1000);
    const sched = new OpenLoopSchedule({ rate, maxInFlight: spec.concurrency, total }, t0);
    const lat = new Float64Array(Math.ceil((spec.durationMs * rate) / 1000) + 16);
    let nLat = 0;
    let at0 = { capped: 0, dropped: 0 };
    let w = 0;
    let finished: () => void = () => {};
    const allDone = new Promise<void>((r) => (finished = r));
    let timer: NodeJS.Timeout | null = null;
    let timerAt = Infinity;
    const record = (due: number, err: unknown) => {
      const ms = sched.finish(due, performance.now());
      if (err) failed(err);
      else if (due >= wStart && due < wEnd) lat[nLat++] = ms;
    };
    const pump = () => {
      const now = performance.now();
      for (let due = sched.take(now); !Number.isNaN(due); due = sched.take(now)) fire(due);
      if (sched.done) return finished();
      const next = sched.nextAt();
      if (next < timerAt) {
        if (timer) clearTimeout(timer);
        timerAt = next;
        timer = setTimeout(onTimer, Math.max(0, next - now));
      }
    };
    const onTimer = () => {
      timer = null;
      timerAt = Infinity;
      pump();
    };
    let k = 0;
    const fire = (due: number) => {
      const wi = w++;
      if (lean) return lean.start(wi, k++, due);
      const keyId = spec.keyIds[k++ % spec.keyIds.length]!;
      send(wi, encode(keyId, Array.from({ length: batch }, nextId))).then(
        (rs) => {
          let err: Error | null = null;
          if (rs.length !== batch) err = new Error(`${rs.length} answers for ${batch} Consumes`);
          else if (!spec.noop && rs.some((r) => r.replayed)) err = new Error("unexpected replay");
          record(due, err);
          pump();
        },
        (err) => {
          record(due, err);
          pump();
        },
      );
    };
    setTimeout(() => {
      markStart();
      at0 = { capped: sched.capped, dropped: sched.dropped };
    }, Math.max(0, wStart - performance.now()));
    const atEnd = new Promise<void>((r) =>
      setTimeout(() => {
        markEnd();
        r();
      }, Math.max(0, wEnd - performance.now())),
    );
    pump();
    await atEnd;
    // The calls due in the window that are still in flight are waited for (their latency counts).
    const capped = sched.capped - at0.capped;
    const dropped = sched.dropped - at0.dropped;
    let guard: NodeJS.Timeout | undefined;
    await Promise.race([allDone, new Promise((r) => (guard = setTimeout(r, 30_000)))]);
    clearTimeout(guard);
    if (timer) clearTimeout(timer);
    lean?.close();
    if (!sched.done) failed(new Error(`${sched.inFlight} calls unanswered 30 s after the window`));
    // The calls due in the window, by the same test `record` applies to each call's due time
    // (dueAt(i) ≥ wStart, < wEnd): dueBy's division can round a call on the boundary the other way.
    const firstDueAtOrAfter = (x: number): number => {
      let i = Math.max(0, Math.ceil((x - t0) / sched.periodMs) - 2);
      while (i < total && sched.dueAt(i) < x) i++;
      return i;
    };
    for (let i = 0; i < nLat; i++) latencies.push(lat[i]!);
    calls = nLat * batch;
    const s = summarize(latencies);
    openLoop = {
      rate,
      maxInFlight: spec.concurrency,
      due: firstDueAtOrAfter(wEnd) - firstDueAtOrAfter(wStart),
      capped,
      dropped,
      peakInFlight: sched.peakInFlight,
      meanInFlight: (nLat / (spec.durationMs / 1000)) * (s.mean / 1000),
    };
  } else {
    // CLOSED loop: `concurrency` workers, each sending, awaiting, sending again.
    let measuring = false;
    let stopping = false;
    const lean = kind === "lean" ? await leanClient(spec, nch, path, prefix, batch, (err, tag) => leanDone.get(tag)!(err)) : null;
    const leanDone = new Map<number, (err: Error | null) => void>();
    const leanSend = (w: number, k: number) =>
      new Promise<void>((resolve, reject) => {
        leanDone.set(w, (err) => (err ? reject(err) : resolve()));
        lean!.start(w, k, w);
      });
    const worker = async (w: number): Promise<void> => {
      let k = w;
      while (!stopping) {
        const s = performance.now();
        const wasMeasuring = measuring;
        try {
          if (lean) await leanSend(w, k++);
          else {
            const keyId = spec.keyIds[k++ % spec.keyIds.length]!;
            const rs = await send(w, encode(keyId, Array.from({ length: batch }, nextId)));
            if (rs.length !== batch) throw new Error(`${rs.length} answers for ${batch} Consumes`);
            if (!spec.noop && rs.some((r) => r.replayed)) throw new Error("unexpected replay");
          }
          if (wasMeasuring && measuring) {
            // Every item of a call waited as long as the call.
            latencies.push(performance.now() - s);
            calls += batch;
          }
        } catch (err) {
          failed(err);
          if (errors > 1000) stopping = true;
        }
      }
    };
    const workers = Array.from({ length: spec.concurrency }, (_, i) => worker(i));
    await new Promise((r) => setTimeout(r, spec.warmupMs));
    measuring = true;
    markStart();
    await new Promise((r) => setTimeout(r, spec.durationMs));
    measuring = false;
    markEnd();
    stopping = true;
    await Promise.all(workers);
    lean?.close();
  }
  for (const c of clients) c.close();
  for (const s of sessions) s.close();
  const seconds = (tEnd - tStart) / 1000;
  const measuredCalls = calls / batch;
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
    clientCpuUsPerCall: measuredCalls > 0 ? (cpu1.user + cpu1.system) / measuredCalls : NaN,
    clientUserUsPerCall: measuredCalls > 0 ? cpu1.user / measuredCalls : NaN,
    ...(openLoop ? { openLoop } : {}),
  };
  process.stdout.write(JSON.stringify(out) + "\n");
}

main().catch((err) => {
  process.stderr.write(`consumeLoad failed: ${err?.stack ?? err}\n`);
  process.exit(1);
});
