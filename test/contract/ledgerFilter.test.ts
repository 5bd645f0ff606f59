// The ledger's filter of written request ids (src/store/level/ledgerFilter.ts): a Consume whose
// id it lacks skips the ledger read, so it must never lack an id that was written — not after a
// restart (the ids on disk come back by the scan at open), not while that scan runs, not when it
// outgrows its memory bound. Real LevelDB in temp dirs.
import { expect } from "chai";
import { LedgerFilter } from "../../src/store/level/ledgerFilter.js";
import { SCAN_RETRY_MS } from "../../src/store/level/ledger.js";
import { LevelStore } from "../../src/store/level/levelStore.js";
import { removeDir, tempDir } from "../helpers/tmp.js";
import { makeKey } from "./store.contract.js";

const UNITS = 7;
const audit = { actor: "check", action: "seed", target: "*" };

describe("LedgerFilter", () => {
  const ids = (n: number, p: string) => Array.from({ length: n }, (_, i) => `${p}-${i.toString(36)}-${(i * 2654435761) % 1000003}`);

  it("lacks nothing until ready; then never an added id, and few others (~1 %)", () => {
    const f = new LedgerFilter();
    const added = ids(300_000, "a");
    for (const id of added) f.add(id);
    expect(f.lacks("never")).to.equal(false);
    f.markReady();
    expect(added.filter((id) => f.lacks(id))).to.deep.equal([]);
    const others = ids(100_000, "b");
    const fp = others.filter((id) => !f.lacks(id)).length / others.length;
    expect(fp).to.be.below(0.05);
    expect(f.size).to.equal(300_000);
  });

  it("past its memory bound it stops answering (lacks nothing) rather than drop an id", () => {
    const f = new LedgerFilter(200_000); // bytes: the first stage (128 KB) fits, the second (256 KB) does not
    f.markReady();
    const added = ids(200_000, "c");
    for (const id of added) f.add(id);
    expect(f.answering).to.equal(false);
    expect(f.lacks("never")).to.equal(false);
    expect(added.some((id) => f.lacks(id))).to.equal(false);
    expect(f.bytes).to.be.at.most(200_000);
  });
});

describe("LevelStore: the ledger filter and replays", function () {
  this.timeout(30_000);
  let dir: string;
  let store: LevelStore;
  const key = makeKey({ quotaTotal: 1e9 });
  const keyId = key.record.id;
  const input = (requestId: string) => ({ requestId, keyId, reservationId: "", model: "m", inputTokens: 1, outputTokens: 1, units: UNITS, now: Date.now() });
  const used = () => store.index.used(store.index.slotOf(keyId));
  /** `scanAtOpenMs` 0: the whole scan runs in the background, after open. */
  const open = async (scanAtOpenMs?: number) => {
    store = new LevelStore({ dir, ledgerScanAtOpenMs: scanAtOpenMs });
    await store.open(Date.now());
  };
  const answering = async () => {
    for (let i = 0; i < 500 && !store.ledgerFilter.answering; i++) await new Promise((r) => setTimeout(r, 10));
    expect(store.ledgerFilter.answering, "the scan at open finished").to.equal(true);
  };

  beforeEach(async () => {
    dir = await tempDir();
    await open();
    await store.adjustBalance("default", 1e12, audit);
    await store.importKeys([key.record], audit);
  });
  afterEach(async () => {
    await store.close();
    await removeDir(dir);
  });

  it("after a reopen, every id charged before is answered from the ledger (a replay, charged once)", async () => {
    const N = 3000;
    const rids = Array.from({ length: N }, (_, i) => `before-${i}`);
    await answering();
    for (let i = 0; i < N; i += 500) await Promise.all(rids.slice(i, i + 500).map((r) => store.consume(input(r))));
    expect(used()).to.equal(N * UNITS);
    await store.close();
    await open();
    await answering();
    expect(store.ledgerFilter.size).to.be.at.least(N);
    for (const r of rids) {
      const found = await store.findConsume(r);
      expect(found?.requestId, r).to.equal(r);
      expect((await store.consume(input(r))).replayed, r).to.equal(true);
    }
    expect(used()).to.equal(N * UNITS);
    // A fresh id is charged, once.
    expect(await store.findConsume("fresh")).to.equal(undefined);
    expect((await store.consume(input("fresh"))).replayed).to.equal(false);
    expect((await store.consume(input("fresh"))).replayed).to.equal(true);
    expect(used()).to.equal((N + 1) * UNITS);
  });

  it("a replay while the scan at open has not finished is still a replay", async () => {
    await store.consume(input("early"));
    await store.close();
    await open(0);
    expect(store.ledgerFilter.answering, "scanning in the background").to.equal(false);
    // Straight after open: the scan has at most started; the filter lacks nothing yet.
    const r = await store.consume(input("early"));
    expect(r.replayed).to.equal(true);
    expect(used()).to.equal(UNITS);
  });

  it("a failed write's recovery (LevelDB reopened) while the scan at open runs: the scan resumes, the filter answers again, replays stay replays", async () => {
    const N = 60_000;
    await answering();
    for (let i = 0; i < N; i += 1000) await Promise.all(Array.from({ length: 1000 }, (_, j) => store.consume(input(`r-${i + j}`))));
    await store.close();
    let fail = false;
    store = new LevelStore({ dir, faultInjector: () => (fail ? new Error("test: EIO") : null), onError: () => {}, ledgerScanAtOpenMs: 0 });
    await store.open(Date.now());
    fail = true;
    const err = await store.consume(input("during")).then(
      () => undefined,
      (e: unknown) => e,
    );
    fail = false;
    expect(String(err)).to.match(/unavailable|EIO|recover/i);
    expect(store.ledgerFilter.answering, "the scan had not finished when the write failed").to.equal(false);
    expect(store.needsRecovery).to.equal(true);
    await store.recover();
    expect(store.needsRecovery).to.equal(false);
    await answering();
    expect(store.ledgerFilter.size).to.be.at.least(N);
    for (const r of ["r-0", `r-${N >> 1}`, `r-${N - 1}`]) expect((await store.consume(input(r))).replayed, r).to.equal(true);
    expect(used()).to.equal(N * UNITS);
    // The failed Consume was never acknowledged nor written: a fresh charge now, once.
    expect((await store.consume(input("during"))).replayed).to.equal(false);
    expect((await store.consume(input("during"))).replayed).to.equal(true);
    expect(used()).to.equal((N + 1) * UNITS);
  });

  it("open scans the ledger within its load (answering at ready); a scan paused by its budget resumes in the background where it stopped", async () => {
    const N = 20_000;
    await answering();
    for (let i = 0; i < N; i += 1000) await Promise.all(Array.from({ length: 1000 }, (_, j) => store.consume(input(`s-${i + j}`))));
    await store.close();
    await open();
    expect(store.ledgerFilter.answering, "a small ledger is scanned before open resolves").to.equal(true);
    expect(store.ledgerFilter.size).to.equal(N);
    await store.close();
    // A budget of 1 ms pauses the scan within open after a step or two; the rest resumes after it.
    await open(1);
    await answering();
    // Resumed where it stopped: every id once (a restart from the start would add some twice).
    expect(store.ledgerFilter.size).to.equal(N);
    for (const r of ["s-0", `s-${N >> 1}`, `s-${N - 1}`]) expect((await store.consume(input(r))).replayed, r).to.equal(true);
    expect(used()).to.equal(N * UNITS);
  });

  it("a scan that fails on a read error (no recovery comes) retries by itself: replays stay replays meanwhile, then the filter answers", async () => {
    const N = 5000;
    await answering();
    for (let i = 0; i < N; i += 1000) await Promise.all(Array.from({ length: 1000 }, (_, j) => store.consume(input(`f-${i + j}`))));
    await store.close();
    let failures = 2;
    const errors: unknown[] = [];
    store = new LevelStore({ dir, ledgerScanAtOpenMs: 0, onError: (e) => errors.push(e), ledgerScanFault: () => (failures-- > 0 ? new Error("test: EIO reading the ledger") : null) });
    const opened = Date.now();
    await store.open(opened);
    // Two failed scans (retried after SCAN_RETRY_MS, then twice that), no write failed: no recovery.
    for (let i = 0; i < 20 && errors.length < 1; i++) await new Promise((r) => setTimeout(r, 10));
    expect(errors.map(String)).to.deep.equal(["Error: test: EIO reading the ledger"]);
    expect(store.needsRecovery, "a failed read is not a failed write").to.equal(false);
    expect(store.ledgerFilter.answering).to.equal(false);
    expect((await store.consume(input("f-7"))).replayed, "a replay while the filter is off").to.equal(true);
    for (let i = 0; i < 600 && !store.ledgerFilter.answering; i++) await new Promise((r) => setTimeout(r, 10));
    expect(store.ledgerFilter.answering, "the scan retried by itself and reached the end").to.equal(true);
    expect(errors.length).to.equal(2);
    expect(Date.now() - opened, "retried after 1 s, then 2 s").to.be.at.least(3 * SCAN_RETRY_MS - 50);
    expect(store.ledgerFilter.size).to.equal(N);
    for (const r of ["f-0", `f-${N >> 1}`, `f-${N - 1}`]) expect((await store.consume(input(r))).replayed, r).to.equal(true);
    expect((await store.consume(input("new"))).replayed).to.equal(false);
    expect(used()).to.equal((N + 1) * UNITS);
  });

  it("at its memory bound (ledgerFilterMaxBytes) it tells once and stops answering: every id is read, replays stay replays", async () => {
    await store.close();
    const full: [number, number][] = [];
    // 200,000 bytes: the first stage (65,536 ids, 128 KB) fits, the second (256 KB) does not.
    store = new LevelStore({ dir, ledgerFilterMaxBytes: 200_000, onLedgerFilterFull: (ids, bytes) => full.push([ids, bytes]) });
    await store.open(Date.now());
    await answering();
    const N = 65_536 + 100;
    for (let i = 0; i < N; i += 2000) await Promise.all(Array.from({ length: Math.min(2000, N - i) }, (_, j) => store.consume(input(`b-${i + j}`))));
    expect(full, "told once, when the 65,537th id found no room").to.deep.equal([[65_536, 131_072]]);
    expect(store.ledgerFilter.full).to.equal(true);
    expect(store.ledgerFilter.answering).to.equal(false);
    for (const r of ["b-0", "b-65535", `b-${N - 1}`]) expect((await store.consume(input(r))).replayed, r).to.equal(true);
    expect((await store.consume(input("after-full"))).replayed).to.equal(false);
    expect((await store.consume(input("after-full"))).replayed).to.equal(true);
    expect(used()).to.equal((N + 1) * UNITS);
    expect(full.length).to.equal(1);
  });

  it("an id charged after the filter answers is a replay at once (added before its write)", async () => {
    await answering();
    const first = store.consume(input("now"));
    const second = store.consume(input("now"));
    expect((await first).replayed).to.equal(false);
    expect((await second).replayed).to.equal(true);
    expect((await store.consume(input("now"))).replayed).to.equal(true);
    expect(used()).to.equal(UNITS);
  });
});
