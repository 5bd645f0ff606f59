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

export function HelpBar({ scopes, state, width, table = COMMANDS }: HelpBarProps): ReactNode {
  const items = helpBarItems(scopes, state, table);
  const parts: ReactNode[] = [];
  let used = 0;
  for (const item of items) {
    const len = item.key.length + 1 + item.short.length + 2;
    if (used + len > width) break;
    used += len;
    parts.push(
      <Text key={item.id} dimColor={item.disabled}>
        <Text bold color={item.disabled ? undefined : "cyan"}>
          {item.key}
        </Text>{" "}
        {item.short}
        {"  "}
      </Text>,
    );
  }
  return (
    <Box width={width} height={1} overflow="hidden">
      <Text wrap="truncate">{parts}</Text>
    </Box>
  );
}
