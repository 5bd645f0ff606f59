// Shared by the end-to-end tests: a real `aisa-authz serve` child process on
// ephemeral loopback ports, and a tmux session on a private socket.
import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { Metadata, type ServiceError } from "@grpc/grpc-js";

export const ROOT = fileURLToPath(new URL("../../", import.meta.url));
export const BIN = join(ROOT, "bin/aisa-authz.js");

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/**
 * The exit status a tmux pane's `cmd; echo $? > file` wrote, or null if none within `ms`. The
 * shell creates the file before it writes the status, so an empty file means "not yet".
 */
export async function waitExitStatus(file: string, ms = 20_000): Promise<string | null> {
  const until = Date.now() + ms;
  for (;;) {
    const code = await readFile(file, "utf8").then(
      (x) => x.trim() || null,
      () => null,
    );
    if (code !== null || Date.now() >= until) return code;
    await sleep(100);
  }
}

export function hasTmux(): boolean {
  const r = spawnSync("tmux", ["-V"], { encoding: "utf8" });
  return r.status === 0;
}

export interface Sidecar {
  child: ChildProcess;
  adminAddress: string;
  dataAddress: string;
  stderr: string[];
}

interface ReadyLine {
  msg?: string;
  adminAddress?: string;
  dataAddress?: string;
}

/** `aisa-authz serve` on ephemeral loopback ports; resolves on its "ready" JSON log line. */
export function startSidecar(dataDir: string): Promise<Sidecar> {
  const child = spawn(
    process.execPath,
    [BIN, "serve", "--data", dataDir, "--listen", "127.0.0.1:0", "--envoy-listen", "127.0.0.1:0", "--http-listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0", "--metrics-listen", "127.0.0.1:0"],
    { cwd: ROOT, stdio: ["ignore", "pipe", "pipe"] },
  );
  const stderr: string[] = [];
  child.stderr?.on("data", (d: Buffer) => stderr.push(d.toString("utf8")));
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`sidecar not ready after 30 s; stderr: ${stderr.join("")}`)), 30_000);
    let buf = "";
    child.stdout?.on("data", (d: Buffer) => {
      buf += d.toString("utf8");
      let i: number;
      while ((i = buf.indexOf("\n")) >= 0) {
        const line = buf.slice(0, i);
        buf = buf.slice(i + 1);
        let j: ReadyLine | null;
        try {
          j = JSON.parse(line) as ReadyLine | null;
        } catch {
          continue;
        }
        if (j?.msg === "ready" && j.adminAddress && j.dataAddress) {
          clearTimeout(timer);
          resolve({ child, adminAddress: j.adminAddress, dataAddress: j.dataAddress, stderr });
        }
      }
    });
    child.once("exit", (code) => {
      clearTimeout(timer);
      reject(new Error(`sidecar exited (${code}) before ready: ${stderr.join("")}`));
    });
  });
}

export async function stopChild(child: ChildProcess | undefined): Promise<void> {
  if (!child?.pid || child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise<void>((r) => child.once("exit", () => r()));
  process.kill(child.pid, "SIGTERM");
  const timeout = sleep(5000).then(() => "timeout");
  if ((await Promise.race([exited.then(() => "exited"), timeout])) === "timeout" && child.pid) process.kill(child.pid, "SIGKILL");
}

export class Tmux {
  constructor(private readonly socket: string) {}

  run(...args: string[]): string {
    const r = spawnSync("tmux", ["-S", this.socket, "-f", "/dev/null", ...args], { encoding: "utf8" });
    if (r.status !== 0) throw new Error(`tmux ${args.join(" ")}: ${r.stderr}`);
    return r.stdout;
  }

  capture(): string {
    return this.run("capture-pane", "-p", "-t", "tui");
  }

  /** One key per send-keys (tmux would deliver "j j" as one chunk). Named keys: Enter, Escape, Tab, C-s… */
  async key(name: string): Promise<void> {
    this.run("send-keys", "-t", "tui", name);
    await sleep(120);
  }

  /** Literal characters, still one per send-keys. */
  async type(text: string): Promise<void> {
    for (const c of text) {
      this.run("send-keys", "-t", "tui", "-l", c);
      await sleep(60);
    }
  }

  async waitFor(pred: (pane: string) => boolean, what: string, ms = 20_000): Promise<string> {
    const until = Date.now() + ms;
    let pane = "";
    while (Date.now() < until) {
      pane = this.capture();
      if (pred(pane)) return pane;
      await sleep(100);
    }
    throw new Error(`timed out waiting for ${what}; pane:\n${pane}`);
  }
}

export function unary<Res>(fn: (md: Metadata, cb: (err: ServiceError | null, res: Res) => void) => void, token?: string): Promise<Res> {
  const md = new Metadata();
  if (token) md.set("authorization", `Bearer ${token}`);
  return new Promise((resolve, reject) => fn(md, (err, res) => (err ? reject(err) : resolve(res))));
}
