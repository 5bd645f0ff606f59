// GrpcAdminApi.watchUsage against a real sidecar (in this process, real gRPC
// on 127.0.0.1:0): events arrive once a second with the bearer token, cancel
// and close() leave no stream open, the sidecar ending the stream is reported
// once, and an account-scoped token only sees its own account.
import { expect } from "chai";
import type { CheckResponse, ConsumeResponse } from "../../src/gen/aisa/v1/authorizer.js";
import type { Key } from "../../src/gen/aisa/v1/types.js";
import { ApiError, GrpcAdminApi, type KeySpec, type UsageEvent } from "../../tui/client.js";
import { call, startTestSidecar, type TestSidecar } from "../helpers/sidecar.js";
import { delay } from "./render.js";

const SPEC: KeySpec = { name: "", group: "", expires: "never", quota: "0", unlimited: true, models: [], ips: [], limits: undefined, refill: 0, metadata: {} };

/** Collects a stream's events and its end. */
class Watch {
  readonly events: UsageEvent[] = [];
  readonly errors: ApiError[] = [];
  readonly cancel: () => void;
  constructor(api: GrpcAdminApi) {
    this.cancel = api.watchUsage(
      {},
      (ev) => this.events.push(ev),
      (err) => this.errors.push(err),
    );
  }
  async until(pred: () => boolean, what: string, ms = 10_000): Promise<void> {
    const end = Date.now() + ms;
    while (!pred()) {
      if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
      await delay(20);
    }
  }
  keyIds(): Set<string> {
    return new Set(this.events.flatMap((e) => e.byKey.map((r) => r.id)));
  }
}

describe("tui: GrpcAdminApi.watchUsage (real sidecar)", function () {
  this.timeout(30_000);
  let s: TestSidecar;
  let api: GrpcAdminApi;

  beforeEach(async () => {
    s = await startTestSidecar();
    api = new GrpcAdminApi(s.adminAddress, s.adminToken);
  });
  afterEach(async () => {
    api.close();
    await s.close();
  });

  async function admitted(key: { secret: string }, units: number): Promise<void> {
    const c = await call<unknown, CheckResponse>(s.authorizer, "check", { apiKey: key.secret, clientIp: "127.0.0.1", estimatedUnits: "1" });
    expect(c.allowed, JSON.stringify(c)).to.equal(true);
    await call<unknown, ConsumeResponse>(s.authorizer, "consume", {
      requestId: `r-${Math.random()}`,
      target: { $case: "reservationId", value: c.reservationId },
      units: String(units),
    });
  }

  it("streams one event a second and cancels cleanly", async () => {
    const w = new Watch(api);
    expect(api.openStreams).to.equal(1);
    await w.until(() => w.events.length >= 2, "two events");
    const [a, b] = w.events as [UsageEvent, UsageEvent];
    expect(b.at && a.at && b.at.getTime() > a.at.getTime()).to.equal(true);
    w.cancel();
    w.cancel(); // idempotent
    expect(api.openStreams).to.equal(0);
    const n = w.events.length;
    await delay(1500);
    expect(w.events.length).to.equal(n);
    expect(w.errors).to.deep.equal([]);
  });

  it("reports the usage of a charged key and its remaining quota", async () => {
    await call(s.admin, "adjustBalance", { accountId: "default", delta: "10000000", reason: "test" }, s.meta());
    const created = await api.createKey({ ...SPEC, name: "k", unlimited: false, quota: "1000000" });
    const w = new Watch(api);
    await w.until(() => w.events.length >= 1, "the first event");
    await admitted(created, 600_000);
    await w.until(() => w.keyIds().has(created.key?.id ?? ""), "the key's row");
    await w.until(() => w.events.some((e) => e.alerts.some((x) => x.percent === 50)), "the 50 % alert");
    const rem = w.events.flatMap((e) => e.remaining).find((r) => r.keyId === created.key?.id);
    expect(rem?.remaining).to.equal("400000");
    w.cancel();
  });

  it("reports once when the sidecar ends the stream (shutdown), and frees it", async () => {
    const w = new Watch(api);
    await w.until(() => w.events.length >= 1, "the first event");
    await s.close();
    await w.until(() => w.errors.length > 0, "the end of the stream");
    await delay(200);
    expect(w.errors).to.have.length(1);
    expect(w.errors[0]).to.be.instanceOf(ApiError);
    // The README: "server shutdown ends streams with OK".
    expect(w.errors[0]?.code).to.equal("OK");
    expect(api.openStreams).to.equal(0);
    // afterEach closes again: harmless.
    s = Object.assign(s, { close: () => Promise.resolve() });
  });

  it("rejects a bad token with UNAUTHENTICATED", async () => {
    const bad = new GrpcAdminApi(s.adminAddress, "not-a-token");
    try {
      const w = new Watch(bad);
      await w.until(() => w.errors.length > 0, "the refusal");
      expect(w.errors[0]?.code).to.equal("UNAUTHENTICATED");
      expect(bad.openStreams).to.equal(0);
    } finally {
      bad.close();
    }
  });

  it("ends open streams on close()", async () => {
    const w1 = new Watch(api);
    const w2 = new Watch(api);
    expect(api.openStreams).to.equal(2);
    api.close();
    expect(api.openStreams).to.equal(0);
    await delay(100);
    expect(w1.errors).to.deep.equal([]);
    expect(w2.errors).to.deep.equal([]);
  });

  it("gives an account-scoped token its own account's usage only", async () => {
    await call(s.admin, "createAccount", { id: "acme", name: "Acme", initialBalance: "10000000" }, s.meta());
    await call(s.admin, "adjustBalance", { accountId: "default", delta: "10000000", reason: "test" }, s.meta());
    const mine = await api.createKey({ ...SPEC, name: "acme-key" }, "acme");
    const other = await api.createKey({ ...SPEC, name: "default-key" });
    const tok = await call<unknown, { secret: string }>(s.admin, "createToken", { name: "acme ops", accountId: "acme" }, s.meta());
    const scoped = new GrpcAdminApi(s.adminAddress, tok.secret);
    try {
      const all = new Watch(api);
      const acme = new Watch(scoped);
      await all.until(() => all.events.length >= 1 && acme.events.length >= 1, "both streams");
      await admitted(mine, 10);
      await admitted(other, 10);
      const ids = (k: { key?: Key }): string => k.key?.id ?? "";
      await all.until(() => all.keyIds().has(ids(mine)) && all.keyIds().has(ids(other)), "both keys on the operator stream");
      await acme.until(() => acme.keyIds().has(ids(mine)), "acme's key on its stream");
      await delay(1200);
      expect([...acme.keyIds()]).to.deep.equal([ids(mine)]);
      all.cancel();
      acme.cancel();
    } finally {
      scoped.close();
    }
  });
});
