// The TUI's screen state and its transitions, as one reducer tested without Ink
// (test/tui/issue17.test.tsx). tui/App.tsx holds the data (keys, groups, live usage) and the
// effects; every rule about what a key press does to the screen state lives here: what esc
// clears first, that a new search or filter starts at the top, which status line follows to
// another view, how marks toggle.
import { formatInteger } from "../../src/display/format.js";
import type { Key } from "../../src/gen/aisa/v1/types.js";
import type { RevealedKey } from "../client.js";
import type { View } from "../components/Chrome.js";
import { activeFilterCount, NO_FILTERS, type KeyFilters } from "./keyIndex.js";
import { TOP, type Selection } from "./selection.js";
import { textAt, type TextState } from "./textEdit.js";
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
  readonly groupCursor: number;
  readonly helpScroll: number;
  readonly status: Status | null;
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

type Update<T> = T | ((prev: T) => T);

export type UiAction =
  /** Plain field updates (value or functional), for state with no rule attached. */
  | { readonly type: "set"; readonly patch: { readonly [K in keyof UiState]?: Update<UiState[K]> } }
  | { readonly type: "view"; readonly view: View | "next" }
  | { readonly type: "metric.next" }
  /** A new search text: the list starts at its top. */
  | { readonly type: "query"; readonly query: Update<TextState>; readonly keepSelection?: boolean }
  /** New filters: the list starts at its top. */
  | { readonly type: "filters"; readonly filters: KeyFilters }
  | { readonly type: "mark.toggle"; readonly id: string }
  | { readonly type: "mark.all"; readonly ids: readonly string[] }
  | { readonly type: "marks.keep"; readonly exists: (id: string) => boolean }
  /** esc on the list: clears the search, else the filters, else the marks. */
  | { readonly type: "back" }
  /** enter on a group: its keys, with a status line that stays on the Keys view. */
  | { readonly type: "group.open"; readonly group: string };

function apply<T>(u: Update<T>, prev: T): T {
  return typeof u === "function" ? (u as (p: T) => T)(prev) : u;
}

/** The status lines that describe the Keys list and so do not follow to another view. */
function keysOnly(s: Status | null): boolean {
  return s !== null && s.text.startsWith("Showing the keys of group");
}

export function uiReducer(s: UiState, a: UiAction): UiState {
  switch (a.type) {
    case "set": {
      const next: Record<string, unknown> = { ...s };
      for (const [k, u] of Object.entries(a.patch)) next[k] = apply(u as Update<unknown>, (s as unknown as Record<string, unknown>)[k]);
      return next as unknown as UiState;
    }
    case "view": {
      const view: View = a.view !== "next" ? a.view : s.view === "keys" ? "groups" : s.view === "groups" ? "usage" : "keys";
      return { ...s, view, searching: view === "keys" ? s.searching : false, status: view !== "keys" && keysOnly(s.status) ? null : s.status };
    }
    case "metric.next":
      return { ...s, metric: METRICS[(METRICS.indexOf(s.metric) + 1) % METRICS.length] as Metric };
    case "query":
      return { ...s, query: apply(a.query, s.query), sel: a.keepSelection ? s.sel : TOP };
    case "filters":
      return { ...s, filters: a.filters, sel: TOP };
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
      const text = all ? `Unmarked ${formatInteger(n)} key${n === 1 ? "" : "s"}` : `Marked ${formatInteger(n)} visible key${n === 1 ? "" : "s"}`;
      return { ...s, marks, status: { text, tone: "info" } };
    }
    case "marks.keep": {
      if (s.marks.size === 0) return s;
      const kept = [...s.marks].filter(a.exists);
      return kept.length === s.marks.size ? s : { ...s, marks: new Set(kept) };
    }
    case "back":
      if (s.query.value !== "") return { ...s, query: textAt(""), sel: TOP, status: { text: "Search cleared", tone: "info" } };
      if (activeFilterCount(s.filters) > 0) return { ...s, filters: NO_FILTERS, sel: TOP, status: { text: "Filters cleared", tone: "info" } };
      if (s.marks.size > 0) return { ...s, marks: NO_MARKS, status: { text: "Marks cleared", tone: "info" } };
      return s;
    case "group.open":
      return {
        ...s,
        filters: { ...s.filters, group: a.group },
        sel: TOP,
        view: "keys",
        status: { text: `Showing the keys of group ${a.group} (esc clears)`, tone: "info" },
      };
  }
}
