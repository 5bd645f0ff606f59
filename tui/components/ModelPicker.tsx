// Picks models for the form's model restrictions from the priced models (plus
// any already typed). Nested above the form, so it captures keys while open.
import { useState, type ReactNode } from "react";
import { Box, Text } from "ink";
import type { CommandState } from "../keys/commands.js";
import { PRIORITY, useCommandLayer } from "../keys/keypress.js";
import { Dialog } from "./Dialog.js";

export interface ModelPickerProps {
  readonly priced: readonly string[];
  readonly selected: readonly string[];
  readonly width: number;
  readonly height: number;
  readonly state: CommandState;
  readonly onDone: (models: string[]) => void;
  readonly onCancel: () => void;
  readonly onDisabled: (message: string) => void;
}

export function ModelPicker({ priced, selected, width, height, state, onDone, onCancel, onDisabled }: ModelPickerProps): ReactNode {
  const options = [...priced, ...selected.filter((m) => !priced.includes(m))];
  const [checked, setChecked] = useState<ReadonlySet<string>>(() => new Set(selected));
  const [row, setRow] = useState(0);
  const room = Math.max(3, height - 5);
  const top = Math.max(0, Math.min(row - Math.floor(room / 2), options.length - room));
  const last = Math.max(0, options.length - 1);
  useCommandLayer({
    scopes: ["picker", "list"],
    state,
    priority: PRIORITY.nested,
    modal: true,
    onDisabled,
    actions: {
      "nav.up": () => setRow((r) => Math.max(0, r - 1)),
      "nav.down": () => setRow((r) => Math.min(last, r + 1)),
      "nav.top": () => setRow(0),
      "nav.bottom": () => setRow(last),
      "nav.pageUp": () => setRow((r) => Math.max(0, r - room)),
      "nav.pageDown": () => setRow((r) => Math.min(last, r + room)),
      "picker.toggle": () => {
        const m = options[row];
        if (m === undefined) return;
        setChecked((c) => {
          const n = new Set(c);
          if (n.has(m)) n.delete(m);
          else n.add(m);
          return n;
        });
      },
      // Keep the order the operator typed, then the picker's order.
      "picker.done": () => onDone([...selected.filter((m) => checked.has(m)), ...options.filter((m) => checked.has(m) && !selected.includes(m))]),
      "picker.cancel": onCancel,
    },
  });
  return (
    <Dialog title={`Models (${checked.size} checked; none = all models)`} width={Math.min(width, 60)} footerScopes={["picker"]} state={state}>
      {options.length === 0 ? <Text dimColor>No priced models. Type names in the field instead.</Text> : null}
      {options.slice(top, top + room).map((m, i) => (
        <Box key={m}>
          <Text inverse={top + i === row} wrap="truncate">
            {checked.has(m) ? "[x] " : "[ ] "}
            {m}
            {priced.includes(m) ? "" : " (no price)"}
          </Text>
        </Box>
      ))}
    </Dialog>
  );
}
