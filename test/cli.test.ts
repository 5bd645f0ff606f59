// The CLI end to end: the real `aisa-authz` bin as a child process against a
// real `aisa-authz serve` (LevelDB in a temp dir, gRPC on 127.0.0.1:0), with
// the operator token read from <data>/admin.token. Output is parsed from
// --json; tables are checked for the API Keys page's labels. The pure display
// and parsing helpers are tested directly first.
import { expect } from "chai";
import { spawn } from "node:child_process";
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { KeyStatus, type Quota } from "../src/gen/aisa/v1/types.js";
import {
  formatInteger,
  formatDuration,
  formatExpiry,
  formatMoney,
  formatQuota,
  formatStatus,
  formatTime,
  formatUnits,
  maskedIps,
  maskedModels,
  renderFields,
  renderTable,
} from "../src/display/format.js";
import { int64 } from "../src/cli/json.js";
import { parseDurationSeconds, parseInt64, parseList, parseMeta, parseSince, UsageError } from "../src/cli/parse.js";
import { selfSignedCert } from "./helpers/clients.js";
import { requireProgram } from "./helpers/programs.js";
import { BIN, runBin, type BinRun, startServe, stopProcess, type ServeProcess } from "./helpers/proc.js";
import { removeDir, tempDir } from "./helpers/tmp.js";

const NOW = Date.parse("2026-11-28T10:00:00Z");

describe("cli: display helpers", () => {
  const quota = (q: Partial<Quota>): Quota => ({ unlimited: false, total: "0", remaining: "0", used: "0", reserved: "0", ...q });
  const cases: { name: string; got: () => string; want: string }[] = [
    { name: "formatUnits: 750000 units at 500000/USD", got: () => formatUnits("750000", "500000", "USD"), want: "≈ $1.50" },
    { name: "formatUnits: a cent or more rounds half up to cents", got: () => formatUnits(7_501, 500_000, "USD"), want: "≈ $0.02" },
    // One rule below a cent: two significant digits, never a rounded cent for one and digits for another.
    { name: "formatUnits: 3,000 units read $0.006", got: () => formatUnits(3_000, 500_000, "USD"), want: "≈ $0.006" },
    { name: "formatUnits: 1,500 units read $0.003", got: () => formatUnits(1_500, 500_000, "USD"), want: "≈ $0.003" },
    { name: "formatUnits: -700 units read -$0.0014", got: () => formatUnits(-700, 500_000, "USD"), want: "≈ -$0.0014" },
    { name: "formatUnits: just under a cent rounds to the cent", got: () => formatUnits(4_999, 500_000, "USD"), want: "≈ $0.01" },
    { name: "formatUnits: tiny amounts keep a significant digit", got: () => formatUnits(1, 500_000, "USD"), want: "≈ $0.000002" },
    { name: "formatUnits: zero", got: () => formatUnits("0", "500000", "USD"), want: "≈ $0.00" },
    { name: "formatUnits: negative (overdraft)", got: () => formatUnits("-250000", "500000", "USD"), want: "≈ -$0.50" },
    { name: "formatUnits: other currency code", got: () => formatUnits("1000000", "500000", "CHF"), want: "≈ 2.00 CHF" },
    { name: "formatUnits: beyond 2^53 stays exact", got: () => formatUnits("9007199254740993000000", "1000000", "EUR"), want: "≈ €9,007,199,254,740,993.00" },
    { name: "formatUnits: no conversion known", got: () => formatUnits("5", "0", "USD"), want: "" },
    { name: "formatMoney: thousands", got: () => formatMoney("1234500000", "500000", "USD"), want: "$2,469.00" },
    { name: "formatInteger", got: () => formatInteger("-1234567"), want: "-1,234,567" },
    { name: "formatQuota: unlimited", got: () => formatQuota(quota({ unlimited: true }), "500000", "USD"), want: "Unlimited" },
    {
      name: "formatQuota: remaining / total",
      got: () => formatQuota(quota({ total: "750000", remaining: "375000" }), "500000", "USD"),
      want: "375,000 / 750,000 (≈ $0.75 / $1.50)",
    },
    { name: "formatExpiry: none", got: () => formatExpiry(undefined, NOW), want: "Never expires" },
    { name: "formatExpiry: in 3 days", got: () => formatExpiry(new Date("2026-12-01T10:00:00Z"), NOW), want: "in 3d (2026-12-01 10:00 UTC)" },
    { name: "formatExpiry: 1d minus a moment rounds to 1d", got: () => formatExpiry(new Date(NOW + 86_399_000), NOW), want: "in 1d (2026-11-29 09:59 UTC)" },
    { name: "formatExpiry: past", got: () => formatExpiry(new Date("2026-11-28T08:00:00Z"), NOW), want: "expired 2h ago (2026-11-28 08:00 UTC)" },
    { name: "formatDuration: months", got: () => formatDuration(90 * 86_400_000), want: "3mo" },
    { name: "formatTime", got: () => formatTime(new Date("2026-01-02T03:04:05Z")), want: "2026-01-02 03:04 UTC" },
    { name: "formatTime: unset", got: () => formatTime(undefined), want: "-" },
    { name: "formatStatus: enabled", got: () => formatStatus(KeyStatus.KEY_STATUS_ENABLED), want: "Enabled" },
    { name: "formatStatus: disabled", got: () => formatStatus(KeyStatus.KEY_STATUS_DISABLED), want: "Disabled" },
    { name: "maskedModels: empty = all", got: () => maskedModels([]), want: "Unlimited" },
    { name: "maskedModels: list", got: () => maskedModels(["gpt-4o", "o3"]), want: "gpt-4o, o3" },
    { name: "maskedIps: empty = any", got: () => maskedIps([]), want: "Unlimited" },
    { name: "renderTable aligns columns", got: () => renderTable(["A", "BB"], [["xxx", "y"], ["z", "≈ $1"]]), want: "A    BB\nxxx  y\nz    ≈ $1\n" },
    { name: "renderFields aligns values", got: () => renderFields([["Name", "a"], ["Status", "Enabled"]]), want: "Name:    a\nStatus:  Enabled\n" },
  ];
  for (const c of cases) it(c.name, () => expect(c.got()).to.equal(c.want));

  it("int64: numbers when safe, strings beyond 2^53", () => {
    expect(int64("750000")).to.equal(750000);
    expect(int64("-5")).to.equal(-5);
    expect(int64("9007199254740993")).to.equal("9007199254740993");
  });
});

describe("cli: argument parsers", () => {
  const ok: { name: string; got: () => unknown; want: unknown }[] = [
    { name: "parseList splits and trims", got: () => parseList("a, b,c"), want: ["a", "b", "c"] },
    { name: 'parseList "" clears', got: () => parseList(""), want: [] },
    { name: "parseList keeps inner empties for the server to reject", got: () => parseList("a,,b"), want: ["a", "", "b"] },
    { name: "parseMeta pairs", got: () => parseMeta(["env=prod", "note=a=b", "empty="]), want: { env: "prod", note: "a=b", empty: "" } },
    { name: 'parseMeta "" clears', got: () => parseMeta([""]), want: {} },
    { name: "parseDurationSeconds 0", got: () => parseDurationSeconds("0", "--grace"), want: 0 },
    { name: "parseDurationSeconds 1h30m", got: () => parseDurationSeconds("1h30m", "--grace"), want: 5400 },
    { name: "parseDurationSeconds 2d", got: () => parseDurationSeconds("2d", "--grace"), want: 172800 },
    { name: "parseInt64 keeps int64 exact", got: () => parseInt64("9223372036854775807", "--quota"), want: "9223372036854775807" },
    { name: "parseInt64 negative passes (the server owns the range)", got: () => parseInt64("-5", "--quota"), want: "-5" },
    { name: "parseSince duration", got: () => parseSince("24h", NOW).toISOString(), want: "2026-11-27T10:00:00.000Z" },
    { name: "parseSince RFC 3339", got: () => parseSince("2026-01-31T00:00:00Z", NOW).toISOString(), want: "2026-01-31T00:00:00.000Z" },
  ];
  for (const c of ok) it(c.name, () => expect(c.got()).to.deep.equal(c.want));

  const bad: { name: string; run: () => unknown; message: RegExp }[] = [
    { name: "parseInt64 rejects words", run: () => parseInt64("ten", "--quota"), message: /--quota: "ten" is not an integer/ },
    { name: "parseInt64 rejects out of range", run: () => parseInt64("9223372036854775808", "--quota"), message: /out of range/ },
    { name: "parseMeta rejects a pair without =", run: () => parseMeta(["env"]), message: /--meta: "env" is not key=value/ },
    { name: "parseDurationSeconds rejects junk", run: () => parseDurationSeconds("soon", "--grace"), message: /--grace/ },
    { name: "parseSince rejects junk", run: () => parseSince("yesterday", NOW), message: /--since/ },
  ];
  for (const c of bad) it(c.name, () => expect(c.run).to.throw(UsageError, c.message));
});



type Doc = Record<string, any>;

describe("cli: end to end against a real sidecar", function () {
  this.timeout(120_000);
  let dir: string;
  let serve: ServeProcess;
  let conn: string[];

  /** Runs `aisa-authz <args> --admin <addr> --data <dir>`. */
  const cli = (...args: string[]) => runBin([...args, ...conn]);
  /** Runs with --json, expects exit 0 and exactly one JSON document on stdout. */
  async function json(...args: string[]): Promise<Doc> {
    const r = await cli(...args, "--json");
    expect(r.code, `aisa-authz ${args.join(" ")}\nstderr: ${r.stderr}`).to.equal(0);
    return JSON.parse(r.stdout) as Doc;
  }
  /** Expects a non-zero exit and returns the result. */
  async function fails(code: number, ...args: string[]): Promise<BinRun> {
    const r = await cli(...args);
    expect(r.code, `aisa-authz ${args.join(" ")}\nstdout: ${r.stdout}\nstderr: ${r.stderr}`).to.equal(code);
    expect(r.stdout, "nothing on stdout on failure").to.equal("");
    return r;
  }

  before(async () => {
    dir = await tempDir("aisa-cli-");
    serve = await startServe(dir);
    conn = ["--admin", serve.adminAddress, "--data", dir];
    await Promise.all([
      json("accounts", "create", "--id", "acme", "--name", "Acme Inc", "--balance", "1000000"),
      json("groups", "create", "team-a", "--description", "Team A", "--ratio", "1.5", "--models", "gpt-4o,gpt-4o-mini"),
    ]);
  });

  after(async () => {
    if (serve) await stopProcess(serve.child, 5000);
    if (dir) await removeDir(dir);
  });

  it("whoami: the operator token from <data>/admin.token, and the display settings", async () => {
    const w = await json("whoami");
    expect(w).to.include({ token_id: "operator", account_id: "", read_only: false, quota_per_unit: 500000, currency: "USD", address: serve.adminAddress });
  });

  it("keys create with every flag, then get reads the same settings back", async () => {
    const created = await json(
      "keys", "create",
      "--name", "prod app",
      "--account", "acme",
      "--group", "team-a",
      "--quota", "750000",
      "--expires", "2099-01-01T00:00:00Z",
      "--models", "gpt-4o,gpt-4o-mini",
      "--ips", "10.0.0.0/8,2001:db8::/32,203.0.113.7",
      "--rpm", "60",
      "--tpm", "10000",
      "--concurrency", "4",
      "--refill", "monthly",
      "--meta", "env=prod",
      "--meta", "team=ml",
    );
    expect(created.id).to.match(/^key_[0-9A-Za-z]{20}$/);
    expect(created.key).to.match(/^sk-[0-9A-Za-z]{43,}$/);
    expect(created.masked_key).to.equal(`sk-…${(created.key as string).slice(-4)}`);
    const expected = {
      id: created.id,
      name: "prod app",
      account_id: "acme",
      group: "team-a",
      status: "enabled",
      quota: { unlimited: false, total: 750000, remaining: 750000, spendable: 750000, used: 0, reserved: 0 },
      expires_at: "2099-01-01T00:00:00.000Z",
      models: ["gpt-4o", "gpt-4o-mini"],
      ips: ["10.0.0.0/8", "2001:db8::/32", "203.0.113.7"],
      last_used_at: null,
      limits: { rpm: 60, tpm: 10000, concurrency: 4 },
      refill: "monthly",
      metadata: { env: "prod", team: "ml" },
      masked_key: created.masked_key,
      previous_secret_expires_at: null,
    };
    expect(created).to.deep.include(expected);
    const got = await json("keys", "get", created.id);
    expect(got).to.deep.include(expected);
    expect(got).not.to.have.property("key");
    expect(Number.isNaN(Date.parse(got.created_at))).to.equal(false);
  });

  it("keys create defaults: unlimited quota, never expires, all models, any IP, default group and account", async () => {
    const k = await json("keys", "create", "--name", "defaults");
    expect(k).to.deep.include({
      account_id: "default",
      group: "default",
      status: "enabled",
      expires_at: null,
      models: [],
      ips: [],
      refill: "none",
      metadata: {},
      limits: { rpm: 0, tpm: 0, concurrency: 0 },
    });
    expect(k.quota.unlimited).to.equal(true);
    const rel = await json("keys", "create", "--name", "one day", "--expires", "1d");
    expect(Date.parse(rel.expires_at)).to.be.greaterThan(Date.now());
  });

  it("keys list: search, filters, sort, limit and total", async () => {
    const tag = `lst${Date.now().toString(36)}`;
    const [a, b, c] = await Promise.all([
      json("keys", "create", "--name", `${tag}-alpha`, "--account", "acme", "--models", "o3"),
      json("keys", "create", "--name", `${tag}-beta`, "--group", "team-a", "--models", "gpt-4o"),
      json("keys", "create", "--name", `${tag}-gamma`),
    ]);
    await json("keys", "disable", c.id);

    const ids = (doc: Doc) => (doc.keys as Doc[]).map((k) => k.id as string);
    const list = (...args: string[]) => json("keys", "list", "--search", tag, ...args);
    const cases: { args: string[]; want: string[] }[] = [
      { args: ["--sort", "name"], want: [a.id, b.id, c.id] },
      { args: ["--status", "disabled"], want: [c.id] },
      { args: ["--status", "enabled", "--sort", "name"], want: [a.id, b.id] },
      { args: ["--group", "team-a"], want: [b.id] },
      { args: ["--account", "acme"], want: [a.id] },
      // c is unrestricted: it may use any model, so it matches --model too.
      { args: ["--model", "o3", "--sort", "name"], want: [a.id, c.id] },
      { args: ["--expired"], want: [] },
      { args: ["--unexpired", "--sort", "name"], want: [a.id, b.id, c.id] },
      { args: ["--limit", "2", "--sort", "name"], want: [a.id, b.id] },
    ];
    const [results, newest, upper, byId, everything] = await Promise.all([
      Promise.all(cases.map((x) => list(...x.args))),
      list("--sort", "-created"),
      json("keys", "list", "--search", tag.toUpperCase(), "--sort", "name"),
      json("keys", "list", "--search", a.id),
      json("keys", "list", "--all"),
    ]);
    cases.forEach((x, i) => expect(ids(results[i] as Doc), x.args.join(" ")).to.deep.equal(x.want));
    expect((results[0] as Doc).total).to.equal(3);
    expect((results.at(-1) as Doc).total, "total counts every match, not just the page").to.equal(3);
    expect((results[0] as Doc).keys[0]).not.to.have.property("key");
    expect(ids(newest).sort(), "--sort -created (a value starting with a dash)").to.deep.equal([a.id, b.id, c.id].sort());
    expect(ids(upper), "search is case-insensitive").to.deep.equal([a.id, b.id, c.id]);
    expect(ids(byId), "search matches ids").to.deep.equal([a.id]);
    expect(everything.keys.length).to.equal(everything.total);
  });

  it("keys update changes only the fields named by its flags", async () => {
    const k = await json(
      "keys", "create", "--name", "before", "--quota", "1000", "--models", "gpt-4o", "--ips", "10.0.0.0/8",
      "--rpm", "10", "--tpm", "20", "--concurrency", "3", "--refill", "daily", "--meta", "a=1", "--expires", "2099-01-01T00:00:00Z",
    );
    const u1 = await json("keys", "update", k.id, "--name", "after", "--rpm", "99");
    expect(u1).to.deep.include({
      name: "after",
      limits: { rpm: 99, tpm: 20, concurrency: 3 },
      quota: k.quota,
      models: ["gpt-4o"],
      ips: ["10.0.0.0/8"],
      refill: "daily",
      metadata: { a: "1" },
      expires_at: "2099-01-01T00:00:00.000Z",
      group: "default",
      status: "enabled",
    });

    const u2 = await json("keys", "update", k.id, "--models", "", "--ips", "", "--meta", "b=2", "--refill", "none", "--expires", "never", "--group", "team-a");
    expect(u2).to.deep.include({ name: "after", models: [], ips: [], metadata: { b: "2" }, refill: "none", expires_at: null, group: "team-a" });
    expect(u2.limits).to.deep.equal({ rpm: 99, tpm: 20, concurrency: 3 });

    const u3 = await json("keys", "update", k.id, "--unlimited");
    expect(u3.quota.unlimited).to.equal(true);
    const u4 = await json("keys", "update", k.id, "--quota", "5000");
    expect(u4.quota, "--quota turns the per-key quota back on").to.include({ unlimited: false, total: 5000, remaining: 5000 });
    const u5 = await json("keys", "update", k.id, "--unlimited");
    expect(u5.quota.unlimited).to.equal(true);
    // --no-unlimited alone would set 0 / 0 silently: it needs the size.
    const bare = await fails(2, "keys", "update", k.id, "--no-unlimited");
    expect(bare.stderr).to.match(/^error: --no-unlimited needs --quota/);
    const u6 = await json("keys", "update", k.id, "--no-unlimited", "--quota", "$1");
    expect(u6.quota).to.include({ unlimited: false, total: 500000, remaining: 500000 });

    const r = await fails(2, "keys", "update", k.id);
    expect(r.stderr).to.match(/^error: nothing to change/);
  });

  it("keys enable / disable several keys at once", async () => {
    const [a, b] = await Promise.all([json("keys", "create", "--name", "bulk-a"), json("keys", "create", "--name", "bulk-b")]);
    const off = await json("keys", "disable", a.id, b.id);
    expect((off.keys as Doc[]).map((k) => [k.id, k.status])).to.deep.equal([
      [a.id, "disabled"],
      [b.id, "disabled"],
    ]);
    expect((await json("keys", "get", a.id)).status).to.equal("disabled");
    const on = await json("keys", "enable", a.id, b.id);
    expect((on.keys as Doc[]).map((k) => k.status)).to.deep.equal(["enabled", "enabled"]);
  });

  it("keys reveal returns the secret that create printed; rotate changes it", async () => {
    const k = await json("keys", "create", "--name", "copy me");
    const other = await json("keys", "create", "--name", "copy me too");
    const revealed = await json("keys", "reveal", k.id, other.id);
    expect(revealed.keys).to.deep.equal([
      { id: k.id, name: "copy me", key: k.key },
      { id: other.id, name: "copy me too", key: other.key },
    ]);
    const plain = await cli("keys", "reveal", k.id);
    expect(plain.code).to.equal(0);
    expect(plain.stdout).to.equal(`${k.key}\n`);

    const rotated = await json("keys", "rotate", k.id);
    expect(rotated.id).to.equal(k.id);
    expect(rotated.key).to.match(/^sk-/).and.not.equal(k.key);
    expect(rotated.previous_secret_expires_at).to.equal(null);
    expect((await json("keys", "reveal", k.id)).keys[0].key).to.equal(rotated.key);

    const graced = await json("keys", "rotate", k.id, "--grace", "1h");
    expect(graced.key).not.to.equal(rotated.key);
    expect(Date.parse(graced.previous_secret_expires_at)).to.be.greaterThan(Date.now());
  });

  it("keys delete: refuses without --yes when stdin is not a terminal; --yes deletes; then get is NOT_FOUND", async () => {
    const k = await json("keys", "create", "--name", "doomed");
    const refused = await fails(2, "keys", "delete", k.id);
    expect(refused.stderr).to.match(/^error: refusing to delete .*--yes/);
    expect((await json("keys", "get", k.id)).id).to.equal(k.id);

    expect(await json("keys", "delete", k.id, "--yes")).to.deep.equal({ deleted_ids: [k.id] });
    const gone = await fails(1, "keys", "get", k.id);
    expect(gone.stderr).to.match(/^error: NOT_FOUND: /);
    expect(gone.stderr).to.include(k.id);
  });

  it("keys delete on a terminal asks first: no keeps the key, yes deletes it", async function () {
    // util-linux `script` gives the child a pseudo-terminal; skip where it is missing.
    const probe = await new Promise<number | null>((res) => {
      const p = spawn("script", ["--version"], { stdio: "ignore" });
      p.once("error", () => res(null));
      p.once("close", (code) => res(code));
    });
    requireProgram(this, "script", "bsdutils", probe === 0);
    const k = await json("keys", "create", "--name", "ask me");
    const quote = (a: string) => `'${a.replace(/'/g, "'\\''")}'`;
    const onTty = (answer: string) =>
      new Promise<BinRun>((resolve, reject) => {
        const cmd = [process.execPath, BIN, "keys", "delete", k.id, ...conn].map(quote).join(" ");
        const child = spawn("script", ["-qec", cmd, "/dev/null"], { stdio: ["pipe", "pipe", "pipe"] });
        let out = "";
        child.stdout.on("data", (d: Buffer) => (out += d.toString("utf8")));
        child.once("error", reject);
        child.once("close", (code) => resolve({ code, stdout: out, stderr: "" }));
        child.stdin.end(`${answer}\n`);
      });
    const no = await onTty("n");
    expect(no.stdout).to.include("Delete? This cannot be undone. [y/N]").and.include("ask me").and.include("nothing was deleted");
    expect(no.code).to.equal(1);
    expect((await json("keys", "get", k.id)).id).to.equal(k.id);
    const yes = await onTty("y");
    expect(yes.code, yes.stdout).to.equal(0);
    expect(yes.stdout).to.include(`Deleted 1 key: ${k.id}`);
    expect((await cli("keys", "get", k.id)).stderr).to.match(/^error: NOT_FOUND: /);
  });

  const badInput: { name: string; args: string[]; stderr: RegExp }[] = [
    { name: "empty name", args: ["keys", "create", "--name", ""], stderr: /^error: INVALID_ARGUMENT: spec\.name: / },
    { name: "bad CIDR", args: ["keys", "create", "--name", "x", "--ips", "300.1.1.1"], stderr: /^error: INVALID_ARGUMENT: spec\.ips\[0\]: .*300\.1\.1\.1/ },
    { name: "negative quota", args: ["keys", "create", "--name", "x", "--quota", "-5"], stderr: /^error: INVALID_ARGUMENT: spec\.quota: / },
    { name: "expiry in the past", args: ["keys", "create", "--name", "x", "--expires", "2020-01-01T00:00:00Z"], stderr: /^error: INVALID_ARGUMENT: spec\.expires: / },
    { name: "unknown group", args: ["keys", "create", "--name", "x", "--group", "nope"], stderr: /^error: INVALID_ARGUMENT: spec\.group: .*nope/ },
    { name: "unknown account", args: ["keys", "create", "--name", "x", "--account", "nope"], stderr: /^error: (INVALID_ARGUMENT|NOT_FOUND): .*nope/ },
    { name: "empty model name", args: ["keys", "create", "--name", "x", "--models", "a,,b"], stderr: /^error: INVALID_ARGUMENT: spec\.models\[1\]: / },
    { name: "unknown key id", args: ["keys", "update", "key_doesnotexist", "--name", "x"], stderr: /^error: NOT_FOUND: / },
    { name: "credit of zero units", args: ["accounts", "credit", "acme", "0", "--reason", "r"], stderr: /^error: AMOUNT: must be a positive integer/ },
  ];
  describe("bad input is refused with the field named, and nothing is written", () => {
    let before: number;
    it("(count keys first)", async () => {
      before = (await json("keys", "list", "--all")).total as number;
    });
    for (const c of badInput) {
      it(c.name, async () => {
        const r = await cli(...c.args);
        expect(r.code, r.stderr).to.not.equal(0);
        expect(r.stdout).to.equal("");
        expect(r.stderr).to.match(c.stderr);
      });
    }
    it("nothing was written", async () => {
      expect((await json("keys", "list", "--all")).total).to.equal(before);
    });
  });

  const usage: { name: string; args: string[]; stderr: RegExp }[] = [
    { name: "unknown option", args: ["keys", "list", "--bogus"], stderr: /^error: unknown option '--bogus'/ },
    { name: "missing --name", args: ["keys", "create"], stderr: /^error: required option '--name <name>' not specified/ },
    { name: "--quota with --unlimited", args: ["keys", "create", "--name", "x", "--quota", "5", "--unlimited"], stderr: /--quota and --unlimited/ },
    { name: "bad --refill", args: ["keys", "create", "--name", "x", "--refill", "hourly"], stderr: /--refill.*hourly/ },
    { name: "non-integer --rpm", args: ["keys", "create", "--name", "x", "--rpm", "lots"], stderr: /^error: --rpm: "lots" is not an integer/ },
    { name: "--expired with --unexpired", args: ["keys", "list", "--expired", "--unexpired"], stderr: /cannot be used with/ },
    { name: "bad --grace", args: ["keys", "rotate", "key_x", "--grace", "a while"], stderr: /^error: --grace: / },
    { name: "unknown command", args: ["keys", "frobnicate"], stderr: /^error: unknown command 'frobnicate'/ },
  ];
  for (const c of usage) {
    it(`usage errors exit 2: ${c.name}`, async () => {
      const r = await fails(2, ...c.args);
      expect(r.stderr).to.match(c.stderr);
    });
  }

  it("a wrong token is UNAUTHENTICATED (exit 1)", async () => {
    const r = await runBin(["keys", "list", "--json", "--admin", serve.adminAddress, "--token", "aat-wrong"]);
    expect(r.code).to.equal(1);
    expect(r.stderr).to.match(/^error: UNAUTHENTICATED: /);
  });

  it("no token anywhere: says where it looked (exit 2)", async () => {
    const empty = await tempDir("aisa-cli-empty-");
    try {
      const r = await runBin(["keys", "list", "--admin", serve.adminAddress, "--data", empty]);
      expect(r.code).to.equal(2);
      expect(r.stderr).to.include("--token").and.include("AISA_ADMIN_TOKEN").and.include(join(empty, "admin.token"));
    } finally {
      await removeDir(empty);
    }
  });

  it("nothing listening: names the address and suggests `aisa-authz serve` (exit 1)", async () => {
    const r = await runBin(["whoami", "--admin", "127.0.0.1:1", "--token", "t"]);
    expect(r.code).to.equal(1);
    expect(r.stderr).to.match(/^error: UNAVAILABLE: /).and.include("127.0.0.1:1").and.include("aisa-authz serve");
  });

  it("AISA_ADMIN_ADDR and AISA_ADMIN_TOKEN stand in for --admin and --token", async () => {
    const token = (await readFile(join(dir, "admin.token"), "utf8")).trim();
    const r = await runBin(["whoami", "--json", "--data", "/nonexistent"], { AISA_ADMIN_ADDR: serve.adminAddress, AISA_ADMIN_TOKEN: token });
    expect(r.code, r.stderr).to.equal(0);
    expect(JSON.parse(r.stdout)).to.include({ token_id: "operator" });
    const viaDataDir = await runBin(["whoami", "--json"], { AISA_ADMIN_ADDR: serve.adminAddress, AISA_DATA_DIR: dir });
    expect(viaDataDir.code, viaDataDir.stderr).to.equal(0);
  });

  it("accounts: create, get, list, credit and debit with a reason (audited)", async () => {
    const a = await json("accounts", "create", "--id", "ledger", "--name", "Ledger", "--balance", "1000");
    expect(a).to.include({ id: "ledger", name: "Ledger", balance: 1000 });
    expect((await json("accounts", "credit", "ledger", "500", "--reason", "top-up")).balance).to.equal(1500);
    expect((await json("accounts", "debit", "ledger", "200", "--reason", "refund")).balance).to.equal(1300);
    expect((await json("accounts", "get", "ledger")).balance).to.equal(1300);
    const list = await json("accounts", "list");
    expect((list.accounts as Doc[]).map((x) => x.id)).to.include.members(["default", "acme", "ledger"]);
    const audit = await json("audit", "--target", "ledger", "--since", "1h");
    // The reasons are kept in the audit log (the action name is the server's business).
    const adjust = (audit.entries as Doc[]).filter((e) => /top-up|refund/.test(e.detail as string));
    expect(adjust.map((e) => e.detail).join(" ")).to.include("top-up").and.include("refund");
    expect(adjust[0]).to.include({ actor: "operator", target: "ledger" });

    const r = await fails(2, "accounts", "debit", "ledger", "x", "--reason", "r");
    expect(r.stderr).to.match(/^error: AMOUNT: /);
    const noReason = await fails(2, "accounts", "credit", "ledger", "5");
    expect(noReason.stderr).to.include("--reason");
  });

  it("groups: create, list with key counts, update only named fields, delete", async () => {
    const g = await json("groups", "create", "batch", "--description", "Batch jobs", "--ratio", "0.8", "--models", "a,b");
    expect(g).to.include({ name: "batch", description: "Batch jobs", price_ratio: "0.8" });
    expect(g.models).to.deep.equal(["a", "b"]);
    const k = await json("keys", "create", "--name", "in batch", "--group", "batch");
    const listed = (await json("groups", "list")).groups as Doc[];
    expect(listed.find((x) => x.name === "batch")).to.include({ key_count: 1 });
    const u = await json("groups", "update", "batch", "--ratio", "2");
    expect(u).to.include({ name: "batch", description: "Batch jobs", price_ratio: "2" });
    expect(u.models).to.deep.equal(["a", "b"]);
    expect(u.accounts).to.deep.equal([]);
    // Opening the group to an account lets that account's own tokens assign it; "" closes it.
    expect((await json("groups", "update", "batch", "--accounts", "default")).accounts).to.deep.equal(["default"]);
    expect((await json("groups", "update", "batch", "--accounts", "")).accounts).to.deep.equal([]);

    const inUse = await fails(1, "groups", "delete", "batch");
    expect(inUse.stderr).to.match(/^error: FAILED_PRECONDITION: /);
    await json("keys", "delete", k.id, "--yes");
    expect(await json("groups", "delete", "batch")).to.deep.equal({ deleted: "batch" });
    expect(((await json("groups", "list")).groups as Doc[]).map((x) => x.name)).not.to.include("batch");
  });

  it("groups --budget: create, list, update one flag over the rest, remove; accounts --timezone", async () => {
    const g = await json("groups", "create", "capped", "--budget", "5000", "--budget-period", "monthly", "--budget-anchor", "15", "--budget-timezone", "Europe/Berlin");
    expect(g.budget).to.deep.include({ units: 5000, period: "monthly", anchor: 15, timezone: "Europe/Berlin", spent: 0, reserved: 0 });
    expect(g.budget.resets_at).to.match(/-(14T22|14T23):00:00/);
    const listed = ((await json("groups", "list")).groups as Doc[]).find((x) => x.name === "capped")!;
    expect(listed.budget.units).to.equal(5000);
    const text = await cli("groups", "list");
    expect(text.stdout).to.match(/BUDGET/).and.to.match(/0\/5,000 monthly/);
    // One flag changes only itself: the period, anchor and zone stay.
    const u = await json("groups", "update", "capped", "--budget", "8000");
    expect(u.budget).to.deep.include({ units: 8000, period: "monthly", anchor: 15, timezone: "Europe/Berlin" });
    const w = await json("groups", "update", "capped", "--budget-period", "weekly", "--budget-anchor", "sun");
    expect(w.budget).to.deep.include({ units: 8000, period: "weekly", anchor: 7 });
    const n = await json("groups", "update", "capped", "--budget-period", "14d", "--budget-anchor", "2026-01-05");
    expect(n.budget).to.deep.include({ period: "daily", every_days: 14, anchor: 20458 });
    await fails(2, "groups", "update", "capped", "--budget-period", "fortnightly");
    expect((await fails(1, "groups", "update", "capped", "--budget-timezone", "Mars/Base")).stderr).to.match(/IANA time zone/);
    expect((await json("groups", "update", "capped", "--budget", "none")).budget).to.equal(null);
    expect((await json("groups", "delete", "capped")).deleted).to.equal("capped");

    const a = await json("accounts", "create", "--id", "tokyo", "--name", "Tokyo", "--timezone", "Asia/Tokyo");
    expect(a.timezone).to.equal("Asia/Tokyo");
    // Key refill periods with an anchor, and every N days; --refill-anchor alone keeps the period.
    const k = await json("keys", "create", "--name", "tz key", "--account", "tokyo", "--quota", "100", "--refill", "monthly", "--refill-anchor", "31");
    expect(k).to.deep.include({ refill: "monthly", refill_anchor: 31, refill_every_days: 0 });
    expect(await json("keys", "update", k.id, "--refill-anchor", "15")).to.deep.include({ refill: "monthly", refill_anchor: 15 });
    expect(await json("keys", "update", k.id, "--refill", "7d", "--refill-anchor", "2026-03-02")).to.deep.include({ refill: "daily", refill_every_days: 7, refill_anchor: 20514 });
    expect((await cli("keys", "get", k.id)).stdout).to.match(/every 7 days from 2026-03-02/);
    expect((await fails(1, "keys", "update", k.id, "--refill", "weekly", "--refill-anchor", "9")).stderr).to.match(/refill_anchor/);
    await fails(2, "keys", "update", k.id, "--refill", "none", "--refill-anchor", "3");
    expect((await fails(1, "accounts", "create", "--id", "nowhere", "--name", "X", "--timezone", "Nowhere/City")).stderr).to.match(/IANA time zone/);
    // accounts update: the zone (--zone = --timezone) and the name, only what is given.
    const moved = await json("accounts", "update", "tokyo", "--zone", "europe/berlin");
    expect(moved).to.deep.include({ id: "tokyo", name: "Tokyo", timezone: "Europe/Berlin" });
    expect(await json("accounts", "update", "tokyo", "--name", "Tokyo GmbH")).to.deep.include({ name: "Tokyo GmbH", timezone: "Europe/Berlin" });
    expect((await json("accounts", "get", "tokyo")).timezone).to.equal("Europe/Berlin");
    expect((await fails(1, "accounts", "update", "tokyo", "--timezone", "Mars/Base")).stderr).to.match(/^error: INVALID_ARGUMENT: timezone: .*IANA time zone/);
    expect((await fails(2, "accounts", "update", "tokyo")).stderr).to.match(/nothing to change/);
    expect((await fails(1, "accounts", "update", "nobody", "--name", "X")).stderr).to.match(/^error: NOT_FOUND: /);
  });

  it("tokens: an account-scoped token sees only its account's keys; another account's key is NOT_FOUND", async () => {
    const t = await json("tokens", "create", "--name", "acme ops", "--account", "acme");
    expect(t.id).to.match(/^tok_/);
    expect(t.account_id).to.equal("acme");
    expect(t.secret).to.be.a("string").with.length.greaterThan(10);
    expect(((await json("tokens", "list")).tokens as Doc[]).map((x) => x.id)).to.include(t.id);

    const mine = await json("keys", "create", "--name", "acme key", "--account", "acme");
    const theirs = await json("keys", "create", "--name", "default key");
    const as = (...args: string[]) => runBin([...args, "--admin", serve.adminAddress, "--token", t.secret]);

    const who = await as("whoami", "--json");
    expect(JSON.parse(who.stdout)).to.include({ token_id: t.id, account_id: "acme" });
    const hidden = await as("keys", "get", theirs.id, "--json");
    expect(hidden.code).to.equal(1);
    expect(hidden.stderr).to.match(/^error: NOT_FOUND: /);
    const seen = await as("keys", "get", mine.id, "--json");
    expect(seen.code, seen.stderr).to.equal(0);
    const list = JSON.parse((await as("keys", "list", "--all", "--json")).stdout) as Doc;
    expect((list.keys as Doc[]).every((k) => k.account_id === "acme")).to.equal(true);
    expect((list.keys as Doc[]).map((k) => k.id)).to.include(mine.id);
    const credit = await as("accounts", "credit", "acme", "5", "--reason", "self-service");
    expect(credit.code).to.equal(1);
    expect(credit.stderr).to.match(/^error: PERMISSION_DENIED: /);
    const rezone = await as("accounts", "update", "acme", "--timezone", "Asia/Tokyo");
    expect(rezone.code).to.equal(1);
    expect(rezone.stderr).to.match(/^error: PERMISSION_DENIED: /);

    expect(await json("tokens", "revoke", t.id)).to.deep.equal({ revoked: t.id });
    const revoked = await as("whoami");
    expect(revoked.code).to.equal(1);
    expect(revoked.stderr).to.match(/^error: UNAUTHENTICATED: /);
  });

  it("prices: set, list (also as `pricing`), delete", async () => {
    const p = await json("prices", "set", "gpt-4o-mini", "--input", "75000", "--output", "300000", "--per-request", "10");
    expect(p).to.deep.equal({ model: "gpt-4o-mini", input_per_million: 75000, output_per_million: 300000, per_request: 10 });
    expect((await json("pricing", "list")).prices).to.deep.include(p);
    expect(await json("prices", "delete", "gpt-4o-mini")).to.deep.equal({ deleted: "gpt-4o-mini" });
    expect((await json("prices", "list")).prices).not.to.deep.include(p);
  });

  it("prices set takes cache-read, cache-write and reasoning rates; list shows them (unset = the input or output rate)", async () => {
    const p = await json("prices", "set", "claude-x", "--input", "300000", "--output", "1500000", "--cache-read", "30000", "--cache-write", "375000");
    expect(p).to.deep.equal({ model: "claude-x", input_per_million: 300000, output_per_million: 1500000, per_request: 0, cache_read_per_million: 30000, cache_write_per_million: 375000 });
    const r = await json("prices", "set", "o-x", "--input", "1", "--output", "2", "--reasoning", "0");
    expect(r).to.deep.include({ reasoning_per_million: 0 });
    expect(r).to.not.have.property("cache_read_per_million");
    const table = await cli("prices", "list");
    expect(table.code, table.stderr).to.equal(0);
    expect(table.stdout).to.include("CACHE READ / 1M").and.include("REASONING / 1M").and.include("= input").and.include("= output");
    const bad = await cli("prices", "set", "claude-x", "--input", "1", "--output", "1", "--cache-read", "x");
    expect(bad.code).to.equal(2);
    expect(bad.stderr).to.include("--cache-read");
    for (const m of ["claude-x", "o-x"]) await json("prices", "delete", m);
  });

  it("audit: lists key mutations newest first, filtered by target and actor", async () => {
    const k = await json("keys", "create", "--name", "audited");
    await json("keys", "update", k.id, "--name", "audited 2");
    await json("keys", "reveal", k.id);
    const entries = (await json("audit", "--target", k.id, "--actor", "operator")).entries as Doc[];
    expect(entries.map((e) => e.action)).to.deep.equal(["RevealKeys", "UpdateKey", "CreateKey"]);
    expect(entries[1]?.before).to.include({ name: "audited" });
    expect(entries[1]?.after).to.include({ name: "audited 2" });
    expect(JSON.stringify(entries)).not.to.include(k.key);
    expect(((await json("audit", "--limit", "1")).entries as Doc[]).length).to.equal(1);
  });

  it("tables use the API Keys page's labels", async () => {
    const k = await json("keys", "create", "--name", "table view", "--quota", "750000", "--models", "gpt-4o");
    const list = await cli("keys", "list", "--search", "table view");
    expect(list.code, list.stderr).to.equal(0);
    for (const label of ["NAME", "STATUS", "REMAINING / TOTAL QUOTA", "GROUP", "KEY", "AVAILABLE MODELS", "IP RESTRICTIONS", "CREATION TIME", "EXPIRATION TIME"]) {
      expect(list.stdout).to.include(label);
    }
    expect(list.stdout).to.include("Enabled").and.include("Never expires").and.include("Unlimited");
    expect(list.stdout).to.include("750,000 / 750,000 (≈ $1.50 / $1.50)").and.include(k.masked_key).and.include("gpt-4o");
    expect(list.stdout).not.to.include(k.key);

    const unlimited = await json("keys", "create", "--name", "table unlimited");
    const get = await cli("keys", "get", unlimited.id);
    expect(get.stdout).to.match(/Remaining \/ Total Quota:\s+Unlimited/).and.match(/Available Models:\s+Unlimited/);
    expect(get.stdout).to.match(/IP Whitelist:\s+Unlimited/).and.match(/Expiration Time:\s+Never expires/);

    await json("keys", "disable", unlimited.id);
    expect((await cli("keys", "get", unlimited.id)).stdout).to.match(/Status:\s+Disabled/);
    const created = await cli("keys", "create", "--name", "shown once");
    expect(created.stdout).to.match(/\n {2}sk-[0-9A-Za-z]+\n/);
    const accounts = await cli("accounts", "get", "acme");
    expect(accounts.stdout).to.match(/Balance:\s+[\d,]+ \(≈ \$[\d.,]+\)/);
  });

  it("TLS: --admin-ca trusts the sidecar's certificate; plaintext fails with a hint", async function () {
    const tlsDir = await tempDir("aisa-cli-tls-");
    let tlsServe: ServeProcess | undefined;
    try {
      const made = await selfSignedCert(tlsDir);
      if (!made) return requireProgram(this, "openssl", "openssl", false);
      const { cert, key } = made;
      tlsServe = await startServe(join(tlsDir, "data"), ["--tls-cert", cert, "--tls-key", key]);
      const base = ["whoami", "--json", "--admin", tlsServe.adminAddress, "--data", join(tlsDir, "data")];
      const ok = await runBin([...base, "--admin-ca", cert]);
      expect(ok.code, ok.stderr).to.equal(0);
      expect(ok.stderr, "no DEP0123 noise").to.equal("");
      expect(JSON.parse(ok.stdout)).to.include({ token_id: "operator" });
      const plain = await runBin(base);
      expect(plain.code).to.equal(1);
      expect(plain.stderr).to.match(/^error: UNAVAILABLE: /).and.include("--admin-ca");
    } finally {
      if (tlsServe) await stopProcess(tlsServe.child, 5000);
      await removeDir(tlsDir);
    }
  });

  it("--json may come before the command, and help exits 0", async () => {
    const r = await runBin(["--json", "--admin", serve.adminAddress, "--data", dir, "whoami"]);
    expect(r.code, r.stderr).to.equal(0);
    expect(JSON.parse(r.stdout)).to.include({ token_id: "operator" });
    const help = await runBin(["keys", "create", "--help"]);
    expect(help.code).to.equal(0);
    expect(help.stdout).to.include("--unlimited").and.include("--expires");
  });
});
