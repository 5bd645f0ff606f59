// Issue 18, item 4, as a real process: an Envoy-only load (Checks, never a Consume) fills the
// reservation slab; the cap bounds it (aisa_reservations_evicted_total), and after the burst
// expires the TTL sweep gives the slab's memory back (aisa_reservations_capacity, the
// process's array-buffer bytes). No timing assertions: it waits for the metrics.
import { expect } from "chai";
import * as grpc from "@grpc/grpc-js";
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import * as adminPb from "../../src/gen/aisa/v1/admin.js";
import * as authorizerPb from "../../src/gen/aisa/v1/authorizer.js";
import { startServe, stopProcess } from "../helpers/proc.js";
import { metricValue as metric } from "../helpers/metrics.js";
import { removeDir, tempDir } from "../helpers/tmp.js";

const unary = <Res>(client: any, method: string, mod: any, req: unknown, m?: grpc.Metadata) =>
  new Promise<Res>((resolve, reject) =>
    client[method](mod[`${method[0]!.toUpperCase()}${method.slice(1)}Request`].fromPartial(req), m ?? new grpc.Metadata(), (e: Error | null, r: Res) => (e ? reject(e) : resolve(r))),
  );

async function until(cond: () => Promise<boolean>, ms: number): Promise<void> {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    if (await cond()) return;
    await new Promise((r) => setTimeout(r, 200));
  }
  throw new Error("condition not met in time");
}

describe("reservation slab under Checks that are never consumed (a process)", function () {
  this.timeout(120_000);

  it("holds at most AISA_MAX_RESERVATIONS, and its memory returns after the burst expires", async () => {
    const dir = await tempDir();
    const CAP = 5000;
    // A short TTL (the knob's floor is 1 s; the once-a-second sweep frees what expired): the
    // wait for the burst to expire is the TTL, not the point of the test.
    const TTL_MS = 4000;
    const p = await startServe(dir, [], { AISA_RESERVATION_TTL_MS: String(TTL_MS), AISA_MAX_RESERVATIONS: String(CAP) });
    const admin = new adminPb.AdminClient(p.adminAddress, grpc.credentials.createInsecure());
    const authz = new authorizerPb.AuthorizerClient(p.dataAddress, grpc.credentials.createInsecure());
    try {
      const meta = new grpc.Metadata();
      meta.set("authorization", `Bearer ${(await readFile(join(dir, "admin.token"), "utf8")).trim()}`);
      await unary(admin, "adjustBalance", adminPb, { accountId: "default", delta: "1000000000", reason: "seed" }, meta);
      const k = await unary<adminPb.CreateKeyResponse>(admin, "createKey", adminPb, { spec: { name: "burst", unlimited: true } }, meta);
      const m = p.metricsAddress;
      const arrayBuffersBefore = await metric(m, "aisa_nodejs_external_memory_bytes").catch(() => NaN);
      const capacityBefore = await metric(m, "aisa_reservations_capacity"); // read at the scrape: no timer to wait for
      expect(capacityBefore).to.be.greaterThan(0);
      // The burst: more Checks than the cap, faster than the TTL lets them go.
      const N = 30_000;
      let allowed = 0;
      let n = 0;
      const burstStart = Date.now();
      await Promise.all(
        Array.from({ length: 64 }, async () => {
          while (n < N) {
            n++;
            const r = await unary<authorizerPb.CheckResponse>(authz, "check", authorizerPb, { apiKey: k.secret, estimatedUnits: "1" });
            if (r.allowed) allowed++;
          }
        }),
      );
      const burstMs = Date.now() - burstStart;
      expect(allowed).to.equal(N);
      await until(async () => (await metric(m, "aisa_reservations_open")) > 0, 5000);
      const peakOpen = await metric(m, "aisa_reservations_open");
      const peakCapacity = await metric(m, "aisa_reservations_capacity");
      const evicted = await metric(m, "aisa_reservations_evicted_total");
      expect(peakOpen).to.be.at.most(CAP);
      expect(peakCapacity).to.be.at.most(CAP);
      expect(peakCapacity).to.be.greaterThan(capacityBefore);
      // Evictions whenever more than CAP Checks came within one TTL: a burst of N under N / CAP TTLs
      // (24 s at 4 s), with a margin.
      if (burstMs < ((N / CAP) * TTL_MS * 5) / 6) expect(evicted).to.be.greaterThan(0);
      // After the burst: every reservation expires and the slab shrinks to its first size.
      await until(async () => (await metric(m, "aisa_reservations_capacity")) <= capacityBefore, 60_000);
      const open = await metric(m, "aisa_reservations_open");
      const capacityAfter = await metric(m, "aisa_reservations_capacity");
      const arrayBuffersAfter = await metric(m, "aisa_nodejs_external_memory_bytes").catch(() => NaN);
      expect(open).to.equal(0);
      console.log(
        `      ${N} Checks in ${burstMs} ms, cap ${CAP}: peak ${peakOpen} open in ${peakCapacity} slots (${evicted} evicted); ` +
          `after the TTL: ${open} open in ${capacityAfter} slots (was ${capacityBefore}); external memory ${(arrayBuffersBefore / 2 ** 20).toFixed(1)} → ${(arrayBuffersAfter / 2 ** 20).toFixed(1)} MiB`,
      );
    } finally {
      admin.close();
      authz.close();
      await stopProcess(p.child);
      await removeDir(dir);
    }
  });
});
