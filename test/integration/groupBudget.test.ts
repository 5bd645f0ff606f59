// Group budgets through the real sidecar (issue 19 item 2): CreateGroup with a Budget, Check
// holding against it and denying GROUP_BUDGET_EXHAUSTED (reason, HTTP status, message from the
// one table), Consume settling, ListGroups showing the use to operators only, bad budgets
// refused naming the field. LevelDB in a temp dir, gRPC on 127.0.0.1:0.
import { expect } from "chai";
import { status } from "@grpc/grpc-js";
import type { CreateKeyResponse, CreateTokenResponse, ListAuditResponse, ListGroupsResponse } from "../../src/gen/aisa/v1/admin.js";
import { Reason, type CheckResponse, type ConsumeResponse } from "../../src/gen/aisa/v1/authorizer.js";
import { RefillPeriod, type Account, type Group, type Key } from "../../src/gen/aisa/v1/types.js";
import { REASON_TABLE } from "../../src/policy/reasons.js";
import { call, expectGrpcError, removeDir, startTestSidecar, type TestSidecar } from "../helpers/sidecar.js";

describe("group budgets through the admin API and Check", function () {
  this.timeout(60_000);
  let s: TestSidecar;
  let acmeToken: string;
  const admin = <Res>(method: string, req: unknown, token?: string) => call<unknown, Res>(s.admin, method, req, s.meta(token));
  const check = (req: Record<string, unknown>) => call<unknown, CheckResponse>(s.authorizer, "check", req);
  const consume = (req: Record<string, unknown>) => call<unknown, ConsumeResponse>(s.authorizer, "consume", req);

  before(async () => {
    s = await startTestSidecar();
    await admin("createAccount", { id: "acme", name: "Acme", initialBalance: "100000000" });
    acmeToken = (await admin<CreateTokenResponse>("createToken", { name: "acme ops", accountId: "acme" })).secret;
    await admin("setPrice", { price: { model: "*", inputPerMillion: "0", outputPerMillion: "0", perRequest: "1" } });
  });
  after(async () => {
    await s.close();
    await removeDir(s.dir);
  });

  it("Check holds against the budget, denies GROUP_BUDGET_EXHAUSTED past it; Consume settles; ListGroups shows the use", async () => {
    const g = await admin<Group>("createGroup", { name: "capped", budget: { units: "1000", period: RefillPeriod.REFILL_PERIOD_DAILY, timezone: "Europe/Berlin" } });
    expect(g.budget).to.deep.include({ units: "1000", period: RefillPeriod.REFILL_PERIOD_DAILY, timezone: "Europe/Berlin" });
    expect(g.budgetResetsAt).to.be.instanceOf(Date);
    const k = await admin<CreateKeyResponse>("createKey", { spec: { name: "capped key", group: "capped", unlimited: true }, accountId: "acme" });
    const c1 = await check({ apiKey: k.secret, model: "m", estimatedUnits: "600" });
    expect(c1.allowed).to.equal(true);
    const c2 = await check({ apiKey: k.secret, model: "m", estimatedUnits: "600" });
    expect(c2).to.deep.include({ allowed: false, reason: Reason.REASON_GROUP_BUDGET_EXHAUSTED, httpStatus: 429, message: REASON_TABLE.GROUP_BUDGET_EXHAUSTED.message });
    await consume({ requestId: "gb-1", target: { $case: "reservationId", value: c1.reservationId }, model: "m", units: "500" });
    const listed = (await admin<ListGroupsResponse>("listGroups", {})).groups.find((x) => x.name === "capped")!;
    expect(listed).to.deep.include({ budgetSpent: "500", budgetReserved: "0" });
    expect((await check({ apiKey: k.secret, model: "m", estimatedUnits: "500" })).allowed).to.equal(true);
    expect((await check({ apiKey: k.secret, model: "m", estimatedUnits: "1" })).reason).to.equal(Reason.REASON_GROUP_BUDGET_EXHAUSTED);
    // An account token sees the cap of a group its keys use, not the use (it sums every account's keys).
    const mine = (await admin<ListGroupsResponse>("listGroups", {}, acmeToken)).groups.find((x) => x.name === "capped")!;
    expect(mine.budget!.units).to.equal("1000");
    expect(mine.budgetSpent).to.equal("0");
    expect(mine.budgetResetsAt).to.equal(undefined);
    // Raising the cap admits again at once; removing it lifts the cap.
    await admin("updateGroup", { name: "capped", group: { budget: { units: "5000", period: RefillPeriod.REFILL_PERIOD_DAILY, timezone: "Europe/Berlin" } }, updateMask: ["budget"] });
    expect((await check({ apiKey: k.secret, model: "m", estimatedUnits: "1000" })).allowed).to.equal(true);
    const removed = await admin<Group>("updateGroup", { name: "capped", group: {}, updateMask: ["budget"] });
    expect(removed.budget).to.equal(undefined);
  });

  it("a GROUP_BUDGET_EXHAUSTED deny says when the budget resets (its own zone): retry_after_ms, retry-after, error.limit.reset_seconds", async () => {
    const DAY = 86_400_000;
    const TOKYO = 9 * 3_600_000; // UTC+9, no DST
    const tokyoMidnight = (now: number) => Math.floor((now + TOKYO) / DAY) * DAY + DAY - TOKYO;
    await admin("createGroup", { name: "tokyo-cap", budget: { units: "3", period: RefillPeriod.REFILL_PERIOD_DAILY, timezone: "Asia/Tokyo" } });
    const k = await admin<CreateKeyResponse>("createKey", { spec: { name: "tokyo key", group: "tokyo-cap", unlimited: true }, accountId: "acme" });
    // gRPC Check: the estimate does not fit → deny with the ms to the next Tokyo midnight.
    const now = Date.now();
    const c = await check({ apiKey: k.secret, model: "m", estimatedUnits: "5" });
    expect(c.reason).to.equal(Reason.REASON_GROUP_BUDGET_EXHAUSTED);
    const want = tokyoMidnight(now) - now;
    expect(Number(c.limits!.retryAfterMs)).to.be.within(Math.max(1000, want - 5000), want + 5000);
    const g = (await admin<ListGroupsResponse>("listGroups", {})).groups.find((x) => x.name === "tokyo-cap")!;
    expect(g.budgetResetsAt!.toISOString(), "the same boundary ListGroups shows").to.equal(new Date(tokyoMidnight(Date.now())).toISOString());
    // Hold the whole budget, then the HTTP forward-auth (the Envoy deny) answers 429 with retry-after.
    expect((await check({ apiKey: k.secret, model: "m", estimatedUnits: "3" })).allowed).to.equal(true);
    const r = await fetch(`http://${s.httpAddress}/auth`, { headers: { authorization: `Bearer ${k.secret}`, "x-original-uri": "/v1/chat/completions", "x-original-method": "POST" } });
    const body = (await r.json()) as any;
    expect(r.status).to.equal(429);
    expect(r.headers.get("x-aisa-reason")).to.equal("GROUP_BUDGET_EXHAUSTED");
    const secs = Math.ceil(want / 1000);
    expect(body.error.limit).to.deep.include({ name: "group_budget", limit: null, remaining: null });
    expect(body.error.limit.reset_seconds).to.be.within(secs - 5, secs + 5);
    expect(r.headers.get("retry-after")).to.equal(String(body.error.limit.reset_seconds));
    expect(JSON.parse(r.headers.get("x-aisa-limit")!)).to.deep.equal(body.error.limit);
  });

  it("UpdateAccount: operator only (an account token and a read-only token get PERMISSION_DENIED), fields named, audited; a zone change keeps the quota left", async () => {
    await admin("createAccount", { id: "movers", name: "Movers", initialBalance: "1000" });
    const k = await admin<CreateKeyResponse>("createKey", { accountId: "movers", spec: { name: "daily", quota: "1000", refill: RefillPeriod.REFILL_PERIOD_DAILY } });
    await consume({ requestId: "ua-1", target: { $case: "keyId", value: k.key!.id }, model: "m", units: "250" });
    const before = await admin<Key>("getKey", { id: k.key!.id });
    expect(before.quota!.remaining).to.equal("750");
    // Tenants never move a zone (it decides when their keys refill): not their own, not another's.
    const moversToken = (await admin<CreateTokenResponse>("createToken", { name: "movers ops", accountId: "movers" })).secret;
    for (const [id, token] of [["movers", moversToken], ["movers", acmeToken], ["acme", acmeToken]] as const) {
      await expectGrpcError(admin("updateAccount", { id, timezone: "Asia/Tokyo", updateMask: ["timezone"] }, token), status.PERMISSION_DENIED);
    }
    const ro = (await admin<CreateTokenResponse>("createToken", { name: "viewer", readOnly: true })).secret;
    await expectGrpcError(admin("updateAccount", { id: "movers", name: "X", updateMask: ["name"] }, ro), status.PERMISSION_DENIED);
    expect((await admin<Account>("getAccount", { id: "movers" })).timezone).to.equal("UTC");
    // Bad input: the field is named; nothing changes.
    const bad: [Record<string, unknown>, RegExp][] = [
      [{ id: "movers", timezone: "Mars/Base", updateMask: ["timezone"] }, /^timezone: /],
      [{ id: "movers", timezone: "Europe/Berlin\u0000", updateMask: ["timezone"] }, /^timezone: /],
      [{ id: "movers", name: "", updateMask: ["name"] }, /^name: /],
      [{ id: "movers", name: "x".repeat(129), updateMask: ["name"] }, /^name: /],
      [{ id: "movers", name: "a\u001b[31mred", updateMask: ["name"] }, /^name: /],
      [{ id: "movers", name: "X", updateMask: [] }, /^update_mask: /],
      [{ id: "movers", name: "X", updateMask: ["balance"] }, /^update_mask\[0\]: /],
      [{ id: "", name: "X", updateMask: ["name"] }, /^id: /],
    ];
    for (const [req, field] of bad) expect((await expectGrpcError(admin("updateAccount", req), status.INVALID_ARGUMENT)).details).to.match(field);
    await expectGrpcError(admin("updateAccount", { id: "nobody", name: "X", updateMask: ["name"] }), status.NOT_FOUND);
    // The operator moves it: only the named field changes; the key keeps what it has left.
    const a = await admin<Account>("updateAccount", { id: "movers", name: "ignored", timezone: "asia/tokyo", updateMask: ["timezone"] });
    expect(a).to.deep.include({ id: "movers", name: "Movers", timezone: "Asia/Tokyo", balance: "750" });
    const after = await admin<Key>("getKey", { id: k.key!.id });
    expect(after.quota!.remaining, "no free refill, nothing re-counted").to.equal("750");
    expect(after.nextResetAt!.getUTCHours(), "the next refill at a Tokyo midnight").to.equal(15);
    expect(after.nextResetAt!.getTime() - Date.now()).to.be.within(0, 86_400_000);
    const renamed = await admin<Account>("updateAccount", { id: "movers", name: "Movers KK", updateMask: ["name"] });
    expect(renamed).to.deep.include({ name: "Movers KK", timezone: "Asia/Tokyo" });
    const audit = await admin<ListAuditResponse>("listAudit", { target: "movers", pageSize: 10 });
    const entries = audit.entries.filter((e) => e.action === "UpdateAccount");
    expect(entries).to.have.length(2);
    expect(JSON.parse(entries[1]!.afterJson)).to.deep.include({ timezone: "Asia/Tokyo" });
  });

  it("refuses bad budgets and zones naming the field; an account's zone is kept", async () => {
    const bad: [Record<string, unknown>, RegExp][] = [
      [{ units: "0", period: RefillPeriod.REFILL_PERIOD_MONTHLY }, /^budget\.units: /],
      [{ units: "10", period: RefillPeriod.REFILL_PERIOD_NONE }, /^budget\.period: /],
      [{ units: "10", period: RefillPeriod.REFILL_PERIOD_MONTHLY, anchor: 32 }, /^budget\.anchor: /],
      [{ units: "10", period: RefillPeriod.REFILL_PERIOD_WEEKLY, everyDays: 3 }, /^budget\.every_days: /],
      [{ units: "10", period: RefillPeriod.REFILL_PERIOD_DAILY, timezone: "Moon/Base" }, /^budget\.timezone: /],
    ];
    for (const [budget, field] of bad) {
      const e = await expectGrpcError(admin("createGroup", { name: "bad", budget }), status.INVALID_ARGUMENT);
      expect(e.details).to.match(field);
    }
    const a = await admin<Account>("createAccount", { id: "kyoto", name: "Kyoto", timezone: "asia/tokyo" });
    expect(a.timezone).to.equal("Asia/Tokyo");
    expect((await admin<Account>("getAccount", { id: "kyoto" })).timezone).to.equal("Asia/Tokyo");
    expect((await expectGrpcError(admin("createAccount", { id: "x1", name: "X", timezone: "Nowhere" }), status.INVALID_ARGUMENT)).details).to.match(/^timezone: /);
  });
});
