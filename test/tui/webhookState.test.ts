// The Webhooks view's state rules without Ink (tui/state/webhooks.ts): the selection follows
// the endpoint's id, moves clamp, the deliveries filter, the row after a removal; the add form's
// check names the bad field exactly as the CLI does (one parse, src/domain/webhookInput.ts), and
// a server message is placed at its field.
import { expect } from "chai";
import type { Webhook, WebhookDelivery } from "../../src/gen/aisa/v1/admin.js";
import { parseWebhookInput, WebhookInputError } from "../../src/domain/webhookInput.js";
import {
  afterRemoval,
  checkWebhookForm,
  INITIAL_LIST,
  initialWebhookForm,
  moveWebhook,
  selectedIndex,
  selectedWebhook,
  shownDeliveries,
  webhookFieldOf,
} from "../../tui/state/webhooks.js";

const hook = (id: string): Webhook => ({ id, url: `https://x.example/${id}`, events: [], thresholds: [50], balanceLow: "0", createdAt: new Date(0), pending: 0, delivered: 0, failed: 0, lastError: "" });
const dlv = (id: string, webhookId: string): WebhookDelivery =>
  ({ id, webhookId, eventId: `evt_${id}`, eventType: "ping", state: "delivered", attempts: 1, nextAttemptAt: undefined, lastError: "", lastStatus: 200, createdAt: new Date(0), finishedAt: undefined, body: "" }) as WebhookDelivery;

describe("TUI webhooks state: the list", () => {
  const three = [hook("a"), hook("b"), hook("c")];

  it("selects the first row until moved; moves clamp at both ends; top and bottom", () => {
    expect(selectedIndex([], INITIAL_LIST)).to.equal(-1);
    expect(selectedWebhook(three, INITIAL_LIST)?.id).to.equal("a");
    let s = moveWebhook(three, INITIAL_LIST, 1);
    expect(s.selected).to.equal("b");
    s = moveWebhook(three, s, 5);
    expect(s.selected).to.equal("c");
    s = moveWebhook(three, s, -9);
    expect(s.selected).to.equal("a");
    expect(moveWebhook(three, s, "bottom").selected).to.equal("c");
    expect(moveWebhook(three, moveWebhook(three, s, "bottom"), "top").selected).to.equal("a");
    expect(moveWebhook([], s, 1)).to.equal(s);
  });

  it("the selection follows the endpoint's id when a reload reorders or drops rows", () => {
    const s = { selected: "b", onlySelected: false };
    expect(selectedIndex([hook("c"), hook("b")], s)).to.equal(1);
    expect(selectedWebhook([hook("a"), hook("c")], s)?.id, "gone elsewhere: the first row").to.equal("a");
  });

  it("deliveries: all, or only the selected endpoint's", () => {
    const ds = [dlv("1", "a"), dlv("2", "b"), dlv("3", "a")];
    expect(shownDeliveries(three, ds, INITIAL_LIST)).to.have.length(3);
    expect(shownDeliveries(three, ds, { selected: "a", onlySelected: true }).map((d) => d.id)).to.deep.equal(["1", "3"]);
    expect(shownDeliveries(three, ds, { selected: "c", onlySelected: true })).to.deep.equal([]);
  });

  it("after a removal the row below takes the selection (the one above at the end; none when empty)", () => {
    expect(afterRemoval(three, { selected: "b", onlySelected: true }, "b")).to.deep.equal({ selected: "c", onlySelected: true });
    expect(afterRemoval(three, { selected: "c", onlySelected: false }, "c").selected).to.equal("b");
    expect(afterRemoval([hook("a")], { selected: "a", onlySelected: true }, "a")).to.deep.equal({ selected: null, onlySelected: false });
  });
});

describe("TUI webhooks state: the add form (the CLI's parse)", () => {
  const form = (o: Partial<ReturnType<typeof initialWebhookForm>>) => ({ ...initialWebhookForm(), ...o });

  it("defaults: thresholds 50,80,100, balance low off, every event; the request is the CLI's", () => {
    const c = checkWebhookForm(form({ url: " https://ops.example.com/aisa " }));
    expect(c).to.deep.equal({ ok: true, request: { url: "https://ops.example.com/aisa", events: [], thresholds: [50, 80, 100], balanceLow: "0" } });
    const typed = { url: "http://127.0.0.1:9/x", events: "quota.threshold, balance.low,quota.threshold", thresholds: "90, 75", balanceLow: "500000" };
    const t = checkWebhookForm(typed);
    // One parse for both: what `webhooks create --url … --events … --thresholds … --balance-low …` sends.
    expect(t.ok && t.request).to.deep.equal(parseWebhookInput(typed));
    expect(t.ok && t.request).to.deep.equal({ url: "http://127.0.0.1:9/x", events: ["quota.threshold", "balance.low"], thresholds: [75, 90], balanceLow: "500000" });
  });

  const bad: [string, Partial<ReturnType<typeof initialWebhookForm>>, string, RegExp][] = [
    ["an empty URL", { url: "" }, "url", /^url: must not be empty/],
    ["not a URL", { url: "ops.example.com" }, "url", /^url: .* is not an absolute URL/],
    ["ftp", { url: "ftp://x.example/" }, "url", /^url: must be http or https/],
    ["credentials", { url: "https://u:p@x.example/" }, "url", /^url: must not carry credentials/],
    ["a control character", { url: "https://x.example/\u001b[31m" }, "url", /^url: must not contain control characters/],
    ["too long", { url: `https://x.example/${"a".repeat(2048)}` }, "url", /^url: must be at most 2048/],
    ["an unknown event", { url: "https://x.example/", events: "quota.threshold,nope" }, "events", /^events\[1\]: "nope" is not one of/],
    ["threshold 0", { url: "https://x.example/", thresholds: "0" }, "thresholds", /^thresholds\[0\]: must be an integer percent 1\.\.100/],
    ["threshold 101", { url: "https://x.example/", thresholds: "50,101" }, "thresholds", /^thresholds\[1\]: /],
    ["threshold 7.5", { url: "https://x.example/", thresholds: "7.5" }, "thresholds", /^thresholds\[0\]: /],
    ["a negative balance", { url: "https://x.example/", balanceLow: "-1" }, "balanceLow", /^balance_low: must be a non-negative integer/],
    ["a balance past 2^53", { url: "https://x.example/", balanceLow: "99999999999999999" }, "balanceLow", /^balance_low: /],
  ];
  for (const [name, values, field, message] of bad) {
    it(`refuses ${name}, naming the field (${field})`, () => {
      const c = checkWebhookForm(form(values));
      expect(c.ok).to.equal(false);
      if (c.ok) return;
      expect(c.field).to.equal(field);
      expect(c.message).to.match(message);
      expect(() => parseWebhookInput(form(values))).to.throw(WebhookInputError, message);
    });
  }

  it("a server message lands at its field (or nowhere)", () => {
    expect(webhookFieldOf("INVALID_ARGUMENT: thresholds[2]: must be …")).to.equal("thresholds");
    expect(webhookFieldOf("balance_low: must be …")).to.equal("balanceLow");
    expect(webhookFieldOf("INVALID_ARGUMENT: url: at most 100 webhook endpoints")).to.equal("url");
    expect(webhookFieldOf("PERMISSION_DENIED: an account-scoped token cannot manage webhooks")).to.equal(null);
  });
});
