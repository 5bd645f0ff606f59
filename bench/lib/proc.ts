// Child processes of the bench: every one is tracked by pid and stopped by pid (never by
// name), with a time bound on every wait.
import { spawn, type ChildProcess, type SpawnOptions } from "node:child_process";
import { readFileSync } from "node:fs";

const live = new Set<ChildProcess>();

export interface Spawned {
  child: ChildProcess;
  pid: number;
  stdout: string[];
  stderr: string[];
  /** Resolves with the exit code (or signal name) when the process exits. */
  exited: Promise<number | string>;
}

export function spawnTracked(cmd: string, args: string[], opts: SpawnOptions = {}): Spawned {
  const child = spawn(cmd, args, { stdio: ["ignore", "pipe", "pipe"], ...opts });
  if (child.pid === undefined) throw new Error(`cannot spawn ${cmd}`);
  live.add(child);
  const stdout: string[] = [];
  const stderr: string[] = [];
  let outBuf = "";
  child.stdout?.on("data", (d: Buffer) => {
    outBuf += d.toString("utf8");
    let i: number;
    while ((i = outBuf.indexOf("\n")) >= 0) {
      stdout.push(outBuf.slice(0, i));
      outBuf = outBuf.slice(i + 1);
    }
  });
  child.stderr?.on("data", (d: Buffer) => {
    stderr.push(d.toString("utf8"));
    if (stderr.length > 200) stderr.splice(0, 100);
  });
  const exited = new Promise<number | string>((resolve) => {
    child.once("exit", (code, signal) => {
      // "exit" can come before the pipes have given their last bytes (an h2load summary cut
      // mid-line was seen once): settle when they close, or 2 s on (a grandchild may hold them).
      const finish = () => {
        if (outBuf) stdout.push(outBuf);
        outBuf = "";
        live.delete(child);
        resolve(code ?? signal ?? -1);
      };
      const t = setTimeout(finish, 2000);
      child.once("close", () => {
        clearTimeout(t);
        finish();
      });
    });
  });
  return { child, pid: child.pid, stdout, stderr, exited };
}

/** Waits for a JSON line with msg === "ready" on stdout; returns it and the ms since `t0`. */
export function waitReady(p: Spawned, timeoutMs: number, t0 = performance.now()): Promise<{ line: any; ms: number }> {
  return new Promise((resolve, reject) => {
    let seen = 0;
    const poll = setInterval(() => {
      for (; seen < p.stdout.length; seen++) {
        const line = p.stdout[seen]!;
        if (!line.includes('"ready"')) continue;
        try {
          const j = JSON.parse(line);
          if (j.msg === "ready") {
            done();
            resolve({ line: j, ms: performance.now() - t0 });
            return;
          }
        } catch {
          // not JSON
        }
      }
    }, 2);
    const timer = setTimeout(() => {
      done();
      void stop(p, 1000);
      reject(new Error(`pid ${p.pid} not ready in ${timeoutMs} ms; stderr: ${p.stderr.join("").slice(-2000)}`));
    }, timeoutMs);
    void p.exited.then((code) => {
      done();
      reject(new Error(`pid ${p.pid} exited (${code}) before ready; stderr: ${p.stderr.join("").slice(-2000)}`));
    });
    function done() {
      clearInterval(poll);
      clearTimeout(timer);
    }
  });
}

/** SIGTERM the pid, then SIGKILL after `graceMs`. */
export async function stop(p: Spawned, graceMs = 10_000): Promise<number | string> {
  if (p.child.exitCode !== null || p.child.signalCode !== null) return p.child.exitCode ?? p.child.signalCode!;
  try {
    process.kill(p.pid, "SIGTERM");
  } catch {
    // already gone
  }
  const t = new Promise<"timeout">((r) => setTimeout(() => r("timeout"), graceMs).unref());
  const r = await Promise.race([p.exited, t]);
  if (r !== "timeout") return r;
  try {
    process.kill(p.pid, "SIGKILL");
  } catch {
    // already gone
  }
  return p.exited;
}

/** Waits for exit with a bound; SIGKILLs the pid when the bound passes. */
export async function waitExit(p: Spawned, timeoutMs: number): Promise<number | string> {
  const t = new Promise<"timeout">((r) => setTimeout(() => r("timeout"), timeoutMs).unref());
  const r = await Promise.race([p.exited, t]);
  if (r !== "timeout") return r;
  try {
    process.kill(p.pid, "SIGKILL");
  } catch {
    // already gone
  }
  await p.exited;
  throw new Error(`pid ${p.pid} (${p.child.spawnargs.slice(0, 3).join(" ")}) ran past ${timeoutMs} ms and was killed`);
}

/** Kills every child still running (by pid). Used on errors and signals. */
export function killAllTracked(): void {
  for (const c of live) {
    try {
      if (c.pid !== undefined) process.kill(c.pid, "SIGKILL");
    } catch {
      // gone
    }
  }
}

/**
 * VmRSS / VmHWM of a pid in MB (from /proc/PID/status), with VmRSS split into anonymous
 * memory and file-backed pages (LevelDB maps its table files), or null.
 */
export function memoryOf(pid: number): { rssMb: number; hwmMb: number; anonMb: number; fileMb: number } | null {
  try {
    const s = readFileSync(`/proc/${pid}/status`, "utf8");
    const kb = (name: string) => Number(new RegExp(`^${name}:\\s+(\\d+) kB`, "m").exec(s)?.[1] ?? NaN);
    return { rssMb: kb("VmRSS") / 1024, hwmMb: kb("VmHWM") / 1024, anonMb: kb("RssAnon") / 1024, fileMb: kb("RssFile") / 1024 };
  } catch {
    return null;
  }
}

/** CPU time (user + system, seconds) a pid has used so far, from /proc/PID/stat. */
export function cpuSecondsOf(pid: number, mainThreadOnly = false): number | null {
  try {
    // /proc/PID/stat counts every thread (V8's GC helpers, libuv's pool); the main thread's
    // own task has the process's pid as its tid.
    const s = readFileSync(mainThreadOnly ? `/proc/${pid}/task/${pid}/stat` : `/proc/${pid}/stat`, "utf8");
    const fields = s.slice(s.lastIndexOf(")") + 2).split(" ");
    return (Number(fields[11]) + Number(fields[12])) / 100; // utime, stime in clock ticks (USER_HZ = 100)
  } catch {
    return null;
  }
}
