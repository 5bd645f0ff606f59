// The Groups view shows a group's budget (issue 19 item 2): spent this period / cap and the period.
import { expect } from "chai";
import { RefillPeriod } from "../../src/gen/aisa/v1/types.js";
import { FakeAdminApi, makeGroup, makeKey } from "./fakeApi.js";
import { renderApp } from "./render.js";

describe("TUI Groups view: group budgets", () => {
  it("a budgeted group shows spent/cap per period; others show -", async () => {
    const capped = { ...makeGroup("capped", 1), budget: { units: "1000", period: RefillPeriod.REFILL_PERIOD_MONTHLY, everyDays: 0, anchor: 15, timezone: "UTC" }, budgetSpent: "550", budgetResetsAt: new Date(Date.UTC(2030, 0, 15)) };
    const api = new FakeAdminApi({ keys: [makeKey(1, { name: "a", group: "capped" })], groups: [makeGroup("default", 0), capped] });
    const ui = await renderApp(api, { columns: 200 });
    try {
      await ui.press("2");
      const f = await ui.waitFor((x) => x.includes("Budget spent/cap"));
      expect(f).to.match(/550\/1,000 per month/);
      expect(f).to.match(/default[^\n]*\s-\s/);
    } finally {
      ui.unmount();
    }
  });
});
