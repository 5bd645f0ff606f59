// The ledger's stored form (schema 4, store/level/codecs.ts): new entries are compact arrays,
// entries written by schema 3 stay JSON objects, and a schema-3 data dir opens, is marked 4
// (nothing rewritten), and every entry of either form reads, replays, scans and exports as the
// record it holds. Real LevelDB in a temp dir.
import { expect } from "chai";
import { Level } from "level";
import { join } from "node:path";
import { StoreUnavailableError } from "../../src/domain/errors.js";
import { LevelStore } from "../../src/store/level/levelStore.js";
import { LevelPortable } from "../../src/store/level/portable.js";
import type { ConsumeRecord } from "../../src/store/types.js";
import { removeDir, tempDir } from "../helpers/tmp.js";
import { makeKey } from "./store.contract.js";

const clock = () => Date.UTC(2026, 11, 8, 3, 0, 0);
const actor = { actor: "operator", action: "Test", target: "t" };

/** The ledger's stored texts and the schema marker, read with LevelDB directly. */
async function rawLedger(dir: string): Promise<{ texts: Map<string, string>; schema: unknown }> {
  const db = new Level<string, string>(join(dir, "db"), { valueEncoding: "utf8" });
  await db.open();
  try {
    const texts = new Map<string, string>();
    for await (const [k, v] of db.sublevel<string, string>("ledger", { valueEncoding: "utf8" }).iterator()) texts.set(k, v);
    const schema = await db.sublevel<string, unknown>("meta", { valueEncoding: "json" }).get("schema");
    return { texts, schema };
  } finally {
    await db.close();
  }
}

describe("LevelStore: the ledger's stored form (schema 4)", function () {
  this.timeout(30_000);
  let dir: string;
  beforeEach(async () => {
    dir = await tempDir();
  });
  afterEach(async () => {
    await removeDir(dir);
  });

  it("new entries are compact arrays without the request id; a schema-3 dir's object entries read, replay, scan and export alongside them", async () => {
    const store = new LevelStore({ dir, clock });
    await store.open(clock());
    await store.adjustBalance("default", 1e9, actor);
    const k = makeKey({ unlimited: true, quotaTotal: 0 });
    await store.insertKey(k.record, actor);
    const first: ConsumeRecord[] = [];
    for (let i = 0; i < 3; i++) {
      const input = { requestId: `new-${i}`, keyId: k.record.id, reservationId: "", model: "gpt-4o-mini", inputTokens: 1200 + i, outputTokens: 300, units: 7, now: clock(), ...(i === 2 ? { cacheReadTokens: 100, reasoningTokens: 20 } : {}) };
      first.push((await store.consume(input)).record);
    }
    await store.close();

    let raw = await rawLedger(dir);
    expect(raw.schema).to.equal(4);
    for (const r of first) {
      const text = raw.texts.get(r.requestId)!;
      expect(text.startsWith(`["${k.record.id}",`), text).to.equal(true);
      expect(text).to.not.include(r.requestId);
      expect(text.length).to.be.below(JSON.stringify(r).length / 2 + 20);
    }

    // As schema 3 left it: the marker 3, and entries as JSON objects (one of them a new entry
    // written back in the old form, one an entry of a key deleted since).
    const old: ConsumeRecord = { requestId: "old-1", keyId: k.record.id, accountId: "default", group: "default", model: "gpt-4o", inputTokens: 50, outputTokens: 5, units: 3, at: clock() - 60_000, reservationId: "", keyRemaining: 0, keyUnlimited: true, accountBalance: 1e9 - 3, source: "consume" };
    const db = new Level<string, string>(join(dir, "db"), { valueEncoding: "utf8" });
    await db.open();
    const ledger = db.sublevel<string, string>("ledger", { valueEncoding: "utf8" });
    await ledger.put(old.requestId, JSON.stringify(old));
    await ledger.put(first[0]!.requestId, JSON.stringify(first[0]));
    await db.sublevel<string, unknown>("meta", { valueEncoding: "json" }).put("schema", 3);
    await db.close();

    const again = new LevelStore({ dir, clock });
    await again.open(clock());
    try {
      // Every entry reads as the record it holds, whichever form it is stored in.
      expect(await again.findConsume("old-1")).to.deep.equal(old);
      for (const r of first) expect(await again.findConsume(r.requestId)).to.deep.equal(r);
      // A retry of either form replays the first answer and charges nothing.
      const charged = again.getAccount("default")!.counters.charged;
      const replayOld = await again.consume({ requestId: "old-1", keyId: k.record.id, reservationId: "", model: "gpt-4o", inputTokens: 50, outputTokens: 5, units: 3, now: clock() });
      expect(replayOld).to.deep.equal({ record: old, replayed: true });
      const replayNew = await again.consume({ requestId: "new-2", keyId: k.record.id, reservationId: "", model: "gpt-4o-mini", inputTokens: 1202, outputTokens: 300, units: 7, now: clock(), cacheReadTokens: 100, reasoningTokens: 20 });
      expect(replayNew).to.deep.equal({ record: first[2], replayed: true });
      expect(again.getAccount("default")!.counters.charged).to.equal(charged);
      // The scan (reconciliation's read) gives all four.
      const scanned: ConsumeRecord[] = [];
      for await (const r of again.scanLedger()) scanned.push(r);
      expect(scanned.sort((a, b) => a.requestId.localeCompare(b.requestId))).to.deep.equal([...first, old].sort((a, b) => a.requestId.localeCompare(b.requestId)));
      expect(await again.checkIntegrity()).to.deep.equal([]);
    } finally {
      await again.close();
    }

    // The open marked the dir 4 and rewrote nothing: the object entries are as they were.
    raw = await rawLedger(dir);
    expect(raw.schema).to.equal(4);
    expect(raw.texts.get("old-1")).to.equal(JSON.stringify(old));
    expect(raw.texts.get("new-0")).to.equal(JSON.stringify(first[0]));
    expect(raw.texts.get("new-1")!.startsWith("[")).to.equal(true);

    // An export (migrate's source) carries every entry as its record.
    const src = await LevelPortable.openSource(dir);
    try {
      const exported: ConsumeRecord[] = [];
      for await (const c of src.exportState()) if (c.kind === "ledger") exported.push(...c.items);
      expect(exported.sort((a, b) => a.requestId.localeCompare(b.requestId))).to.deep.equal([...first, old].sort((a, b) => a.requestId.localeCompare(b.requestId)));
    } finally {
      await src.close();
    }
  });

  it("an entry that is neither an object nor an entry's array fails the read UNAVAILABLE (as an undecodable entry always has), its cause naming the entry", async () => {
    const store = new LevelStore({ dir, clock });
    await store.open(clock());
    await store.close();
    const db = new Level<string, string>(join(dir, "db"), { valueEncoding: "utf8" });
    await db.open();
    await db.sublevel<string, string>("ledger", { valueEncoding: "utf8" }).put("bad-1", "[1,2,3]");
    await db.close();
    const again = new LevelStore({ dir, clock });
    await again.open(clock());
    try {
      let err: unknown;
      try {
        await again.findConsume("bad-1");
      } catch (e) {
        err = e;
      }
      expect(err).to.be.instanceOf(StoreUnavailableError);
      const cause = String((err as Error).cause);
      expect(cause).to.match(/ledger/).and.to.include("bad-1").and.to.include("an entry of 3 values");
    } finally {
      await again.close();
    }
  });
});
