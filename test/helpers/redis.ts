// Real redis-server processes for the tests: each on a free loopback port with its own temp dir
// (never a shared system instance), AOF with appendfsync always, stopped by pid (SIGTERM, then
// SIGKILL) and its dir removed. redisCluster() makes a 3-master Redis Cluster of them.
// redis-server comes from Debian's `redis-server` package: missing → the tests skip with the apt
// line (requireRedis), under CI=true they fail.
import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { connect, createServer } from "node:net";
import { removeDir, tempDir } from "./tmp.js";
import { programAvailable, requireProgram } from "./programs.js";

export const REDIS_APT = "redis-server";

/** Skips the calling suite or test when redis-server is missing (fails under CI=true). */
export function requireRedis(ctx: Mocha.Context): void {
  requireProgram(ctx, "redis-server", REDIS_APT);
}

export function redisAvailable(): boolean {
  return programAvailable("redis-server", REDIS_APT);
}

/** A free TCP port on 127.0.0.1 (bound, read, closed). */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.unref();
    s.on("error", reject);
    s.listen(0, "127.0.0.1", () => {
      const port = (s.address() as { port: number }).port;
      s.close(() => resolve(port));
    });
  });
}

export class RedisServer {
  proc: ChildProcess | undefined;
  constructor(
    readonly port: number,
    readonly dir: string,
    readonly extra: readonly string[],
  ) {}

  get pid(): number {
    return this.proc?.pid ?? -1;
  }

  get url(): string {
    return `redis://127.0.0.1:${this.port}`;
  }

  get hostPort(): string {
    return `127.0.0.1:${this.port}`;
  }

  /** Starts (or restarts, on the same port and dir: its AOF is replayed) and waits for PING. */
  async start(): Promise<void> {
    const args = ["--port", String(this.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "yes", "--appendfsync", "always", "--dir", this.dir, "--daemonize", "no", "--protected-mode", "no", ...this.extra];
    const proc = spawn("redis-server", args, { stdio: ["ignore", "ignore", "pipe"] });
    this.proc = proc;
    let stderr = "";
    proc.stderr?.on("data", (d: Buffer) => (stderr += d.toString()));
    for (let i = 0; i < 200; i++) {
      if (proc.exitCode !== null) throw new Error(`redis-server exited (${proc.exitCode}): ${stderr}`);
      if (this.cli(["PING"]).trim() === "PONG") return;
      await new Promise((r) => setTimeout(r, 25));
    }
    throw new Error(`redis-server on ${this.port} did not answer PING: ${stderr}`);
  }

  /** redis-cli against this server (sync); its stdout. */
  cli(args: readonly string[]): string {
    const r = spawnSync("redis-cli", ["-h", "127.0.0.1", "-p", String(this.port), ...args], { encoding: "utf8", timeout: 5000 });
    return r.stdout ?? "";
  }

  /**
   * CLIENT PAUSE <ms> ALL, sent from this process (no redis-cli to start and reap on a busy
   * machine): resolves once Redis has answered, i.e. holds every client from now on for `ms`.
   */
  pauseClients(ms: number): Promise<void> {
    const args = ["CLIENT", "PAUSE", String(ms), "ALL"];
    const cmd = `*${args.length}\r\n${args.map((a) => `$${Buffer.byteLength(a)}\r\n${a}\r\n`).join("")}`;
    return new Promise((resolve, reject) => {
      const sock = connect(this.port, "127.0.0.1", () => sock.write(cmd));
      let reply = "";
      sock.setEncoding("utf8");
      sock.on("data", (d: string) => {
        reply += d;
        if (!reply.includes("\r\n")) return;
        sock.destroy();
        if (reply.startsWith("+OK")) resolve();
        else reject(new Error(`CLIENT PAUSE on ${this.port}: ${reply.trim()}`));
      });
      sock.on("error", reject);
    });
  }

  signal(sig: NodeJS.Signals): void {
    if (this.proc?.pid) process.kill(this.proc.pid, sig);
  }

  /** Stops the process by pid: SIGTERM, then SIGKILL after 3 s. */
  async stop(): Promise<void> {
    const p = this.proc;
    this.proc = undefined;
    if (!p || p.exitCode !== null || p.signalCode !== null) return;
    const exited = new Promise<void>((r) => p.once("exit", () => r()));
    try {
      process.kill(p.pid!, "SIGCONT");
      process.kill(p.pid!, "SIGTERM");
    } catch {
      return;
    }
    const t = setTimeout(() => {
      try {
        process.kill(p.pid!, "SIGKILL");
      } catch {
        // gone
      }
    }, 3000);
    await exited;
    clearTimeout(t);
  }

  /** kill -9 (the AOF stays: start() again replays it). */
  async kill(): Promise<void> {
    const p = this.proc;
    this.proc = undefined;
    if (!p || p.exitCode !== null) return;
    const exited = new Promise<void>((r) => p.once("exit", () => r()));
    process.kill(p.pid!, "SIGKILL");
    await exited;
  }
}

/** One redis-server on a free port with a temp dir, started. */
export async function startRedis(extra: readonly string[] = []): Promise<RedisServer & { cleanup(): Promise<void> }> {
  const dir = await tempDir("aisa-redis-");
  const s = new RedisServer(await freePort(), dir, extra) as RedisServer & { cleanup(): Promise<void> };
  s.cleanup = async () => {
    await s.stop();
    await removeDir(dir);
  };
  try {
    await s.start();
  } catch (err) {
    await s.cleanup();
    throw err;
  }
  return s;
}

export interface RedisCluster {
  nodes: RedisServer[];
  /** redis-cluster://h:p,h:p,h:p */
  url: string;
  cleanup(): Promise<void>;
}

/** A 3-master Redis Cluster (no replicas), each node its own process and dir; waits for cluster_state:ok. */
export async function startRedisCluster(masters = 3): Promise<RedisCluster> {
  const nodes: (RedisServer & { cleanup(): Promise<void> })[] = [];
  const cleanup = async () => {
    await Promise.all(nodes.map((n) => n.cleanup()));
  };
  try {
    for (let i = 0; i < masters; i++) nodes.push(await startRedis(["--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf", "--cluster-node-timeout", "2000"]));
    const r = spawnSync("redis-cli", ["--cluster", "create", ...nodes.map((n) => n.hostPort), "--cluster-replicas", "0", "--cluster-yes"], { encoding: "utf8", timeout: 30_000 });
    if (r.status !== 0) throw new Error(`redis-cli --cluster create failed: ${r.stdout}${r.stderr}`);
    for (let i = 0; i < 400; i++) {
      if (nodes.every((n) => n.cli(["CLUSTER", "INFO"]).includes("cluster_state:ok"))) return { nodes, url: `redis-cluster://${nodes.map((n) => n.hostPort).join(",")}`, cleanup };
      await new Promise((res) => setTimeout(res, 50));
    }
    throw new Error("the Redis Cluster did not reach cluster_state:ok");
  } catch (err) {
    await cleanup();
    throw err;
  }
}

/** A Redis a test runs against: one server, or a cluster (its nodes), with its cleanup. */
export interface RedisTarget {
  url: string;
  nodes: RedisServer[];
  cleanup(): Promise<void>;
}

/** The two shapes a Redis test runs on: one Redis, and a 3-master Redis Cluster the test creates. */
export const REDIS_TARGETS: readonly { name: string; start: () => Promise<RedisTarget> }[] = [
  {
    name: "one Redis",
    start: async () => {
      const s = await startRedis();
      return { url: s.url, nodes: [s], cleanup: () => s.cleanup() };
    },
  },
  { name: "a 3-master Redis Cluster", start: () => startRedisCluster() },
];
