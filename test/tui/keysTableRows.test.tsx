// The key table's rows as Ink draws them, escapes included: a row is its cells joined, uncoloured
// neighbours in one string (the same text and escapes as one <Text> per cell), rows are updated in
// place when the window shows other keys, and a row's spans are kept per key object.
import { createRequire } from "node:module";
import { pathToFileURL } from "node:url";
import { expect } from "chai";
import { render } from "ink-testing-library";
import { Box, Text } from "ink";
import type { ReactElement, ReactNode } from "react";
import { fit, toMoney } from "../../src/display/format.js";
import { KeyStatus, type Key } from "../../src/gen/aisa/v1/types.js";
import { cell, KeysTable, layoutColumns, MARK_WIDTH, rowSpans } from "../../tui/components/KeysTable.js";
import { makeKey, T0 } from "./fakeApi.js";

const DAY = 86_400_000;
const MONEY = toMoney("500000", "USD");

/** Every shape of row: plain, quota, disabled, expired, restricted, wide and non-ASCII names. */
function keysOf(n: number, from = 0): Key[] {
  return Array.from({ length: n }, (_, j) => {
    const i = from + j;
    return makeKey(i, {
      name: i % 7 === 0 ? `clé-${i}-ñ 名前` : `key-${i}`,
      status: i % 5 === 0 ? KeyStatus.KEY_STATUS_DISABLED : KeyStatus.KEY_STATUS_ENABLED,
      quota: i % 3 === 0 ? { unlimited: false, total: "5000000", remaining: String(i * 1000), used: "0", reserved: i % 9 === 0 ? "10" : "0" } : undefined,
      expiresAt: i % 4 === 0 ? new Date(T0 - 1000 * (i + 1)) : i % 4 === 1 ? new Date(T0 + 3_600_000 * (i + 1)) : undefined,
      models: i % 6 === 0 ? ["gpt-4o-mini", "gpt-4o", "o3"] : [],
      ips: i % 8 === 0 ? ["10.0.0.0/8", "2001:db8::/32"] : [],
    });
  });
}

/** The table as it was drawn before cells were joined: one <Text> per cell, rows keyed by id. */
function Reference({ rows, cursor, marks, width }: { rows: readonly Key[]; cursor: number; marks: ReadonlySet<string>; width: number }): ReactNode {
  const columns = layoutColumns(width);
  return (
    <Box flexDirection="column">
      <Text bold wrap="truncate">
        {"".padEnd(MARK_WIDTH)}
        {columns.map((c) => `${fit(c.title, c.width)} `).join("")}
      </Text>
      {rows.map((k, n) => (
        <Text key={k.id} inverse={n === cursor} wrap="truncate">
          <Text color="magenta">{marks.has(k.id) ? "● " : n === cursor ? "› " : "  "}</Text>
          {columns.map((c) => {
            const { text, color } = cell(k, c, MONEY, T0);
            return (
              <Text key={c.id} color={color}>
                {fit(text, c.width)}{" "}
              </Text>
            );
          })}
        </Text>
      ))}
    </Box>
  );
}

describe("tui: key table rows (escapes included)", () => {
  // Ink's own chalk, with colours on (the tests' stdout is no terminal, so it would draw none).
  let chalk: { level: number };
  let level = 0;
  before(async () => {
    const ink = createRequire(import.meta.url).resolve("ink");
    chalk = ((await import(pathToFileURL(createRequire(ink).resolve("chalk")).href)) as { default: { level: number } }).default;
    level = chalk.level;
    chalk.level = 3;
  });
  after(() => {
    chalk.level = level;
  });

  const table = (rows: readonly Key[], cursor: number, marks: ReadonlySet<string>, width: number): ReactElement => (
    <KeysTable rows={rows} top={0} cursor={cursor} marks={marks} money={MONEY} now={T0} width={width} />
  );

  it("draws every row with the same text and escapes as one <Text> per cell", () => {
    const keys = keysOf(40);
    const marks = new Set([keys[3]!.id, keys[4]!.id]);
    for (const width of [80, 120, 200]) {
      const ours = render(table(keys, 4, marks, width));
      const ref = render(<Reference rows={keys} cursor={4} marks={marks} width={width} />);
      try {
        const frame = ours.lastFrame() ?? "";
        expect(frame).to.include("\u001B[31m"); // red: disabled keys, expired dates
        expect(frame).to.include("\u001B[7m"); // the selected row
        expect(frame).to.equal(ref.lastFrame());
      } finally {
        ours.unmount();
        ref.unmount();
      }
    }
  });

  it("shows other keys in the same rows as a fresh table shows them (a page, a search, an edit)", () => {
    const first = keysOf(30);
    const windows = [keysOf(30, 30), keysOf(30, 1), keysOf(12, 100), first.map((k, i) => (i === 2 ? { ...k, name: "renamed", status: KeyStatus.KEY_STATUS_DISABLED } : k))];
    const ours = render(table(first, 0, new Set(), 120));
    try {
      for (const [w, rows] of windows.entries()) {
        const cursor = w % rows.length;
        ours.rerender(table(rows, cursor, new Set([rows[1]!.id]), 120));
        const fresh = render(<Reference rows={rows} cursor={cursor} marks={new Set([rows[1]!.id])} width={120} />);
        try {
          expect(ours.lastFrame(), `window ${w}`).to.equal(fresh.lastFrame());
        } finally {
          fresh.unmount();
        }
      }
      expect(ours.lastFrame()).to.include("renamed");
    } finally {
      ours.unmount();
    }
  });

  it("keeps a row's spans per key object: the same key, the same spans; a replaced key is formatted again", () => {
    const columns = layoutColumns(120);
    const spansOf = rowSpans(columns, MONEY, T0);
    const [a, b] = keysOf(2, 4);
    const sa = spansOf(a!);
    expect(spansOf(a!)).to.equal(sa);
    expect(spansOf({ ...a! })).not.to.equal(sa);
    expect(spansOf({ ...a! }).map((s) => s.text).join("")).to.equal(sa.map((s) => s.text).join(""));
    // Uncoloured neighbours are one span; the joined text is every cell cut and padded.
    for (const k of [a!, b!]) {
      const spans = spansOf(k);
      expect(spans.map((s) => s.text).join("")).to.equal(columns.map((c) => `${fit(cell(k, c, MONEY, T0).text, c.width)} `).join(""));
      for (let i = 1; i < spans.length; i++) expect(spans[i - 1]!.color !== undefined || spans[i]!.color !== undefined, `spans ${i - 1}, ${i}`).to.equal(true);
    }
    // Another clock (the 30 s tick): another cache.
    const later = rowSpans(columns, MONEY, T0 + 400 * DAY)(a!);
    expect(later).not.to.equal(sa);
  });
});
