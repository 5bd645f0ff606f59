// gRPC adapter of Admin/QueryUsage and Admin/WatchUsage: authenticates like
// every admin call, converts messages, and pumps the live stream with write
// backpressure. The semantics live in src/service/usage.ts.
import { type sendUnaryData, type ServerUnaryCall, type ServerWritableStream } from "@grpc/grpc-js";
import { SidecarError, invalid } from "../domain/errors.js";
import type { KeyState, Principal } from "../domain/types.js";
import {
  Granularity,
  UsageDimension,
  type AdminServer,
  type Alert,
  type KeyEvent,
  type QueryUsageRequest,
  type QueryUsageResponse,
  type UsageCounters as PbCounters,
  type UsageEvent,
  type UsageFilter as PbFilter,
  type WatchUsageRequest,
} from "../gen/aisa/v1/admin.js";
import type { AdminService } from "../service/admin.js";
import { watchAdmission, type WatchLimits } from "../service/watchLimits.js";
import { mergeLiveEvents, type Dim, type Gran, type LiveEvent, type UsageCounters, type UsageFilter, type UsageRecorder, type UsageRow } from "../service/usage.js";
import { authenticate, bearerOf } from "./admin.js";
import { keyToProto } from "./convert.js";
import type { KeyFacts } from "../domain/keyView.js";
import { toServiceError } from "./grpcErrors.js";
import { isMalformed, malformedReason } from "./tolerant.js";

export interface UsageTransportOptions {
  recorder: UsageRecorder;
  /** For authentication (the same tokens as every admin call). */
  service: AdminService;
  log: (err: unknown) => void;
  /** Aborting ends every open WatchUsage stream (like close()). */
  signal?: AbortSignal;
  /** Open WatchUsage streams allowed per token and in total (default 8 and 256). */
  watchLimits?: WatchLimits;
}

export const DEFAULT_WATCH_LIMITS: WatchLimits = { perToken: 8, total: 256 };

export interface UsageHandlers extends Pick<AdminServer, "queryUsage" | "watchUsage"> {
  /** Ends every open WatchUsage stream cleanly (status OK); new ones end at once. Call before the server shuts down. */
  close(): void;
  /** Open WatchUsage streams. */
  readonly openStreams: number;
}

const GRAN: Partial<Record<Granularity, Gran>> = {
  [Granularity.GRANULARITY_UNSPECIFIED]: "h",
  [Granularity.GRANULARITY_MINUTE]: "m",
  [Granularity.GRANULARITY_HOUR]: "h",
  [Granularity.GRANULARITY_DAY]: "d",
};

const DIM: Partial<Record<UsageDimension, Dim>> = {
  [UsageDimension.USAGE_DIMENSION_UNSPECIFIED]: "key",
  [UsageDimension.USAGE_DIMENSION_KEY]: "key",
  [UsageDimension.USAGE_DIMENSION_ACCOUNT]: "account",
  [UsageDimension.USAGE_DIMENSION_GROUP]: "group",
  [UsageDimension.USAGE_DIMENSION_MODEL]: "model",
};

export function countersToProto(c: UsageCounters): PbCounters {
  const denies: Record<string, string> = {};
  for (const [r, n] of Object.entries(c.denies)) denies[r] = String(n);
  return {
    requests: String(c.requests),
    denied: String(c.denied),
    deniesByReason: denies,
    inputTokens: String(c.inputTokens),
    outputTokens: String(c.outputTokens),
    units: String(c.units),
    consumed: String(c.consumed),
    cacheReadTokens: String(c.cacheReadTokens ?? 0),
    cacheWriteTokens: String(c.cacheWriteTokens ?? 0),
    reasoningTokens: String(c.reasoningTokens ?? 0),
  };
}

function filterFromProto(f: PbFilter | undefined): Partial<UsageFilter> {
  return { keyId: f?.keyId ?? "", accountId: f?.accountId ?? "", group: f?.group ?? "", model: f?.model ?? "" };
}

function rowToProto(r: UsageRow) {
  return { bucketStart: new Date(r.start), id: r.id, counters: countersToProto(r.counters) };
}

/** The recorder shares one event among the streams with the same filter: converted once. */
const converted = new WeakMap<LiveEvent, UsageEvent>();

/** The facts of a key as a Key message states them (AdminService.keyFacts). */
export type KeyFactsOf = (s: KeyState) => KeyFacts;

export function usageEventToProto(e: LiveEvent, facts: KeyFactsOf): UsageEvent {
  let pb = converted.get(e);
  if (!pb) converted.set(e, (pb = convertUsageEvent(e, facts)));
  return pb;
}

function convertUsageEvent(e: LiveEvent, facts: KeyFactsOf): UsageEvent {
  const from = new Date(e.from);
  return {
    at: new Date(e.at),
    total: countersToProto(e.total),
    byKey: e.byKey.map((r) => ({ bucketStart: from, id: r.id, counters: countersToProto(r.counters) })),
    byGroup: e.byGroup.map((r) => ({ bucketStart: from, id: r.id, counters: countersToProto(r.counters) })),
    keyEvents: e.keyEvents.map(
      (k): KeyEvent => ({ keyId: k.keyId, kind: k.kind, key: k.kind === "deleted" || !k.key ? undefined : keyToProto(k.key, facts(k.key)) }),
    ),
    alerts: e.alerts.map(
      (a): Alert => ({ kind: a.kind, targetId: a.targetId, percent: a.percent, message: a.message, expiresAt: a.expiresAt === null ? undefined : new Date(a.expiresAt) }),
    ),
    remaining: e.remaining.map((r) => ({ keyId: r.keyId, remaining: String(r.remaining), unlimited: r.unlimited, accountBalance: String(r.accountBalance) })),
    fleet: e.fleet ? { sidecars: e.fleet.sidecars, othersMissing: e.fleet.othersMissing } : undefined,
  };
}

/** The part of a writable stream the pump needs (a grpc-js server stream, or any Node Writable). */
export interface WritableLike {
  write(msg: unknown): boolean;
  once(event: "drain", listener: () => void): unknown;
}

/**
 * Writes live events to a stream with backpressure: while a write has not
 * drained, further events are merged into ONE pending event (counters summed,
 * per-key/group rows merged, key events and alerts appended up to a cap), so
 * a slow client costs bounded memory and gets everything, coarser.
 */
export class LivePump {
  readonly #out: WritableLike;
  #pending: LiveEvent | undefined;
  #blocked = false;
  #stopped = false;

  readonly #facts: KeyFactsOf;

  constructor(out: WritableLike, facts: KeyFactsOf) {
    this.#out = out;
    this.#facts = facts;
  }

  push(e: LiveEvent): void {
    if (this.#stopped) return;
    if (this.#blocked) {
      this.#pending = this.#pending ? mergeLiveEvents(this.#pending, e) : e;
      return;
    }
    this.#write(e);
  }

  /** True while a write waits for 'drain'. */
  get blocked(): boolean {
    return this.#blocked;
  }

  stop(): void {
    this.#stopped = true;
    this.#pending = undefined;
  }

  #write(e: LiveEvent): void {
    if (this.#out.write(usageEventToProto(e, this.#facts))) return;
    this.#blocked = true;
    this.#out.once("drain", () => {
      this.#blocked = false;
      const p = this.#pending;
      this.#pending = undefined;
      if (p && !this.#stopped) this.#write(p);
    });
  }
}

export function createUsageHandlers(opts: UsageTransportOptions): UsageHandlers {
  const { recorder, service, log } = opts;
  /** Enders of the open streams. */
  const open = new Set<() => void>();
  /** Open streams per token id. */
  const perToken = new Map<string, number>();
  const limits = opts.watchLimits ?? DEFAULT_WATCH_LIMITS;
  let closed = false;
  const closeAll = () => {
    closed = true;
    for (const end of [...open]) end();
  };
  opts.signal?.addEventListener("abort", closeAll, { once: true });

  return {
    queryUsage(call: ServerUnaryCall<QueryUsageRequest, QueryUsageResponse>, callback: sendUnaryData<QueryUsageResponse>): void {
      let p: Principal;
      try {
        p = authenticate(service, call);
      } catch (err) {
        callback(toServiceError(err, log));
        return;
      }
      Promise.resolve()
        .then(() => {
          const req = call.request;
          if (isMalformed(req)) throw new SidecarError("INVALID_ARGUMENT", malformedReason(req));
          const gran = GRAN[req.granularity];
          if (!gran) throw invalid("granularity", `unknown value ${req.granularity}`);
          const groupBy = DIM[req.groupBy];
          if (!groupBy) throw invalid("group_by", `unknown value ${req.groupBy}`);
          return recorder.query({ filter: filterFromProto(req.filter), groupBy, gran, since: req.since?.getTime(), until: req.until?.getTime() }, p);
        })
        .then(
          (r) => callback(null, { rows: r.rows.map(rowToProto), total: countersToProto(r.total) }),
          (err) => callback(toServiceError(err, log)),
        );
    },

    watchUsage(call: ServerWritableStream<WatchUsageRequest, UsageEvent>): void {
      let p: Principal;
      try {
        p = authenticate(service, call);
      } catch (err) {
        call.emit("error", toServiceError(err, log));
        return;
      }
      if (isMalformed(call.request)) {
        call.emit("error", toServiceError(new SidecarError("INVALID_ARGUMENT", malformedReason(call.request)), log));
        return;
      }
      const refused = watchAdmission(p.tokenId, perToken.get(p.tokenId) ?? 0, open.size, limits);
      if (refused) {
        call.emit("error", toServiceError(new SidecarError("RESOURCE_EXHAUSTED", refused), log));
        return;
      }
      const tokenId = p.tokenId;
      perToken.set(tokenId, (perToken.get(tokenId) ?? 0) + 1);
      const token = bearerOf(call);
      const pump = new LivePump(call, (s) => service.keyFacts(s));
      let unsubscribe = () => {};
      let done = false;
      // Stops listening and ends the call — with OK, or with `err`'s status — unless the client is already gone.
      const finish = (gone: boolean, err?: unknown) => {
        if (done) return;
        done = true;
        open.delete(end);
        const n = (perToken.get(tokenId) ?? 1) - 1;
        if (n > 0) perToken.set(tokenId, n);
        else perToken.delete(tokenId);
        unsubscribe();
        pump.stop();
        if (gone || call.cancelled || call.destroyed || call.writableEnded) return;
        if (err) call.emit("error", toServiceError(err, log));
        else call.end();
      };
      const end = () => finish(false);
      open.add(end);
      // The client cancelled or went away, or the stream failed: stop quietly.
      call.on("cancelled", () => finish(true));
      call.on("close", () => finish(true));
      call.on("error", () => finish(true));
      if (closed) {
        end();
        return;
      }
      recorder.scopeFilter(filterFromProto(call.request.filter), p).then(
        (filter) => {
          if (done) return;
          unsubscribe = recorder.subscribe(filter, (ev) => {
            // A token revoked while its stream is open stops receiving.
            if (!service.authenticate(token)) {
              finish(false, new SidecarError("UNAUTHENTICATED", "the admin token was revoked"));
              return;
            }
            pump.push(ev);
          }, { fleet: true });
        },
        (err) => finish(false, err),
      );
    },

    close: closeAll,

    get openStreams() {
      return open.size;
    },
  };
}
