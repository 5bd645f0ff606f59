// aisa-authz serve: runs the sidecar. The server code is imported lazily so
// client commands start fast; environment defaults are applied by runServe.
import type { Command } from "commander";
import { globalsOf, type Io } from "../context.js";
import { parseInt32, parseInt64, UsageError } from "../parse.js";

/** The flags of `serve`, as runServe (src/main.ts) takes them. Unset = runServe's default. */
export interface ServeOptions {
  dataDir?: string;
  store?: string;
  redisTimeoutMs?: number;
  redisLeaseMs?: number;
  levelWriteBufferMb?: number;
  ledgerFilterMb?: number;
  ledgerArchive?: string;
  listen?: string;
  envoyListen?: string;
  httpListen?: string;
  adminListen?: string;
  metricsListen?: string;
  xffTrustedHops?: number;
  tlsCert?: string;
  tlsKey?: string;
  adminInsecure?: boolean | string;
  quotaPerUnit?: number;
  logLevel?: string;
  rebuildProjection?: boolean | string;
  dataInsecure?: boolean | string;
  watchStreamsPerToken?: number;
  watchStreamsTotal?: number;
  dataMaxMessageBytes?: number;
  adminMaxMessageBytes?: number;
  idleTimeoutMs?: number;
  receiveTimeoutMs?: number;
  maxBufferedBytes?: number;
}

/** Integer flags of `serve`: flag name → option, and the least value accepted. */
const INT_FLAGS = [
  ["--watch-streams-per-token", "watchStreamsPerToken", 1],
  ["--watch-streams-total", "watchStreamsTotal", 1],
  ["--data-max-message-bytes", "dataMaxMessageBytes", 1024],
  ["--admin-max-message-bytes", "adminMaxMessageBytes", 1024],
  ["--idle-timeout-ms", "idleTimeoutMs", 100],
  ["--receive-timeout-ms", "receiveTimeoutMs", 100],
  ["--max-buffered-bytes", "maxBufferedBytes", 65536],
  ["--redis-timeout-ms", "redisTimeoutMs", 1],
  ["--redis-lease-ms", "redisLeaseMs", 0],
  ["--level-write-buffer-mb", "levelWriteBufferMb", 1],
  ["--ledger-filter-mb", "ledgerFilterMb", 1],
] as const;

interface ServeFlags {
  data?: string;
  store?: string;
  redisTimeoutMs?: string;
  redisLeaseMs?: string;
  levelWriteBufferMb?: string;
  ledgerFilterMb?: string;
  ledgerArchive?: string;
  listen?: string;
  envoyListen?: string;
  httpListen?: string;
  adminListen?: string;
  metricsListen?: string;
  xffTrustedHops?: string;
  tlsCert?: string;
  tlsKey?: string;
  adminInsecure?: boolean | string;
  quotaPerUnit?: string;
  logLevel?: string;
  rebuildProjection?: boolean | string;
  dataInsecure?: boolean | string;
  watchStreamsPerToken?: string;
  watchStreamsTotal?: string;
  dataMaxMessageBytes?: string;
  adminMaxMessageBytes?: string;
  idleTimeoutMs?: string;
  receiveTimeoutMs?: string;
  maxBufferedBytes?: string;
}

/** Flags → ServeOptions, leaving out what was not given. */
export function serveOptions(f: ServeFlags): ServeOptions {
  if ((f.tlsCert === undefined) !== (f.tlsKey === undefined)) throw new UsageError("--tls-cert and --tls-key must be given together");
  const opts: ServeOptions = {};
  if (f.data !== undefined) opts.dataDir = f.data;
  if (f.store !== undefined) opts.store = f.store;
  if (f.ledgerArchive !== undefined) opts.ledgerArchive = f.ledgerArchive;
  if (f.listen !== undefined) opts.listen = f.listen;
  if (f.envoyListen !== undefined) opts.envoyListen = f.envoyListen;
  if (f.httpListen !== undefined) opts.httpListen = f.httpListen;
  if (f.adminListen !== undefined) opts.adminListen = f.adminListen;
  if (f.metricsListen !== undefined) opts.metricsListen = f.metricsListen;
  if (f.xffTrustedHops !== undefined) {
    const n = parseInt32(f.xffTrustedHops, "--xff-trusted-hops");
    if (n < 0) throw new UsageError(`--xff-trusted-hops: must not be negative (got ${n})`);
    opts.xffTrustedHops = n;
  }
  if (f.tlsCert !== undefined) opts.tlsCert = f.tlsCert;
  if (f.tlsKey !== undefined) opts.tlsKey = f.tlsKey;
  if (f.adminInsecure !== undefined) opts.adminInsecure = f.adminInsecure;
  if (f.quotaPerUnit !== undefined) {
    const n = Number(parseInt64(f.quotaPerUnit, "--quota-per-unit"));
    if (!Number.isSafeInteger(n) || n <= 0) throw new UsageError(`--quota-per-unit: must be a positive integer (got ${f.quotaPerUnit})`);
    opts.quotaPerUnit = n;
  }
  if (f.logLevel !== undefined) opts.logLevel = f.logLevel;
  if (f.rebuildProjection !== undefined) opts.rebuildProjection = f.rebuildProjection;
  if (f.dataInsecure !== undefined) opts.dataInsecure = f.dataInsecure;
  for (const [flag, key, min] of INT_FLAGS) {
    const v = f[key];
    if (v === undefined) continue;
    const n = Number(parseInt64(v, flag));
    if (!Number.isSafeInteger(n) || n < min) throw new UsageError(`${flag}: must be an integer >= ${min} (got ${v})`);
    opts[key] = n;
  }
  return opts;
}

export function serveCommand(program: Command, _io: Io): void {
  program
    .command("serve")
    .description("run the sidecar (data plane, admin API and metrics) on the store in --data")
    .option("--store <url>", 'storage engine: "level" (embedded LevelDB in --data, the default), redis://[user:pass@]host:port[/db], rediss://… (TLS) or redis-cluster://h1:p1,h2:p2 for a fleet (env AISA_STORE)')
    .option("--redis-timeout-ms <ms>", "per-call deadline on Redis: past it Check fails closed and Consume answers UNAVAILABLE (env AISA_REDIS_TIMEOUT_MS; default 50)")
    .option("--redis-lease-ms <ms>", "on Redis: budget-slice leases, their TTL in ms (a busy key's Checks are admitted from a slice of its quota and balance held on Redis, without a round trip; 0 = off, every Check goes to Redis) (env AISA_REDIS_LEASE_MS; default 1000)")
    .option("--level-write-buffer-mb <mb>", "on the embedded store: LevelDB's write buffer in MB, 1 to 1024 (larger: fewer memtable switches under synced writes, a lower Consume tail; costs up to that much RSS, and a longer log replay after a crash) (env AISA_LEVEL_WRITE_BUFFER_MB; default 64)")
    .option("--ledger-filter-mb <mb>", "on the embedded store: memory for the filter of request ids the ledger holds, in MB, 1 to 4096 (~0.5M ids per MB; a Consume whose id it lacks skips the ledger read; past it every Consume reads the ledger, as without it) (env AISA_LEDGER_FILTER_MB; default 32)")
    .option("--ledger-archive <dir>", 'on Redis: where ledger entries older than the idempotency window are archived (files scanLedger still reads); one shared directory for the whole fleet, or "off" to drop them (env AISA_LEDGER_ARCHIVE; default <data>/ledger-archive)')
    .option("--listen <addr>", "data-plane gRPC address (env AISA_LISTEN; default 127.0.0.1:9191)")
    .option("--envoy-listen <addr>", 'Envoy ext_authz endpoint, node:http2 (env AISA_ENVOY_LISTEN; default 127.0.0.1:9194; "" disables)')
    .option("--http-listen <addr>", 'HTTP forward-auth for nginx/Caddy/HAProxy and the JSON API (env AISA_HTTP_LISTEN; default 127.0.0.1:9195; "" disables)')
    .option("--admin-listen <addr>", "admin gRPC address (env AISA_ADMIN_LISTEN; default 127.0.0.1:9192)")
    .option("--metrics-listen <addr>", "Prometheus metrics address (env AISA_METRICS_LISTEN)")
    .option("--xff-trusted-hops <n>", "trusted proxies in X-Forwarded-For (env AISA_XFF_TRUSTED_HOPS)")
    .option("--tls-cert <file>", "TLS certificate (PEM) for the gRPC ports")
    .option("--tls-key <file>", "TLS private key (PEM)")
    .option("--admin-insecure [bool]", "allow the admin API on a non-loopback address without TLS (env AISA_ADMIN_INSECURE; 1|true|yes|on, 0|false|no|off)")
    .option("--data-insecure [bool]", "allow the data port and the Envoy endpoint on a non-loopback address without TLS (env AISA_DATA_INSECURE; 1|true|yes|on, 0|false|no|off)")
    .option("--watch-streams-per-token <n>", "open WatchUsage streams per admin token (env AISA_WATCH_STREAMS_PER_TOKEN; default 8)")
    .option("--watch-streams-total <n>", "open WatchUsage streams in total (env AISA_WATCH_STREAMS_TOTAL; default 256)")
    .option("--data-max-message-bytes <n>", "largest request on the data port and the Envoy endpoint (env AISA_DATA_MAX_MESSAGE_BYTES; default 4194304)")
    .option("--admin-max-message-bytes <n>", "largest request on the admin port (env AISA_ADMIN_MAX_MESSAGE_BYTES; default 1048576)")
    .option("--idle-timeout-ms <ms>", "close connections with no open call after this (env AISA_IDLE_TIMEOUT_MS; default 300000)")
    .option("--max-buffered-bytes <n>", "bytes of incomplete requests one port holds across all calls (env AISA_MAX_BUFFERED_BYTES; default 67108864)")
    .option("--receive-timeout-ms <ms>", "a request must arrive in full within this (env AISA_RECEIVE_TIMEOUT_MS; default 30000)")
    .option("--quota-per-unit <n>", "quota units per currency unit (env AISA_QUOTA_PER_UNIT; default 500000)")
    .option("--log-level <level>", "trace|debug|info|warn|error (env AISA_LOG_LEVEL; default info)")
    .option("--rebuild-projection [bool]", "repair: rebuild the key index's projection from the key records on start (env AISA_REBUILD_PROJECTION=1)")
    .action(async (_f: unknown, cmd: Command) => {
      const opts = serveOptions(globalsOf(cmd) as ServeFlags);
      const { runServe } = await import("../../main.js");
      await runServe(opts);
    });
}
