// Webhooks (issue 19 item 3) against a real node:http receiver on 127.0.0.1:0: signature,
// retries with backoff while the receiver is down, recovery, at-least-once with de-duplication
// by event id, the queue persisted across a restart, and threshold events from live usage.
import { expect } from "chai";
import { createHmac } from "node:crypto";
import * as http from "node:http";
import type { AddressInfo } from "node:net";
import type { AccountState, KeyState, Principal } from "../../src/domain/types.js";
import type { LiveEvent } from "../../src/service/usage.js";
import { signWebhook, WebhookService, type WebhookOptions } from "../../src/service/webhooks.js";
import { removeDir, tempDir } from "../helpers/sidecar.js";

const OPERATOR: Principal = { tokenId: "operator", accountId: null, readOnly: false };

interface Received {
  headers: http.IncomingHttpHeaders;
  body: string;
}

/** A receiver that verifies signatures and processes each event id once (its de-dup). */
class Receiver {
  server: http.Server | null = null;
  port = 0;
  all: Received[] = [];
  processed = new Map<string, any>();
  /** Answer 500 to the next N requests (after processing them: a lost acknowledgement). */
  failNext = 0;
  constructor(readonly secret: () => string) {}
  async start(port = 0): Promise<void> {
    this.server = http.createServer((req, res) => {
      let body = "";
      req.on("data", (c) => (body += c));
      req.on("end", () => {
        this.all.push({ headers: req.headers, body });
        const ts = String(req.headers["x-aisa-timestamp"]);
        const expected = `v1=${createHmac("sha256", this.secret()).update(`${ts}.${body}`).digest("hex")}`;
        if (req.headers["x-aisa-signature"] !== expected) {
          res.writeHead(401).end();
          return;
        }
        const ev = JSON.parse(body);
        if (!this.processed.has(ev.id)) this.processed.set(ev.id, ev);
        if (this.failNext > 0) {
          this.failNext--;
          res.writeHead(500).end();
          return;
        }
        res.writeHead(204).end();
      });
    });
    await new Promise<void>((resolve) => this.server!.listen(port, "127.0.0.1", resolve));
    this.port = (this.server.address() as AddressInfo).port;
  }
  async stop(): Promise<void> {
    const s = this.server;
    this.server = null;
    if (!s) return;
    s.closeAllConnections();
    await new Promise<void>((resolve) => s.close(() => resolve()));
  }
}

async function until(what: string, cond: () => boolean, ms = 10_000): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

describe("webhooks: signed deliveries to a real receiver, retries, de-duplication, persistence", function () {
  this.timeout(60_000);
  let dir: string;
  let secret = "";
  let rx: Receiver;
  const services: WebhookService[] = [];
  const keys = new Map<string, KeyState>();
  const accounts = new Map<string, AccountState>();
  let live: ((e: LiveEvent) => void) | null = null;

  function service(over: Partial<WebhookOptions> = {}): WebhookService {
    const s = new WebhookService({
      dir,
      clock: Date.now,
      log: () => {},
      getKey: async (id) => keys.get(id),
      getAccount: (id) => accounts.get(id),
      subscribe: (_f, l) => {
        live = l;
        return () => (live = null);
      },
      backoffBaseMs: 50,
      backoffMaxMs: 400,
      tickMs: 20,
      timeoutMs: 1000,
      ...over,
    });
    services.push(s);
    return s;
  }

  beforeEach(async () => {
    dir = await tempDir();
    rx = new Receiver(() => secret);
    keys.clear();
    accounts.clear();
  });
  afterEach(async () => {
    for (const s of services.splice(0)) await s.stop();
    await rx.stop();
    await removeDir(dir);
  });

  it("signs x-aisa-signature = v1=HMAC-SHA256(secret, timestamp.body) with x-aisa-timestamp and the event id", async () => {
    await rx.start();
    const s = service();
    await s.start();
    const e = await s.create(OPERATOR, { url: `http://127.0.0.1:${rx.port}/hook` });
    secret = e.secret;
    expect(e.thresholds).to.deep.equal([50, 80, 100]);
    await s.test(OPERATOR, e.id);
    await until("the ping", () => rx.processed.size === 1);
    const got = rx.all[0]!;
    const ev = JSON.parse(got.body);
    expect(ev).to.include({ type: "ping" });
    expect(ev.id).to.match(/^evt_/);
    expect(got.headers["x-aisa-event-id"]).to.equal(ev.id);
    expect(got.headers["x-aisa-event-type"]).to.equal("ping");
    expect(got.headers["content-type"]).to.equal("application/json");
    const ts = Number(got.headers["x-aisa-timestamp"]);
    expect(Math.abs(ts - Date.now() / 1000)).to.be.lessThan(10);
    expect(got.headers["x-aisa-signature"]).to.equal(signWebhook(e.secret, ts, got.body));
    // A tampered body does not verify.
    expect(signWebhook(e.secret, ts, got.body.replace("ping", "pong"))).to.not.equal(got.headers["x-aisa-signature"]);
    await until("delivered state", () => s.deliveries(OPERATOR, {})[0]?.state === "delivered");
    expect(s.stats(e.id)).to.include({ delivered: 1, pending: 0, failed: 0 });
  });

  it("a receiver that is down for a while: retried with growing backoff, delivered once it recovers, the failures visible", async () => {
    await rx.start();
    const port = rx.port;
    await rx.stop(); // down
    const s = service();
    await s.start();
    const e = await s.create(OPERATOR, { url: `http://127.0.0.1:${port}/hook` });
    secret = e.secret;
    const d = await s.test(OPERATOR, e.id);
    await until("3 failed attempts", () => s.deliveries(OPERATOR, {})[0]!.attempts >= 3);
    const mid = s.deliveries(OPERATOR, { endpointId: e.id })[0]!;
    expect(mid.state).to.equal("pending");
    expect(mid.lastError).to.match(/ECONNREFUSED|fetch failed/);
    expect(s.stats(e.id).lastError).to.not.equal("");
    await rx.start(port); // recovers
    await until("delivery after recovery", () => s.deliveries(OPERATOR, {})[0]!.state === "delivered");
    expect(rx.processed.has(d.event.id)).to.equal(true);
    expect(s.deliveries(OPERATOR, {})[0]!.lastError).to.equal("");
  });

  it("at least once: a lost acknowledgement is retried with the same event id, which the receiver de-duplicates", async () => {
    await rx.start();
    rx.failNext = 2;
    const s = service();
    await s.start();
    const e = await s.create(OPERATOR, { url: `http://127.0.0.1:${rx.port}/` });
    secret = e.secret;
    const d = await s.test(OPERATOR, e.id);
    await until("delivered", () => s.deliveries(OPERATOR, {})[0]!.state === "delivered");
    expect(rx.all).to.have.length(3);
    expect(new Set(rx.all.map((r) => r.headers["x-aisa-event-id"]))).to.deep.equal(new Set([d.event.id]));
    expect(rx.all.map((r) => r.headers["x-aisa-delivery-attempt"])).to.deep.equal(["1", "2", "3"]);
    expect(rx.processed.size).to.equal(1);
  });

  it("gives up after maxAttempts (state failed, the error kept); a 3xx is a failure, never followed", async () => {
    const redirect = http.createServer((_q, r) => r.writeHead(302, { location: "http://127.0.0.1:1/elsewhere" }).end());
    await new Promise<void>((r) => redirect.listen(0, "127.0.0.1", r));
    try {
      const s = service({ maxAttempts: 2 });
      await s.start();
      const e = await s.create(OPERATOR, { url: `http://127.0.0.1:${(redirect.address() as AddressInfo).port}/` });
      await s.test(OPERATOR, e.id);
      await until("failed", () => s.deliveries(OPERATOR, {})[0]!.state === "failed");
      expect(s.deliveries(OPERATOR, { state: "failed" })[0]).to.include({ attempts: 2, lastError: "HTTP 302", lastStatus: 302 });
    } finally {
      redirect.closeAllConnections();
      await new Promise<void>((r) => redirect.close(() => r()));
    }
  });

  it("pending deliveries survive a restart (persisted in <data>/webhooks.json)", async () => {
    await rx.start();
    const port = rx.port;
    await rx.stop();
    const a = service();
    await a.start();
    const e = await a.create(OPERATOR, { url: `http://127.0.0.1:${port}/` });
    secret = e.secret;
    const d = await a.test(OPERATOR, e.id);
    await until("an attempt", () => a.deliveries(OPERATOR, {})[0]!.attempts >= 1);
    await a.stop();
    services.splice(services.indexOf(a), 1);
    await rx.start(port);
    const b = service();
    await b.start();
    expect(b.list(OPERATOR).map((x) => x.id)).to.deep.equal([e.id]);
    await until("delivered by the restarted service", () => b.deliveries(OPERATOR, {})[0]?.state === "delivered");
    expect([...rx.processed.keys()]).to.deep.equal([d.event.id]);
  });

  it("quota and balance thresholds (default and configured), balance low, key disabled, deleted and expiring — from live usage", async () => {
    await rx.start();
    const s = service();
    await s.start();
    const all = await s.create(OPERATOR, { url: `http://127.0.0.1:${rx.port}/all` });
    const custom = await s.create(OPERATOR, { url: `http://127.0.0.1:${rx.port}/custom`, events: ["quota.threshold", "balance.low"], thresholds: [90], balanceLow: 500 });
    expect(all.secret).to.not.equal(custom.secret);
    const now = Date.now();
    const key = (remaining: number): KeyState =>
      ({
        record: { id: "key_a", name: "prod", accountId: "acme", quotaTotal: 1000, unlimited: false, createdAt: now - 1000, updatedAt: now - 1000 },
        counters: { remaining, used: 1000 - remaining, reserved: 0, credited: 1000, lastUsedAt: now, refilledAt: null },
      }) as unknown as KeyState;
    const account = (balance: number): AccountState => ({ record: { id: "acme", name: "acme", createdAt: now }, counters: { balance, credited: 10_000, charged: 10_000 - balance, reserved: 0 } });
    const ev = (over: Partial<LiveEvent>): LiveEvent => ({ from: now, at: now, total: {} as any, byKey: [], byGroup: [], keyEvents: [], alerts: [], remaining: [], ...over });
    // 55 % of the key's quota, 60 % of the balance.
    keys.set("key_a", key(450));
    accounts.set("acme", account(4000));
    secret = all.secret; // the receiver verifies with one secret: only `all` deliveries verify; custom gets 401s (checked below)
    await s.onLive(ev({ remaining: [{ keyId: "key_a", remaining: 450, unlimited: false, accountBalance: 4000 }] }));
    // 95 % of the key, 96 % of the balance (balance 400 ≤ 500: low).
    keys.set("key_a", key(50));
    accounts.set("acme", account(400));
    await s.onLive(ev({ remaining: [{ keyId: "key_a", remaining: 50, unlimited: false, accountBalance: 400 }] }));
    await s.onLive(
      ev({
        keyEvents: [{ keyId: "key_a", kind: "disabled", key: key(50) }, { keyId: "key_b", kind: "deleted" }],
        alerts: [{ kind: "key_expiring", targetId: "key_c", percent: 0, message: "expires soon", expiresAt: now + 3_600_000 }],
      }),
    );
    await until("deliveries to `all`", () => s.stats(all.id).delivered === 7);
    const events = [...rx.processed.values()];
    const summary = events.map((x) => `${x.type}${x.data.percent ? ":" + x.data.percent : ""}`).sort();
    expect(summary).to.deep.equal(["balance.threshold:50", "balance.threshold:80", "key.deleted", "key.disabled", "key.expiring", "quota.threshold:50", "quota.threshold:80"].sort());
    // The custom endpoint got only its types at its own threshold: quota 90 %, and balance.low.
    const customTypes = s.deliveries(OPERATOR, { endpointId: custom.id }).map((d) => `${d.event.type}${d.event.data.percent ? ":" + d.event.data.percent : ""}`).sort();
    expect(customTypes).to.deep.equal(["balance.low", "quota.threshold:90"]);
    // Re-detected after a restart (levels are memory): the same event ids, so receivers de-duplicate.
    const ids = new Set(s.deliveries(OPERATOR, { endpointId: all.id }).map((d) => d.event.id));
    const again = service({ dir });
    await s.stop();
    services.splice(services.indexOf(s), 1);
    await again.start();
    await again.onLive(ev({ remaining: [{ keyId: "key_a", remaining: 50, unlimited: false, accountBalance: 400 }] }));
    const quotaAgain = again.deliveries(OPERATOR, { endpointId: all.id }).filter((d) => d.event.type === "quota.threshold");
    expect(quotaAgain).to.have.length(2); // already delivered there: not queued again
    for (const d of quotaAgain) expect(ids.has(d.event.id)).to.equal(true);
  });

  it("only operators configure endpoints; only http(s) URLs without credentials; thresholds 1..100", async () => {
    const s = service();
    await s.start();
    const acct: Principal = { tokenId: "tok", accountId: "acme", readOnly: false };
    expect(() => s.list(acct)).to.throw(/account-scoped/);
    for (const [input, field] of [
      [{ url: "ftp://x/" }, "url"],
      [{ url: "http://user:pw@127.0.0.1/" }, "url"],
      [{ url: "not a url" }, "url"],
      [{ url: "http://127.0.0.1/", thresholds: [0] }, "thresholds[0]"],
      [{ url: "http://127.0.0.1/", events: ["nope"] }, "events[0]"],
    ] as const) {
      let err: any;
      try {
        await s.create(OPERATOR, input as any);
      } catch (e) {
        err = e;
      }
      expect(err?.message, JSON.stringify(input)).to.match(new RegExp(`^${field.replace(/[[\]]/g, "\\$&")}: `));
    }
    void live;
  });
});

describe("webhooks through a real sidecar: the admin API, live usage → signed deliveries", function () {
  this.timeout(60_000);
  it("CreateWebhook (operator only) → a Consume past 50 % and a disable reach the receiver; ListWebhookDeliveries shows them delivered", async () => {
    const { call, expectGrpcError, startTestSidecar } = await import("../helpers/sidecar.js");
    const { status } = await import("@grpc/grpc-js");
    let secret = "";
    const rx = new Receiver(() => secret);
    await rx.start();
    const s = await startTestSidecar();
    try {
      const admin = <Res>(method: string, req: unknown, token?: string) => call<unknown, Res>(s.admin, method, req, s.meta(token));
      await admin("createAccount", { id: "acme", name: "acme", initialBalance: "100000" });
      const tok = (await admin<{ secret: string }>("createToken", { name: "acme", accountId: "acme" })).secret;
      await expectGrpcError(admin("createWebhook", { url: `http://127.0.0.1:${rx.port}/` }, tok), status.PERMISSION_DENIED);
      const created = await admin<{ webhook: { id: string; thresholds: number[] }; secret: string }>("createWebhook", { url: `http://127.0.0.1:${rx.port}/`, thresholds: [50] });
      secret = created.secret;
      expect(created.webhook.thresholds).to.deep.equal([50]);
      await admin("setPrice", { price: { model: "gpt-4o-mini", inputPerMillion: "75000", outputPerMillion: "300000" } });
      const k = await admin<{ key: { id: string }; secret: string }>("createKey", { spec: { name: "hook key", quota: "400" }, accountId: "acme" });
      await call(s.authorizer, "consume", { requestId: "wh-1", target: { $case: "keyId", value: k.key.id }, model: "gpt-4o-mini", inputTokens: "1000", outputTokens: "500" }); // 225 of 400
      await until("quota.threshold", () => [...rx.processed.values()].some((e) => e.type === "quota.threshold"), 15_000);
      const q = [...rx.processed.values()].find((e) => e.type === "quota.threshold");
      expect(q.data).to.include({ key_id: k.key.id, percent: 50, account_id: "acme" });
      await admin("setKeysEnabled", { ids: [k.key.id], enabled: false });
      await until("key.disabled", () => [...rx.processed.values()].some((e) => e.type === "key.disabled"), 15_000);
      const list = await admin<{ deliveries: Array<{ state: string; eventType: string }> }>("listWebhookDeliveries", { webhookId: created.webhook.id });
      expect(list.deliveries.map((d) => d.eventType)).to.include.members(["quota.threshold", "key.disabled"]);
      const hooks = await admin<{ webhooks: Array<{ id: string; delivered: number }> }>("listWebhooks", {});
      expect(hooks.webhooks[0]!.id).to.equal(created.webhook.id);
      await admin("deleteWebhook", { id: created.webhook.id });
      expect((await admin<{ webhooks: unknown[] }>("listWebhooks", {})).webhooks).to.deep.equal([]);
    } finally {
      await s.close();
      await removeDir(s.dir);
      await rx.stop();
    }
  });
});

describe("aisa-authz webhooks (the real bin)", function () {
  this.timeout(90_000);
  it("create prints the secret once; list and deliveries show the delivery state; delete removes it", async () => {
    const { startTestSidecar } = await import("../helpers/sidecar.js");
    const { runBin } = await import("../helpers/proc.js");
    let secret = "";
    const rx = new Receiver(() => secret);
    await rx.start();
    const s = await startTestSidecar();
    try {
      const cli = (...args: string[]) => runBin([...args, "--admin", s.adminAddress, "--token", s.adminToken]);
      const c = await cli("webhooks", "create", "--url", `http://127.0.0.1:${rx.port}/x`, "--thresholds", "75,90", "--json");
      expect(c.code, c.stderr).to.equal(0);
      const created = JSON.parse(c.stdout);
      secret = created.secret;
      expect(created).to.include({ url: `http://127.0.0.1:${rx.port}/x` });
      expect(created.thresholds).to.deep.equal([75, 90]);
      expect((await cli("webhooks", "test", created.id)).code).to.equal(0);
      await until("the ping", () => rx.processed.size === 1);
      await new Promise((r) => setTimeout(r, 300)); // the 204 reaches the sidecar after the receiver processed it
      const d = await cli("webhooks", "deliveries", "--webhook", created.id, "--json");
      expect(JSON.parse(d.stdout).deliveries[0]).to.include({ event_type: "ping", state: "delivered", attempts: 1 });
      const l = await cli("webhooks", "list");
      expect(l.stdout).to.include(created.id).and.include("75,90 %");
      expect(l.stdout).to.not.include(secret);
      expect((await cli("webhooks", "delete", created.id)).code).to.equal(0);
      expect((await cli("webhooks", "list")).stdout).to.include("No webhooks.");
    } finally {
      await s.close();
      await removeDir(s.dir);
      await rx.stop();
    }
  });
});
