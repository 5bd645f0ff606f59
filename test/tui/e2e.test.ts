// End to end: the real `aisa-authz tui` in tmux (private socket, 120×40)
// against a real sidecar child process. Keys go one per `send-keys`; the test
// polls `capture-pane -p`. Skipped only when tmux is not installed.
import { expect } from "chai";
import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { credentials, Metadata, type ServiceError } from "@grpc/grpc-js";
import { AdminClient } from "../../src/gen/aisa/v1/admin.js";
import { AuthorizerClient, Reason, type CheckResponse } from "../../src/gen/aisa/v1/authorizer.js";
import { KeyStatus } from "../../src/gen/aisa/v1/types.js";
import { GrpcAdminApi } from "../../tui/client.js";

const ROOT = fileURLToPath(new URL("../../", import.meta.url));
const BIN = join(ROOT, "bin/aisa-authz.js");

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

function hasTmux(): boolean {
  const r = spawnSync("tmux", ["-V"], { encoding: "utf8" });
  return r.status === 0;
}

interface Sidecar {
  child: ChildProcess;
  adminAddress: string;
  dataAddress: string;
  stderr: string[];
}

interface ReadyLine {
  msg?: string;
  adminAddress?: string;
  dataAddress?: string;
}

/** `aisa-authz serve` on ephemeral loopback ports; resolves on its "ready" JSON log line. */
function startSidecar(dataDir: string): Promise<Sidecar> {
  const child = spawn(
    process.execPath,
    [BIN, "serve", "--data", dataDir, "--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0", "--metrics-listen", "127.0.0.1:0"],
    { cwd: ROOT, stdio: ["ignore", "pipe", "pipe"] },
  );
  const stderr: string[] = [];
  child.stderr?.on("data", (d: Buffer) => stderr.push(d.toString("utf8")));
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`sidecar not ready after 30 s; stderr: ${stderr.join("")}`)), 30_000);
    let buf = "";
    child.stdout?.on("data", (d: Buffer) => {
      buf += d.toString("utf8");
      let i: number;
      while ((i = buf.indexOf("\n")) >= 0) {
        const line = buf.slice(0, i);
        buf = buf.slice(i + 1);
        let j: ReadyLine | null;
        try {
          j = JSON.parse(line) as ReadyLine | null;
        } catch {
          continue;
        }
        if (j?.msg === "ready" && j.adminAddress && j.dataAddress) {
          clearTimeout(timer);
          resolve({ child, adminAddress: j.adminAddress, dataAddress: j.dataAddress, stderr });
        }
      }
    });
    child.once("exit", (code) => {
      clearTimeout(timer);
      reject(new Error(`sidecar exited (${code}) before ready: ${stderr.join("")}`));
    });
  });
}

async function stopChild(child: ChildProcess | undefined): Promise<void> {
  if (!child?.pid || child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise<void>((r) => child.once("exit", () => r()));
  process.kill(child.pid, "SIGTERM");
  const timeout = sleep(5000).then(() => "timeout");
  if ((await Promise.race([exited.then(() => "exited"), timeout])) === "timeout" && child.pid) process.kill(child.pid, "SIGKILL");
}

class Tmux {
  constructor(private readonly socket: string) {}

  run(...args: string[]): string {
    const r = spawnSync("tmux", ["-S", this.socket, "-f", "/dev/null", ...args], { encoding: "utf8" });
    if (r.status !== 0) throw new Error(`tmux ${args.join(" ")}: ${r.stderr}`);
    return r.stdout;
  }

  capture(): string {
    return this.run("capture-pane", "-p", "-t", "tui");
  }

  /** One key per send-keys (tmux would deliver "j j" as one chunk). Named keys: Enter, Escape, Tab, C-s… */
  async key(name: string): Promise<void> {
    this.run("send-keys", "-t", "tui", name);
    await sleep(120);
  }

  /** Literal characters, still one per send-keys. */
  async type(text: string): Promise<void> {
    for (const c of text) {
      this.run("send-keys", "-t", "tui", "-l", c);
      await sleep(60);
    }
  }

  async waitFor(pred: (pane: string) => boolean, what: string, ms = 20_000): Promise<string> {
    const until = Date.now() + ms;
    let pane = "";
    while (Date.now() < until) {
      pane = this.capture();
      if (pred(pane)) return pane;
      await sleep(100);
    }
    throw new Error(`timed out waiting for ${what}; pane:\n${pane}`);
  }
}

function unary<Res>(fn: (md: Metadata, cb: (err: ServiceError | null, res: Res) => void) => void, token?: string): Promise<Res> {
  const md = new Metadata();
  if (token) md.set("authorization", `Bearer ${token}`);
  return new Promise((resolve, reject) => fn(md, (err, res) => (err ? reject(err) : resolve(res))));
}

describe("tui end to end (tmux + real sidecar)", function () {
  this.timeout(180_000);
  let dir = "";
  let sidecar: Sidecar | undefined;
  let tmux: Tmux | undefined;
  let token = "";
  let api: GrpcAdminApi | undefined;
  let exitFile = "";

  before(async function () {
    if (!hasTmux()) {
      console.log("    (skipped: tmux is not installed; .ci/run installs it)");
      this.skip();
    }
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

    let pane = await t.waitFor((p) => p.includes("3 of 3 keys"), "the key table");
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
    pane = await t.waitFor((p) => !p.includes("IP restrictions") && p.includes("Expires"), "the 80-column layout");
    for (const l of pane.split("\n")) expect([...l].length).to.be.at.most(80);
    expect(pane).to.include("0 of 2 keys"); // the "bulk-" search is still on, and both are gone

    // Quit cleanly.
    await t.key("q");
    const until = Date.now() + 20_000;
    let code: string | null = null;
    while (code === null && Date.now() < until) {
      code = await readFile(exitFile, "utf8").then(
        (x) => x.trim(),
        () => null,
      );
      if (code === null) await sleep(100);
    }
    expect(code, "exit status of aisa-authz tui").to.equal("0");
  });
});
