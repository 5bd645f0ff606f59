// The TUI's screen state and every transition of it, as one pure reducer tested without Ink
// (test/tui/appState.test.ts). tui/App.tsx holds the data (keys, groups, live usage) and the
// effects; each rule about what a key press or a finished call does to the screen lives here:
// what esc clears first, that a new search or filter starts at the top, that the cursor follows
// its key id (and says when the key is gone), which status line follows to another view, how
// marks toggle, what a delete leaves selected. There is no "set any field" action: a new rule
// is a new action with a name and a test.
import { formatInteger } from "../../src/display/format.js";
import type { Key } from "../../src/gen/aisa/v1/types.js";
import type { RevealedKey } from "../client.js";
import type { View } from "../components/Chrome.js";
import type { KeyEvent } from "../keys/commands.js";
import { activeFilterCount, NO_FILTERS, type KeyFilters } from "./keyIndex.js";
import { afterDelete, moveSelection, syncSelection, top, TOP, type Selection, type SelectionList } from "./selection.js";
import { applyTextKey, isMotion, textAt, type TextState } from "./textEdit.js";
import { METRICS, type Metric } from "./usage.js";

export type Overlay =
  | { readonly kind: "none" }
  | { readonly kind: "help" }
  | { readonly kind: "filters" }
  | { readonly kind: "confirm"; readonly ids: readonly string[]; readonly hidden: number; readonly names: readonly string[] }
  | { readonly kind: "create" }
  | { readonly kind: "edit"; readonly key: Key }
  | { readonly kind: "secret"; readonly name: string; readonly secret: string }
  | { readonly kind: "reveal"; readonly keys: readonly RevealedKey[]; readonly note: string }
  | { readonly kind: "details"; readonly key: Key };

export interface Status {
  readonly text: string;
  readonly tone: "info" | "ok" | "warn" | "error";
}

export const NONE: Overlay = { kind: "none" };
const NO_MARKS: ReadonlySet<string> = new Set();

/** The search line's text rules (a key name or id is at most this long). */
export const SEARCH_EDIT = { maxLength: 256 } as const;

export interface UiState {
  readonly view: View;
  readonly metric: Metric;
  readonly overlay: Overlay;
  readonly query: TextState;
  readonly searching: boolean;
  readonly filters: KeyFilters;
  readonly marks: ReadonlySet<string>;
  /** The key list's selection: a key id (tui/state/selection.ts). */
  readonly sel: Selection;
  /** The Groups view's cursor (a row: groups are few and never re-sorted under it). */
  readonly groupCursor: number;
  readonly helpScroll: number;
  readonly status: Status | null;
  /** The API call running now ("deleting"), shown in the status line. */
  readonly busy: string | null;
}

export const INITIAL_UI: UiState = {
  view: "keys",
  metric: "requests",
  overlay: NONE,
  query: textAt(""),
  searching: false,
  filters: NO_FILTERS,
  marks: NO_MARKS,
  sel: TOP,
  groupCursor: 0,
  helpScroll: 0,
  status: null,
  busy: null,
};

/** A cursor move: rows up (negative) or down, or to either end. */
export type Move = number | "top" | "bottom";

export type UiAction =
  | { readonly type: "view"; readonly view: View | "next" }
  | { readonly type: "metric.next" }
  /** `/`: the search line opens with its cursor at the end of the text. */
  | { readonly type: "search.open" }
  /** enter keeps the search text; esc clears it. */
  | { readonly type: "search.close"; readonly clear: boolean }
  /** A key typed into the search line (the caller checked it edits text: `isSearchKey`). */
  | { readonly type: "search.key"; readonly ev: KeyEvent }
  /** New filters: the list starts at its top. */
  | { readonly type: "filters"; readonly filters: KeyFilters }
  /** The key list's cursor moves over the list as it is now. */
  | { readonly type: "sel.move"; readonly move: Move; readonly list: SelectionList }
  /**
   * The list changed: the selection follows its key id; a key that no longer exists is reported
   * and the cursor stays at its row. `prev`: the list before, when data changed it (not the
   * user's search or filter) — see syncSelection.
   */
  | { readonly type: "sel.sync"; readonly list: SelectionList; readonly prev: SelectionList | null }
  | { readonly type: "group.move"; readonly move: Move; readonly count: number }
  | { readonly type: "help.open" }
  /** `max`: the last first line (the help's length less what fits), so a scroll never runs past it. */
  | { readonly type: "help.scroll"; readonly move: Move; readonly max: number }
  | { readonly type: "mark.toggle"; readonly id: string }
  | { readonly type: "mark.all"; readonly ids: readonly string[] }
  | { readonly type: "marks.clear" }
  | { readonly type: "marks.keep"; readonly exists: (id: string) => boolean }
  /** esc on the list: clears the search, else the filters, else the marks. */
  | { readonly type: "back" }
  /** enter on a group: its keys, with a status line that stays on the Keys view. */
  | { readonly type: "group.open"; readonly group: string }
  | { readonly type: "open"; readonly overlay: Exclude<Overlay, { kind: "none" }> }
  | { readonly type: "close" }
  | { readonly type: "status"; readonly status: Status | null }
  | { readonly type: "busy"; readonly label: string | null }
  /**
   * Keys deleted from this screen (`list`: as it is before they leave it): the cursor takes the
   * next key without a "gone" warning, their marks go, the count is said.
   */
  | { readonly type: "deleted"; readonly ids: readonly string[]; readonly list: SelectionList };

/** The status lines that describe the Keys list and so do not follow to another view. */
function keysOnly(s: Status | null): boolean {
  return s !== null && s.text.startsWith("Showing the keys of group");
}

// Every reset of the selection by the user (a new search text, new filters, esc) is a fresh
// top() object: the shell tells a reset from a data change under the cursor by identity.

function clampMove(from: number, move: Move, count: number): number {
  const to = move === "top" ? 0 : move === "bottom" ? count - 1 : from + move;
  return Math.max(0, Math.min(count - 1, to));
}

export function plural(n: number, what: string): string {
  return `${formatInteger(n)} ${what}${n === 1 ? "" : "s"}`;
}

/** True when the key edits the search text (so the search line consumes it). */
export function isSearchKey(query: TextState, ev: KeyEvent): boolean {
  if (ev.special === "up" || ev.special === "down" || ev.special === "pageUp" || ev.special === "pageDown") return false;
  return applyTextKey(query, ev, SEARCH_EDIT) !== null;
}

/** The message when the selected key disappeared under the cursor. */
export function goneMessage(gone: string, now: Selection): string {
  const on = now.name === null ? "" : `; the cursor is on ${JSON.stringify(now.name)}`;
  return `The selected key ${JSON.stringify(gone)} is gone (deleted)${on}`;
}

export function uiReducer(s: UiState, a: UiAction): UiState {
  switch (a.type) {
    case "view": {
      const view: View = a.view !== "next" ? a.view : s.view === "keys" ? "groups" : s.view === "groups" ? "usage" : "keys";
      return { ...s, view, searching: view === "keys" ? s.searching : false, status: view !== "keys" && keysOnly(s.status) ? null : s.status };
    }
    case "metric.next":
      return { ...s, metric: METRICS[(METRICS.indexOf(s.metric) + 1) % METRICS.length] as Metric };
    case "search.open":
      return { ...s, searching: true, query: textAt(s.query.value) };
    case "search.close":
      return a.clear ? { ...s, searching: false, query: textAt(""), sel: s.query.value === "" ? s.sel : top() } : { ...s, searching: false };
    case "search.key": {
      // Applied to the state as it is when the key is reduced: keys typed faster than React
      // renders each edit the text the previous one left.
      const query = applyTextKey(s.query, a.ev, SEARCH_EDIT);
      if (query === null) return s;
      return { ...s, query, sel: isMotion(a.ev) || query.value === s.query.value ? s.sel : top() };
    }
    case "filters":
      return { ...s, filters: a.filters, sel: top() };
    case "sel.move": {
      const sel = moveSelection(s.sel, a.move, a.list);
      return sel === s.sel ? s : { ...s, sel };
    }
    case "sel.sync": {
      const r = syncSelection(s.sel, a.list, a.prev);
      if (r === null) return s;
      return r.gone === null ? { ...s, sel: r.next } : { ...s, sel: r.next, status: { text: goneMessage(r.gone, r.next), tone: "warn" } };
    }
    case "group.move": {
      if (a.count === 0) return s;
      const to = clampMove(Math.min(s.groupCursor, a.count - 1), a.move, a.count);
      return to === s.groupCursor ? s : { ...s, groupCursor: to };
    }
    case "help.open":
      return { ...s, overlay: { kind: "help" }, helpScroll: 0 };
    case "help.scroll": {
      const to = clampMove(Math.min(s.helpScroll, a.max), a.move, a.max + 1);
      return to === s.helpScroll ? s : { ...s, helpScroll: to };
    }
    case "mark.toggle": {
      const marks = new Set(s.marks);
      if (marks.has(a.id)) marks.delete(a.id);
      else marks.add(a.id);
      return { ...s, marks };
    }
    case "mark.all": {
      const all = a.ids.every((id) => s.marks.has(id));
      const marks = new Set(s.marks);
      for (const id of a.ids) {
        if (all) marks.delete(id);
        else marks.add(id);
      }
      const n = a.ids.length;
      const text = all ? `Unmarked ${plural(n, "key")}` : `Marked ${formatInteger(n)} visible key${n === 1 ? "" : "s"}`;
      return { ...s, marks, status: { text, tone: "info" } };
    }
    case "marks.clear":
      return s.marks.size === 0 ? s : { ...s, marks: NO_MARKS };
    case "marks.keep": {
      if (s.marks.size === 0) return s;
      const kept = [...s.marks].filter(a.exists);
      return kept.length === s.marks.size ? s : { ...s, marks: new Set(kept) };
    }
    case "back":
      if (s.query.value !== "") return { ...s, query: textAt(""), sel: top(), status: { text: "Search cleared", tone: "info" } };
      if (activeFilterCount(s.filters) > 0) return { ...s, filters: NO_FILTERS, sel: top(), status: { text: "Filters cleared", tone: "info" } };
      if (s.marks.size > 0) return { ...s, marks: NO_MARKS, status: { text: "Marks cleared", tone: "info" } };
      return s;
    case "group.open":
      return {
        ...s,
        filters: { ...s.filters, group: a.group },
        sel: top(),
        view: "keys",
        status: { text: `Showing the keys of group ${a.group} (esc clears)`, tone: "info" },
      };
    case "open":
      return { ...s, overlay: a.overlay };
    case "close":
      return s.overlay.kind === "none" ? s : { ...s, overlay: NONE };
    case "status":
      return { ...s, status: a.status };
    case "busy":
      return { ...s, busy: a.label };
    case "deleted": {
      const ids = new Set(a.ids);
      const sel = afterDelete(s.sel, ids, a.list);
      const marks = [...s.marks].some((id) => ids.has(id)) ? new Set([...s.marks].filter((id) => !ids.has(id))) : s.marks;
      return { ...s, sel, marks, status: { text: `Deleted ${plural(ids.size, "key")}`, tone: "ok" } };
    }
  }
}
