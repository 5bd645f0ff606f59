// The Webhooks view (issue 19 item 3: operators configure alert endpoints in the CLI and the
// TUI; delivery state and failures visible in both): each endpoint with its delivered / pending
// / failed counts and last error, then the most recent deliveries (state, event, attempts, the
// receiver's status, the error) — every endpoint's, or the selected one's (enter). `n` adds an
// endpoint (the CLI's parse: tui/state/webhooks.ts), `d` removes the selected one (asks first),
// `t` sends it a test event; all through the admin gRPC API the CLI uses. It loads when shown,
// after every change and every `refreshMs`. Operators only: an account token, or a sidecar
// without the webhook RPCs, gets a line saying so instead.
import { Box, Text } from "ink";
import { useCallback, useEffect, useState, type ReactNode } from "react";
import { describeError, type AdminApi, type Webhook, type WebhookDelivery } from "../client.js";
import type { CommandState, Scope } from "../keys/commands.js";
import { PRIORITY, useCommandLayer } from "../keys/keypress.js";
import { afterRemoval, INITIAL_LIST, moveWebhook, selectedIndex, selectedWebhook, shownDeliveries, type WebhookListState } from "../state/webhooks.js";
import { ConfirmRemove, WebhookForm, WebhookSecret } from "./WebhookDialogs.js";

export interface WebhooksViewProps {
  readonly api: AdminApi;
  readonly width: number;
  readonly height: number;
  /** How often the view reloads while shown (ms). */
  readonly refreshMs?: number;
  /** The app's command state (connection, token); the view fills in its own row count. */
  readonly state?: CommandState;
  readonly onDisabled?: (message: string) => void;
  /** A line for the status bar. */
  readonly report?: (text: string, tone?: "info" | "ok" | "warn" | "error") => void;
  /** Copies text (the new endpoint's secret) to the clipboard. */
  readonly copy?: (text: string) => void;
  /** The help bar the app should show under the view (null while a dialog shows its own footer). */
  readonly onBar?: (bar: { scopes: readonly Scope[]; state: CommandState } | null) => void;
  /** Keys reach the view's layers (false while the app shows an overlay). */
  readonly active?: boolean;
}

type Dialog = { kind: "none" } | { kind: "form" } | { kind: "confirm"; webhook: Webhook } | { kind: "secret"; url: string; secret: string };

const NO_STATE: CommandState = { connected: true, readOnly: false, accountScoped: false, visibleCount: 0, targetCount: 0, markCount: 0 };
const noop = (): void => {};

interface Loaded {
  readonly webhooks: readonly Webhook[];
  readonly deliveries: readonly WebhookDelivery[];
}

/** Deliveries asked for (the view shows what fits). */
const DELIVERIES = 50;

function time(d: Date | undefined): string {
  return d ? d.toISOString().slice(5, 19).replace("T", " ") : "-";
}

function cut(s: string, n: number): string {
  return s.length <= n ? s : `${s.slice(0, Math.max(0, n - 1))}…`;
}

const STATE_COLOR: Readonly<Record<string, string>> = { delivered: "green", pending: "yellow", failed: "red" };

export function WebhooksView({ api, width, height, refreshMs = 5000, state = NO_STATE, onDisabled = noop, report = noop, copy = noop, onBar, active = true }: WebhooksViewProps): ReactNode {
  const [data, setData] = useState<Loaded | null>(null);
  const [error, setError] = useState<string | null>(null);
  const [list, setList] = useState<WebhookListState>(INITIAL_LIST);
  const [dialog, setDialog] = useState<Dialog>({ kind: "none" });
  const [reloads, setReloads] = useState(0);
  const supported = api.listWebhooks !== undefined && api.listWebhookDeliveries !== undefined;
  const reload = useCallback(() => setReloads((n) => n + 1), []);

  useEffect(() => {
    if (!supported) return undefined;
    let live = true;
    const load = async (): Promise<void> => {
      try {
        const [webhooks, deliveries] = await Promise.all([api.listWebhooks!(), api.listWebhookDeliveries!(DELIVERIES)]);
        if (!live) return;
        setData({ webhooks, deliveries });
        setError(null);
      } catch (err) {
        if (live) setError(describeError(err));
      }
    };
    void load();
    const t = setInterval(() => void load(), refreshMs);
    return () => {
      live = false;
      clearInterval(t);
    };
  }, [api, supported, refreshMs, reloads]);

  const webhooks = data?.webhooks ?? [];
  const selected = selectedWebhook(webhooks, list);
  const viewState: CommandState = { ...state, visibleCount: webhooks.length, targetCount: selected ? 1 : 0 };
  const manage = supported && api.createWebhook !== undefined && api.deleteWebhook !== undefined && api.testWebhook !== undefined;
  const scopes: Scope[] = manage ? ["webhooks", "list", "global"] : ["global"];
  const barKey = `${dialog.kind === "none" ? scopes.join() : ""}|${viewState.connected}|${viewState.readOnly}|${viewState.accountScoped}|${viewState.visibleCount}`;
  useEffect(() => {
    onBar?.(dialog.kind === "none" ? { scopes, state: viewState } : null);
    // (barKey holds what the bar shows: scopes and the state its disabled flags read.)
  }, [barKey, onBar]);
  useEffect(() => () => onBar?.(null), [onBar]);

  /** Runs a change; its failure is a status line; the view reloads after it either way. */
  const act = (what: string, fn: () => Promise<void>): void => {
    fn()
      .catch((err: unknown) => report(`${what}: ${describeError(err)}`, "error"))
      .finally(reload);
  };

  useCommandLayer({
    scopes: ["webhooks", "list"],
    state: viewState,
    priority: PRIORITY.inline,
    isActive: active && manage && dialog.kind === "none",
    onDisabled,
    actions: {
      "nav.up": () => setList((l) => moveWebhook(webhooks, l, -1)),
      "nav.down": () => setList((l) => moveWebhook(webhooks, l, 1)),
      "nav.top": () => setList((l) => moveWebhook(webhooks, l, "top")),
      "nav.bottom": () => setList((l) => moveWebhook(webhooks, l, "bottom")),
      "webhooks.create": () => setDialog({ kind: "form" }),
      "webhooks.delete": () => selected && setDialog({ kind: "confirm", webhook: selected }),
      "webhooks.test": () => {
        const w = selected;
        if (!w) return;
        act("test", async () => {
          const d = await api.testWebhook!(w.id);
          report(`Queued a test event to ${w.url} (delivery ${d.id})`, "ok");
        });
      },
      "webhooks.only": () => setList((l) => ({ ...l, selected: selected?.id ?? null, onlySelected: !l.onlySelected })),
    },
  });

  const submit = async (request: Parameters<NonNullable<AdminApi["createWebhook"]>>[0]): Promise<string | null> => {
    try {
      const res = await api.createWebhook!(request);
      setList((l) => ({ ...l, selected: res.webhook.id }));
      setDialog({ kind: "secret", url: res.webhook.url, secret: res.secret });
      report(`Added webhook ${res.webhook.id} → ${res.webhook.url}`, "ok");
      reload();
      return null;
    } catch (err) {
      return describeError(err);
    }
  };

  if (dialog.kind === "form") return <WebhookForm width={width} state={viewState} onSubmit={submit} onCancel={() => setDialog({ kind: "none" })} onDisabled={onDisabled} />;
  if (dialog.kind === "confirm") {
    const w = dialog.webhook;
    return (
      <ConfirmRemove
        url={w.url}
        pending={w.pending}
        width={width}
        state={viewState}
        onCancel={() => {
          setDialog({ kind: "none" });
          report("Remove cancelled");
        }}
        onConfirm={() => {
          setDialog({ kind: "none" });
          act("remove", async () => {
            await api.deleteWebhook!(w.id);
            setList((l) => afterRemoval(webhooks, l, w.id));
            report(`Removed webhook ${w.url}`, "ok");
          });
        }}
        onDisabled={onDisabled}
      />
    );
  }
  if (dialog.kind === "secret") {
    const d = dialog;
    return (
      <WebhookSecret
        url={d.url}
        secret={d.secret}
        width={width}
        state={viewState}
        onCopy={() => copy(d.secret)}
        onClose={() => setDialog({ kind: "none" })}
        onDisabled={onDisabled}
      />
    );
  }

  if (!supported) return <Text dimColor>Webhooks: this connection has no webhook API.</Text>;
  if (data === null) return error !== null ? <Text color="red">Webhooks: {cut(error, width - 11)}</Text> : <Text dimColor>Loading webhooks…</Text>;

  const urlWidth = Math.max(20, Math.min(48, width - 52));
  const lines: ReactNode[] = [];
  lines.push(
    <Text key="eh" bold>
      {cut(`Endpoints (${data.webhooks.length})`.padEnd(urlWidth + 2) + "  delivered  pending  failed  last error", width)}
    </Text>,
  );
  if (data.webhooks.length === 0) lines.push(<Text key="e0" dimColor>{manage ? "  none — press n to add one" : "  none — add one with `aisa-authz webhooks create --url URL`"}</Text>);
  const cursor = manage ? selectedIndex(webhooks, list) : -1;
  for (const [i, w] of data.webhooks.entries()) {
    lines.push(
      <Text key={`e${w.id}`} wrap="truncate">
        <Text color="cyan">{i === cursor ? "› " : "  "}</Text>
        <Text inverse={i === cursor}>{cut(w.url, urlWidth).padEnd(urlWidth)}</Text> <Text color="green">{String(w.delivered).padStart(9)}</Text>{" "}
        <Text color={w.pending > 0 ? "yellow" : undefined}>{String(w.pending).padStart(8)}</Text>{" "}
        <Text color={w.failed > 0 ? "red" : undefined}>{String(w.failed).padStart(7)}</Text>  <Text color="red">{w.lastError || ""}</Text>
      </Text>,
    );
  }
  lines.push(<Text key="gap"> </Text>);
  const shown = shownDeliveries(data.webhooks, data.deliveries, list);
  const whose = list.onlySelected && selected ? ` of ${cut(selected.url, 40)} (enter: all)` : "";
  lines.push(
    <Text key="dh" bold>
      {cut(`Recent deliveries${whose} (${shown.length})   created         state      event              tries  status  error`, width)}
    </Text>,
  );
  if (shown.length === 0) lines.push(<Text key="d0" dimColor>  none yet</Text>);
  const room = Math.max(0, height - lines.length - (error !== null ? 1 : 0));
  for (const d of shown.slice(0, room)) {
    lines.push(
      <Text key={`d${d.id}`} wrap="truncate">
        {"  "}
        {time(d.createdAt).padEnd(15)} <Text color={STATE_COLOR[d.state]}>{d.state.padEnd(10)}</Text> {cut(d.eventType, 18).padEnd(18)} {String(d.attempts).padStart(5)}{" "}
        {(d.lastStatus > 0 ? String(d.lastStatus) : "-").padStart(6)}  <Text color="red">{d.lastError}</Text>
      </Text>,
    );
  }
  if (error !== null) lines.push(<Text key="err" color="red">{cut(`Refresh failed: ${error}`, width)}</Text>);
  return (
    <Box flexDirection="column" width={width}>
      {lines}
    </Box>
  );
}
