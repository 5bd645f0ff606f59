// The composition root: config → secrets → store → services → servers → signals.
// The only place that builds concrete classes.
import { randomBytes } from "node:crypto";
import { mkdir, readFile, writeFile, chmod, lstat, readdir } from "node:fs/promises";
import { join } from "node:path";
import { setFlagsFromString } from "node:v8";
import * as grpc from "@grpc/grpc-js";
import * as protoLoader from "@grpc/proto-loader";
import { ReflectionService } from "@grpc/reflection";
import type { Logger } from "pino";
import { ledgerArchiveDir, loadConfig, type ServeFlags, type SidecarConfig } from "./config/config.js";
import type { StoreSpec } from "./config/storeUrl.js";
import { PROTO_DIR } from "./config/paths.js";
import { SidecarError } from "./domain/errors.js";
import { then } from "./domain/maybe.js";
import { AdminService as AdminServiceDef } from "./gen/aisa/v1/admin.js";
import { AuthorizationService, CheckResponse as EnvoyCheckResponse } from "./gen/envoy/service/auth/v3/external_auth.js";
import { HealthService } from "./gen/grpc/health/v1/health.js";
import { constantTimeEqual, generateTokenSecret, hashSecret, masterKeyCheckValue, operatorTokenProblem, parseMasterKey, SecretBox } from "./keys/secrets.js";
import { createLogger } from "./observability/logger.js";
import { joinHostPort, Metrics, splitHostPort } from "./observability/metrics.js";
import { decideExposure, type Exposure } from "./config/exposure.js";
import { AdminService } from "./service/admin.js";
import { Authorizer } from "./service/authorizer.js";
import { ConsumeService } from "./service/consume.js";
import { MeteringService } from "./service/metering.js";
import { createExtProcServer, extProcStreamMethod, ExtProcServiceDefinition, PROCESS_PATH, PROCESS_UNAUTHENTICATED } from "./transport/envoy/extProc.js";
import { maintainStore, Scheduler } from "./service/scheduler.js";
import { UsageRecorder } from "./service/usage.js";
import { resolvePrice } from "./policy/pricing.js";
import { ProjectionError } from "./store/keyProjection.js";
import { LevelStore } from "./store/level/levelStore.js";
import { WEBHOOK_META } from "./store/portable.js";
import type { EngineStore } from "./store/engine.js";
import { authenticate as authenticateAdmin, createAdminServer } from "./transport/admin.js";
import { authorizerServiceDefinition, consumeAuthorized, consumeTokenDigest, CONSUME_PATHS, CONSUME_UNAUTHENTICATED, createAuthorizerServer } from "./transport/authorizer.js";
import { createGuard, type Refusal } from "./transport/guard.js";
import { createUsageHandlers } from "./transport/usage.js";
import { createEnvoyAuthorizationServer, createEnvoyCheck } from "./transport/envoy/authorizationService.js";
import { createEnvoyH2Methods } from "./transport/envoy/h2Methods.js";
import { toGrpcStatus } from "./transport/grpcErrors.js";
import { createH2UnaryServer, type H2UnaryServer } from "./transport/h2unary.js";
import { HealthState } from "./transport/health.js";
import { tolerant } from "./transport/tolerant.js";
import { withReusedWriters, withSharedSerialization } from "./transport/serialize.js";
import { memorySettings } from "./config/runtime.js";
import { createHttpServer, type HttpServer } from "./transport/http/server.js";
import { handleSelfService } from "./transport/http/selfService.js";
import { WebhookService, type WebhookEndpoint } from "./service/webhooks.js";
import { denyFor, forwardAuth } from "./transport/http/forwardAuth.js";
import { handleJson } from "./transport/http/jsonApi.js";

export const VERSION = "0.1.0";
/** "dist" when running compiled (npm run build), "source" through tsx. */
export const BUILD = import.meta.url.includes("/dist/src/") ? "dist" : "source";
const PROTO_FILES = [
  "aisa/v1/admin.proto",
  "aisa/v1/authorizer.proto",
  "envoy/service/auth/v3/external_auth.proto",
  "envoy/service/ext_proc/v3/external_processor.proto",
  "grpc/health/v1/health.proto",
];

export interface Sidecar {
  dataAddress: string;
  /** The dedicated Envoy ext_authz endpoint ("" when disabled). */
  envoyAddress: string;
  /** The HTTP forward-auth and JSON API listener ("" when disabled). */
  httpAddress: string;
  adminAddress: string;
  metricsAddress: string;
  adminToken: string;
  dataDir: string;
  store: EngineStore;
  health: HealthState;
  stop(): Promise<void>;
}

/** Reads or creates a 0600 file holding a secret (master key, admin token). */
async function readOrCreateSecretFile(path: string, make: () => string): Promise<string> {
  try {
    return (await readFile(path, "utf8")).trim();
  } catch (err: any) {
    if (err?.code !== "ENOENT") throw err;
    const value = make();
    await writeFile(path, value + "\n", { mode: 0o600, flag: "wx" });
    await chmod(path, 0o600);
    return value;
  }
}

/**
 * Makes the data directory private, whatever modes it was created with (an older build, a
 * copy, a umask): the directory and every directory below it 0700, every file 0600 — the
 * store holds the ledger, the key records and the audit log. Symbolic links are left alone.
 * A path that cannot be changed (owned by another user, a read-only mount) stops the start.
 */
async function makePrivate(dir: string): Promise<void> {
  const visit = async (path: string, isDir: boolean): Promise<void> => {
    try {
      await chmod(path, isDir ? 0o700 : 0o600);
    } catch (err) {
      // Gone since readdir listed it (LevelDB deletes obsolete tables and logs): nothing to protect.
      if ((err as NodeJS.ErrnoException).code === "ENOENT") return;
      throw new SidecarError(
        "FAILED_PRECONDITION",
        `cannot make ${path} private (mode ${isDir ? "0700" : "0600"}): ${(err as Error).message}; the data directory must belong to the user running aisa-authz (chown -R it, or chmod it yourself)`,
        { cause: err },
      );
    }
    if (!isDir) return;
    const entries = await readdir(path, { withFileTypes: true }).catch((err: NodeJS.ErrnoException) => {
      if (err.code === "ENOENT") return [];
      throw err;
    });
    for (const e of entries) {
      if (e.isDirectory()) await visit(join(path, e.name), true);
      else if (e.isFile()) await visit(join(path, e.name), false);
    }
  };
  if (!(await lstat(dir)).isDirectory()) throw new SidecarError("FAILED_PRECONDITION", `data directory ${dir} is not a directory`);
  await visit(dir, true);
}

/**
 * Refuses a master key other than the one the store was written with: a wrong one would serve
 * (lookups use hashes) while every reveal failed. The store keeps the key's check value
 * (secrets.ts); a store without one (new, or written by an earlier build) gets it now — after
 * the key has opened a stored secret, when there is one.
 */
async function checkMasterKey(store: EngineStore, masterKey: Buffer, source: string): Promise<void> {
  const want = masterKeyCheckValue(masterKey);
  const wrong = `the master key (${source}) is not the key this data directory's secrets were sealed with; start with the master key backed up with this db/ (${source === "AISA_MASTER_KEY" ? "AISA_MASTER_KEY" : "restore master.key"}), or the keys could not be revealed`;
  const stored = await store.readMeta("masterKeyCheck");
  if (stored !== undefined) {
    if (typeof stored !== "string" || !constantTimeEqual(stored, want)) throw new SidecarError("FAILED_PRECONDITION", wrong);
    return;
  }
  for await (const k of store.scanKeys()) {
    try {
      new SecretBox(masterKey).open(k.record.secretEnc, k.record.id);
    } catch {
      throw new SidecarError("FAILED_PRECONDITION", `${wrong} (key ${k.record.id} does not open with it)`);
    }
    break;
  }
  await store.writeMeta("masterKeyCheck", want);
}

/**
 * The storage engine cfg.store names, opened: the embedded LevelDB in the data directory (the
 * default), or a shared Redis (a fleet; see "Running a fleet" in the README), imported only
 * then so the embedded start loads no Redis client.
 */
async function openEngine(
  cfg: SidecarConfig,
  deps: { clock: () => number; log: Logger; onError: (err: unknown) => void; faultInjector?: () => Error | null; onBatch: (submissions: number) => void; signal?: AbortSignal },
): Promise<EngineStore> {
  if (cfg.store.kind === "level") {
    const store = new LevelStore({
      dir: cfg.dataDir,
      clock: deps.clock,
      faultInjector: deps.faultInjector,
      rebuildProjection: cfg.rebuildProjection,
      maxReservations: cfg.maxReservations,
      writeBufferMb: cfg.levelWriteBufferMb,
      ledgerFilterMaxBytes: cfg.ledgerFilterMb * 2 ** 20,
      onLedgerFilterFull: (ids, bytes) =>
        deps.log.warn(
          { ledgerFilterIds: ids, ledgerFilterBytes: bytes, ledgerFilterMb: cfg.ledgerFilterMb },
          "the ledger filter reached --ledger-filter-mb: every Consume reads the ledger from now on (correct, slower); restart with a larger --ledger-filter-mb (AISA_LEDGER_FILTER_MB) to skip the read for new request ids again",
        ),
      onError: deps.onError,
    });
    store.onBatch = deps.onBatch;
    try {
      await store.open(deps.clock());
    } catch (err) {
      if (err instanceof ProjectionError) {
        throw new SidecarError(
          "FAILED_PRECONDITION",
          `cannot load the key index: ${err.message}; the full key records are the source of truth: start once with --rebuild-projection (or AISA_REBUILD_PROJECTION=1) to rebuild the index's projection from them`,
          { cause: err },
        );
      }
      throw err;
    }
    return store;
  }
  return openRedisEngine(cfg, cfg.store, deps);
}

/**
 * A shared Redis: retried until it answers (a fleet often starts before its Redis), with a log
 * line every 5 s; nothing listens meanwhile, so health checks and Envoy's ext_authz calls
 * fail (closed) until the store is loaded. A stop signal ends the wait.
 */
async function openRedisEngine(cfg: SidecarConfig, spec: Exclude<StoreSpec, { kind: "level" }>, deps: { clock: () => number; log: Logger; onError: (err: unknown) => void; signal?: AbortSignal }): Promise<EngineStore> {
  const { RedisStore } = await import("./store/redis/redisStore.js");
  // The engine's client reconnects by itself: open() resolves once Redis answers and the book is
  // loaded. Until then each failed attempt comes here: one log line per 5 s, not one per attempt.
  let opening = true;
  let attempts = 0;
  let lastLine = -Infinity;
  const store = new RedisStore({
    url: spec.url,
    prefix: cfg.redisPrefix,
    clock: deps.clock,
    callTimeoutMs: cfg.redisTimeoutMs,
    leaseMs: cfg.redisLeaseMs,
    maxReservations: cfg.maxReservations,
    idempotencyWindowMs: cfg.idempotencyWindowMs,
    ledgerArchive: ledgerArchiveDir(cfg),
    onError: (err) => {
      if (!opening) return deps.onError(err);
      attempts++;
      if (Date.now() - lastLine < 5000) return;
      lastLine = Date.now();
      deps.log.warn({ store: spec.display, attempts, err: err instanceof Error ? err.message : String(err) }, "Redis unreachable: retrying; nothing is served until it answers");
    },
  });
  const abort = (): void => void store.close();
  deps.signal?.addEventListener("abort", abort, { once: true });
  try {
    await store.open(deps.clock());
  } catch (err) {
    await store.close().catch(() => {});
    if (deps.signal?.aborted) throw new SidecarError("UNAVAILABLE", `stopped while waiting for Redis at ${spec.display}`);
    throw err;
  } finally {
    opening = false;
    deps.signal?.removeEventListener("abort", abort);
  }
  if (deps.signal?.aborted) {
    await store.close();
    throw new SidecarError("UNAVAILABLE", `stopped while waiting for Redis at ${spec.display}`);
  }
  deps.log.info({ store: spec.display, attempts: attempts + 1 }, "connected to Redis");
  return store;
}

function bind(server: grpc.Server, addr: string, creds: grpc.ServerCredentials): Promise<string> {
  const { host } = splitHostPort(addr);
  return new Promise((resolve, reject) => {
    server.bindAsync(addr, creds, (err, port) => (err ? reject(new Error(`cannot listen on ${addr}: ${err.message}`)) : resolve(joinHostPort(host, port))));
  });
}

function shutdown(server: grpc.Server, graceMs: number): Promise<void> {
  return new Promise((resolve) => {
    const t = setTimeout(() => {
      server.forceShutdown();
      resolve();
    }, graceMs);
    server.tryShutdown(() => {
      clearTimeout(t);
      resolve();
    });
  });
}

/** Requests of the data port's small methods (aisa.v1 Check and Consume, health): a few hundred bytes in practice. */
const SMALL_MESSAGE_BYTES = 64 * 1024;
/** Concurrent streams one HTTP/2 connection may open (SETTINGS_MAX_CONCURRENT_STREAMS). */
const MAX_STREAMS_PER_CONNECTION = 1000;

/** grpc-js options bounding connections: idle ones are closed, dead peers found by keepalive. */
function connectionLimits(idleTimeoutMs: number): grpc.ServerOptions {
  return {
    "grpc.max_connection_idle_ms": idleTimeoutMs,
    "grpc.keepalive_time_ms": 120_000,
    "grpc.keepalive_timeout_ms": 20_000,
    "grpc.max_concurrent_streams": MAX_STREAMS_PER_CONNECTION,
  };
}

export interface StartOptions extends Partial<SidecarConfig> {
  logger?: Logger;
  /** Injectable clock (tests); Date.now by default. */
  clock?: () => number;
  /** Test hook: make store writes fail (fault injection). */
  storeFaultInjector?: () => Error | null;
  /** Aborts a start still waiting (for Redis): serve's SIGTERM / SIGINT. */
  signal?: AbortSignal;
}

export async function startSidecar(partial: StartOptions = {}): Promise<Sidecar> {
  const cfg: SidecarConfig = { ...loadConfig({}), ...partial };
  const log = partial.logger ?? createLogger(cfg.logLevel);
  // Injectable for tests (e.g. to make a key expire); Date.now in production.
  const clock = partial.clock ?? Date.now;

  let exposure: Exposure;
  try {
    exposure = decideExposure(cfg);
  } catch (err) {
    throw new SidecarError("FAILED_PRECONDITION", (err as Error).message);
  }
  const tlsFiles = exposure.admin === "tls" || exposure.data === "tls" || exposure.envoy === "tls" || exposure.http === "tls" ? { cert: await readFile(cfg.tlsCert!), key: await readFile(cfg.tlsKey!) } : undefined;

  await mkdir(cfg.dataDir, { recursive: true, mode: 0o700 });
  await makePrivate(cfg.dataDir);
  const masterKeySource = cfg.masterKey !== undefined ? "AISA_MASTER_KEY" : join(cfg.dataDir, "master.key");
  let masterKey: Buffer;
  try {
    masterKey = parseMasterKey(cfg.masterKey ?? (await readOrCreateSecretFile(join(cfg.dataDir, "master.key"), () => randomBytes(32).toString("hex"))));
  } catch (err) {
    throw new SidecarError("FAILED_PRECONDITION", `master key ${masterKeySource}: ${(err as Error).message}; restore it from the backup taken with db/`, { cause: err });
  }
  const tokenSource = cfg.adminToken !== undefined ? "AISA_ADMIN_TOKEN" : join(cfg.dataDir, "admin.token");
  const adminToken = cfg.adminToken ?? (await readOrCreateSecretFile(join(cfg.dataDir, "admin.token"), generateTokenSecret));
  const tokenProblem = operatorTokenProblem(adminToken);
  if (tokenProblem) {
    throw new SidecarError(
      "FAILED_PRECONDITION",
      `the operator token (${tokenSource}) ${tokenProblem}: ` +
        (cfg.adminToken !== undefined ? "set AISA_ADMIN_TOKEN to a long random token, or unset it to use <data>/admin.token" : `write a long random token into it, or delete it and serve generates one`),
    );
  }

  const metrics = new Metrics();
  const onStoreError = (err: unknown) => {
    metrics.storeErrors.inc();
    log.error({ err }, "store error");
  };
  const store: EngineStore = await openEngine(cfg, { clock, log, onError: onStoreError, faultInjector: partial.storeFaultInjector, onBatch: (submissions) => metrics.batchSize.observe(submissions), signal: partial.signal });
  // Again after the open, for what LevelDB created meanwhile (serve runs with umask 077, so
  // later files are private too; an in-process start keeps its caller's umask).
  await makePrivate(cfg.dataDir);
  try {
    await checkMasterKey(store, masterKey, masterKeySource);
  } catch (err) {
    await store.close();
    throw err;
  }
  if (store.loadedFrom === "records") log.info({ keys: store.index.size }, "key projection rebuilt from the key records");
  metrics.watchStore(store);
  // The embedded store's ledger filter, read when /metrics is scraped. (A ternary, not an `if`
  // on `store instanceof LevelStore`: that would narrow `store` for the rest of this function.)
  const ledgerFilter = store instanceof LevelStore ? store.ledgerFilter : undefined;
  if (ledgerFilter) metrics.watchLedgerFilter(ledgerFilter);

  const health = new HealthState();
  const setHealth = (serving: boolean) => {
    for (const s of ["", "envoy.service.auth.v3.Authorization", "envoy.service.ext_proc.v3.ExternalProcessor", "aisa.v1.Authorizer", "aisa.v1.Admin"]) health.set(s, serving);
  };
  setHealth(store.health() === "SERVING");
  store.onHealth((h) => {
    setHealth(h === "SERVING");
    log.warn({ health: h }, "store health changed");
  });

  const logErr = (err: unknown) => log.error({ err }, "request failed");
  // Usage history, live usage and alerts: fed by every Check decision, every
  // charged Consume and every key mutation. On a shared store, its live bus: WatchUsage on any
  // sidecar shows the whole fleet (service/usage.ts, FLEET).
  const spec = cfg.store;
  const liveBus = spec.kind === "level" ? undefined : (await import("./store/redis/liveBus.js")).openLiveBus(spec.url, cfg.redisPrefix, (err) => log.warn({ err }, "live usage bus (Redis Pub/Sub): other sidecars' live traffic missing until it reconnects"));
  const recorder = new UsageRecorder({
    bus: liveBus,
    store,
    clock,
    isPriced: (model) => resolvePrice(store, model) !== undefined,
    retentionMs: cfg.usageRetentionMs,
    onError: (err) => log.error({ err }, "usage recorder failed"),
  });
  const admin = new AdminService({
    store,
    box: new SecretBox(masterKey),
    clock,
    operatorTokenHash: hashSecret(adminToken),
    events: (e) => recorder.keyEvent(e),
  });
  const authorizer = new Authorizer({
    store,
    reservationTtlMs: cfg.reservationTtlMs,
    policy: {
      denyUnpricedModels: cfg.denyUnpricedModels,
      defaultEstimateUnits: cfg.defaultEstimateUnits,
      inputEstimateTokens: cfg.inputEstimateTokens,
      defaultMaxTokens: cfg.defaultMaxTokens,
    },
    onDecision: (reason, outcome, model) => {
      metrics.countCheck(reason);
      recorder.recordDecision(reason, outcome, model);
    },
  });

  const consume = new ConsumeService({ store, clock, onConsume: (r) => recorder.recordConsume(r) });
  // Envoy ext_proc metering (issue 16): settles reservations from the upstream's usage through
  // the same ConsumeService; it also gates app Consumes of reservations it meters.
  const metering = new MeteringService({
    consume,
    store,
    defaultEstimateUnits: cfg.defaultEstimateUnits,
    log: (err, msg) => log.warn({ err }, msg),
    onSettled: (outcome) => metrics.extProcSettlements.inc({ outcome }),
  });
  // Webhooks (issue 19 item 3): operator endpoints fed by the live usage stream; the queue lives
  // in <data>/webhooks.json, and so do the endpoints on the embedded store. On a shared store the
  // endpoints are the fleet's (a meta record, sealed with the master key: they carry the signing
  // secrets), so every sidecar sends to what was configured through any of them.
  const box = new SecretBox(masterKey);
  const webhooks = new WebhookService({
    dir: cfg.dataDir,
    endpoints:
      cfg.store.kind === "level"
        ? undefined
        : {
            read: async () => {
              const v = (await store.readMeta(WEBHOOK_META)) as { sealed: string } | undefined;
              return v === undefined ? undefined : (JSON.parse(box.open(v.sealed, WEBHOOK_META)) as WebhookEndpoint[]);
            },
            write: (endpoints) => store.writeMeta(WEBHOOK_META, { sealed: box.seal(JSON.stringify(endpoints), WEBHOOK_META) }),
          },
    clock,
    log: (msg, err) => (err === undefined ? log.warn(msg) : log.warn({ err }, msg)),
    getKey: (id) => store.getKey(id),
    getAccount: (id) => store.getAccount(id),
    subscribe: (filter, listener) => recorder.subscribe(filter, listener),
    // Threshold marks in the store: a restart (or another sidecar on a shared store) neither re-sends nor forgets them.
    claimMark: (id, expiresAt) => store.claimAlertMark(id, expiresAt),
    periodEnd: (id) => store.nextRefillAt?.(id) ?? null,
    scanKeys: () => store.scanKeys(),
    listAccounts: () => store.listAccounts(),
  });
  await webhooks.start({ timer: false }); // delivered by the scheduler's "webhooks" task below
  const usage = createUsageHandlers({
    recorder,
    service: admin,
    log: logErr,
    watchLimits: { perToken: cfg.watchStreamsPerToken, total: cfg.watchStreamsTotal },
  });

  // A settlement is a charge: with AISA_CONSUME_TOKEN set, Process needs it on both ports, as Consume does.
  const processDigest = consumeTokenDigest(cfg.consumeToken);
  const extProc = extProcStreamMethod({ metering, admit: (authorization) => (consumeAuthorized(processDigest, authorization) ? null : PROCESS_UNAUTHENTICATED) });
  // Envoy's hot path: the same Check on a dedicated node:http2 endpoint (transport/h2unary.ts),
  // without grpc-js's per-call machinery. Same limits as the data port.
  const MAX_RECEIVE = cfg.dataMaxMessageBytes;
  const MAX_BUFFERED = cfg.maxBufferedBytes;
  const onCheckLatency = (s: number) => metrics.observeCheckLatency(s);
  const rejectLoggedAt = new Map<string, number>();
  const envoyServer: H2UnaryServer | undefined = cfg.envoyListen
    ? createH2UnaryServer({
        methods: createEnvoyH2Methods({ decide: createEnvoyCheck({ authorizer, xffTrustedHops: cfg.xffTrustedHops, clock }), health, onLatency: onCheckLatency }),
        // ext_proc metering beside the Check, on the same endpoint (where Envoy already connects).
        streams: { [extProc.path]: extProc.method },
        maxReceiveMessageBytes: MAX_RECEIVE,
        maxBufferedBytes: MAX_BUFFERED,
        receiveTimeoutMs: cfg.receiveTimeoutMs,
        idleTimeoutMs: cfg.idleTimeoutMs,
        maxConcurrentStreams: MAX_STREAMS_PER_CONNECTION,
        tls: exposure.envoy === "tls" ? tlsFiles : undefined,
        toStatus: (err) => toGrpcStatus(err, logErr),
        onNetworkError: (err) => log.debug({ err }, "envoy endpoint connection error"),
        onRejected: (reason, details) => {
          metrics.envoyRejected.inc({ reason });
          // A misconfigured client fails every call the same way: one line per reason a minute.
          const now = Date.now();
          if ((rejectLoggedAt.get(reason) ?? -Infinity) + 60_000 > now) return;
          rejectLoggedAt.set(reason, now);
          log.warn({ reason, details }, "envoy endpoint refused a request (protocol); see aisa_envoy_endpoint_rejected_total");
        },
      })
    : undefined;

  // Forward-auth for nginx, Caddy, HAProxy and Envoy's http_service, and aisa.v1 as JSON
  // (transport/http): the same Check decision as the Envoy endpoint, the same Consume.
  const consumeDigestHttp = consumeTokenDigest(cfg.consumeToken);
  const httpServer: HttpServer | undefined = cfg.httpListen
    ? createHttpServer({
        forwardAuth: ((decide) => (r: Parameters<typeof forwardAuth>[1]) => {
          const t0 = process.hrtime.bigint();
          return then(forwardAuth(decide, r, logErr), (out) => {
            onCheckLatency(Number(process.hrtime.bigint() - t0) / 1e9);
            return out;
          });
        })(createEnvoyCheck({ authorizer, xffTrustedHops: cfg.xffTrustedHops, clock })),
        deny: denyFor,
        json: (path, authorization, body) =>
          handleJson({ authorizer, consume, clock, log: logErr, consumeDigest: consumeDigestHttp, onConsumeLatency: (sec) => metrics.observeConsumeLatency(sec) }, path, authorization, body),
        self: (path, search, authorization) => handleSelfService({ admin, usage: recorder, clock, log: logErr }, path, search, authorization),
        serving: () => store.health() === "SERVING",
        maxAuthBodyBytes: cfg.dataMaxMessageBytes,
        maxJsonBodyBytes: (path) => (path === "/v1/consume:batch" ? Math.min(cfg.dataMaxMessageBytes, 1024 * 1024) : SMALL_MESSAGE_BYTES),
        maxBufferedBytes: MAX_BUFFERED,
        receiveTimeoutMs: cfg.receiveTimeoutMs,
        idleTimeoutMs: cfg.idleTimeoutMs,
        tls: exposure.http === "tls" ? tlsFiles : undefined,
        onError: logErr,
        onRejected: (reason) => metrics.refused.inc({ port: "http", reason }),
      })
    : undefined;

  const packageDefinition = protoLoader.loadSync(PROTO_FILES, { includeDirs: [PROTO_DIR], keepCase: true });
  const reflection = new ReflectionService(packageDefinition);

  // Data plane: Envoy ext_authz + aisa.v1.Authorizer. An Envoy CheckRequest carries the request
  // body (with_request_body, max_request_bytes), so it may be as large as the data port's limit;
  // every other method has its own, much smaller bound (transport/guard.ts).
  const refusedOn = (port: string) => (r: Refusal) => metrics.refused.inc({ port, reason: r.reason });
  const consumeDigest = consumeTokenDigest(cfg.consumeToken);
  const DATA_METHOD_MAX_BYTES: Record<string, number> = {
    "/envoy.service.auth.v3.Authorization/Check": cfg.dataMaxMessageBytes,
    "/aisa.v1.Authorizer/ConsumeBatch": Math.min(cfg.dataMaxMessageBytes, 1024 * 1024), // 1,000 items of at most ~0.8 KB
    // ext_proc: the first message (request headers) is what the guard bounds; body chunks follow.
    "/envoy.service.ext_proc.v3.ExternalProcessor/Process": cfg.dataMaxMessageBytes,
  };
  const dataGuard = createGuard({
    methodMaxBytes: (path) => DATA_METHOD_MAX_BYTES[path] ?? SMALL_MESSAGE_BYTES,
    maxBufferedBytes: MAX_BUFFERED,
    receiveTimeoutMs: cfg.receiveTimeoutMs,
    // With a consume token, a Consume without it is refused before its body is read.
    admit: (path, md) =>
      CONSUME_PATHS.has(path) && !consumeAuthorized(consumeDigest, md.get("authorization")[0])
        ? { code: grpc.status.UNAUTHENTICATED, details: CONSUME_UNAUTHENTICATED, reason: "unauthenticated" }
        : path === PROCESS_PATH && !consumeAuthorized(consumeDigest, md.get("authorization")[0])
          ? { code: grpc.status.UNAUTHENTICATED, details: PROCESS_UNAUTHENTICATED, reason: "unauthenticated" }
          : null,
    onRefused: refusedOn("data"),
  });
  const data = new grpc.Server({
    "grpc.max_receive_message_length": cfg.dataMaxMessageBytes,
    ...connectionLimits(cfg.idleTimeoutMs),
    interceptors: [dataGuard.interceptor],
  });
  // tolerant(): bytes that are not the request message reach the handlers as
  // MALFORMED (Envoy: a 400 deny; aisa.v1/admin: INVALID_ARGUMENT), not INTERNAL.
  // withReusedWriters: responses encoded through one kept protobuf writer per type instead
  // of a fresh, growing one per response (transport/serialize.ts).
  data.addService(
    tolerant(withReusedWriters(AuthorizationService, { check: EnvoyCheckResponse })),
    createEnvoyAuthorizationServer({ authorizer, xffTrustedHops: cfg.xffTrustedHops, clock, log: logErr, onLatency: onCheckLatency }),
  );
  data.addService(
    authorizerServiceDefinition(),
    createAuthorizerServer({
      authorizer,
      consume,
      clock,
      log: logErr,
      onConsumeLatency: (sec) => metrics.observeConsumeLatency(sec),
      consumeToken: cfg.consumeToken,
    }),
  );
  data.addService(ExtProcServiceDefinition, createExtProcServer({ metering, log: logErr }));
  data.addService(HealthService, health.server());
  reflection.addToServer(data);

  // Admin: a call without a valid token is refused from its metadata, before its body is read.
  const adminGuard = createGuard({
    methodMaxBytes: () => cfg.adminMaxMessageBytes,
    maxBufferedBytes: MAX_BUFFERED,
    receiveTimeoutMs: cfg.receiveTimeoutMs,
    admit: (path, md) => {
      if (!path.startsWith("/aisa.v1.Admin/")) return null; // health, reflection
      try {
        authenticateAdmin(admin, { metadata: md });
        return null;
      } catch (err) {
        return { code: grpc.status.UNAUTHENTICATED, details: (err as SidecarError).publicMessage, reason: "unauthenticated" };
      }
    },
    onRefused: refusedOn("admin"),
  });
  const adminServer = new grpc.Server({
    "grpc.max_receive_message_length": cfg.adminMaxMessageBytes,
    ...connectionLimits(cfg.idleTimeoutMs),
    interceptors: [adminGuard.interceptor],
  });
  adminServer.addService(tolerant(withSharedSerialization(AdminServiceDef, ["watchUsage"]), { boundStrings: true }), createAdminServer({ service: admin, quotaPerUnit: cfg.quotaPerUnit, currency: cfg.currency, version: VERSION, log: logErr, usage, webhooks }));
  adminServer.addService(HealthService, health.server());
  reflection.addToServer(adminServer);

  const creds = (t: "tls" | "plaintext") =>
    t === "tls" ? grpc.ServerCredentials.createSsl(null, [{ cert_chain: tlsFiles!.cert, private_key: tlsFiles!.key }], false) : grpc.ServerCredentials.createInsecure();

  let dataAddress = "";
  let envoyAddress = "";
  let httpAddress = "";
  let adminAddress = "";
  let metricsAddress = "";
  let metricsServer: import("node:http").Server | undefined;
  try {
    dataAddress = await bind(data, cfg.listen, creds(exposure.data));
    if (envoyServer) {
      const { host, port } = splitHostPort(cfg.envoyListen);
      const bound = await envoyServer.listen(host, port).catch((err: Error) => {
        throw new Error(`cannot listen on ${cfg.envoyListen}: ${err.message}`);
      });
      envoyAddress = joinHostPort(host, bound);
    }
    if (httpServer) {
      const { host, port } = splitHostPort(cfg.httpListen);
      const bound = await httpServer.listen(host, port).catch((err: Error) => {
        throw new Error(`cannot listen on ${cfg.httpListen}: ${err.message}`);
      });
      httpAddress = joinHostPort(host, bound);
    }
    adminAddress = await bind(adminServer, cfg.adminListen, creds(exposure.admin));
    if (cfg.metricsListen) {
      const m = await metrics.listen(cfg.metricsListen);
      metricsAddress = m.address;
      metricsServer = m.server;
    }
  } catch (err) {
    data.forceShutdown();
    adminServer.forceShutdown();
    await envoyServer?.close(0);
    await httpServer?.close(0);
    await liveBus?.close();
    await store.close();
    throw err;
  }
  // The background steps (the engine and the recorder own no timer): reservation expiry,
  // refills and recovery after a failed write; the live usage second, bucket flush and retention;
  // webhook deliveries due (retries with backoff).
  const scheduler = new Scheduler({ onError: (task, err) => log.error({ err, task }, "background step failed") })
    .every("store", 1000, () => maintainStore(store, clock()))
    .every("usage", recorder.tickMs, () => recorder.tick())
    .every("webhooks", webhooks.tickMs, () => webhooks.tick());
  // A shared engine's ledger past the idempotency window moves to the archive (one sidecar of
  // the fleet at a time does it: the engine's lock).
  const archiveLedger = store.archiveLedger?.bind(store);
  if (archiveLedger) {
    scheduler.every("ledger-archive", 60_000, async () => {
      const n = await archiveLedger();
      if (n > 0) log.info({ entries: n, dir: ledgerArchiveDir(cfg) }, "ledger entries past the idempotency window archived");
    });
  }
  // A shared engine's budget-slice leases: renewed while their key is used, else given back.
  const leases = store as { leaseTick?: (now: number) => void; leaseTickMs?: number; leaseStats?: Readonly<Record<string, number>> };
  if (leases.leaseTick && leases.leaseTickMs) scheduler.every("leases", leases.leaseTickMs, () => leases.leaseTick!(clock()));
  if (leases.leaseStats) metrics.leaseStats = () => leases.leaseStats!;
  scheduler.start();

  log.info({ dataAddress, envoyAddress, httpAddress, adminAddress, metricsAddress, dataDir: cfg.dataDir, keys: store.index.size, index: store.loadedFrom, version: VERSION, build: BUILD, memory: memorySettings(), ...(store instanceof LevelStore ? { levelWriteBufferMb: cfg.levelWriteBufferMb, ledgerFilterMb: cfg.ledgerFilterMb } : {}) }, "ready");

  let stopped: Promise<void> | undefined;
  return {
    dataAddress,
    envoyAddress,
    httpAddress,
    adminAddress,
    metricsAddress,
    adminToken,
    dataDir: cfg.dataDir,
    store,
    health,
    stop() {
      stopped ??= (async () => {
        health.endWatches();
        usage.close(); // WatchUsage streams end cleanly instead of holding the shutdown
        // Drain in-flight calls (bounded), then flush usage and close the store.
        await Promise.all([shutdown(data, 5000), shutdown(adminServer, 5000), envoyServer?.close(5000), httpServer?.close(5000)]);
        // ext_proc streams the shutdown ended settle now (estimate or usage so far), before the store closes.
        const unsettled = await metering.drain(3000);
        if (unsettled > 0) log.warn({ unsettled }, "ext_proc streams still settling at shutdown: their reservations expire uncharged");
        await new Promise<void>((r) => (metricsServer ? metricsServer.close(() => r()) : r()));
        await webhooks.stop().catch((err) => log.error({ err }, "webhook state not saved"));
        await scheduler.stop();
        await recorder.stop().catch((err) => log.error({ err }, "usage flush failed"));
        await liveBus?.close();
        await store.close();
        log.info("stopped");
        log.flush?.();
      })();
      return stopped;
    },
  };
}

/** `aisa-authz serve`: runs until SIGTERM/SIGINT, then drains and exits 0. */
export async function runServe(flags: ServeFlags): Promise<void> {
  let cfg: SidecarConfig;
  try {
    cfg = loadConfig(flags);
    decideExposure(cfg); // a listener refused as configured is a usage error: exit 2 naming the flag
  } catch (err) {
    process.stderr.write(`error: ${(err as Error).message}\n`);
    process.exit(2);
  }
  const log = createLogger(cfg.logLevel);
  // Benchmarks: one V8 --trace-gc line per GC on stdout (bench/run.ts counts the pauses in each
  // measured window). A flag node refuses in NODE_OPTIONS, so it is set here, behind an env.
  if (process.env.AISA_TRACE_GC === "1") setFlagsFromString("--trace-gc");
  // Scavenges on the main thread alone: V8's parallel scavenge hands each one to helper threads
  // and waits for them, and on a sidecar's 1–2 busy cores that wait cost more than it saved
  // (Envoy Check at saturation: 1.00–1.23× the req/s in 7 of 7 rounds; bench/README.md, ninth pass).
  // Node refuses the flag in NODE_OPTIONS; one given on node's command line is kept.
  if (!process.execArgv.some((a) => /^--(no-)?parallel[-_]scavenge$/.test(a))) setFlagsFromString("--no-parallel-scavenge");
  // Every file serve creates (LevelDB's tables, logs and manifests included) is private to its
  // user, whatever umask it was started with; existing ones are chmod-ed at start (makePrivate).
  process.umask(0o077);
  // Signal handlers go in before start-up: a SIGTERM that lands while the
  // store is loading (or right after "ready") still shuts down cleanly.
  let sidecar: Sidecar | undefined;
  let signalled: string | undefined;
  let exiting = false;
  const shutdownNow = () => {
    if (exiting || !sidecar) return;
    exiting = true;
    log.info({ signal: signalled }, "shutting down");
    sidecar.stop().then(
      () => process.exit(0),
      (err) => {
        log.error({ err }, "shutdown failed");
        process.exit(1);
      },
    );
  };
  const starting = new AbortController();
  const onSignal = (sig: string) => {
    signalled ??= sig;
    starting.abort();
    shutdownNow();
  };
  process.on("SIGTERM", () => onSignal("SIGTERM"));
  process.on("SIGINT", () => onSignal("SIGINT"));
  try {
    sidecar = await startSidecar({ ...cfg, logger: log, signal: starting.signal });
  } catch (err) {
    if (signalled) {
      log.info({ signal: signalled }, "stopped before ready");
      log.flush?.();
      process.exit(0);
    }
    const msg = err instanceof SidecarError ? err.publicMessage : (err as Error).message;
    log.fatal({ err }, msg);
    log.flush?.();
    process.stderr.write(`error: ${msg}\n`);
    process.exit(1);
  }
  if (signalled) shutdownNow();
}
