// The Keys screen's list and the cursor on it: the loaded keys, the rows the search and filters
// leave (memoised: moving the cursor never re-filters; typing narrows from the previous result,
// KeyFilterCache), and the selected key.
//
// The cursor is derived from the selected key id in every render and never written back from
// a render. When the list changes, the reducer re-binds the selection and reports a vanished key
// (sel.sync) — in a layout effect, so before the next key is delivered, and only when that
// changes what is shown (each dispatch there is one more frame to draw).
import { useLayoutEffect, useMemo, useRef } from "react";
import type { Key } from "../../src/gen/aisa/v1/types.js";
import type { UiAction, UiState } from "./appState.js";
import { hiddenMarkCount, indexKeys, KeyFilterCache } from "./keyIndex.js";
import { cursorOf, KeyList } from "./keyList.js";
import { syncSelection, type Selection } from "./selection.js";

export interface KeyListView {
  readonly keyById: ReadonlyMap<string, Key>;
  readonly visible: readonly number[];
  readonly list: KeyList;
  /** Marked keys the search and filters hide. */
  readonly hiddenMarks: number;
  /** The cursor's row and key. */
  readonly cursor: number;
  readonly selected: Key | undefined;
  /** The list as last committed (for calls that finish later). */
  readonly current: () => KeyList;
}

export function useKeyList(keys: readonly Key[], ui: Pick<UiState, "query" | "filters" | "marks" | "sel">, now: number, dispatch: (a: UiAction) => void): KeyListView {
  const keyById = useMemo(() => new Map(keys.map((k) => [k.id, k])), [keys]);
  const index = useMemo(() => indexKeys(keys), [keys]);
  const filterCache = useRef(new KeyFilterCache()).current;
  const visible = useMemo(() => filterCache.filter(index, ui.query.value, ui.filters, now), [filterCache, index, ui.query.value, ui.filters, now]);
  const list = useMemo(() => new KeyList(index, visible, keyById), [index, visible, keyById]);
  const hiddenMarks = useMemo(() => hiddenMarkCount(ui.marks, index, visible), [ui.marks, index, visible]);
  const { row: cursor, key: selected } = cursorOf(ui.sel, list);

  const drawn = useRef<{ readonly list: KeyList; readonly sel: Selection } | null>(null);
  useLayoutEffect(() => {
    const last = drawn.current;
    drawn.current = { list, sel: ui.sel };
    if (last === null || last.list === list) return;
    // The same selection object: the data changed under the cursor (a reset by the user is a new object).
    const prev = ui.sel === last.sel ? last.list : null;
    if (syncSelection(ui.sel, list, prev) !== null) dispatch({ type: "sel.sync", list, prev });
  }, [list, ui.sel, dispatch]);

  const committed = useRef(list);
  useLayoutEffect(() => {
    committed.current = list;
  }, [list]);
  const current = useMemo(() => () => committed.current, []);

  return { keyById, visible, list, hiddenMarks, cursor, selected, current };
}
