// ConsumeService's reservation gate (ext_proc metering's, always set by serve) holds reservations
// only: a Consume by key id or api_key goes straight to the charge without the claiming frame,
// and one by reservation id still asks the gate first. Real LevelStore in a temp dir.
import { expect } from "chai";
import { ConsumeService } from "../../src/service/consume.js";
import { LevelStore } from "../../src/store/level/levelStore.js";
import { makeKey } from "../contract/store.contract.js";
import { removeDir, tempDir } from "../helpers/tmp.js";

describe("ConsumeService: the reservation gate", () => {
  let dir = "";
  let store: LevelStore;
  const actor = { actor: "operator", action: "Test", target: "t" };
  before(async () => {
    dir = await tempDir("aisa-consume-gate-");
    store = new LevelStore({ dir });
    await store.open(Date.now());
    await store.adjustBalance("default", 1_000_000, actor);
  });
  after(async () => {
    await store.close();
    await removeDir(dir);
  });

  it("is not asked for a Consume by key id or api_key (charged once, replayed after), and is asked for one by reservation id", async () => {
    const k = makeKey({ unlimited: true, quotaTotal: 0 });
    await store.insertKey(k.record, actor);
    const claimed: string[] = [];
    const service = new ConsumeService({ store, clock: Date.now });
    service.gate = {
      claim: async (id) => {
        claimed.push(id);
        return undefined;
      },
      unclaim: () => {},
    };
    const byKey = { requestId: "g-1", target: { keyId: k.record.id }, model: "", inputTokens: 0, outputTokens: 0, units: 7 };
    expect(await service.consume(byKey)).to.deep.include({ replayed: false });
    expect((await service.consume(byKey)).replayed).to.equal(true);
    const bySecret = { requestId: "g-2", target: { apiKey: k.secret }, model: "", inputTokens: 0, outputTokens: 0, units: 5 };
    expect((await service.consume(bySecret)).record.units).to.equal(5);
    expect(claimed).to.deep.equal([]);
    // A reservation the store does not hold: the gate is asked, then NOT_FOUND names it.
    const err = await service.consume({ requestId: "g-3", target: { reservationId: "rsv_none" }, model: "", inputTokens: 0, outputTokens: 0, units: 1 }).then(
      () => null,
      (e: Error) => e,
    );
    expect(claimed).to.deep.equal(["rsv_none"]);
    expect(err?.message).to.match(/rsv_none/);
  });
});
