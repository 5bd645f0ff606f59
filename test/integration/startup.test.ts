// Start-up sanity, with the real bin: what serve refuses to start on (exit 1, a message that
// names the file, setting or record and the repair), and a key record that does not decode,
// which must not break listings nor block its own deletion.
import { expect } from "chai";
import * as grpc from "@grpc/grpc-js";
import { randomBytes } from "node:crypto";
import { readdir, readFile, rm, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { Level } from "level";
import * as adminPb from "../../src/gen/aisa/v1/admin.js";
import { encodeCounters } from "../../src/store/level/codecs.js";
import { startServe, stopProcess, type ServeProcess } from "../helpers/proc.js";
import { envoyCheck } from "../helpers/clients.js";
import { removeDir, tempDir } from "../helpers/tmp.js";

function adminCall<Res>(client: adminPb.AdminClient, token: string, method: string, req: unknown): Promise<Res> {
  const msg = (adminPb as Record<string, any>)[`${method[0]!.toUpperCase()}${method.slice(1)}Request`].fromPartial(req);
  const meta = new grpc.Metadata();
  meta.set("authorization", `Bearer ${token}`);
  return new Promise((resolve, reject) => (client as any)[method](msg, meta, { deadline: Date.now() + 10_000 }, (err: Error | null, res: Res) => (err ? reject(err) : resolve(res))));
}


/** Starts serve expecting it to fail: exit code and stderr. One that starts is stopped and fails the test. */
async function serveMustFail(dir: string, env: NodeJS.ProcessEnv = {}): Promise<{ exitCode: number; stderr: string }> {
  let started: ServeProcess;
  try {
    started = await startServe(dir, [], env);
  } catch (err) {
    return err as { exitCode: number; stderr: string };
  }
  await stopProcess(started.child);
  return expect.fail("serve started; it must not");
}

/** Runs `fn` on the stopped data dir's LevelDB. */
async function withDb(dir: string, fn: (db: Level<string, string>) => Promise<void>): Promise<void> {
  const db = new Level<string, string>(join(dir, "db"), { valueEncoding: "utf8" });
  await db.open();
  try {
    await fn(db);
  } finally {
    await db.close();
  }
}

describe("start-up sanity (serve as a process)", function () {
  this.timeout(180_000);
  const dirs: string[] = [];
  const procs: ServeProcess[] = [];
  after(async () => {
    for (const p of procs) await stopProcess(p.child);
    for (const d of dirs) await removeDir(d);
  });

  /** A data dir written by a real serve: a balance, two keys, a group, a price, a token. */
  async function seeded(): Promise<{ dir: string; token: string; keys: { id: string; secret: string }[] }> {
    const dir = await tempDir();
    dirs.push(dir);
    const p = await startServe(dir);
    procs.push(p);
    const token = (await readFile(join(dir, "admin.token"), "utf8")).trim();
    const admin = new adminPb.AdminClient(p.adminAddress, grpc.credentials.createInsecure());
    await adminCall(admin, token, "adjustBalance", { accountId: "default", delta: "1000000", reason: "seed" });
    const keys: { id: string; secret: string }[] = [];
    for (const name of ["one", "two"]) {
      const r = await adminCall<adminPb.CreateKeyResponse>(admin, token, "createKey", { spec: { name, unlimited: true } });
      keys.push({ id: r.key!.id, secret: r.secret });
    }
    await adminCall(admin, token, "createGroup", { name: "team" });
    await adminCall(admin, token, "setPrice", { price: { model: "m1", inputPerMillion: "1000", outputPerMillion: "2000" } });
    await adminCall(admin, token, "createToken", { name: "ro", readOnly: true });
    admin.close();
    expect(await stopProcess(p.child)).to.equal(0);
    return { dir, token, keys };
  }

  it("refuses a master key other than the one the secrets were sealed with (file or AISA_MASTER_KEY), also for a dir without the check value", async () => {
    const { dir } = await seeded();
    const other = randomBytes(32).toString("hex");
    const viaEnv = await serveMustFail(dir, { AISA_MASTER_KEY: other });
    expect(viaEnv.exitCode).to.equal(1);
    expect(viaEnv.stderr).to.include("master key (AISA_MASTER_KEY) is not the key this data directory's secrets were sealed with");
    const right = await readFile(join(dir, "master.key"), "utf8");
    await writeFile(join(dir, "master.key"), other + "\n");
    const viaFile = await serveMustFail(dir);
    expect(viaFile.exitCode).to.equal(1);
    expect(viaFile.stderr).to.include(`master key (${join(dir, "master.key")}) is not the key`).and.include("restore master.key");
    await writeFile(join(dir, "master.key"), "not a key\n");
    const garbage = await serveMustFail(dir);
    expect(garbage.exitCode).to.equal(1);
    expect(garbage.stderr).to.include(`master key ${join(dir, "master.key")}: master key must be 32 bytes`);
    await writeFile(join(dir, "master.key"), right);
    // A dir from a build that kept no check value: the key must open a stored secret.
    await withDb(dir, (db) => db.sublevel<string, string>("meta", { valueEncoding: "utf8" }).del("masterKeyCheck"));
    const old = await serveMustFail(dir, { AISA_MASTER_KEY: other });
    expect(old.stderr).to.include("is not the key").and.match(/key key_\w+ does not open with it/);
    const ok = await startServe(dir);
    procs.push(ok);
    expect(await stopProcess(ok.child)).to.equal(0);
    await withDb(dir, async (db) => {
      expect(await db.sublevel<string, string>("meta", { valueEncoding: "utf8" }).get("masterKeyCheck")).to.match(/^"[0-9a-f]{64}"$/);
    });
    console.log("      wrong master key refused: via AISA_MASTER_KEY, via master.key, and for a dir without a check value (a stored secret does not open)");
  });

  it("refuses an empty, blank, short or spaced operator token, naming admin.token or AISA_ADMIN_TOKEN", async () => {
    const dir = await tempDir();
    dirs.push(dir);
    const file = join(dir, "admin.token");
    const cases: { name: string; file?: string; env?: string; want: string }[] = [
      { name: "empty file", file: "", want: `operator token (${file}) is empty` },
      { name: "blank file", file: "   \n\n", want: `operator token (${file}) is empty` },
      { name: "short file", file: "abc", want: `operator token (${file}) is 3 characters long` },
      { name: "blank env", env: "   ", want: "operator token (AISA_ADMIN_TOKEN) is empty" },
      { name: "spaced env", env: "aat-0123456789 abcdefghij", want: "operator token (AISA_ADMIN_TOKEN) contains whitespace" },
    ];
    // The dir exists (master key, store) before the token file is broken.
    const first = await startServe(dir);
    procs.push(first);
    expect(await stopProcess(first.child)).to.equal(0);
    const good = await readFile(file, "utf8");
    for (const c of cases) {
      await writeFile(file, c.file ?? good);
      const failure = await serveMustFail(dir, c.env !== undefined ? { AISA_ADMIN_TOKEN: c.env } : {});
      expect(failure.exitCode, c.name).to.equal(1);
      expect(failure.stderr, c.name).to.include(c.want);
    }
  });

  it("refuses account and key counters out of range (negative use, fractions, ±1e300), naming the account or key and the record", async () => {
    const { dir, keys } = await seeded();
    const actr = (v: object) => (db: Level<string, string>) => db.sublevel<string, string>("actr", { valueEncoding: "utf8" }).put("default", JSON.stringify(v));
    const cases: { name: string; damage: (db: Level<string, string>) => Promise<void>; want: string }[] = [
      { name: "negative charged", damage: actr({ balance: 5, credited: 0, charged: -5 }), want: 'account "default": counter charged in record actr/"default" is out of range (-5 is negative)' },
      { name: "1e300 credited", damage: actr({ balance: 1e300, credited: 1e300, charged: 0 }), want: 'counter credited in record actr/"default" is out of range (1e+300 is not a whole number' },
      { name: "-1e300 credited", damage: actr({ balance: -1e300, credited: -1e300, charged: 0 }), want: "(-1e+300 is not a whole number" },
      { name: "fraction", damage: actr({ balance: 0.5, credited: 1.5, charged: 1 }), want: "(1.5 is not a whole number" },
      {
        name: "key used negative",
        damage: (db) => db.sublevel<string, string>("kctr", { valueEncoding: "utf8" }).put(keys[0]!.id, encodeCounters({ remaining: 0, used: -7, credited: 0, lastUsedAt: null, refilledAt: null })),
        want: `key "${keys[0]!.id}": counter used in record kctr/"${keys[0]!.id}" is out of range (-7 is negative)`,
      },
    ];
    for (const c of cases) {
      let saved: [string, string | undefined][] = [];
      await withDb(dir, async (db) => {
        saved = [["actr", await db.sublevel<string, string>("actr", { valueEncoding: "utf8" }).get("default")], ["kctr", await db.sublevel<string, string>("kctr", { valueEncoding: "utf8" }).get(keys[0]!.id)]];
        await c.damage(db);
      });
      const failure = await serveMustFail(dir);
      expect(failure.exitCode, c.name).to.equal(1);
      expect(failure.stderr, c.name).to.include("cannot load the store: ").and.include(c.want).and.include("restore the data directory from a backup");
      await withDb(dir, async (db) => {
        await db.sublevel<string, string>("actr", { valueEncoding: "utf8" }).put("default", saved[0]![1]!);
        await db.sublevel<string, string>("kctr", { valueEncoding: "utf8" }).put(keys[0]!.id, saved[1]![1]!);
      });
    }
    const ok = await startServe(dir);
    procs.push(ok);
    expect(await stopProcess(ok.child)).to.equal(0);
  });

  it("garbage in accounts, account counters, groups, tokens or prices is named (sublevel and key) with the repair", async () => {
    const { dir } = await seeded();
    let tokenId = "";
    await withDb(dir, async (db) => {
      for await (const k of db.sublevel<string, string>("tokens", { valueEncoding: "utf8" }).keys()) tokenId = k;
    });
    for (const [sub, key] of [["accts", "default"], ["actr", "default"], ["groups", "team"], ["tokens", tokenId], ["prices", "m1"]] as const) {
      let saved: string | undefined;
      await withDb(dir, async (db) => {
        const s = db.sublevel<string, string>(sub, { valueEncoding: "utf8" });
        saved = await s.get(key);
        await s.put(key, "{garbage");
      });
      const failure = await serveMustFail(dir);
      expect(failure.exitCode, sub).to.equal(1);
      expect(failure.stderr, sub).to.include(`cannot load the store: record ${sub}/${JSON.stringify(key)} does not decode`).and.include("restore the data directory from a backup");
      expect(failure.stderr, sub).to.not.include("Iterator could not decode data");
      await withDb(dir, (db) => db.sublevel<string, string>(sub, { valueEncoding: "utf8" }).put(key, saved!));
    }
    const ok = await startServe(dir);
    procs.push(ok);
    expect(await stopProcess(ok.child)).to.equal(0);
  });

  it("a damaged db/CURRENT is named, with what it holds and how to repair it", async () => {
    const { dir } = await seeded();
    const current = join(dir, "db", "CURRENT");
    const good = await readFile(current, "utf8");
    for (const bad of ["", "garbage\n", "MANIFEST-999999\n"]) {
      await writeFile(current, bad);
      const failure = await serveMustFail(dir);
      expect(failure.exitCode, JSON.stringify(bad)).to.equal(1);
      expect(failure.stderr, JSON.stringify(bad))
        .to.include(`cannot open the LevelDB store ${join(dir, "db")}: `)
        .and.include(`${join(dir, "db")}/CURRENT (it holds ${JSON.stringify(bad)}) names the store's current manifest`)
        .and.include("restore the data directory from a backup")
        .and.include("write the name of the newest one followed by a newline into CURRENT");
    }
    // No CURRENT at all: LevelDB would start an empty store over the old files.
    await rm(current);
    const missing = await serveMustFail(dir);
    expect(missing.exitCode).to.equal(1);
    expect(missing.stderr).to.include(`${join(dir, "db")}/CURRENT is missing while the store's files are there`);
    // The repair the message gives, when only CURRENT is damaged: the newest manifest's name.
    const manifests = (await readdir(join(dir, "db"))).filter((f) => f.startsWith("MANIFEST-")).sort();
    expect(manifests.at(-1) + "\n").to.equal(good);
    await writeFile(current, manifests.at(-1) + "\n");
    const ok = await startServe(dir);
    procs.push(ok);
    expect(ok.ready["keys"]).to.equal(2);
    expect(await stopProcess(ok.child)).to.equal(0);
  });

  it("a key record that does not decode: ListKeys lists the others and the log names it; GetKey says so; DeleteKeys deletes it and its secret is denied", async () => {
    const { dir, token, keys } = await seeded();
    const [bad, fine] = keys as [{ id: string; secret: string }, { id: string; secret: string }];
    await withDb(dir, (db) => db.sublevel<string, string>("keys", { valueEncoding: "utf8" }).put(bad.id, "{torn"));
    const p = await startServe(dir);
    procs.push(p);
    const admin = new adminPb.AdminClient(p.adminAddress, grpc.credentials.createInsecure());
    try {
      const list = await adminCall<adminPb.ListKeysResponse>(admin, token, "listKeys", {});
      expect(list.keys.map((k) => k.id)).to.deep.equal([fine.id]);
      // The log line and the reply travel apart (pino writes asynchronously, and stdout is a
      // pipe read beside the gRPC socket): the reply can arrive first, so wait for the line.
      const named = `key ${bad.id}: record keys/${JSON.stringify(bad.id).replace(/"/g, '\\"')} does not decode`;
      for (const until = Date.now() + 10_000; !p.stdout.join("\n").includes(named) && Date.now() < until; ) await new Promise((r) => setTimeout(r, 20));
      expect(p.stdout.join("\n")).to.include(named);
      const get = await adminCall(admin, token, "getKey", { id: bad.id }).then(
        () => expect.fail("GetKey of an unreadable record must fail"),
        (err: grpc.ServiceError) => err,
      );
      expect(get.code).to.equal(grpc.status.FAILED_PRECONDITION);
      expect(get.details).to.include(`key ${bad.id}: its record is unreadable`);
      await adminCall(admin, token, "deleteKeys", { ids: [bad.id] });
      expect(((await envoyCheck(p.envoyAddress, bad.secret)).status?.code ?? 0) !== 0, "the deleted key's secret is denied").to.equal(true);
      expect((await envoyCheck(p.envoyAddress, fine.secret)).status?.code ?? 0).to.equal(0);
    } finally {
      admin.close();
    }
    expect(await stopProcess(p.child)).to.equal(0);
    const again = await startServe(dir);
    procs.push(again);
    expect(again.ready["keys"]).to.equal(1);
    expect(await stopProcess(again.child)).to.equal(0);
    await withDb(dir, async (db) => {
      for (const sub of ["keys", "khot", "kctr"]) expect(await db.sublevel<string, string>(sub, { valueEncoding: "utf8" }).get(bad.id), sub).to.equal(undefined);
    });
  });
});
