// The fleet's live bus on Redis Pub/Sub (service/usage/bus.ts): channel `<prefix>live`, a
// sharded channel (SPUBLISH/SSUBSCRIBE, one slot) on Redis Cluster. Two connections of its
// own, apart from the engine's: a subscribed connection can send nothing else, and the
// engine's calls keep their deadlines free of this traffic.
//
// Who publishes: a sidecar subscribes to the channel only while it has a fleet-wide watcher
// (WatchUsage), so the channel's subscriber count says whether anyone watches. Each sidecar
// asks once a second (PUBSUB NUMSUB / SHARDNUMSUB) while nobody does; while someone does it
// publishes its second instead, and PUBLISH's reply (the receivers) answers the same question.
// So: one small command per sidecar per second, idle or not; one message per sidecar per
// second, to each watching sidecar, only while someone watches.
//
// A message is `<sender id> <JSON LiveSecond>`; a receiver drops its own. Pub/Sub is
// at-most-once: what is published while a connection is down is lost (`healthy` says so, and
// the streams carry it as fleet.others_missing). node-redis reconnects and resubscribes.
import { randomUUID } from "node:crypto";
import { createClient, createCluster } from "redis";
import { isLiveSecond, type LiveBus, type LiveSecond } from "../../service/usage/bus.js";
import { parseRedisUrl } from "./conn.js";

const reconnectStrategy = (retries: number): number => Math.min(50 + retries * 50, 1000);

/** A publish or poll unanswered this long counts as failed. */
const CALL_TIMEOUT_MS = 1000;

export interface RedisLiveBusOptions {
  url: string;
  prefix: string;
  onError: (err: unknown) => void;
  /** This sidecar's id on the bus (default: random). */
  id?: string;
}

export class RedisLiveBus implements LiveBus {
  readonly id: string;
  readonly channel: string;
  readonly #cluster: boolean;
  readonly #pub: any;
  readonly #sub: any;
  readonly #onError: (err: unknown) => void;
  readonly #listeners = new Set<(s: LiveSecond, sender: string) => void>();
  /** The channel is subscribed (confirmed): this sidecar counts itself in the replies. */
  #subscribed = false;
  #subscribing = false;
  #others = 0;
  /** The last publish or poll succeeded. */
  #lastOk = true;
  #inFlight = false;
  #closed = false;
  /** Messages and bytes sent and received (stats: tests, the report). */
  readonly stats = { published: 0, publishedBytes: 0, received: 0, polls: 0 };

  constructor(opts: RedisLiveBusOptions) {
    const parsed = parseRedisUrl(opts.url);
    this.#cluster = parsed.cluster;
    this.id = opts.id ?? randomUUID().slice(0, 8);
    this.channel = `${opts.prefix}live`;
    this.#onError = opts.onError;
    const make = () => {
      const socket = { reconnectStrategy, connectTimeout: 2000 };
      const c = parsed.cluster
        ? createCluster({ rootNodes: parsed.urls.map((url) => ({ url })), defaults: { socket, disableOfflineQueue: true } as any })
        : createClient({ url: parsed.urls[0], socket, disableOfflineQueue: true } as any);
      c.on("error", (err: unknown) => this.#onError(err));
      return c;
    };
    this.#pub = make();
    this.#sub = make();
    // A subscribe sent while the connection was down failed: again once it is up (one that
    // succeeded is renewed by node-redis itself on a reconnect).
    this.#sub.on("ready", () => {
      if (this.#listeners.size > 0 && !this.#subscribed && !this.#subscribing) this.#setSubscribed(true);
    });
    // Not awaited: a sidecar serves without the bus; `healthy` is false until both are up.
    for (const c of [this.#pub, this.#sub]) (c.connect() as Promise<unknown>).catch((err) => this.#onError(err));
  }

  get wanted(): boolean {
    return this.#others > 0;
  }

  get healthy(): boolean {
    return !this.#closed && this.#lastOk && this.#pub.isReady && this.#sub.isReady && (this.#listeners.size === 0 || this.#subscribed);
  }

  publish(s: LiveSecond): void {
    const msg = `${this.id} ${JSON.stringify(s)}`;
    this.stats.published++;
    this.stats.publishedBytes += Buffer.byteLength(msg);
    this.#call(this.#cluster ? ["SPUBLISH", this.channel, msg] : ["PUBLISH", this.channel, msg], (n) => Number(n));
  }

  poll(): void {
    this.stats.polls++;
    this.#call(this.#cluster ? ["PUBSUB", "SHARDNUMSUB", this.channel] : ["PUBSUB", "NUMSUB", this.channel], (r) => Number((r as unknown[])[1] ?? 0));
  }

  /** One command at a time; its reply is the channel's subscriber count (this sidecar's included). */
  #call(args: string[], count: (reply: unknown) => number): void {
    if (this.#closed) return;
    // A subscribe that failed (connection down, refused) is retried once a second.
    if (this.#listeners.size > 0 && !this.#subscribed && !this.#subscribing && this.#sub.isReady) this.#setSubscribed(true);
    if (this.#inFlight) return;
    if (!this.#pub.isReady) {
      this.#lastOk = false;
      return;
    }
    this.#inFlight = true;
    const p: Promise<unknown> = this.#cluster ? this.#pub.sendCommand(this.channel, false, args) : this.#pub.sendCommand(args);
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`Redis live bus: no answer in ${CALL_TIMEOUT_MS} ms`)), CALL_TIMEOUT_MS);
    });
    Promise.race([p, timeout]).then(
      (reply) => {
        this.#lastOk = true;
        this.#others = Math.max(0, count(reply) - (this.#subscribed ? 1 : 0));
      },
      (err: unknown) => {
        this.#lastOk = false;
        this.#onError(err);
      },
    ).finally(() => {
      clearTimeout(timer);
      this.#inFlight = false;
    });
    p.catch(() => {}); // settled after the timeout: already reported
  }

  subscribe(fn: (s: LiveSecond, sender: string) => void): () => void {
    this.#listeners.add(fn);
    if (this.#listeners.size === 1) this.#setSubscribed(true);
    return () => {
      if (!this.#listeners.delete(fn)) return;
      if (this.#listeners.size === 0) this.#setSubscribed(false);
    };
  }

  readonly #onMessage = (msg: string): void => {
    const sp = msg.indexOf(" ");
    if (sp <= 0) return;
    const sender = msg.slice(0, sp);
    if (sender === this.id) return;
    let s: unknown;
    try {
      s = JSON.parse(msg.slice(sp + 1));
    } catch {
      return;
    }
    if (!isLiveSecond(s)) return;
    this.stats.received++;
    for (const fn of [...this.#listeners]) {
      try {
        fn(s, sender);
      } catch (err) {
        this.#onError(err);
      }
    }
  };

  #setSubscribed(on: boolean): void {
    if (this.#closed) return;
    const c = this.#sub;
    let p: Promise<unknown>;
    try {
      p = on
        ? this.#cluster
          ? c.sSubscribe(this.channel, this.#onMessage)
          : c.subscribe(this.channel, this.#onMessage)
        : this.#cluster
          ? c.sUnsubscribe(this.channel, this.#onMessage)
          : c.unsubscribe(this.channel, this.#onMessage);
    } catch (err) {
      p = Promise.reject(err);
    }
    if (!on) this.#subscribed = false;
    else this.#subscribing = true;
    p.then(
      () => {
        if (on && this.#listeners.size > 0) this.#subscribed = true;
      },
      (err: unknown) => {
        if (on) this.#subscribed = false;
        this.#onError(err);
      },
    ).finally(() => {
      if (on) this.#subscribing = false;
    });
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    this.#listeners.clear();
    await Promise.all(
      [this.#pub, this.#sub].map(async (c) => {
        try {
          await c.close();
        } catch {
          try {
            c.destroy();
          } catch {
            // already gone
          }
        }
      }),
    );
  }
}

/** The bus of a sidecar on a shared Redis, its connection errors logged at most once per 10 s (Redis down → one line, not one per retry). */
export function openLiveBus(url: string, prefix: string, warn: (err: unknown) => void): RedisLiveBus {
  let last = 0;
  return new RedisLiveBus({
    url,
    prefix,
    onError: (err) => {
      const now = Date.now();
      if (now - last < 10_000) return;
      last = now;
      warn(err);
    },
  });
}
