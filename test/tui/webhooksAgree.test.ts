// The CLI and the TUI agree on webhooks against one real sidecar (in this process, real gRPC):
// the same typed text makes the same endpoint whether `aisa-authz webhooks create` (the real bin)
// or the TUI's client (GrpcAdminApi, the parse of its form) sends it; the same bad text is
// refused by both naming the same field; a test event queued from the TUI shows in the CLI's
// `webhooks list` counts and deliveries; what one removes is gone for the other. An account
// token gets PERMISSION_DENIED from both.
import { expect } from "chai";
import type { CreateTokenResponse } from "../../src/gen/aisa/v1/admin.js";
import { checkWebhookForm } from "../../tui/state/webhooks.js";
import { ApiError, GrpcAdminApi } from "../../tui/client.js";
import { runBin } from "../helpers/proc.js";
import { call, removeDir, startTestSidecar, type TestSidecar } from "../helpers/sidecar.js";

describe("webhooks: the CLI and the TUI agree (real sidecar, real bin)", function () {
  this.timeout(90_000);
  let s: TestSidecar;
  let tui: GrpcAdminApi;
  const cli = async (...args: string[]) => {
    const r = await runBin([...args, "--admin", s.adminAddress, "--token", s.adminToken]);
    return { ...r, json: () => JSON.parse(r.stdout) };
  };

  before(async () => {
    s = await startTestSidecar();
    tui = new GrpcAdminApi(s.adminAddress, s.adminToken);
  });
  after(async () => {
    tui?.close();
    await s?.close();
    if (s) await removeDir(s.dir);
  });

  it("the same text makes the same endpoint; bad text is refused naming the same field", async () => {
    const text = { events: "quota.threshold, balance.low", thresholds: "90,75", balanceLow: "1000" };
    const c = await cli("webhooks", "create", "--url", "http://127.0.0.1:9/cli", "--events", text.events, "--thresholds", text.thresholds, "--balance-low", text.balanceLow, "--json");
    expect(c.code, c.stderr).to.equal(0);
    const form = checkWebhookForm({ url: "http://127.0.0.1:9/tui", ...text });
    expect(form.ok).to.equal(true);
    const t = await tui.createWebhook(form.ok ? form.request : (null as never));
    expect(t.secret).to.match(/^whsec_/);
    const all = await tui.listWebhooks();
    const shape = (u: string) => {
      const w = all.find((x) => x.url === u)!;
      return { events: w.events, thresholds: w.thresholds, balanceLow: w.balanceLow };
    };
    expect(shape("http://127.0.0.1:9/cli")).to.deep.equal(shape("http://127.0.0.1:9/tui"));
    expect(shape("http://127.0.0.1:9/tui")).to.deep.equal({ events: ["quota.threshold", "balance.low"], thresholds: [75, 90], balanceLow: "1000" });

    for (const [flag, value, field] of [
      ["--thresholds", "50,150", "thresholds"],
      ["--events", "quota.threshold,nope", "events"],
      ["--balance-low", "-5", "balance_low"],
    ] as const) {
      const r = await cli("webhooks", "create", "--url", "http://127.0.0.1:9/bad", flag, value);
      expect(r.code, r.stderr).to.equal(2);
      const f = checkWebhookForm({ url: "http://127.0.0.1:9/bad", events: "", thresholds: "", balanceLow: "", [flag === "--thresholds" ? "thresholds" : flag === "--events" ? "events" : "balanceLow"]: value });
      expect(f.ok).to.equal(false);
      const problem = f.ok ? "" : f.message.replace(/^[a-z_]+(\[\d+\])?: /, "");
      expect(r.stderr, field).to.include(`${flag}: ${problem}`);
    }
    const bad = await cli("webhooks", "create", "--url", "ftp://x/");
    expect(bad.stderr).to.include("--url: must be http or https (got ftp:)");
    const badForm = checkWebhookForm({ url: "ftp://x/", events: "", thresholds: "", balanceLow: "" });
    expect(!badForm.ok && badForm.message).to.equal("url: must be http or https (got ftp:)");
  });

  it("a test event queued from the TUI shows in the CLI's counts and deliveries; a removal is seen by both", async () => {
    const hooks = await tui.listWebhooks();
    const target = hooks.find((w) => w.url.endsWith("/tui"))!;
    const d = await tui.testWebhook(target.id);
    const listed = (await cli("webhooks", "list", "--json")).json();
    const mine = listed.webhooks.find((w: { id: string }) => w.id === target.id);
    const tuiView = (await tui.listWebhooks()).find((w) => w.id === target.id)!;
    expect(mine.pending + mine.delivered + mine.failed).to.equal(1);
    expect({ pending: mine.pending, delivered: mine.delivered, failed: mine.failed }).to.deep.equal({ pending: tuiView.pending, delivered: tuiView.delivered, failed: tuiView.failed });
    const dl = (await cli("webhooks", "deliveries", "--json")).json();
    expect(dl.deliveries.map((x: { id: string }) => x.id)).to.include(d.id);
    expect((await tui.listWebhookDeliveries(50)).map((x) => x.id)).to.include(d.id);
    expect((await cli("webhooks", "delete", target.id)).code).to.equal(0);
    expect((await tui.listWebhooks()).map((w) => w.id)).to.not.include(target.id);
    const other = hooks.find((w) => w.url.endsWith("/cli"))!;
    await tui.deleteWebhook(other.id);
    expect((await cli("webhooks", "list", "--json")).json().webhooks).to.deep.equal([]);
  });

  it("an account token: PERMISSION_DENIED from both", async () => {
    await call(s.admin, "createAccount", { id: "acme", name: "acme" }, s.meta());
    const tok = (await call<unknown, CreateTokenResponse>(s.admin, "createToken", { name: "acme", accountId: "acme" }, s.meta())).secret;
    const scoped = new GrpcAdminApi(s.adminAddress, tok);
    try {
      let err: unknown;
      await scoped.createWebhook({ url: "http://127.0.0.1:9/x", events: [], thresholds: [], balanceLow: "0" }).catch((e) => (err = e));
      expect(err).to.be.instanceOf(ApiError);
      expect((err as ApiError).code).to.equal("PERMISSION_DENIED");
      const r = await runBin(["webhooks", "create", "--url", "http://127.0.0.1:9/x", "--admin", s.adminAddress, "--token", tok]);
      expect(r.code).to.equal(1);
      expect(r.stderr).to.match(/^error: PERMISSION_DENIED: /);
    } finally {
      scoped.close();
    }
  });
});
