// What an operator types for a new webhook endpoint (the CLI's flags, the TUI's form), parsed
// once into the CreateWebhook request, so both send the same request for the same text and
// refuse bad text with the same message naming the field. The service re-checks everything
// (service/webhooks.ts): this is for a clear message before a round trip, not a security boundary.
import { textProblem } from "./text.js";

/** Event types an endpoint can receive (README "Webhooks"). */
export const WEBHOOK_EVENT_TYPES = ["quota.threshold", "balance.threshold", "balance.low", "key.expiring", "key.disabled", "key.deleted", "ping"] as const;
export type WebhookEventType = (typeof WEBHOOK_EVENT_TYPES)[number];
/** Percent thresholds when none are given. */
export const DEFAULT_THRESHOLDS: readonly number[] = [50, 80, 100];

/** The endpoint as typed (empty = the default). */
export interface WebhookInputText {
  readonly url: string;
  /** Comma-separated event types; empty = all. */
  readonly events: string;
  /** Comma-separated percents 1..100; empty = 50,80,100. */
  readonly thresholds: string;
  /** Units (0 = off); empty = 0. */
  readonly balanceLow: string;
}

/** The CreateWebhook request. */
export interface WebhookCreateInput {
  url: string;
  events: string[];
  thresholds: number[];
  balanceLow: string;
}

/** Bad input: `field` is the API's name for it (url, events[1], thresholds[0], balance_low). */
export class WebhookInputError extends Error {
  constructor(
    readonly field: string,
    readonly problem: string,
  ) {
    super(`${field}: ${problem}`);
  }
}

function items(s: string): string[] {
  return s
    .split(",")
    .map((x) => x.trim())
    .filter((x) => x !== "");
}

function quoted(s: string): string {
  return JSON.stringify(s.length > 40 ? `${s.slice(0, 40)}…` : s);
}

/** Parses an endpoint as typed; throws WebhookInputError naming the first bad field. */
export function parseWebhookInput(t: WebhookInputText): WebhookCreateInput {
  const url = t.url.trim();
  if (url === "") throw new WebhookInputError("url", "must not be empty");
  if (url.length > 2048) throw new WebhookInputError("url", "must be at most 2048 characters");
  const bad = textProblem(url);
  if (bad) throw new WebhookInputError("url", bad);
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    throw new WebhookInputError("url", `${quoted(url)} is not an absolute URL (e.g. https://ops.example.com/aisa)`);
  }
  if (parsed.protocol !== "http:" && parsed.protocol !== "https:") throw new WebhookInputError("url", `must be http or https (got ${parsed.protocol})`);
  if (parsed.username || parsed.password) throw new WebhookInputError("url", "must not carry credentials");
  const events = [...new Set(items(t.events))];
  events.forEach((e, i) => {
    if (!(WEBHOOK_EVENT_TYPES as readonly string[]).includes(e)) throw new WebhookInputError(`events[${i}]`, `${quoted(e)} is not one of ${WEBHOOK_EVENT_TYPES.filter((x) => x !== "ping").join(", ")}`);
  });
  const thresholds = items(t.thresholds).map((x, i) => {
    const n = /^\d{1,3}$/.test(x) ? Number(x) : NaN;
    if (!(n >= 1 && n <= 100)) throw new WebhookInputError(`thresholds[${i}]`, `must be an integer percent 1..100 (got ${quoted(x)})`);
    return n;
  });
  const low = t.balanceLow.trim() === "" ? "0" : t.balanceLow.trim();
  if (!/^\d{1,16}$/.test(low) || !Number.isSafeInteger(Number(low))) throw new WebhookInputError("balance_low", `must be a non-negative integer number of units (got ${quoted(low)})`);
  return { url, events, thresholds: [...new Set(thresholds)].sort((a, b) => a - b), balanceLow: String(Number(low)) };
}
