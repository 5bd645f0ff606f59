// An account's time zone changed mid-period (UpdateAccount, issue 19): THE mid-period rule —
// what was spent stays spent and nothing is refilled early. Its keys' refills restart at the
// change and come first at the next boundary in the new zone; on disk as in memory (a restart
// neither refills nor forgets the new start); a refill already due under the old zone is not
// lost. Real LevelDB, injected clock.
import { expect } from "chai";
import { nextBoundary, periodSpec } from "../../src/domain/refill.js";
import { LevelStore } from "../../src/store/level/levelStore.js";
import { removeDir, tempDir } from "../helpers/tmp.js";
import { makeKey } from "./store.contract.js";

const HOUR = 3_600_000;
const T = Date.UTC(2026, 11, 15, 20, 0, 0); // 20:00 UTC = 05:00 next day in Tokyo
const actor = { actor: "operator", action: "Test", target: "t" };

describe("LevelStore: an account's time zone changed mid-period", function () {
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

  it("UTC → Asia/Tokyo at 20:00Z: no refill at the change or on a restart; the first refill at the next Tokyo midnight (15:00Z next day), not the old UTC midnight", async () => {
    let store = await open();
    await store.insertAccount({ id: "acme", name: "Acme", createdAt: T - 10 * HOUR }, 1_000_000, actor);
    const daily = makeKey({ accountId: "acme", quotaTotal: 1000, refill: "daily", createdAt: T - 10 * HOUR, updatedAt: T - 10 * HOUR });
    const plain = makeKey({ accountId: "acme", quotaTotal: 1000 });
    const other = makeKey({ quotaTotal: 1000, refill: "daily", createdAt: T - 10 * HOUR });
    for (const k of [daily, plain, other]) await store.insertKey(k.record, actor);
    await store.consume({ requestId: "r1", keyId: daily.record.id, reservationId: "", model: "", inputTokens: 0, outputTokens: 0, units: 600, now });
    const utcMidnight = Date.UTC(2026, 11, 16);
    expect(store.nextRefillAt(daily.record.id)).to.equal(utcMidnight);

    const after = await store.updateAccount("acme", (a) => ({ ...a, name: "Acme KK", timezone: "Asia/Tokyo" }), (before, a) => ({ ...actor, action: "UpdateAccount", target: "acme", before, after: a }));
    expect(after.record).to.deep.include({ name: "Acme KK", timezone: "Asia/Tokyo" });
    expect(after.counters.balance, "counters untouched").to.equal(1_000_000 - 600);
    const tokyoNext = Date.UTC(2026, 11, 16, 15);
    expect(tokyoNext).to.equal(nextBoundary(periodSpec("daily"), "Asia/Tokyo", T));
    const slot = () => store.index.slotOf(daily.record.id);
    expect(store.index.remaining(slot()), "no free refill at the change").to.equal(400);
    expect(store.nextRefillAt(daily.record.id), "the next Tokyo midnight").to.equal(tokyoNext);
    expect((await store.getKey(daily.record.id))!.counters.refilledAt, "the period restarts at the change").to.equal(T);
    expect(store.nextRefillAt(other.record.id), "another account's key keeps its zone").to.equal(utcMidnight);
    expect(store.nextRefillAt(plain.record.id)).to.equal(null);
    const audit = await store.listAudit({ target: "acme", limit: 5 });
    expect(audit[0]).to.deep.include({ action: "UpdateAccount", target: "acme" });
    await store.close();

    // A restart an hour later (after 21:00Z, before both boundaries): nothing refilled, the new start kept.
    now = T + HOUR;
    store = await open();
    expect(store.index.remaining(slot()), "no refill on reopen").to.equal(400);
    expect(store.nextRefillAt(daily.record.id)).to.equal(tokyoNext);
    expect(store.getAccount("acme")!.record.timezone).to.equal("Asia/Tokyo");
    expect(await store.checkIntegrity()).to.deep.equal([]);
    // The old UTC midnight passes: no refill (the key's period is Tokyo's now); the other account's key refills.
    now = utcMidnight + 1000;
    store.refill(now);
    expect(store.index.remaining(slot()), "not at the old zone's boundary").to.equal(400);
    expect(store.index.remaining(store.index.slotOf(other.record.id))).to.equal(1000);
    now = tokyoNext + 1000;
    store.refill(now);
    expect(store.index.remaining(slot()), "refilled at the new zone's boundary").to.equal(1000);
    await store.close();
  });

  it("a refill already due under the old zone (the tick not yet run) is applied with the change, not lost", async () => {
    const store = await open();
    const k = makeKey({ quotaTotal: 1000, refill: "daily", createdAt: T - 10 * HOUR });
    await store.insertKey(k.record, actor);
    await store.adjustBalance("default", 1_000_000, actor);
    await store.consume({ requestId: "r2", keyId: k.record.id, reservationId: "", model: "", inputTokens: 0, outputTokens: 0, units: 900, now });
    now = Date.UTC(2026, 11, 16, 0, 0, 0, 500); // past UTC midnight; the refill tick has not run
    await store.updateAccount("default", (a) => ({ ...a, timezone: "America/New_York" }), () => actor);
    const slot = store.index.slotOf(k.record.id);
    expect(store.index.remaining(slot), "the UTC period's refill happened").to.equal(1000);
    expect(store.nextRefillAt(k.record.id), "then New York midnight (05:00Z)").to.equal(Date.UTC(2026, 11, 16, 5));
    await store.close();
    const again = await open();
    expect(again.index.remaining(again.index.slotOf(k.record.id)), "persisted").to.equal(1000);
    expect(again.nextRefillAt(k.record.id)).to.equal(Date.UTC(2026, 11, 16, 5));
    await again.close();
  });

  it("NOT_FOUND for an unknown account; a change that throws writes nothing", async () => {
    const store = await open();
    let code = "";
    await store.updateAccount("nobody", (a) => a, () => actor).catch((e) => (code = e.code));
    expect(code).to.equal("NOT_FOUND");
    await store
      .updateAccount("default", () => {
        throw new Error("abort");
      }, () => actor)
      .catch(() => {});
    expect(store.getAccount("default")!.record.timezone).to.equal(undefined);
    await store.close();
  });
});
