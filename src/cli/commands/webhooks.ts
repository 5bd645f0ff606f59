// aisa-authz webhooks create|list|delete|deliveries|test (operator only; README "Budgets and alerts")
import type { Command } from "commander";
import type { Webhook, WebhookDelivery } from "../../gen/aisa/v1/admin.js";
import { formatTime, renderTable } from "../../display/format.js";
import { withClient, type Io } from "../context.js";
import type { Json } from "../json.js";
import { UsageError } from "../parse.js";
import { parseWebhookInput, WebhookInputError, type WebhookCreateInput } from "../../domain/webhookInput.js";

/** The flag of each field parseWebhookInput names. */
const FLAG: Readonly<Record<string, string>> = { url: "--url", events: "--events", thresholds: "--thresholds", balance_low: "--balance-low" };

function need<T>(f: T | undefined): T {
  if (f === undefined) throw new Error("this client has no webhook calls");
  return f;
}

function webhookJson(w: Webhook): { [k: string]: Json } {
  return { id: w.id, url: w.url, events: w.events, thresholds: w.thresholds, balance_low: Number(w.balanceLow), created_at: w.createdAt?.toISOString() ?? null, pending: w.pending, delivered: w.delivered, failed: w.failed, last_error: w.lastError };
}

function deliveryJson(d: WebhookDelivery): { [k: string]: Json } {
  return {
    id: d.id,
    webhook_id: d.webhookId,
    event_id: d.eventId,
    event_type: d.eventType,
    state: d.state,
    attempts: d.attempts,
    next_attempt_at: d.nextAttemptAt?.toISOString() ?? null,
    last_error: d.lastError,
    last_status: d.lastStatus,
    created_at: d.createdAt?.toISOString() ?? null,
    finished_at: d.finishedAt?.toISOString() ?? null,
  };
}

export function webhooksCommand(program: Command, io: Io): void {
  const hooks = program.command("webhooks").description("alert endpoints: signed HTTP POSTs for quota/balance thresholds, low balance, expiring, disabled and deleted keys (operator only)");

  hooks
    .command("create")
    .description("add an endpoint and print its signing secret (shown once)")
    .requiredOption("--url <url>", "http(s) URL to POST to (redirects are not followed)")
    .option("--events <list>", "event types, comma-separated (default: all): quota.threshold, balance.threshold, balance.low, key.expiring, key.disabled, key.deleted")
    .option("--thresholds <list>", "percents for quota.threshold and balance.threshold", "50,80,100")
    .option("--balance-low <units>", "balance.low fires at or below this balance (units; 0 = off)", "0")
    .action((f: { url: string; events?: string; thresholds: string; balanceLow: string }, cmd: Command) =>
      withClient(io, cmd, async (ctx) => {
        // The same parse as the TUI's form (src/domain/webhookInput.ts): one request for one text.
        let input: WebhookCreateInput;
        try {
          input = parseWebhookInput({ url: f.url, events: f.events ?? "", thresholds: f.thresholds, balanceLow: f.balanceLow });
        } catch (err) {
          if (err instanceof WebhookInputError) throw new UsageError(`${FLAG[err.field.replace(/\[\d+\]$/, "")] ?? err.field}: ${err.problem}`);
          throw err;
        }
        const res = await need(ctx.api.createWebhook)(input);
        if (!res.webhook) throw new Error("server returned no webhook");
        if (ctx.json) {
          ctx.printJson({ ...webhookJson(res.webhook), secret: res.secret });
          return;
        }
        ctx.print(
          `Created webhook ${res.webhook.id} → ${res.webhook.url}. Its signing secret:\n\n  ${res.secret}\n\n` +
            `Verify x-aisa-signature = "v1=" + hex(HMAC-SHA256(secret, x-aisa-timestamp + "." + body)); de-duplicate by x-aisa-event-id. It is not shown again.`,
        );
      }),
    );

  hooks
    .command("list")
    .description("list endpoints with their delivery counts and last error")
    .action((_f: unknown, cmd: Command) =>
      withClient(io, cmd, async (ctx) => {
        const res = await need(ctx.api.listWebhooks)();
        if (ctx.json) {
          ctx.printJson({ webhooks: res.webhooks.map(webhookJson), dropped: Number(res.dropped) });
          return;
        }
        if (res.webhooks.length === 0) {
          ctx.print("No webhooks.");
          return;
        }
        ctx.print(
          renderTable(
            ["ID", "URL", "EVENTS", "THRESHOLDS", "PENDING", "DELIVERED", "FAILED", "LAST ERROR"],
            res.webhooks.map((w) => [w.id, w.url, w.events.length ? w.events.join(",") : "all", w.thresholds.join(",") + " %", String(w.pending), String(w.delivered), String(w.failed), w.lastError || "-"]),
          ) + (Number(res.dropped) > 0 ? `\n${res.dropped} pending deliveries dropped (queue full)` : ""),
        );
      }),
    );

  hooks
    .command("delete")
    .description("remove an endpoint and its queued deliveries")
    .argument("<id>", "webhook id")
    .action((id: string, _f: unknown, cmd: Command) =>
      withClient(io, cmd, async (ctx) => {
        await need(ctx.api.deleteWebhook)({ id });
        if (ctx.json) ctx.printJson({ deleted: id });
        else ctx.print(`Deleted webhook ${id}.`);
      }),
    );

  hooks
    .command("deliveries")
    .description("deliveries, newest first: state, attempts, next attempt, last error")
    .option("--webhook <id>", "one endpoint's")
    .option("--state <state>", "pending, delivered or failed")
    .option("--limit <n>", "at most this many (default 100)", "100")
    .action((f: { webhook?: string; state?: string; limit: string }, cmd: Command) =>
      withClient(io, cmd, async (ctx) => {
        const res = await need(ctx.api.listWebhookDeliveries)({ webhookId: f.webhook ?? "", state: f.state ?? "", limit: Number(f.limit) });
        if (ctx.json) {
          ctx.printJson({ deliveries: res.deliveries.map(deliveryJson) });
          return;
        }
        ctx.print(
          res.deliveries.length === 0
            ? "No deliveries."
            : renderTable(
                ["ID", "WEBHOOK", "EVENT", "STATE", "ATTEMPTS", "NEXT ATTEMPT", "LAST ERROR", "CREATED"],
                res.deliveries.map((d) => [d.id, d.webhookId, `${d.eventType} ${d.eventId}`, d.state, String(d.attempts), formatTime(d.nextAttemptAt), d.lastError || "-", formatTime(d.createdAt)]),
              ),
        );
      }),
    );

  hooks
    .command("test")
    .description("queue a ping event to an endpoint")
    .argument("<id>", "webhook id")
    .action((id: string, _f: unknown, cmd: Command) =>
      withClient(io, cmd, async (ctx) => {
        const d = await need(ctx.api.testWebhook)({ id });
        if (ctx.json) ctx.printJson(deliveryJson(d));
        else ctx.print(`Queued ping ${d.eventId} (delivery ${d.id}); see \`aisa-authz webhooks deliveries --webhook ${id}\`.`);
      }),
    );
}
