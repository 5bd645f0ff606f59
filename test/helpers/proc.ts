// Real processes: the `aisa-authz` bin as a child, stopped by pid.
import { spawn, type ChildProcess } from "node:child_process";
import { fileURLToPath } from "node:url";
import { delimiter, dirname } from "node:path";

export const BIN = fileURLToPath(new URL("../../bin/aisa-authz.js", import.meta.url));

export interface ServeProcess {
  child: ChildProcess;
  dataAddress: string;
  /** The dedicated Envoy ext_authz endpoint. */
  envoyAddress: string;
  /** The HTTP forward-auth and JSON API listener. */
  httpAddress: string;
  adminAddress: string;
  metricsAddress: string;
  /** The parsed "ready" log line. */
  ready: Record<string, unknown>;
  stdout: string[];
  stderr: string[];
}

/**
 * Starts `aisa-authz serve` on loopback ephemeral ports and waits for its "ready" log line.
 * `asProgram`: run the bin as a program (through its shell prologue, as `npm start` does, with
 * this node first on PATH) instead of as `node bin/aisa-authz.js`.
 */
export function startServe(dataDir: string, extraArgs: string[] = [], env: NodeJS.ProcessEnv = {}, asProgram = false): Promise<ServeProcess> {
  const args = ["serve", "--data", dataDir, "--listen", "127.0.0.1:0", "--envoy-listen", "127.0.0.1:0", "--http-listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0", "--metrics-listen", "127.0.0.1:0", ...extraArgs];
  const child = asProgram
    ? spawn(BIN, args, { env: { ...process.env, PATH: `${dirname(process.execPath)}${delimiter}${process.env.PATH ?? ""}`, ...env }, stdio: ["ignore", "pipe", "pipe"] })
    : spawn(process.execPath, [BIN, ...args], { env: { ...process.env, ...env }, stdio: ["ignore", "pipe", "pipe"] });
  const stdout: string[] = [];
  const stderr: string[] = [];
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill("SIGKILL");
      reject(new Error(`serve did not become ready in 20 s; stderr: ${stderr.join("")}`));
    }, 20_000);
    let buf = "";
    child.stdout!.on("data", (d: Buffer) => {
      buf += d.toString("utf8");
      let i: number;
      while ((i = buf.indexOf("\n")) >= 0) {
        const line = buf.slice(0, i);
        buf = buf.slice(i + 1);
        stdout.push(line);
        try {
          const j = JSON.parse(line);
          if (j.msg === "ready") {
            clearTimeout(timer);
            resolve({ child, dataAddress: j.dataAddress, envoyAddress: j.envoyAddress, httpAddress: j.httpAddress, adminAddress: j.adminAddress, metricsAddress: j.metricsAddress, ready: j, stdout, stderr });
          }
        } catch {
          // not JSON
        }
      }
    });
    child.stderr!.on("data", (d: Buffer) => stderr.push(d.toString("utf8")));
    child.once("exit", (code) => {
      clearTimeout(timer);
      reject(Object.assign(new Error(`serve exited with ${code} before ready: ${stderr.join("")}`), { exitCode: code, stderr: stderr.join("") }));
    });
  });
}

/** Waits for a child to exit; returns its exit code (or signal name). */
export function waitExit(child: ChildProcess, timeoutMs = 15_000): Promise<number | string> {
  if (child.exitCode !== null) return Promise.resolve(child.exitCode);
  if (child.signalCode !== null) return Promise.resolve(child.signalCode);
  return new Promise((resolve, reject) => {
    const t = setTimeout(() => reject(new Error("child did not exit in time")), timeoutMs);
    child.once("exit", (code, signal) => {
      clearTimeout(t);
      resolve(code ?? signal ?? -1);
    });
  });
}

/** SIGTERM, then SIGKILL after `graceMs`. */
export async function stopProcess(child: ChildProcess, graceMs = 5000): Promise<number | string> {
  if (child.exitCode !== null || child.signalCode !== null) return child.exitCode ?? child.signalCode!;
  child.kill("SIGTERM");
  try {
    return await waitExit(child, graceMs);
  } catch {
    child.kill("SIGKILL");
    return waitExit(child);
  }
}

/** What a finished bin run printed. */
export interface BinRun {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Runs the bin to its exit with a clean AISA_* environment (plus `env`). */
export function runBin(args: string[], env: NodeJS.ProcessEnv = {}): Promise<BinRun> {
  const base = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith("AISA_")));
  const child = spawn(process.execPath, [BIN, ...args], { env: { ...base, ...env }, stdio: ["ignore", "pipe", "pipe"] });
  let stdout = "";
  let stderr = "";
  child.stdout.on("data", (d: Buffer) => (stdout += d.toString("utf8")));
  child.stderr.on("data", (d: Buffer) => (stderr += d.toString("utf8")));
  return new Promise((resolve, reject) => {
    child.once("error", reject);
    child.once("close", (code) => resolve({ code, stdout, stderr }));
  });
}
