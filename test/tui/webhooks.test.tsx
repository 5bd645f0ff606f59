// The Webhooks view (issue 19 item 3): endpoints with delivered/pending/failed and the last
// error, recent deliveries with their state and failures; reached with "4" (and <tab> cycling).
import { expect } from "chai";
import type { AdminApi, Webhook, WebhookDelivery } from "../../tui/client.js";
import { FakeAdminApi, makeKey, T0 } from "./fakeApi.js";
import { KEY, renderApp } from "./render.js";

type Hooks = Pick<AdminApi, "listWebhooks" | "listWebhookDeliveries">;

function hook(o: Partial<Webhook> = {}): Webhook {
  return { id: "whk_1", url: "https://alerts.example/hook", events: [], thresholds: [50, 80, 100], balanceLow: "0", createdAt: new Date(T0), pending: 1, delivered: 7, failed: 2, lastError: "HTTP 503", ...o };
}

function delivery(i: number, o: Partial<WebhookDelivery> = {}): WebhookDelivery {
  return { id: `dlv_${i}`, webhookId: "whk_1", eventId: `evt_${i}`, eventType: "quota.threshold", state: "delivered", attempts: 1, nextAttemptAt: undefined, lastError: "", lastStatus: 200, createdAt: new Date(T0 + i * 1000), finishedAt: new Date(T0 + i * 1000), body: "{}", ...o };
}

describe("TUI Webhooks view", () => {
  it("lists endpoints and recent deliveries with their state and failures (key 4)", async () => {
    const api: FakeAdminApi & Hooks = new FakeAdminApi({ keys: [makeKey(1, { name: "a" })] });
    let calls = 0;
    api.listWebhooks = async () => {
      calls++;
      return [hook()];
    };
    api.listWebhookDeliveries = async () => [delivery(2, { state: "failed", attempts: 6, lastStatus: 503, lastError: "HTTP 503", eventType: "balance.low" }), delivery(1)];
    const ui = await renderApp(api, { columns: 160 });
    try {
      await ui.press("4");
      const f = await ui.waitFor((x) => x.includes("Recent deliveries"));
      expect(f).to.match(/4 Webhooks/);
      expect(f).to.match(/https:\/\/alerts\.example\/hook\s+7\s+1\s+2\s+HTTP 503/);
      expect(f).to.match(/failed\s+balance\.low\s+6\s+503\s+HTTP 503/);
      expect(f).to.match(/delivered\s+quota\.threshold\s+1\s+200/);
      expect(calls).to.be.greaterThan(0);
      await ui.press(KEY.tab);
      await ui.waitFor((x) => x.includes("of 1") && !x.includes("Recent deliveries"));
    } finally {
      ui.unmount();
    }
  });

  it("an account token (PERMISSION_DENIED) or an API without webhooks: a line says so", async () => {
    const denied: FakeAdminApi & Hooks = new FakeAdminApi({ keys: [] });
    denied.listWebhooks = async () => {
      throw new Error("PERMISSION_DENIED: operator only");
    };
    denied.listWebhookDeliveries = async () => [];
    const a = await renderApp(denied, { columns: 120 });
    try {
      await a.press("4");
      await a.waitFor((x) => x.includes("Webhooks: PERMISSION_DENIED: operator only"));
    } finally {
      a.unmount();
    }
    const plain = await renderApp(new FakeAdminApi({ keys: [] }), { columns: 120 });
    try {
      await plain.press("4");
      await plain.waitFor((x) => x.includes("no webhook API"));
    } finally {
      plain.unmount();
    }
  });
});
