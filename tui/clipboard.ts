// Copying secrets: the OSC 52 escape (the terminal sets its clipboard; works
// over SSH), plus wl-copy / xclip / pbcopy when one is on PATH for the current
// display. Whether the terminal honours OSC 52 cannot be detected, so the
// result lists what was tried and the caller offers the manual view when
// nothing could be used.
import { spawn, spawnSync } from "node:child_process";
import { accessSync, constants } from "node:fs";
import { delimiter, join } from "node:path";

export interface CopyResult {
  /** What the text was handed to ("OSC 52", "xclip", …); empty = nothing worked. */
  readonly methods: readonly string[];
  /** Why a method that looked available was not used, and what to set ("" = nothing to say). */
  readonly note?: string;
}

/**
 * Inside tmux, OSC 52 from a program reaches the outer terminal only with `set-clipboard on`;
 * with the default `external` tmux drops it silently, so "Copied via OSC 52" would be a lie.
 * Returns what to set, or null when OSC 52 passes (or this is not tmux).
 */
export function tmuxClipboardProblem(env: NodeJS.ProcessEnv, query: () => string | null = queryTmuxClipboard): string | null {
  if (!env.TMUX) return null;
  const v = query();
  if (v === null || v === "on") return null;
  return `tmux drops OSC 52 from programs (set-clipboard ${v}); run \`tmux set -g set-clipboard on\` to copy from here`;
}

function queryTmuxClipboard(): string | null {
  const r = spawnSync("tmux", ["show-options", "-gv", "set-clipboard"], { encoding: "utf8", timeout: 1000 });
  return r.status === 0 ? r.stdout.trim() : null;
}

export interface Clipboard {
  copy(text: string): Promise<CopyResult>;
}

/** ESC ] 52 ; c ; base64 BEL: "set the clipboard" for xterm-compatible terminals. */
export function osc52(text: string): string {
  return `\u001B]52;c;${Buffer.from(text, "utf8").toString("base64")}\u0007`;
}

interface Tool {
  readonly name: string;
  readonly args: readonly string[];
}

function onPath(cmd: string, pathVar: string | undefined): boolean {
  for (const dir of (pathVar ?? "").split(delimiter)) {
    if (!dir) continue;
    try {
      accessSync(join(dir, cmd), constants.X_OK);
      return true;
    } catch {
      // not here
    }
  }
  return false;
}

/** The clipboard tool for this session, if any. */
export function findClipboardTool(env: NodeJS.ProcessEnv, platform: NodeJS.Platform): Tool | null {
  if (platform === "darwin" && onPath("pbcopy", env.PATH)) return { name: "pbcopy", args: [] };
  if (env.WAYLAND_DISPLAY && onPath("wl-copy", env.PATH)) return { name: "wl-copy", args: [] };
  if (env.DISPLAY && onPath("xclip", env.PATH)) return { name: "xclip", args: ["-selection", "clipboard"] };
  return null;
}

function runTool(tool: Tool, text: string, timeoutMs: number): Promise<boolean> {
  return new Promise((resolve) => {
    const child = spawn(tool.name, [...tool.args], { stdio: ["pipe", "ignore", "ignore"] });
    const timer = setTimeout(() => {
      child.kill();
      resolve(false);
    }, timeoutMs);
    child.on("error", () => {
      clearTimeout(timer);
      resolve(false);
    });
    child.on("exit", (code) => {
      clearTimeout(timer);
      resolve(code === 0);
    });
    child.stdin.on("error", () => undefined);
    child.stdin.end(text);
  });
}

export class SystemClipboard implements Clipboard {
  constructor(
    private readonly out: NodeJS.WriteStream,
    private readonly env: NodeJS.ProcessEnv = process.env,
    private readonly platform: NodeJS.Platform = process.platform,
  ) {}

  async copy(text: string): Promise<CopyResult> {
    const methods: string[] = [];
    let note = "";
    if (this.out.isTTY) {
      const problem = tmuxClipboardProblem(this.env);
      if (problem === null) {
        this.out.write(osc52(text));
        methods.push("OSC 52");
      } else {
        note = problem;
      }
    }
    const tool = findClipboardTool(this.env, this.platform);
    if (tool && (await runTool(tool, text, 3000))) methods.push(tool.name);
    return { methods, note };
  }
}
