// A refill turned on by an update starts its period when the update commits, on disk as in
// memory: a restart in the same period must not start it at the key's createdAt (which would
// reset the quota at once — a free refill), and the next boundary still refills. Real LevelDB.
import { expect } from "chai";
import { LevelStore } from "../../src/store/level/levelStore.js";
import { removeDir, tempDir } from "../helpers/tmp.js";
import { makeKey } from "./store.contract.js";

const DAY = 86_400_000;
const T = Date.UTC(2026, 11, 15, 12, 0, 0); // mid-month, mid-day
const actor = { actor: "operator", action: "Test", target: "t" };

describe("LevelStore: a refill turned on by an update", function () {
  this.timeout(30_000);
  let dir: string;
  let now = T;
  const clock = () => now;
  const open = async () => {
    const s = new LevelStore({ dir, clock });
    await s.open(now);
    return s;
  };

  beforeEach(async () => {
    dir = await tempDir();
    now = T;
  });
  afterEach(async () => {
    await removeDir(dir);
  });

  for (const period of ["daily", "weekly", "monthly"] as const) {
    it(`${period}: keeps the charges across a restart in the same period, refills at the next boundary`, async () => {
      let store = await open();
      // Created 40 days ago: a period counted from createdAt would already have turned.
      const k = makeKey({ quotaTotal: 1000, createdAt: T - 40 * DAY, updatedAt: T - 40 * DAY });
      await store.insertKey(k.record, actor);
      await store.adjustBalance("default", 1_000_000, actor);
      await store.consume({ requestId: `r-${period}`, keyId: k.record.id, reservationId: "", model: "", inputTokens: 0, outputTokens: 0, units: 300, now });
      await store.updateKeys([k.record.id], (c) => ({ record: { ...c.record, refill: period } }), () => actor);
      const slot = () => store.index.slotOf(k.record.id);
      expect(store.index.remaining(slot())).to.equal(700);
      await store.close();

      now = T + 60_000; // a minute later, same period
      store = await open();
      expect(store.index.remaining(slot()), "no refill on reopen").to.equal(700);
      expect(await store.checkIntegrity()).to.deep.equal([]);
      await store.close();

      now = T + 32 * DAY; // past the next boundary of every period
      store = await open();
      expect(store.index.remaining(slot()), "refilled at the boundary").to.equal(1000);
      expect(store.index.used(slot())).to.equal(300);
      await store.close();
    });
  }
});
