// End to end, live usage: the real `aisa-authz tui` in tmux (private socket,
// 120×40) against a real sidecar child process while a client sends Checks and
// Consumes to its data port. The Usage view shows a non-zero requests/s and the
// key in the top keys; the Keys view's Remaining column follows the charges
// without a reload; a quota alert flashes and lands in the alerts list.
// Skipped only when tmux is not installed.
import { expect } from "chai";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { credentials } from "@grpc/grpc-js";
import { AdminClient } from "../../src/gen/aisa/v1/admin.js";
import { AuthorizerClient, Reason, type CheckResponse, type ConsumeResponse } from "../../src/gen/aisa/v1/authorizer.js";
import { GrpcAdminApi } from "../../tui/client.js";
import { BIN, hasTmux, ROOT, sleep, startSidecar, stopChild, Tmux, unary, waitExitStatus, type Sidecar } from "./e2eHarness.js";
import { requireProgram } from "../helpers/programs.js";

/** 2,000,000 units = $4.00 at the default 500,000 units per USD. */
const QUOTA = 2_000_000;

describe("tui end to end: live usage (tmux + real sidecar)", function () {
  this.timeout(120_000);
  let dir = "";
  let sidecar: Sidecar | undefined;
  let tmux: Tmux | undefined;
  let api: GrpcAdminApi | undefined;
  let authorizer: AuthorizerClient | undefined;
  let secret = "";
  let keyId = "";
  let exitFile = "";

  before(async function () {
    requireProgram(this, "tmux", "tmux", hasTmux());
    dir = await mkdtemp(join(tmpdir(), "aisa-tui-e2e-usage-"));
    sidecar = await startSidecar(join(dir, "data"));
    const token = (await readFile(join(dir, "data", "admin.token"), "utf8")).trim();
    api = new GrpcAdminApi(sidecar.adminAddress, token);
    const admin = new AdminClient(sidecar.adminAddress, credentials.createInsecure());
    await unary((md, cb) => admin.adjustBalance({ accountId: "default", delta: "50000000", reason: "tui e2e usage" }, md, cb), token);
    admin.close();
    const spec = { group: "", expires: "never", quota: String(QUOTA), unlimited: false, models: [], ips: [], limits: undefined, refill: 0, metadata: {} };
    const created = await api.createKey({ ...spec, name: "hot-key" });
    secret = created.secret;
    keyId = created.key?.id ?? "";
    await api.createKey({ ...spec, name: "idle-key" });
    authorizer = new AuthorizerClient(sidecar.dataAddress, credentials.createInsecure());

    tmux = new Tmux(join(dir, "tmux.sock"));
    exitFile = join(dir, "tui.exit");
    const cmd = `${JSON.stringify(process.execPath)} ${JSON.stringify(BIN)} tui --admin ${sidecar.adminAddress} --token ${token}; echo $? > ${JSON.stringify(exitFile)}`;
    tmux.run("new-session", "-d", "-s", "tui", "-x", "120", "-y", "40", "-c", ROOT, cmd, ";", "set-option", "-t", "tui", "remain-on-exit", "on");
  });

  after(async () => {
    if (tmux) {
      try {
        tmux.run("kill-server");
      } catch {
        // already gone
      }
    }
    authorizer?.close();
    api?.close();
    await stopChild(sidecar?.child);
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  let seq = 0;
  const check = (): Promise<CheckResponse> =>
    unary((md, cb) =>
      (authorizer as AuthorizerClient).check({ apiKey: secret, model: "", clientIp: "127.0.0.1", estimatedUnits: "1000", maxTokens: "0", requestId: "" }, md, cb),
    );
  const consume = (reservationId: string, units: number): Promise<ConsumeResponse> =>
    unary((md, cb) =>
      (authorizer as AuthorizerClient).consume(
        { requestId: `e2e-usage-${++seq}`, target: { $case: "reservationId", value: reservationId }, model: "", inputTokens: "120", outputTokens: "80", units: String(units), cacheReadTokens: "0", cacheWriteTokens: "0", reasoningTokens: "0" },
        md,
        cb,
      ),
    );

  /** Checks and Consumes (1,000 units each) about 20 times a second until `stop` resolves. */
  async function traffic(stop: Promise<unknown>): Promise<number> {
    let done = false;
    void stop.finally(() => {
      done = true;
    });
    let n = 0;
    while (!done) {
      const c = await check();
      expect(c.reason, JSON.stringify(c)).to.equal(Reason.REASON_ALLOWED);
      await consume(c.reservationId, 1000);
      n++;
      await sleep(50);
    }
    return n;
  }

  it("shows requests/s and the key in top keys while Checks and Consumes run; Remaining and alerts follow", async () => {
    const t = tmux as Tmux;
    // Start-up may be slow on a loaded machine (cold tsx cache): allow a minute.
    await t.waitFor((p) => p.includes("2 of 2 keys"), "the key table", 60_000);

    // The Usage view, live, while traffic runs.
    await t.key("3");
    await t.waitFor((p) => p.includes("● live"), "the live stream");
    const seen = t.waitFor(
      (p) => {
        const rate = /^Last \d+ s\s+([\d.,]+) req\/s/m.exec(p)?.[1];
        return rate !== undefined && Number(rate.replace(/,/g, "")) > 0 && /^\s*1 hot-key\s/m.test(p);
      },
      "a non-zero requests/s and hot-key first in the top keys",
    );
    const [pane, sent] = await Promise.all([seen, traffic(seen)]);
    expect(sent).to.be.greaterThan(0);
    const top = pane.split("\n").find((l) => /^\s*1 hot-key\s/.test(l)) ?? "";
    expect(top, pane).to.match(/[▁▂▃▄▅▆▇█]/);
    expect(top).to.match(/\s[1-9][\d,]*\s+≈ \$/); // units spent in the window
    expect(pane).not.to.match(/^\s*\d+ idle-key\s/m);

    // The Keys view: hot-key's Remaining follows the charges (no reload).
    await t.key("1");
    const before = await t.waitFor((p) => /hot-key\s+Enabled\s+≈ \$\S+ \/ \$4\.00/.test(p), "hot-key's Remaining");
    const remainingOf = (p: string): string => /hot-key\s+Enabled\s+≈ (\$\S+) \/ \$4\.00/.exec(p)?.[1] ?? "";
    const was = remainingOf(before);
    const changed = t.waitFor((p) => remainingOf(p) !== "" && remainingOf(p) !== was, "a live Remaining update");
    await Promise.all([changed, traffic(changed)]);
    expect(await api?.listKeys().then((ks) => ks.length)).to.equal(2);

    // One big charge crosses 50 % of the quota: the alert flashes on the Keys screen…
    const c = await check();
    await consume(c.reservationId, QUOTA / 2);
    let p = await t.waitFor((x) => x.includes("has used 50% of its quota"), "the 50 % alert in the status line");
    expect(p).to.include("⚠");
    // …and is listed in the Usage view.
    await t.key("3");
    p = await t.waitFor((x) => /quota 50%\s+key \S+ \(hot-key\) has used 50% of its quota/.test(x), "the alert in the Usage view");
    expect(p).to.include(keyId);

    // Resize to 80×24: the view re-lays out within the width and keeps its sections.
    t.run("resize-window", "-t", "tui", "-x", "80", "-y", "24");
    p = await t.waitFor((x) => x.split("\n").every((l) => [...l].length <= 80) && x.includes("Top keys by spend") && /^\s*1 hot-key\s/m.test(x), "the 80-column Usage view");
    expect(p).to.include("Alerts and key events");

    await t.key("q");
    const code = await waitExitStatus(exitFile);
    expect(code, "exit status of aisa-authz tui").to.equal("0");
  });
});
