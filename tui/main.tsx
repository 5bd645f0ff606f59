// Entry of `aisa-authz tui`: renders the App against the admin port and
// resolves when the operator quits (q or ctrl+c).
//
// React and Ink are imported only inside runTui, after NODE_ENV defaults to
// "production": React's development build profiles every render (and diffs
// props for its performance tracks), which makes a 100k-key table sluggish.
import { existsSync } from "node:fs";
import { GrpcAdminApi } from "./client.js";
import { SystemClipboard } from "./clipboard.js";
import { prefetched } from "./prefetch.js";

export interface TuiOptions {
  /** host:port of the admin gRPC API. */
  readonly address: string;
  /** Admin bearer token (operator or account-scoped). */
  readonly token: string;
  /** TLS like the CLI's --admin-tls / --admin-ca (default plaintext). */
  readonly tls?: boolean | { rootCerts: Buffer };
}

const ENTER_ALT_SCREEN = "\u001B[?1049h\u001B[H";
const LEAVE_ALT_SCREEN = "\u001B[?1049l";

/**
 * Ink's frame rate cap (its default is 30). Ink's throttle defers a commit that comes within one
 * frame interval of the last frame to a full interval after it: a keystroke landing just after
 * the live usage tick's frame (one a second, drawn even when nothing on screen changed) waited
 * 33 ms more — the tail of every action at 100k keys. At 60 the wait is 17 ms, half as often;
 * keys typed faster than that are still drawn together.
 */
const MAX_FPS = 60;

/** The build's one-file bundle of tui/ui.ts (scripts/bundleTui.mjs); absent when running the sources. */
const UI_BUNDLE = new URL("./ui.bundle.js", import.meta.url);

/**
 * React, Ink and the screens: the compiled build's bundle when there is one, else the modules
 * (the TypeScript sources through tsx, or a build made without the bundle step).
 */
export async function loadUi(): Promise<typeof import("./ui.js")> {
  if (UI_BUNDLE.pathname.endsWith("/dist/tui/ui.bundle.js") && existsSync(UI_BUNDLE)) return (await import(UI_BUNDLE.href)) as typeof import("./ui.js");
  return import("./ui.js");
}

export async function runTui({ address, token, tls }: TuiOptions): Promise<void> {
  if (!process.stdin.isTTY) {
    throw new Error("aisa-authz tui needs a terminal: stdin is not a TTY (use the CLI commands in scripts)");
  }
  process.env.NODE_ENV ??= "production";
  // Ink switches to "CI mode" (no live frames, only the last one on exit) when
  // CI or CONTINUOUS_INTEGRATION is set, which it reads once at import. The
  // TUI only runs on a terminal (checked above), so that mode never applies:
  // an operator with CI=1 in their shell, or a CI job driving the TUI in tmux,
  // must still see the screen.
  delete process.env["CI"];
  delete process.env["CONTINUOUS_INTEGRATION"];
  // The first WhoAmI and ListKeys start now, while Ink, React and the screens load (tui/prefetch.ts).
  const api = new GrpcAdminApi(address, token, { tls });
  const first = prefetched(api);
  // No JSX in this file: the automatic runtime would import React statically.
  const { createElement, render, App } = await loadUi();
  const out = process.stdout;
  // The alternate screen (like k9s/lazygit): the shell's scrollback is left
  // alone and comes back on exit.
  const alt = out.isTTY === true;
  if (alt) out.write(ENTER_ALT_SCREEN);
  try {
    const app = createElement(App, { api: first, address, clipboard: new SystemClipboard(out) });
    const instance = render(app, { exitOnCtrlC: true, patchConsole: true, maxFps: MAX_FPS });
    await instance.waitUntilExit();
  } finally {
    api.close();
    if (alt) out.write(LEAVE_ALT_SCREEN);
  }
}
