// Full secrets for manual copy (when no clipboard could be used, or on `C`).
import type { ReactNode } from "react";
import { Text } from "ink";
import type { RevealedKey } from "../client.js";
import type { CommandState } from "../keys/commands.js";
import { PRIORITY, useCommandLayer } from "../keys/keypress.js";
import { Dialog } from "./Dialog.js";

export interface RevealDialogProps {
  readonly keys: readonly RevealedKey[];
  readonly note: string;
  readonly width: number;
  readonly height: number;
  readonly state: CommandState;
  readonly onClose: () => void;
  readonly onDisabled: (message: string) => void;
}

export function RevealDialog({ keys, note, width, height, state, onClose, onDisabled }: RevealDialogProps): ReactNode {
  useCommandLayer({
    scopes: ["reveal"],
    state,
    priority: PRIORITY.dialog,
    modal: true,
    onDisabled,
    actions: { "reveal.close": onClose },
  });
  const room = Math.max(1, height - 6);
  return (
    <Dialog title={`Full secrets (${keys.length})`} width={width} footerScopes={["reveal"]} state={state} color="yellow">
      <Text dimColor wrap="truncate">
        {note}
      </Text>
      {keys.slice(0, room).map((k) => (
        <Text key={k.id}>
          <Text dimColor>{k.name}: </Text>
          {k.secret}
        </Text>
      ))}
      {keys.length > room ? <Text dimColor>… {keys.length - room} more (copy them with c, or mark fewer)</Text> : null}
    </Dialog>
  );
}
