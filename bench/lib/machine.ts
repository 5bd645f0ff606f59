// The machine a run happened on, and how busy it was (the machine is shared).
import { readFileSync } from "node:fs";
import os from "node:os";
import { execFileSync } from "node:child_process";

export interface MachineInfo {
  nproc: number;
  cpuModel: string;
  memTotalMb: number;
  node: string;
  os: string;
  kernel: string;
  date: string;
  loadgen: string;
  loadavgAtStart: number[];
}

export function machineInfo(loadgen: string): MachineInfo {
  let nproc = os.availableParallelism();
  try {
    nproc = Number(execFileSync("nproc", { encoding: "utf8" }).trim()) || nproc;
  } catch {
    // keep
  }
  let osName = os.type();
  try {
    osName = /PRETTY_NAME="([^"]+)"/.exec(readFileSync("/etc/os-release", "utf8"))?.[1] ?? osName;
  } catch {
    // keep
  }
  return {
    nproc,
    cpuModel: os.cpus()[0]?.model ?? "unknown",
    memTotalMb: Math.round(os.totalmem() / 1024 / 1024),
    node: process.version,
    os: osName,
    kernel: os.release(),
    date: new Date().toISOString(),
    loadgen,
    loadavgAtStart: os.loadavg().map((x) => Math.round(x * 100) / 100),
  };
}

/** Machine-wide CPU counters (jiffies) from /proc/stat. */
export function cpuTotals(): { busy: number; total: number } {
  try {
    const line = readFileSync("/proc/stat", "utf8").split("\n")[0]!;
    const f = line.trim().split(/\s+/).slice(1).map(Number);
    const idle = (f[3] ?? 0) + (f[4] ?? 0);
    const total = f.slice(0, 8).reduce((a, b) => a + b, 0);
    return { busy: total - idle, total };
  } catch {
    return { busy: 0, total: 0 };
  }
}
