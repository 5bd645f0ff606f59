// src/display/format.ts: the one set of display rules the CLI and the TUI share.
import { expect } from "chai";
import {
  DEFAULT_MONEY,
  formatKeyStatus,
  formatMoney,
  formatQuota,
  formatQuotaCell,
  formatUnitsMoney,
  parseQuotaInput,
  padEnd,
  renderTable,
  textWidth,
  truncate,
} from "../../src/display/format.js";
import { KeyStatus, type Quota } from "../../src/gen/aisa/v1/types.js";

const quota = (o: Partial<Quota>): Quota => ({ unlimited: false, total: "0", remaining: "0", used: "0", reserved: "0", ...o });

describe("display: money (one exact rule for CLI and TUI)", () => {
  const cases = [
    { units: 3_000, want: "$0.006" },
    { units: 1_500, want: "$0.003" },
    { units: -700, want: "-$0.0014" },
    { units: 2_500, want: "$0.005" },
    { units: 5_000, want: "$0.01" },
    { units: 4_999, want: "$0.01" },
    { units: 750_000, want: "$1.50" },
    { units: 1, want: "$0.000002" },
    { units: 0, want: "$0.00" },
    { units: "9007199254740993000000", want: "$18,014,398,509,481,986.00" },
  ];
  for (const c of cases) it(`${c.units} units → ${c.want}`, () => expect(formatMoney(c.units, 500_000, "USD")).to.equal(c.want));
  it("compact table cells: k and M, computed exactly", () => {
    expect(formatMoney(500_000n * 12_340n, 500_000, "USD", { compact: true })).to.equal("$12.3k");
    expect(formatMoney(500_000n * 1_250_000n, 500_000, "USD", { compact: true })).to.equal("$1.25M");
  });
  it("the TUI's Money form gives the same text", () => {
    expect(formatUnitsMoney(-700, DEFAULT_MONEY)).to.equal("≈ -$0.0014");
    expect(formatUnitsMoney(3_000, DEFAULT_MONEY)).to.equal("≈ $0.006");
  });
});

describe("display: quota shows what can be spent", () => {
  it("a quota all reserved reads 0 spendable and names the reserved part", () => {
    const q = quota({ total: "3000", remaining: "3000", reserved: "3000" });
    expect(formatQuota(q, 500_000, "USD")).to.equal("0 / 3,000 (≈ $0.00 / $0.006) · 3,000 reserved");
    expect(formatQuotaCell(q, DEFAULT_MONEY)).to.equal("≈ $0.00 / $0.006 (R)");
  });
  it("no reservations: remaining / total as before", () => {
    expect(formatQuota(quota({ total: "750000", remaining: "375000" }), 500_000, "USD")).to.equal("375,000 / 750,000 (≈ $0.75 / $1.50)");
  });
});

describe("display: status", () => {
  const now = Date.UTC(2026, 0, 1);
  it("an expired key reads Expired whatever its stored status", () => {
    expect(formatKeyStatus({ status: KeyStatus.KEY_STATUS_ENABLED, expiresAt: new Date(now - 1), expired: false }, now)).to.equal("Expired");
    expect(formatKeyStatus({ status: KeyStatus.KEY_STATUS_ENABLED, expiresAt: undefined, expired: true }, now)).to.equal("Expired");
    expect(formatKeyStatus({ status: KeyStatus.KEY_STATUS_DISABLED, expiresAt: undefined, expired: false }, now)).to.equal("Disabled");
    expect(formatKeyStatus({ status: KeyStatus.KEY_STATUS_ENABLED, expiresAt: new Date(now + 1), expired: false }, now)).to.equal("Enabled");
  });
});

describe("display: widths (CJK and emoji take two columns)", () => {
  const cases = [
    { s: "abc", w: 3 },
    { s: "日本語", w: 6 },
    { s: "🔑key", w: 5 },
    { s: "é", w: 1 },
    { s: "e\u0301", w: 1 },
    { s: "한국", w: 4 },
  ];
  for (const c of cases) it(`textWidth(${JSON.stringify(c.s)}) = ${c.w}`, () => expect(textWidth(c.s)).to.equal(c.w));
  it("truncate and padEnd count columns", () => {
    expect(truncate("日本語テキスト", 7)).to.equal("日本語…");
    expect(textWidth(padEnd("日本", 6))).to.equal(6);
  });
  it("table rows with wide names stay aligned", () => {
    const out = renderTable(["NAME", "STATUS"], [["日本語キー", "Enabled"], ["🔑 prod", "Disabled"], ["plain", "Enabled"]]);
    const cols = out.trimEnd().split("\n").map((l) => textWidth(l.slice(0, l.search(/(Enabled|Disabled|STATUS)/))));
    expect(new Set(cols).size).to.equal(1);
  });
  it("a table is fitted to the terminal width", () => {
    const long = "n".repeat(128);
    const out = renderTable(["ID", "NAME", "STATUS"], [["key_1", long, "Enabled"]], { width: 60 });
    for (const l of out.trimEnd().split("\n")) expect(textWidth(l)).to.be.at.most(60);
    expect(out).to.include("key_1").and.include("…");
  });
});

describe("display: quota input (CLI --quota and the TUI form)", () => {
  const cases = [
    { text: "3000", want: "3000", amount: false },
    { text: "3,000", want: "3000", amount: false },
    { text: "$5", want: "2500000", amount: true },
    { text: "$0.000001", want: "1", amount: true },
    { text: "5 USD", want: "2500000", amount: true },
    { text: "5usd", want: "2500000", amount: true },
    { text: "$1.234567", want: "617284", amount: true },
  ];
  for (const c of cases) {
    it(`${JSON.stringify(c.text)} → ${c.want} units`, () => {
      const p = parseQuotaInput(c.text, DEFAULT_MONEY);
      expect(p).to.deep.equal({ units: c.want, fromAmount: c.amount, error: null });
    });
  }
  it("refuses other text with an example", () => {
    expect(parseQuotaInput("five", DEFAULT_MONEY).error).to.equal("a whole number of units, or an amount like $5");
    expect(parseQuotaInput("€5", DEFAULT_MONEY).error).to.not.equal(null);
  });
});

describe("display: tables leave out columns when cutting is not enough", () => {
  it("drops the named columns in order, keeping the first", () => {
    const out = renderTable(["ID", "NAME", "CREATION TIME", "STATUS"], [["key_1", "x".repeat(40), "2026-01-01 00:00 UTC", "Enabled"]], { width: 30, drop: [2] });
    expect(out).not.to.include("CREATION TIME");
    for (const l of out.trimEnd().split("\n")) expect(textWidth(l)).to.be.at.most(30);
  });
});
