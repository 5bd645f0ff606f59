// The key table: columns, product labels, masked keys, currency, layout by width.
import { expect } from "chai";
import { KeyStatus } from "../../src/gen/aisa/v1/types.js";
import { layoutColumns } from "../../tui/components/KeysTable.js";
import { FakeAdminApi, makeKey, T0 } from "./fakeApi.js";
import { renderApp, tableRows, type Driven } from "./render.js";

const DAY = 86_400_000;

function sampleKeys() {
  return [
    makeKey(1, { name: "plain" }),
    makeKey(2, {
      name: "limited",
      status: KeyStatus.KEY_STATUS_DISABLED,
      quota: { unlimited: false, total: "1000000", remaining: "250000", used: "750000", reserved: "0" },
      expiresAt: new Date(T0 + 29 * DAY),
      models: ["gpt-4o", "gpt-4o-mini", "o3"],
      ips: ["10.0.0.0/8", "2001:db8::/32"],
      group: "prod",
      maskedKey: "sk-…a1B2",
    }),
    makeKey(3, { name: "old", expiresAt: new Date(T0 - 3 * 3_600_000) }),
  ];
}

describe("tui: key table", () => {
  let ui: Driven | undefined;
  afterEach(() => ui?.unmount());

  it("shows every column with the product's labels at 160 columns", async () => {
    ui = await renderApp(new FakeAdminApi({ keys: sampleKeys() }), { columns: 160 });
    const f = ui.frame();
    for (const title of ["Name", "Status", "Remaining / Total", "Group", "Key", "Available Models", "IP Restrictions", "Creation Time", "Expiration Time"]) {
      expect(f).to.include(title);
    }
    const [plain, limited, old] = tableRows(f);
    expect(plain).to.match(/plain\s+Enabled\s+Unlimited\s+default\s+default\s+sk-…0001\s+Unlimited\s+Unlimited\s+2026-11-26 12:00\s+Never expires/);
    expect(limited).to.include("Disabled");
    expect(limited).to.include("≈ $0.50 / $2.00");
    expect(limited).to.include("sk-…a1B2");
    expect(limited).to.include("prod");
    expect(limited).to.match(/gpt-4o(, gpt-4o-mini)? \+\d/);
    expect(limited).to.include("10.0.0.0/8 +1");
    expect(limited).to.include("in 29d · 2026-12-26");
    // An expired key says it cannot be used, and the cell gives the exact time it stopped.
    expect(old).to.match(/old\s+Expired\s/);
    expect(old).to.include("expired 2026-11-27 09:00");
  });

  it("never shows a full secret in the table", async () => {
    ui = await renderApp(new FakeAdminApi({ keys: sampleKeys() }), { columns: 160 });
    expect(ui.frame()).not.to.match(/sk-[A-Za-z0-9]{8,}/);
  });

  it("shows the caller and the account balance in the header", async () => {
    ui = await renderApp(new FakeAdminApi({ keys: sampleKeys() }));
    expect(ui.frame().split("\n")[0]).to.match(/operator · account default balance ≈ \$10\.00 \(5,000,000 units\)/);
  });

  it("shows an account token's account (and read-only) in the header", async () => {
    const api = new FakeAdminApi({ keys: [], who: { tokenId: "tok_1", accountId: "default", readOnly: true } });
    ui = await renderApp(api);
    expect(ui.frame().split("\n")[0]).to.include("account default (read-only)");
  });

  it("stays usable at 80×24: essential columns, no line wider than 80", async () => {
    ui = await renderApp(new FakeAdminApi({ keys: sampleKeys() }), { columns: 80, rows: 24 });
    const f = ui.frame();
    for (const title of ["Name", "Status", "Remaining / Total", "Key", "Expiration Time"]) expect(f).to.include(title);
    for (const line of f.split("\n")) expect([...line].length, line).to.be.at.most(80);
    expect(f.split("\n").length).to.be.at.most(23);
  });

  const widths = [
    { width: 80, has: ["name", "status", "quota", "key", "expires"], not: ["ips", "created"] },
    { width: 120, has: ["name", "status", "quota", "group", "key", "models", "expires"], not: ["created"] },
    { width: 160, has: ["name", "status", "quota", "group", "key", "models", "ips", "created", "expires"], not: [] },
  ];
  for (const c of widths) {
    it(`lays out columns for ${c.width} columns within the width`, () => {
      const cols = layoutColumns(c.width);
      const ids = cols.map((x) => x.id as string);
      expect(ids).to.include.members(c.has);
      for (const id of c.not) expect(ids).not.to.include(id);
      expect(2 + cols.reduce((n, x) => n + x.width + 1, 0)).to.be.at.most(c.width);
    });
  }
});
