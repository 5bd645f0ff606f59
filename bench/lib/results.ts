import type { FleetResult } from "../fleet.js";
import type { FleetStartResult } from "../fleetStart.js";
// The shapes of a bench run's results (bench/run.ts writes them, bench/lib/report.ts renders
// them): a module of their own, so the report does not import the runner.
import type { BulkEnableResult } from "../bulkEnable.js";
import type { ConsumeLoadResult } from "../consumeLoad.js";
import type { ForwardAuthResult } from "../forwardAuth.js";
import type { ExtProcBenchResult } from "../extproc.js";
import type { HotPathResult } from "../hotpath.js";
import type { LookupResult } from "../storeBench.js";
import type { TuiBenchResult } from "../tui.js";
import type { BenchArgs } from "./args.js";
import type { LoadGenName } from "./loadgen.js";
import type { MachineInfo } from "./machine.js";

export type Target = "noop" | "noopRaw" | "floor" | "envoyAllow" | "envoyAllowGrpcJs" | "denyInvalid" | "denyIp" | "denyQuota" | "appCheck";

export interface SaturationRun {
  target: Target;
  round: number;
  reqPerSec: number;
  done: number;
  failed: number;
  errored: number;
  ok: number;
  /** Server CPU time per request (µs): robust to the noise of a shared machine. */
  serverCpuUsPerReq: number;
  serverMainCpuUsPerReq?: number;
  /** Whole-machine CPU busy % during the measured window (other tenants included). */
  machineBusyPct: number;
  meanLatencyMs: number;
  verified: string;
  /** The sidecar's GC pauses in the measured window (--trace-gc); absent for baselines and older results. */
  gc?: GcPauses;
}

/** GC pauses of the sidecar's main thread in a measured window, from its --trace-gc lines. */
export interface GcPauses {
  count: number;
  scavenges: number;
  /** Pause (ms): the 99th percentile and the longest; totalMs = their sum. */
  p99Ms: number;
  maxMs: number;
  totalMs: number;
}

export interface LatencyRun {
  target: Target;
  /** 1: the one-request-in-flight runs (one connection, one stream, closed loop; offeredRps 0), interleaved floor / Check by round; absent: the runs at half the no-op's saturation. */
  inFlight?: 1;
  round?: number;
  offeredRps: number;
  achievedRps: number;
  p50: number;
  p90: number;
  p99: number;
  p999: number;
  max: number;
  count: number;
  machineBusyPct: number;
  verified: string;
  gc?: GcPauses;
}

/** What the sidecar's ready line reports of its memory settings (src/config/runtime.ts). */
export interface SidecarMemorySettings {
  mallocArenaMax: string | null;
  maxSemiSpaceMb: number | null;
  /** Absent in results written before the bin set it. */
  minSemiSpaceMb?: number | null;
}

export interface SizeResult {
  keys: number;
  seedSeconds: number;
  /** The seeded data directory came from the seed cache (seedSeconds is then the original seeding). */
  seedCached: boolean;
  diskMb: { afterSeed: number; afterLoad: number };
  startupMs: number;
  /** The sidecar's memory settings, from its ready line (absent in results from before they were reported). */
  memory?: SidecarMemorySettings;
  rssMb: {
    ready: number;
    afterLoad: number;
    peak: number;
    readyAnon: number;
    readyFile: number;
    afterLoadAnon: number;
    afterLoadFile: number;
    /** V8's and node's own view, scraped from the sidecar's /metrics at the same moments (absent in older results). */
    readyV8?: V8Memory;
    afterLoadV8?: V8Memory;
  };
  lookup: LookupResult;
  keysInUse: { allow: number[]; consume: number };
  saturation: SaturationRun[];
  /** Medians over rounds, req/s. */
  throughput: Partial<Record<Target, number>>;
  /** Medians over rounds of per-round ratios. */
  ratios: {
    checkVsNoop: number;
    /** The same Check served by grpc-js (the data port) / no-op. */
    checkGrpcJsVsNoop?: number;
    checkVsFloor: number;
    noopVsFloor: number;
    /** Check / a grpc-js server that decodes nothing (absent in results from before it was measured). */
    checkVsNoopRaw?: number;
    cpuCheckVsNoopRaw?: number;
    denyInvalidVsAllow: number;
    denyIpVsAllow: number;
    denyQuotaVsAllow: number;
    appCheckVsNoop: number;
    /** The same ratios from server CPU per request (noop µs / check µs). */
    cpuCheckVsNoop: number;
    cpuCheckVsFloor: number;
  };
  cpuUsPerReq: Partial<Record<Target, number>>;
  /** The main thread's share of cpuUsPerReq (absent in results from before it was measured). */
  mainCpuUsPerReq?: Partial<Record<Target, number>>;
  latency: LatencyRun[];
  /** Durable Consume end to end (grpc-js client process → sidecar), and the same client against the no-op server. */
  consume: (ConsumeRun & { server: "sidecar" | "noop" })[];
  sidecarExit: number | string;
}

export interface BenchResult {
  machine: MachineInfo & { loadavgAtEnd: number[] };
  /** In-process cost of each step of an Envoy Check (bench/hotpath.ts), ns per request. */
  hotPath: HotPathResult | null;
  /** ext_proc metering: server CPU per message and per metered request (bench/extproc.ts); absent in older results. */
  extProc?: ExtProcBenchResult | null;
  config: Omit<BenchArgs, "only"> & { only: string[]; loadgen: LoadGenName };
  notes: string[];
  sizes: SizeResult[];
  targets: { name: string; value: string; target: string; pass: boolean | null }[];
  /** HTTP forward-auth and nginx (bench/forwardAuth.ts); absent when the phase did not run. */
  forwardAuth?: ForwardAuthResult | null;
  /** The Terminal UI in tmux (bench/tui.ts); absent when the phase did not run. */
  tui?: TuiBenchResult | null;
  /** Sidecars on Redis beside one on the embedded store (bench/fleet.ts); absent when the phase did not run. */
  fleet?: FleetResult | null;
  /** Start-up (spawn → ready, RSS) on Redis and on LevelDB with the same keys (bench/fleetStart.ts); absent when the phase did not run. */
  fleetStart?: FleetStartResult | null;
  /** JS heap bytes allocated per durable Consume, at the store and through ConsumeService (bench/consumeAlloc.ts, phase consume); absent when not measured. */
  consumeAlloc?: { store: number; service: number; inFlight: number; /** Bytes promoted to old space per Consume at the store (consumeAlloc.ts `promoted`), at promotedInFlight; absent in older results. */ promoted?: number; promotedInFlight?: number } | null;
  /** SetKeysEnabled of K ids at N keys, in calls of 1,000 (bench/bulkEnable.ts, phase admin); absent when not measured. */
  bulkEnable?: BulkEnableResult | null;
  elapsedSeconds: number;
}

export type ConsumeRun = ConsumeLoadResult & { serverCpuUsPerCall: number; machineBusyPct: number };

/** The sidecar's memory as V8 and node count it (prom-client's process metrics), in MB. */
export interface V8Memory {
  /** V8's heap, committed (nodejs_heap_size_total_bytes). */
  heapTotalMb: number;
  /** Of it, in use by objects, garbage not yet collected included (nodejs_heap_size_used_bytes). */
  heapUsedMb: number;
  /** Memory V8 objects hold outside the heap: typed arrays (the key index, the ledger filter), Buffers (nodejs_external_memory_bytes). */
  externalMb: number;
}
