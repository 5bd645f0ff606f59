// Group budgets through the real sidecar (issue 19 item 2): CreateGroup with a Budget, Check
// holding against it and denying GROUP_BUDGET_EXHAUSTED (reason, HTTP status, message from the
// one table), Consume settling, ListGroups showing the use to operators only, bad budgets
// refused naming the field. LevelDB in a temp dir, gRPC on 127.0.0.1:0.
import { expect } from "chai";
import { status } from "@grpc/grpc-js";
import type { CreateKeyResponse, CreateTokenResponse, ListGroupsResponse } from "../../src/gen/aisa/v1/admin.js";
import { Reason, type CheckResponse, type ConsumeResponse } from "../../src/gen/aisa/v1/authorizer.js";
import { RefillPeriod, type Account, type Group } from "../../src/gen/aisa/v1/types.js";
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
