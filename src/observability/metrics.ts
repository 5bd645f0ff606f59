// Prometheus metrics (prom-client) on their own HTTP port.
import { createServer, type Server } from "node:http";
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from "prom-client";

export class Metrics {
  readonly registry = new Registry();
  readonly checks = new Counter({ name: "aisa_checks_total", help: "Check decisions by verdict and reason", labelNames: ["verdict", "reason"], registers: [this.registry] });
  readonly checkLatency = new Histogram({
    name: "aisa_check_duration_seconds",
    help: "Envoy Check handling time inside the sidecar",
    buckets: [0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.05],
    registers: [this.registry],
  });
  readonly consumeLatency = new Histogram({
    name: "aisa_consume_duration_seconds",
    help: "Consume handling time including the durable group commit",
    buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5],
    registers: [this.registry],
  });
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
  readonly reservationsOpen = new Gauge({ name: "aisa_reservations_open", help: "Open reservations (admitted, not yet consumed)", registers: [this.registry] });
  readonly reservationsCapacity = new Gauge({ name: "aisa_reservations_capacity", help: "Slots the reservation slab holds now (~51 B each; shrinks after a burst expires)", registers: [this.registry] });
  readonly reservationsEvicted = new Counter({
    name: "aisa_reservations_evicted_total",
    help: "Reservations released before their TTL because AISA_MAX_RESERVATIONS were open",
    registers: [this.registry],
  });
  readonly keys = new Gauge({ name: "aisa_keys", help: "Keys in the hot index", registers: [this.registry] });

  constructor() {
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
