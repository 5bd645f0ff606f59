// The Consume fast path (LevelStore keeps "not in the ledger" answers of findConsume for the
// consume() that follows) under races: many actors doing what ConsumeService does
// (findConsume, then consume) on few request ids with random delays, plus the interleavings
// that must not be cached (a read in flight while a consume of the same id commits). Every
// request id is charged exactly once, before and after a restart. Real LevelDB in a temp dir.
import { expect } from "chai";
import { hashSecretBytes } from "../../src/keys/secrets.js";
import { LevelStore } from "../../src/store/level/levelStore.js";
import { removeDir, tempDir } from "../helpers/tmp.js";
import { makeKey } from "./store.contract.js";

const UNITS = 7;
const audit = { actor: "check", action: "seed", target: "*" };

describe("LevelStore Consume races", function () {
  this.timeout(30_000);
  let dir: string;
  let store: LevelStore;
  const key = makeKey({ quotaTotal: 1e9 });
  const keyId = key.record.id;
  const input = (requestId: string, reservationId = "") => ({ requestId, keyId, reservationId, model: "m", inputTokens: 1, outputTokens: 1, units: UNITS, now: Date.now() });
  const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
  const used = () => store.index.used(store.index.slotOf(keyId));

  beforeEach(async () => {
    dir = await tempDir();
    store = new LevelStore({ dir });
    await store.open(Date.now());
    await store.adjustBalance("default", 1e12, audit);
    await store.importKeys([key.record], audit);
  });
  afterEach(async () => {
    await store.close();
    await removeDir(dir);
  });

  it("service-like actors (findConsume, then consume; 10 per request id) charge each id once", async () => {
    const IDS = 50;
    let charged = 0;
    await Promise.all(
      Array.from({ length: IDS * 10 }, async (_, a) => {
        const rid = `r${a % IDS}`;
        await sleep(Math.random() * 30);
        if (await store.findConsume(rid)) return;
        if (Math.random() < 0.5) await sleep(Math.random() * 10);
        if (!(await store.consume(input(rid))).replayed) charged++;
      }),
    );
    expect(charged).to.equal(IDS);
    expect(used()).to.equal(IDS * UNITS);
    await store.close();
    store = new LevelStore({ dir });
    await store.open(Date.now());
    expect(used()).to.equal(IDS * UNITS);
  });

  it("a kept 'not found', a consume, then a retry: the retry is a replay", async () => {
    await store.findConsume("seq");
    expect((await store.consume(input("seq"))).replayed).to.equal(false);
    expect((await store.consume(input("seq"))).replayed).to.equal(true);
    expect(used()).to.equal(UNITS);
  });

  it("a read in flight while a consume of the same id commits is not kept", async () => {
    const read = store.findConsume("overlap");
    await store.consume(input("overlap"));
    await read;
    expect((await store.consume(input("overlap"))).replayed).to.equal(true);
    expect(used()).to.equal(UNITS);
  });

  it("concurrent Consumes of one reservation settle it once and charge once", async () => {
    const snap = store.lookup(hashSecretBytes(key.secret), Date.now())!;
    const r = store.reserve({ handle: snap.handle, keyId, units: 100, now: Date.now(), ttlMs: 60_000 });
    if (!r.ok) throw new Error(r.reason);
    const results = await Promise.all(Array.from({ length: 20 }, () => store.consume(input("one", r.reservationId))));
    expect(results.filter((x) => !x.replayed)).to.have.length(1);
    expect(store.openReservations).to.equal(0);
    expect(store.index.reserved(snap.handle)).to.equal(0);
    expect(used()).to.equal(UNITS);
  });
});
