// The LevelDB engine's group commit (src/store/level/writer.ts), on real LevelDB: C callers in a
// closed loop, each awaiting its durable Consume and then sending the next, are all released by
// one commit, and all of them go into the next batch: one synced write per C Consumes. (A batch
// started at the first submission took that one alone, and batches alternated 1 and C − 1.)
import { expect } from "chai";
import { LevelStore } from "../../src/store/level/levelStore.js";
import { removeDir, tempDir } from "../helpers/tmp.js";
import { makeKey } from "./store.contract.js";

describe("LevelStore group commit", () => {
  let dir: string;
  let store: LevelStore;
  const actor = { actor: "operator", action: "Test", target: "t" };
  beforeEach(async () => {
    dir = await tempDir();
    store = new LevelStore({ dir });
    await store.open(Date.now());
    await store.adjustBalance("default", 1e9, actor);
  });
  afterEach(async () => {
    await store.close();
    await removeDir(dir);
  });

  async function closedLoop(callers: number, rounds: number, keyIds: string[], lateStart?: Promise<unknown>): Promise<number[]> {
    const batches: number[] = [];
    store.onBatch = (submissions) => batches.push(submissions);
    let seq = 0;
    await Promise.all(
      Array.from({ length: callers }, async (_, w) => {
        // Half the callers start while the first batch is being synced (lateStart).
        if (lateStart && w % 2 === 1) await lateStart;
        for (let r = 0; r < rounds; r++) {
          const res = await store.consume({ requestId: `gc-${seq++}`, keyId: keyIds[w % keyIds.length]!, reservationId: "", model: "m", inputTokens: 1, outputTokens: 1, units: 3, now: Date.now() });
          expect(res.replayed).to.equal(false);
        }
      }),
    );
    store.onBatch = undefined;
    return batches;
  }

  it("puts every caller a commit released into the next batch: C Consumes per synced write", async () => {
    const keys: string[] = [];
    for (let i = 0; i < 8; i++) {
      const k = makeKey({ unlimited: true, quotaTotal: 0 });
      await store.insertKey(k.record, actor);
      keys.push(k.record.id);
    }
    const batches = await closedLoop(16, 5, keys);
    expect(batches).to.deep.equal([16, 16, 16, 16, 16]);
    // Every Consume was charged once, and is on disk.
    const reopened = dir;
    await store.close();
    store = new LevelStore({ dir: reopened });
    await store.open(Date.now());
    const acct = await store.getAccount("default");
    expect(acct!.counters.balance).to.equal(1e9 - 16 * 5 * 3);
  });

  it("starts a lone submission's batch by itself (no caller waits for company that is not coming)", async () => {
    const k = makeKey({ unlimited: true, quotaTotal: 0 });
    await store.insertKey(k.record, actor);
    const batches = await closedLoop(1, 4, [k.record.id]);
    expect(batches).to.deep.equal([1, 1, 1, 1]);
  });

  it("callers that came during a sync and callers its commit released go into one batch: halves merge", async () => {
    const keys: string[] = [];
    for (let i = 0; i < 8; i++) {
      const k = makeKey({ unlimited: true, quotaTotal: 0 });
      await store.insertKey(k.record, actor);
      keys.push(k.record.id);
    }
    // The late half submits while the first batch (the early half) is in the thread pool.
    const late = new Promise((r) => setTimeout(r, 0));
    const batches = await closedLoop(16, 6, keys, late);
    // A batch started at once after a commit held only what came during the sync: 8, 8, 8, …
    // for ever. Started in the next tick, it also holds the callers the commit released, so the
    // halves merge once the late half lands during a sync (when exactly depends on the disk's
    // timing: the second or third batch), and stay merged.
    expect(batches[0]).to.equal(8);
    expect(batches.filter((b) => b === 16).length, `batches ${batches.join(", ")}`).to.be.at.least(3);
    expect(batches.reduce((a, b) => a + b, 0)).to.equal(16 * 6);
  });
});
