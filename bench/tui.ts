// The Terminal UI at 10k and 100k keys: keystroke → repainted screen, measured the way an
// operator sees it. A real sidecar (the bin) seeded with N keys (bench/seed.ts; every 100th key
// then disabled through the admin API, so the status filter narrows), the real `aisa-authz tui`
// in tmux (private socket, 120×40), driven through ONE tmux control-mode client (`tmux -C`):
// `send-keys`, then `capture-pane -p` after every %output notification of the pane until the
// expected screen is there (the selected row's name, "n of m keys", the search line, the filter
// tag). Latency = send-keys written → the matching capture answered (an upper bound; a capture
// is one round trip to the tmux server, well under a millisecond). Keys go one at a time with an
// idle gap, as typed; every expectation is computed here from ListKeys, not read from the TUI.
//
// Actions: move (j / k), page (PgDn / PgUp), search (each character typed after `/`, and
// backspace), filter (→ on the Status row of the `f` menu: any → enabled → disabled → expired;
// the seeded keys are all enabled and unexpired, so the list is all, all, none, none).
// First paint: tmux new-session → the first frame, → the first screen of rows (the newest key
// selected; the TUI shows the first page while the rest loads), and → the table with all N keys.
//
// Usage: node --import tsx bench/tui.ts '{"sizes":[10000,100000],"samples":40}'
//   "variants": [{"label":"before","root":"/path/to/old/checkout"}, {"label":"after","root":"."}]
//   runs each variant's TUI (its bin) against the same sidecar, one after the other (list a
//   variant again under another label, e.g. before1/after1/before2/after2, to alternate them);
//   "profileDir": "DIR" runs the TUI under --cpu-prof (one profile per variant and size).
//   "nodeOptions": more NODE_OPTIONS for the TUI (all variants; a variant may add its own), e.g.
//   "--import file:///abs/bench/gcLog.mjs?out=/tmp/gc.json" to log its collections (the run's
//   `sentAtMs` says when each keystroke was sent, to line them up).
// The TUI is started as users start it: the bin as a program (its shell prologue's settings).
// Prints one JSON line (TuiBenchResult) on stdout.
import { execFileSync, spawn, type ChildProcess } from "node:child_process";
import { createHash } from "node:crypto";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, renameSync, rmSync, writeFileSync } from "node:fs";
import { readFile } from "node:fs/promises";
import os from "node:os";
import { delimiter, dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { LevelStore } from "../src/store/level/levelStore.js";
import { spawnTracked, stop, waitExit, waitReady, memoryOf, cpuSecondsOf, type Spawned } from "./lib/proc.js";
import { summarize, type LatencySummary } from "./lib/stats.js";

const ROOT = fileURLToPath(new URL("..", import.meta.url));
const BIN = join(ROOT, "bin/aisa-authz.js");

export const TUI_ACTIONS = ["move", "page", "search", "filter"] as const;
export type TuiAction = (typeof TUI_ACTIONS)[number];

export interface TuiBenchSpec {
  sizes: number[];
  /** Measured keystrokes per action (and per variant). */
  samples: number;
  /** Idle time between two keystrokes (ms). */
  gapMs?: number;
  columns?: number;
  rows?: number;
  /** TUIs to measure (default: this checkout's); `nodeOptions` are added to the spec's for that variant. */
  variants?: { label: string; root: string; nodeOptions?: string }[];
  /** Seeded data dirs are cached here ("" = always seed). */
  seedCache?: string;
  /** How long the TUI may take to load every key (ms). */
  loadTimeoutMs?: number;
  /** Run the TUI under --cpu-prof, profiles in DIR/<label>-<N>/. */
  profileDir?: string;
  /** More NODE_OPTIONS for the TUI (e.g. "--import /path/to/gcLog.mjs"). */
  nodeOptions?: string;
}

export interface TuiRun {
  variant: string;
  keys: number;
  /** tmux new-session → the first frame on the pane (ms). */
  firstFrameMs: number;
  /** tmux new-session → the first screen of rows (the newest key selected), loaded or not (ms). */
  firstRowsMs: number;
  /** tmux new-session → the table with all N keys ("N of N keys"). */
  firstPaintMs: number;
  /** Keystroke → repainted screen (ms), per action. */
  latency: Record<TuiAction, LatencySummary>;
  /** Raw samples (ms), per action. */
  samplesMs: Record<TuiAction, number[]>;
  /** When each measured keystroke was sent (epoch ms; to line up with a GC log), per action. */
  sentAtMs: Record<TuiAction, number[]>;
  /**
   * The TUI's CPU per keystroke (ms), per action: the process's CPU time (every thread) over
   * the action's keystrokes, divided by their count — steadier than wall time on a shared
   * machine (it includes what else the TUI did meanwhile, e.g. the 1 s live-usage tick).
   */
  cpuMsPerKey: Record<TuiAction, number>;
  /** Keystrokes whose screen did not appear within the bound. */
  timeouts: number;
  /** The TUI process: CPU seconds over the whole session, RSS at the end (MB). */
  cpuSeconds: number;
  rssMb: number;
}

export interface TuiBenchResult {
  columns: number;
  rows: number;
  gapMs: number;
  samples: number;
  runs: TuiRun[];
  tmux: string;
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
const fmt = (n: number): string => n.toLocaleString("en-US");

/** One tmux control-mode client: commands answered in order, %output counted. */
class TmuxControl {
  readonly #child: ChildProcess;
  #buf = "";
  #block: string[] | null = null;
  #blockOurs = false;
  readonly #pending: ((lines: string[]) => void)[] = [];
  #outputs = 0;
  #waiters: (() => void)[] = [];
  readonly exited: Promise<void>;

  constructor(socket: string, session: string) {
    this.#child = spawn("tmux", ["-S", socket, "-f", "/dev/null", "-C", "attach", "-t", session], { stdio: ["pipe", "pipe", "ignore"] });
    this.exited = new Promise((r) => this.#child.once("exit", () => r()));
    this.#child.stdout!.on("data", (d: Buffer) => {
      this.#buf += d.toString("utf8");
      let i: number;
      while ((i = this.#buf.indexOf("\n")) >= 0) {
        this.#line(this.#buf.slice(0, i));
        this.#buf = this.#buf.slice(i + 1);
      }
    });
  }

  #line(line: string): void {
    if (this.#block) {
      if (line.startsWith("%end ") || line.startsWith("%error ")) {
        const lines = this.#block;
        this.#block = null;
        if (this.#blockOurs) this.#pending.shift()?.(lines);
      } else this.#block.push(line);
      return;
    }
    if (line.startsWith("%begin ")) {
      this.#block = [];
      // "%begin time number flags": flags 1 = a command of this client (not the attach itself).
      this.#blockOurs = line.trim().endsWith(" 1");
    } else if (line.startsWith("%output ")) {
      this.#outputs++;
      const w = this.#waiters;
      this.#waiters = [];
      for (const f of w) f();
    }
  }

  get outputs(): number {
    return this.#outputs;
  }

  cmd(line: string): Promise<string[]> {
    return new Promise((resolve) => {
      this.#pending.push(resolve);
      this.#child.stdin!.write(line + "\n");
    });
  }

  /** Resolves when an %output arrives after `seen` outputs, or after `ms`. */
  nextOutput(seen: number, ms: number): Promise<void> {
    if (this.#outputs > seen) return Promise.resolve();
    return new Promise((resolve) => {
      const t = setTimeout(resolve, ms);
      this.#waiters.push(() => {
        clearTimeout(t);
        resolve();
      });
    });
  }

  async capture(): Promise<string> {
    return (await this.cmd("capture-pane -p -t tui")).join("\n");
  }

  /** Polls the pane after every output until `pred` holds; ms since `t0`, or NaN on timeout. */
  async waitPane(pred: (pane: string) => boolean, t0: number, timeoutMs: number): Promise<{ ms: number; pane: string }> {
    let pane = "";
    for (;;) {
      const seen = this.#outputs;
      pane = await this.capture();
      const t = performance.now();
      if (pred(pane)) return { ms: t - t0, pane };
      if (t - t0 > timeoutMs) return { ms: NaN, pane };
      await this.nextOutput(seen, 25);
    }
  }

  close(): void {
    this.#child.stdin!.end();
    if (this.#child.exitCode === null && this.#child.pid) {
      try {
        process.kill(this.#child.pid, "SIGTERM");
      } catch {
        // gone
      }
    }
  }
}

function tmux(socket: string, ...args: string[]): string {
  return execFileSync("tmux", ["-S", socket, "-f", "/dev/null", ...args], { encoding: "utf8" });
}

/** The seeded data dir of `n` keys, from the cache when the seeder has not changed. */
async function seeded(n: number, dest: string, cacheDir: string): Promise<void> {
  const spec = { keys: n, allow: 1, consume: 1, ipRestricted: 1, quotaEmpty: 1 };
  const h = createHash("sha256").update(JSON.stringify(spec));
  for (const f of ["bench/seed.ts", "src/domain/types.ts", "src/store/level/levelStore.ts"]) h.update(readFileSync(join(ROOT, f)));
  const run = async (dir: string, hashes: string): Promise<void> => {
    const p = spawnTracked(process.execPath, ["--max-old-space-size=4096", "--import", "tsx", join(ROOT, "bench/seed.ts"), JSON.stringify({ ...spec, dir, hashesFile: hashes })], { cwd: ROOT });
    const code = await waitExit(p, 120_000 + n * 1.5);
    if (code !== 0) throw new Error(`seed exited ${code}: ${p.stderr.join("").slice(-2000)}`);
  };
  if (!cacheDir) {
    await run(dest, join(dest, "..", `hashes-${n}.bin`));
    return;
  }
  const entry = join(cacheDir, `tui-${n}-${h.digest("hex").slice(0, 12)}`);
  if (!existsSync(join(entry, "done"))) {
    const tmp = `${entry}.tmp-${process.pid}`;
    rmSync(tmp, { recursive: true, force: true });
    mkdirSync(join(tmp, "data"), { recursive: true, mode: 0o700 });
    await run(join(tmp, "data"), join(tmp, "hashes.bin"));
    writeFileSync(join(tmp, "done"), "");
    rmSync(entry, { recursive: true, force: true });
    renameSync(tmp, entry);
  }
  execFileSync("cp", ["-a", `${join(entry, "data")}/.`, dest]);
}

async function startSidecar(dataDir: string): Promise<{ p: Spawned; admin: string }> {
  const p = spawnTracked(BIN, ["serve", "--data", dataDir, "--listen", "127.0.0.1:0", "--envoy-listen", "127.0.0.1:0", "--http-listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0", "--metrics-listen", ""], {
    cwd: ROOT,
    env: { ...process.env, PATH: `${dirname(process.execPath)}${delimiter}${process.env.PATH ?? ""}` },
  });
  const { line } = await waitReady(p, 120_000);
  return { p, admin: line.adminAddress };
}

/** What the TUI should show: the same rules as the page (name or id contains the query; status filter). */
interface Model {
  readonly keys: readonly { name: string; hay: string; enabled: boolean; expired: boolean }[];
  count(q: string, status: string): number;
  at(q: string, status: string, i: number): string;
}

/**
 * The keys in ListKeys' default order (newest first, then by id), read from the data dir before
 * the sidecar starts (ListKeys itself re-scans every key for each 1000-key page).
 */
async function storedKeys(dir: string): Promise<{ name: string; id: string; enabled: boolean; expiresAt: number | null }[]> {
  const store = new LevelStore({ dir });
  await store.open(Date.now());
  const out: { name: string; id: string; enabled: boolean; expiresAt: number | null; createdAt: number }[] = [];
  try {
    for await (const s of store.scanKeys()) out.push({ name: s.record.name, id: s.record.id, enabled: s.record.status === "enabled", expiresAt: s.record.expiresAt, createdAt: s.record.createdAt });
  } finally {
    await store.close();
  }
  out.sort((a, b) => b.createdAt - a.createdAt || (a.id < b.id ? -1 : 1));
  return out;
}

function model(keys: readonly { name: string; id: string; enabled: boolean; expiresAt: number | null }[]): Model {
  const now = Date.now();
  const ks = keys.map((k) => ({ name: k.name, hay: `${k.name}\u0000${k.id}`.toLowerCase(), enabled: k.enabled, expired: k.expiresAt !== null && k.expiresAt <= now }));
  const cache = new Map<string, number[]>();
  const list = (q: string, status: string): number[] => {
    const key = `${status}\u0000${q}`;
    let l = cache.get(key);
    if (!l) {
      const lq = q.trim().toLowerCase();
      l = [];
      for (let i = 0; i < ks.length; i++) {
        const k = ks[i]!;
        if (lq && !k.hay.includes(lq)) continue;
        if (status === "enabled" && !(k.enabled && !k.expired)) continue;
        if (status === "disabled" && k.enabled) continue;
        if (status === "expired" && !k.expired) continue;
        l.push(i);
      }
      cache.set(key, l);
    }
    return l;
  };
  return { keys: ks, count: (q, s) => list(q, s).length, at: (q, s, i) => ks[list(q, s)[i]!]!.name };
}

const selectedIs = (name: string) => (pane: string) => pane.split("\n").some((l) => l.startsWith(`› ${name} `));
const countIs = (n: number, total: number) => (pane: string) => new RegExp(`(^|[^\\d,])${fmt(n).replace(/,/g, ",")} of ${fmt(total)} keys`).test(pane);

async function runVariant(label: string, root: string, n: number, admin: string, token: string, m: Model, spec: Required<Omit<TuiBenchSpec, "profileDir" | "variants">> & { profileDir?: string }, work: string): Promise<TuiRun> {
  const socket = join(work, `tmux-${label}-${n}.sock`);
  const profile = spec.profileDir ? join(resolve(spec.profileDir), `${label}-${n}`) : null;
  if (profile) mkdirSync(profile, { recursive: true });
  // The TUI runs the way users run it: the bin (each variant's own) as a program, whose shell
  // prologue sets its memory settings (bin/aisa-authz.js: for `tui`, MALLOC_ARENA_MAX=2 and V8's
  // default semi-space). Under --cpu-prof, which NODE_OPTIONS does not allow, node starts the
  // bin itself with MALLOC_ARENA_MAX=2.
  // `nodeOptions` go into NODE_OPTIONS after the user's own (and after the prologue's: a later
  // value wins).
  const bin = JSON.stringify(join(root, "bin/aisa-authz.js"));
  const nodeOptions = [process.env.NODE_OPTIONS ?? "", spec.nodeOptions].filter((o) => o.trim() !== "").join(" ");
  const env = `MALLOC_ARENA_MAX=2 NODE_OPTIONS=${JSON.stringify(nodeOptions)}`;
  const run = profile ? `${JSON.stringify(process.execPath)} --cpu-prof --cpu-prof-dir=${JSON.stringify(profile)} ${bin}` : bin;
  const cmd = profile || spec.nodeOptions ? `exec env ${env} ${run}` : `exec ${run}`;
  const args = ` tui --admin ${admin} --token ${token}`;
  const samples: Record<TuiAction, number[]> = { move: [], page: [], search: [], filter: [] };
  const sentAt: Record<TuiAction, number[]> = { move: [], page: [], search: [], filter: [] };
  let timeouts = 0;
  const t0 = performance.now();
  tmux(socket, "new-session", "-d", "-s", "tui", "-x", String(spec.columns), "-y", String(spec.rows), "-c", root, cmd + args, ";", "set-option", "-t", "tui", "remain-on-exit", "on");
  const ctl = new TmuxControl(socket, "tui");
  let pid = 0;
  try {
    pid = Number(tmux(socket, "display", "-p", "-t", "tui", "#{pane_pid}").trim());
    const first = await ctl.waitPane((p) => p.trim() !== "", t0, 60_000);
    const total = m.keys.length;
    const rows = await ctl.waitPane(selectedIs(m.at("", "any", 0)), t0, spec.loadTimeoutMs);
    const loaded = await ctl.waitPane(countIs(total, total), t0, spec.loadTimeoutMs);
    if (!Number.isFinite(loaded.ms)) throw new Error(`${label}: the table of ${total} keys did not appear; pane:\n${loaded.pane}`);
    await sleep(500);

    const press = async (action: TuiAction | null, key: string[], pred: (pane: string) => boolean, what: string): Promise<void> => {
      await sleep(spec.gapMs);
      const t = performance.now();
      const at = Date.now();
      await ctl.cmd(`send-keys -t tui ${key.join(" ")}`);
      const r = await ctl.waitPane(pred, t, 5000);
      if (!Number.isFinite(r.ms)) {
        timeouts++;
        if (timeouts > 3) throw new Error(`${label} ${n}: ${what} did not appear within 5 s; pane:\n${r.pane}`);
        // Resynchronise: wait until it does appear (or give up).
        const again = await ctl.waitPane(pred, performance.now(), 20_000);
        if (!Number.isFinite(again.ms)) throw new Error(`${label} ${n}: ${what} never appeared; pane:\n${again.pane}`);
        return;
      }
      if (action) {
        samples[action].push(r.ms);
        sentAt[action].push(at);
      }
    };

    const cpuMsPerKey: Record<TuiAction, number> = { move: NaN, page: NaN, search: NaN, filter: NaN };
    let cpuMark = { s: cpuSecondsOf(pid) ?? NaN, n: 0 };
    const cpuFor = (action: TuiAction): void => {
      const now = { s: cpuSecondsOf(pid) ?? NaN, n: samples[action].length };
      cpuMsPerKey[action] = ((now.s - cpuMark.s) * 1000) / Math.max(1, now.n);
      cpuMark = { s: now.s, n: 0 };
    };
    // Move: j × samples, then k back.
    let c = 0;
    const count = m.count("", "any");
    for (let i = 0; i < spec.samples; i++) {
      const down = i < spec.samples / 2 || c === 0;
      c = Math.max(0, Math.min(count - 1, c + (down ? 1 : -1)));
      await press("move", [down ? "j" : "k"], selectedIs(m.at("", "any", c)), `move to row ${c}`);
    }
    cpuFor("move");
    // Page: PgDn, then PgUp (page = body height - 2 rows).
    const page = Math.max(1, Math.max(3, spec.rows - 1 - 4) - 2);
    for (let i = 0; i < spec.samples; i++) {
      const down = i < spec.samples / 2 || c === 0;
      c = Math.max(0, Math.min(count - 1, c + (down ? page : -page)));
      await press("page", [down ? "NPage" : "PPage"], selectedIs(m.at("", "any", c)), `page to row ${c}`);
    }
    cpuFor("page");
    // Search: "/" then characters one at a time, backspaces, esc; repeated until enough samples.
    // (The search's CPU includes its "/" and esc keystrokes; it is divided by the measured ones.)
    // (No spaces in the queries: the search line's cursor is a space, and capture-pane trims.)
    // (The help bar starts with "/ search" too: it is the line with "? help".)
    const searchLine = (q: string) => (p: string) => p.split("\n").some((l) => !l.includes("? help") && (l === `/${q}` || l.startsWith(`/${q} `)));
    const queries = [String(Math.floor(n * 0.371)), String(Math.floor(n * 0.58)).slice(0, 3), "key"];
    for (let qi = 0; samples.search.length < spec.samples; qi++) {
      const q = queries[qi % queries.length]!;
      await press(null, ["/"], searchLine(""), "the search line");
      let typed = "";
      for (const ch of q) {
        if (samples.search.length >= spec.samples) break;
        typed += ch;
        const shown = typed;
        const k = m.count(shown, "any");
        await press("search", ["-l", `'${ch}'`], (p) => countIs(k, total)(p) && searchLine(shown)(p), `search ${JSON.stringify(shown)}`);
      }
      for (let b = 0; b < 2 && typed.length > 0 && samples.search.length < spec.samples; b++) {
        typed = typed.slice(0, -1);
        const shown = typed;
        const k = m.count(shown, "any");
        await press("search", ["BSpace"], (p) => countIs(k, total)(p) && searchLine(shown)(p), `backspace to ${JSON.stringify(shown)}`);
      }
      await press(null, ["Escape"], (p) => countIs(total, total)(p) && !p.split("\n").some((l) => !l.includes("? help") && l.startsWith("/")), "the search cleared");
    }
    cpuFor("search");
    // Filter: f, then → on the Status row (any → enabled → disabled → expired → any).
    await press(null, ["f"], (p) => p.includes("Filters:"), "the filter menu");
    cpuMark = { s: cpuSecondsOf(pid) ?? NaN, n: 0 };
    const cycle = ["any", "enabled", "disabled", "expired"];
    let s = 0;
    for (let i = 0; i < spec.samples; i++) {
      s = (s + 1) % cycle.length;
      const st = cycle[s]!;
      const k = m.count("", st);
      await press("filter", ["Right"], (p) => countIs(k, total)(p) && (st === "any" ? !p.includes("[status:") : p.includes(`[status:${st}]`)), `filter status:${st}`);
    }
    cpuFor("filter");
    await press(null, ["Escape"], (p) => !p.includes("Filters:"), "the filter menu closed");
    await sleep(300);
    const cpuSeconds = cpuSecondsOf(pid) ?? NaN;
    const rssMb = memoryOf(pid)?.rssMb ?? NaN;
    // Quit (q) so a --cpu-prof profile is written.
    await ctl.cmd("send-keys -t tui q");
    const until = Date.now() + 30_000;
    while (Date.now() < until && tmux(socket, "display", "-p", "-t", "tui", "#{pane_dead}").trim() !== "1") await sleep(100);
    const latency = Object.fromEntries(TUI_ACTIONS.map((a) => [a, summarize(samples[a])])) as Record<TuiAction, LatencySummary>;
    return { variant: label, keys: n, firstFrameMs: first.ms, firstRowsMs: rows.ms, firstPaintMs: loaded.ms, latency, samplesMs: samples, sentAtMs: sentAt, cpuMsPerKey, timeouts, cpuSeconds, rssMb };
  } finally {
    ctl.close();
    try {
      tmux(socket, "kill-server");
    } catch {
      // already gone
    }
    await Promise.race([ctl.exited, sleep(2000)]);
  }
}

export async function tuiBench(spec: TuiBenchSpec): Promise<TuiBenchResult> {
  const full = {
    sizes: spec.sizes,
    samples: spec.samples,
    gapMs: spec.gapMs ?? 150,
    columns: spec.columns ?? 120,
    rows: spec.rows ?? 40,
    loadTimeoutMs: spec.loadTimeoutMs ?? 600_000,
    seedCache: spec.seedCache ?? join(os.tmpdir(), "aisa-bench-seed-cache"),
    profileDir: spec.profileDir,
    nodeOptions: spec.nodeOptions ?? "",
  };
  const variants = spec.variants ?? [{ label: "tui", root: ROOT }];
  const work = mkdtempSync(join(os.tmpdir(), "aisa-bench-tui-"));
  const runs: TuiRun[] = [];
  try {
    for (const n of full.sizes) {
      const data = join(work, `data-${n}`);
      mkdirSync(data, { mode: 0o700 });
      await seeded(n, data, full.seedCache);
      const m = model(await storedKeys(data));
      const sc = await startSidecar(data);
      const token = (await readFile(join(data, "admin.token"), "utf8")).trim();
      try {
        for (const v of variants) {
          process.stderr.write(`[tui bench] ${n} keys: ${v.label}\n`);
          runs.push(await runVariant(v.label, resolve(v.root), n, sc.admin, token, m, { ...full, nodeOptions: `${full.nodeOptions} ${v.nodeOptions ?? ""}`.trim() }, work));
        }
      } finally {
        await stop(sc.p, 10_000);
        rmSync(data, { recursive: true, force: true });
      }
    }
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
  return { columns: full.columns, rows: full.rows, gapMs: full.gapMs, samples: full.samples, runs, tmux: execFileSync("tmux", ["-V"], { encoding: "utf8" }).trim() };
}

const f1 = (x: number | undefined) => (x !== undefined && Number.isFinite(x) ? x.toFixed(1) : "–");

/** The markdown table of a result (bench/lib/report.ts). */
export function tuiTable(r: TuiBenchResult): string {
  const head = `| TUI, ${r.columns}×${r.rows} (keystroke → repainted screen, ms: p50 / p99) | ${r.runs.map((x) => `${x.variant === "tui" ? "" : `${x.variant}, `}${fmt(x.keys)} keys`).join(" | ")} |\n|---|${r.runs.map(() => "---:").join("|")}|`;
  const row = (label: string, f: (x: TuiRun) => string) => `| ${label} | ${r.runs.map(f).join(" | ")} |`;
  return [
    head,
    ...TUI_ACTIONS.map((a) => row(`${a} (${r.runs[0]?.latency[a].count ?? 0} keystrokes)`, (x) => `${f1(x.latency[a].p50)} / ${f1(x.latency[a].p99)}`)),
    ...TUI_ACTIONS.map((a) => row(`${a}: TUI CPU per keystroke (ms)`, (x) => f1(x.cpuMsPerKey[a]))),
    row("first frame / first rows / table with all keys (ms)", (x) => `${f1(x.firstFrameMs)} / ${f1(x.firstRowsMs)} / ${f1(x.firstPaintMs)}`),
    row("TUI process: CPU for the session (s) · RSS at the end (MB)", (x) => `${x.cpuSeconds.toFixed(1)} · ${x.rssMb.toFixed(0)}`),
    row("keystrokes whose screen took > 5 s", (x) => String(x.timeouts)),
  ].join("\n");
}

const isMain = process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url);
if (isMain) {
  tuiBench(JSON.parse(process.argv[2] ?? "{}") as TuiBenchSpec).then(
    (r) => {
      if (process.argv.includes("--table")) process.stderr.write(tuiTable(r) + "\n");
      process.stdout.write(JSON.stringify(r) + "\n");
      process.exit(0);
    },
    (err) => {
      process.stderr.write(`tui bench failed: ${err?.stack ?? err}\n`);
      process.exit(1);
    },
  );
}
