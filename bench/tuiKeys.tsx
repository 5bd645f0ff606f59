// A TUI keystroke at 100k keys in process: two builds' App (each checkout's dist/) rendered by
// Ink (ink-testing-library: every commit draws a frame, no throttle) against an in-memory admin
// API with 100k keys, React in its production build; the same keystrokes (move, page, search,
// filter) sent to each in turn, alternating builds per round. Reported per action: the CPU of
// this process from the key written to the changed frame (React render, Ink layout and frame),
// median — without tmux, the terminal and the machine's other load.
// Usage: node --import tsx bench/tuiKeys.tsx BEFORE_ROOT [AFTER_ROOT=.] [ROUNDS=3]   (both built)
import { resolve } from "node:path";
import { pathToFileURL } from "node:url";
import type { ComponentType } from "react";
import { KeyStatus } from "../src/gen/aisa/v1/types.js";
import { FakeAdminApi, makeKey, T0 } from "../test/tui/fakeApi.js";

process.env.NODE_ENV = "production";
const [beforeRoot, afterRoot = ".", roundsArg = "3"] = process.argv.slice(2);
if (!beforeRoot) {
  process.stderr.write("usage: tuiKeys.tsx BEFORE_ROOT [AFTER_ROOT] [ROUNDS]\n");
  process.exit(2);
}
const { createElement } = await import("react");
const { render } = await import("ink-testing-library");
type AppType = ComponentType<Record<string, unknown>>;
const load = async (root: string): Promise<AppType> => ((await import(pathToFileURL(resolve(root, "dist/tui/App.js")).href)) as { App: AppType }).App;
const builds: [string, AppType][] = [["before", await load(beforeRoot)], ["after", await load(afterRoot)]];
const N = 100_000;
const keys = Array.from({ length: N }, (_, i) => makeKey(i, { name: `bench-key-${i}`, status: i % 100 === 0 ? KeyStatus.KEY_STATUS_DISABLED : KeyStatus.KEY_STATUS_ENABLED }));
const ESC = "\u001B";
const script: [string, string][] = [];
for (let i = 0; i < 20; i++) script.push(["move", i < 10 ? "j" : "k"]);
for (let i = 0; i < 10; i++) script.push(["page", i < 5 ? "\u001B[6~" : "\u001B[5~"]);
for (let r = 0; r < 2; r++) {
  script.push(["", "/"]);
  for (const ch of "key-9999") script.push(["search", ch]);
  script.push(["search", "\u007F"], ["search", "\u007F"], ["", "\r"], ["search", ESC]);
}
script.push(["", "f"]);
for (let i = 0; i < 8; i++) script.push(["filter", "\u001B[C"]);
script.push(["", ESC]);

const cpuMs = (): number => {
  const u = process.cpuUsage();
  return (u.user + u.system) / 1000;
};
const tick = (): Promise<void> => new Promise((r) => setImmediate(r));
const spent: Record<string, Record<string, number[]>> = { before: {}, after: {} };
for (let round = 0; round < Number(roundsArg); round++) {
  for (const [label, App] of round % 2 === 0 ? builds : [...builds].reverse()) {
    const api = new FakeAdminApi({ keys });
    const r = render(createElement(App, { api, address: "bench", size: { columns: 120, rows: 40 }, now: () => T0, heartbeatMs: 0 }));
    const frame = (): string => r.lastFrame() ?? "";
    while (!/100,000 of 100,000 keys/.test(frame()) || frame().includes("Loading keys")) await new Promise((res) => setTimeout(res, 20));
    await new Promise((res) => setTimeout(res, 300));
    for (const [action, key] of script) {
      const before = frame();
      const t = cpuMs();
      r.stdin.write(key);
      const until = Date.now() + 5000;
      while (frame() === before && Date.now() < until) await tick();
      const spentMs = cpuMs() - t;
      if (action) (spent[label]![action] ??= []).push(spentMs);
      await new Promise((res) => setTimeout(res, 30));
    }
    r.unmount();
  }
}
const median = (a: number[]): number => [...a].sort((x, y) => x - y)[Math.floor(a.length / 2)] ?? NaN;
process.stdout.write(`| keystroke → changed frame, CPU ms (median; 100k keys, ${roundsArg} rounds) | before | after | after/before |\n|---|---:|---:|---:|\n`);
for (const a of ["move", "page", "search", "filter"]) {
  const b = median(spent.before![a]!);
  const x = median(spent.after![a]!);
  process.stdout.write(`| ${a} (${spent.before![a]!.length} keys) | ${b.toFixed(1)} | ${x.toFixed(1)} | ${(x / b).toFixed(2)} |\n`);
}
process.exit(0);
