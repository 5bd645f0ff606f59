// Delete confirmation (k9s): Cancel focused, the count and the marked keys the
// filter hides; bulk delete requires typing the count. Plus bulk toggle/copy.
import { expect } from "chai";
import { KeyStatus } from "../../src/gen/aisa/v1/types.js";
import { FakeAdminApi, makeKey } from "./fakeApi.js";
import { KEY, renderApp, type Driven } from "./render.js";

function fiveKeys(): FakeAdminApi {
  return new FakeAdminApi({ keys: [0, 1, 2, 3, 4].map((i) => makeKey(i, { name: `svc-${i}` })) });
}

describe("tui: delete confirmation and bulk actions", () => {
  let ui: Driven | undefined;
  afterEach(() => ui?.unmount());

  it("opens with Cancel focused: enter cancels and nothing is deleted", async () => {
    const api = fiveKeys();
    ui = await renderApp(api);
    await ui.press("d");
    const f = await ui.waitFor((x) => x.includes("Delete keys"));
    expect(f).to.include('Delete key "svc-0"?');
    expect(f).to.match(/› \[ Cancel \]/);
    expect(f).not.to.match(/› \[ Delete/);
    await ui.press(KEY.enter);
    await ui.waitFor((x) => x.includes("Delete cancelled"));
    expect(api.calls.some((c) => c.method === "deleteKeys")).to.equal(false);
    expect(api.keys).to.have.length(5);
  });

  it("states the count and how many marked keys the filter hides, and needs the count typed", async () => {
    const api = fiveKeys();
    ui = await renderApp(api);
    // mark svc-0 and svc-1, then search so only svc-1 is visible, mark svc-2? no: search svc-1
    await ui.press(KEY.space, "j", KEY.space, "j", KEY.space);
    await ui.waitFor((x) => x.includes("3 marked"));
    await ui.press("/");
    await ui.type("svc-2");
    await ui.press(KEY.enter);
    const filtered = await ui.waitFor((x) => x.includes("1 of 5 keys"));
    expect(filtered).to.include("3 marked (2 hidden by filter)");
    await ui.press("d");
    let f = await ui.waitFor((x) => x.includes("Delete keys"));
    expect(f).to.include("Delete 3 keys? (2 currently hidden by the filter)");
    expect(f).to.include("Type 3 to confirm");
    // Delete without the count: refused, with the reason.
    await ui.press(KEY.tab);
    await ui.waitFor((x) => /› \[ Delete 3 \]/.test(x));
    await ui.press(KEY.enter);
    f = await ui.waitFor((x) => x.includes("press: type 3 to confirm"));
    expect(api.keys).to.have.length(5);
    await ui.type("3");
    await ui.press(KEY.enter);
    await ui.waitFor((x) => x.includes("Deleted 3 keys"));
    expect(api.keys.map((k) => k.name)).to.deep.equal(["svc-3", "svc-4"]);
  });

  it("escape closes the dialog without deleting", async () => {
    const api = fiveKeys();
    ui = await renderApp(api);
    await ui.press("d");
    await ui.waitFor((x) => x.includes("Delete keys"));
    await ui.press(KEY.esc);
    await ui.waitFor((x) => !x.includes("Delete keys"));
    expect(api.keys).to.have.length(5);
  });

  it("disables and re-enables the marked keys", async () => {
    const api = fiveKeys();
    ui = await renderApp(api);
    await ui.press("a");
    await ui.waitFor((x) => x.includes("5 marked"));
    await ui.press("x");
    await ui.waitFor((x) => x.includes("Disabled 5 keys"));
    expect(api.keys.every((k) => k.status === KeyStatus.KEY_STATUS_DISABLED)).to.equal(true);
    await ui.press("t");
    await ui.waitFor((x) => x.includes("Enabled 5 keys"));
    await ui.press(KEY.esc);
    await ui.waitFor((x) => !x.includes("marked"));
  });

  it("copies marked keys, or shows them when no clipboard works", async () => {
    const api = fiveKeys();
    const copied: string[] = [];
    ui = await renderApp(api, { clipboard: { copy: (t) => (copied.push(t), Promise.resolve({ methods: ["xclip"] })) } });
    await ui.press(KEY.space, "j", KEY.space, "c");
    await ui.waitFor((x) => x.includes("Copied 2 keys via xclip"));
    expect(copied[0]?.split("\n")).to.deep.equal([`svc-0\tsk-SECRET-${api.keys[0]?.id}`, `svc-1\tsk-SECRET-${api.keys[1]?.id}`]);
    ui.unmount();

    ui = await renderApp(fiveKeys());
    await ui.press("c");
    const f = await ui.waitFor((x) => x.includes("Full secrets (1)"));
    expect(f).to.include("No clipboard here");
    expect(f).to.include("svc-0: sk-SECRET-");
  });
});
