// Configuration: flags (from the CLI) over environment variables over defaults.
// This is the only module that reads process.env for the server.
import { join } from "node:path";
import { splitHostPort } from "../observability/metrics.js";
import { parseStoreUrl, type StoreSpec } from "./storeUrl.js";
/** LevelDB's write buffer (MB) unless told otherwise (`--level-write-buffer-mb`; store/level/disk.ts says why). */
export const DEFAULT_WRITE_BUFFER_MB = 64;
/** The ledger filter's memory bound (MB) unless told otherwise (`--ledger-filter-mb`; store/level/ledgerFilter.ts). */
export const DEFAULT_LEDGER_FILTER_MB = 32;

export interface SidecarConfig {
  dataDir: string;
  /** The storage engine (config/storeUrl.ts): the embedded LevelDB in dataDir, or a shared Redis. */
  store: StoreSpec;
  /** A shared engine's per-call deadline: past it the call fails (Check fails closed, Consume UNAVAILABLE). */
  redisTimeoutMs: number;
  /** Budget-slice leases on a shared Redis: their TTL in ms (0 = off). */
  redisLeaseMs: number;
  /** LevelDB's write buffer (memtable) in MB: the log is synced per batch and switched to a table when this fills. */
  levelWriteBufferMb: number;
  /** The embedded ledger filter's memory bound, MB (~0.5M request ids per MB; past it every Consume reads the ledger). */
  ledgerFilterMb: number;
  /** Key prefix on a shared Redis (several fleets on one Redis keep apart by it). */
  redisPrefix: string;
  /** How long a Consume's request id stays idempotent on a shared engine. */
  idempotencyWindowMs: number;
  /**
   * Where a shared engine archives ledger entries older than the idempotency window (one
   * directory shared by the whole fleet; ledgerArchiveDir): a directory, "off" (entries past the
   * window are dropped), or undefined: <dataDir>/ledger-archive. The embedded engine keeps its
   * whole ledger and ignores it.
   */
  ledgerArchive: string | undefined;
  /** Data-plane gRPC (Envoy ext_authz + aisa.v1.Authorizer), grpc-js. */
  listen: string;
  /** Envoy ext_authz Check (+ grpc.health.v1 Check) on the dedicated node:http2 endpoint; "" disables. */
  envoyListen: string;
  /** HTTP/1.1 forward-auth (nginx, Caddy, HAProxy, Envoy http_service) and the JSON API; "" disables. */
  httpListen: string;
  /** Admin gRPC. */
  adminListen: string;
  /** Prometheus metrics HTTP; "" disables. */
  metricsListen: string;
  /** Trusted proxy hops in x-forwarded-for (0 = use the L4 peer only). */
  xffTrustedHops: number;
  /** Operator token; undefined = <data>/admin.token (made on first start). */
  adminToken: string | undefined;
  /** 32-byte master key (hex or base64); undefined = <data>/master.key. */
  masterKey: string | undefined;
  quotaPerUnit: number;
  currency: string;
  tlsCert: string | undefined;
  tlsKey: string | undefined;
  /** Allow a non-loopback admin address without TLS. */
  adminInsecure: boolean;
  logLevel: string;
  /** How long an unconsumed reservation holds its units. */
  reservationTtlMs: number;
  /** Open reservations held at most; at the cap a Check releases the oldest one early. */
  maxReservations: number;
  /** Deny models without a price (true), or estimate/charge defaultPriceUnits. */
  denyUnpricedModels: boolean;
  /** Estimate (units) when no price or max_tokens is known. */
  defaultEstimateUnits: number;
  /** Input tokens assumed by the estimate. */
  inputEstimateTokens: number;
  /** Output tokens assumed when a request sets no max_tokens. */
  defaultMaxTokens: number;
  /** Rebuild the store's key projection from the key records on open (repair). */
  rebuildProjection: boolean;
  /** Usage history retention (ms) of minute, hour and day buckets. */
  usageRetentionMs: { m: number; h: number; d: number };
  /** Allow the data port and the Envoy endpoint on a non-loopback address in plaintext. */
  dataInsecure: boolean;
  /** When set, aisa.v1 Consume/ConsumeBatch require `authorization: Bearer <this>`. */
  consumeToken: string | undefined;
  /** Open WatchUsage streams allowed per admin token, and in total. */
  watchStreamsPerToken: number;
  watchStreamsTotal: number;
  /** Largest request message on the data port and the Envoy endpoint (an Envoy CheckRequest carries the body). */
  dataMaxMessageBytes: number;
  /** Largest request message on the admin port. */
  adminMaxMessageBytes: number;
  /** Bytes of incomplete requests one listener holds across all its calls, at most. */
  maxBufferedBytes: number;
  /** A connection with no open call for this long is closed (every port). */
  idleTimeoutMs: number;
  /** A request message must arrive in full within this (every port; a shorter grpc-timeout wins). */
  receiveTimeoutMs: number;
}

export interface ServeFlags {
  dataDir?: string;
  store?: string;
  redisTimeoutMs?: number | string;
  redisLeaseMs?: number | string;
  levelWriteBufferMb?: number | string;
  ledgerFilterMb?: number | string;
  ledgerArchive?: string;
  listen?: string;
  envoyListen?: string;
  httpListen?: string;
  adminListen?: string;
  metricsListen?: string;
  xffTrustedHops?: number | string;
  tlsCert?: string;
  tlsKey?: string;
  /** true (the bare flag) or one of the boolean words. */
  adminInsecure?: boolean | string;
  quotaPerUnit?: number | string;
  logLevel?: string;
  /** true (the bare flag) or one of the boolean words. */
  rebuildProjection?: boolean | string;
  /** true (the bare flag) or one of the boolean words. */
  dataInsecure?: boolean | string;
  watchStreamsPerToken?: number | string;
  watchStreamsTotal?: number | string;
  dataMaxMessageBytes?: number | string;
  adminMaxMessageBytes?: number | string;
  idleTimeoutMs?: number | string;
  receiveTimeoutMs?: number | string;
  maxBufferedBytes?: number | string;
}

/** AISA_REDIS_PREFIX: printable, no spaces or braces (a brace would change the Cluster hash slot). */
export function redisPrefix(v: string): string {
  if (!/^[A-Za-z0-9_.:-]{0,64}$/.test(v)) throw new Error(`AISA_REDIS_PREFIX: ${JSON.stringify(v)} may hold only letters, digits and _ . : - (at most 64)`);
  return v;
}

function int(name: string, v: string | number | undefined, def: number, min = 0, max = Number.MAX_SAFE_INTEGER): number {
  if (v === undefined || v === "") return def;
  const n = Number(v);
  if (!Number.isSafeInteger(n) || n < min) throw new Error(`${name}: expected an integer >= ${min}, got ${JSON.stringify(v)}`);
  if (n > max) throw new Error(`${name}: expected an integer <= ${max}, got ${JSON.stringify(v)}`);
  return n;
}

/** A "host:port" listen address (or "" where `optional`), named after its flag in errors. */
function address(name: string, v: string, optional = false): string {
  if (v === "" && optional) return v;
  try {
    splitHostPort(v);
  } catch (err) {
    throw new Error(`${name}: ${(err as Error).message}`);
  }
  return v;
}

/** THE words a boolean setting (environment variable or flag value) accepts, case-insensitive. */
export const TRUE_WORDS: readonly string[] = ["1", "true", "yes", "on"];
export const FALSE_WORDS: readonly string[] = ["0", "false", "no", "off"];

/**
 * THE boolean parser of every boolean setting: unset or "" is `def`, a bare flag (true) is
 * true, else one of TRUE_WORDS / FALSE_WORDS. Anything else ("enabled", "ture") is an error
 * naming the setting — never silently the default or false.
 */
export function parseBool(name: string, v: string | boolean | undefined, def: boolean): boolean {
  if (typeof v === "boolean") return v;
  if (v === undefined || v.trim() === "") return def;
  const w = v.trim().toLowerCase();
  if (TRUE_WORDS.includes(w)) return true;
  if (FALSE_WORDS.includes(w)) return false;
  throw new Error(`${name}: ${JSON.stringify(v)} is not a boolean; use ${TRUE_WORDS.join(", ")} or ${FALSE_WORDS.join(", ")}`);
}

/**
 * THE ledger archive directory of a configuration (--ledger-archive / AISA_LEDGER_ARCHIVE):
 * undefined for the embedded engine (it keeps its whole ledger) and for "off"; unset is
 * <dataDir>/ledger-archive.
 */
export function ledgerArchiveDir(cfg: Pick<SidecarConfig, "store" | "dataDir" | "ledgerArchive">): string | undefined {
  if (cfg.store.kind === "level") return undefined;
  const v = cfg.ledgerArchive?.trim();
  if (v === undefined || v === "") return join(cfg.dataDir, "ledger-archive");
  return v.toLowerCase() === "off" ? undefined : v;
}

export function loadConfig(flags: ServeFlags = {}, env: NodeJS.ProcessEnv = process.env): SidecarConfig {
  return {
    dataDir: flags.dataDir ?? env["AISA_DATA_DIR"] ?? "./data",
    store: flags.store !== undefined ? parseStoreUrl("--store", flags.store) : parseStoreUrl("AISA_STORE", env["AISA_STORE"]),
    ledgerArchive: flags.ledgerArchive ?? env["AISA_LEDGER_ARCHIVE"],
    redisTimeoutMs: int("--redis-timeout-ms", flags.redisTimeoutMs ?? env["AISA_REDIS_TIMEOUT_MS"], 50, 1),
    redisLeaseMs: int("--redis-lease-ms", flags.redisLeaseMs ?? env["AISA_REDIS_LEASE_MS"], 1000, 0),
    levelWriteBufferMb: int("--level-write-buffer-mb", flags.levelWriteBufferMb ?? env["AISA_LEVEL_WRITE_BUFFER_MB"], DEFAULT_WRITE_BUFFER_MB, 1, 1024),
    ledgerFilterMb: int("--ledger-filter-mb", flags.ledgerFilterMb ?? env["AISA_LEDGER_FILTER_MB"], DEFAULT_LEDGER_FILTER_MB, 1, 4096),
    redisPrefix: redisPrefix(env["AISA_REDIS_PREFIX"] ?? "aisa:"),
    idempotencyWindowMs: int("AISA_IDEMPOTENCY_WINDOW_HOURS", env["AISA_IDEMPOTENCY_WINDOW_HOURS"], 168, 1) * 3_600_000,
    listen: address("--listen", flags.listen ?? env["AISA_LISTEN"] ?? "127.0.0.1:9191"),
    envoyListen: address("--envoy-listen", flags.envoyListen ?? env["AISA_ENVOY_LISTEN"] ?? "127.0.0.1:9194", true),
    httpListen: address("--http-listen", flags.httpListen ?? env["AISA_HTTP_LISTEN"] ?? "127.0.0.1:9195", true),
    adminListen: address("--admin-listen", flags.adminListen ?? env["AISA_ADMIN_LISTEN"] ?? "127.0.0.1:9192"),
    metricsListen: address("--metrics-listen", flags.metricsListen ?? env["AISA_METRICS_LISTEN"] ?? "127.0.0.1:9193", true),
    xffTrustedHops: int("--xff-trusted-hops", flags.xffTrustedHops ?? env["AISA_XFF_TRUSTED_HOPS"], 0),
    adminToken: env["AISA_ADMIN_TOKEN"] || undefined,
    masterKey: env["AISA_MASTER_KEY"] || undefined,
    quotaPerUnit: int("--quota-per-unit", flags.quotaPerUnit ?? env["AISA_QUOTA_PER_UNIT"], 500_000, 1),
    currency: env["AISA_CURRENCY"] ?? "USD",
    tlsCert: flags.tlsCert ?? env["AISA_TLS_CERT"],
    tlsKey: flags.tlsKey ?? env["AISA_TLS_KEY"],
    adminInsecure: flags.adminInsecure !== undefined ? parseBool("--admin-insecure", flags.adminInsecure, false) : parseBool("AISA_ADMIN_INSECURE", env["AISA_ADMIN_INSECURE"], false),
    logLevel: flags.logLevel ?? env["AISA_LOG_LEVEL"] ?? "info",
    reservationTtlMs: int("AISA_RESERVATION_TTL_MS", env["AISA_RESERVATION_TTL_MS"], 10 * 60_000, 1000),
    maxReservations: int("AISA_MAX_RESERVATIONS", env["AISA_MAX_RESERVATIONS"], 1_000_000, 1),
    denyUnpricedModels: parseBool("AISA_DENY_UNPRICED_MODELS", env["AISA_DENY_UNPRICED_MODELS"], true),
    defaultEstimateUnits: int("AISA_DEFAULT_ESTIMATE_UNITS", env["AISA_DEFAULT_ESTIMATE_UNITS"], 1000),
    inputEstimateTokens: int("AISA_INPUT_ESTIMATE_TOKENS", env["AISA_INPUT_ESTIMATE_TOKENS"], 1000),
    defaultMaxTokens: int("AISA_DEFAULT_MAX_TOKENS", env["AISA_DEFAULT_MAX_TOKENS"], 1024),
    rebuildProjection:
      flags.rebuildProjection !== undefined
        ? parseBool("--rebuild-projection", flags.rebuildProjection, false)
        : parseBool("AISA_REBUILD_PROJECTION", env["AISA_REBUILD_PROJECTION"], false),
    usageRetentionMs: {
      m: int("AISA_USAGE_RETENTION_MINUTE_HOURS", env["AISA_USAGE_RETENTION_MINUTE_HOURS"], 48, 1) * 3_600_000,
      h: int("AISA_USAGE_RETENTION_HOUR_DAYS", env["AISA_USAGE_RETENTION_HOUR_DAYS"], 90, 1) * 86_400_000,
      d: int("AISA_USAGE_RETENTION_DAY_DAYS", env["AISA_USAGE_RETENTION_DAY_DAYS"], 730, 1) * 86_400_000,
    },
    dataInsecure: flags.dataInsecure !== undefined ? parseBool("--data-insecure", flags.dataInsecure, false) : parseBool("AISA_DATA_INSECURE", env["AISA_DATA_INSECURE"], false),
    consumeToken: env["AISA_CONSUME_TOKEN"] || undefined,
    watchStreamsPerToken: int("--watch-streams-per-token", flags.watchStreamsPerToken ?? env["AISA_WATCH_STREAMS_PER_TOKEN"], 8, 1),
    watchStreamsTotal: int("--watch-streams-total", flags.watchStreamsTotal ?? env["AISA_WATCH_STREAMS_TOTAL"], 256, 1),
    dataMaxMessageBytes: int("--data-max-message-bytes", flags.dataMaxMessageBytes ?? env["AISA_DATA_MAX_MESSAGE_BYTES"], 4 * 1024 * 1024, 1024),
    adminMaxMessageBytes: int("--admin-max-message-bytes", flags.adminMaxMessageBytes ?? env["AISA_ADMIN_MAX_MESSAGE_BYTES"], 1024 * 1024, 1024),
    maxBufferedBytes: int("--max-buffered-bytes", flags.maxBufferedBytes ?? env["AISA_MAX_BUFFERED_BYTES"], 64 * 1024 * 1024, 65536),
    idleTimeoutMs: int("--idle-timeout-ms", flags.idleTimeoutMs ?? env["AISA_IDLE_TIMEOUT_MS"], 5 * 60_000, 100),
    receiveTimeoutMs: int("--receive-timeout-ms", flags.receiveTimeoutMs ?? env["AISA_RECEIVE_TIMEOUT_MS"], 30_000, 100),
  };
}
