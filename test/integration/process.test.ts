// Real `aisa-authz serve` processes: the data-dir lock, and crash safety under
// SIGKILL in the middle of admin mutations.
import { expect } from "chai";
import * as grpc from "@grpc/grpc-js";
import * as adminPb from "../../src/gen/aisa/v1/admin.js";
import * as authorizerPb from "../../src/gen/aisa/v1/authorizer.js";
import { LevelStore } from "../../src/store/level/levelStore.js";
import { startServe, stopProcess, waitExit, type ServeProcess } from "../helpers/proc.js";
import { removeDir, tempDir } from "../helpers/tmp.js";
import { chmod, readFile, readdir, stat, writeFile } from "node:fs/promises";
import { execFileSync } from "node:child_process";
import { fileURLToPath } from "node:url";
import { Level } from "level";
import { AuthorizationClient, CheckRequest, type CheckResponse } from "../../src/gen/envoy/service/auth/v3/external_auth.js";
import { join } from "node:path";

function adminCall<Res>(client: adminPb.AdminClient, token: string, method: string, req: unknown): Promise<Res> {
  const name = `${method[0]!.toUpperCase()}${method.slice(1)}Request`;
  const msg = (adminPb as Record<string, any>)[name].fromPartial(req);
  const meta = new grpc.Metadata();
  meta.set("authorization", `Bearer ${token}`);
  return new Promise((resolve, reject) => {
    (client as any)[method](msg, meta, { deadline: Date.now() + 10_000 }, (err: Error | null, res: Res) => (err ? reject(err) : resolve(res)));
  });
}

/** Starts serve expecting it to fail: its error (exitCode, stderr). One that starts is stopped and fails the test. */
async function serveMustFail(dir: string, args: string[] = []): Promise<{ exitCode: number; stderr: string }> {
  let started: ServeProcess;
  try {
    started = await startServe(dir, args);
  } catch (err) {
    return err as { exitCode: number; stderr: string };
  }
  await stopProcess(started.child);
  return expect.fail(`serve ${args.join(" ")} started; it must not`);
}

describe("serve as a process", function () {
  this.timeout(120_000);
  const dirs: string[] = [];
  const procs: ServeProcess[] = [];

  after(async () => {
    for (const p of procs) await stopProcess(p.child);
    for (const d of dirs) await removeDir(d);
  });

  it("a second serve on the same data dir exits non-zero with 'data directory in use'", async () => {
    const dir = await tempDir();
    dirs.push(dir);
    const first = await startServe(dir);
    procs.push(first);
    const failure = await serveMustFail(dir);
    expect(failure.exitCode).to.not.equal(0);
    expect(failure.stderr).to.include("data directory in use");
    // The first one still serves.
    const token = (await readFile(join(dir, "admin.token"), "utf8")).trim();
    const client = new adminPb.AdminClient(first.adminAddress, grpc.credentials.createInsecure());
    const who = await adminCall<{ tokenId: string }>(client, token, "whoAmI", {});
    expect(who.tokenId).to.equal("operator");
    client.close();
    expect(await stopProcess(first.child)).to.equal(0);
  });

  it("a bad listen address exits 2 naming the flag; the ready line names every bound address", async () => {
    const dir = await tempDir();
    dirs.push(dir);
    for (const [flag, value] of [["--envoy-listen", "nope"], ["--listen", "127.0.0.1:99999"], ["--admin-listen", ""]]) {
      const failure = await serveMustFail(dir, [flag!, value!]);
      expect(failure.exitCode, flag).to.equal(2);
      expect(failure.stderr).to.match(new RegExp(`^error: ${flag}: address ${JSON.stringify(JSON.stringify(value)).slice(1, -1)}`));
    }
    const p = await startServe(dir);
    procs.push(p);
    for (const k of ["dataAddress", "envoyAddress", "adminAddress", "metricsAddress"]) expect(p.ready[k], k).to.match(/^127\.0\.0\.1:\d+$/);
    expect(await stopProcess(p.child)).to.equal(0);
  });

  it("--level-write-buffer-mb: the ready line reports it (64 by default); 0 or > 1024 exits 2 naming the flag", async () => {
    const dir = await tempDir();
    dirs.push(dir);
    for (const [value, why] of [["0", ">= 1"], ["1025", "<= 1024"], ["lots", ">= 1"]]) {
      const failure = await serveMustFail(dir, ["--level-write-buffer-mb", value!]);
      expect(failure.exitCode, value).to.equal(2);
      expect(failure.stderr, value).to.match(/^error: --level-write-buffer-mb: /);
      if (value !== "lots") expect(failure.stderr, value).to.include(why!);
    }
    const byDefault = await startServe(dir);
    procs.push(byDefault);
    expect(byDefault.ready.levelWriteBufferMb).to.equal(64);
    expect(await stopProcess(byDefault.child)).to.equal(0);
    const small = await startServe(dir, ["--level-write-buffer-mb", "8"]);
    procs.push(small);
    expect(small.ready.levelWriteBufferMb).to.equal(8);
    expect(await stopProcess(small.child)).to.equal(0);
  });

  it("run as a program, the bin execs node with its memory settings (overridable); as `node bin/…` it applies none", async () => {
    const dir = await tempDir();
    dirs.push(dir);
    const environOf = async (pid: number) => new Map((await readFile(`/proc/${pid}/environ`, "utf8")).split("\0").filter(Boolean).map((kv) => [kv.slice(0, kv.indexOf("=")), kv.slice(kv.indexOf("=") + 1)]));
    const plain = { MALLOC_ARENA_MAX: undefined, NODE_OPTIONS: undefined };
    const cases = [
      { name: "defaults", env: plain, want: { mallocArenaMax: "2", maxSemiSpaceMb: 4, minSemiSpaceMb: 4 } },
      { name: "the environment's own values", env: { MALLOC_ARENA_MAX: "4", NODE_OPTIONS: "--max-semi-space-size=16" }, want: { mallocArenaMax: "4", maxSemiSpaceMb: 16, minSemiSpaceMb: 4 } },
    ];
    for (const c of cases) {
      const p = await startServe(dir, [], c.env, true);
      procs.push(p);
      expect(p.ready.memory, c.name).to.deep.equal(c.want);
      // The shell exec'd node: the spawned pid is node itself (signals reach it), and what it
      // reports is what its environment really holds.
      expect((await readFile(`/proc/${p.child.pid}/comm`, "utf8")).trim(), c.name).to.equal("node");
      const environ = await environOf(p.child.pid!);
      expect(environ.get("MALLOC_ARENA_MAX"), c.name).to.equal(c.want.mallocArenaMax);
      expect(environ.get("NODE_OPTIONS")?.trim().split(/\s+/).at(-1), c.name).to.equal(`--max-semi-space-size=${c.want.maxSemiSpaceMb}`);
      // The minimum is on node's command line (node refuses it in NODE_OPTIONS).
      const cmdline = (await readFile(`/proc/${p.child.pid}/cmdline`, "utf8")).split("\0");
      expect(cmdline.slice(1, 2), c.name).to.deep.equal([`--min-semi-space-size=${c.want.minSemiSpaceMb}`]);
      expect(await stopProcess(p.child), c.name).to.equal(0);
    }
    const direct = await startServe(dir, [], plain);
    procs.push(direct);
    expect(direct.ready.memory).to.deep.equal({ mallocArenaMax: null, maxSemiSpaceMb: null, minSemiSpaceMb: null });
    expect(await stopProcess(direct.child)).to.equal(0);
  });

  it("run as a program, the bin leaves the semi-space to V8 for `tui` (other commands get 4 MB)", async () => {
    // A stand-in `node` first on PATH prints what the prologue exec'd it with.
    const dir = await tempDir();
    dirs.push(dir);
    // It prints MALLOC_ARENA_MAX | NODE_OPTIONS | node's own flags (before the script) | the first argument after the script.
    await writeFile(join(dir, "node"), '#!/bin/sh\nf=; while [ "$#" -gt 0 ] && [ "${1#--}" != "$1" ]; do f="$f$1 "; shift; done\nprintf "%s|%s|%s|%s" "${MALLOC_ARENA_MAX:-}" "${NODE_OPTIONS:-}" "$f" "$2"\n', { mode: 0o755 });
    const bin = fileURLToPath(new URL("../../bin/aisa-authz.js", import.meta.url));
    const run = (args: string[], extra: Record<string, string> = {}): string => {
      const env: NodeJS.ProcessEnv = { ...process.env, PATH: `${dir}:${process.env.PATH ?? ""}`, ...extra };
      delete env.MALLOC_ARENA_MAX;
      if (!("NODE_OPTIONS" in extra)) delete env.NODE_OPTIONS;
      return execFileSync(bin, args, { env, encoding: "utf8" });
    };
    expect(run(["serve"])).to.equal("2|--max-semi-space-size=4 |--min-semi-space-size=4 |serve");
    expect(run(["tui"])).to.equal("2|||tui");
    expect(run(["tui"], { NODE_OPTIONS: "--max-semi-space-size=8" })).to.equal("2|--max-semi-space-size=8||tui");
    expect(run(["keys", "list"], { NODE_OPTIONS: "--max-semi-space-size=8" })).to.equal("2|--max-semi-space-size=4 --max-semi-space-size=8|--min-semi-space-size=4 |keys");
    // The command is found past the global flags and their values, and only there.
    const semi = (args: string[]) => run(args).split("|").slice(1, 3).join("|");
    for (const args of [["--admin", "127.0.0.1:1", "tui"], ["--token", "tui-token", "--admin-tls", "--json", "tui"], ["--data", "tui", "--admin-ca", "ca.pem", "tui"], ["--admin=127.0.0.1:1", "tui"]]) {
      expect(semi(args), args.join(" ")).to.equal("|");
    }
    for (const args of [["--data", "tui", "serve"], ["--admin", "tui", "keys", "list"], ["keys", "create", "--name", "tui"], ["--json"]]) {
      expect(semi(args), args.join(" ")).to.equal("--max-semi-space-size=4 |--min-semi-space-size=4 ");
    }
  });

  it("an existing data dir with open modes (0755 dirs, 0644 files) is made private at start: 0700 dirs, 0600 files, new LevelDB files too", async () => {
    const dir = await tempDir();
    dirs.push(dir);
    const modes = async (): Promise<Map<string, number>> => {
      const out = new Map<string, number>();
      const walk = async (p: string): Promise<void> => {
        const st = await stat(p);
        out.set(p.slice(dir.length) || "/", st.mode & 0o777);
        if (st.isDirectory()) for (const e of await readdir(p)) await walk(join(p, e));
      };
      await walk(dir);
      return out;
    };
    const first = await startServe(dir);
    expect(await stopProcess(first.child)).to.equal(0);
    // What an older build, a copy or a umask of 022 leaves.
    for (const p of (await modes()).keys()) await chmod(join(dir, p), p === "/" || p === "/db" ? 0o755 : 0o644);
    const opened = [...(await modes()).values()];
    expect(opened.filter((m) => m & 0o077).length, "the setup left open modes").to.equal(opened.length);

    // The child inherits umask 022: serve must not depend on it.
    const umask = process.umask(0o022);
    let p: ServeProcess;
    try {
      // A 1 MB write buffer (the default is 64), so that the writes below fill it.
      p = await startServe(dir, ["--level-write-buffer-mb", "1"]);
    } finally {
      process.umask(umask);
    }
    procs.push(p);
    const atStart = await modes();
    // Enough writes (~5 MB of ledger) for LevelDB to flush its memtable while serving: a new
    // table file and a new log file, created after start-up's chmod pass.
    const token = (await readFile(join(dir, "admin.token"), "utf8")).trim();
    const admin = new adminPb.AdminClient(p.adminAddress, grpc.credentials.createInsecure());
    await adminCall(admin, token, "adjustBalance", { accountId: "default", delta: "100000000", reason: "test" });
    const key = (await adminCall<adminPb.CreateKeyResponse>(admin, token, "createKey", { spec: { name: "private", unlimited: true } })).key!.id;
    admin.close();
    const authz = new authorizerPb.AuthorizerClient(p.dataAddress, grpc.credentials.createInsecure());
    for (let b = 0; b < 8; b++) {
      const items = Array.from({ length: 1000 }, (_, i) => ({ requestId: `${b}-${i}-`.padEnd(128, "x"), target: { $case: "keyId", value: key }, units: "1" }));
      const msg = authorizerPb.ConsumeBatchRequest.fromPartial({ items } as any);
      await new Promise((resolve, reject) => authz.consumeBatch(msg, new grpc.Metadata(), { deadline: Date.now() + 20_000 }, (e, r) => (e ? reject(e) : resolve(r))));
    }
    authz.close();
    expect(await stopProcess(p.child)).to.equal(0);
    const afterStop = await modes();
    for (const [when, m] of [["while serving", atStart], ["after stop (files LevelDB created while serving)", afterStop]] as const) {
      // (db-unlinking: second names of LevelDB's files while serving, store/level/deferredUnlink.ts.)
      const open = [...m].filter(([path, mode]) => mode !== (path === "/" || path === "/db" || path === "/db-unlinking" ? 0o700 : 0o600)).map(([path, mode]) => `${path} ${mode.toString(8)}`);
      expect(open, when).to.deep.equal([]);
    }
    const created = [...afterStop.keys()].filter((f) => !atStart.has(f));
    expect(created.filter((f) => f.endsWith(".ldb")), "LevelDB wrote a table file while serving").to.not.deep.equal([]);
    console.log(`      data dir modes: ${afterStop.size - 2} files 0600 (${created.length} created while serving), dir and db/ 0700 (were 0644 / 0755)`);
  });

  it("a damaged key projection stops serve with a pointer to --rebuild-projection, which repairs it from the records", async () => {
    const dir = await tempDir();
    dirs.push(dir);
    // A key with a balance to spend, written by a real serve.
    const first = await startServe(dir);
    const token = (await readFile(join(dir, "admin.token"), "utf8")).trim();
    const admin = new adminPb.AdminClient(first.adminAddress, grpc.credentials.createInsecure());
    await adminCall(admin, token, "adjustBalance", { accountId: "default", delta: "1000000", reason: "test" });
    const created = await adminCall<{ secret: string; key: { id: string } }>(admin, token, "createKey", { spec: { name: "repair-me", unlimited: true } });
    admin.close();
    expect(await stopProcess(first.child)).to.equal(0);
    // Damage its projection (what a torn disk or a bad copy could leave); the record stays.
    const db = new Level<string, string>(join(dir, "db"), { valueEncoding: "utf8" });
    await db.sublevel<string, string>("khot", { valueEncoding: "utf8" }).put(created.key.id, "garbage");
    await db.close();

    const failure = await serveMustFail(dir);
    expect(failure.exitCode, "serve must refuse a damaged projection").to.equal(1);
    expect(failure.stderr).to.include(created.key.id).and.include("bad hot projection").and.include("--rebuild-projection");

    const check = async (address: string): Promise<CheckResponse> => {
      const client = new AuthorizationClient(address, grpc.credentials.createInsecure());
      const req = CheckRequest.fromPartial({
        attributes: {
          source: { address: { address: { $case: "socketAddress", value: { address: "203.0.113.7", portSpecifier: { $case: "portValue", value: 1 } } } } },
          request: { http: { method: "GET", path: "/v1/models", headers: { authorization: `Bearer ${created.secret}` } } },
        },
      } as any);
      try {
        return await new Promise((resolve, reject) => client.check(req, (err, res) => (err ? reject(err) : resolve(res!))));
      } finally {
        client.close();
      }
    };
    const repaired = await startServe(dir, ["--rebuild-projection"]);
    procs.push(repaired);
    expect(repaired.ready["index"]).to.equal("records");
    expect(repaired.stdout.join("\n")).to.include("key projection rebuilt from the key records");
    expect((await check(repaired.envoyAddress)).status?.code ?? 0, "the key works again").to.equal(0);
    expect(await stopProcess(repaired.child)).to.equal(0);
    // Rewritten: the next start reads the projection again.
    const again = await startServe(dir);
    procs.push(again);
    expect(again.ready["index"]).to.equal("projection");
    expect((await check(again.envoyAddress)).status?.code ?? 0).to.equal(0);
    expect(await stopProcess(again.child)).to.equal(0);
  });

  it("SIGKILL in the middle of mutations leaves a consistent store with every acknowledged write", async () => {
    const dir = await tempDir();
    dirs.push(dir);
    const acknowledged = new Map<string, string>(); // id → expected name
    const deleted = new Set<string>();
    for (let round = 0; round < 3; round++) {
      const p = await startServe(dir);
      procs.push(p);
      const token = (await readFile(join(dir, "admin.token"), "utf8")).trim();
      const client = new adminPb.AdminClient(p.adminAddress, grpc.credentials.createInsecure());
      let stop = false;
      const worker = async (w: number) => {
        let i = 0;
        while (!stop) {
          i++;
          try {
            const r = await adminCall<adminPb.CreateKeyResponse>(client, token, "createKey", { spec: { name: `r${round}-w${w}-${i}`, quota: "100" } });
            acknowledged.set(r.key!.id, r.key!.name);
            if (i % 3 === 0) {
              acknowledged.set(r.key!.id, r.key!.name + "*"); // rename in flight: old or new name
              await adminCall(client, token, "updateKey", { id: r.key!.id, spec: { name: `${r.key!.name}-renamed` }, updateMask: ["name"] });
              acknowledged.set(r.key!.id, `${r.key!.name}-renamed`);
            }
            if (i % 5 === 0) {
              // Until the delete is acknowledged, either outcome is correct.
              acknowledged.delete(r.key!.id);
              await adminCall(client, token, "deleteKeys", { ids: [r.key!.id] });
              deleted.add(r.key!.id);
            }
          } catch {
            return; // the server died under us: unacknowledged writes may or may not be there
          }
        }
      };
      const workers = Array.from({ length: 8 }, (_, w) => worker(w));
      await new Promise((r) => setTimeout(r, 300 + Math.floor(Math.random() * 400)));
      p.child.kill("SIGKILL");
      stop = true;
      await Promise.all(workers);
      expect(await waitExit(p.child)).to.equal("SIGKILL");
      client.close();
    }
    expect(acknowledged.size).to.be.greaterThan(10);

    const store = new LevelStore({ dir });
    await store.open(Date.now());
    try {
      expect(await store.checkIntegrity()).to.deep.equal([]);
      for (const [id, name] of acknowledged) {
        const k = await store.getKey(id);
        expect(k, `acknowledged key ${id} lost`).to.not.equal(undefined);
        if (name.endsWith("*")) expect([name.slice(0, -1), `${name.slice(0, -1)}-renamed`]).to.include(k!.record.name);
        else expect(k!.record.name).to.equal(name);
      }
      for (const id of deleted) expect(await store.getKey(id), `deleted key ${id} came back`).to.equal(undefined);
    } finally {
      await store.close();
    }
    console.log(`      crash test: 3 SIGKILLs, ${acknowledged.size} acknowledged keys all present, ${deleted.size} deletes held, 0 integrity problems`);
  });
});
