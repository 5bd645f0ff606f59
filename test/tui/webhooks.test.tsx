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

/** In-memory webhook calls on a FakeAdminApi: endpoints, deliveries, and every call made. */
function withWebhooks(api: FakeAdminApi, who?: Partial<FakeAdminApi["who"]>) {
  if (who) Object.assign(api.who, who);
  const hooks: Webhook[] = [];
  const deliveries: WebhookDelivery[] = [];
  const calls: { method: string; arg: unknown }[] = [];
  const a = api as FakeAdminApi & Required<Pick<AdminApi, "listWebhooks" | "listWebhookDeliveries" | "createWebhook" | "deleteWebhook" | "testWebhook">>;
  a.listWebhooks = async () => hooks.map((h) => ({ ...h, pending: deliveries.filter((d) => d.webhookId === h.id && d.state === "pending").length }));
  a.listWebhookDeliveries = async () => [...deliveries].reverse();
  a.createWebhook = async (input) => {
    calls.push({ method: "createWebhook", arg: input });
    const w = hook({ id: `whk_${hooks.length + 1}`, url: input.url, events: input.events, thresholds: input.thresholds.length ? input.thresholds : [50, 80, 100], balanceLow: input.balanceLow, delivered: 0, failed: 0, pending: 0, lastError: "" });
    hooks.push(w);
    return { webhook: w, secret: "whsec_TESTSECRETshownonce" };
  };
  a.deleteWebhook = async (id) => {
    calls.push({ method: "deleteWebhook", arg: id });
    hooks.splice(
      hooks.findIndex((h) => h.id === id),
      1,
    );
  };
  a.testWebhook = async (id) => {
    calls.push({ method: "testWebhook", arg: id });
    const d = delivery(deliveries.length + 10, { webhookId: id, eventType: "ping", state: "pending", attempts: 0, lastStatus: 0 });
    deliveries.push(d);
    return d;
  };
  return { api: a, hooks, deliveries, calls };
}

describe("TUI Webhooks view: configure endpoints (add, remove, test) through the admin API", () => {
  it("n adds an endpoint (URL, events, thresholds, balance low), shows its secret once; t queues a ping; d asks, then removes", async () => {
    const { api, calls, hooks } = withWebhooks(new FakeAdminApi({ keys: [makeKey(1, { name: "a" })] }));
    const ui = await renderApp(api, { columns: 140, rows: 34 });
    try {
      await ui.press("4");
      await ui.waitFor((x) => x.includes("press n to add one") && /n add/.test(x));
      await ui.press("n");
      await ui.waitFor((x) => x.includes("Add a webhook endpoint"));
      await ui.type("https://ops.example.com/aisa");
      await ui.press(KEY.tab);
      await ui.type("quota.threshold,balance.low");
      await ui.press(KEY.tab);
      // Replace the default thresholds: ctrl+u clears the line.
      await ui.press("\u0015");
      await ui.type("90,75");
      await ui.press(KEY.tab);
      await ui.press("\u0015");
      await ui.type("1000");
      await ui.press(KEY.ctrlS);
      const secret = await ui.waitFor((x) => x.includes("whsec_TESTSECRETshownonce"));
      expect(secret).to.match(/Webhook added: https:\/\/ops\.example\.com\/aisa/);
      expect(calls[0]).to.deep.equal({ method: "createWebhook", arg: { url: "https://ops.example.com/aisa", events: ["quota.threshold", "balance.low"], thresholds: [75, 90], balanceLow: "1000" } });
      await ui.press(KEY.enter);
      const listed = await ui.waitFor((x) => x.includes("Endpoints (1)") && !x.includes("whsec_"));
      expect(listed).to.match(/› https:\/\/ops\.example\.com\/aisa/);
      expect(listed, "the secret is not shown again").to.not.include("whsec_TESTSECRETshownonce");

      await ui.press("t");
      await ui.waitFor((x) => x.includes("Queued a test event to https://ops.example.com/aisa"));
      const pinged = await ui.waitFor((x) => /pending\s+ping/.test(x));
      expect(pinged).to.match(/https:\/\/ops\.example\.com\/aisa\s+0\s+1\s+0/);
      expect(calls.map((c) => c.method)).to.deep.equal(["createWebhook", "testWebhook"]);

      await ui.press("d");
      await ui.waitFor((x) => x.includes("Remove https://ops.example.com/aisa?") && x.includes("1 pending deliveries are dropped"));
      await ui.press(KEY.enter); // Cancel is focused first
      await ui.waitFor((x) => x.includes("Remove cancelled"));
      expect(hooks).to.have.length(1);
      await ui.press("d");
      await ui.waitFor((x) => x.includes("Remove https://ops.example.com/aisa?"));
      await ui.press(KEY.tab, KEY.enter);
      await ui.waitFor((x) => x.includes("Removed webhook https://ops.example.com/aisa") && x.includes("Endpoints (0)"));
      expect(calls.map((c) => c.method)).to.deep.equal(["createWebhook", "testWebhook", "deleteWebhook"]);
    } finally {
      ui.unmount();
    }
  });

  it("bad input is marked at its field and nothing is sent; esc cancels the form", async () => {
    const { api, calls } = withWebhooks(new FakeAdminApi({ keys: [] }));
    const ui = await renderApp(api, { columns: 140, rows: 34 });
    try {
      await ui.press("4");
      await ui.waitFor((x) => x.includes("Endpoints (0)"));
      await ui.press("n");
      await ui.waitFor((x) => x.includes("Add a webhook endpoint"));
      await ui.type("ftp://x.example/");
      await ui.waitFor((x) => x.includes("✗ url: must be http or https (got ftp:)"));
      await ui.press("\u0015");
      await ui.type("https://x.example/");
      await ui.press(KEY.tab, KEY.tab, "\u0015");
      await ui.type("50,150");
      await ui.press(KEY.ctrlS);
      await ui.waitFor((x) => x.includes("✗ thresholds[1]: must be an integer percent 1..100"));
      expect(calls).to.deep.equal([]);
      await ui.press(KEY.esc);
      await ui.waitFor((x) => !x.includes("Add a webhook endpoint") && x.includes("Endpoints (0)"));
      expect(calls).to.deep.equal([]);
    } finally {
      ui.unmount();
    }
  });

  it("enter shows only the selected endpoint's deliveries; an account token cannot add (the key says why)", async () => {
    const { api, hooks, deliveries } = withWebhooks(new FakeAdminApi({ keys: [] }));
    hooks.push(hook({ id: "whk_a", url: "https://a.example/" }), hook({ id: "whk_b", url: "https://b.example/" }));
    deliveries.push(delivery(1, { webhookId: "whk_a", eventType: "key.disabled" }), delivery(2, { webhookId: "whk_b", eventType: "balance.low" }));
    const ui = await renderApp(api, { columns: 140, rows: 34 });
    try {
      await ui.press("4");
      await ui.waitFor((x) => x.includes("Recent deliveries (2)"));
      await ui.press("j", KEY.enter);
      const only = await ui.waitFor((x) => x.includes("Recent deliveries of https://b.example/"));
      expect(only).to.match(/\(1\)/).and.to.include("balance.low").and.not.include("key.disabled");
      await ui.press(KEY.enter);
      await ui.waitFor((x) => x.includes("Recent deliveries (2)"));
    } finally {
      ui.unmount();
    }
    const scoped = withWebhooks(new FakeAdminApi({ keys: [] }), { accountId: "acme", tokenId: "tok_acme" });
    const b = await renderApp(scoped.api, { columns: 140, rows: 34 });
    try {
      await b.press("4");
      await b.waitFor((x) => x.includes("Endpoints (0)"));
      await b.press("n");
      await b.waitFor((x) => x.includes("add: operator tokens only"));
      expect(scoped.calls).to.deep.equal([]);
    } finally {
      b.unmount();
    }
  });
});
