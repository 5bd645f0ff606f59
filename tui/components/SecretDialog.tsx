// Shown once after CreateKey: the full secret, with a copy action.
import type { ReactNode } from "react";
import { Text } from "ink";
import type { CommandState } from "../keys/commands.js";
import { PRIORITY, useCommandLayer } from "../keys/keypress.js";
import { Dialog } from "./Dialog.js";

export interface SecretDialogProps {
  readonly name: string;
  readonly secret: string;
  readonly width: number;
  readonly state: CommandState;
  readonly onCopy: () => void;
  readonly onClose: () => void;
  readonly onDisabled: (message: string) => void;
}

export function SecretDialog({ name, secret, width, state, onCopy, onClose, onDisabled }: SecretDialogProps): ReactNode {
  useCommandLayer({
    scopes: ["secret"],
    state,
    priority: PRIORITY.dialog,
    modal: true,
    onDisabled,
    actions: { "secret.copy": onCopy, "secret.close": onClose },
  });
  return (
    <Dialog title={`Key created: ${name}`} width={width} footerScopes={["secret"]} state={state} color="green">
      <Text>This is the only time the full key is shown. Store it securely.</Text>
      <Text bold color="yellow">
        {secret}
      </Text>
    </Dialog>
  );
}
