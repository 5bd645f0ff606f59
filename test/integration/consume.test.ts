// aisa.v1 Authorizer Check + Consume end to end: exact charging, idempotency
// (also across a restart), settlement, overdraft, concurrency, bad input, and
// reconciliation of every key and account against the ledger.
import { expect } from "chai";
import { status } from "@grpc/grpc-js";
import type { CreateKeyResponse } from "../../src/gen/aisa/v1/admin.js";
import { Reason, type CheckResponse, type ConsumeResponse } from "../../src/gen/aisa/v1/authorizer.js";
import type { Account, Key } from "../../src/gen/aisa/v1/types.js";
import { LevelStore } from "../../src/store/level/levelStore.js";
import { call, expectGrpcError, removeDir, startTestSidecar, type TestSidecar } from "../helpers/sidecar.js";

/** Reconciles every key and account with the ledger, to the unit. Returns the problems. */
export async function reconcile(dir: string): Promise<{ problems: string[]; ledgerEntries: number }> {
  const store = new LevelStore({ dir });
  await store.open(Date.now());
  const problems: string[] = [];
  let ledgerEntries = 0;
  try {
    problems.push(...(await store.checkIntegrity()));
    const byKey = new Map<string, number>();
    const byAccount = new Map<string, number>();
    for await (const r of store.scanLedger()) {
      ledgerEntries++;
      byKey.set(r.keyId, (byKey.get(r.keyId) ?? 0) + r.units);
      byAccount.set(r.accountId, (byAccount.get(r.accountId) ?? 0) + r.units);
    }
    for await (const k of store.scanKeys()) {
      const charged = byKey.get(k.record.id) ?? 0;
      if (k.counters.used !== charged) problems.push(`key ${k.record.id}: used ${k.counters.used} != ledger ${charged}`);
      if (!k.record.unlimited) {
        const slot = store.index.slotOf(k.record.id);
        const credited = store.index.credited(slot);
        if (credited - charged !== k.counters.remaining) problems.push(`key ${k.record.id}: credited ${credited} - charged ${charged} != remaining ${k.counters.remaining}`);
      }
    }
    for (const a of store.listAccounts()) {
      const charged = byAccount.get(a.record.id) ?? 0;
      if (a.counters.charged !== charged) problems.push(`account ${a.record.id}: charged ${a.counters.charged} != ledger ${charged}`);
      if (a.counters.credited - charged !== a.counters.balance) problems.push(`account ${a.record.id}: credited - charged != balance`);
    }
  } finally {
    await store.close();
  }
  return { problems, ledgerEntries };
}

describe("aisa.v1 Authorizer: Check and Consume", function () {
  this.timeout(60_000);
  let s: TestSidecar;
  const admin = <Res>(method: string, req: unknown) => call<unknown, Res>(s.admin, method, req, s.meta());
  const check = (req: Record<string, unknown>) => call<unknown, CheckResponse>(s.authorizer, "check", req);
  const consume = (req: Record<string, unknown>) => call<unknown, ConsumeResponse>(s.authorizer, "consume", req);
  let rid = 0;
  const newId = () => `req-${Date.now()}-${++rid}`;

  let skew = 0;
  before(async () => {
    s = await startTestSidecar({ clock: () => Date.now() + skew });
    await admin("adjustBalance", { accountId: "default", delta: "100000000", reason: "seed" });
    // 1M input tokens cost 75000 units (0.15 USD), 1M output 300000 (0.60 USD).
    await admin("setPrice", { price: { model: "gpt-4o-mini", inputPerMillion: "75000", outputPerMillion: "300000", perRequest: "0" } });
    await admin("createGroup", { name: "premium", priceRatio: "1.5" });
  });
  after(async () => {
    await s.close();
    await removeDir(s.dir);
  });

  it("Check admits with a reservation; Consume charges exactly and settles it", async () => {
    const k = await admin<CreateKeyResponse>("createKey", { spec: { name: "exact", quota: "100000" } });
    const c = await check({ apiKey: k.secret, model: "gpt-4o-mini", clientIp: "203.0.113.7", maxTokens: "100" });
    expect(c.allowed).to.equal(true);
    expect(c.reason).to.equal(Reason.REASON_ALLOWED);
    expect(c.keyId).to.equal(k.key!.id);
    expect(c.reservationId).to.match(/^rsv_/);
    // estimate: 1000 × 0.075 + 100 × 0.3 = 75 + 30 = 105 units held
    expect(c.reservedUnits).to.equal("105");
    expect(c.keyRemaining).to.equal(String(100000 - 105));
    const r = await consume({ requestId: newId(), target: { $case: "reservationId", value: c.reservationId }, model: "gpt-4o-mini", inputTokens: "1234", outputTokens: "567" });
    // 1234 × 0.075 + 567 × 0.3 = 92.55 + 170.1 = 262.65 → 263 (rounded up once)
    expect(r.unitsCharged).to.equal("263");
    expect(r.replayed).to.equal(false);
    expect(r.keyRemaining).to.equal(String(100000 - 263));
    const key = await admin<Key>("getKey", { id: k.key!.id });
    expect(key.quota).to.deep.include({ remaining: String(100000 - 263), used: "263", reserved: "0" });
  });

  it("applies the group's price ratio", async () => {
    const k = await admin<CreateKeyResponse>("createKey", { spec: { name: "premium", unlimited: true, group: "premium" } });
    const r = await consume({ requestId: newId(), target: { $case: "keyId", value: k.key!.id }, model: "gpt-4o-mini", inputTokens: "1000000", outputTokens: "0" });
    expect(r.unitsCharged).to.equal("112500"); // 75000 × 1.5
    expect(r.keyUnlimited).to.equal(true);
  });

  it("a retry with the same request id returns the first answer and charges nothing more", async () => {
    const k = await admin<CreateKeyResponse>("createKey", { spec: { name: "idem", quota: "10000" } });
    const id = newId();
    const first = await consume({ requestId: id, target: { $case: "apiKey", value: k.secret }, units: "100" });
    const again = await consume({ requestId: id, target: { $case: "apiKey", value: k.secret }, units: "100" });
    expect(again.replayed).to.equal(true);
    // The same id with other usage is another request, not a retry: an error, nothing charged.
    const other = await expectGrpcError(consume({ requestId: id, target: { $case: "apiKey", value: k.secret }, units: "999" }), status.ALREADY_EXISTS);
    expect(other.details).to.match(/^request_id: /);
    expect(again.unitsCharged).to.equal(first.unitsCharged);
    expect(again.keyRemaining).to.equal(first.keyRemaining);
    // Concurrent duplicates charge once too.
    const id2 = newId();
    const dup = await Promise.all(Array.from({ length: 20 }, () => consume({ requestId: id2, target: { $case: "keyId", value: k.key!.id }, units: "10" })));
    expect(dup.filter((d) => !d.replayed)).to.have.length(1);
    const key = await admin<Key>("getKey", { id: k.key!.id });
    expect(key.quota!.used).to.equal("110");
  });

  it("charges an admitted request even past zero, and the next Check denies", async () => {
    const acct = await admin<Account>("createAccount", { id: "tiny", name: "Tiny", initialBalance: "1000" });
    expect(acct.balance).to.equal("1000");
    const tok = await admin<{ secret: string }>("createToken", { name: "tiny", accountId: "tiny" });
    const k = await call<unknown, CreateKeyResponse>(s.admin, "createKey", { spec: { name: "overdraft", quota: "500" } }, s.meta(tok.secret));
    const c = await check({ apiKey: k.secret, model: "gpt-4o-mini", maxTokens: "10" });
    expect(c.allowed).to.equal(true);
    const r = await consume({ requestId: newId(), target: { $case: "reservationId", value: c.reservationId }, units: "800" });
    expect(r.unitsCharged).to.equal("800");
    expect(r.keyRemaining).to.equal("-300");
    expect(r.accountBalance).to.equal("200");
    const d = await check({ apiKey: k.secret, model: "gpt-4o-mini", maxTokens: "10" });
    expect(d.allowed).to.equal(false);
    expect(d.reason).to.equal(Reason.REASON_KEY_QUOTA_EXHAUSTED);
    expect(d.httpStatus).to.equal(429);
    // The account side: a second key of the same account, unlimited, hits the balance.
    const k2 = await call<unknown, CreateKeyResponse>(s.admin, "createKey", { spec: { name: "acct", unlimited: true } }, s.meta(tok.secret));
    await consume({ requestId: newId(), target: { $case: "keyId", value: k2.key!.id }, units: "250" });
    const d2 = await check({ apiKey: k2.secret, model: "gpt-4o-mini", maxTokens: "10" });
    expect(d2.reason).to.equal(Reason.REASON_ACCOUNT_BALANCE_EXHAUSTED);
    expect(d2.httpStatus).to.equal(402);
  });

  it("a Consume whose reservation expired still charges its key", async () => {
    const k = await admin<CreateKeyResponse>("createKey", { spec: { name: "late", quota: "1000" } });
    const c = await check({ apiKey: k.secret, estimatedUnits: "10" });
    expect(c.allowed).to.equal(true);
    s.store.release(c.reservationId); // as the TTL sweep would
    const r = await consume({ requestId: newId(), target: { $case: "reservationId", value: c.reservationId }, units: "7" });
    expect(r.keyId).to.equal(k.key!.id);
    expect(r.keyRemaining).to.equal("993");
  });

  describe("bad input charges nothing", () => {
    let keyId: string;
    before(async () => {
      keyId = (await admin<CreateKeyResponse>("createKey", { spec: { name: "bad-input", quota: "1000" } })).key!.id;
    });
    const cases: [string, Record<string, unknown>, status, string][] = [
      ["missing request id", { requestId: "", units: "5" }, status.INVALID_ARGUMENT, "request_id"],
      ["negative tokens", { inputTokens: "-5", model: "gpt-4o-mini" }, status.INVALID_ARGUMENT, "input_tokens"],
      ["absurd tokens", { outputTokens: "100000000000", model: "gpt-4o-mini" }, status.INVALID_ARGUMENT, "output_tokens"],
      ["no target", { target: undefined, units: "5" }, status.INVALID_ARGUMENT, "target"],
      ["unknown reservation", { target: { $case: "reservationId", value: "rsv_nope" }, units: "5" }, status.NOT_FOUND, "reservation"],
      ["unknown key", { target: { $case: "keyId", value: "key_nope" }, units: "5" }, status.NOT_FOUND, "key"],
      ["unknown secret", { target: { $case: "apiKey", value: "sk-nope" }, units: "5" }, status.NOT_FOUND, "key"],
      ["unpriced model", { model: "no-such-model", inputTokens: "5" }, status.FAILED_PRECONDITION, "no price"],
      ["no model and no units", { inputTokens: "5" }, status.INVALID_ARGUMENT, "model"],
    ];
    for (const [name, over, code, needle] of cases) {
      it(`${name} → ${status[code]}`, async () => {
        const before = await admin<Key>("getKey", { id: keyId });
        const e = await expectGrpcError(consume({ requestId: newId(), target: { $case: "keyId", value: keyId }, ...over }), code);
        expect(e.details).to.include(needle);
        const after = await admin<Key>("getKey", { id: keyId });
        expect(after.quota!.used).to.equal(before.quota!.used);
      });
    }
  });

  it("64 concurrent Consume streams on one key and account charge the exact sum", async () => {
    const k = await admin<CreateKeyResponse>("createKey", { spec: { name: "parallel", quota: "100000000" } });
    const before = await admin<Account>("getAccount", { id: "default" });
    let expected = 0;
    await Promise.all(
      Array.from({ length: 64 }, async (_, w) => {
        for (let i = 0; i < 20; i++) {
          const units = 1 + ((w * 31 + i * 7) % 97);
          expected += units;
          await consume({ requestId: `par-${w}-${i}`, target: { $case: "keyId", value: k.key!.id }, units: String(units) });
        }
      }),
    );
    const key = await admin<Key>("getKey", { id: k.key!.id });
    expect(key.quota!.used).to.equal(String(expected));
    expect(key.quota!.remaining).to.equal(String(100000000 - expected));
    const after = await admin<Account>("getAccount", { id: "default" });
    expect(Number(before.balance) - Number(after.balance)).to.equal(expected);
  });

  it("64 concurrent Check→Consume clients never admit past the quota, with exact totals", async () => {
    const k = await admin<CreateKeyResponse>("createKey", { spec: { name: "race", quota: "1000" } });
    let admitted = 0;
    let charged = 0;
    await Promise.all(
      Array.from({ length: 64 }, async (_, w) => {
        for (let i = 0; i < 5; i++) {
          const c = await check({ apiKey: k.secret, estimatedUnits: "10" });
          if (!c.allowed) {
            expect(c.reason).to.equal(Reason.REASON_KEY_QUOTA_EXHAUSTED);
            continue;
          }
          admitted++;
          await consume({ requestId: `race-${w}-${i}`, target: { $case: "reservationId", value: c.reservationId }, units: "10" });
          charged += 10;
        }
      }),
    );
    expect(admitted).to.equal(100);
    const key = await admin<Key>("getKey", { id: k.key!.id });
    expect(key.quota!.used).to.equal(String(charged));
    expect(key.quota!.remaining).to.equal("0");
  });

  it("refills a key's quota at the UTC period boundary without losing charges", async () => {
    const k = await admin<CreateKeyResponse>("createKey", { spec: { name: "refill", quota: "100", refill: 2 /* DAILY */ } });
    await consume({ requestId: newId(), target: { $case: "keyId", value: k.key!.id }, units: "80" });
    expect((await admin<Key>("getKey", { id: k.key!.id })).quota!.remaining).to.equal("20");
    // Move the sidecar's clock past the next UTC midnight; the once-a-second sweep refills.
    const now = Date.now();
    skew = Date.UTC(new Date(now).getUTCFullYear(), new Date(now).getUTCMonth(), new Date(now).getUTCDate() + 1, 0, 0, 5) - now;
    try {
      const end = Date.now() + 5000;
      let key = await admin<Key>("getKey", { id: k.key!.id });
      while (key.quota!.remaining !== "100" && Date.now() < end) {
        await new Promise((r) => setTimeout(r, 200));
        key = await admin<Key>("getKey", { id: k.key!.id });
      }
      expect(key.quota).to.deep.include({ total: "100", remaining: "100", used: "80" });
      expect(key.refilledAt).to.not.equal(undefined);
      // A charge after the boundary counts against the new period.
      const r = await consume({ requestId: newId(), target: { $case: "keyId", value: k.key!.id }, units: "30" });
      expect(r.keyRemaining).to.equal("70");
    } finally {
      skew = 0;
    }
  });

  it("idempotency holds across a restart, and everything reconciles to the unit", async () => {
    const k = await admin<CreateKeyResponse>("createKey", { spec: { name: "restart", quota: "5000" } });
    const first = await consume({ requestId: "restart-1", target: { $case: "keyId", value: k.key!.id }, units: "123" });
    const dir = s.dir;
    await s.close();
    const rec = await reconcile(dir);
    expect(rec.problems).to.deep.equal([]);
    expect(rec.ledgerEntries).to.be.greaterThan(1000);
    s = await startTestSidecar({ dataDir: dir, clock: () => Date.now() + skew });
    const again = await consume({ requestId: "restart-1", target: { $case: "keyId", value: k.key!.id }, units: "123" });
    expect(again.replayed).to.equal(true);
    expect(again.unitsCharged).to.equal(first.unitsCharged);
    const key = await admin<Key>("getKey", { id: k.key!.id });
    expect(key.quota!.used).to.equal("123");
  });
});
