// Summarises a sampling heap profile (consumeAlloc.ts's ALLOC_PROFILE or PROMOTED_PROFILE file):
// bytes by allocating function and its two callers, largest first, optionally per operation.
// Usage: node --import tsx bench/heapProfileTop.ts FILE [--per N] [--top K]
import { readFileSync } from "node:fs";

interface HeapNode {
  callFrame: { functionName: string; url: string; lineNumber: number };
  selfSize: number;
  children: HeapNode[];
}

const argv = process.argv.slice(2);
const file = argv[0];
if (!file) {
  process.stderr.write("usage: heapProfileTop.ts FILE [--per N] [--top K]\n");
  process.exit(2);
}
const opt = (name: string, def: number) => {
  const i = argv.indexOf(name);
  return i >= 0 ? Number(argv[i + 1]) : def;
};
const per = opt("--per", 1);
const top = opt("--top", 20);
const head = (JSON.parse(readFileSync(file, "utf8")) as { head: HeapNode }).head;
const bySite = new Map<string, number>();
let total = 0;
const walk = (n: HeapNode, stack: string[]) => {
  const name = `${n.callFrame.functionName || "(anonymous)"} ${n.callFrame.url.split("/").slice(-2).join("/")}:${n.callFrame.lineNumber + 1}`;
  if (n.selfSize) {
    const site = [name, ...stack.slice(-2).reverse()].join(" ← ");
    bySite.set(site, (bySite.get(site) ?? 0) + n.selfSize);
    total += n.selfSize;
  }
  for (const c of n.children) walk(c, [...stack, name]);
};
walk(head, []);
process.stdout.write(`total ${(total / per).toFixed(1)} B${per > 1 ? ` per op (÷ ${per})` : ""}\n`);
for (const [site, bytes] of [...bySite].sort((a, b) => b[1] - a[1]).slice(0, top)) process.stdout.write(`${(bytes / per).toFixed(1).padStart(9)}  ${site}\n`);
