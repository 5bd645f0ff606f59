// The process's memory settings, as bin/aisa-authz.js applies them before node starts (see its
// prologue) or the environment overrides them: reported on the "ready" line so that an operator
// (and the benchmark) can see what a sidecar actually runs with.

export interface MemorySettings {
  /** glibc's MALLOC_ARENA_MAX as this process got it; null = unset (glibc: 8 per core). */
  mallocArenaMax: string | null;
  /** V8's --max-semi-space-size (MB) from NODE_OPTIONS and the command line; null = V8's default (16). */
  maxSemiSpaceMb: number | null;
  /** V8's --min-semi-space-size (MB) from the command line (the bin's prologue); null = V8's default (1). */
  minSemiSpaceMb: number | null;
}

const SEMI = /^--max[-_]semi[-_]space[-_]size(?:=(.*))?$/;
const MIN_SEMI = /^--min[-_]semi[-_]space[-_]size(?:=(.*))?$/;

/** The last value of the V8 flag `re` matches among `flags` (`--flag=v` or `--flag v`); null when none. */
function lastFlag(flags: readonly string[], re: RegExp): number | null {
  let out: number | null = null;
  for (let i = 0; i < flags.length; i++) {
    const m = re.exec(flags[i]!);
    if (!m) continue;
    const v = m[1] ?? flags[++i];
    const n = Number(v);
    if (v !== undefined && v !== "" && Number.isFinite(n)) out = n;
  }
  return out;
}

export function memorySettings(env: NodeJS.ProcessEnv = process.env, execArgv: readonly string[] = process.execArgv): MemorySettings {
  // node reads NODE_OPTIONS first, then its command line; for a V8 flag the last one wins.
  const flags = [...(env.NODE_OPTIONS ?? "").split(/\s+/).filter(Boolean), ...execArgv];
  return { mallocArenaMax: env.MALLOC_ARENA_MAX ?? null, maxSemiSpaceMb: lastFlag(flags, SEMI), minSemiSpaceMb: lastFlag(flags, MIN_SEMI) };
}
