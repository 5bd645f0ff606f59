// The bottom help bar (and every dialog footer): generated from the binding
// table, never hand-written, so it cannot drift from what the keys do.
import type { ReactNode } from "react";
import { Box, Text } from "ink";
import { COMMANDS, helpBarItems, type CommandState, type CommandTable, type Scope } from "../keys/commands.js";

export interface HelpBarProps {
  readonly scopes: readonly Scope[];
  readonly state?: CommandState;
  readonly width: number;
  /** Tests pass another table to prove the bar is derived from it. */
  readonly table?: CommandTable;
}

/** Always shown, whatever the width: how to get help and how to leave. */
const ESSENTIAL: ReadonlySet<string> = new Set(["app.help", "app.quit"]);

export function HelpBar({ scopes, state, width, table = COMMANDS }: HelpBarProps): ReactNode {
  const items = helpBarItems(scopes, state, table);
  const len = (item: { key: string; short: string }) => item.key.length + 1 + item.short.length + 2;
  // The essentials are placed first in the budget (shown last); the others fill what is left.
  let used = items.filter((i) => ESSENTIAL.has(i.id)).reduce((n, i) => n + len(i), 0);
  const shown = new Set<string>(items.filter((i) => ESSENTIAL.has(i.id)).map((i) => i.id));
  for (const item of items) {
    if (ESSENTIAL.has(item.id)) continue;
    if (used + len(item) > width) break;
    used += len(item);
    shown.add(item.id);
  }
  const ordered = [...items.filter((i) => shown.has(i.id) && !ESSENTIAL.has(i.id)), ...items.filter((i) => shown.has(i.id) && ESSENTIAL.has(i.id))];
  const parts = ordered.map((item) => (
    <Text key={item.id} dimColor={item.disabled}>
      <Text bold color={item.disabled ? undefined : "cyan"}>
        {item.key}
      </Text>{" "}
      {item.short}
      {"  "}
    </Text>
  ));
  return (
    <Box width={width} height={1} overflow="hidden">
      <Text wrap="truncate">{parts}</Text>
    </Box>
  );
}
