// The one dispatcher. Exactly one `useInput` exists in the TUI (here); layers
// subscribe with a priority, and the key goes to the highest priority first
// (latest subscriber first within a priority) until a handler returns true.
// Open dialogs and forms subscribe above the screens, so they capture keys.
// (gemini-cli's KeypressContext, for the same reason: no scattered raw handlers.)
import { createContext, useContext, useLayoutEffect, useMemo, useRef, type ReactNode } from "react";
import { useInput, useStdin, type Key } from "ink";
import { COMMANDS, disabledReason, matchCommand, type Command, type CommandState, type KeyEvent, type Scope } from "./commands.js";

export type KeyHandler = (ev: KeyEvent) => boolean;

/**
 * Layer priorities: the app's global commands (views, help, reload, quit) < the screen's own <
 * inline editors (search) < dialogs < nested pickers.
 */
export const PRIORITY = { app: -10, screen: 0, inline: 10, dialog: 100, nested: 200 } as const;

interface Subscription {
  readonly priority: number;
  readonly seq: number;
  readonly handler: { current: KeyHandler };
  readonly acceptsPaste: { current: boolean };
}

interface Registry {
  subscribe(sub: Omit<Subscription, "seq">): () => void;
  /** A subscribed component committed a render. */
  committed(): void;
}

/**
 * How long a consumed key waits for React to commit before the next key goes out. A bound only
 * for a key that changed nothing (no commit comes): at 100k keys on a loaded machine a render
 * takes longer than 100 ms, and with a 100 ms bound the next key went out before the commit —
 * to the layers of the previous screen (`f` then `→`: the → reached the list, not the just-opened
 * filter menu, and was lost; the 100k windowing test's lost keystroke).
 */
const MAX_WAIT_MS = 1000;

const KeypressContext = createContext<Registry | null>(null);

/**
 * Ink's (input, key) → our KeyEvent, or null for keys the TUI ignores.
 * Ink reports the Backspace key ("\x7f") as `delete`; both edit backwards here.
 */
export function toKeyEvent(input: string, key: Key): KeyEvent | null {
  const special = (s: KeyEvent["special"]): KeyEvent => ({ input: "", special: s, ctrl: key.ctrl });
  if (key.upArrow) return special("up");
  if (key.downArrow) return special("down");
  if (key.leftArrow) return special("left");
  if (key.rightArrow) return special("right");
  if (key.pageUp) return special("pageUp");
  if (key.pageDown) return special("pageDown");
  if (key.home) return special("home");
  if (key.end) return special("end");
  if (key.tab) return { input: "", special: key.shift ? "backTab" : "tab", ctrl: false };
  if (key.return || input === "\n") return { input: "", special: "enter", ctrl: false };
  if (key.escape) return special("escape");
  if (key.backspace || key.delete) return special("backspace");
  if (input === " ") return { input: " ", special: "space", ctrl: false };
  if (input === "\x1c") return { input: "\\", ctrl: true }; // ctrl+\ (not decoded by Ink)
  if (key.ctrl) return /^[a-z]$/.test(input) ? { input, ctrl: true } : null;
  if (key.meta) return null; // alt+key: unbound
  if (input === "") return null;
  // Drop control characters except newlines (kept for pasted IP lists).
  const clean = input.replace(/\r\n?/g, "\n").replace(/[\x00-\x09\x0b-\x1f\x7f]/g, "");
  return clean === "" ? null : { input: clean, ctrl: false };
}

const ERASE = /[\x7f\b]/;
const ERASE_RUNS = /([\x7f\b])/;

/**
 * Every key of one read. Ink hands a burst as one string: six Backspaces read together arrive
 * as "\x7f\x7f\x7f\x7f\x7f\x7f" with no key flag (a lone one is flagged), and a paste may
 * carry them between text. Each erase becomes its own backspace event and the text between
 * them stays text, so every text field applies every key of the burst, in order.
 */
export function toKeyEvents(input: string, key: Key): KeyEvent[] {
  if (input.length <= 1 || key.ctrl || key.meta || !ERASE.test(input)) {
    const ev = toKeyEvent(input, key);
    return ev ? [ev] : [];
  }
  const out: KeyEvent[] = [];
  for (const part of input.split(ERASE_RUNS)) {
    if (part === "") continue;
    if (ERASE.test(part)) out.push({ input: "", special: "backspace", ctrl: false });
    else {
      const ev = toKeyEvent(part, { ...key, backspace: false, delete: false });
      if (ev) out.push(ev);
    }
  }
  return out;
}

export function KeypressProvider({ children }: { children: ReactNode }): ReactNode {
  const subs = useRef<Subscription[]>([]);
  const seq = useRef(0);
  const queue = useRef<KeyEvent[]>([]);
  const timer = useRef<NodeJS.Immediate | null>(null);
  const commits = useRef(0);
  // Without a TTY on stdin Ink cannot enter raw mode and would crash: then the
  // TUI renders but takes no keys. (isRawModeSupported is undefined, not false, there.)
  const isTty = useStdin().isRawModeSupported === true;

  const registry = useMemo<Registry>(
    () => ({
      subscribe(sub) {
        const entry: Subscription = { ...sub, seq: seq.current++ };
        subs.current = [...subs.current, entry].sort((a, b) => b.priority - a.priority || b.seq - a.seq);
        return () => {
          subs.current = subs.current.filter((s) => s !== entry);
        };
      },
      committed() {
        commits.current++;
      },
    }),
    [],
  );

  // One key at a time, each after React committed what the previous one
  // changed, so every handler sees the state its predecessor produced (a fast
  // typist, key repeat, tmux sending "jj" in one chunk, "/abc" opening the
  // search before "abc" arrives). React renders in a task it schedules itself,
  // so a consumed key waits for the next commit (reported by useKeypress's
  // layout effects), at most MAX_WAIT_MS in case the key changed nothing.
  const deliver = (ev: KeyEvent): void => {
    const before = commits.current;
    let consumed = false;
    try {
      for (const s of subs.current) {
        if (s.handler.current(ev)) {
          consumed = true;
          break;
        }
      }
    } finally {
      const until = Date.now() + MAX_WAIT_MS;
      const wait = (): void => {
        if (!consumed || commits.current !== before || Date.now() > until) pump();
        else timer.current = setImmediate(wait);
      };
      timer.current = setImmediate(wait);
    }
  };
  function pump(): void {
    timer.current = null;
    const next = queue.current.shift();
    if (next) deliver(next);
  }

  useLayoutEffect(
    () => () => {
      if (timer.current) clearImmediate(timer.current);
      queue.current = [];
    },
    [],
  );

  useInput(
    (input, key) => {
      const idle = timer.current === null && queue.current.length === 0;
      for (const ev of toKeyEvents(input, key)) {
        const chars = [...ev.input];
        const whole = chars.length <= 1 || ev.special !== undefined || ev.ctrl || (idle && subs.current[0]?.acceptsPaste.current === true);
        const events = whole
          ? [ev]
          : chars.map((c): KeyEvent => (c === "\n" ? { input: "", special: "enter", ctrl: false } : { input: c, ctrl: false }));
        queue.current.push(...events);
      }
      if (idle && queue.current.length > 0) pump();
    },
    { isActive: isTty },
  );

  return <KeypressContext.Provider value={registry}>{children}</KeypressContext.Provider>;
}

export interface KeypressOptions {
  readonly priority: number;
  readonly isActive?: boolean;
  /** This layer edits text: a multi-character chunk is given to it whole (paste). */
  readonly acceptsPaste?: boolean;
}

/** Subscribes a handler; it returns true to consume the key. */
export function useKeypress(handler: KeyHandler, options: KeypressOptions): void {
  const registry = useContext(KeypressContext);
  if (!registry) throw new Error("useKeypress must be used inside <KeypressProvider>");
  const handlerRef = useRef(handler);
  const pasteRef = useRef(options.acceptsPaste === true);
  // Layout effects run during the commit, so the next key already sees the new
  // handler (and a just-opened dialog) even when keys arrive back to back.
  useLayoutEffect(() => {
    handlerRef.current = handler;
    pasteRef.current = options.acceptsPaste === true;
    registry.committed();
  });
  const isActive = options.isActive !== false;
  useLayoutEffect(() => {
    if (!isActive) return undefined;
    return registry.subscribe({ priority: options.priority, handler: handlerRef, acceptsPaste: pasteRef });
  }, [registry, isActive, options.priority]);
}

export interface CommandLayerOptions {
  /** The scopes whose commands this layer handles. */
  readonly scopes: readonly Scope[];
  /** For disabled reasons. */
  readonly state?: CommandState;
  /** What each command does here; commands without an action fall through. */
  readonly actions: Partial<Record<Command, () => void>>;
  readonly priority: number;
  readonly isActive?: boolean;
  /** Keys bound to no command of this layer (e.g. text): return true to consume. */
  readonly fallback?: (ev: KeyEvent) => boolean;
  /** Swallow every key the layer does not handle (dialogs and forms are modal). */
  readonly modal?: boolean;
  readonly acceptsPaste?: boolean;
  /** Shows why a pressed command is disabled (the status line). */
  readonly onDisabled: (message: string) => void;
}

/**
 * A layer of the dispatcher driven by the binding table: key → command (within
 * the layer's scopes) → disabled reason or action.
 */
export function useCommandLayer(options: CommandLayerOptions): void {
  const { scopes, state, actions, fallback, modal, onDisabled } = options;
  useKeypress(
    (ev) => {
      const cmd = matchCommand(scopes, ev);
      const action = cmd ? actions[cmd] : undefined;
      if (cmd && action) {
        const spec = COMMANDS[cmd];
        const reason = disabledReason(spec, state);
        if (reason !== null) onDisabled(`${spec.short}: ${reason}`);
        else action();
        return true;
      }
      if (fallback?.(ev)) return true;
      return modal === true;
    },
    { priority: options.priority, isActive: options.isActive, acceptsPaste: options.acceptsPaste },
  );
}
