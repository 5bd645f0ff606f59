// Real proxies (Debian's nginx, caddy, haproxy) on free loopback ports, each from the file in
// deploy/ with only addresses, ports and paths substituted, in a temp prefix; stopped by pid.
// Never the system services. And a small upstream stand-in that records what reaches it.
import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { existsSync } from "node:fs";
import { chmod, mkdir, readFile, writeFile } from "node:fs/promises";
import * as http from "node:http";
import * as net from "node:net";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { requireProgram } from "./programs.js";
import { removeDir, tempDir } from "./tmp.js";

export const DEPLOY = fileURLToPath(new URL("../../deploy/", import.meta.url));

export type ProxyName = "nginx" | "caddy" | "haproxy";

const BINARIES: Record<ProxyName, string[]> = {
  nginx: ["/usr/sbin/nginx", "/usr/bin/nginx"],
  caddy: ["/usr/bin/caddy", "/usr/local/bin/caddy"],
  haproxy: ["/usr/sbin/haproxy", "/usr/bin/haproxy"],
};

/** The proxy's binary, or undefined when it is not installed. */
export function proxyBinary(name: ProxyName): string | undefined {
  for (const p of BINARIES[name]) if (existsSync(p)) return p;
  const r = spawnSync("sh", ["-c", `command -v ${name}`], { encoding: "utf8" });
  return r.status === 0 && r.stdout.trim() ? r.stdout.trim() : undefined;
}

/**
 * Skips the calling suite when the proxy is missing, naming the apt line; under CI=true a
 * missing proxy fails instead (.ci/run installs them).
 */
export function requireProxy(ctx: Mocha.Context, name: ProxyName): string {
  const bin = proxyBinary(name);
  requireProgram(ctx, name, name, bin !== undefined);
  return bin!;
}

/** A free loopback port (bound, then released for the proxy to take). */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.once("error", reject);
    s.listen(0, "127.0.0.1", () => {
      const a = s.address() as net.AddressInfo;
      s.close(() => resolve(a.port));
    });
  });
}

/** Resolves once something accepts TCP connections on the port. */
export async function waitForPort(port: number, child: ChildProcess, output: () => string, timeoutMs = 15_000): Promise<void> {
  const until = Date.now() + timeoutMs;
  for (;;) {
    if (child.exitCode !== null || child.signalCode !== null) throw new Error(`the proxy exited (${child.exitCode ?? child.signalCode}): ${output()}`);
    const ok = await new Promise<boolean>((resolve) => {
      const s = net.connect(port, "127.0.0.1");
      s.once("connect", () => {
        s.destroy();
        resolve(true);
      });
      s.once("error", () => resolve(false));
    });
    if (ok) return;
    if (Date.now() > until) throw new Error(`the proxy did not listen on ${port}: ${output()}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

export interface RunningProxy {
  name: ProxyName;
  port: number;
  url: string;
  child: ChildProcess;
  dir: string;
  output: string[];
  stop(): Promise<void>;
}

/** The deploy/ file with the substitutions the test makes (and only those). */
export async function deployConfig(name: ProxyName, o: { sidecar: string; upstream: string; port: number; dir: string }): Promise<{ file: string; args: string[]; env: NodeJS.ProcessEnv }> {
  if (name === "nginx") {
    const text = (await readFile(join(DEPLOY, "nginx.conf"), "utf8"))
      .replaceAll("127.0.0.1:9195", o.sidecar)
      .replaceAll("127.0.0.1:8000", o.upstream)
      .replace("listen 8080;", `listen 127.0.0.1:${o.port};`)
      .replaceAll("/run/", `${o.dir}/run/`)
      .replaceAll("/var/log/nginx/", `${o.dir}/log/`)
      .replaceAll("/var/lib/nginx/", `${o.dir}/lib/`)
      .replace("worker_processes auto;", "worker_processes 1;");
    for (const d of ["run", "log", "lib"]) await mkdir(join(o.dir, d), { recursive: true });
    const file = join(o.dir, "nginx.conf");
    await writeFile(file, text);
    return { file, args: ["-p", o.dir, "-c", file, "-g", "daemon off;"], env: {} };
  }
  if (name === "caddy") {
    const text = (await readFile(join(DEPLOY, "Caddyfile"), "utf8"))
      .replaceAll("127.0.0.1:9195", o.sidecar)
      .replaceAll("127.0.0.1:8000", o.upstream)
      .replace(":8081 {", `http://127.0.0.1:${o.port} {`);
    const file = join(o.dir, "Caddyfile");
    await writeFile(file, text);
    return { file, args: ["run", "--config", file, "--adapter", "caddyfile"], env: { HOME: o.dir, XDG_DATA_HOME: join(o.dir, "data"), XDG_CONFIG_HOME: join(o.dir, "config") } };
  }
  const lua = join(o.dir, "aisa-authz.lua");
  await writeFile(lua, await readFile(join(DEPLOY, "aisa-authz.lua"), "utf8"));
  const text = (await readFile(join(DEPLOY, "haproxy.cfg"), "utf8"))
    .replaceAll("http://127.0.0.1:9195/auth", `http://${o.sidecar}/auth`)
    .replaceAll("127.0.0.1:8000", o.upstream)
    .replace("bind :8082", `bind 127.0.0.1:${o.port}`)
    .replaceAll("/etc/haproxy/aisa-authz.lua", lua);
  const file = join(o.dir, "haproxy.cfg");
  await writeFile(file, text);
  return { file, args: ["-db", "-f", file], env: {} };
}

/** Starts `name` from its deploy/ file in front of `sidecar` (the HTTP listener) and `upstream`. */
export async function startProxy(name: ProxyName, bin: string, sidecar: string, upstream: string): Promise<RunningProxy> {
  const dir = await tempDir(`aisa-${name}-`);
  await chmod(dir, 0o755); // nginx's workers run as nobody when started as root
  const port = await freePort();
  const cfg = await deployConfig(name, { sidecar, upstream, port, dir });
  const output: string[] = [];
  const child = spawn(bin, cfg.args, { cwd: dir, env: { ...process.env, ...cfg.env }, stdio: ["ignore", "pipe", "pipe"] });
  child.stdout!.on("data", (d: Buffer) => output.push(d.toString("utf8")));
  child.stderr!.on("data", (d: Buffer) => output.push(d.toString("utf8")));
  const stop = async () => {
    if (child.exitCode === null && child.signalCode === null) {
      const exited = new Promise<void>((r) => child.once("exit", () => r()));
      child.kill("SIGTERM");
      const t = setTimeout(() => child.kill("SIGKILL"), 5000);
      await exited;
      clearTimeout(t);
    }
    await removeDir(dir);
  };
  try {
    await waitForPort(port, child, () => output.join(""));
  } catch (err) {
    await stop();
    throw err;
  }
  return { name, port, url: `http://127.0.0.1:${port}`, child, dir, output, stop };
}

export interface Seen {
  method: string;
  url: string;
  headers: http.IncomingHttpHeaders;
  body: string;
}

export interface Upstream {
  address: string;
  seen: Seen[];
  close(): Promise<void>;
}

/**
 * The LLM upstream stand-in: records every request, answers 200 with a minimal completion in
 * the shape of the route's API (OpenAI chat, Anthropic messages), so SDK clients parse it.
 */
export async function startUpstream(): Promise<Upstream> {
  const seen: Seen[] = [];
  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on("data", (c: Buffer) => chunks.push(c));
    req.on("end", () => {
      seen.push({ method: req.method ?? "", url: req.url ?? "", headers: req.headers, body: Buffer.concat(chunks).toString("utf8") });
      const body = (req.url ?? "").startsWith("/v1/messages")
        ? { id: "msg_1", type: "message", role: "assistant", model: "claude-test", content: [{ type: "text", text: "ok" }], stop_reason: "end_turn", stop_sequence: null, usage: { input_tokens: 1, output_tokens: 1 } }
        : { id: "chatcmpl-1", object: "chat.completion", created: 1, model: "gpt-4o-mini", choices: [{ index: 0, message: { role: "assistant", content: "ok" }, finish_reason: "stop" }], usage: { prompt_tokens: 1, completion_tokens: 1, total_tokens: 2 } };
      const text = JSON.stringify(body);
      res.writeHead(200, { "content-type": "application/json", "content-length": Buffer.byteLength(text) });
      res.end(text);
    });
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", () => r()));
  const a = server.address() as net.AddressInfo;
  return {
    address: `127.0.0.1:${a.port}`,
    seen,
    close: () =>
      new Promise<void>((r) => {
        server.closeAllConnections();
        server.close(() => r());
      }),
  };
}
