// Billing at the edges: a key deleted (or rotated) while its request is in flight, request
// ids reused across keys and accounts, and counters near 2^53. A real sidecar (LevelDB in a
// temp dir, gRPC on 127.0.0.1:0), restarted on the same data dir where it matters.
import { expect } from "chai";
import { status } from "@grpc/grpc-js";
import type { CreateKeyResponse, CreateTokenResponse } from "../../src/gen/aisa/v1/admin.js";
import type { CheckResponse, ConsumeResponse } from "../../src/gen/aisa/v1/authorizer.js";
import type { Account, Key } from "../../src/gen/aisa/v1/types.js";
import { LevelStore } from "../../src/store/level/levelStore.js";
import { call, expectGrpcError, removeDir, startTestSidecar, tempDir, type TestSidecar } from "../helpers/sidecar.js";

describe("billing edges: deleted keys, request id scope, 2^53", function () {
  this.timeout(60_000);
  let s: TestSidecar;
  let dir: string;
  let acmeToken: string;
  const admin = <Res>(method: string, req: unknown, token?: string) => call<unknown, Res>(s.admin, method, req, s.meta(token));
  const check = (req: Record<string, unknown>) => call<unknown, CheckResponse>(s.authorizer, "check", req);
  const consume = (req: Record<string, unknown>) => call<unknown, ConsumeResponse>(s.authorizer, "consume", req);
  const balance = async (id: string) => Number((await admin<Account>("getAccount", { id })).balance);
  let n = 0;
  const rid = (p: string) => `${p}-${++n}`;
  // 1000 input + 500 output tokens at 75000 / 300000 units per 1M: 75 + 150 = 225 units.
  const usage = { model: "gpt-4o-mini", inputTokens: "1000", outputTokens: "500" };
  const COST = 225;

  const start = async () => {
    s = await startTestSidecar({ dataDir: dir });
  };
  before(async () => {
    dir = await tempDir();
    await start();
    await admin("setPrice", { price: { model: "gpt-4o-mini", inputPerMillion: "75000", outputPerMillion: "300000" } });
    for (const id of ["acme", "beta"]) await admin("createAccount", { id, name: id, initialBalance: "100000000" });
    acmeToken = (await admin<CreateTokenResponse>("createToken", { name: "acme ops", accountId: "acme" })).secret;
  });
  after(async () => {
    await s.close();
    await removeDir(dir);
  });

  /** Every account reconciles with the ledger, to the unit. */
  async function reconcileAccounts(): Promise<string[]> {
    await s.close();
    const store = new LevelStore({ dir });
    await store.open(Date.now());
    const problems: string[] = [];
    try {
      const byAccount = new Map<string, number>();
      for await (const r of store.scanLedger()) byAccount.set(r.accountId, (byAccount.get(r.accountId) ?? 0) + r.units);
      for (const a of store.listAccounts()) {
        const charged = byAccount.get(a.record.id) ?? 0;
        if (a.counters.charged !== charged) problems.push(`account ${a.record.id}: charged ${a.counters.charged} != ledger ${charged}`);
        if (a.counters.credited - charged !== a.counters.balance) problems.push(`account ${a.record.id}: credited - charged != balance`);
      }
      problems.push(...(await store.checkIntegrity()));
    } finally {
      await store.close();
    }
    await start();
    return problems;
  }

  describe("a key deleted or rotated while its request is in flight (finding 3)", () => {
    const admitted = async (name: string) => {
      const k = await admin<CreateKeyResponse>("createKey", { spec: { name, quota: "1000000" } }, acmeToken);
      const c = await check({ apiKey: k.secret, model: "gpt-4o-mini", maxTokens: "500", clientIp: "203.0.113.7" });
      expect(c.allowed, name).to.equal(true);
      return { k, c };
    };

    for (const by of ["reservation id", "key id"] as const) {
      it(`deleted by the account's own token, then Consume by ${by}: charged to the account and the ledger`, async () => {
        const { k, c } = await admitted(`deleted-${by}`);
        await admin("deleteKeys", { ids: [k.key!.id] }, acmeToken);
        const before = await balance("acme");
        const target = by === "key id" ? { $case: "keyId", value: k.key!.id } : { $case: "reservationId", value: c.reservationId };
        const id = rid("del");
        const r = await consume({ requestId: id, target, ...usage });
        expect(r).to.include({ unitsCharged: String(COST), keyId: k.key!.id, replayed: false, keyRemaining: "0" });
        expect(await balance("acme")).to.equal(before - COST);
        expect(Number(r.accountBalance)).to.equal(before - COST);
        // A retry replays it, charging nothing more.
        expect((await consume({ requestId: id, target, ...usage })).replayed).to.equal(true);
        expect(await balance("acme")).to.equal(before - COST);
      });
    }

    it("64 admitted requests, the key deleted while their Consumes run: every one charged once, to the account; accounts reconcile", async () => {
      const k = await admin<CreateKeyResponse>("createKey", { spec: { name: "mid-flight", quota: "100000000" } }, acmeToken);
      const checks = await Promise.all(Array.from({ length: 64 }, () => check({ apiKey: k.secret, model: "gpt-4o-mini", maxTokens: "500" })));
      expect(checks.every((c) => c.allowed)).to.equal(true);
      const before = await balance("acme");
      const consumes = checks.map((c, i) => consume({ requestId: rid("mid"), target: i % 2 ? { $case: "reservationId", value: c.reservationId } : { $case: "keyId", value: k.key!.id }, ...usage }));
      const del = admin("deleteKeys", { ids: [k.key!.id] }, acmeToken);
      const results = await Promise.allSettled([...consumes, del]);
      const failed = results.filter((r) => r.status === "rejected").map((r) => String((r as PromiseRejectedResult).reason));
      expect(failed).to.deep.equal([]);
      expect(await balance("acme")).to.equal(before - 64 * COST);
      console.log(`      (64 Consumes racing the delete: ${results.length - 1} charged, ${64 * COST} units to the account)`);
      expect(await reconcileAccounts()).to.deep.equal([]);
    });

    it("a deleted key's secret no longer names anything: Consume by api_key is NOT_FOUND (by reservation or key id it is charged)", async () => {
      const { k } = await admitted("deleted-secret");
      await admin("deleteKeys", { ids: [k.key!.id] });
      await expectGrpcError(consume({ requestId: rid("del"), target: { $case: "apiKey", value: k.secret }, ...usage }), status.NOT_FOUND);
      await expectGrpcError(consume({ requestId: rid("del"), target: { $case: "keyId", value: "key_neverexisted" }, ...usage }), status.NOT_FOUND);
    });

    it("rotated without grace: Consume by the reservation id charges the key as before", async () => {
      const { k, c } = await admitted("rotated");
      await admin("rotateKey", { id: k.key!.id, graceSeconds: "0" }, acmeToken);
      const r = await consume({ requestId: rid("rot"), target: { $case: "reservationId", value: c.reservationId }, ...usage });
      expect(r).to.include({ unitsCharged: String(COST), replayed: false });
      expect((await admin<Key>("getKey", { id: k.key!.id })).quota!.used).to.equal(String(COST));
    });

    it("after a restart, a deleted key's reservation (now expired) is still charged to the account, and accounts reconcile with the ledger", async () => {
      const { k, c } = await admitted("deleted-restart");
      await admin("deleteKeys", { ids: [k.key!.id] }, acmeToken);
      await s.close();
      await start();
      const before = await balance("acme");
      const r = await consume({ requestId: rid("del"), target: { $case: "reservationId", value: c.reservationId }, ...usage });
      expect(r.unitsCharged).to.equal(String(COST));
      expect(await balance("acme")).to.equal(before - COST);
      expect(await reconcileAccounts()).to.deep.equal([]);
    });
  });

  describe("request_id reused for another request (finding 5)", () => {
    let a: CreateKeyResponse;
    let a2: CreateKeyResponse;
    let b: CreateKeyResponse;
    before(async () => {
      a = await admin<CreateKeyResponse>("createKey", { spec: { name: "acme key", quota: "1000000" }, accountId: "acme" });
      a2 = await admin<CreateKeyResponse>("createKey", { spec: { name: "acme key 2", quota: "1000000" }, accountId: "acme" });
      b = await admin<CreateKeyResponse>("createKey", { spec: { name: "beta key", quota: "1000000" }, accountId: "beta" });
    });
    const byKey = (k: CreateKeyResponse, id: string, more: Record<string, unknown> = {}) => consume({ requestId: id, target: { $case: "keyId", value: k.key!.id }, ...usage, ...more });

    it("another account's key: ALREADY_EXISTS naming request_id, revealing nothing of the first, charging nothing", async () => {
      const first = await byKey(a, "collide-1");
      const betaBefore = await balance("beta");
      const e = await expectGrpcError(byKey(b, "collide-1"), status.ALREADY_EXISTS);
      expect(e.details).to.match(/^request_id: "collide-1"/);
      for (const secret of [a.key!.id, first.keyRemaining, first.accountBalance]) expect(e.details).to.not.include(secret);
      expect(await balance("beta")).to.equal(betaBefore);
      // The true retry still replays.
      expect(await byKey(a, "collide-1")).to.deep.include({ replayed: true, keyId: a.key!.id, unitsCharged: first.unitsCharged });
    });

    const others: { name: string; run: (id: string) => Promise<unknown> }[] = [
      { name: "another key of the same account", run: (id) => byKey(a2, id) },
      { name: "other token counts", run: (id) => byKey(a, id, { outputTokens: "501" }) },
      { name: "another model", run: (id) => byKey(a, id, { model: "gpt-4o" }) },
      { name: "explicit units that differ", run: (id) => byKey(a, id, { units: "1" }) },
    ];
    for (const o of others) {
      it(`${o.name}: ALREADY_EXISTS, nothing charged`, async () => {
        const id = rid("clash");
        await byKey(a, id);
        const before = await balance("acme");
        await expectGrpcError(o.run(id) as Promise<unknown>, status.ALREADY_EXISTS);
        expect(await balance("acme")).to.equal(before);
      });
    }

    it("another reservation: ALREADY_EXISTS", async () => {
      const c1 = await check({ apiKey: a.secret, model: "gpt-4o-mini", maxTokens: "500" });
      const c2 = await check({ apiKey: a.secret, model: "gpt-4o-mini", maxTokens: "500" });
      const id = rid("rsv");
      await consume({ requestId: id, target: { $case: "reservationId", value: c1.reservationId }, ...usage });
      await expectGrpcError(consume({ requestId: id, target: { $case: "reservationId", value: c2.reservationId }, ...usage }), status.ALREADY_EXISTS);
      expect((await consume({ requestId: id, target: { $case: "reservationId", value: c1.reservationId }, ...usage })).replayed).to.equal(true);
    });

    it("concurrently on two accounts' keys: one is charged, the other gets ALREADY_EXISTS", async () => {
      const id = rid("race");
      const before = (await balance("acme")) + (await balance("beta"));
      const results = await Promise.allSettled([byKey(a, id), byKey(b, id)]);
      expect(results.filter((r) => r.status === "fulfilled")).to.have.length(1);
      const rejected = results.filter((r): r is PromiseRejectedResult => r.status === "rejected");
      expect(rejected.map((r) => (r.reason as { code: number }).code)).to.deep.equal([status.ALREADY_EXISTS]);
      expect((await balance("acme")) + (await balance("beta"))).to.equal(before - COST);
    });
  });
  describe("amounts near 2^53 (finding 13)", () => {
    const MAX = Number.MAX_SAFE_INTEGER; // 9007199254740991
    const BIG = 999_999_999_999_999; // the largest explicit units of one Consume is 10^15

    it("a credit or debit that would take a balance past 2^53 − 1 is INVALID_ARGUMENT naming delta, and changes nothing", async () => {
      await admin("createAccount", { id: "rich", name: "rich", initialBalance: String(MAX - 10) });
      const e = await expectGrpcError(admin("adjustBalance", { accountId: "rich", delta: "11", reason: "too much" }), status.INVALID_ARGUMENT);
      expect(e.details).to.match(/^delta: /);
      expect(await balance("rich")).to.equal(MAX - 10);
      expect(await balance("rich")).to.equal(MAX - 10);
      expect(Number((await admin<Account>("adjustBalance", { accountId: "rich", delta: "10", reason: "to the limit" })).balance)).to.equal(MAX);
      await admin("createAccount", { id: "poor", name: "poor" });
      await admin("adjustBalance", { accountId: "poor", delta: String(-MAX), reason: "to the limit" });
      const d = await expectGrpcError(admin("adjustBalance", { accountId: "poor", delta: "-1", reason: "past it" }), status.INVALID_ARGUMENT);
      expect(d.details).to.match(/^delta: /);
      expect(await balance("poor")).to.equal(-MAX);
    });

    it("a Consume that would take charged or used past 2^53 − 1 is INVALID_ARGUMENT naming units; every answer adds up", async () => {
      await admin("createAccount", { id: "whale", name: "whale", initialBalance: String(MAX) });
      const k = await admin<CreateKeyResponse>("createKey", { spec: { name: "whale key", unlimited: true }, accountId: "whale" });
      let sum = 0;
      for (let i = 0; i < 9; i++) {
        const r = await consume({ requestId: rid("whale"), target: { $case: "keyId", value: k.key!.id }, units: String(BIG) });
        sum += BIG;
        expect(Number(r.accountBalance)).to.equal(MAX - sum);
      }
      const e = await expectGrpcError(consume({ requestId: rid("whale"), target: { $case: "keyId", value: k.key!.id }, units: String(BIG) }), status.INVALID_ARGUMENT);
      expect(e.details).to.match(/^units: /);
      const a = await admin<Account>("getAccount", { id: "whale" });
      expect(a).to.deep.include({ charged: String(sum), balance: String(MAX - sum), credited: String(MAX) });
      expect((await admin<Key>("getKey", { id: k.key!.id })).quota!.used).to.equal(String(sum));
      // A quota that would make used + remaining pass 2^53 − 1 is refused too, naming spec.quota.
      const q = await expectGrpcError(admin("updateKey", { id: k.key!.id, spec: { quota: String(BIG) }, updateMask: ["quota", "unlimited"] }), status.INVALID_ARGUMENT);
      expect(q.details).to.match(/^spec\.quota: /);
      expect((await admin<Key>("getKey", { id: k.key!.id })).quota!.unlimited).to.equal(true);
      expect(await reconcileAccounts()).to.deep.equal([]);
    });

    it("SetPrice refuses a price whose largest charge would reach 2^53 − 1, naming price", async () => {
      const e = await expectGrpcError(admin("setPrice", { price: { model: "absurd", inputPerMillion: "1", outputPerMillion: "100000000000" } }), status.INVALID_ARGUMENT);
      expect(e.details).to.match(/^price: /);
      await admin("setPrice", { price: { model: "dear", inputPerMillion: "1", outputPerMillion: "10000000000" } });
      const prices = await admin<{ prices: { model: string }[] }>("listPrices", {});
      expect(prices.prices.map((p) => p.model)).to.include("dear").and.not.include("absurd");
    });
  });
});
