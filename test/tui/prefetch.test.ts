// tui/prefetch.ts: the first WhoAmI and ListKeys start before the UI exists and are handed to
// the App's first load, pages that arrived meanwhile included; later calls go to the sidecar.
import { expect } from "chai";
import type { Key } from "../../src/gen/aisa/v1/types.js";
import { prefetched } from "../../tui/prefetch.js";
import { FakeAdminApi, makeKey } from "./fakeApi.js";

const tick = (): Promise<void> => new Promise((r) => setImmediate(r));

describe("tui: prefetched first load", () => {
  it("starts WhoAmI and ListKeys at once; the first listener gets the pages so far, then the rest, and the same list", async () => {
    const api = new FakeAdminApi({ keys: Array.from({ length: 2500 }, (_, i) => makeKey(i)) });
    let release = (): void => {};
    api.pageGate = new Promise<void>((r) => (release = r));
    const p = prefetched(api);
    expect(api.calls.map((c) => c.method)).to.deep.equal(["whoAmI", "listKeys"]);
    await tick();

    const who = await p.whoAmI();
    expect(who.tokenId).to.equal("operator");
    const seen: [number, number, readonly Key[]][] = [];
    const list = p.listKeys((loaded, total, page) => seen.push([loaded, total, page]));
    // The first page had arrived before anyone listened: replayed at once.
    expect(seen.map(([l, t]) => [l, t])).to.deep.equal([[1000, 2500]]);
    release();
    const keys = await list;
    expect(seen.map(([l, t]) => [l, t])).to.deep.equal([[1000, 2500], [2000, 2500], [2500, 2500]]);
    expect(seen.flatMap(([, , page]) => page.map((k) => k.id))).to.deep.equal(keys.map((k) => k.id));
    expect(keys).to.have.length(2500);
    // No second call was made for the handed-over ones.
    expect(api.calls.map((c) => c.method)).to.deep.equal(["whoAmI", "listKeys"]);

    // A reload reads afresh.
    await p.whoAmI();
    await p.listKeys();
    expect(api.calls.map((c) => c.method)).to.deep.equal(["whoAmI", "listKeys", "whoAmI", "listKeys"]);
    // Everything else is the api's own.
    await p.listGroups();
    expect(api.calls.at(-1)?.method).to.equal("listGroups");
  });

  it("a failed first call is the first load's failure (no unhandled rejection), and the retry calls again", async () => {
    const api = new FakeAdminApi({ keys: [makeKey(1)] });
    api.down = true;
    const p = prefetched(api);
    await tick();
    let failed = "";
    await p.whoAmI().catch((e: Error) => (failed = e.message));
    expect(failed).to.match(/No connection/);
    api.down = false;
    expect((await p.whoAmI()).tokenId).to.equal("operator");
    expect((await p.listKeys().catch(() => [])).length).to.equal(0); // the prefetched one failed
    expect(await p.listKeys()).to.have.length(1);
  });
});
