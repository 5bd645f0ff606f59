// LevelDisk.writeRaw (the group-committed writer's batch): into the disk's one reusable native
// WriteBatch when nothing observes writes, through the public `batch` otherwise (and `_batch`
// while the native batch is being written); the same bytes either way. LevelDisk.rawGetMany
// (Consume's ledger read): the stored texts, straight from classic-level's `_getMany`.
import { expect } from "chai";
import { mkdtempSync, rmSync } from "node:fs";
import { createRequire } from "node:module";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { LevelDisk, NATIVE_BATCH_MAX_OPS } from "../../src/store/level/disk.js";
import { toRawOps } from "../../src/store/level/codecs.js";
import { LevelStore } from "../../src/store/level/levelStore.js";
import { makeKey } from "../contract/store.contract.js";

/** Counts the database's array-form writes (classic-level's `_batch`) from now on. */
function countArrayBatches(disk: LevelDisk): () => number {
  const db = disk.db as any;
  const direct = db._batch;
  let n = 0;
  db._batch = function (this: unknown, ...a: unknown[]) {
    n++;
    return direct.apply(this, a);
  };
  return () => n;
}

/** classic-level's native binding, as disk.ts reaches it: its batch_write counted while `fn` runs. */
async function countingNativeWrites<T>(fn: (count: () => number) => Promise<T>): Promise<T> {
  const binding = createRequire(createRequire(import.meta.url).resolve("classic-level"))("./binding.js");
  const write = binding.batch_write;
  let n = 0;
  binding.batch_write = (...a: unknown[]) => {
    n++;
    return write(...a);
  };
  try {
    return await fn(() => n);
  } finally {
    binding.batch_write = write;
  }
}

describe("LevelDisk.writeRaw", () => {
  let dir: string;
  let disk: LevelDisk;
  beforeEach(async () => {
    dir = mkdtempSync(join(tmpdir(), "aisa-rawbatch-"));
    disk = new LevelDisk(dir);
    await disk.open();
  });
  afterEach(async () => {
    await disk.db.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it("writes what the sublevels read back, with and without a write listener (which then sees the ops)", async () => {
    const subs = disk.subs;
    const record = { requestId: "r1", units: 5, model: "gpt-4o-mini" };
    const db = disk.db as any;
    const [direct, pub] = [db._batch, db.batch];
    let privateCalls = 0;
    let publicCalls = 0;
    db._batch = function (this: unknown, ...a: unknown[]) {
      privateCalls++;
      return direct.apply(this, a);
    };
    db.batch = function (this: unknown, ...a: unknown[]) {
      publicCalls++;
      return pub.apply(this, a);
    };
    const native = await countingNativeWrites(async (count) => {
      await disk.writeRaw(toRawOps([{ type: "put", sublevel: subs.ledger, key: "r1", value: record }, { type: "put", sublevel: subs.kctr, key: "k1", value: "AQ==", raw: true }]));
      return count();
    });
    expect([native, privateCalls, publicCalls]).to.deep.equal([1, 0, 0]);
    const seen: unknown[] = [];
    disk.db.on("write", (ops: unknown[]) => seen.push(...ops));
    await disk.writeRaw(toRawOps([{ type: "put", sublevel: subs.ledger, key: "r2", value: { ...record, requestId: "r2" } }, { type: "del", sublevel: subs.kctr, key: "k1" }]));
    expect(seen).to.have.length(2);
    expect([privateCalls, publicCalls]).to.deep.equal([1, 1]); // the public batch ends in _batch
    expect(await subs.ledger.get("r1")).to.deep.equal(record);
    expect(await subs.ledger.get("r2")).to.deep.equal({ ...record, requestId: "r2" });
    expect(await subs.kctr.get("k1")).to.equal(undefined);
    expect(await disk.rawGet("ledger", "r1")).to.equal(JSON.stringify(record));
  });

  it("reuses one native batch: each write carries only its own ops (a later write does not redo an earlier one)", async () => {
    const subs = disk.subs;
    await countingNativeWrites(async (count) => {
      await disk.writeRaw(toRawOps([{ type: "put", sublevel: subs.meta, key: "x", value: 1 }]));
      await subs.meta.del("x"); // not through the native batch
      await disk.writeRaw(toRawOps([{ type: "put", sublevel: subs.meta, key: "y", value: 2 }]));
      await disk.writeRaw(toRawOps([{ type: "del", sublevel: subs.meta, key: "y" }, { type: "put", sublevel: subs.meta, key: "z", value: 3 }]));
      expect(count()).to.equal(3);
    });
    expect(await subs.meta.get("x")).to.equal(undefined);
    expect(await subs.meta.get("y")).to.equal(undefined);
    expect(await subs.meta.get("z")).to.equal(3);
  });

  it("a write while the native batch is being written takes the array form; both land", async () => {
    const subs = disk.subs;
    const arrayBatches = countArrayBatches(disk);
    await Promise.all([disk.writeRaw(toRawOps([{ type: "put", sublevel: subs.meta, key: "a", value: "A" }])), disk.writeRaw(toRawOps([{ type: "put", sublevel: subs.meta, key: "b", value: "B" }]))]);
    expect(arrayBatches()).to.equal(1);
    expect([await subs.meta.get("a"), await subs.meta.get("b")]).to.deep.equal(["A", "B"]);
  });

  it(`a batch of more than NATIVE_BATCH_MAX_OPS (${NATIVE_BATCH_MAX_OPS}) ops takes the array form (the reused native buffer would keep its size)`, async () => {
    const subs = disk.subs;
    const arrayBatches = countArrayBatches(disk);
    const big = Array.from({ length: NATIVE_BATCH_MAX_OPS + 1 }, (_, i) => ({ type: "put" as const, sublevel: subs.meta, key: `k${i}`, value: i }));
    const native = await countingNativeWrites(async (count) => {
      await disk.writeRaw(toRawOps(big));
      await disk.writeRaw(toRawOps(big.slice(0, NATIVE_BATCH_MAX_OPS)));
      return count();
    });
    expect([native, arrayBatches()]).to.deep.equal([1, 1]);
    expect(await subs.meta.get(`k${NATIVE_BATCH_MAX_OPS}`)).to.equal(NATIVE_BATCH_MAX_OPS);
  });

  it("the native batch still writes after the database is closed and reopened (its context is the database object's)", async () => {
    const subs = disk.subs;
    await disk.writeRaw(toRawOps([{ type: "put", sublevel: subs.meta, key: "before", value: 1 }]));
    await disk.reopen();
    await countingNativeWrites(async (count) => {
      await disk.writeRaw(toRawOps([{ type: "put", sublevel: subs.meta, key: "after", value: 2 }]));
      expect(count()).to.equal(1);
    });
    await disk.reopen();
    expect([await subs.meta.get("before"), await subs.meta.get("after")]).to.deep.equal([1, 2]);
  });

  it("rawGetMany: the stored texts in the keys' order, undefined where absent; a closed database refuses", async () => {
    const subs = disk.subs;
    await subs.ledger.put("r1", { requestId: "r1" });
    await subs.ledger.put("r3", { requestId: "r3", units: 7 });
    await subs.kctr.put("r2", "not the ledger's");
    expect(await disk.rawGetMany("ledger", ["r3", "r2", "r1", "r4"])).to.deep.equal([JSON.stringify({ requestId: "r3", units: 7 }), undefined, JSON.stringify({ requestId: "r1" }), undefined]);
    expect(await disk.rawGetMany("ledger", [])).to.deep.equal([]);
    await disk.db.close();
    let err: any;
    await disk.rawGetMany("ledger", ["r1"]).catch((e) => (err = e));
    expect(err?.code).to.equal("LEVEL_DATABASE_NOT_OPEN");
    await disk.open();
  });

  it("refuses a put whose value does not encode (undefined), as the public batch did", () => {
    expect(() => toRawOps([{ type: "put", sublevel: disk.subs.ledger, key: "x", value: undefined }])).to.throw(TypeError, /the value is undefined/);
  });

  it("a closed database refuses the write (the public batch's error)", async () => {
    await disk.db.close();
    let err: any;
    await disk.writeRaw([{ type: "put", key: "!meta!x", value: "1" }]).catch((e) => (err = e));
    expect(err?.code).to.equal("LEVEL_DATABASE_NOT_OPEN");
    await disk.open();
  });
});

describe("Consume's ledger read of a stored entry that does not decode", () => {
  it("fails the Consume as UNAVAILABLE, names the record in the log, and charges nothing", async () => {
    const dir = mkdtempSync(join(tmpdir(), "aisa-rawledger-"));
    const errors: unknown[] = [];
    try {
      const actor = { actor: "operator", action: "Test", target: "t" };
      let store = new LevelStore({ dir });
      await store.open(Date.now());
      await store.adjustBalance("default", 1000, actor);
      const k = makeKey({ unlimited: true, quotaTotal: 0 });
      await store.insertKey(k.record, actor);
      await store.close();
      const disk = new LevelDisk(dir);
      await disk.open();
      await disk.writeRaw([{ type: "put", key: disk.subs.ledger.prefix + "req-bad", value: "{not json" }]);
      await disk.db.close();
      store = new LevelStore({ dir, onError: (e) => errors.push(e) });
      await store.open(Date.now());
      let err: any;
      await store.consume({ requestId: "req-bad", keyId: k.record.id, reservationId: "", model: "m", inputTokens: 1, outputTokens: 1, units: 5, now: Date.now() }).catch((e) => (err = e));
      expect(err?.code).to.equal("UNAVAILABLE");
      expect(errors.map(String).join("\n")).to.include('record ledger/"req-bad" does not decode');
      expect(store.getAccount("default")!.counters.balance).to.equal(1000);
      // Another request id is charged as usual.
      const ok = await store.consume({ requestId: "req-good", keyId: k.record.id, reservationId: "", model: "m", inputTokens: 1, outputTokens: 1, units: 5, now: Date.now() });
      expect(ok.replayed).to.equal(false);
      expect(store.getAccount("default")!.counters.balance).to.equal(995);
      await store.close();
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
