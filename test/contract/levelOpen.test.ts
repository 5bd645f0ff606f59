// Opening the LevelDB store: the check that refuses a store whose CURRENT is missing must run
// before LevelDB opens anything. `level`'s constructor opens the database on its own in the next
// microtask (abstract-level's deferred open, createIfMissing), so a check made after constructing
// it races that open: on a fresh dir it can see LevelDB's MANIFEST-000001 before LevelDB writes
// CURRENT ("CURRENT is missing while the store's files are there" on an empty temp dir, under
// load), and on a store that lost CURRENT the open it failed to stop starts an empty store over
// the old files and deletes them as obsolete.
import { expect } from "chai";
import { readdir, rm } from "node:fs/promises";
import { join } from "node:path";
import { LevelStore } from "../../src/store/level/levelStore.js";
import { removeDir, tempDir } from "../helpers/tmp.js";

const clock = () => Date.UTC(2026, 10, 27, 12, 0, 0);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe("LevelStore open: the CURRENT check runs before LevelDB opens", function () {
  const dirs: string[] = [];
  after(async () => {
    for (const d of dirs) await removeDir(d);
  });

  it("a store without CURRENT is refused and left exactly as it was (no empty store started over it, no lock held)", async () => {
    const dir = await tempDir();
    dirs.push(dir);
    const first = new LevelStore({ dir, clock });
    await first.open(clock());
    await first.close();
    const db = join(dir, "db");
    await rm(join(db, "CURRENT"));
    const before = (await readdir(db)).filter((f) => f !== "LOCK" && f !== "LOG" && f !== "LOG.old").sort();
    expect(before.some((f) => f.startsWith("MANIFEST-"))).to.equal(true);

    const s = new LevelStore({ dir, clock });
    const err = await s.open(clock()).then(
      () => expect.fail("a store without CURRENT must not open"),
      (e: Error) => e,
    );
    expect(err.message).to.include(`${db}/CURRENT is missing while the store's files are there`);
    // Give an open that escaped the check the time to finish (it takes a few ms).
    await sleep(500);
    const after = await readdir(db);
    expect(after, "LevelDB must not have written a CURRENT").to.not.include("CURRENT");
    expect(after.filter((f) => f !== "LOCK" && f !== "LOG" && f !== "LOG.old").sort(), "the store's files are untouched").to.deep.equal(before);
  });

  it("a dir another store holds, caught without CURRENT (as while LevelDB creates it), is \"in use\", not \"CURRENT is missing\"", async () => {
    const dir = await tempDir();
    dirs.push(dir);
    const first = new LevelStore({ dir, clock });
    await first.open(clock());
    try {
      // LevelDB writes MANIFEST-000001 before CURRENT when it creates a store: a second open in
      // that moment sees the store's files without CURRENT. LevelDB takes the lock first.
      await rm(join(dir, "db", "CURRENT"));
      const second = new LevelStore({ dir, clock });
      const err = await second.open(clock()).then(
        () => expect.fail("a second store on a held dir must not open"),
        (e: Error) => e,
      );
      expect(err.message).to.include(`data directory in use: ${dir}`);
    } finally {
      await first.close();
    }
  });

  it("a fresh dir opens every time (the check never sees LevelDB's own first files)", async () => {
    for (let i = 0; i < 20; i++) {
      const dir = await tempDir();
      dirs.push(dir);
      const s = new LevelStore({ dir, clock });
      await s.open(clock());
      await s.close();
    }
  });
});
