// Delete confirmation, k9s style: Cancel is focused when it opens, the message
// states how many keys and how many marked keys the filter hides, and deleting
// more than one key requires typing the count.
import { useState, type ReactNode } from "react";
import { Box, Text } from "ink";
import type { CommandState } from "../keys/commands.js";
import { PRIORITY, useCommandLayer } from "../keys/keypress.js";
import { applyTextKey, textAt } from "../state/textEdit.js";
import { Dialog } from "./Dialog.js";

export interface ConfirmDeleteProps {
  readonly count: number;
  /** Marked keys the current filter hides (they are deleted too). */
  readonly hidden: number;
  /** Names of (some of) the keys, for the message. */
  readonly names: readonly string[];
  readonly width: number;
  readonly state: CommandState;
  readonly onCancel: () => void;
  readonly onConfirm: () => void;
  readonly onDisabled: (message: string) => void;
}

export function confirmMessage(count: number, hidden: number, names: readonly string[]): string {
  const what = count === 1 && names[0] !== undefined ? `key ${JSON.stringify(names[0])}` : `${count} keys`;
  const hiddenText = hidden > 0 ? ` (${hidden} currently hidden by the filter)` : "";
  return `Delete ${what}?${hiddenText}`;
}

/** "› [ Cancel ]" when focused (visible without colours too), "  [ Delete 2 ]" otherwise. */
function button(label: string, focused: boolean): string {
  return `${focused ? "›" : " "} [ ${label} ] `;
}

export function ConfirmDelete(props: ConfirmDeleteProps): ReactNode {
  const { count, hidden, names, width, onCancel, onConfirm, onDisabled } = props;
  const [focus, setFocus] = useState<"cancel" | "delete">("cancel");
  const [typed, setTyped] = useState(textAt(""));
  const needsCount = count > 1;
  const blocked = focus === "delete" && needsCount && typed.value !== String(count) ? `type ${count} to confirm` : null;
  const state: CommandState = { ...props.state, confirmBlocked: blocked };

  useCommandLayer({
    scopes: ["confirm"],
    state,
    priority: PRIORITY.dialog,
    modal: true,
    onDisabled,
    actions: {
      "confirm.switch": () => setFocus((f) => (f === "cancel" ? "delete" : "cancel")),
      "confirm.activate": () => (focus === "cancel" ? onCancel() : onConfirm()),
      "confirm.cancel": onCancel,
    },
    fallback: (ev) => {
      if (!needsCount) return false;
      const opts = { accept: /\d/, maxLength: 7 };
      if (applyTextKey(typed, ev, opts) === null) return false;
      setTyped((t) => applyTextKey(t, ev, opts) ?? t);
      return true;
    },
  });

  return (
    <Dialog title="Delete keys" width={Math.min(width, 76)} footerScopes={["confirm"]} state={state} color="red">
      <Text wrap="wrap">{confirmMessage(count, hidden, names)}</Text>
      {count > 1 && names.length > 0 ? (
        <Text dimColor wrap="truncate">
          {names.slice(0, 5).join(", ")}
          {count > 5 ? `, … (${count - 5} more)` : ""}
        </Text>
      ) : null}
      <Text>Their secrets stop working at once. This cannot be undone.</Text>
      {needsCount ? (
        <Text>
          Type {count} to confirm: <Text inverse>{typed.value || " "}</Text>
        </Text>
      ) : null}
      <Box marginTop={1}>
        <Text inverse={focus === "cancel"} bold={focus === "cancel"}>
          {button("Cancel", focus === "cancel")}
        </Text>
        <Text> </Text>
        <Text inverse={focus === "delete"} bold={focus === "delete"} color="red" dimColor={needsCount && typed.value !== String(count)}>
          {button(`Delete ${count}`, focus === "delete")}
        </Text>
        {/* Say why Delete does nothing yet, before it is pressed. */}
        {blocked !== null ? <Text color="yellow"> type {count} first</Text> : null}
      </Box>
    </Dialog>
  );
}
