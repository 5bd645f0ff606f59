// The pure usage alerts (service/usage/alerts.ts): what one second's charges do to a key's
// quota level and an account's balance level, and the expiring-key alert.
import { expect } from "chai";
import type { AccountState, KeyState } from "../../src/domain/types.js";
import { accountBalanceStep, expiresSoon, expiringAlert, keyQuotaStep } from "../../src/service/usage/alerts.js";

const key = (quotaTotal: number, remaining: number) => ({ record: { id: "key_a", name: "a", quotaTotal, unlimited: false }, counters: { remaining } }) as unknown as KeyState;
const account = (credited: number, charged: number) => ({ record: { id: "acct" }, counters: { credited, charged, balance: credited - charged, reserved: 0 } }) as unknown as AccountState;

describe("usage alerts (pure)", () => {
  it("a key's first sight compares with where it was before this second's charges", () => {
    const s = keyQuotaStep("key_a", key(1000, 150), 400, undefined); // 450 → 850 used
    expect(s.alerts.map((a) => a.percent)).to.deep.equal([50, 80]);
    expect(s.alerts[0]!.message).to.equal("key key_a (a) has used 50% of its quota: 850 of 1,000 units");
    expect(s).to.deep.include({ level: 80, exhausted: false, ranOut: false });
  });

  it("later seconds compare with the level last seen; running out is said once", () => {
    const out = keyQuotaStep("key_a", key(1000, 0), 150, { level: 80, exhausted: false });
    expect(out.alerts.map((a) => a.percent)).to.deep.equal([100]);
    expect(out).to.deep.include({ level: 100, exhausted: true, ranOut: true });
    const again = keyQuotaStep("key_a", key(1000, -5), 5, { level: 100, exhausted: true });
    expect(again.alerts).to.deep.equal([]);
    expect(again.ranOut).to.equal(false);
  });

  it("an account's balance crosses its thresholds once", () => {
    const a = accountBalanceStep("acct", account(10_000, 8_000), 3_500, undefined); // 4,500 → 8,000
    expect(a.alerts.map((x) => x.percent)).to.deep.equal([50, 80]);
    expect(a.alerts[1]!.message).to.equal("account acct has used 80% of its credited balance: 8,000 of 10,000 units");
    expect(accountBalanceStep("acct", account(10_000, 8_100), 100, a.level).alerts).to.deep.equal([]);
  });

  it("expiring keys: within 24 h and not yet expired; the message rounds to hours", () => {
    const now = Date.UTC(2026, 11, 6, 0, 0, 0);
    expect(expiresSoon(null, now)).to.equal(false);
    expect(expiresSoon(now, now)).to.equal(false);
    expect(expiresSoon(now + 86_400_000, now)).to.equal(true);
    expect(expiresSoon(now + 86_400_001, now)).to.equal(false);
    expect(expiringAlert("key_a", now + 30 * 60_000, now).message).to.equal("key key_a expires in less than an hour (2026-12-06T00:30:00.000Z)");
    expect(expiringAlert("key_a", now + 5 * 3_600_000, now)).to.deep.include({ kind: "key_expiring", targetId: "key_a", percent: 0, expiresAt: now + 5 * 3_600_000 });
  });
});
