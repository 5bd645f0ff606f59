// The Keys screen's list as the selection sees it: the loaded keys, the rows the search and
// filters leave, and the cursor derived from the selected key id. Pure; tui/state/useKeyList.ts memoises it.
import type { Key } from "../../src/gen/aisa/v1/types.js";
import type { KeyIndex } from "./keyIndex.js";
import { resolveSelection, type Selection, type SelectionList } from "./selection.js";

/**
 * The data is in private fields on purpose: React's development build logs the props of every
 * re-rendered component (its performance track) and walks their own enumerable fields, so a plain
 * object holding the visible rows made it serialise 100k rows per keystroke in the component
 * tests. Private fields and prototype getters are not walked.
 */
export class KeyList implements SelectionList {
  readonly #index: KeyIndex;
  readonly #visible: readonly number[];
  readonly #byId: ReadonlyMap<string, Key>;
  // The id → row map is built on the first lookup only: a cursor on the row it was last seen
  // on never needs it (resolveSelection tries that row first), so typing a search at 100k keys
  // does not build a map of every visible row per keystroke.
  #positions: Map<string, number> | null = null;

  constructor(index: KeyIndex, visible: readonly number[], byId: ReadonlyMap<string, Key>) {
    this.#index = index;
    this.#visible = visible;
    this.#byId = byId;
  }

  /** Every loaded key, indexed for the search. */
  get index(): KeyIndex {
    return this.#index;
  }

  /** Indexes into `index.keys` of the visible rows, in order. */
  get visible(): readonly number[] {
    return this.#visible;
  }

  get byId(): ReadonlyMap<string, Key> {
    return this.#byId;
  }

  get count(): number {
    return this.#visible.length;
  }

  positionOf(id: string): number {
    this.#positions ??= new Map(this.#visible.map((i, p) => [(this.#index.keys[i] as Key).id, p]));
    return this.#positions.get(id) ?? -1;
  }

  at(p: number): Key | undefined {
    const i = this.#visible[p];
    return i === undefined ? undefined : this.#index.keys[i];
  }

  exists(id: string): boolean {
    return this.#byId.has(id);
  }
}

/** The cursor's row and key, derived from the stored selection (never written back from here). */
export function cursorOf(sel: Selection, list: KeyList): { readonly row: number; readonly key: Key | undefined } {
  const row = resolveSelection(sel, list).index;
  return { row, key: list.count > 0 ? list.index.keys[list.visible[row] as number] : undefined };
}

/** What an action applies to: the marked keys (in list order), else the selected one. */
export function targetKeys(marks: ReadonlySet<string>, selected: Key | undefined, list: KeyList): Key[] {
  if (marks.size === 0) return selected ? [selected] : [];
  return list.index.keys.filter((k) => marks.has(k.id));
}
