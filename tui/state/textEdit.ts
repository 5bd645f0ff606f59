// Pure line editing for the TUI's text fields (search, form fields, the
// confirm count). Kept out of components so it is testable without Ink, and so
// every text field edits the same way.
import type { KeyEvent } from "../keys/commands.js";

export interface TextState {
  readonly value: string;
  /** Cursor position, 0..value.length (UTF-16 units; the fields hold ASCII in practice). */
  readonly cursor: number;
}

export function textAt(value: string): TextState {
  return { value, cursor: value.length };
}

export interface EditOptions {
  /** Enter inserts a new line (the IP whitelist). */
  readonly multiline?: boolean;
  /** Only these characters are accepted (e.g. digits for the confirm count). */
  readonly accept?: RegExp;
  readonly maxLength?: number;
}

/**
 * Applies a key to a text field. Returns the new state, or null when the key is
 * not a text-editing key (the caller lets it through to the next handler).
 */
export function applyTextKey(s: TextState, ev: KeyEvent, opts: EditOptions = {}): TextState | null {
  const { value, cursor } = s;
  if (ev.ctrl) {
    switch (ev.input) {
      case "a":
        return { value, cursor: lineStart(value, cursor) };
      case "e":
        return { value, cursor: lineEnd(value, cursor) };
      case "u":
        return { value: value.slice(0, lineStart(value, cursor)) + value.slice(cursor), cursor: lineStart(value, cursor) };
      case "k":
        return { value: value.slice(0, cursor) + value.slice(lineEnd(value, cursor)), cursor };
      case "w": {
        const before = value.slice(0, cursor).replace(/\S+\s*$/, "");
        return { value: before + value.slice(cursor), cursor: before.length };
      }
      default:
        return null;
    }
  }
  switch (ev.special) {
    case "left":
      return { value, cursor: Math.max(0, cursor - 1) };
    case "right":
      return { value, cursor: Math.min(value.length, cursor + 1) };
    case "home":
      return { value, cursor: lineStart(value, cursor) };
    case "end":
      return { value, cursor: lineEnd(value, cursor) };
    case "backspace":
      if (cursor === 0) return s;
      return { value: value.slice(0, cursor - 1) + value.slice(cursor), cursor: cursor - 1 };
    case "enter":
      return opts.multiline ? insert(s, "\n", opts) : null;
    case "space":
      return insert(s, " ", opts);
    case undefined:
      return insert(s, ev.input, opts);
    default:
      return null;
  }
}

/** True for keys that move the cursor without changing the text. */
export function isMotion(ev: KeyEvent): boolean {
  if (ev.ctrl) return ev.input === "a" || ev.input === "e";
  return ev.special === "left" || ev.special === "right" || ev.special === "home" || ev.special === "end";
}

function insert(s: TextState, text: string, opts: EditOptions): TextState {
  let t = opts.multiline ? text : text.replace(/\n/g, " ");
  if (opts.accept) t = [...t].filter((c) => opts.accept?.test(c) || (opts.multiline && c === "\n")).join("");
  if (opts.maxLength !== undefined) t = t.slice(0, Math.max(0, opts.maxLength - s.value.length));
  if (t === "") return s;
  return { value: s.value.slice(0, s.cursor) + t + s.value.slice(s.cursor), cursor: s.cursor + t.length };
}

function lineStart(value: string, cursor: number): number {
  const i = value.lastIndexOf("\n", cursor - 1);
  return i === -1 ? 0 : i + 1;
}

function lineEnd(value: string, cursor: number): number {
  const i = value.indexOf("\n", cursor);
  return i === -1 ? value.length : i;
}
