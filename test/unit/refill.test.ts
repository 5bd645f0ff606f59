// Refill period boundaries (UTC; ISO weeks start on Monday).
import { expect } from "chai";
import { periodStart } from "../../src/domain/refill.js";

describe("periodStart", () => {
  const cases: [string, "daily" | "weekly" | "monthly", string, string][] = [
    ["daily mid-day", "daily", "2026-11-27T15:30:00Z", "2026-11-27T00:00:00Z"],
    ["daily at midnight exactly", "daily", "2026-11-27T00:00:00Z", "2026-11-27T00:00:00Z"],
    ["weekly on a Friday → Monday", "weekly", "2026-11-27T15:30:00Z", "2026-11-23T00:00:00Z"],
    ["weekly on a Sunday → the Monday before", "weekly", "2026-11-29T23:59:59Z", "2026-11-23T00:00:00Z"],
    ["weekly on a Monday → itself", "weekly", "2026-11-30T00:00:01Z", "2026-11-30T00:00:00Z"],
    ["monthly", "monthly", "2026-11-27T15:30:00Z", "2026-11-01T00:00:00Z"],
    ["monthly across a year", "monthly", "2027-01-01T00:00:00Z", "2027-01-01T00:00:00Z"],
    ["monthly in a leap February", "monthly", "2028-02-29T12:00:00Z", "2028-02-01T00:00:00Z"],
  ];
  for (const [name, period, now, want] of cases) {
    it(name, () => {
      expect(new Date(periodStart(period, Date.parse(now))).toISOString()).to.equal(new Date(want).toISOString());
    });
  }
});
