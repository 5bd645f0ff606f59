// LevelDB's write buffer (`--level-write-buffer-mb`, LevelStoreOptions.writeBufferMb) reaches
// LevelDB and survives the reopen the store makes after its load (unmapLoadedTables): with a
// 1 MB buffer ~3.7 MB of durable Consumes (15,000) switch LevelDB's log several times; with 64 MB the same
// Consumes stay in one log. And after a reopen, everything acknowledged is there.
import { expect } from "chai";
import { readdir } from "node:fs/promises";
import { join } from "node:path";
import { LevelStore } from "../../src/store/level/levelStore.js";
import { removeDir, tempDir } from "../helpers/tmp.js";
import { makeKey } from "./store.contract.js";

const clock = () => Date.UTC(2026, 11, 7, 12, 0, 0);
const actor = { actor: "operator", action: "Test", target: "t" };

/** The number of LevelDB's live log (its file name), which goes up at every memtable switch. */
async function liveLog(dir: string): Promise<number> {
  const logs = (await readdir(join(dir, "db"))).filter((f) => f.endsWith(".log")).map((f) => Number(f.slice(0, -4)));
  return Math.max(...logs);
}

async function consumeMegabytes(mb: number | undefined): Promise<{ switches: number; charged: number; afterReopen: number; acked: number }> {
  const dir = await tempDir();
  try {
    const store = new LevelStore({ dir, clock, writeBufferMb: mb });
    await store.open(clock());
    await store.adjustBalance("default", 1e12, actor);
    const k = makeKey({ unlimited: true, quotaTotal: 0 });
    await store.insertKey(k.record, actor);
    const before = await liveLog(dir);
    // ~250 bytes of log per Consume (the ledger entry is a compact array): 15,000 are ~3.7 MB.
    let seq = 0;
    let acked = 0;
    await Promise.all(
      Array.from({ length: 64 }, async () => {
        while (seq < 15000) {
          await store.consume({ requestId: `wb-${seq++}`, keyId: k.record.id, reservationId: "", model: "gpt-4o-mini", inputTokens: 1200, outputTokens: 300, units: 7, now: clock() });
          acked++;
        }
      }),
    );
    const switches = (await liveLog(dir)) - before;
    const charged = store.getAccount("default")!.counters.charged;
    await store.close();
    const again = new LevelStore({ dir, clock, writeBufferMb: mb });
    await again.open(clock());
    const afterReopen = again.getAccount("default")!.counters.charged;
    await again.close();
    return { switches, charged, afterReopen, acked };
  } finally {
    await removeDir(dir);
  }
}

describe("LevelStore: LevelDB's write buffer (writeBufferMb)", function () {
  this.timeout(60_000);

  it("1 MB switches the log under ~3.7 MB of Consumes; 64 MB keeps them in one log; both keep every acknowledged charge across a reopen", async () => {
    const small = await consumeMegabytes(1);
    const large = await consumeMegabytes(64);
    console.log(`      log switches: ${small.switches} at 1 MB, ${large.switches} at 64 MB`);
    expect(small.switches, "log switches at 1 MB").to.be.at.least(2);
    expect(large.switches, "log switches at 64 MB").to.equal(0);
    for (const r of [small, large]) {
      expect(r.acked).to.equal(15000);
      expect(r.charged).to.equal(15000 * 7);
      expect(r.afterReopen).to.equal(15000 * 7);
    }
  });
});
