// Crash safety of billing: a client drives Consume at a steady rate with
// unique request ids and retries failures with the SAME id; the sidecar (a
// child process) is killed with SIGKILL at random moments and restarted.
// Afterwards every acknowledged Consume is in the ledger exactly once and every
// key and account reconciles with the ledger to the unit.
import { expect } from "chai";
import * as grpc from "@grpc/grpc-js";
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import * as adminPb from "../../src/gen/aisa/v1/admin.js";
import * as authorizerPb from "../../src/gen/aisa/v1/authorizer.js";
import { LevelStore } from "../../src/store/level/levelStore.js";
import { startServe, stopProcess, waitExit, type ServeProcess } from "../helpers/proc.js";
import { removeDir, tempDir } from "../helpers/tmp.js";
import { reconcile } from "./consume.test.js";

const KILLS = Number(process.env["AISA_CRASH_KILLS"] ?? 10);

function unary<Res>(client: any, mod: any, method: string, req: unknown, meta = new grpc.Metadata()): Promise<Res> {
  const msg = mod[`${method[0]!.toUpperCase()}${method.slice(1)}Request`].fromPartial(req);
  return new Promise((resolve, reject) => client[method](msg, meta, { deadline: Date.now() + 3000 }, (e: Error | null, r: Res) => (e ? reject(e) : resolve(r))));
}

describe("crash safety of Consume (SIGKILL × " + KILLS + ")", function () {
  this.timeout(60_000 + KILLS * 15_000);
  let dir: string;
  let current: ServeProcess | undefined;

  after(async () => {
    if (current) await stopProcess(current.child);
    await removeDir(dir);
  });

  it("keeps every acknowledged Consume exactly once and reconciles to the unit", async () => {
    dir = await tempDir();
    current = await startServe(dir);
    const token = (await readFile(join(dir, "admin.token"), "utf8")).trim();
    const meta = new grpc.Metadata();
    meta.set("authorization", `Bearer ${token}`);
    const admin = new adminPb.AdminClient(current.adminAddress, grpc.credentials.createInsecure());
    await unary(admin, adminPb, "adjustBalance", { accountId: "default", delta: "1000000000", reason: "seed" }, meta);
    const keys: string[] = [];
    for (let i = 0; i < 4; i++) keys.push((await unary<adminPb.CreateKeyResponse>(admin, adminPb, "createKey", { spec: { name: `crash-${i}`, quota: "100000000" } }, meta)).key!.id);
    admin.close();

    const acknowledged = new Map<string, number>(); // request id → units
    let authz = new authorizerPb.AuthorizerClient(current.dataAddress, grpc.credentials.createInsecure());
    let seq = 0;
    let retries = 0;
    let running = true;
    // Four clients; each retries a failed request with the same id until acknowledged.
    const client = async (c: number) => {
      while (running) {
        const id = `c${c}-${seq++}`;
        const units = 1 + (seq % 50);
        for (;;) {
          try {
            const r = await unary<authorizerPb.ConsumeResponse>(authz, authorizerPb, "consume", { requestId: id, target: { $case: "keyId", value: keys[c % keys.length]! }, units: String(units) });
            expect(r.unitsCharged).to.equal(String(units));
            acknowledged.set(id, units);
            break;
          } catch {
            retries++;
            await new Promise((r) => setTimeout(r, 50));
            if (!running) return; // an unacknowledged last request may or may not be charged
          }
        }
        await new Promise((r) => setTimeout(r, 1));
      }
    };
    const clients = Array.from({ length: 4 }, (_, c) => client(c));
    for (let k = 0; k < KILLS; k++) {
      await new Promise((r) => setTimeout(r, 200 + Math.floor(Math.random() * 600)));
      current.child.kill("SIGKILL");
      expect(await waitExit(current.child)).to.equal("SIGKILL");
      current = await startServe(dir);
      authz.close();
      authz = new authorizerPb.AuthorizerClient(current.dataAddress, grpc.credentials.createInsecure());
    }
    await new Promise((r) => setTimeout(r, 300));
    running = false;
    await Promise.all(clients);
    authz.close();
    expect(await stopProcess(current.child)).to.equal(0);
    current = undefined;

    // Every acknowledged Consume is in the ledger exactly once (ids are unique keys).
    const store = new LevelStore({ dir });
    await store.open(Date.now());
    const ledger = new Map<string, number>();
    try {
      for await (const r of store.scanLedger()) {
        expect(ledger.has(r.requestId), `duplicate ${r.requestId}`).to.equal(false);
        ledger.set(r.requestId, r.units);
      }
    } finally {
      await store.close();
    }
    for (const [id, units] of acknowledged) expect(ledger.get(id), `acknowledged ${id} missing`).to.equal(units);
    const extra = [...ledger.keys()].filter((id) => !acknowledged.has(id));
    expect(extra.length, "charged but never acknowledged (only the last in-flight one per client)").to.be.at.most(4);
    const rec = await reconcile(dir);
    expect(rec.problems).to.deep.equal([]);
    console.log(`      crash: ${KILLS} SIGKILLs, ${acknowledged.size} acknowledged Consumes all in the ledger once, ${retries} retries, ${extra.length} unacknowledged charged, reconciliation: 0 problems`);
  });
});
