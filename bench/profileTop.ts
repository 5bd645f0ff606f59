// Summarises a V8 .cpuprofile (from `node --cpu-prof`): self time by function, optionally
// within a time window, plus a per-second timeline of busy time to pick the window.
// Usage: node --import tsx bench/profileTop.ts FILE.cpuprofile [--from S] [--to S] [--top N] [--timeline] [--inclusive]
import { readFileSync } from "node:fs";

interface Node {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
  children?: number[];
}

const argv = process.argv.slice(2);
const file = argv[0];
if (!file) {
  process.stderr.write("usage: profileTop.ts FILE.cpuprofile [--from S] [--to S] [--top N] [--timeline] [--inclusive]\n");
  process.exit(2);
}
const opt = (name: string, def: number) => {
  const i = argv.indexOf(name);
  return i >= 0 ? Number(argv[i + 1]) : def;
};
const from = opt("--from", 0);
const to = opt("--to", Infinity);
const top = opt("--top", 40);
const p = JSON.parse(readFileSync(file, "utf8")) as { nodes: Node[]; samples: number[]; timeDeltas: number[]; startTime: number };
const byId = new Map(p.nodes.map((n) => [n.id, n]));
const parent = new Map<number, number>();
for (const n of p.nodes) for (const c of n.children ?? []) parent.set(c, n.id);
const label = (n: Node) => {
  const cf = n.callFrame;
  return `${cf.functionName || "(anonymous)"} ${cf.url.split("/").slice(-2).join("/")}:${cf.lineNumber + 1}`;
};
const self = new Map<string, number>();
const incl = new Map<string, number>();
const timeline = new Map<number, { busy: number; total: number }>();
let t = 0;
let total = 0;
let busy = 0;
for (let i = 0; i < p.samples.length; i++) {
  const dt = p.timeDeltas[i] ?? 0;
  t += dt;
  const sec = t / 1e6;
  const n = byId.get(p.samples[i]!)!;
  const idle = n.callFrame.functionName === "(idle)";
  const s = Math.floor(sec);
  const tl = timeline.get(s) ?? { busy: 0, total: 0 };
  tl.total += dt;
  if (!idle) tl.busy += dt;
  timeline.set(s, tl);
  if (sec < from || sec > to) continue;
  total += dt;
  if (idle) continue;
  busy += dt;
  self.set(label(n), (self.get(label(n)) ?? 0) + dt);
  if (argv.includes("--inclusive")) {
    const seen = new Set<string>();
    for (let id: number | undefined = n.id; id !== undefined; id = parent.get(id)) {
      const l = label(byId.get(id)!);
      if (seen.has(l)) continue;
      seen.add(l);
      incl.set(l, (incl.get(l) ?? 0) + dt);
    }
  }
}
if (argv.includes("--timeline")) {
  for (const [s, v] of [...timeline].sort((a, b) => a[0] - b[0])) process.stdout.write(`${String(s).padStart(4)} s  busy ${((100 * v.busy) / Math.max(1, v.total)).toFixed(0).padStart(3)}%\n`);
}
process.stdout.write(`window ${from}–${to} s: ${(total / 1e3).toFixed(0)} ms, busy ${(busy / 1e3).toFixed(0)} ms\n`);
const print = (m: Map<string, number>, title: string) => {
  process.stdout.write(`-- ${title}\n`);
  for (const [k, v] of [...m].sort((a, b) => b[1] - a[1]).slice(0, top)) {
    process.stdout.write(`${(v / 1e3).toFixed(1).padStart(9)} ms ${((100 * v) / Math.max(1, busy)).toFixed(1).padStart(5)}%  ${k}\n`);
  }
};
print(self, "self time (% of busy)");
if (argv.includes("--inclusive")) print(incl, "inclusive time (% of busy)");
