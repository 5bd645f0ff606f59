// The key list's selection, held as a key id (not a row index): a key inserted above, a
// reload, a filter that re-sorts the rows, or someone else's delete must never slide another
// key under the cursor, or the next `x` or `d` hits a key the user did not pick. Pure, tested
// without Ink (test/tui/issue17.test.tsx).

export interface Selection {
  /** The selected key's id; null = "the row at `index`" (before the first bind, after a reset). */
  readonly id: string | null;
  /** Where the selected row was last seen: the fallback when the key disappears. */
  readonly index: number;
  /** The selected key's name (to say which key disappeared). */
  readonly name: string | null;
}

export const TOP: Selection = { id: null, index: 0, name: null };

/** The visible list as the selection sees it. */
export interface SelectionList {
  readonly count: number;
  /** Visible position of a key id, or -1 when it is not visible. */
  positionOf(id: string): number;
  /** The key at a visible position. */
  at(position: number): { readonly id: string; readonly name: string } | undefined;
  /** True when the key still exists (it may be hidden by the search or filters). */
  exists(id: string): boolean;
}

export interface Resolved {
  /** The cursor's row. */
  readonly index: number;
  /** The selected key no longer exists (deleted): the cursor fell back to the row at its old place. */
  readonly gone: string | null;
  /** The selection to store (bound to the key under the cursor), or the same object when unchanged. */
  readonly next: Selection;
}

function clamp(i: number, count: number): number {
  return Math.max(0, Math.min(i, count - 1));
}

/** Where the cursor is now: on the selected key wherever it moved, else at its last row. */
export function resolveSelection(sel: Selection, list: SelectionList): Resolved {
  let index = clamp(sel.index, list.count);
  let gone: string | null = null;
  if (sel.id !== null) {
    // Usually the key is still on the row it was last seen on: that row first (O(1)); the
    // lookup (a map of every visible row, built once per list) only when the list changed under it.
    const p = list.count > 0 && list.at(index)?.id === sel.id ? index : list.positionOf(sel.id);
    if (p >= 0) index = p;
    else if (!list.exists(sel.id)) gone = sel.name ?? sel.id;
  }
  const k = list.count > 0 ? list.at(index) : undefined;
  const id = k?.id ?? null;
  // A key hidden by the search keeps its id only while nothing else is under the cursor.
  const next = id === sel.id && index === sel.index ? sel : { id, index, name: k?.name ?? null };
  return { index, gone, next };
}

/** The selection after a cursor move (delta rows, or to the top/bottom). */
export function moveSelection(sel: Selection, delta: number | "top" | "bottom", list: SelectionList): Selection {
  if (list.count === 0) return sel;
  const from = resolveSelection(sel, list).index;
  const to = clamp(delta === "top" ? 0 : delta === "bottom" ? list.count - 1 : from + delta, list.count);
  const k = list.at(to);
  return { id: k?.id ?? null, index: to, name: k?.name ?? null };
}
