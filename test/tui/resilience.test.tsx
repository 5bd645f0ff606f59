// Disabled actions say why; the sidecar going away shows a banner and the TUI
// reconnects by itself; API errors never crash the app.
import { expect } from "chai";
import { ApiError } from "../../tui/client.js";
import { backoffMs } from "../../tui/state/useSidecar.js";
import { FakeAdminApi, makeKey } from "./fakeApi.js";
import { KEY, renderApp, type Driven } from "./render.js";

describe("tui: disabled actions and resilience", () => {
  let ui: Driven | undefined;
  afterEach(() => ui?.unmount());

  const readOnly = [
    { key: "n", reason: "new: read-only token" },
    { key: "e", reason: "edit: read-only token" },
    { key: "x", reason: "on/off: read-only token" },
    { key: "d", reason: "delete: read-only token" },
    { key: "c", reason: "copy: read-only token" },
  ];
  for (const c of readOnly) {
    it(`explains ${c.key} with a read-only token`, async () => {
      const api = new FakeAdminApi({ keys: [makeKey(1)], who: { readOnly: true } });
      ui = await renderApp(api);
      await ui.press(c.key);
      await ui.waitFor((x) => x.includes(c.reason));
      expect(api.calls.map((x) => x.method)).not.to.include.members(["setKeysEnabled", "deleteKeys", "revealKeys"]);
      expect(ui.frame()).not.to.include("Create a key");
    });
  }

  it("fixes the account filter for an account-scoped token, and says why", async () => {
    ui = await renderApp(new FakeAdminApi({ keys: [makeKey(1)], who: { tokenId: "tok_a", accountId: "default" } }));
    await ui.press("f", "j", "j", KEY.right);
    await ui.waitFor((x) => x.includes("account: an account token sees its own account only"));
    expect(ui.frame()).to.include("‹ any ›");
  });

  it("explains actions that need a selected key on an empty list", async () => {
    ui = await renderApp(new FakeAdminApi({ keys: [] }));
    expect(ui.frame()).to.include("No keys yet");
    await ui.press("e");
    await ui.waitFor((x) => x.includes("edit: no key selected"));
    await ui.press("d");
    await ui.waitFor((x) => x.includes("delete: no key selected"));
  });

  it("shows a banner while the sidecar is unreachable and reconnects by itself", async () => {
    const api = new FakeAdminApi({ keys: [makeKey(1)] });
    api.down = true;
    ui = await renderApp(api);
    let f = await ui.waitFor((x) => x.includes("Sidecar unreachable at 127.0.0.1:9192"));
    expect(f).to.include("Reconnecting automatically");
    await ui.press("n");
    f = await ui.waitFor((x) => x.includes("new: not connected to sidecar"));
    api.down = false;
    f = await ui.waitFor((x) => x.includes("1 of 1 keys") && !x.includes("unreachable"));
    expect(f).to.include("key-1");
  });

  it("flips to the banner when an action finds the sidecar gone", async () => {
    const api = new FakeAdminApi({ keys: [makeKey(1)] });
    ui = await renderApp(api);
    api.down = true;
    await ui.press("x");
    await ui.waitFor((x) => x.includes("Sidecar unreachable") && x.includes("UNAVAILABLE"));
    api.down = false;
    await ui.waitFor((x) => !x.includes("unreachable"));
  });

  it("says so when the token is refused, without retrying in a loop", async () => {
    const api = new FakeAdminApi();
    api.whoAmI = () => Promise.reject(new ApiError("UNAUTHENTICATED", "invalid token"));
    ui = await renderApp(api);
    await ui.waitFor((x) => x.includes("refused the token (UNAUTHENTICATED: invalid token)"));
  });

  it("shows API errors inline and keeps running", async () => {
    const api = new FakeAdminApi({ keys: [makeKey(1)] });
    api.setKeysEnabled = () => Promise.reject(new ApiError("FAILED_PRECONDITION", "key is being rotated"));
    ui = await renderApp(api);
    await ui.press("x");
    await ui.waitFor((x) => x.includes("FAILED_PRECONDITION: key is being rotated"));
    await ui.press("j", KEY.tab);
    await ui.waitFor((x) => x.includes("2 groups"));
  });

  const backoff = [
    { attempt: 1, want: 250 },
    { attempt: 2, want: 500 },
    { attempt: 5, want: 4000 },
    { attempt: 12, want: 15000 },
  ];
  for (const c of backoff) it(`backs off ${c.want} ms at attempt ${c.attempt}`, () => expect(backoffMs(c.attempt, 250, 15_000)).to.equal(c.want));
});
