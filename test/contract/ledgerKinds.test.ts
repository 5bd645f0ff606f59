// The ledger entry's token kinds and source, as the LevelDB engine writes and reads them: a live
// key's charge and a deleted key's, across a reopen.
import { expect } from "chai";
import { LevelStore } from "../../src/store/level/levelStore.js";
import { removeDir, tempDir } from "../helpers/tmp.js";
import { makeKey } from "./store.contract.js";

const NOW = Date.UTC(2026, 10, 27, 12, 0, 0);
const actor = { actor: "operator", action: "Test", target: "t" };

describe("LevelStore ledger: token kinds and source", () => {
  let dir = "";
  before(async () => {
    dir = await tempDir();
  });
  after(async () => {
    await removeDir(dir);
  });

  it("keeps the kinds (when not 0) and the source of live and deleted keys' charges, across a reopen", async () => {
    let store = new LevelStore({ dir, clock: () => NOW });
    await store.open(NOW);
    await store.adjustBalance("default", 10_000, actor);
    const a = makeKey();
    const b = makeKey();
    await store.insertKey(a.record, actor);
    await store.insertKey(b.record, actor);
    await store.consume({ requestId: "live", keyId: a.record.id, reservationId: "", model: "m", inputTokens: 100, outputTokens: 50, units: 9, now: NOW, cacheReadTokens: 60, cacheWriteTokens: 0, reasoningTokens: 20, source: "ext_proc" });
    await store.deleteKeys([b.record.id], () => {}, () => actor);
    await store.consume({ requestId: "deleted", keyId: b.record.id, reservationId: "", model: "m", inputTokens: 10, outputTokens: 5, units: 3, now: NOW, cacheWriteTokens: 4 });
    await store.close();
    store = new LevelStore({ dir, clock: () => NOW });
    await store.open(NOW);
    try {
      const live = (await store.findConsume("live"))!;
      expect(live).to.deep.include({ cacheReadTokens: 60, reasoningTokens: 20, source: "ext_proc" });
      expect(live).to.not.have.property("cacheWriteTokens");
      expect(await store.findConsume("deleted")).to.deep.include({ accountId: "default", cacheWriteTokens: 4, source: "consume" });
    } finally {
      await store.close();
    }
  });
});
