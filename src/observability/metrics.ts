// Prometheus metrics (prom-client) on their own HTTP port.
import { createServer, type Server } from "node:http";
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from "prom-client";
import { REASONS, type Reason } from "../policy/reasons.js";

const CHECK_BUCKETS = [0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.05];
const REASON_INDEX = new Map<Reason, number>(REASONS.map((r, i) => [r, i]));

const CONSUME_BUCKETS = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5];

/**
 * A no-label histogram's observations kept in a typed array and handed to prom-client when it
 * is scraped (its collect hook). prom-client's observe() hashes the labels and allocates on
 * every call: ~1 µs of every Check's CPU, and ConsumeBatch made one per Consume (bench/README.md).
 * The exported series are the same (test/unit/metrics.test.ts).
 */
class LatencyTally {
  /** Observations per bucket (the last slot: above every bound), their sum. */
  readonly buckets: Float64Array;
  readonly #bucketsReported: Float64Array;
  sum = 0;
  #sumReported = 0;

  constructor(readonly bounds: readonly number[]) {
    this.buckets = new Float64Array(bounds.length + 1);
    this.#bucketsReported = new Float64Array(bounds.length + 1);
  }

  /** `count` observations of `seconds` each. */
  observe(seconds: number, count: number): void {
    const b = this.bounds;
    let i = 0;
    while (i < b.length && seconds > b[i]!) i++;
    this.buckets[i]! += count;
    this.sum += seconds * count;
  }

  /** Adds what was observed since the last flush to the histogram's own (no-label) values. */
  flush(h: Histogram): void {
    // prom-client 15 keeps a no-label histogram's values in hashMap[""] (pinned in package.json;
    // test/unit/metrics.test.ts checks the exported text against plain observe()).
    const v = (h as unknown as { hashMap: Record<string, { bucketValues: Record<number, number>; sum: number; count: number }> }).hashMap[""];
    if (!v) return;
    for (let i = 0; i < this.buckets.length; i++) {
      const d = this.buckets[i]! - this.#bucketsReported[i]!;
      if (d === 0) continue;
      this.#bucketsReported[i] = this.buckets[i]!;
      if (i < this.bounds.length) v.bucketValues[this.bounds[i]!]! += d;
      v.count += d;
    }
    v.sum += this.sum - this.#sumReported;
    this.#sumReported = this.sum;
  }
}

/** Per-Check counts by reason, handed to prom-client when scraped (as LatencyTally). */
class CheckTally {
  readonly byReason = new Float64Array(REASONS.length);
  readonly #reported = new Float64Array(REASONS.length);
  readonly latency = new LatencyTally(CHECK_BUCKETS);

  flushCounts(counter: Counter<"verdict" | "reason">): void {
    for (let i = 0; i < REASONS.length; i++) {
      const d = this.byReason[i]! - this.#reported[i]!;
      if (d === 0) continue;
      this.#reported[i] = this.byReason[i]!;
      const reason = REASONS[i]!;
      counter.inc({ verdict: reason === "ALLOWED" ? "allow" : "deny", reason }, d);
    }
  }
}

export class Metrics {
  readonly registry = new Registry();
  readonly #tally = new CheckTally();
  readonly checks: Counter<"verdict" | "reason">;
  readonly checkLatency: Histogram;

  /** One Check decision (aisa_checks_total{verdict,reason}). */
  countCheck(reason: Reason): void {
    this.#tally.byReason[REASON_INDEX.get(reason)!]!++;
  }

  /** One Check's handling time (aisa_check_duration_seconds). */
  observeCheckLatency(seconds: number): void {
    this.#tally.latency.observe(seconds, 1);
  }

  readonly #consumeTally = new LatencyTally(CONSUME_BUCKETS);
  readonly consumeLatency: Histogram;

  /** `count` Consumes (a ConsumeBatch's items: one observation per Consume) that each took `seconds` (aisa_consume_duration_seconds). */
  observeConsumeLatency(seconds: number, count = 1): void {
    this.#consumeTally.observe(seconds, count);
  }
  readonly envoyRejected = new Counter({
    name: "aisa_envoy_endpoint_rejected_total",
    help: "Requests the Envoy endpoint refused at the gRPC/HTTP2 protocol level (no decision made), by reason",
    labelNames: ["reason"],
    registers: [this.registry],
  });
  readonly refused = new Counter({
    name: "aisa_requests_refused_total",
    help: "gRPC calls the data or admin port refused before their handler ran (no token, too large, buffer budget, receive timeout), by port and reason",
    labelNames: ["port", "reason"],
    registers: [this.registry],
  });
  readonly extProcSettlements = new Counter({
    name: "aisa_extproc_settlements_total",
    help: "Reservations settled by Envoy ext_proc metering, by outcome (charged_usage, charged_estimate, released, app_consumed, duplicate, failed)",
    labelNames: ["outcome"],
    registers: [this.registry],
  });
  readonly storeErrors = new Counter({ name: "aisa_store_errors_total", help: "Store write/read failures", registers: [this.registry] });
  readonly batchSize = new Histogram({
    name: "aisa_group_commit_batch_submissions",
    help: "Submissions per group-committed LevelDB batch",
    buckets: [1, 2, 4, 8, 16, 32, 64, 128, 256, 512],
    registers: [this.registry],
  });
  /** A gauge whose value `read` gives when /metrics is scraped (its collect hook): nothing sets it in between. */
  #gaugeAtScrape(name: string, help: string, read: () => number): void {
    new Gauge({
      name,
      help,
      registers: [this.registry],
      collect() {
        this.set(read());
      },
    });
  }
  /**
   * The store's reservation slab and key count, read when /metrics is scraped (collect hooks, as
   * the ledger filter's: no timer in the sidecar sets them between scrapes). Once per sidecar.
   */
  watchStore(s: { readonly openReservations: number; readonly reservationCapacity: number; readonly reservationsEvicted: number; readonly index: { readonly size: number } }): void {
    this.#gaugeAtScrape("aisa_reservations_open", "Open reservations (admitted, not yet consumed)", () => s.openReservations);
    this.#gaugeAtScrape("aisa_reservations_capacity", "Slots the reservation slab holds now (~51 B each; shrinks after a burst expires)", () => s.reservationCapacity);
    // The store counts evictions from its open; the counter adds what moved since the last scrape.
    let evictedSeen = 0;
    new Counter({
      name: "aisa_reservations_evicted_total",
      help: "Reservations released before their TTL because AISA_MAX_RESERVATIONS were open",
      registers: [this.registry],
      collect() {
        const now = s.reservationsEvicted;
        if (now > evictedSeen) this.inc(now - evictedSeen);
        evictedSeen = now;
      },
    });
    this.#gaugeAtScrape("aisa_keys", "Keys in the hot index", () => s.index.size);
  }
  /**
   * The embedded store's ledger filter (store/level/ledgerFilter.ts), read when scraped: its
   * gauges exist only for a sidecar that calls this (once; not on Redis).
   */
  watchLedgerFilter(f: { readonly answering: boolean; readonly size: number; readonly bytes: number }): void {
    this.#gaugeAtScrape("aisa_ledger_filter_ids", "Request ids in the embedded store's ledger filter", () => f.size);
    this.#gaugeAtScrape("aisa_ledger_filter_bytes", "Memory the ledger filter holds (bound: --ledger-filter-mb)", () => f.bytes);
    this.#gaugeAtScrape(
      "aisa_ledger_filter_answering",
      "1 when a Consume with a new request id skips the ledger read; 0 while the start-up scan runs, or once the filter reached --ledger-filter-mb",
      () => (f.answering ? 1 : 0),
    );
  }
  /** A shared engine's budget-slice lease counters (RedisStore.leaseStats: absolute), read when scraped. */
  leaseStats: (() => Readonly<Record<string, number>>) | undefined;
  readonly #leaseReported = new Map<string, number>();
  /** Adds what `fields` of the lease counters moved since the last scrape, under `label`. */
  #flushLease(counter: Counter<string>, label: string, fields: Readonly<Record<string, string>>): void {
    const stats = this.leaseStats?.();
    if (!stats) return;
    for (const [field, value] of Object.entries(fields)) {
      const d = (stats[field] ?? 0) - (this.#leaseReported.get(field) ?? 0);
      if (d <= 0) continue;
      this.#leaseReported.set(field, stats[field]!);
      counter.inc({ [label]: value }, d);
    }
  }

  constructor() {
    const tally = this.#tally;
    this.checks = new Counter({
      name: "aisa_checks_total",
      help: "Check decisions by verdict and reason",
      labelNames: ["verdict", "reason"],
      registers: [this.registry],
      collect() {
        tally.flushCounts(this);
      },
    });
    this.checkLatency = new Histogram({
      name: "aisa_check_duration_seconds",
      help: "Envoy Check handling time inside the sidecar",
      buckets: CHECK_BUCKETS,
      registers: [this.registry],
      collect() {
        tally.latency.flush(this);
      },
    });
    const consumeTally = this.#consumeTally;
    this.consumeLatency = new Histogram({
      name: "aisa_consume_duration_seconds",
      help: "Consume handling time including the durable group commit",
      buckets: CONSUME_BUCKETS,
      registers: [this.registry],
      collect() {
        consumeTally.flush(this);
      },
    });
    // eslint-disable-next-line @typescript-eslint/no-this-alias
    const self = this;
    new Counter({
      name: "aisa_redis_lease_checks_total",
      help: "Checks on a shared Redis by path: local (admitted from a budget-slice lease, no Redis call) or pass_through (a reserve on Redis)",
      labelNames: ["path"],
      registers: [this.registry],
      collect() {
        self.#flushLease(this, "path", { local: "local", passThrough: "pass_through" });
      },
    });
    new Counter({
      name: "aisa_redis_leases_total",
      help: "Budget-slice lease events on a shared Redis: granted, renewed, returned, recalled, recall_retry (a refused Check retried while a lease was recalled)",
      labelNames: ["event"],
      registers: [this.registry],
      collect() {
        self.#flushLease(this, "event", { granted: "granted", renewed: "renewed", returned: "returned", recalled: "recalled", recallRetries: "recall_retry" });
      },
    });
    collectDefaultMetrics({ register: this.registry, prefix: "aisa_" });
  }

  /** Serves /metrics on addr ("host:port"); resolves to the bound "host:port". */
  async listen(addr: string): Promise<{ address: string; server: Server }> {
    const { host, port } = splitHostPort(addr);
    const server = createServer((req, res) => {
      if (req.url === "/metrics") {
        this.registry.metrics().then(
          (body) => {
            res.writeHead(200, { "content-type": this.registry.contentType });
            res.end(body);
          },
          () => {
            res.writeHead(500);
            res.end();
          },
        );
      } else {
        res.writeHead(404, { "content-type": "text/plain" });
        res.end("see /metrics\n");
      }
    });
    await new Promise<void>((resolve, reject) => {
      server.once("error", reject);
      server.listen(port, host, () => resolve());
    });
    const a = server.address();
    const bound = typeof a === "object" && a ? a.port : port;
    return { address: joinHostPort(host, bound), server };
  }
}

export function splitHostPort(addr: string): { host: string; port: number } {
  const i = addr.lastIndexOf(":");
  if (i < 0) throw new Error(`address ${JSON.stringify(addr)} must be host:port`);
  const host = addr.slice(0, i).replace(/^\[(.*)\]$/, "$1");
  const port = Number(addr.slice(i + 1));
  if (!Number.isInteger(port) || port < 0 || port > 65535) throw new Error(`address ${JSON.stringify(addr)} has an invalid port`);
  return { host, port };
}

export function joinHostPort(host: string, port: number): string {
  return host.includes(":") ? `[${host}]:${port}` : `${host}:${port}`;
}

export function isLoopback(host: string): boolean {
  return host === "localhost" || host === "::1" || /^127\./.test(host);
}
