// A framed dialog with a title and a footer generated from the binding table.
import type { ReactNode } from "react";
import { Box, Text } from "ink";
import type { CommandState, Scope } from "../keys/commands.js";
import { HelpBar } from "./HelpBar.js";

export interface DialogProps {
  readonly title: string;
  readonly width: number;
  readonly footerScopes: readonly Scope[];
  readonly state?: CommandState;
  readonly color?: string;
  readonly children: ReactNode;
}

export function Dialog({ title, width, footerScopes, state, color = "cyan", children }: DialogProps): ReactNode {
  return (
    <Box flexDirection="column" borderStyle="round" borderColor={color} paddingX={1} width={width}>
      <Text bold color={color} wrap="truncate">
        {title}
      </Text>
      {children}
      <HelpBar scopes={footerScopes} state={state} width={Math.max(10, width - 4)} />
    </Box>
  );
}
