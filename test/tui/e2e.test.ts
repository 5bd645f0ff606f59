// End to end: the real `aisa-authz tui` in tmux (private socket, 120×40)
// against a real sidecar child process. Keys go one per `send-keys`; the test
// polls `capture-pane -p`. Skipped only when tmux is not installed.
import { expect } from "chai";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { credentials } from "@grpc/grpc-js";
import { AdminClient } from "../../src/gen/aisa/v1/admin.js";
import { AuthorizerClient, Reason, type CheckResponse } from "../../src/gen/aisa/v1/authorizer.js";
import { KeyStatus } from "../../src/gen/aisa/v1/types.js";
import { GrpcAdminApi } from "../../tui/client.js";
import { BIN, hasTmux, ROOT, startSidecar, stopChild, Tmux, unary, waitExitStatus, type Sidecar } from "./e2eHarness.js";
import { requireProgram } from "../helpers/programs.js";

describe("tui end to end (tmux + real sidecar)", function () {
  this.timeout(180_000);
  let dir = "";
  let sidecar: Sidecar | undefined;
  let tmux: Tmux | undefined;
  let token = "";
  let api: GrpcAdminApi | undefined;
  let exitFile = "";

  before(async function () {
    requireProgram(this, "tmux", "tmux", hasTmux());
    dir = await mkdtemp(join(tmpdir(), "aisa-tui-e2e-"));
    sidecar = await startSidecar(join(dir, "data"));
    token = (await readFile(join(dir, "data", "admin.token"), "utf8")).trim();
    api = new GrpcAdminApi(sidecar.adminAddress, token);

    // Credit the default account so an enabled key is admitted (Check also
    // needs the account balance), and seed keys for the search and the bulk delete.
    const admin = new AdminClient(sidecar.adminAddress, credentials.createInsecure());
    await unary((md, cb) => admin.adjustBalance({ accountId: "default", delta: "50000000", reason: "tui e2e" }, md, cb), token);
    admin.close();
    const spec = { group: "", expires: "never", quota: "0", unlimited: true, models: [], ips: [], limits: undefined, refill: 0, metadata: {} };
    for (const name of ["bulk-a", "bulk-b", "noise-1"]) await api.createKey({ ...spec, name });

    tmux = new Tmux(join(dir, "tmux.sock"));
    // The exit status goes to a file: tmux's #{pane_dead_status} is sometimes
    // left empty when the pane's pty closes before tmux reaps the child.
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
    api?.close();
    await stopChild(sidecar?.child);
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it("creates a key in the form, finds it, disables it (Check denied), bulk-deletes two keys, quits", async () => {
    const t = tmux as Tmux;
    const sc = sidecar as Sidecar;
    const admin = api as GrpcAdminApi;

    // Start-up may be slow on a loaded machine (cold tsx cache): allow a minute.
    let pane = await t.waitFor((p) => p.includes("3 of 3 keys"), "the key table", 60_000);
    expect(pane).to.include("operator");
    expect(pane).to.include("noise-1");

    // Create through the form.
    const name = `e2e-${Date.now().toString(36)}`;
    await t.key("n");
    await t.waitFor((p) => p.includes("Create a key"), "the form");
    await t.type(name);
    await t.key("C-s");
    pane = await t.waitFor((p) => p.includes(`Key created: ${name}`), "the new key's secret");
    let secret = /sk-[0-9A-Za-z]{43}/.exec(pane)?.[0];
    const created = (await admin.listKeys()).find((k) => k.name === name);
    expect(created, "created key").to.not.equal(undefined);
    if (!secret) secret = (await admin.revealKeys([created?.id ?? ""]))[0]?.secret;
    expect(secret).to.match(/^sk-/);
    await t.key("Enter");
    await t.waitFor((p) => !p.includes("Key created") && p.includes("4 of 4 keys"), "the table with the new key");

    const authorizer = new AuthorizerClient(sc.dataAddress, credentials.createInsecure());
    const check = (): Promise<CheckResponse> =>
      unary((md, cb) =>
        authorizer.check({ apiKey: secret ?? "", model: "", clientIp: "127.0.0.1", estimatedUnits: "1", maxTokens: "0", requestId: "" }, md, cb),
      );
    const before = await check();
    expect(before.reason, JSON.stringify(before)).to.equal(Reason.REASON_ALLOWED);

    // Find it with /.
    await t.key("/");
    await t.type(name);
    await t.key("Enter");
    pane = await t.waitFor((p) => p.includes("1 of 4 keys") && p.includes(`/${name}`), "the search result");
    expect(pane).to.match(new RegExp(`› ${name}\\s+Enabled`));

    // Disable it; Check is then denied.
    await t.key("x");
    pane = await t.waitFor((p) => p.includes(`Disabled "${name}"`), "the disabled status");
    expect(pane).to.match(new RegExp(`› ${name}\\s+Disabled`));
    expect((await admin.listKeys()).find((k) => k.name === name)?.status).to.equal(KeyStatus.KEY_STATUS_DISABLED);
    const after = await check();
    expect(after.allowed).to.equal(false);
    expect(after.reason).to.equal(Reason.REASON_KEY_DISABLED);
    authorizer.close();

    // Bulk delete the two "bulk-" keys: search, mark all visible, delete, type the count.
    await t.key("Escape");
    await t.waitFor((p) => p.includes("4 of 4 keys"), "the cleared search");
    await t.key("/");
    await t.type("bulk-");
    await t.key("Enter");
    await t.waitFor((p) => p.includes("2 of 4 keys"), "the bulk keys");
    await t.key("a");
    await t.waitFor((p) => p.includes("2 marked"), "the marks");
    await t.key("d");
    pane = await t.waitFor((p) => p.includes("Delete 2 keys?"), "the confirm dialog");
    expect(pane).to.match(/› \[ Cancel \]/);
    await t.type("2");
    await t.key("Tab");
    await t.waitFor((p) => /› \[ Delete 2 \]/.test(p), "Delete focused");
    await t.key("Enter");
    await t.waitFor((p) => p.includes("Deleted 2 keys"), "the deletion");
    const left = (await admin.listKeys()).map((k) => k.name).sort();
    expect(left).to.deep.equal([name, "noise-1"].sort());

    // Resize to 80×24: the table re-lays out (fewer columns) and stays within the width.
    t.run("resize-window", "-t", "tui", "-x", "80", "-y", "24");
    pane = await t.waitFor((p) => !p.includes("IP Restrictions") && p.includes("Expiration Time"), "the 80-column layout");
    for (const l of pane.split("\n")) expect([...l].length).to.be.at.most(80);
    expect(pane).to.include("0 of 2 keys"); // the "bulk-" search is still on, and both are gone

    // Quit cleanly.
    await t.key("q");
    const code = await waitExitStatus(exitFile);
    expect(code, "exit status of aisa-authz tui").to.equal("0");
  });
});
