// Key refill periods (issue 19 item 1) on the real LevelDB engine: counted in the account's time
// zone, with an anchor and every-N-days, kept across a restart (the projection carries N and the
// anchor), and the mid-period rule — a changed period starts at the change: no free refill,
// the quota left untouched, the first refill at the new period's next boundary.
import { expect } from "chai";
import { LevelStore } from "../../src/store/level/levelStore.js";
import { removeDir, tempDir } from "../helpers/tmp.js";
import { makeKey } from "./store.contract.js";

const T = Date.UTC(2026, 2, 10, 12, 0, 0); // 2026-03-10 12:00 UTC
const audit = { actor: "operator", action: "Test", target: "t" };

describe("LevelStore key refill periods: zones, anchors, mid-period changes", function () {
  this.timeout(30_000);
  let dir: string;
  let now = T;
  let store: LevelStore;
  const clock = () => now;
  const open = async () => {
    const s = new LevelStore({ dir, clock });
    await s.open(now);
    return s;
  };
  const remaining = (id: string) => store.index.remaining(store.index.slotOf(id));
  const spend = (id: string, units: number, rid: string) => store.consume({ requestId: rid, keyId: id, reservationId: "", model: "", inputTokens: 0, outputTokens: 0, units, now });
  const reopenAt = async (t: number) => {
    await store.close();
    now = t;
    store = await open();
  };

  beforeEach(async () => {
    dir = await tempDir();
    now = T;
    store = await open();
    await store.insertAccount({ id: "ny", name: "NY", createdAt: T, timezone: "America/New_York" }, 1_000_000, audit);
  });
  afterEach(async () => {
    await store.close();
    await removeDir(dir);
  });

  it("monthly on day 15 in the account's zone refills at local midnight of the 15th, across a restart", async () => {
    const k = makeKey({ accountId: "ny", quotaTotal: 1000, refill: "monthly", refillAnchor: 15, createdAt: T, updatedAt: T });
    await store.insertKey(k.record, audit);
    await spend(k.record.id, 400, "a");
    await reopenAt(Date.UTC(2026, 2, 15, 3, 59, 59)); // 23:59:59 on the 14th in New York (EDT, −4)
    expect(remaining(k.record.id)).to.equal(600);
    expect(store.book.dump().find((e) => e.id === k.record.id)!.refill).to.deep.include({ period: "monthly", anchor: 15, tz: "America/New_York" });
    await reopenAt(Date.UTC(2026, 2, 15, 4, 0, 0)); // midnight of the 15th in New York
    expect(remaining(k.record.id)).to.equal(1000);
  });

  it("every 14 days from an anchor date, N and anchor kept by the projection", async () => {
    const anchor = Math.floor(Date.UTC(2026, 2, 2) / 86_400_000); // 2026-03-02
    const k = makeKey({ quotaTotal: 100, refill: "daily", refillEvery: 14, refillAnchor: anchor, createdAt: T, updatedAt: T });
    await store.insertKey(k.record, audit);
    await spend(k.record.id, 100, "a");
    await reopenAt(Date.UTC(2026, 2, 15, 23, 0, 0));
    expect(remaining(k.record.id)).to.equal(0);
    expect(store.book.dump().find((e) => e.id === k.record.id)!.refill).to.deep.include({ every: 14, anchor, next: Date.UTC(2026, 2, 16) });
    expect(await store.checkIntegrity()).to.deep.equal([]);
    await reopenAt(Date.UTC(2026, 2, 16, 0, 0, 0));
    expect(remaining(k.record.id)).to.equal(100);
  });

  it("monthly → daily on the 10th: no free refill now, the first one at the next midnight (also after a restart)", async () => {
    const k = makeKey({ quotaTotal: 1000, refill: "monthly", createdAt: T - 20 * 86_400_000, updatedAt: T });
    await store.insertKey(k.record, audit);
    await spend(k.record.id, 900, "a");
    await store.updateKeys([k.record.id], (c) => ({ record: { ...c.record, refill: "daily" } }), () => audit);
    expect(remaining(k.record.id)).to.equal(100);
    await reopenAt(T + 60_000);
    expect(remaining(k.record.id), "no refill on reopen").to.equal(100);
    await reopenAt(Date.UTC(2026, 2, 11));
    expect(remaining(k.record.id)).to.equal(1000);
  });

  it("changing only the anchor also restarts tracking at the change (no refill for the new anchor's already-passed day)", async () => {
    const k = makeKey({ quotaTotal: 1000, refill: "monthly", createdAt: T, updatedAt: T });
    await store.insertKey(k.record, audit);
    await spend(k.record.id, 700, "a");
    // Anchor moved to the 5th on the 10th: the period "since the 5th" already began, but the key
    // gets its first refill on April 5, not now.
    await store.updateKeys([k.record.id], (c) => ({ record: { ...c.record, refillAnchor: 5 } }), () => audit);
    await reopenAt(T + 1000);
    expect(remaining(k.record.id)).to.equal(300);
    expect(store.book.dump().find((e) => e.id === k.record.id)!.refill!.next).to.equal(Date.UTC(2026, 3, 5));
  });

  it("a refill added to a key that already spent leaves its quota as it is until the next boundary", async () => {
    const k = makeKey({ quotaTotal: 1000, createdAt: T - 40 * 86_400_000, updatedAt: T });
    await store.insertKey(k.record, audit);
    await spend(k.record.id, 1000, "a");
    await store.updateKeys([k.record.id], (c) => ({ record: { ...c.record, refill: "weekly", refillAnchor: 3 } }), () => audit);
    expect(remaining(k.record.id), "not over budget, not refilled").to.equal(0);
    await reopenAt(Date.UTC(2026, 2, 11, 0, 0, 0)); // Wednesday 2026-03-11
    expect(remaining(k.record.id)).to.equal(1000);
  });
});
