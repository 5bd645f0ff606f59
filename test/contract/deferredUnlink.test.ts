// LevelDB's obsolete files are freed off its lock (store/level/deferredUnlink.ts): while a
// LevelStore is open every .log and .ldb file of its database has a second name in
// `db-unlinking`, so LevelDB's own unlink (made under its mutex, which every read of the main
// thread waits for) only drops a name; the second name goes once LevelDB's is gone, which is
// when the blocks are freed. Real LevelDB, real files, a 1 MB write buffer so that logs switch
// and tables compact within seconds.
import { expect } from "chai";
import { link, mkdir, readdir, stat, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { LevelStore } from "../../src/store/level/levelStore.js";
import { DeferredUnlink, UNLINK_DIR } from "../../src/store/level/deferredUnlink.js";
import { maintainStore } from "../../src/service/scheduler.js";
import { removeDir, tempDir } from "../helpers/tmp.js";
import { makeKey } from "./store.contract.js";

const clock = () => Date.UTC(2026, 11, 7, 12, 0, 0);
const actor = { actor: "operator", action: "Test", target: "t" };
const FILE = /^\d{6,}\.(log|ldb)$/;

async function names(dir: string): Promise<string[]> {
  return (await readdir(dir)).filter((f) => FILE.test(f)).sort();
}

/** Until `cond` holds (the watch and the thread pool are asynchronous), at most `ms`. */
async function until(cond: () => Promise<boolean>, ms: number, what: string): Promise<void> {
  const end = Date.now() + ms;
  while (!(await cond())) {
    if (Date.now() > end) throw new Error(`timed out: ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

/** Until the second names are exactly LevelDB's names, running the store's maintenance (whose sweep links and frees) as the sidecar's scheduler does. */
async function settled(store: LevelStore, dir: string): Promise<void> {
  await until(
    async () => {
      maintainStore(store, clock());
      return JSON.stringify(await names(join(dir, UNLINK_DIR))) === JSON.stringify(await names(join(dir, "db")));
    },
    10_000,
    "second names = LevelDB's names",
  );
}

describe("LevelStore: obsolete LevelDB files freed off its lock (deferredUnlink)", function () {
  this.timeout(60_000);

  it("every live .log/.ldb has a second name; names LevelDB dropped are freed; close removes the directory; the data is all there", async () => {
    const dir = await tempDir();
    try {
      const store = new LevelStore({ dir, clock, writeBufferMb: 1 });
      await store.open(clock());
      const db = join(dir, "db");
      const grave = join(dir, UNLINK_DIR);
      await store.adjustBalance("default", 1e12, actor);
      const k = makeKey({ unlimited: true, quotaTotal: 0 });
      await store.insertKey(k.record, actor);
      const firstLog = (await names(db)).filter((f) => f.endsWith(".log"));
      // ~3.7 MB of durable Consumes (15,000; ~250 bytes of log each): the 1 MB memtable switches its log several times, and the
      // level-0 tables compact: LevelDB deletes logs and tables as it goes.
      let seq = 0;
      await Promise.all(
        Array.from({ length: 32 }, async () => {
          while (seq < 15000) await store.consume({ requestId: `du-${seq++}`, keyId: k.record.id, reservationId: "", model: "gpt-4o-mini", inputTokens: 1200, outputTokens: 300, units: 7, now: clock() });
        }),
      );
      // LevelDB dropped the first log (its memtable was written out as a table).
      await until(async () => !(await names(db)).includes(firstLog[0]!), 10_000, "the first log to be obsolete");
      // Settled (the maintenance sweep runs once a second in the sidecar; here by hand):
      // the second names are exactly LevelDB's live files, each with two names.
      await settled(store, dir);
      for (const f of await names(grave)) expect((await stat(join(grave, f))).nlink, f).to.equal(2);
      const s = store.unlinkStats()!;
      expect(s.active).to.equal(true);
      expect(s.linked).to.be.greaterThan(s.held);
      expect(s.freed, "second names freed after LevelDB dropped its own").to.be.at.least(1);
      const charged = store.getAccount("default")!.counters.charged;
      expect(charged).to.equal(15000 * 7);
      await store.close();
      expect(await readdir(dir)).to.not.include(UNLINK_DIR);
      // Reopened: every acknowledged charge is there (the second names never held data alone).
      const again = new LevelStore({ dir, clock, writeBufferMb: 1 });
      await again.open(clock());
      expect(again.getAccount("default")!.counters.charged).to.equal(charged);
      await again.close();
    } finally {
      await removeDir(dir);
    }
  });

  it("a directory a crash left behind is removed at the next open (a file only it still named is freed)", async () => {
    const dir = await tempDir();
    try {
      const first = new LevelStore({ dir, clock });
      await first.open(clock());
      await first.close();
      // As if the process died: a second name of a file LevelDB has since deleted, and one of a
      // live file.
      const grave = join(dir, UNLINK_DIR);
      await mkdir(grave);
      await writeFile(join(grave, "000001.log"), "x".repeat(4096));
      const live = (await names(join(dir, "db")))[0]!;
      await link(join(dir, "db", live), join(grave, live));
      const store = new LevelStore({ dir, clock });
      await store.open(clock());
      expect(await names(grave)).to.not.include("000001.log");
      // (The store reopens LevelDB after its load, which drops a log: settled by the sweep.)
      await settled(store, dir);
      await store.close();
    } finally {
      await removeDir(dir);
    }
  });

  it("where it cannot run (no such directory), it stands aside: inactive, nothing linked, stop() is harmless", async () => {
    const dir = await tempDir();
    try {
      const d = await DeferredUnlink.start(join(dir, "missing-db"), join(dir, "grave"));
      expect(d.stats()).to.deep.equal({ linked: 0, freed: 0, held: 0, active: false });
      await d.sweep();
      await d.stop();
      expect(await readdir(dir)).to.deep.equal([]);
    } finally {
      await removeDir(dir);
    }
  });
});
