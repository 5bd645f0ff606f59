// The Redis connection of the engine: one node-redis client (redis://, rediss://) or cluster
// client (redis-cluster://h1:p1,h2:p2), every call with a deadline (a call past it fails with
// StoreUnavailableError), and scripts called by SHA (EVALSHA; on NOSCRIPT, EVAL, which loads it).
import { createHash } from "node:crypto";
import { createClient, createCluster } from "redis";
import { StoreUnavailableError } from "../../domain/errors.js";

type Reply = any;

export interface Script {
  src: string;
  sha: string;
}

export function script(src: string): Script {
  return { src, sha: createHash("sha1").update(src).digest("hex") };
}

export interface ParsedUrl {
  cluster: boolean;
  /** redis:// urls of the root nodes (cluster) or the one url. */
  urls: string[];
}

export function parseRedisUrl(url: string): ParsedUrl {
  const m = /^redis-cluster:\/\/(.+)$/.exec(url);
  if (m) {
    const hosts = m[1]!.replace(/\/.*$/, "").split(",").filter(Boolean);
    if (hosts.length === 0) throw new Error(`bad Redis cluster URL: ${url}`);
    return { cluster: true, urls: hosts.map((h) => (h.includes("@") || h.startsWith("redis") ? h : `redis://${h}`)) };
  }
  if (!/^rediss?:\/\/[^/]+/.test(url)) throw new Error(`bad Redis URL (redis://, rediss:// or redis-cluster://): ${url}`);
  return { cluster: false, urls: [url] };
}

const reconnectStrategy = (retries: number): number => Math.min(50 + retries * 50, 500);

/**
 * node-redis gives every command an AbortSignal.timeout of its own (5 s by default): a timer and,
 * when it fires after the answer, a DOMException with a stack — per command. Calls with a deadline
 * have ours (one timer for all: see #due), so the client's is off; calls without one (a blocking
 * feed read, a long scan) keep node-redis's as their watchdog against a silently dead link.
 */
const NO_CLIENT_TIMEOUT = { timeout: 0 };
const WATCHDOG = { timeout: 5000 };

export class RedisConn {
  readonly cluster: boolean;
  readonly #parsed: ParsedUrl;
  #client: any;
  readonly #timeoutMs: number;
  readonly #onError: (err: unknown) => void;
  /** A call failed (connection lost or refused): the store goes NOT_SERVING until a probe succeeds. */
  onFailure: () => void = () => {};
  /**
   * A call missed its deadline: that call fails (Check fails closed, Consume UNAVAILABLE), and the
   * store probes Redis — one slow answer (a GC pause, a busy core) is not an outage, and taking
   * the whole sidecar down and reloading its book for it would turn a blip into one.
   */
  onSlow: () => void = () => {};
  /** Round trips sent (a stat: tests and the bench). */
  calls = 0;
  /**
   * Calls in flight with the default deadline, in deadline order (they all get the same one, so
   * arrival order is deadline order): ONE timer, armed for the oldest, instead of a setTimeout
   * and clearTimeout per call. An answered call is only marked; the timer drops it when it fires.
   */
  #due: Deadline[] = [];
  #dueHead = 0;
  #dueTimer: ReturnType<typeof setTimeout> | undefined;

  constructor(url: string, timeoutMs: number, onError: (err: unknown) => void) {
    this.#parsed = parseRedisUrl(url);
    this.cluster = this.#parsed.cluster;
    this.#timeoutMs = timeoutMs;
    this.#onError = onError;
  }

  #make(): any {
    const socket = { reconnectStrategy, connectTimeout: 2000 };
    const c = this.cluster
      ? createCluster({ rootNodes: this.#parsed.urls.map((url) => ({ url })), defaults: { socket, disableOfflineQueue: true } as any, commandOptions: NO_CLIENT_TIMEOUT } as any)
      : createClient({ url: this.#parsed.urls[0], socket, disableOfflineQueue: true, commandOptions: NO_CLIENT_TIMEOUT } as any);
    c.on("error", (err: unknown) => this.#onError(err));
    return c;
  }

  #abortConnect: ((err: Error) => void) | undefined;

  /** Connects; node-redis retries an unreachable Redis (each failure to onError) until close(). */
  async connect(): Promise<void> {
    this.#client = this.#make();
    const aborted = new Promise<never>((_, reject) => (this.#abortConnect = reject));
    try {
      await Promise.race([this.#client.connect(), aborted]);
    } finally {
      this.#abortConnect = undefined;
    }
  }

  /** A second connection (blocking reads of the change feed). */
  async duplicate(): Promise<RedisConn> {
    const d = new RedisConn(this.cluster ? `redis-cluster://${this.#parsed.urls.map((u) => u.replace(/^redis:\/\//, "")).join(",")}` : this.#parsed.urls[0]!, this.#timeoutMs, this.#onError);
    await d.connect();
    return d;
  }

  /** Closes (gracefully: replies in flight first; `force`: at once, e.g. a blocked XREAD). */
  async close(force = false): Promise<void> {
    this.#abortConnect?.(new StoreUnavailableError(new Error("closed while connecting")));
    const c = this.#client;
    this.#client = undefined;
    if (!c) return;
    try {
      // Not connected (yet): destroy, which also ends a connect() still retrying.
      if (!force && (this.cluster || c.isReady)) await c.close();
      else c.destroy();
    } catch {
      try {
        c.destroy();
      } catch {
        // already gone
      }
    }
  }

  /** One command, routed by `key` in cluster mode, with the per-call deadline (0: none). */
  call(key: string | undefined, args: readonly string[], timeoutMs = this.#timeoutMs): Promise<Reply> {
    const c = this.#client;
    if (!c) return Promise.reject(new StoreUnavailableError(new Error("not connected")));
    this.calls++;
    let p: Promise<Reply>;
    try {
      const opts = timeoutMs > 0 ? undefined : WATCHDOG;
      p = this.cluster ? c.sendCommand(key, false, args, opts) : c.sendCommand(args, opts);
    } catch (err) {
      return Promise.reject(this.#fail(err));
    }
    if (timeoutMs <= 0) return p.catch((err: unknown) => Promise.reject(this.#fail(err)));
    if (timeoutMs !== this.#timeoutMs) {
      // A call with a deadline of its own (a probe, a long admin read): a timer of its own.
      return new Promise((resolve, reject) => {
        const t = setTimeout(() => reject(this.#fail(new Error(`Redis call past its ${timeoutMs} ms deadline`))), timeoutMs);
        p.then(
          (v) => {
            clearTimeout(t);
            resolve(v);
          },
          (err: unknown) => {
            clearTimeout(t);
            reject(this.#fail(err));
          },
        );
      });
    }
    return new Promise((resolve, reject) => {
      const d: Deadline = { at: performance.now() + timeoutMs, done: false, reject };
      this.#due.push(d);
      if (!this.#dueTimer) this.#dueTimer = setTimeout(this.#expire, timeoutMs);
      p.then(
        (v) => {
          if (d.done) return;
          d.done = true;
          resolve(v);
        },
        (err: unknown) => {
          if (d.done) return;
          d.done = true;
          reject(this.#fail(err));
        },
      );
    });
  }

  /** The deadline timer: fails the calls past theirs, drops the answered ones, re-arms for the next. */
  readonly #expire = (): void => {
    this.#dueTimer = undefined;
    const now = performance.now();
    const due = this.#due;
    let i = this.#dueHead;
    for (; i < due.length; i++) {
      const d = due[i]!;
      if (d.done) continue;
      if (d.at > now) break;
      d.done = true;
      d.reject(this.#fail(new Error(`Redis call past its ${this.#timeoutMs} ms deadline`)));
    }
    if (i >= due.length) {
      this.#due = [];
      this.#dueHead = 0;
      return;
    }
    if (i > 1024 && i * 2 > due.length) {
      this.#due = due.slice(i);
      i = 0;
    }
    this.#dueHead = i;
    this.#dueTimer = setTimeout(this.#expire, Math.max(1, Math.ceil(this.#due[i]!.at - now)));
  };

  #fail(err: unknown): Error {
    // A script's own error (a bug, a refusal) is not an outage.
    if (err instanceof Error && /^(ERR|WRONGTYPE|NOSCRIPT)/.test(err.message) && !/deadline/.test(err.message)) return err;
    if (err instanceof Error && /deadline/.test(err.message)) this.onSlow();
    else this.onFailure();
    return err instanceof StoreUnavailableError ? err : new StoreUnavailableError(err);
  }

  /**
   * Loads the scripts on every master (a NOSCRIPT fallback to EVAL would send that call after
   * later ones already on the wire: calls of one connection must keep their order).
   */
  async loadScripts(scripts: readonly Script[]): Promise<void> {
    const c = this.#client;
    const nodes: any[] = this.cluster ? await Promise.all(c.masters.map((m: unknown) => c.nodeClient(m))) : [c];
    await Promise.all(nodes.flatMap((n) => scripts.map((s) => n.sendCommand(["SCRIPT", "LOAD", s.src], WATCHDOG))));
  }

  /** EVALSHA, falling back to EVAL (which caches the script) on NOSCRIPT. */
  eval(s: Script, keys: readonly string[], args: readonly string[], timeoutMs = this.#timeoutMs): Promise<Reply> {
    // One array, filled in place (no spreads: a batch has hundreds of arguments).
    const cmd: string[] = new Array(3 + keys.length + args.length);
    cmd[0] = "EVALSHA";
    cmd[1] = s.sha;
    cmd[2] = String(keys.length);
    let j = 3;
    for (let i = 0; i < keys.length; i++) cmd[j++] = keys[i]!;
    for (let i = 0; i < args.length; i++) cmd[j++] = args[i]!;
    return this.call(keys[0], cmd, timeoutMs).catch((err: unknown) => {
      if (!(err instanceof Error && err.message.startsWith("NOSCRIPT"))) throw err;
      cmd[0] = "EVAL";
      cmd[1] = s.src;
      return this.call(keys[0], cmd, timeoutMs);
    });
  }
}

interface Deadline {
  at: number;
  done: boolean;
  reject: (err: Error) => void;
}
