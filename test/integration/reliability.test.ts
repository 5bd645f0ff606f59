// Fail closed under an injected store failure and recover; graceful shutdown;
// metrics; credentials never reach the logs.
import { expect } from "chai";
import * as grpc from "@grpc/grpc-js";
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import type { CreateKeyResponse } from "../../src/gen/aisa/v1/admin.js";
import type { CheckResponse, ConsumeResponse } from "../../src/gen/aisa/v1/authorizer.js";
import { HealthClient, HealthCheckResponse_ServingStatus as Serving, type HealthCheckResponse } from "../../src/gen/grpc/health/v1/health.js";
import { call, expectGrpcError, removeDir, startTestSidecar, tempDir, type TestSidecar } from "../helpers/sidecar.js";
import { startServe, stopProcess, waitExit } from "../helpers/proc.js";
import * as adminPb from "../../src/gen/aisa/v1/admin.js";
import * as authorizerPb from "../../src/gen/aisa/v1/authorizer.js";

function healthOf(address: string): Promise<HealthCheckResponse> {
  const c = new HealthClient(address, grpc.credentials.createInsecure());
  return new Promise((resolve, reject) =>
    c.check({ service: "" }, (err, res) => {
      c.close();
      if (err) reject(err);
      else resolve(res);
    }),
  );
}

async function until(cond: () => Promise<boolean>, ms = 10_000): Promise<void> {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    if (await cond()) return;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error("condition not met in time");
}

describe("reliability", function () {
  this.timeout(60_000);

  describe("store failure (injected I/O error)", () => {
    let s: TestSidecar;
    let fault: Error | null = null;
    before(async () => {
      s = await startTestSidecar({ storeFaultInjector: () => fault });
    });
    after(async () => {
      fault = null;
      await s.close();
      await removeDir(s.dir);
    });

    it("fails closed: Check is UNAVAILABLE, health NOT_SERVING, nothing charged; then recovers", async () => {
      const admin = <Res>(m: string, r: unknown) => call<unknown, Res>(s.admin, m, r, s.meta());
      await admin("adjustBalance", { accountId: "default", delta: "100000", reason: "seed" });
      const k = await admin<CreateKeyResponse>("createKey", { spec: { name: "fault", quota: "10000" } });
      const ok = await call<unknown, CheckResponse>(s.authorizer, "check", { apiKey: k.secret, estimatedUnits: "1" });
      expect(ok.allowed).to.equal(true);
      expect((await healthOf(s.dataAddress)).status).to.equal(Serving.SERVING);

      fault = new Error("EIO: injected I/O error");
      // The write that hits the fault fails with UNAVAILABLE and charges nothing.
      await expectGrpcError(call<unknown, ConsumeResponse>(s.authorizer, "consume", { requestId: "f-1", target: { $case: "keyId", value: k.key!.id }, units: "5" }), grpc.status.UNAVAILABLE);
      await expectGrpcError(call(s.authorizer, "check", { apiKey: k.secret, estimatedUnits: "1" }), grpc.status.UNAVAILABLE);
      expect((await healthOf(s.dataAddress)).status).to.equal(Serving.NOT_SERVING);
      expect((await healthOf(s.adminAddress)).status).to.equal(Serving.NOT_SERVING);
      await expectGrpcError(admin("createKey", { spec: { name: "during outage" } }), grpc.status.UNAVAILABLE);

      fault = null;
      await until(async () => (await healthOf(s.dataAddress)).status === Serving.SERVING);
      const again = await call<unknown, CheckResponse>(s.authorizer, "check", { apiKey: k.secret, estimatedUnits: "1" });
      expect(again.allowed).to.equal(true);
      // The failed Consume was not charged; a retry with the same id charges once.
      const r = await call<unknown, ConsumeResponse>(s.authorizer, "consume", { requestId: "f-1", target: { $case: "keyId", value: k.key!.id }, units: "5" });
      expect(r.replayed).to.equal(false);
      expect(r.unitsCharged).to.equal("5");
      const key = await admin<{ quota: { used: string } }>("getKey", { id: k.key!.id });
      expect(key.quota.used).to.equal("5");
    });

    it("the recovery reopens the store and reloads it, keeping open reservations: each is settled once by its Consume, nothing stays reserved", async () => {
      const admin = <Res>(m: string, r: unknown) => call<unknown, Res>(s.admin, m, r, s.meta());
      const k = await admin<CreateKeyResponse>("createKey", { spec: { name: "held", quota: "1000" } });
      const held = await call<unknown, CheckResponse>(s.authorizer, "check", { apiKey: k.secret, estimatedUnits: "100" });
      expect(held.allowed).to.equal(true);
      const slot = s.store.index.slotOf(k.key!.id);
      expect(s.store.index.reserved(slot)).to.equal(100);
      const reservedBefore = s.store.getAccount("default")!.counters.reserved;

      fault = new Error("EIO: injected I/O error");
      await expectGrpcError(call(s.authorizer, "consume", { requestId: "held-1", target: { $case: "keyId", value: k.key!.id }, units: "7" }), grpc.status.UNAVAILABLE);
      fault = null;
      await until(async () => (await healthOf(s.dataAddress)).status === Serving.SERVING);
      // Reloaded from disk: the failed charge is gone from memory, the reservation is still held.
      expect(s.store.index.used(slot)).to.equal(0);
      expect(s.store.index.remaining(slot)).to.equal(1000);
      expect(s.store.index.reserved(slot)).to.equal(100);
      expect(s.store.getAccount("default")!.counters.reserved).to.equal(reservedBefore);

      const r = await call<unknown, ConsumeResponse>(s.authorizer, "consume", { requestId: "held-2", target: { $case: "reservationId", value: held.reservationId }, units: "60" });
      expect(r.unitsCharged).to.equal("60");
      expect(s.store.index.reserved(slot)).to.equal(0);
      expect(s.store.getAccount("default")!.counters.reserved).to.equal(reservedBefore - 100);
      expect(s.store.index.remaining(slot)).to.equal(940);
    });
  });

  it("SIGTERM drains, flushes and exits 0; a restart resumes where it stopped", async () => {
    const dir = await tempDir();
    try {
      const p = await startServe(dir);
      const token = (await readFile(join(dir, "admin.token"), "utf8")).trim();
      const meta = new grpc.Metadata();
      meta.set("authorization", `Bearer ${token}`);
      const admin = new adminPb.AdminClient(p.adminAddress, grpc.credentials.createInsecure());
      const authz = new authorizerPb.AuthorizerClient(p.dataAddress, grpc.credentials.createInsecure());
      const unary = <Res>(client: any, method: string, mod: any, req: unknown, m?: grpc.Metadata) =>
        new Promise<Res>((resolve, reject) =>
          client[method](mod[`${method[0]!.toUpperCase()}${method.slice(1)}Request`].fromPartial(req), m ?? new grpc.Metadata(), (e: Error | null, r: Res) => (e ? reject(e) : resolve(r))),
        );
      await unary(admin, "adjustBalance", adminPb, { accountId: "default", delta: "1000000", reason: "seed" }, meta);
      const k = await unary<CreateKeyResponse>(admin, "createKey", adminPb, { spec: { name: "drain", unlimited: true } }, meta);
      // Eight clients consume continuously; SIGTERM lands while calls are in flight.
      let answered = 0;
      let n = 0;
      const workers = Array.from({ length: 8 }, async () => {
        for (;;) {
          try {
            await unary<ConsumeResponse>(authz, "consume", authorizerPb, { requestId: `drain-${n++}`, target: { $case: "keyId", value: k.key!.id }, units: "3" });
            answered++;
            if (answered === 40) p.child.kill("SIGTERM");
          } catch {
            return;
          }
        }
      });
      await Promise.all(workers);
      expect(await waitExit(p.child)).to.equal(0);
      admin.close();
      authz.close();
      const p2 = await startServe(dir);
      const admin2 = new adminPb.AdminClient(p2.adminAddress, grpc.credentials.createInsecure());
      const key = await unary<{ quota: { used: string } }>(admin2, "getKey", adminPb, { id: k.key!.id }, meta);
      // Every Consume that was answered is on disk.
      expect(answered).to.be.at.least(40);
      expect(Number(key.quota.used)).to.be.at.least(answered * 3);
      expect(Number(key.quota.used)).to.be.at.most((answered + 8) * 3);
      admin2.close();
      expect(await stopProcess(p2.child)).to.equal(0);
      console.log(`      graceful shutdown: ${answered} Consumes answered (SIGTERM after 40), exit 0, every answered one on disk after restart`);
    } finally {
      await removeDir(dir);
    }
  });

  describe("observability", () => {
    let s: TestSidecar;
    before(async () => {
      s = await startTestSidecar();
    });
    after(async () => {
      await s.close();
      await removeDir(s.dir);
    });

    it("exposes Prometheus metrics for checks by verdict and reason, latency and batches", async () => {
      const admin = <Res>(m: string, r: unknown) => call<unknown, Res>(s.admin, m, r, s.meta());
      await admin("adjustBalance", { accountId: "default", delta: "1000", reason: "seed" });
      const k = await admin<CreateKeyResponse>("createKey", { spec: { name: "metrics", unlimited: true } });
      await call(s.authorizer, "check", { apiKey: k.secret, estimatedUnits: "1" });
      await call(s.authorizer, "check", { apiKey: "sk-wrong" });
      const res = await fetch(`http://${s.metricsAddress}/metrics`);
      expect(res.status).to.equal(200);
      const text = await res.text();
      expect(text).to.match(/aisa_checks_total\{verdict="allow",reason="ALLOWED"\} 1/);
      expect(text).to.match(/aisa_checks_total\{verdict="deny",reason="KEY_INVALID"\} 1/);
      expect(text).to.include("aisa_check_duration_seconds_bucket");
      expect(text).to.include("aisa_group_commit_batch_submissions_bucket");
      expect(text).to.include("aisa_reservations_open");
      expect(text).to.include("aisa_store_errors_total");
    });

    it("never writes a credential to the logs, even when a caller puts one in an error", async () => {
      const admin = <Res>(m: string, r: unknown) => call<unknown, Res>(s.admin, m, r, s.meta());
      const k = await admin<CreateKeyResponse>("createKey", { spec: { name: "logs" } });
      await admin("revealKeys", { ids: [k.key!.id] });
      await admin("rotateKey", { id: k.key!.id });
      // A bad request quoting a secret as a "model name".
      await expectGrpcError(admin("createKey", { spec: { name: "x", models: [`${k.secret} x`] } }), grpc.status.INVALID_ARGUMENT);
      const e = await expectGrpcError(call(s.admin, "listKeys", {}, s.meta(k.secret)), grpc.status.UNAUTHENTICATED);
      expect(e.details).to.not.include(k.secret);
      const logs = s.logs.lines.join("\n");
      expect(logs).to.not.include(k.secret);
      expect(logs).to.not.include(s.adminToken);
    });
  });
});
