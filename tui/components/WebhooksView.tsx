// The Webhooks view (issue 19 item 3: "delivery state and failures visible in CLI and TUI"):
// each endpoint with its delivered / pending / failed counts and last error, then the most
// recent deliveries (state, event, attempts, the receiver's status, the error). Read-only; it
// loads when shown and every `refreshMs` while shown. Operators only: an account token, or a
// sidecar without the webhook RPCs, gets a line saying so instead.
import { Box, Text } from "ink";
import { useEffect, useState, type ReactNode } from "react";
import { describeError, type AdminApi, type Webhook, type WebhookDelivery } from "../client.js";

export interface WebhooksViewProps {
  readonly api: AdminApi;
  readonly width: number;
  readonly height: number;
  /** How often the view reloads while shown (ms). */
  readonly refreshMs?: number;
}

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

export function WebhooksView({ api, width, height, refreshMs = 5000 }: WebhooksViewProps): ReactNode {
  const [data, setData] = useState<Loaded | null>(null);
  const [error, setError] = useState<string | null>(null);
  const supported = api.listWebhooks !== undefined && api.listWebhookDeliveries !== undefined;

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
  }, [api, supported, refreshMs]);

  if (!supported) return <Text dimColor>Webhooks: this connection has no webhook API.</Text>;
  if (data === null) return error !== null ? <Text color="red">Webhooks: {cut(error, width - 11)}</Text> : <Text dimColor>Loading webhooks…</Text>;

  const lines: ReactNode[] = [];
  lines.push(
    <Text key="eh" bold>
      {cut(`Endpoints (${data.webhooks.length})   delivered  pending  failed  last error`, width)}
    </Text>,
  );
  if (data.webhooks.length === 0) lines.push(<Text key="e0" dimColor>  none — add one with `aisa-authz webhooks create URL`</Text>);
  const urlWidth = Math.max(20, Math.min(48, width - 50));
  for (const w of data.webhooks) {
    lines.push(
      <Text key={`e${w.id}`} wrap="truncate">
        {cut(w.url, urlWidth).padEnd(urlWidth)} <Text color="green">{String(w.delivered).padStart(9)}</Text>{" "}
        <Text color={w.pending > 0 ? "yellow" : undefined}>{String(w.pending).padStart(8)}</Text>{" "}
        <Text color={w.failed > 0 ? "red" : undefined}>{String(w.failed).padStart(7)}</Text>  <Text color="red">{w.lastError || ""}</Text>
      </Text>,
    );
  }
  lines.push(<Text key="gap"> </Text>);
  lines.push(
    <Text key="dh" bold>
      {cut(`Recent deliveries (${data.deliveries.length})   created         state      event              tries  status  error`, width)}
    </Text>,
  );
  if (data.deliveries.length === 0) lines.push(<Text key="d0" dimColor>  none yet</Text>);
  const room = Math.max(0, height - lines.length - (error !== null ? 1 : 0));
  for (const d of data.deliveries.slice(0, room)) {
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
