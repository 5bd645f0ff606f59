// The first load shows the keys as they arrive: the first page's rows (and moving among them)
// before the sidecar has sent the rest, nothing is changed until the list is complete, and the
// cursor stays on its key when the rest comes in. A reload keeps the loaded list meanwhile.
import { expect } from "chai";
import { render } from "ink-testing-library";
import { App } from "../../tui/App.js";
import { FakeAdminApi, makeKey, T0 } from "./fakeApi.js";
import { delay, tableRows } from "./render.js";

const N = 5000;

function gated(): { api: FakeAdminApi; release: () => void } {
  const api = new FakeAdminApi({ keys: Array.from({ length: N }, (_, i) => makeKey(i)) });
  let release = (): void => {};
  api.pageGate = new Promise<void>((r) => (release = r));
  return { api, release };
}

describe("tui: first paint while the keys load", function () {
  this.timeout(30_000);

  it("shows the first page at once, moves in it, refuses changes until the rest has arrived, then keeps the cursor", async () => {
    const { api, release } = gated();
    const r = render(<App api={api} address="127.0.0.1:9192" size={{ columns: 100, rows: 30 }} now={() => T0} heartbeatMs={0} reconnect={{ baseMs: 5, maxMs: 20 }} />);
    const frame = (): string => r.lastFrame() ?? "";
    const waitFor = async (pred: (f: string) => boolean): Promise<string> => {
      const until = Date.now() + 10_000;
      while (!pred(frame())) {
        if (Date.now() > until) throw new Error(`timed out; last frame:\n${frame()}`);
        await delay(5);
      }
      return frame();
    };
    try {
      const first = await waitFor((f) => f.includes("1,000 of 1,000 keys"));
      expect(first).to.include("Loading keys 1,000 of 5,000");
      expect(tableRows(first)[0]).to.match(/^› key-0 /);

      r.stdin.write("j");
      await waitFor((f) => tableRows(f)[1]?.startsWith("› key-1 ") === true);
      r.stdin.write("x");
      await waitFor((f) => f.includes("keys still loading"));
      expect(api.calls.some((c) => c.method === "setKeysEnabled")).to.equal(false);

      release();
      const done = await waitFor((f) => f.includes("5,000 of 5,000 keys") && !f.includes("Loading keys"));
      expect(tableRows(done)[1]).to.match(/^› key-1 /);
      expect(api.calls.filter((c) => c.method === "listKeys")).to.have.length(1);
    } finally {
      r.unmount();
    }
  });

  it("a reload keeps showing the loaded list until the new one is complete", async () => {
    const api = new FakeAdminApi({ keys: Array.from({ length: N }, (_, i) => makeKey(i)) });
    const r = render(<App api={api} address="127.0.0.1:9192" size={{ columns: 100, rows: 30 }} now={() => T0} heartbeatMs={0} reconnect={{ baseMs: 5, maxMs: 20 }} />);
    const frame = (): string => r.lastFrame() ?? "";
    const waitFor = async (pred: (f: string) => boolean): Promise<string> => {
      const until = Date.now() + 10_000;
      while (!pred(frame())) {
        if (Date.now() > until) throw new Error(`timed out; last frame:\n${frame()}`);
        await delay(5);
      }
      return frame();
    };
    try {
      await waitFor((f) => f.includes("5,000 of 5,000 keys") && !f.includes("Loading keys"));
      let release = (): void => {};
      api.pageGate = new Promise<void>((res) => (release = res));
      api.keys = api.keys.slice(0, 4500);
      r.stdin.write("R");
      const during = await waitFor((f) => f.includes("Loading keys 1,000 of 4,500"));
      expect(during).to.include("5,000 of 5,000 keys");
      release();
      await waitFor((f) => f.includes("4,500 of 4,500 keys") && !f.includes("Loading keys"));
    } finally {
      r.unmount();
    }
  });
});
