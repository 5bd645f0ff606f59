// Test helpers: render the App against a FakeAdminApi and drive it with keys.
import { Profiler } from "react";
import { render } from "ink-testing-library";
import { App } from "../../tui/App.js";
import type { Clipboard } from "../../tui/clipboard.js";
import { T0, type FakeAdminApi } from "./fakeApi.js";

/** Raw key sequences, as a terminal sends them. */
export const KEY = {
  up: "\u001B[A",
  down: "\u001B[B",
  right: "\u001B[C",
  left: "\u001B[D",
  pageUp: "\u001B[5~",
  pageDown: "\u001B[6~",
  enter: "\r",
  esc: "\u001B",
  tab: "\t",
  shiftTab: "\u001B[Z",
  space: " ",
  backspace: "\u007F",
  ctrlS: "\u0013",
  ctrlP: "\u0010",
} as const;

export const delay = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

export interface Driven {
  frame(): string;
  /** Writes each key, waiting a moment after each (Ink parses and React renders asynchronously). */
  press(...keys: string[]): Promise<void>;
  /** Types text one character at a time. */
  type(text: string): Promise<void>;
  /** Waits until the frame satisfies `pred` (throws with the last frame after `ms`). */
  waitFor(pred: (frame: string) => boolean, ms?: number): Promise<string>;
  unmount(): void;
}

export interface RenderOptions {
  columns?: number;
  rows?: number;
  clipboard?: Clipboard;
  /** A silent live usage stream is restarted after this long (default: the App's). */
  usageStallMs?: number;
  /** Called for every React commit of the App (a Profiler around it): re-renders, counted. */
  onCommit?: () => void;
}

export async function renderApp(api: FakeAdminApi, opts: RenderOptions = {}): Promise<Driven> {
  const app = (
    <App
      api={api}
      address="127.0.0.1:9192"
      size={{ columns: opts.columns ?? 100, rows: opts.rows ?? 30 }}
      now={() => T0}
      heartbeatMs={0}
      reconnect={{ baseMs: 5, maxMs: 20 }}
      clipboard={opts.clipboard}
      usageStallMs={opts.usageStallMs}
    />
  );
  const { onCommit } = opts;
  const r = render(
    onCommit ? (
      <Profiler id="app" onRender={() => onCommit()}>
        {app}
      </Profiler>
    ) : (
      app
    ),
  );
  const frame = (): string => r.lastFrame() ?? "";
  const waitFor = async (pred: (f: string) => boolean, ms = 5000): Promise<string> => {
    const until = Date.now() + ms;
    while (!pred(frame())) {
      if (Date.now() > until) throw new Error(`timed out; last frame:\n${frame()}`);
      await delay(5);
    }
    return frame();
  };
  const press = async (...keys: string[]): Promise<void> => {
    for (const k of keys) {
      r.stdin.write(k);
      await delay(k === KEY.esc ? 30 : 15);
    }
  };
  // Loaded: the key count without the loading banner (the first page shows before the rest).
  await waitFor((f) => (/ of [\d,]+ keys/.test(f) && !f.includes("Loading keys")) || f.includes("Sidecar unreachable") || f.includes("refused the token"));
  return {
    frame,
    press,
    type: async (text) => press(...[...text]),
    waitFor,
    unmount: () => r.unmount(),
  };
}

/** The table rows of a frame (lines after the column header, up to the status line). */
export function tableRows(frame: string): string[] {
  const lines = frame.split("\n");
  const head = lines.findIndex((l) => /^\s+Name\s+Status/.test(l));
  if (head === -1) return [];
  const out: string[] = [];
  for (const l of lines.slice(head + 1)) {
    if (!/^[›● ] ?\S/.test(l) || !/(Enabled|Disabled|Expired)/.test(l)) break;
    out.push(l);
  }
  return out;
}
