// The search and filter step of a TUI keystroke at 100k keys, in process: the KeyFilterCache
// and indexKeys of two builds (each checkout's dist/) run the same keystroke script in turn,
// interleaved, timed by CPU (process.cpuUsage) — what bench/tui.ts's tmux figures include for
// search and filter, without the terminal, Ink or the machine's other load.
// Script: "/" then "key-9999" typed one character at a time, two backspaces, esc; then the
// status filter enabled → disabled → expired → any (every 100th key disabled).
// Usage: node bench/tuiFilter.ts BEFORE_ROOT [AFTER_ROOT=.] [ROUNDS=12]   (both built: node scripts/build.mjs)
import { resolve } from "node:path";
import { pathToFileURL } from "node:url";

type Mod = typeof import("../tui/state/keyIndex.js");
const [beforeRoot, afterRoot = ".", roundsArg = "12"] = process.argv.slice(2);
if (!beforeRoot) {
  process.stderr.write("usage: tuiFilter.ts BEFORE_ROOT [AFTER_ROOT] [ROUNDS]\n");
  process.exit(2);
}
const load = (root: string): Promise<Mod> => import(pathToFileURL(resolve(root, "dist/tui/state/keyIndex.js")).href) as Promise<Mod>;
const builds: [string, Mod][] = [["before", await load(beforeRoot)], ["after", await load(afterRoot)]];
const rounds = Number(roundsArg);
const N = 100_000;
const T0 = Date.UTC(2026, 10, 27);
const keys = Array.from({ length: N }, (_, i) => ({
  id: `key_${String(i).padStart(20, "0")}`,
  name: `bench-key-${i}`,
  accountId: "default",
  group: "default",
  status: i % 100 === 0 ? 2 : 1,
  expiresAt: undefined,
  effectiveModels: [],
  modelsRestricted: false,
})) as unknown as Parameters<Mod["indexKeys"]>[0];
const NO = builds[0]![1].NO_FILTERS;
type Filters = typeof NO;
const KINDS = ["first char", "next char", "backspace", "esc", "filter: a status", "filter: back to any"] as const;
const steps: [(typeof KINDS)[number], string, Filters][] = [];
const typed = "key-9999";
for (let i = 1; i <= typed.length; i++) steps.push([i === 1 ? "first char" : "next char", typed.slice(0, i), NO]);
steps.push(["backspace", typed.slice(0, -1), NO], ["backspace", typed.slice(0, -2), NO], ["esc", "", NO]);
for (const st of ["enabled", "disabled", "expired"] as const) steps.push(["filter: a status", "", { ...NO, status: st }]);
steps.push(["filter: back to any", "", NO]);

const cpuMs = (): number => {
  const u = process.cpuUsage();
  return (u.user + u.system) / 1000;
};
const spent: Record<string, Record<string, number[]>> = {};
for (const [label] of builds) spent[label] = Object.fromEntries(KINDS.map((k) => [k, []]));
for (let r = 0; r < rounds; r++) {
  for (const [label, m] of r % 2 === 0 ? builds : [...builds].reverse()) {
    const index = m.indexKeys(keys);
    const cache = new m.KeyFilterCache();
    cache.filter(index, "", NO, T0);
    for (const [kind, q, f] of steps) {
      // A new filters object per change, as the reducer makes one.
      const filters = f === NO ? NO : { ...f };
      const t = cpuMs();
      cache.filter(index, q, filters, T0);
      spent[label]![kind]!.push(cpuMs() - t);
    }
  }
}
const median = (a: number[]): number => [...a].sort((x, y) => x - y)[Math.floor(a.length / 2)] ?? NaN;
process.stdout.write(`| step (100k keys, ${rounds} rounds) | before: median ms | after: median ms |\n|---|---:|---:|\n`);
for (const k of KINDS) process.stdout.write(`| ${k} | ${median(spent.before![k]!).toFixed(2)} | ${median(spent.after![k]!).toFixed(2)} |\n`);
