// Usage retention settings (issue 13 #8): defaults, environment overrides, and a bad value
// named in the error (which `serve` turns into exit 2).
import { expect } from "chai";
import { loadConfig } from "../../src/config/config.js";
import { DEFAULT_RETENTION_MS } from "../../src/service/usage.js";

const H = 3_600_000;
const D = 86_400_000;

describe("config: usage retention", () => {
  it("defaults: minute 48 h, hour 90 days, day 730 days (the recorder's defaults)", () => {
    const c = loadConfig({}, {});
    expect(c.usageRetentionMs).to.deep.equal({ m: 48 * H, h: 90 * D, d: 730 * D });
    expect(c.usageRetentionMs).to.deep.equal(DEFAULT_RETENTION_MS);
  });

  it("each granularity from its environment variable", () => {
    const c = loadConfig({}, { AISA_USAGE_RETENTION_MINUTE_HOURS: "6", AISA_USAGE_RETENTION_HOUR_DAYS: "7", AISA_USAGE_RETENTION_DAY_DAYS: "400" });
    expect(c.usageRetentionMs).to.deep.equal({ m: 6 * H, h: 7 * D, d: 400 * D });
  });

  const bad: [string, string][] = [
    ["AISA_USAGE_RETENTION_MINUTE_HOURS", "0"],
    ["AISA_USAGE_RETENTION_HOUR_DAYS", "-1"],
    ["AISA_USAGE_RETENTION_DAY_DAYS", "2y"],
    ["AISA_USAGE_RETENTION_DAY_DAYS", "1.5"],
  ];
  for (const [name, value] of bad) {
    it(`${name}=${value} is refused, naming the setting`, () => {
      expect(() => loadConfig({}, { [name]: value })).to.throw(name);
    });
  }
});
