// Period boundaries: UTC defaults (ISO weeks start on Monday), zones, anchors, DST, month ends, leap day.
import { expect } from "chai";
import { periodStart, canonicalTimeZone, civilDay, dayStart, DAY_MS, nextBoundary, periodBounds, periodSpec, refillDue, trackFrom, zoneOffsetMs, type PeriodSpec } from "../../src/domain/refill.js";

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

const iso = (t: number) => new Date(t).toISOString();
const at = (s: string) => Date.parse(s);
const dayNo = (s: string) => Math.floor(Date.parse(`${s}T00:00:00Z`) / DAY_MS);

function bounds(p: PeriodSpec, tz: string, now: string): [string, string] {
  const [a, b] = periodBounds(p, tz, at(now));
  return [iso(a), iso(b)];
}

describe("periods in a time zone, with anchors (issue 19 item 1)", () => {
  it("knows zones through Intl and refuses unknown ones", () => {
    expect(canonicalTimeZone("UTC")).to.equal("UTC");
    expect(canonicalTimeZone("Europe/Berlin")).to.equal("Europe/Berlin");
    expect(canonicalTimeZone("Mars/Olympus")).to.equal(null);
    expect(canonicalTimeZone("")).to.equal(null);
    expect(zoneOffsetMs("Asia/Kolkata", at("2026-06-01T00:00:00Z"))).to.equal(5.5 * 3600_000);
    expect(zoneOffsetMs("America/New_York", at("2026-01-15T12:00:00.789Z"))).to.equal(-5 * 3600_000);
  });

  it("daily in a zone starts at local midnight", () => {
    expect(bounds(periodSpec("daily"), "Asia/Tokyo", "2026-03-10T16:00:00Z")).to.deep.equal(["2026-03-10T15:00:00.000Z", "2026-03-11T15:00:00.000Z"]);
    expect(bounds(periodSpec("daily"), "Asia/Tokyo", "2026-03-10T14:59:59Z")).to.deep.equal(["2026-03-09T15:00:00.000Z", "2026-03-10T15:00:00.000Z"]);
  });

  it("a DST spring-forward day lasts 23 hours and a fall-back day 25 (America/New_York)", () => {
    expect(bounds(periodSpec("daily"), "America/New_York", "2026-03-08T12:00:00Z")).to.deep.equal(["2026-03-08T05:00:00.000Z", "2026-03-09T04:00:00.000Z"]);
    expect(bounds(periodSpec("daily"), "America/New_York", "2026-11-01T12:00:00Z")).to.deep.equal(["2026-11-01T04:00:00.000Z", "2026-11-02T05:00:00.000Z"]);
    // The hour that repeats (01:00–02:00 local, twice) belongs to that one day.
    expect(bounds(periodSpec("daily"), "America/New_York", "2026-11-01T06:30:00Z")[0]).to.equal("2026-11-01T04:00:00.000Z");
  });

  it("a day whose midnight DST skips starts when the clocks jump (America/Santiago, Sept 2026)", () => {
    // Chile springs forward at 24:00 → 01:00 on the first Sunday of September: 2026-09-06 has no 00:00.
    const start = dayStart("America/Santiago", dayNo("2026-09-06"));
    expect(civilDay("America/Santiago", start)).to.equal(dayNo("2026-09-06"));
    expect(civilDay("America/Santiago", start - 1)).to.equal(dayNo("2026-09-05"));
    expect(iso(start)).to.equal("2026-09-06T04:00:00.000Z");
  });

  it("weekly on a given weekday in a zone across a DST change", () => {
    // Week from Sunday in Europe/Berlin; Berlin leaves summer time on 2026-10-25 (a Sunday).
    const p = periodSpec("weekly", 1, 7);
    expect(bounds(p, "Europe/Berlin", "2026-10-28T12:00:00Z")).to.deep.equal(["2026-10-24T22:00:00.000Z", "2026-10-31T23:00:00.000Z"]);
    expect(bounds(periodSpec("weekly"), "UTC", "2026-11-29T23:59:59Z")[0]).to.equal("2026-11-23T00:00:00.000Z");
  });

  it("monthly with an anchor: on day 15, before and after it", () => {
    const p = periodSpec("monthly", 1, 15);
    expect(bounds(p, "UTC", "2026-03-14T23:59:59Z")).to.deep.equal(["2026-02-15T00:00:00.000Z", "2026-03-15T00:00:00.000Z"]);
    expect(bounds(p, "UTC", "2026-03-15T00:00:00Z")).to.deep.equal(["2026-03-15T00:00:00.000Z", "2026-04-15T00:00:00.000Z"]);
    expect(bounds(p, "UTC", "2026-12-20T00:00:00Z")).to.deep.equal(["2026-12-15T00:00:00.000Z", "2027-01-15T00:00:00.000Z"]);
    expect(bounds(p, "UTC", "2027-01-03T00:00:00Z")).to.deep.equal(["2026-12-15T00:00:00.000Z", "2027-01-15T00:00:00.000Z"]);
  });

  it("monthly on day 31 clamps to short months, and on day 29/30 to February (leap and not)", () => {
    const p31 = periodSpec("monthly", 1, 31);
    expect(bounds(p31, "UTC", "2026-02-10T00:00:00Z")).to.deep.equal(["2026-01-31T00:00:00.000Z", "2026-02-28T00:00:00.000Z"]);
    expect(bounds(p31, "UTC", "2026-03-01T00:00:00Z")).to.deep.equal(["2026-02-28T00:00:00.000Z", "2026-03-31T00:00:00.000Z"]);
    expect(bounds(p31, "UTC", "2026-04-30T10:00:00Z")).to.deep.equal(["2026-04-30T00:00:00.000Z", "2026-05-31T00:00:00.000Z"]);
    const p30 = periodSpec("monthly", 1, 30);
    expect(bounds(p30, "UTC", "2028-02-29T12:00:00Z")).to.deep.equal(["2028-02-29T00:00:00.000Z", "2028-03-30T00:00:00.000Z"]);
    expect(bounds(p30, "UTC", "2028-02-28T12:00:00Z")).to.deep.equal(["2028-01-30T00:00:00.000Z", "2028-02-29T00:00:00.000Z"]);
    expect(bounds(periodSpec("monthly", 1, 29), "UTC", "2027-03-01T00:00:00Z")).to.deep.equal(["2027-02-28T00:00:00.000Z", "2027-03-29T00:00:00.000Z"]);
    // A leap day under the default anchor is just a day of February.
    expect(bounds(periodSpec("monthly"), "UTC", "2028-02-29T23:59:59Z")).to.deep.equal(["2028-02-01T00:00:00.000Z", "2028-03-01T00:00:00.000Z"]);
  });

  it("monthly in a zone: the boundary is local midnight of the anchor day (Australia/Sydney)", () => {
    expect(bounds(periodSpec("monthly", 1, 15), "Australia/Sydney", "2026-04-14T14:30:00Z")).to.deep.equal(["2026-04-14T14:00:00.000Z", "2026-05-14T14:00:00.000Z"]);
    // Sydney leaves DST on 2026-04-05: March 15 is +11, April 15 is +10.
    expect(bounds(periodSpec("monthly", 1, 15), "Australia/Sydney", "2026-04-01T00:00:00Z")).to.deep.equal(["2026-03-14T13:00:00.000Z", "2026-04-14T14:00:00.000Z"]);
  });

  it("every N days counts from the anchor date, across a leap day", () => {
    const p = periodSpec("daily", 14, dayNo("2028-02-20"));
    expect(bounds(p, "UTC", "2028-02-21T00:00:00Z")).to.deep.equal(["2028-02-20T00:00:00.000Z", "2028-03-05T00:00:00.000Z"]);
    expect(bounds(p, "UTC", "2028-03-05T00:00:00Z")).to.deep.equal(["2028-03-05T00:00:00.000Z", "2028-03-19T00:00:00.000Z"]);
    expect(bounds(p, "UTC", "2028-02-19T23:59:59Z")).to.deep.equal(["2028-02-06T00:00:00.000Z", "2028-02-20T00:00:00.000Z"]);
    expect(bounds(periodSpec("daily", 3), "America/New_York", "1970-01-05T12:00:00Z")).to.deep.equal(["1970-01-04T05:00:00.000Z", "1970-01-07T05:00:00.000Z"]);
  });

  it("refillDue: nothing before the next boundary, one refill for the period containing now after a long pause", () => {
    const p = periodSpec("monthly", 1, 15);
    const r = trackFrom(p, "Europe/Berlin", 100, at("2026-03-20T10:00:00Z"));
    expect(iso(r.next)).to.equal("2026-04-14T22:00:00.000Z");
    expect(refillDue(r, at("2026-04-14T21:59:59Z"))).to.equal(null);
    expect(iso(refillDue(r, at("2026-04-14T22:00:00Z"))!)).to.equal("2026-04-14T22:00:00.000Z");
    expect(iso(refillDue(r, at("2026-07-01T00:00:00Z"))!)).to.equal("2026-06-14T22:00:00.000Z");
    expect(iso(nextBoundary(p, "UTC", at("2026-03-20T10:00:00Z")))).to.equal("2026-04-15T00:00:00.000Z");
  });

  it("a period started (or changed) mid-period gives no refill until its next boundary", () => {
    // A key that already spent gets a daily window at 15:00: tracking starts then; its quota
    // left is untouched; the first refill is at the next midnight, not at once.
    const changed = at("2026-05-10T15:00:00Z");
    const r = trackFrom(periodSpec("daily"), "UTC", 100, changed);
    expect(refillDue(r, changed)).to.equal(null);
    expect(refillDue(r, at("2026-05-10T23:59:59Z"))).to.equal(null);
    expect(iso(refillDue(r, at("2026-05-11T00:00:00Z"))!)).to.equal("2026-05-11T00:00:00.000Z");
    // Monthly → daily on the 10th: no free refill for "today" either.
    const m = trackFrom(periodSpec("daily"), "UTC", 100, changed);
    expect(m.next).to.equal(at("2026-05-11T00:00:00Z"));
  });
});
