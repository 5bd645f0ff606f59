// Fleet start-up (issue 15 item 1): a sidecar whose Redis is not there yet retries with a clear log
// line and serves nothing until Redis answers, then becomes ready by itself; SIGTERM while it
// waits stops it cleanly (exit 0). A real `aisa-authz serve` and a real redis-server.
import { expect } from "chai";
import { spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { BIN, stopProcess, waitExit } from "../helpers/proc.js";
import { freePort, requireRedis, RedisServer } from "../helpers/redis.js";
import { removeDir, tempDir } from "../helpers/tmp.js";

function serve(dir: string, port: number) {
  const child = spawn(
    process.execPath,
    // A Redis call deadline a loaded test machine meets (the default 50 ms is not what this tests).
    [BIN, "serve", "--data", dir, "--store", `redis://127.0.0.1:${port}`, "--redis-timeout-ms", "2000", "--listen", "127.0.0.1:0", "--envoy-listen", "127.0.0.1:0", "--http-listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0", "--metrics-listen", "127.0.0.1:0"],
    { env: { ...process.env, AISA_MASTER_KEY: randomBytes(32).toString("hex"), AISA_REDIS_PREFIX: "start:" }, stdio: ["ignore", "pipe", "pipe"] },
  );
  const lines: string[] = [];
  let buf = "";
  child.stdout!.on("data", (d: Buffer) => {
    buf += d.toString("utf8");
    let i: number;
    while ((i = buf.indexOf("\n")) >= 0) {
      lines.push(buf.slice(0, i));
      buf = buf.slice(i + 1);
    }
  });
  child.stderr!.resume();
  const until = async (what: RegExp, ms: number) => {
    for (const t0 = Date.now(); Date.now() - t0 < ms; await new Promise((r) => setTimeout(r, 50))) if (lines.some((l) => what.test(l))) return;
    throw new Error(`no log line ${what} in ${ms} ms: ${lines.join("\n").slice(-2000)}`);
  };
  return { child, lines, until };
}

describe("fleet start-up: Redis not there yet", function () {
  this.timeout(120_000);
  const dirs: string[] = [];
  const cleanups: (() => Promise<unknown>)[] = [];
  before(function () {
    requireRedis(this);
  });
  after(async () => {
    for (const c of cleanups.reverse()) await c();
    for (const d of dirs) await removeDir(d);
  });

  it("retries with a log line, listens on nothing meanwhile, and becomes ready once Redis answers", async () => {
    const port = await freePort();
    const dir = await tempDir();
    dirs.push(dir);
    const s = serve(dir, port);
    cleanups.push(() => stopProcess(s.child));
    await s.until(/Redis unreachable: retrying; nothing is served until it answers/, 20_000);
    expect(s.lines.some((l) => l.includes('"msg":"ready"'))).to.equal(false);
    const line = JSON.parse(s.lines.find((l) => l.includes("Redis unreachable"))!);
    expect(line.store).to.equal(`redis://127.0.0.1:${port}`);
    // Redis arrives on that port: the sidecar connects, loads and reports ready by itself.
    const rdir = await tempDir("aisa-redis-");
    dirs.push(rdir);
    const redis = new RedisServer(port, rdir, []);
    cleanups.push(() => redis.stop());
    await redis.start();
    await s.until(/"msg":"ready"/, 30_000);
    const ready = JSON.parse(s.lines.find((l) => l.includes('"msg":"ready"'))!);
    expect(ready.index).to.equal("redis");
    expect(s.lines.some((l) => l.includes("connected to Redis"))).to.equal(true);
    expect(await stopProcess(s.child)).to.equal(0);
  });

  it("SIGTERM while waiting for Redis: exits 0, never ready", async () => {
    const port = await freePort();
    const dir = await tempDir();
    dirs.push(dir);
    const s = serve(dir, port);
    cleanups.push(() => stopProcess(s.child));
    await s.until(/Redis unreachable/, 20_000);
    s.child.kill("SIGTERM");
    expect(await waitExit(s.child, 15_000)).to.equal(0);
    expect(s.lines.some((l) => l.includes('"msg":"stopped before ready"'))).to.equal(true);
    expect(s.lines.some((l) => l.includes('"msg":"ready"'))).to.equal(false);
  });
});
