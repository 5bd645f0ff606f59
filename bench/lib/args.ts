// `npm run bench -- [flags]`
import { tmpdir } from "node:os";
import { join } from "node:path";

export interface BenchArgs {
  sizes: number[];
  durationS: number;
  warmupS: number;
  /** Unmeasured load on a freshly started sidecar before the first measured run. */
  sidecarWarmupS: number;
  /** The sidecar's reservation TTL (AISA_RESERVATION_TTL_MS): stands in for Consume settling each reservation. */
  reservationTtlS: number;
  rounds: number;
  /** h2load processes per run = distinct keys in use. */
  procs: number;
  /** h2load processes (one connection each) offering the fixed load of the latency runs. */
  latencyProcs: number;
  /** Connections per h2load process. */
  conns: number;
  /** Concurrent streams per connection (saturation). */
  streams: number;
  consumeConcurrency: number[];
  /** Store-level Consume: calls in flight (one run each). */
  storeConsumeConcurrency: number[];
  /** Consumes per ConsumeBatch call (0 = no batch runs). */
  consumeBatch: number;
  /** ConsumeBatch calls in flight (one run each). */
  consumeBatchInFlight: number[];
  /** Open-loop ConsumeBatch (consumeBatchOpen's shape): calls/s, "sidecar/2" or "noop/2" (half a closed-loop saturation measured in the run), 0 = none. */
  consumeBatchRate: number | "sidecar/2" | "noop/2";
  /** The open-loop ConsumeBatch shape: Consumes per call, calls in flight at most (issue 18's "32 × 4"). */
  consumeBatchOpen: { batch: number; inFlight: number };
  /** Request ids of every Consume phase: a counter (adjacent keys; comparable with earlier runs) or random (UUIDs, as Envoy's x-request-id). */
  consumeIds: "counter" | "random";
  consumeDurationS: number;
  consumeKeys: number;
  lookups: number;
  hotPathIterations: number;
  /** Directory of cached seeded data dirs ("" = always seed afresh). */
  seedCache: string;
  smoke: boolean;
  outDir: string;
  name: string;
  profile: boolean;
  only: Set<string>;
  updateReadme: boolean;
  /** Re-render the reports (and README section) from an existing results JSON; no measuring. */
  fromJson: string;
  keep: boolean;
  loadgen: "auto" | "h2load" | "ghz";
  /** Key counts of the TUI phase (bench/tui.ts). */
  tuiSizes: number[];
  /** Measured keystrokes per action in the TUI phase. */
  tuiSamples: number;
  /** Keys of the fleetstart phase (bench/fleetStart.ts): seeded into LevelDB and Redis, start-up measured on each. */
  fleetStartKeys: number;
}

export const PHASES = ["saturation", "latency", "consume", "forwardauth", "extproc", "tui", "admin", "fleet", "fleetstart"] as const;

export const USAGE = `usage: npm run bench -- [flags]
  --sizes 10000,100000,1000000   key counts to measure (growth)
  --duration 10s                 measured duration of each load run (also 500ms, 1m)
  --warmup 2s                    warm-up before each measured run
  --sidecar-warmup 10s           unmeasured load on a freshly started sidecar (JIT, and the
                                 GC work left by loading the keys) before the first run
  --reservation-ttl 10s          the sidecar's AISA_RESERVATION_TTL_MS: the load sends Checks
                                 without Consume, so this stands in for Consume settling each
                                 reservation after a ~10 s model call (the default, 600s, lets
                                 open reservations pile up: Check rate × 600 s of them)
  --rounds 2                     interleaved rounds of the saturation runs (medians reported)
                                 and of the one-request-in-flight runs (floor, Check)
  --procs 8                      h2load processes per run (= distinct keys in use)
  --latency-procs 2              h2load processes offering the latency runs' fixed load: every
                                 extra process on 2 vCPUs adds scheduling delay to the figures
  --conns 1                      connections per h2load process
  --streams 16                   concurrent streams per connection at saturation
  --consume-concurrency 64,128   Consume calls in flight (one run each)
  --store-consume-concurrency 32,64,128
                                 store-level Consume calls in flight (one run each)
  --consume-batch 32             Consumes per ConsumeBatch call (0: no ConsumeBatch runs)
  --consume-batch-in-flight 1,2,4
                                 ConsumeBatch calls in flight (one run each)
  --consume-batch-rate sidecar/2 open-loop ConsumeBatch (--consume-batch-open's shape), lean client:
                                 calls/s, or sidecar/2 | noop/2 (half that server's closed-loop
                                 saturation at the same shape, this run); 0 = none
  --consume-batch-open 32x4      the open loop's shape: Consumes per call x calls in flight at most
  --consume-ids counter          request ids of the Consume phases: counter (adjacent, as runs before
                                 had) or random (UUIDs, as Envoy's x-request-id; LevelDB inserts and
                                 compacts them at more cost: bench/README.md, "Stop 34")
  --consume-duration 10s         measured duration of each Consume run (default: --duration)
  --lookups 2000000              draws in the lookup microbenchmark
  --seed-cache DIR               reuse seeded data dirs (default: $TMPDIR/aisa-bench-seed-cache;
                                 keyed by the seeder, record types and import path)
  --no-seed-cache                always seed afresh
  --only saturation,latency,consume,forwardauth,extproc,tui,admin,fleet,fleetstart
                                 phases to run (default: all; forwardauth: HTTP forward-auth and
                                 nginx, bench/forwardAuth.ts; extproc: the ext_proc metering cost,
                                 bench/extproc.ts, once per run; tui: the Terminal UI in tmux,
                                 keystroke → repainted screen, bench/tui.ts, once per run; admin:
                                 SetKeysEnabled of many ids, bench/bulkEnable.ts; fleet: sidecars
                                 on Redis beside one on the embedded store, bench/fleet.ts;
                                 fleetstart: spawn → ready and RSS of a sidecar on Redis and
                                 on LevelDB holding the same keys, bench/fleetStart.ts)
  --fleet-start-keys 1000000     keys of the fleetstart phase (1,000 accounts + one of 10 %)
  --tui-sizes 10000,100000       key counts of the tui phase
  --tui-samples 40               measured keystrokes per action (move, page, search, filter)
  --profile                      run the sidecar with --cpu-prof (profiles under <out>/profiles/)
  --out bench/results            output directory
  --name latest                  output file stem (<out>/<name>.json, .md)
  --update-readme                replace the README's "## Benchmarks" section with these figures
  --from-json FILE               re-render <out>/<name>.md (and with --update-readme the README
                                 section) from an earlier results JSON, measuring nothing
  --keep                         keep the seeded data directories
  --loadgen auto|h2load|ghz      load generator (auto: ghz when on PATH, else h2load)
  --smoke                        tiny sizes, 0.5 s load runs and 1 s Consume runs (the test
                                 suite runs this)`;

export function parseDuration(s: string): number {
  const m = /^(\d+(?:\.\d+)?)(ms|s|m)?$/.exec(s.trim());
  if (!m) throw new Error(`bad duration ${JSON.stringify(s)} (use 10s, 500ms, 1m)`);
  const v = Number(m[1]);
  return m[2] === "ms" ? v / 1000 : m[2] === "m" ? v * 60 : v;
}

function parseList(s: string): number[] {
  return s.split(",").map((x) => {
    const t = x.trim().toLowerCase();
    const mult = t.endsWith("m") ? 1_000_000 : t.endsWith("k") ? 1000 : 1;
    const n = Number(mult === 1 ? t : t.slice(0, -1)) * mult;
    if (!Number.isInteger(n) || n <= 0) throw new Error(`bad number ${JSON.stringify(x)}`);
    return n;
  });
}

export function parseArgs(argv: string[]): BenchArgs {
  const smoke = argv.includes("--smoke");
  const a: BenchArgs = smoke
    ? {
        sizes: [1000],
        durationS: 0.5,
        warmupS: 0.25,
        sidecarWarmupS: 0.5,
        reservationTtlS: 10,
        rounds: 1,
        procs: 2,
        latencyProcs: 2,
        conns: 1,
        streams: 8,
        consumeConcurrency: [16],
        storeConsumeConcurrency: [16],
        consumeBatch: 8,
        consumeBatchInFlight: [2],
        consumeBatchRate: "sidecar/2",
        consumeBatchOpen: { batch: 8, inFlight: 2 },
        consumeIds: "counter",
        consumeDurationS: 1,
        consumeKeys: 8,
        lookups: 20_000,
        hotPathIterations: 20_000,
        seedCache: "",
        smoke,
        outDir: "bench/results",
        name: "smoke",
        profile: false,
        only: new Set(PHASES),
        updateReadme: false,
        fromJson: "",
        keep: false,
        loadgen: "auto",
        tuiSizes: [1000],
        tuiSamples: 4,
        fleetStartKeys: 5000,
      }
    : {
        sizes: [10_000, 100_000, 1_000_000],
        durationS: 10,
        warmupS: 2,
        sidecarWarmupS: 10,
        reservationTtlS: 10,
        rounds: 2,
        procs: 8,
        latencyProcs: 2,
        conns: 1,
        streams: 16,
        consumeConcurrency: [64, 128],
        storeConsumeConcurrency: [32, 64, 128],
        consumeBatch: 32,
        consumeBatchInFlight: [1, 2, 4],
        consumeBatchRate: "sidecar/2",
        consumeBatchOpen: { batch: 32, inFlight: 4 },
        consumeIds: "counter",
        consumeDurationS: NaN,
        consumeKeys: 64,
        lookups: 2_000_000,
        hotPathIterations: 200_000,
        seedCache: join(tmpdir(), "aisa-bench-seed-cache"),
        smoke,
        outDir: "bench/results",
        name: "latest",
        profile: false,
        only: new Set(PHASES),
        updateReadme: false,
        fromJson: "",
        keep: false,
        loadgen: "auto",
        tuiSizes: [10_000, 100_000],
        tuiSamples: 40,
        fleetStartKeys: 1_000_000,
      };
  for (let i = 0; i < argv.length; i++) {
    const flag = argv[i]!;
    const val = () => {
      const v = argv[++i];
      if (v === undefined) throw new Error(`${flag} needs a value`);
      return v;
    };
    switch (flag) {
      case "--smoke":
        break;
      case "--sizes":
        a.sizes = parseList(val());
        break;
      case "--duration":
        a.durationS = parseDuration(val());
        break;
      case "--warmup":
        a.warmupS = parseDuration(val());
        break;
      case "--sidecar-warmup":
        a.sidecarWarmupS = parseDuration(val());
        break;
      case "--reservation-ttl":
        a.reservationTtlS = parseDuration(val());
        break;
      case "--rounds":
        a.rounds = parseList(val())[0]!;
        break;
      case "--procs":
        a.procs = parseList(val())[0]!;
        break;
      case "--latency-procs":
        a.latencyProcs = parseList(val())[0]!;
        break;
      case "--conns":
        a.conns = parseList(val())[0]!;
        break;
      case "--streams":
        a.streams = parseList(val())[0]!;
        break;
      case "--consume-concurrency":
        a.consumeConcurrency = parseList(val());
        break;
      case "--store-consume-concurrency":
        a.storeConsumeConcurrency = parseList(val());
        break;
      case "--consume-batch":
        a.consumeBatch = parseList(val())[0]!;
        break;
      case "--consume-batch-in-flight":
        a.consumeBatchInFlight = parseList(val());
        break;
      case "--consume-batch-rate": {
        const v = val();
        if (v === "sidecar/2" || v === "noop/2") a.consumeBatchRate = v;
        else if (/^\d+(\.\d+)?$/.test(v)) a.consumeBatchRate = Number(v);
        else throw new Error(`--consume-batch-rate: ${JSON.stringify(v)} is not calls per second, sidecar/2, noop/2 or 0`);
        break;
      }
      case "--consume-batch-open": {
        const v = val();
        const m = /^(\d{1,4})x(\d{1,4})$/.exec(v);
        if (!m || Number(m[1]) < 1 || Number(m[1]) > 1000 || Number(m[2]) < 1) throw new Error(`--consume-batch-open: ${JSON.stringify(v)} is not CONSUMESxINFLIGHT (1..1000 x ≥ 1), e.g. 32x4`);
        a.consumeBatchOpen = { batch: Number(m[1]), inFlight: Number(m[2]) };
        break;
      }
      case "--consume-ids": {
        const v = val();
        if (v !== "counter" && v !== "random") throw new Error(`--consume-ids: ${JSON.stringify(v)} is not counter or random`);
        a.consumeIds = v;
        break;
      }
      case "--consume-duration":
        a.consumeDurationS = parseDuration(val());
        break;
      case "--lookups":
        a.lookups = parseList(val())[0]!;
        break;
      case "--seed-cache":
        a.seedCache = val();
        break;
      case "--no-seed-cache":
        a.seedCache = "";
        break;
      case "--only":
        a.only = new Set(val().split(",").map((s) => s.trim()));
        for (const p of a.only) if (!(PHASES as readonly string[]).includes(p)) throw new Error(`unknown phase ${p}`);
        break;
      case "--tui-sizes":
        a.tuiSizes = parseList(val());
        break;
      case "--fleet-start-keys":
        a.fleetStartKeys = parseList(val())[0]!;
        break;
      case "--tui-samples":
        a.tuiSamples = parseList(val())[0]!;
        break;
      case "--profile":
        a.profile = true;
        break;
      case "--out":
        a.outDir = val();
        break;
      case "--name":
        a.name = val();
        break;
      case "--update-readme":
        a.updateReadme = true;
        break;
      case "--from-json":
        a.fromJson = val();
        break;
      case "--keep":
        a.keep = true;
        break;
      case "--loadgen": {
        const v = val();
        if (v !== "auto" && v !== "h2load" && v !== "ghz") throw new Error("--loadgen auto|h2load|ghz");
        a.loadgen = v;
        break;
      }
      case "-h":
      case "--help":
        process.stdout.write(USAGE + "\n");
        process.exit(0);
        break;
      default:
        throw new Error(`unknown flag ${flag}\n${USAGE}`);
    }
  }
  if (!Number.isFinite(a.consumeDurationS)) a.consumeDurationS = a.durationS;
  return a;
}
