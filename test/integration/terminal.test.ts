// Terminal escape injection through stored text written before the input rules existed
// (inserted into the store directly, since the API now refuses it): the real bin's table,
// key-value and error output, and --json, carry no raw ESC, BEL or C1 control, and show the
// sequences as visible escapes instead.
import { expect } from "chai";
import { LevelStore } from "../../src/store/level/levelStore.js";
import { runBin, startServe, stopProcess, type ServeProcess } from "../helpers/proc.js";
import { removeDir, tempDir } from "../helpers/tmp.js";

/** OSC 2 (window/pane title) + SGR red background; OSC 52 (clipboard write); C1 CSI clear screen; RTL override. */
const OSC_TITLE = "hi\x1b]2;PWNED\x07\x1b[41m";
const OSC_CLIPBOARD = "\x1b]52;c;ZXZpbA==\x07";
const C1_CSI = "x\u009b2J";
const BIDI = "a\u202Eb";
/** Raw bytes that start, end or are terminal control sequences (the layout's own \n aside). */
const RAW = /[\u0000-\u0009\u000b-\u001f\u007f-\u009f\u202A-\u202E\u2066-\u2069]/;



describe("terminal output of stored escapes (the real bin)", function () {
  this.timeout(120_000);
  let dir = "";
  let serve: ServeProcess | undefined;
  let keyId = "";
  let conn: string[] = [];
  const cli = (...args: string[]) => runBin([...args, ...conn]);

  before(async () => {
    dir = await tempDir("aisa-esc-");
    // 1. A data dir with a key, made the ordinary way.
    serve = await startServe(dir);
    conn = ["--admin", serve.adminAddress, "--data", dir];
    const created = await cli("keys", "create", "--name", "plain", "--json");
    expect(created.code, created.stderr).to.equal(0);
    keyId = (JSON.parse(created.stdout) as { id: string }).id;
    await stopProcess(serve.child);
    // 2. Escapes written straight into the store, as data from before the input rules would be.
    const store = new LevelStore({ dir });
    await store.open(Date.now());
    const audit = { actor: "operator", action: "Test", target: keyId };
    await store.updateKeys(
      [keyId],
      (cur) => ({ record: { ...cur.record, name: `evil${OSC_TITLE}`, models: [`gpt${C1_CSI}`], metadata: { note: OSC_TITLE, [`k${OSC_CLIPBOARD}`]: BIDI } } }),
      () => audit,
    );
    await store.updateGroup("default", (g) => ({ ...g, description: `team ${OSC_CLIPBOARD}` }), () => ({ actor: "operator", action: "Test", target: "default" }));
    await store.adjustBalance("default", 5, { actor: "operator", action: "CreditAccount", target: "default", detail: `+5: refund ${OSC_TITLE}` });
    await store.close();
    // 3. The sidecar on that store.
    serve = await startServe(dir);
    conn = ["--admin", serve.adminAddress, "--data", dir];
  });
  after(async () => {
    if (serve) await stopProcess(serve.child);
    await removeDir(dir);
  });

  const commands: { name: string; args: () => string[]; shows: string }[] = [
    { name: "keys get (the finding: the pane is renamed)", args: () => ["keys", "get", keyId], shows: "note=hi\\x1b]2;PWNED\\x07\\x1b[41m" },
    { name: "keys list", args: () => ["keys", "list"], shows: "evilhi\\x1b]2;PWNED\\x07\\x1b[41m" },
    { name: "groups list (description)", args: () => ["groups", "list"], shows: "team \\x1b]52;c;ZXZpbA==\\x07" },
    { name: "audit (balance reason)", args: () => ["audit"], shows: "+5: refund hi\\x1b]2;PWNED\\x07" },
  ];
  for (const c of commands) {
    it(`${c.name}: no raw ESC, BEL or C1 on stdout; the sequence is shown escaped`, async () => {
      const r = await cli(...c.args());
      expect(r.code, r.stderr).to.equal(0);
      expect(r.stdout).not.to.match(RAW);
      expect(r.stdout).to.include(c.shows);
    });
  }

  it("keys get: the model's C1 CSI and the metadata key's OSC 52 and RTL override are escaped too", async () => {
    const r = await cli("keys", "get", keyId);
    expect(r.stdout).to.include("gptx\\x9b2J");
    expect(r.stdout).to.include("k\\x1b]52;c;ZXZpbA==\\x07=a\\u202eb");
  });

  it("keys get --json: the same value, with every control and bidi character \\u-escaped", async () => {
    const r = await cli("keys", "get", keyId, "--json");
    expect(r.code, r.stderr).to.equal(0);
    expect(r.stdout).not.to.match(RAW);
    const doc = JSON.parse(r.stdout) as { name: string; models: string[]; metadata: Record<string, string> };
    expect(doc.name).to.equal(`evil${OSC_TITLE}`);
    expect(doc.models).to.deep.equal([`gpt${C1_CSI}`]);
    expect(doc.metadata["note"]).to.equal(OSC_TITLE);
  });

  it("an error echoing the input (an id with a C1 CSI and an RTL override, which JSON quoting leaves raw) reaches stderr escaped", async () => {
    const r = await cli("keys", "get", `key_x${C1_CSI}${BIDI}`);
    expect(r.code).to.equal(1);
    expect(r.stderr).to.include("NOT_FOUND");
    expect(r.stderr).not.to.match(RAW);
  });

  const refused: { name: string; args: () => string[]; message: string }[] = [
    { name: "keys create --name with ESC", args: () => ["keys", "create", "--name", "a\x1b[2J"], message: "error: --name: must not contain control characters (U+001B at 1)" },
    { name: "keys update --meta with an OSC", args: () => ["keys", "update", keyId, "--meta", `note=${OSC_TITLE}`], message: 'error: --meta "note": must not contain control characters (U+001B at 2)' },
    { name: "keys create --name with U+202E", args: () => ["keys", "create", "--name", BIDI], message: "error: --name: must not contain invisible or bidirectional formatting characters (U+202E at 1)" },
    { name: "accounts credit --reason with BEL", args: () => ["accounts", "credit", "default", "5", "--reason", "x\x07"], message: "error: --reason: must not contain control characters (U+0007 at 1)" },
    { name: "groups update --description with OSC 52", args: () => ["groups", "update", "default", "--description", OSC_CLIPBOARD], message: "error: --description: must not contain control characters (U+001B at 0)" },
    { name: "audit --since 2027-02-30", args: () => ["audit", "--since", "2027-02-30"], message: 'error: --since: "2027-02-30" day 30 is not 01..28 in 2027-02' },
  ];
  for (const c of refused) {
    it(`the CLI refuses ${c.name} before calling: exit 2 naming the flag`, async () => {
      const r = await cli(...c.args());
      expect(r.code, r.stderr).to.equal(2);
      expect(r.stderr).to.include(c.message);
      expect(r.stderr).not.to.match(RAW);
    });
  }
});
