// The Webhooks view's dialogs: the add form (URL, events, thresholds, balance low — checked on
// every keystroke by the CLI's own parse, tui/state/webhooks.ts), the remove confirmation and the
// signing secret shown once. Keys go through the binding table's form / confirm / secret scopes.
import { useEffect, useRef, useState, type ReactNode } from "react";
import { Box, Text } from "ink";
import type { CommandState, KeyEvent } from "../keys/commands.js";
import { PRIORITY, useCommandLayer } from "../keys/keypress.js";
import type { WebhookCreateInput } from "../../src/domain/webhookInput.js";
import { checkWebhookForm, initialWebhookForm, WEBHOOK_FIELD_HINT, WEBHOOK_FIELD_LABEL, WEBHOOK_FIELDS, webhookFieldOf, type WebhookField, type WebhookFormValues } from "../state/webhooks.js";
import { applyTextKey, isMotion, textAt, type TextState } from "../state/textEdit.js";
import { Dialog } from "./Dialog.js";

type TextField = Exclude<WebhookField, "submit">;
const LABEL_WIDTH = 15;

function TextValue({ t, focused, placeholder }: { t: TextState; focused: boolean; placeholder: string }): ReactNode {
  if (!focused) return <Text dimColor={t.value === ""}>{t.value === "" ? placeholder : t.value}</Text>;
  return (
    <Text>
      {t.value.slice(0, t.cursor)}
      <Text inverse>{t.value.slice(t.cursor, t.cursor + 1) || " "}</Text>
      {t.value.slice(t.cursor + 1)}
    </Text>
  );
}

export interface WebhookFormProps {
  readonly width: number;
  readonly state: CommandState;
  /** Resolves to the server's error message, or null on success (the parent then closes the form). */
  readonly onSubmit: (request: WebhookCreateInput) => Promise<string | null>;
  readonly onCancel: () => void;
  readonly onDisabled: (message: string) => void;
}

export function WebhookForm({ width, state, onSubmit, onCancel, onDisabled }: WebhookFormProps): ReactNode {
  const init = initialWebhookForm();
  const [texts, setTexts] = useState<Record<TextField, TextState>>(() => ({
    url: textAt(init.url),
    events: textAt(init.events),
    thresholds: textAt(init.thresholds),
    balanceLow: textAt(init.balanceLow),
  }));
  const [focus, setFocus] = useState<WebhookField>("url");
  const [dirty, setDirty] = useState<ReadonlySet<WebhookField>>(new Set());
  const [attempted, setAttempted] = useState(false);
  const [serverError, setServerError] = useState<{ field: WebhookField | null; message: string } | null>(null);
  const [submitting, setSubmitting] = useState(false);
  const mounted = useRef(true);
  useEffect(
    () => () => {
      mounted.current = false;
    },
    [],
  );

  const values: WebhookFormValues = { url: texts.url.value, events: texts.events.value, thresholds: texts.thresholds.value, balanceLow: texts.balanceLow.value };
  const check = checkWebhookForm(values);
  const move = (delta: number): void => {
    const i = WEBHOOK_FIELDS.indexOf(focus);
    setFocus(WEBHOOK_FIELDS[Math.max(0, Math.min(WEBHOOK_FIELDS.length - 1, i + delta))] ?? "url");
  };
  const editText = (f: TextField, ev: KeyEvent): boolean => {
    const opts = { maxLength: f === "url" ? 2048 : 512 };
    if (applyTextKey(texts[f], ev, opts) === null) return false;
    setTexts((t) => ({ ...t, [f]: applyTextKey(t[f], ev, opts) ?? t[f] }));
    if (!isMotion(ev)) {
      setDirty((d) => (d.has(f) ? d : new Set([...d, f])));
      if (serverError?.field === f || serverError?.field === null) setServerError(null);
    }
    return true;
  };
  const submit = (): void => {
    if (submitting) return;
    setAttempted(true);
    if (!check.ok) {
      setFocus(check.field);
      onDisabled("submit: fix the field marked in red");
      return;
    }
    setSubmitting(true);
    setServerError(null);
    onSubmit(check.request).then(
      (err) => {
        if (!mounted.current) return;
        setSubmitting(false);
        if (err !== null) {
          const field = webhookFieldOf(err);
          setServerError({ field, message: err });
          if (field) setFocus(field);
        }
      },
      (e: unknown) => {
        if (!mounted.current) return;
        setSubmitting(false);
        setServerError({ field: null, message: e instanceof Error ? e.message : String(e) });
      },
    );
  };

  useCommandLayer({
    scopes: ["form"],
    state,
    priority: PRIORITY.dialog,
    modal: true,
    acceptsPaste: focus !== "submit",
    onDisabled,
    actions: {
      "form.next": () => move(1),
      "form.prev": () => move(-1),
      "form.accept": () => (focus === "submit" ? submit() : move(1)),
      "form.submit": submit,
      "form.cancel": onCancel,
    },
    fallback: (ev) => (focus !== "submit" ? editText(focus, ev) : false),
  });

  const errorOf = (f: WebhookField): string | null => {
    if (serverError && serverError.field === f) return `server: ${serverError.message}`;
    return !check.ok && check.field === f && (attempted || dirty.has(f)) ? check.message : null;
  };
  const valueWidth = Math.max(10, width - LABEL_WIDTH - 8);
  const placeholder: Readonly<Record<TextField, string>> = { url: "https://ops.example.com/aisa", events: "blank = all", thresholds: "50,80,100", balanceLow: "0 = off" };

  return (
    <Dialog title="Add a webhook endpoint" width={width} footerScopes={["form"]} state={state}>
      {(["url", "events", "thresholds", "balanceLow"] as const).map((f) => {
        const err = errorOf(f);
        return (
          <Box key={f} flexDirection="column">
            <Box>
              <Text color={focus === f ? "cyan" : undefined} bold={focus === f}>
                {focus === f ? "› " : "  "}
              </Text>
              <Box width={LABEL_WIDTH} flexShrink={0}>
                <Text bold={focus === f}>{WEBHOOK_FIELD_LABEL[f]}</Text>
              </Box>
              <Box width={valueWidth}>
                <Text wrap="truncate">
                  <TextValue t={texts[f]} focused={focus === f} placeholder={placeholder[f]} />
                </Text>
              </Box>
            </Box>
            {focus === f ? (
              <Text dimColor wrap="truncate">
                {"".padEnd(LABEL_WIDTH + 2)}
                {WEBHOOK_FIELD_HINT[f]}
              </Text>
            ) : null}
            {err !== null ? (
              <Text color="red" wrap="truncate">
                {"".padEnd(LABEL_WIDTH + 2)}✗ {err}
              </Text>
            ) : null}
          </Box>
        );
      })}
      <Box>
        <Text color={focus === "submit" ? "cyan" : undefined}>{focus === "submit" ? "› " : "  "}</Text>
        <Text inverse={focus === "submit"} bold>
          {submitting ? " [ Adding… ] " : " [ Add ] "}
        </Text>
      </Box>
      {serverError && serverError.field === null ? (
        <Text color="red" wrap="wrap">
          ✗ server: {serverError.message}
        </Text>
      ) : null}
    </Dialog>
  );
}

export interface ConfirmRemoveProps {
  readonly url: string;
  readonly pending: number;
  readonly width: number;
  readonly state: CommandState;
  readonly onCancel: () => void;
  readonly onConfirm: () => void;
  readonly onDisabled: (message: string) => void;
}

/** "Remove endpoint …?" with Cancel focused first (as the key delete dialog). */
export function ConfirmRemove({ url, pending, width, state, onCancel, onConfirm, onDisabled }: ConfirmRemoveProps): ReactNode {
  const [focus, setFocus] = useState<"cancel" | "remove">("cancel");
  useCommandLayer({
    scopes: ["confirm"],
    state,
    priority: PRIORITY.dialog,
    modal: true,
    onDisabled,
    actions: {
      "confirm.switch": () => setFocus((f) => (f === "cancel" ? "remove" : "cancel")),
      "confirm.activate": () => (focus === "remove" ? onConfirm() : onCancel()),
      "confirm.cancel": onCancel,
    },
  });
  return (
    <Dialog title="Remove webhook endpoint" width={width} footerScopes={["confirm"]} state={state} color="red">
      <Text wrap="truncate">Remove {url}?</Text>
      <Text dimColor wrap="truncate">
        {pending > 0 ? `Its ${pending} pending deliveries are dropped. ` : ""}Nothing more is sent to it; this cannot be undone.
      </Text>
      <Text>
        <Text bold inverse={focus === "cancel"}>{`${focus === "cancel" ? "›" : " "} [ Cancel ] `}</Text>
        {"  "}
        <Text bold color="red" inverse={focus === "remove"}>{`${focus === "remove" ? "›" : " "} [ Remove ] `}</Text>
      </Text>
    </Dialog>
  );
}

export interface WebhookSecretProps {
  readonly url: string;
  readonly secret: string;
  readonly width: number;
  readonly state: CommandState;
  readonly onCopy: () => void;
  readonly onClose: () => void;
  readonly onDisabled: (message: string) => void;
}

/** The new endpoint's signing secret, shown once (CreateWebhook returns it only then). */
export function WebhookSecret({ url, secret, width, state, onCopy, onClose, onDisabled }: WebhookSecretProps): ReactNode {
  useCommandLayer({ scopes: ["secret"], state, priority: PRIORITY.dialog, modal: true, onDisabled, actions: { "secret.copy": onCopy, "secret.close": onClose } });
  return (
    <Dialog title={`Webhook added: ${url}`} width={width} footerScopes={["secret"]} state={state} color="green">
      <Text>Its signing secret, shown only this once. Receivers verify x-aisa-signature with it:</Text>
      <Text bold color="yellow">
        {secret}
      </Text>
    </Dialog>
  );
}
