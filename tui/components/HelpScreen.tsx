// The `?` screen: every command of the binding table, grouped by tag, with the
// reason it is disabled right now. Generated, like the help bar.
import type { ReactNode } from "react";
import { Box, Text } from "ink";
import { COMMANDS, helpSections, type CommandState, type CommandTable, type Scope } from "../keys/commands.js";
import { HelpBar } from "./HelpBar.js";

/** Where each scope's commands apply, as the help screen says it. */
const SCOPE_LABEL: Readonly<Record<Scope, string>> = {
  global: "",
  list: "lists",
  keys: "Keys view",
  groups: "Groups view",
  usage: "Usage view",
  webhooks: "Webhooks view",
  search: "while searching",
  filters: "filter menu",
  confirm: "confirm dialogs",
  form: "key and webhook forms",
  formChoice: "key form, option fields",
  formModels: "key form, models field",
  picker: "model picker",
  secret: "new key / webhook dialog",
  reveal: "secrets view",
  details: "key details",
  help: "this screen",
};

type Line = { kind: "tag"; text: string } | { kind: "row"; keys: string; text: string; where: string; disabled: string | null };

export function helpLines(state?: CommandState, table: CommandTable = COMMANDS): Line[] {
  const out: Line[] = [];
  for (const section of helpSections(state, table)) {
    out.push({ kind: "tag", text: section.tag });
    for (const r of section.rows) {
      out.push({ kind: "row", keys: r.keys, text: r.description, where: SCOPE_LABEL[r.scope], disabled: r.disabled });
    }
  }
  return out;
}

export interface HelpScreenProps {
  readonly state?: CommandState;
  readonly width: number;
  readonly height: number;
  /** First line shown (the screen scrolls with the list keys). */
  readonly scroll: number;
  readonly table?: CommandTable;
}

export function HelpScreen({ state, width, height, scroll, table = COMMANDS }: HelpScreenProps): ReactNode {
  const lines = helpLines(state, table);
  const body = Math.max(1, height - 2);
  const top = Math.max(0, Math.min(scroll, lines.length - body));
  const keyWidth = Math.min(24, Math.max(...lines.map((l) => (l.kind === "row" ? l.keys.length : 0))) + 2);
  return (
    <Box flexDirection="column" width={width} height={height}>
      <Text bold wrap="truncate">
        Help: every key binding ({top + 1}-{Math.min(lines.length, top + body)} of {lines.length} lines)
      </Text>
      <Box flexDirection="column" height={body} overflow="hidden">
        {lines.slice(top, top + body).map((l, i) =>
          l.kind === "tag" ? (
            <Text key={`t${top + i}`} bold color="yellow" wrap="truncate">
              {l.text}
            </Text>
          ) : (
            <Box key={`r${top + i}`} width={width}>
              <Box width={keyWidth} flexShrink={0}>
                <Text color="cyan" wrap="truncate">
                  {l.keys}
                </Text>
              </Box>
              <Text wrap="truncate" dimColor={l.disabled !== null}>
                {l.text}
                {l.where ? <Text dimColor> ({l.where})</Text> : null}
                {l.disabled !== null ? <Text color="red"> — unavailable: {l.disabled}</Text> : null}
              </Text>
            </Box>
          ),
        )}
      </Box>
      <HelpBar scopes={["help"]} width={width} table={table} />
    </Box>
  );
}
