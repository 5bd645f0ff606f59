// The API Keys page as a new user reads it, end to end: a real sidecar child process, the real
// bin (CLI), the data plane (aisa.v1 Authorizer Check), and the real TUI in tmux (private
// socket). What is shown must agree with what Check enforces: a group's model restriction,
// an expired key, a quota all held by open reservations; plus the CLI's input and layout
// fixes, backspace bursts and the cursor that follows its key. tmux parts are skipped only
// when tmux is not installed.
import { expect } from "chai";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { credentials } from "@grpc/grpc-js";
import { AdminClient } from "../../src/gen/aisa/v1/admin.js";
import { AuthorizerClient, ConsumeRequest, Reason, type CheckResponse, type ConsumeResponse } from "../../src/gen/aisa/v1/authorizer.js";
import { runBin } from "../helpers/proc.js";
import { BIN, hasTmux, ROOT, sleep, startSidecar, stopChild, Tmux, unary, type Sidecar } from "../tui/e2eHarness.js";
import { requireProgram } from "../helpers/programs.js";

type Doc = Record<string, any>;

describe("issue 17 end to end: what the page shows is what Check enforces", function () {
  this.timeout(180_000);
  let dir = "";
  let sidecar: Sidecar | undefined;
  let authorizer: AuthorizerClient | undefined;
  let token = "";
  const ids: Record<string, string> = {};
  const secrets: Record<string, string> = {};
  let expiresAt = 0;

  const cli = (...args: string[]) => runBin([...args, "--admin", (sidecar as Sidecar).adminAddress, "--token", token]);
  const json = async (...args: string[]): Promise<Doc> => {
    const r = await cli(...args, "--json");
    expect(r.code, `${args.join(" ")}\n${r.stderr}`).to.equal(0);
    return JSON.parse(r.stdout) as Doc;
  };
  const check = (secret: string, model: string, estimatedUnits = "0"): Promise<CheckResponse> =>
    unary((md, cb) => (authorizer as AuthorizerClient).check({ apiKey: secret, model, clientIp: "127.0.0.1", estimatedUnits, maxTokens: "0", requestId: "" }, md, cb));

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), "aisa-e2e-17-"));
    sidecar = await startSidecar(join(dir, "data"));
    token = (await readFile(join(dir, "data", "admin.token"), "utf8")).trim();
    const admin = new AdminClient(sidecar.adminAddress, credentials.createInsecure());
    await unary((md, cb) => admin.adjustBalance({ accountId: "default", delta: "50000000", reason: "e2e 17" }, md, cb), token);
    for (const model of ["gpt-4o-mini", "flat-model"]) {
      await unary((md, cb) => admin.setPrice({ price: { model, inputPerMillion: "1000", outputPerMillion: "1000", perRequest: "0" } }, md, cb), token);
    }
    admin.close();
    expect((await cli("groups", "create", "mini", "--models", "gpt-4o-mini")).code).to.equal(0);
    const make = async (name: string, ...flags: string[]) => {
      const k = await json("keys", "create", "--name", name, ...flags);
      ids[name] = k.id as string;
      secrets[name] = k.key as string;
    };
    await make("grouped", "--group", "mini");
    await make("held", "--quota", "3000");
    expiresAt = Date.now() + 4000;
    await make("soon", "--expires", new Date(expiresAt).toISOString().replace(/\.\d{3}Z$/, "Z"));
    await make("日本語のキー");
    authorizer = new AuthorizerClient(sidecar.dataAddress, credentials.createInsecure());
    // Hold all of "held"'s quota with an open reservation (admitted, never consumed).
    const c = await check(secrets.held as string, "", "3000");
    expect(c.reason, JSON.stringify(c)).to.equal(Reason.REASON_ALLOWED);
    await sleep(Math.max(0, expiresAt - Date.now() + 300));
  });

  after(async () => {
    authorizer?.close();
    await stopChild(sidecar?.child);
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it("1. a group's model list shows as the key's Available Models, and the model filter uses it (as Check does)", async () => {
    const get = await cli("keys", "get", ids.grouped as string);
    expect(get.stdout).to.match(/Available Models:\s+gpt-4o-mini \(group mini\)/);
    const doc = await json("keys", "get", ids.grouped as string);
    expect(doc).to.deep.include({ models: [], group_models: ["gpt-4o-mini"], models_restricted: true, effective_models: ["gpt-4o-mini"] });
    const listed = ((await json("keys", "list", "--model", "flat-model")).keys as Doc[]).map((k) => k.name);
    expect(listed).not.to.include("grouped");
    expect(listed).to.include("held");
    expect((await check(secrets.grouped as string, "flat-model")).reason).to.equal(Reason.REASON_MODEL_NOT_ALLOWED);
    expect(((await json("keys", "list", "--model", "gpt-4o-mini")).keys as Doc[]).map((k) => k.name)).to.include("grouped");
  });

  it("2. an expired key reads Expired (CLI, JSON) and the status filter selects it; enabled = usable now", async () => {
    expect((await cli("keys", "get", ids.soon as string)).stdout).to.match(/Status:\s+Expired/);
    expect(await json("keys", "get", ids.soon as string)).to.deep.include({ status: "expired", enabled: true, expired: true });
    const expired = ((await json("keys", "list", "--status", "expired")).keys as Doc[]).map((k) => k.name);
    expect(expired).to.deep.equal(["soon"]);
    const enabled = ((await json("keys", "list", "--status", "enabled")).keys as Doc[]).map((k) => k.name);
    expect(enabled).not.to.include("soon");
    expect((await check(secrets.soon as string, "")).reason).to.equal(Reason.REASON_KEY_EXPIRED);
  });

  it("3. remaining shows what can be spent: a quota all reserved reads 0, with the reserved part", async () => {
    const get = await cli("keys", "get", ids.held as string);
    expect(get.stdout).to.match(/Remaining \/ Total Quota:\s+0 \/ 3,000 \(≈ \$0\.00 \/ \$0\.006\) · 3,000 reserved/);
    expect((await json("keys", "get", ids.held as string)).quota).to.deep.include({ remaining: 3000, spendable: 0, reserved: 3000 });
    expect((await check(secrets.held as string, "", "1")).reason).to.equal(Reason.REASON_KEY_QUOTA_EXHAUSTED);
  });

  it("11. CLI: update --help, --no-unlimited, too-long expiry, unknown models, currency quota, names in usage, wide names, fitted tables", async () => {
    const help = await cli("keys", "update", "--help");
    expect(help.stdout).not.to.include('(default: "default")').and.not.include("(default: never)");
    const bare = await cli("keys", "update", ids.held as string, "--no-unlimited");
    expect(bare.code).to.equal(2);
    expect(bare.stderr).to.include("--no-unlimited needs --quota");
    const long = await cli("keys", "update", ids.held as string, "--expires", "100000d");
    expect(long.code).to.not.equal(0);
    expect(long.stderr).to.include("is too long").and.not.include("not a duration");
    const warned = await cli("keys", "create", "--name", "typo", "--models", "never-heard-of");
    expect(warned.code).to.equal(0);
    expect(warned.stderr).to.match(/warning: .*"never-heard-of"/);
    const dollars = await json("keys", "create", "--name", "five dollars", "--quota", "$5");
    expect(dollars.quota).to.deep.include({ total: 2_500_000 });
    const usage = await cli("usage", "--by", "key", "--since", "1h");
    expect(usage.code, usage.stderr).to.equal(0);
    expect(usage.stdout).to.include("NAME").and.include("held");
    const table = await runBin(["keys", "list", "--admin", (sidecar as Sidecar).adminAddress, "--token", token], { COLUMNS: "100" });
    const lines = table.stdout.trimEnd().split("\n");
    for (const l of lines) expect([...l].length, l).to.be.at.most(100);
    const wide = lines.find((l) => l.includes("日本語")) as string;
    const plain = lines.find((l) => l.includes(" held ")) as string;
    // The STATUS column starts at the same terminal column on a CJK row and an ASCII row.
    const col = (l: string) => [...l.slice(0, l.search(/Enabled|Expired|Disabled/))].reduce((n, ch) => n + (/[\u3000-\u9fff]/.test(ch) ? 2 : 1), 0);
    expect(col(wide)).to.equal(col(plain));
  });

  describe("the TUI in tmux", () => {
    let tmux: Tmux | undefined;
    before(async function () {
      requireProgram(this, "tmux", "tmux", hasTmux());
      tmux = new Tmux(join(dir, "tmux.sock"));
      const cmd = `${JSON.stringify(process.execPath)} ${JSON.stringify(BIN)} tui --admin ${(sidecar as Sidecar).adminAddress} --token ${token}`;
      tmux.run("new-session", "-d", "-s", "tui", "-x", "160", "-y", "45", "-c", ROOT, cmd);
      await tmux.waitFor((p) => / of \d+ keys/.test(p), "the key list");
    });
    after(() => {
      try {
        tmux?.run("kill-server");
      } catch {
        // already gone
      }
    });
    const row = (pane: string, name: string) => pane.split("\n").find((l) => l.includes(` ${name} `)) ?? "";

    it("1-3. 160×45: group models, Expired, spendable and reserved in the table", async () => {
      const t = tmux as Tmux;
      const pane = await t.waitFor((p) => p.includes("Expired"), "Expired");
      expect(row(pane, "grouped")).to.include("gpt-4o-mini");
      expect(row(pane, "soon")).to.include("Expired");
      expect(row(pane, "held")).to.include("≈ $0.00 / $0.006 (R)");
    });

    it("4. the Groups view counts keys created or moved elsewhere without R; Used stays with the group charged (the ledger's)", async () => {
      const t = tmux as Tmux;
      // 1,500 units charged to "grouped" while it is in group mini ($0.003 at 500,000 units per $).
      const c = await check(secrets.grouped as string, "gpt-4o-mini", "1500");
      expect(c.reason, JSON.stringify(c)).to.equal(Reason.REASON_ALLOWED);
      const consumed = await unary<ConsumeResponse>((md, cb) =>
        (authorizer as AuthorizerClient).consume(
          ConsumeRequest.fromPartial({ requestId: "e2e-17-group-charge", target: { $case: "reservationId", value: c.reservationId }, units: "1500" }),
          md,
          cb,
        ),
      );
      expect(consumed.unitsCharged, JSON.stringify(consumed)).to.equal("1500");
      const mini = (p: string): string => p.split("\n").find((l) => /^[› ] mini\s/.test(l)) ?? "";
      const keysOf = (p: string): number => Number(/^[› ] mini\s+(\d+)/.exec(mini(p))?.[1] ?? -1);
      await t.key("2");
      let pane = await t.waitFor((p) => keysOf(p) === 1 && mini(p).includes("$0.003"), "mini: 1 key, $0.003 used");
      expect((await cli("keys", "create", "--name", "mini-two", "--group", "mini")).code).to.equal(0);
      pane = await t.waitFor((p) => keysOf(p) === 2, "mini: 2 keys after a create elsewhere");
      expect((await cli("keys", "update", ids.grouped as string, "--group", "default")).code).to.equal(0);
      pane = await t.waitFor((p) => keysOf(p) === 1, "mini: 1 key after the move");
      // The charge stays with the group it was made in, as `usage --by group` reports it.
      expect(mini(pane)).to.include("$0.003");
      const byGroup = await cli("usage", "--by", "group", "--since", "1h");
      expect(byGroup.stdout.split("\n").some((l) => /\smini\s/.test(l) && l.includes("1,500")), byGroup.stdout).to.equal(true);
      expect((await cli("keys", "update", ids.grouped as string, "--group", "mini")).code).to.equal(0);
      await t.key("1");
      await t.waitFor((p) => / of \d+ keys/.test(p) && !p.includes("Used (all time)"), "the Keys view");
    });

    it("5. backspaces that arrive together all apply (search line)", async () => {
      const t = tmux as Tmux;
      await t.key("/");
      await t.type("heldzzzz");
      await t.waitFor((p) => / 0 of \d+ keys/.test(p), "no match");
      t.run("send-keys", "-t", "tui", "BSpace", "BSpace", "BSpace", "BSpace"); // one read
      await t.waitFor((p) => / 1 of \d+ keys/.test(p), "the four erased at once");
      await t.key("Escape");
      await t.waitFor((p) => !/ 1 of \d+ keys/.test(p), "search cleared");
    });

    it("6. the cursor stays on its key when another key is created above it", async () => {
      const t = tmux as Tmux;
      await t.key("G"); // the oldest key: "grouped"
      await t.waitFor((p) => /› grouped/.test(p), "cursor on grouped");
      expect((await cli("keys", "create", "--name", "inserted-above")).code).to.equal(0);
      const pane = await t.waitFor((p) => p.includes("inserted-above"), "the live insert");
      expect(pane).to.match(/› grouped/);
      // Deleted elsewhere: the status line says so, and the cursor is on another key.
      expect((await cli("keys", "delete", ids.grouped as string, "--yes")).code).to.equal(0);
      await t.waitFor((p) => p.includes('The selected key "grouped" is gone (deleted)') && !/› grouped/.test(p), "the gone warning");
    });

    it("10. 80×24: the help bar keeps ? help and q quit; the header keeps the balance", async () => {
      const t = tmux as Tmux;
      t.run("resize-window", "-t", "tui", "-x", "80", "-y", "24");
      // Waits for a whole redrawn frame (under load a capture can catch Ink mid-redraw).
      const pane = await t.waitFor(
        (p) => p.split("\n").every((l) => [...l].length <= 80) && p.includes("q quit") && /balance ≈ \$[\d,.]+/.test(p.split("\n")[0] ?? ""),
        "80 columns with the help bar and the header balance",
      );
      expect(pane).to.include("? help");
    });
  });
});

describe("issue 17, item 13: the first npx call of a fresh checkout does not compile first", () => {
  it("npm's prepare under npx (npm_command=exec) skips the ~20 s build and says so", async () => {
    const { spawnSync } = await import("node:child_process");
    const t0 = Date.now();
    const r = spawnSync(process.execPath, [join(ROOT, "scripts/build.mjs")], {
      cwd: ROOT,
      encoding: "utf8",
      env: { ...process.env, npm_lifecycle_event: "prepare", npm_command: "exec" },
    });
    expect(r.status).to.equal(0);
    expect(r.stderr).to.include("not compiling under npx");
    expect(Date.now() - t0).to.be.below(5000);
  });
});
