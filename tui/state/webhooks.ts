// The Webhooks view's state rules, without Ink: which endpoint is selected (by id, so a reload
// never slides another endpoint under the cursor), which deliveries show, and the add form —
// its fields, the check on every keystroke and the request it sends. The request is the CLI's
// (`webhooks create` parses the same text with the same src/domain/webhookInput.ts).
import type { Webhook, WebhookDelivery } from "../../src/gen/aisa/v1/admin.js";
import { parseWebhookInput, WebhookInputError, type WebhookCreateInput, type WebhookInputText } from "../../src/domain/webhookInput.js";

// ---- the list ----------------------------------------------------------------------------

export interface WebhookListState {
  /** The selected endpoint's id (null: the first, or none). */
  readonly selected: string | null;
  /** Show only the selected endpoint's deliveries. */
  readonly onlySelected: boolean;
}

export const INITIAL_LIST: WebhookListState = { selected: null, onlySelected: false };

/** The selected row: the selected id's position, else the first row (-1 when there are none). */
export function selectedIndex(webhooks: readonly Webhook[], s: WebhookListState): number {
  if (webhooks.length === 0) return -1;
  const i = s.selected === null ? -1 : webhooks.findIndex((w) => w.id === s.selected);
  return i >= 0 ? i : 0;
}

/** The selected endpoint, if any. */
export function selectedWebhook(webhooks: readonly Webhook[], s: WebhookListState): Webhook | undefined {
  const i = selectedIndex(webhooks, s);
  return i >= 0 ? webhooks[i] : undefined;
}

/** Moves the selection by `delta` rows (clamped), or to the first / last. */
export function moveWebhook(webhooks: readonly Webhook[], s: WebhookListState, delta: number | "top" | "bottom"): WebhookListState {
  if (webhooks.length === 0) return s;
  const from = selectedIndex(webhooks, s);
  const to = delta === "top" ? 0 : delta === "bottom" ? webhooks.length - 1 : Math.max(0, Math.min(webhooks.length - 1, from + delta));
  return { ...s, selected: webhooks[to]!.id };
}

/** The deliveries to show: all, or the selected endpoint's (onlySelected). */
export function shownDeliveries(webhooks: readonly Webhook[], deliveries: readonly WebhookDelivery[], s: WebhookListState): readonly WebhookDelivery[] {
  if (!s.onlySelected) return deliveries;
  const w = selectedWebhook(webhooks, s);
  return w ? deliveries.filter((d) => d.webhookId === w.id) : deliveries;
}

/** After a removal: the row below takes the selection (or the one above at the end). */
export function afterRemoval(webhooks: readonly Webhook[], s: WebhookListState, removedId: string): WebhookListState {
  const i = webhooks.findIndex((w) => w.id === removedId);
  const rest = webhooks.filter((w) => w.id !== removedId);
  if (rest.length === 0) return { selected: null, onlySelected: false };
  return { ...s, selected: rest[Math.min(Math.max(0, i), rest.length - 1)]!.id };
}

// ---- the add form ------------------------------------------------------------------------

export const WEBHOOK_FIELDS = ["url", "events", "thresholds", "balanceLow", "submit"] as const;
export type WebhookField = (typeof WEBHOOK_FIELDS)[number];
export type WebhookFormValues = WebhookInputText;

export const WEBHOOK_FIELD_LABEL: Readonly<Record<WebhookField, string>> = {
  url: "URL",
  events: "Events",
  thresholds: "Thresholds %",
  balanceLow: "Balance low",
  submit: "",
};

export const WEBHOOK_FIELD_HINT: Readonly<Record<WebhookField, string>> = {
  url: "http(s) URL the alerts are POSTed to (redirects are not followed)",
  events: "comma-separated; empty = all (quota.threshold, balance.threshold, balance.low, key.expiring, key.disabled, key.deleted)",
  thresholds: "percents 1..100 for quota.threshold and balance.threshold",
  balanceLow: "balance.low fires at or below this many units; 0 = off",
  submit: "",
};

export function initialWebhookForm(): WebhookFormValues {
  return { url: "", events: "", thresholds: "50,80,100", balanceLow: "0" };
}

/** The form field an API field name (or an error message starting with one) belongs to. */
export function webhookFieldOf(apiFieldOrMessage: string): WebhookField | null {
  const m = /^(?:[A-Z_]+: )?(url|events|thresholds|balance_low)\b/.exec(apiFieldOrMessage);
  if (!m) return null;
  return m[1] === "balance_low" ? "balanceLow" : (m[1] as WebhookField);
}

export type WebhookFormCheck = { readonly ok: true; readonly request: WebhookCreateInput } | { readonly ok: false; readonly field: WebhookField; readonly message: string };

/** Checks the form (on every keystroke and on submit): the request, or the first bad field. */
export function checkWebhookForm(v: WebhookFormValues): WebhookFormCheck {
  try {
    return { ok: true, request: parseWebhookInput(v) };
  } catch (err) {
    if (err instanceof WebhookInputError) return { ok: false, field: webhookFieldOf(err.field) ?? "url", message: err.message };
    throw err;
  }
}
