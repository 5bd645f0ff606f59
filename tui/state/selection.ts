// The key list's selection, held as a key id (not a row index): a key inserted above, a
// reload, a filter that re-sorts the rows, or someone else's delete must never slide another
// key under the cursor, or the next `x` or `d` hits a key the user did not pick. Pure, tested
// without Ink (test/tui/appState.test.ts, test/tui/issue17.test.tsx).

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

/** A fresh "top of the list" selection: a search or filter the user changed starts here. */
export function top(): Selection {
  return { id: null, index: 0, name: null };
}

/**
 * The selection after the list changed under it, or null when what is shown does not change.
 * `prev`: the list the cursor was last drawn on, when the list changed by data (a reload, a live
 * event, the clock) and not by the user's search or filter; a cursor not yet bound to a key then
 * binds to the key it was on there, so a key inserted above never slides another key under it
 * (a key that vanished from under an unbound cursor is not reported: nothing was picked).
 * `gone`: the selected key no longer exists (the cursor stays at its row).
 */
export function syncSelection(sel: Selection, list: SelectionList, prev: SelectionList | null): { readonly next: Selection; readonly gone: string | null } | null {
  let bound = sel;
  if (sel.id === null) {
    const k = prev !== null && prev.count > 0 ? prev.at(clamp(sel.index, prev.count)) : undefined;
    if (!k || !list.exists(k.id)) return null;
    bound = { id: k.id, index: clamp(sel.index, prev?.count ?? 0), name: k.name };
  }
  const r = resolveSelection(bound, list);
  // An unbound cursor whose key is still on its row: nothing to store (it binds again next time).
  if (sel.id === null && r.index === clamp(sel.index, list.count)) return null;
  return r.next === sel ? null : { next: r.next, gone: r.gone };
}

/**
 * The selection after the user deleted `ids`: when the selected key is one of them, the cursor
 * takes the next key that stays (else the one before), so no "gone" warning follows.
 */
export function afterDelete(sel: Selection, ids: ReadonlySet<string>, list: SelectionList): Selection {
  const from = resolveSelection(sel, list).index;
  const under = list.count > 0 ? list.at(from) : undefined;
  if (!under || !ids.has(under.id)) return sel;
  for (const step of [1, -1]) {
    for (let p = from; p >= 0 && p < list.count; p += step) {
      const k = list.at(p);
      if (k && !ids.has(k.id)) return { id: k.id, index: p, name: k.name };
    }
  }
  return top();
}
