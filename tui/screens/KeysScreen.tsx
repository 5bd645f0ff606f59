// The Keys screen: the windowed key table, its commands (move, mark, toggle, copy, delete,
// create, edit, details, search, filters) and the search line's text layer. The selection and
// every rule about it live in the reducer (tui/state/appState.ts); the calls in
// tui/state/keyActions.ts.
import { useLayoutEffect, type ReactNode } from "react";
import { Box, Text } from "ink";
import type { Key } from "../../src/gen/aisa/v1/types.js";
import type { Money } from "../../src/display/format.js";
import { KeysTable, scrollTop } from "../components/KeysTable.js";
import type { Scope } from "../keys/commands.js";
import { PRIORITY, useCommandLayer } from "../keys/keypress.js";
import { isSearchKey, type Move } from "../state/appState.js";
import { confirmDelete, type KeyActions } from "../state/keyActions.js";
import { targetKeys, type KeyList } from "../state/keyList.js";
import type { RemainingOverlay } from "../state/liveKeys.js";
import type { TextState } from "../state/textEdit.js";
import type { ScreenProps, ScrollMemory } from "./types.js";

export const KEYS_SCOPES: readonly Scope[] = ["keys", "list"];

export interface KeysScreenProps extends ScreenProps {
  /** The loaded keys and the rows the search and filters leave. */
  readonly list: KeyList;
  readonly cursor: number;
  readonly selected: Key | undefined;
  readonly marks: ReadonlySet<string>;
  readonly hiddenMarks: number;
  readonly searching: boolean;
  readonly query: TextState;
  readonly loaded: boolean;
  readonly remaining: RemainingOverlay;
  readonly money: Money;
  readonly now: number;
  readonly page: number;
  readonly actions: KeyActions;
  readonly scroll: ScrollMemory;
  /** A dialog shown above the table (the filter menu, the delete confirmation, a new key). */
  readonly above?: { readonly node: ReactNode; readonly height: number };
}

export function KeysScreen(props: KeysScreenProps): ReactNode {
  const { list, cursor, selected, marks, hiddenMarks, state, active, dispatch, actions, onDisabled } = props;
  const move = (m: Move): void => dispatch({ type: "sel.move", move: m, list });
  const targets = (): Key[] => targetKeys(marks, selected, list);

  useCommandLayer({
    scopes: KEYS_SCOPES,
    state,
    priority: PRIORITY.screen,
    isActive: active,
    onDisabled,
    actions: {
      "nav.up": () => move(-1),
      "nav.down": () => move(1),
      "nav.top": () => move("top"),
      "nav.bottom": () => move("bottom"),
      "nav.pageUp": () => move(-props.page),
      "nav.pageDown": () => move(props.page),
      "keys.search": () => dispatch({ type: "search.open" }),
      "keys.filters": () => dispatch({ type: "open", overlay: { kind: "filters" } }),
      "keys.create": () => dispatch({ type: "open", overlay: { kind: "create" } }),
      "keys.edit": () => selected && dispatch({ type: "open", overlay: { kind: "edit", key: selected } }),
      "keys.toggle": () => void actions.toggle(targets()),
      "keys.delete": () => dispatch(confirmDelete(targets(), marks.size, hiddenMarks)),
      "keys.copy": () => void actions.copy(marks.size > 0 ? [...marks] : selected ? [selected.id] : [], false),
      "keys.show": () => void actions.copy(marks.size > 0 ? [...marks] : selected ? [selected.id] : [], true),
      "keys.details": () => selected && dispatch({ type: "open", overlay: { kind: "details", key: selected } }),
      "keys.mark": () => selected && dispatch({ type: "mark.toggle", id: selected.id }),
      "keys.markAll": () => dispatch({ type: "mark.all", ids: list.visible.map((i) => (list.index.keys[i] as Key).id) }),
      "keys.clearMarks": () => dispatch({ type: "marks.clear" }),
      "keys.back": () => dispatch({ type: "back" }),
    },
  });

  // The search line: takes text while open; the list's arrows fall through to the list.
  useCommandLayer({
    scopes: ["search"],
    state,
    priority: PRIORITY.inline,
    isActive: props.searching && active,
    acceptsPaste: true,
    onDisabled,
    actions: {
      "search.accept": () => dispatch({ type: "search.close", clear: false }),
      "search.cancel": () => dispatch({ type: "search.close", clear: true }),
    },
    // Whether a key edits text does not depend on the text, so this render's query decides;
    // the reducer applies the edit to the text as it is then (a burst loses no key).
    fallback: (ev) => {
      if (!isSearchKey(props.query, ev)) return false;
      dispatch({ type: "search.key", ev });
      return true;
    },
  });

  const height = props.height - (props.above?.height ?? 0);
  const rows = Math.max(0, height - 1);
  // The window keeps the cursor inside it, moving as little as it can from where it was.
  const top = rows > 0 ? scrollTop(props.scroll.current, cursor, rows, list.count) : props.scroll.current;
  useLayoutEffect(() => {
    props.scroll.current = top;
    props.scroll.rows = rows;
  });
  const table = rows <= 0 ? null : (
    <Box flexDirection="column">
      <KeysTable
        rows={list.visible.slice(top, top + rows).map((i) => props.remaining.apply(list.index.keys[i] as Key))}
        top={top}
        cursor={cursor}
        marks={marks}
        money={props.money}
        now={props.now}
        width={props.width}
      />
      {list.count === 0 && props.loaded ? (
        <Text dimColor>{list.index.keys.length === 0 ? "  No keys yet. Press n to create one." : "  No keys match the search and filters (esc clears them)."}</Text>
      ) : null}
    </Box>
  );
  return (
    <>
      {props.above?.node}
      {table}
    </>
  );
}

/** The search line as it is typed (in the status line). */
export function SearchLine({ query }: { readonly query: TextState }): ReactNode {
  return (
    <Text color="cyan">
      /{query.value.slice(0, query.cursor)}
      <Text inverse>{query.value.slice(query.cursor, query.cursor + 1) || " "}</Text>
      {query.value.slice(query.cursor + 1)}
      {"   "}
    </Text>
  );
}
