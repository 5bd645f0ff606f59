// A full disk, for real: the data dir on a small tmpfs, the real `aisa-authz serve` process.
// The disk is filled until Consume fails (UNAVAILABLE, health NOT_SERVING), freed, and the
// sidecar must recover before it acknowledges anything again; then every write acknowledged
// after the recovery must survive a SIGKILL — acknowledged Consumes exactly once, a created
// key present, a deleted key gone (and its secret denied).
//
// LevelDB's log writer is left torn by a failed append (ENOSPC part-way through a record: the
// writer's block offset moved on while only part of the record reached the file), so records
// appended to that log file afterwards are unreadable at the next open until a memtable flush
// starts a new log. The store must close and reopen LevelDB before it acknowledges again.
//
// Needs root (mount). Without it the test is skipped with a message — except under CI=true,
// where it fails.
import { expect } from "chai";
import * as grpc from "@grpc/grpc-js";
import { execFileSync } from "node:child_process";
import { open, readFile, rm, mkdir } from "node:fs/promises";
import { join } from "node:path";
import * as adminPb from "../../src/gen/aisa/v1/admin.js";
import * as authorizerPb from "../../src/gen/aisa/v1/authorizer.js";
import type * as typesPb from "../../src/gen/aisa/v1/types.js";
import { HealthClient, HealthCheckResponse_ServingStatus as Serving } from "../../src/gen/grpc/health/v1/health.js";
import { LevelStore } from "../../src/store/level/levelStore.js";
import { startServe, stopProcess, waitExit, type ServeProcess } from "../helpers/proc.js";
import { envoyCheck } from "../helpers/clients.js";
import { removeDir, tempDir } from "../helpers/tmp.js";

const CYCLES = 3;

function unary<Res>(client: any, mod: any, method: string, req: unknown, meta = new grpc.Metadata()): Promise<Res> {
  const msg = mod[`${method[0]!.toUpperCase()}${method.slice(1)}Request`].fromPartial(req);
  return new Promise((resolve, reject) => client[method](msg, meta, { deadline: Date.now() + 5000 }, (e: Error | null, r: Res) => (e ? reject(e) : resolve(r))));
}

function health(address: string): Promise<Serving> {
  const c = new HealthClient(address, grpc.credentials.createInsecure());
  return new Promise((resolve, reject) =>
    c.check({ service: "" }, new grpc.Metadata(), { deadline: Date.now() + 5000 }, (err, res) => {
      c.close();
      if (err) reject(err);
      else resolve(res.status);
    }),
  );
}

async function until(what: string, cond: () => Promise<boolean>, ms = 30_000): Promise<void> {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    if (await cond().catch(() => false)) return;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`${what}: not within ${ms / 1000} s`);
}

/** Writes `path` until the file system is full (ENOSPC), down to single bytes. */
async function fillDisk(path: string): Promise<number> {
  const f = await open(path, "a");
  let written = 0;
  try {
    for (const size of [1 << 20, 1 << 12, 1]) {
      const buf = Buffer.alloc(size, 0x61);
      for (;;) {
        try {
          const { bytesWritten } = await f.write(buf);
          written += bytesWritten;
          if (bytesWritten < size) break;
        } catch (err: any) {
          if (err?.code === "ENOSPC") break;
          throw err;
        }
      }
    }
  } finally {
    await f.close();
  }
  return written;
}


describe("a full disk (tmpfs, real process)", function () {
  this.timeout(240_000);
  let mnt: string | undefined;
  let mounted = false;
  let proc: ServeProcess | undefined;

  before(async function () {
    mnt = await tempDir("aisa-diskfull-");
    try {
      execFileSync("mount", ["-t", "tmpfs", "-o", "size=24m,mode=0700", "tmpfs", mnt], { stdio: "pipe" });
      mounted = true;
    } catch (err) {
      const why = `cannot mount a tmpfs (needs root): ${String((err as any)?.stderr ?? err).trim()}`;
      if (process.env["CI"] === "true") throw new Error(`${why}; under CI=true this test must run`);
      console.log(`      SKIPPED: the disk-full test — ${why}`);
      this.skip();
    }
  });

  after(async () => {
    if (proc) await stopProcess(proc.child);
    if (mounted) execFileSync("umount", [mnt!]);
    if (mnt) await removeDir(mnt);
  });

  it("recovers from ENOSPC without losing any write acknowledged afterwards, across SIGKILL", async () => {
    const dir = join(mnt!, "data");
    const filler = join(mnt!, "filler");
    await mkdir(dir);
    proc = await startServe(dir);
    const token = (await readFile(join(dir, "admin.token"), "utf8")).trim();
    const meta = new grpc.Metadata();
    meta.set("authorization", `Bearer ${token}`);
    let admin = new adminPb.AdminClient(proc.adminAddress, grpc.credentials.createInsecure());
    let authz = new authorizerPb.AuthorizerClient(proc.dataAddress, grpc.credentials.createInsecure());
    await unary(admin, adminPb, "adjustBalance", { accountId: "default", delta: "1000000000", reason: "seed" }, meta);
    const key = (await unary<adminPb.CreateKeyResponse>(admin, adminPb, "createKey", { spec: { name: "billed", quota: "100000000" } }, meta)).key!.id;

    const acknowledged = new Map<string, number>(); // request id → units
    const created = new Map<string, string>(); // key id → secret
    const deleted = new Map<string, string>();
    let seq = 0;
    let failedConsumes = 0;
    const consume = async (id: string, units: number): Promise<void> => {
      const r = await unary<authorizerPb.ConsumeResponse>(authz, authorizerPb, "consume", { requestId: id, target: { $case: "keyId", value: key }, units: String(units) });
      expect(r.unitsCharged).to.equal(String(units));
      acknowledged.set(id, units);
    };
    // A key to delete after each recovery.
    const victims: { id: string; secret: string }[] = [];
    for (let i = 0; i < CYCLES; i++) {
      const r = await unary<adminPb.CreateKeyResponse>(admin, adminPb, "createKey", { spec: { name: `victim-${i}`, unlimited: true } }, meta);
      victims.push({ id: r.key!.id, secret: r.secret });
    }

    for (let cycle = 0; cycle < CYCLES; cycle++) {
      await fillDisk(filler);
      // Consume until the store fails (bounded).
      const failed: { id: string; units: number }[] = [];
      const end = Date.now() + 30_000;
      while (failed.length === 0) {
        expect(Date.now(), "no Consume failed on a full disk within 30 s").to.be.lessThan(end);
        const id = `c${cycle}-${seq++}`;
        const units = 1 + (seq % 50);
        try {
          await consume(id, units);
        } catch (err) {
          expect((err as grpc.ServiceError).code, String(err)).to.equal(grpc.status.UNAVAILABLE);
          failed.push({ id, units });
        }
      }
      failedConsumes += failed.length;
      expect(await health(proc.dataAddress)).to.equal(Serving.NOT_SERVING);
      // Still failing while the disk is full.
      const id = `c${cycle}-${seq++}`;
      await unary(authz, authorizerPb, "consume", { requestId: id, target: { $case: "keyId", value: key }, units: "1" }).then(
        () => expect.fail("a Consume was acknowledged on a full disk"),
        (err: grpc.ServiceError) => expect(err.code).to.equal(grpc.status.UNAVAILABLE),
      );
      failed.push({ id, units: 1 });

      await rm(filler);
      await until("health SERVING after the space was freed", async () => (await health(proc!.dataAddress)) === Serving.SERVING);
      // The failed ones again (same ids), then new ones; a key created, another deleted.
      for (const f of failed) await consume(f.id, f.units);
      for (let i = 0; i < 20; i++) await consume(`c${cycle}-${seq++}`, 1 + (seq % 50));
      const c = await unary<adminPb.CreateKeyResponse>(admin, adminPb, "createKey", { spec: { name: `after-${cycle}`, unlimited: true } }, meta);
      created.set(c.key!.id, c.secret);
      const v = victims[cycle]!;
      await unary(admin, adminPb, "deleteKeys", { ids: [v.id] }, meta);
      deleted.set(v.id, v.secret);
      for (let i = 0; i < 10; i++) await consume(`c${cycle}-${seq++}`, 1 + (seq % 50));
    }

    proc.child.kill("SIGKILL");
    expect(await waitExit(proc.child)).to.equal("SIGKILL");
    admin.close();
    authz.close();

    proc = await startServe(dir);
    admin = new adminPb.AdminClient(proc.adminAddress, grpc.credentials.createInsecure());
    authz = new authorizerPb.AuthorizerClient(proc.dataAddress, grpc.credentials.createInsecure());
    const lost: string[] = [];
    for (const [id, secret] of created) {
      const got = await unary<typesPb.Key>(admin, adminPb, "getKey", { id }, meta).catch(() => undefined);
      if (!got) lost.push(`created key ${id}`);
      else if (((await envoyCheck(proc.envoyAddress, secret)).status?.code ?? 0) !== 0) lost.push(`created key ${id}: its secret denied by Check`);
    }
    for (const [id, secret] of deleted) {
      const got = await unary<typesPb.Key>(admin, adminPb, "getKey", { id }, meta).catch((err: grpc.ServiceError) => err);
      if (!(got instanceof Error) || (got as grpc.ServiceError).code !== grpc.status.NOT_FOUND) lost.push(`deleted key ${id} came back`);
      if (((await envoyCheck(proc.envoyAddress, secret)).status?.code ?? 0) === 0) lost.push(`deleted key ${id}: its secret ALLOWED by Check`);
    }
    admin.close();
    authz.close();
    expect(await stopProcess(proc.child)).to.equal(0);
    proc = undefined;

    // The ledger, read directly: every acknowledged Consume exactly once, and the key's and the
    // account's counters equal to the ledger's sums.
    const store = new LevelStore({ dir });
    await store.open(Date.now());
    let sum = 0;
    let entries = 0;
    try {
      const ledger = new Map<string, number>();
      for await (const r of store.scanLedger()) {
        ledger.set(r.requestId, r.units);
        sum += r.units;
        entries++;
      }
      for (const [id, units] of acknowledged) {
        if (ledger.get(id) !== units) lost.push(`Consume ${id} (${units} units) ${ledger.has(id) ? `charged ${ledger.get(id)}` : "lost"}`);
      }
      for (const id of ledger.keys()) if (!acknowledged.has(id)) lost.push(`Consume ${id} in the ledger but never acknowledged`);
      expect(lost, `${lost.length} lost:\n${lost.slice(0, 20).join("\n")}`).to.deep.equal([]);
      expect((await store.getKey(key))!.counters.used, "the key's used = the ledger's sum").to.equal(sum);
      expect(store.getAccount("default")!.counters.charged, "the account's charged = the ledger's sum").to.equal(sum);
      expect(await store.checkIntegrity()).to.deep.equal([]);
    } finally {
      await store.close();
    }
    console.log(
      `      disk full ×${CYCLES} on a 24 MB tmpfs: ${failedConsumes + CYCLES} Consumes refused (UNAVAILABLE, NOT_SERVING); after each recovery the same ids retried and new ones made: ` +
        `${acknowledged.size} acknowledged Consumes, all ${entries} in the ledger exactly once after SIGKILL; ${created.size} created keys present, ${deleted.size} deleted keys gone and denied`,
    );
  });

  it("a SIGKILL right after the I/O error (disk still full): every Consume acknowledged before it is there once, after a restart on the freed disk", async () => {
    const dir = join(mnt!, "data2");
    const filler = join(mnt!, "filler2");
    await mkdir(dir);
    proc = await startServe(dir);
    const token = (await readFile(join(dir, "admin.token"), "utf8")).trim();
    const meta = new grpc.Metadata();
    meta.set("authorization", `Bearer ${token}`);
    const admin = new adminPb.AdminClient(proc.adminAddress, grpc.credentials.createInsecure());
    const authz = new authorizerPb.AuthorizerClient(proc.dataAddress, grpc.credentials.createInsecure());
    await unary(admin, adminPb, "adjustBalance", { accountId: "default", delta: "1000000000", reason: "seed" }, meta);
    const key = (await unary<adminPb.CreateKeyResponse>(admin, adminPb, "createKey", { spec: { name: "billed", unlimited: true } }, meta)).key!.id;
    admin.close();
    const acknowledged = new Map<string, number>();
    for (let i = 0; i < 20; i++) {
      await unary(authz, authorizerPb, "consume", { requestId: `pre-${i}`, target: { $case: "keyId", value: key }, units: String(i + 1) });
      acknowledged.set(`pre-${i}`, i + 1);
    }
    await fillDisk(filler);
    const end = Date.now() + 30_000;
    let refused = "";
    for (let i = 0; !refused; i++) {
      expect(Date.now(), "no Consume failed on a full disk within 30 s").to.be.lessThan(end);
      try {
        await unary(authz, authorizerPb, "consume", { requestId: `full-${i}`, target: { $case: "keyId", value: key }, units: "3" });
        acknowledged.set(`full-${i}`, 3);
      } catch (err) {
        expect((err as grpc.ServiceError).code).to.equal(grpc.status.UNAVAILABLE);
        refused = `full-${i}`;
      }
    }
    authz.close();
    proc.child.kill("SIGKILL");
    expect(await waitExit(proc.child)).to.equal("SIGKILL");
    proc = undefined;
    await rm(filler);

    const store = new LevelStore({ dir });
    await store.open(Date.now());
    const lost: string[] = [];
    let sum = 0;
    try {
      const ledger = new Map<string, number>();
      for await (const r of store.scanLedger()) ledger.set(r.requestId, r.units);
      for (const [id, units] of acknowledged) if (ledger.get(id) !== units) lost.push(`Consume ${id} lost`);
      for (const [id, units] of ledger) {
        if (!acknowledged.has(id) && id !== refused) lost.push(`Consume ${id} in the ledger but never acknowledged`);
        sum += units;
      }
      expect(lost, lost.join("\n")).to.deep.equal([]);
      expect((await store.getKey(key))!.counters.used).to.equal(sum);
      expect(store.getAccount("default")!.counters.charged).to.equal(sum);
      expect(await store.checkIntegrity()).to.deep.equal([]);
    } finally {
      await store.close();
    }
    console.log(`      SIGKILL with the disk full, right after the refused Consume: ${acknowledged.size} acknowledged Consumes all in the ledger once; counters = ledger`);
  });
});
