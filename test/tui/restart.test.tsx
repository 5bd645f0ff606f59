// The Usage view over the real client against a real sidecar (in this
// process) that is stopped and started again on the same port: the stream's
// end shows the reconnect banner, the app reconnects by itself, the stream
// reopens and shows the new traffic; nothing stays open after unmount.
import { expect } from "chai";
import { render } from "ink-testing-library";
import type { CheckResponse } from "../../src/gen/aisa/v1/authorizer.js";
import { App } from "../../tui/App.js";
import { GrpcAdminApi } from "../../tui/client.js";
import { call, startTestSidecar, tempDir, removeDir, type TestSidecar } from "../helpers/sidecar.js";
import { delay } from "./render.js";

describe("tui: live usage across a sidecar restart (real gRPC)", function () {
  this.timeout(60_000);
  let dir = "";
  let s: TestSidecar | undefined;
  let api: GrpcAdminApi | undefined;

  afterEach(async () => {
    api?.close();
    await s?.close();
    if (dir) await removeDir(dir);
  });

  it("reopens the stream after the sidecar comes back", async () => {
    dir = await tempDir();
    s = await startTestSidecar({ dataDir: dir });
    const { adminAddress, dataAddress, adminToken } = s;
    await call(s.admin, "adjustBalance", { accountId: "default", delta: "10000000", reason: "test" }, s.meta());
    api = new GrpcAdminApi(adminAddress, adminToken);
    const key = await api.createKey({ name: "restart-key", group: "", expires: "never", quota: "0", unlimited: true, models: [], ips: [], limits: undefined, refill: 0, metadata: {} });

    const r = render(<App api={api} address={adminAddress} size={{ columns: 120, rows: 40 }} heartbeatMs={0} reconnect={{ baseMs: 50, maxMs: 400 }} />);
    const frame = (): string => r.lastFrame() ?? "";
    const waitFor = async (pred: (f: string) => boolean, what: string, ms = 15_000): Promise<string> => {
      const end = Date.now() + ms;
      while (!pred(frame())) {
        if (Date.now() > end) throw new Error(`timed out waiting for ${what}; last frame:\n${frame()}`);
        await delay(20);
      }
      return frame();
    };
    try {
      await waitFor((f) => f.includes("1 of 1 keys"), "the key table");
      r.stdin.write("3");
      await waitFor((f) => f.includes("● live"), "the live stream");
      expect(api.openStreams).to.equal(1);

      await s.close();
      s = undefined;
      await waitFor((f) => f.includes("Sidecar unreachable"), "the reconnect banner");
      expect(api.openStreams).to.equal(0);

      s = await startTestSidecar({ dataDir: dir, adminListen: adminAddress, listen: dataAddress, adminToken });
      await waitFor((f) => f.includes("● live") && !f.includes("unreachable"), "the stream again");
      expect(api.openStreams).to.equal(1);

      const sc = s;
      const traffic = async (): Promise<void> => {
        const c = await call<unknown, CheckResponse>(sc.authorizer, "check", { apiKey: key.secret, clientIp: "127.0.0.1", estimatedUnits: "1" });
        expect(c.allowed, JSON.stringify(c)).to.equal(true);
      };
      await traffic();
      const f = await waitFor((x) => /^\s*1 restart-key\s/m.test(x), "the key in the top keys");
      expect(f).to.match(/^Last \d+ s\s+[\d.]+ req\/s/m);
    } finally {
      r.unmount();
    }
    expect(api.openStreams).to.equal(0);
  });
});
