// LevelDisk.writeRaw (the group-committed writer's batch): straight to classic-level's `_batch`
// when nothing observes writes, through the public `batch` otherwise; the same bytes either way.
import { expect } from "chai";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { LevelDisk } from "../../src/store/level/disk.js";
import { toRawOps } from "../../src/store/level/codecs.js";

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
    await disk.writeRaw(toRawOps([{ type: "put", sublevel: subs.ledger, key: "r1", value: record }, { type: "put", sublevel: subs.kctr, key: "k1", value: "AQ==", raw: true }]));
    expect([privateCalls, publicCalls]).to.deep.equal([1, 0]);
    const seen: unknown[] = [];
    disk.db.on("write", (ops: unknown[]) => seen.push(...ops));
    await disk.writeRaw(toRawOps([{ type: "put", sublevel: subs.ledger, key: "r2", value: { ...record, requestId: "r2" } }, { type: "del", sublevel: subs.kctr, key: "k1" }]));
    expect(seen).to.have.length(2);
    expect([privateCalls, publicCalls]).to.deep.equal([2, 1]); // the public batch ends in _batch too
    expect(await subs.ledger.get("r1")).to.deep.equal(record);
    expect(await subs.ledger.get("r2")).to.deep.equal({ ...record, requestId: "r2" });
    expect(await subs.kctr.get("k1")).to.equal(undefined);
    expect(await disk.rawGet("ledger", "r1")).to.equal(JSON.stringify(record));
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
