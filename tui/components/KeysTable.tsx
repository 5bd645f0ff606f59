// The key table. Windowed: only the rows between `top` and `top + height` are
// rendered, so 100k keys cost the same per frame as 20.
import { memo, useMemo, type ReactNode } from "react";
import { Box, Text } from "ink";
import type { Key } from "../../src/gen/aisa/v1/types.js";
import {
  fit,
  formatExpiryCell,
  formatList,
  formatQuotaCell,
  formatTimeShort,
  isExpired,
  keyUsabilityOf,
  UNLIMITED,
  USABILITY_COLOR,
  type Money,
} from "../../src/display/format.js";
import { USABILITY_LABEL } from "../../src/domain/keyView.js";

export type ColumnId = "name" | "account" | "status" | "quota" | "group" | "key" | "models" | "ips" | "created" | "expires";

export interface Column {
  readonly id: ColumnId;
  readonly title: string;
  readonly width: number;
}

/** Fixed widths; Name takes what is left (at least MIN_NAME). */
const FIXED: readonly Column[] = [
  { id: "status", title: "Status", width: 8 },
  { id: "quota", title: "Remaining / Total", width: 20 },
  { id: "group", title: "Group", width: 8 },
  { id: "account", title: "Account", width: 10 },
  { id: "key", title: "Key", width: 8 },
  { id: "models", title: "Available Models", width: 16 },
  { id: "ips", title: "IP Restrictions", width: 15 },
  { id: "created", title: "Creation Time", width: 16 },
  { id: "expires", title: "Expiration Time", width: 25 },
];

/** Dropped first when the terminal is narrow (the details view shows everything). */
const DROP_ORDER: readonly ColumnId[] = ["account", "created", "ips", "models", "group", "key", "quota"];
const MIN_NAME = 12;
const MAX_NAME = 40;
export const MARK_WIDTH = 2;

/** The columns that fit in `width`, Name first. */
export function layoutColumns(width: number): Column[] {
  let fixed = [...FIXED];
  const need = (cols: readonly Column[]): number => MARK_WIDTH + cols.reduce((n, c) => n + c.width + 1, 0) + MIN_NAME + 1;
  for (const id of DROP_ORDER) {
    if (need(fixed) <= width) break;
    fixed = fixed.filter((c) => c.id !== id);
  }
  const spare = width - (need(fixed) - MIN_NAME - 1);
  const name: Column = { id: "name", title: "Name", width: Math.max(MIN_NAME, Math.min(MAX_NAME, spare - 1)) };
  return [name, ...fixed];
}

/** One cell of a key's row: its text (uncut) and colour. */
export function cell(key: Key, col: Column, money: Money, now: number): { text: string; color?: string } {
  switch (col.id) {
    case "name":
      return { text: key.name };
    case "account":
      return { text: key.accountId };
    case "status": {
      const u = keyUsabilityOf(key, now);
      return { text: USABILITY_LABEL[u], color: USABILITY_COLOR[u] };
    }
    case "quota":
      return { text: formatQuotaCell(key.quota, money) };
    case "group":
      return { text: key.group };
    case "key":
      return { text: key.maskedKey };
    case "models":
      // The models Check allows (key ∩ group), not only the key's own list.
      return { text: key.modelsRestricted ? (key.effectiveModels.length ? formatList(key.effectiveModels, col.width) : "None") : UNLIMITED };
    case "ips":
      return { text: formatList(key.ips, col.width) };
    case "created":
      return { text: formatTimeShort(key.createdAt) };
    case "expires":
      return { text: formatExpiryCell(key.expiresAt, now), color: isExpired(key.expiresAt, now) ? "red" : undefined };
  }
}

/** A run of a row's text in one colour: cells cut and padded, uncoloured neighbours joined. */
export interface Span {
  readonly text: string;
  readonly color?: string;
}

/**
 * A row's spans, kept per key object for one layout, currency and clock (a WeakMap, so a key
 * replaced by an edit or a live event is formatted again): paging back, or a search that shows
 * rows seen before, formats no cell again, and a memoised row gets the same spans.
 */
export function rowSpans(columns: readonly Column[], money: Money, now: number): (k: Key) => readonly Span[] {
  const cache = new WeakMap<Key, readonly Span[]>();
  return (k) => {
    let spans = cache.get(k);
    if (spans === undefined) {
      const out: Span[] = [];
      for (const c of columns) {
        const { text, color } = cell(k, c, money, now);
        const last = out[out.length - 1];
        const t = `${fit(text, c.width)} `;
        if (color === undefined && last !== undefined && last.color === undefined) out[out.length - 1] = { text: last.text + t };
        else out.push(color === undefined ? { text: t } : { text: t, color });
      }
      spans = out;
      cache.set(k, spans);
    }
    return spans;
  };
}

interface RowProps {
  readonly spans: readonly Span[];
  readonly selected: boolean;
  readonly marked: boolean;
}

// One <Text> per row (cells pre-cut and padded here) rather than a Box per
// cell: Ink's frame cost grows with the number of nodes it lays out and clips,
// and this keeps a 40-row frame cheap. Uncoloured cells are one string (a nested
// <Text> without a colour adds nothing to the row's text, only nodes for Ink to
// squash); the coloured ones (status, an expired date) their own <Text>. (Cells
// are cut by UTF-16 length, so a name with wide characters may push its row a
// little; the rest stays aligned.)
const Row = memo(function Row({ spans, selected, marked }: RowProps): ReactNode {
  return (
    <Text inverse={selected} wrap="truncate">
      <Text color="magenta">{marked ? "● " : selected ? "› " : "  "}</Text>
      {spans.map((s, i) =>
        s.color === undefined ? (
          s.text
        ) : (
          <Text key={i} color={s.color}>
            {s.text}
          </Text>
        ),
      )}
    </Text>
  );
});

export interface KeysTableProps {
  /** The keys of the window only (the caller slices; 100k keys never reach React props). */
  readonly rows: readonly Key[];
  /** Index (among all visible rows) of rows[0]. */
  readonly top: number;
  /** Index (among all visible rows) of the selected row. */
  readonly cursor: number;
  readonly marks: ReadonlySet<string>;
  readonly money: Money;
  readonly now: number;
  readonly width: number;
}

export function KeysTable({ rows, top, cursor, marks, money, now, width }: KeysTableProps): ReactNode {
  const columns = useMemo(() => layoutColumns(width), [width]);
  const spansOf = useMemo(() => rowSpans(columns, money, now), [columns, money, now]);
  // Rows are keyed by their place in the window, not by key id: a page or a search puts other
  // keys in the same rows, which React then updates in place (new text in the same nodes)
  // instead of unmounting and mounting a whole screen of rows (Ink's nodes and their Yoga
  // layout nodes, made and freed per keystroke).
  return (
    <Box flexDirection="column">
      <Text bold wrap="truncate">
        {"".padEnd(MARK_WIDTH)}
        {columns.map((c) => `${fit(c.title, c.width)} `).join("")}
      </Text>
      {rows.map((k, n) => (
        <Row key={n} spans={spansOf(k)} selected={top + n === cursor} marked={marks.has(k.id)} />
      ))}
    </Box>
  );
}

/** Keeps the cursor inside the window: the new first row. */
export function scrollTop(prevTop: number, cursor: number, height: number, count: number): number {
  let top = prevTop;
  if (cursor < top) top = cursor;
  if (cursor >= top + height) top = cursor - height + 1;
  return Math.max(0, Math.min(top, Math.max(0, count - height)));
}
