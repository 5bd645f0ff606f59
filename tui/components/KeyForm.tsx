// The create/edit key form. Validation runs on every keystroke (bad IPs are
// flagged per line as you type, the quota shows its currency equivalent); the
// server's answer to submit is shown inline at the field its message names.
import { useEffect, useRef, useState, type ReactNode } from "react";
import { Box, Text } from "ink";
import type { Key } from "../../src/gen/aisa/v1/types.js";
import type { CommandState, KeyEvent, Scope } from "../keys/commands.js";
import { PRIORITY, useCommandLayer } from "../keys/keypress.js";
import {
  checkForm,
  checkIpLines,
  EXPIRY_OPTIONS,
  FIELD_KIND,
  fieldOfServerError,
  formFields,
  hasErrors,
  initialValues,
  parseModels,
  quotaHint,
  type FieldId,
  type FormContext,
  type FormValues,
} from "../state/keyForm.js";
import { applyTextKey, isMotion, textAt, type TextState } from "../state/textEdit.js";
import { Dialog } from "./Dialog.js";
import { ModelPicker } from "./ModelPicker.js";

type TextField = "name" | "expiresAt" | "quota" | "models" | "ips";

/** The API Keys page's own words for the form's fields. */
const LABEL: Readonly<Record<FieldId, string>> = {
  name: "Name",
  account: "Account",
  group: "Token Grouping",
  expiry: "Expiration Time",
  expiresAt: "Exact time",
  quota: "Quota",
  unlimited: "Unlimited Quota",
  models: "Model Restrictions",
  ips: "IP Whitelist",
  submit: "",
};

/** The page's sections, each opening before its first field. */
const SECTION: Partial<Readonly<Record<FieldId, string>>> = {
  name: "Basic Information",
  quota: "Quota Settings",
  models: "Access Restrictions",
};

const LABEL_WIDTH = 19;

export interface KeyFormProps {
  readonly mode: "create" | "edit";
  readonly original?: Key;
  readonly ctx: FormContext;
  readonly width: number;
  readonly height: number;
  readonly state: CommandState;
  /** Resolves to the server's error message, or null on success (the parent then closes the form). */
  readonly onSubmit: (values: FormValues) => Promise<string | null>;
  readonly onCancel: () => void;
  readonly onDisabled: (message: string) => void;
}

function isTextField(f: FieldId): f is TextField {
  return FIELD_KIND[f] === "text" || FIELD_KIND[f] === "multiline";
}

/** A one-line text value with the cursor drawn when focused. */
function TextValue({ t, focused, placeholder }: { t: TextState; focused: boolean; placeholder?: string }): ReactNode {
  if (!focused) return <Text dimColor={t.value === ""}>{t.value === "" ? (placeholder ?? "") : t.value}</Text>;
  const before = t.value.slice(0, t.cursor);
  const at = t.value.slice(t.cursor, t.cursor + 1) || " ";
  const after = t.value.slice(t.cursor + 1);
  return (
    <Text>
      {before}
      <Text inverse>{at}</Text>
      {after}
    </Text>
  );
}

export function KeyForm(props: KeyFormProps): ReactNode {
  const { mode, original, ctx, width, height, state, onSubmit, onCancel, onDisabled } = props;
  const init = initialValues(original);
  const [texts, setTexts] = useState<Record<TextField, TextState>>(() => ({
    name: textAt(init.name),
    expiresAt: textAt(init.expiresAt),
    quota: textAt(init.quota),
    models: textAt(init.models),
    ips: textAt(init.ips),
  }));
  const [group, setGroup] = useState(init.group);
  const accounts = mode === "create" ? (ctx.accounts ?? []) : [];
  const [account, setAccount] = useState(accounts.includes(init.account) ? init.account : (accounts[0] ?? init.account));
  const [expiry, setExpiry] = useState(init.expiry);
  const [unlimited, setUnlimited] = useState(init.unlimited);
  const [focus, setFocus] = useState<FieldId>("name");
  const [dirty, setDirty] = useState<ReadonlySet<FieldId>>(new Set());
  const [attempted, setAttempted] = useState(false);
  const [serverError, setServerError] = useState<{ field: FieldId | null; message: string } | null>(null);
  const [submitting, setSubmitting] = useState(false);
  const [picking, setPicking] = useState(false);
  const mounted = useRef(true);
  useEffect(
    () => () => {
      mounted.current = false;
    },
    [],
  );

  const values: FormValues = {
    name: texts.name.value,
    account,
    group,
    expiry,
    expiresAt: texts.expiresAt.value,
    quota: texts.quota.value,
    unlimited,
    models: texts.models.value,
    ips: texts.ips.value,
  };
  const check = checkForm(values, ctx);
  const fields = formFields(values, accounts.length > 0);
  const groups = ctx.groups.length > 0 ? ctx.groups : ["default"];

  const touch = (f: FieldId): void => {
    setDirty((d) => (d.has(f) ? d : new Set([...d, f])));
    if (serverError?.field === f || serverError?.field === null) setServerError(null);
  };
  const move = (delta: number): void => {
    const i = fields.indexOf(focus);
    setFocus(fields[Math.max(0, Math.min(fields.length - 1, i + delta))] ?? "name");
  };
  const cycle = (delta: number): void => {
    touch(focus);
    if (focus === "account") {
      setAccount((a) => accounts[(accounts.indexOf(a) + delta + accounts.length) % accounts.length] ?? a);
    } else if (focus === "group") {
      setGroup((g) => groups[(groups.indexOf(g) + delta + groups.length) % groups.length] ?? "default");
    } else if (focus === "expiry") {
      const n = EXPIRY_OPTIONS.length;
      setExpiry((e) => EXPIRY_OPTIONS[(EXPIRY_OPTIONS.findIndex((o) => o.value === e) + delta + n) % n]?.value ?? "never");
    } else if (focus === "unlimited") {
      setUnlimited((u) => !u);
    }
  };
  const editText = (f: TextField, ev: KeyEvent): boolean => {
    const opts = { multiline: f === "ips", maxLength: f === "ips" ? 20_000 : 1024 };
    // Decide with this render's state, apply functionally (fast typing loses nothing).
    if (applyTextKey(texts[f], ev, opts) === null) return false;
    setTexts((t) => ({ ...t, [f]: applyTextKey(t[f], ev, opts) ?? t[f] }));
    if (!isMotion(ev)) {
      touch(f);
      // Typing a quota means "limit this key".
      if (f === "quota" && ev.special === undefined && !ev.ctrl) setUnlimited(false);
    }
    return true;
  };
  const submit = (): void => {
    if (submitting) return;
    setAttempted(true);
    if (hasErrors(check)) {
      const first = fields.find((f) => check.errors[f] !== undefined);
      if (first) setFocus(first);
      onDisabled("submit: fix the fields marked in red");
      return;
    }
    setSubmitting(true);
    setServerError(null);
    onSubmit(values).then(
      (err) => {
        if (!mounted.current) return;
        setSubmitting(false);
        if (err !== null) {
          const field = fieldOfServerError(err, values);
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

  const kind = FIELD_KIND[focus];
  const scopes: Scope[] = ["form"];
  if (kind === "choice") scopes.push("formChoice");
  if (focus === "models") scopes.push("formModels");

  useCommandLayer({
    scopes,
    state,
    priority: PRIORITY.dialog,
    isActive: !picking,
    modal: true,
    acceptsPaste: isTextField(focus),
    onDisabled,
    actions: {
      "form.next": () => move(1),
      "form.prev": () => move(-1),
      "form.accept": () => {
        if (focus === "submit") submit();
        else if (focus === "ips") editText("ips", { input: "", special: "enter", ctrl: false });
        else move(1);
      },
      "form.submit": submit,
      "form.cancel": onCancel,
      "form.choiceNext": () => cycle(1),
      "form.choicePrev": () => cycle(-1),
      "form.pickModels": () => setPicking(true),
    },
    fallback: (ev) => (isTextField(focus) ? editText(focus, ev) : false),
  });

  const shown = (f: FieldId): boolean => attempted || dirty.has(f);
  const errorOf = (f: FieldId): string | null => {
    if (serverError && serverError.field === f) return `server: ${serverError.message}`;
    const e = check.errors[f];
    return e !== undefined && shown(f) ? e : null;
  };

  const ipLines = texts.ips.value.split("\n");
  // Rows left for the whitelist once every other line of the dialog is counted
  // (border, title, footer, one line per other field, their messages).
  const messageLines = fields.filter((f) => f !== "ips" && (errorOf(f) !== null || (check.warnings[f] !== undefined && shown(f)))).length;
  const fixedLines =
    4 + (fields.length - 1) + Object.keys(SECTION).length + messageLines + (focus === "models" ? 1 : 0) + (errorOf("ips") !== null ? 1 : 0) + 1 + (serverError?.field === null ? 2 : 0);
  const ipRows = Math.max(1, Math.min(8, height - fixedLines));
  const ipChecks = new Map(checkIpLines(texts.ips.value).map((l) => [l.line, l.error]));
  const cursorLine = texts.ips.value.slice(0, texts.ips.cursor).split("\n").length - 1;
  const ipTop = Math.max(0, Math.min(cursorLine - ipRows + 1, ipLines.length - ipRows));
  const valueWidth = Math.max(10, width - LABEL_WIDTH - 8);

  const field = (f: FieldId, body: ReactNode, extra?: ReactNode): ReactNode => {
    const err = errorOf(f);
    const warn = check.warnings[f];
    return (
      <Box key={f} flexDirection="column">
        {SECTION[f] !== undefined ? (
          <Text bold dimColor>
            {SECTION[f]}
          </Text>
        ) : null}
        <Box>
          <Text color={focus === f ? "cyan" : undefined} bold={focus === f}>
            {focus === f ? "› " : "  "}
          </Text>
          <Box width={LABEL_WIDTH} flexShrink={0}>
            <Text bold={focus === f}>{LABEL[f]}</Text>
          </Box>
          <Box width={valueWidth} flexDirection="column">
            {body}
          </Box>
        </Box>
        {extra}
        {err !== null ? (
          <Text color="red" wrap="truncate">
            {"  ".padEnd(LABEL_WIDTH + 2)}✗ {err}
          </Text>
        ) : warn !== undefined && shown(f) ? (
          <Text color="yellow" wrap="truncate">
            {"  ".padEnd(LABEL_WIDTH + 2)}! {warn}
          </Text>
        ) : null}
      </Box>
    );
  };

  const choice = (label: string, pos: string): ReactNode => (
    <Text wrap="truncate">
      ‹ {label} › <Text dimColor>{pos}</Text>
    </Text>
  );

  const indent = "".padEnd(LABEL_WIDTH + 2);
  // The quick options fit at 80 columns: the whole list when there is room, else the position.
  const expiryLabel = EXPIRY_OPTIONS.find((o) => o.value === expiry)?.label ?? expiry;
  const allOptions = "Never expires / One month / One day / One hour / Exact";
  const expiryAt = EXPIRY_OPTIONS.findIndex((o) => o.value === expiry) + 1;
  const expiryChoice = choice(
    expiryLabel,
    expiryLabel.length + 5 + allOptions.length <= valueWidth ? allOptions : `${expiryAt}/${EXPIRY_OPTIONS.length}: Never·1mo·1d·1h·Exact`,
  );
  const title = mode === "create" ? "Create a key" : `Edit key ${original?.name ?? ""}`;

  if (picking) {
    return (
      <ModelPicker
        priced={ctx.pricedModels}
        selected={parseModels(texts.models.value)}
        width={width}
        height={height}
        state={state}
        onCancel={() => setPicking(false)}
        onDone={(models) => {
          setPicking(false);
          setTexts((t) => ({ ...t, models: textAt(models.join(", ")) }));
          touch("models");
        }}
        onDisabled={onDisabled}
      />
    );
  }

  return (
    <Dialog title={title} width={width} footerScopes={scopes} state={state}>
      {field("name", <TextValue t={texts.name} focused={focus === "name"} placeholder="required" />)}
      {accounts.length > 0 ? field("account", choice(account, `(${accounts.indexOf(account) + 1}/${accounts.length}) the balance it spends`)) : null}
      {field("group", choice(group, `(${groups.indexOf(group) + 1}/${groups.length})`))}
      {field("expiry", expiryChoice)}
      {expiry === "exact"
        ? field("expiresAt", <TextValue t={texts.expiresAt} focused={focus === "expiresAt"} placeholder="2030-01-31T00:00:00Z" />)
        : null}
      {field(
        "quota",
        <Text wrap="truncate">
          <TextValue t={texts.quota} focused={focus === "quota"} placeholder={unlimited ? "(Unlimited)" : "units, or $5"} />
          <Text color="green"> {quotaHint(values, ctx.money)}</Text>
        </Text>,
      )}
      {field("unlimited", <Text>{unlimited ? "[x] Unlimited quota" : "[ ] Unlimited quota"}</Text>)}
      {field(
        "models",
        <TextValue t={texts.models} focused={focus === "models"} placeholder="blank = all models" />,
        focus === "models" ? (
          <Text dimColor wrap="truncate">
            {indent}comma-separated · ctrl+p picks from {ctx.pricedModels.length} priced models
          </Text>
        ) : null,
      )}
      {field(
        "ips",
        <Box flexDirection="column">
          {texts.ips.value === "" && focus !== "ips" ? <Text dimColor>blank = any IP; one address or CIDR per line</Text> : null}
          {(texts.ips.value === "" && focus !== "ips" ? [] : ipLines.slice(ipTop, ipTop + ipRows)).map((line, i) => {
            const n = ipTop + i;
            const err = ipChecks.get(n + 1);
            const lineStart = ipLines.slice(0, n).reduce((a, l) => a + l.length + 1, 0);
            const t: TextState = { value: line, cursor: texts.ips.cursor - lineStart };
            const onLine = focus === "ips" && n === cursorLine;
            return (
              <Box key={n}>
                <Box flexShrink={0}>
                  <TextValue t={t} focused={onLine} />
                </Box>
                {err ? (
                  <Text color="red" wrap="truncate">
                    {" "}✗ {err}
                  </Text>
                ) : line.trim() !== "" ? (
                  <Text color="green"> ✓</Text>
                ) : null}
              </Box>
            );
          })}
          {ipLines.length > ipRows ? (
            <Text dimColor>
              ({checkIpLines(texts.ips.value).length} entries, lines {ipTop + 1}-{Math.min(ipLines.length, ipTop + ipRows)} of {ipLines.length})
            </Text>
          ) : null}
        </Box>,
      )}
      <Box>
        <Text color={focus === "submit" ? "cyan" : undefined}>{focus === "submit" ? "› " : "  "}</Text>
        <Text inverse={focus === "submit"} bold>
          {submitting ? " [ Saving… ] " : mode === "create" ? " [ Create ] " : " [ Save ] "}
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
