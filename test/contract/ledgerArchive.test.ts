// The Redis engine's ledger archive (issue 15, item 4; store/redis/ledgerArchive.ts): with a
// short idempotency window, entries older than it move to segment files in a real directory and
// leave the real redis-server's stream; scanLedger (reconciliation) still reads every entry once.
// LevelDB keeps its whole ledger (no window, no archiveLedger), so these are the Redis engine's.
import { spawnSync } from "node:child_process";
import { existsSync } from "node:fs";
import { randomBytes } from "node:crypto";
import { mkdir, readFile, unlink, writeFile } from "node:fs/promises";
import { dirname, join } from "node:path";
import { gunzipSync } from "node:zlib";
import { expect } from "chai";
import { runMigrate } from "../../src/migrate.js";
import { LevelStore } from "../../src/store/level/levelStore.js";
import { RedisStore, type RedisStoreOptions } from "../../src/store/redis/redisStore.js";
import { RedisKeys } from "../../src/store/redis/keys.js";
import { LedgerArchive, type ArchivedEntry } from "../../src/store/redis/ledgerArchive.js";
import type { ConsumeRecord } from "../../src/store/types.js";
import { requireRedis, startRedis, startRedisCluster } from "../helpers/redis.js";
import { filesUnder, removeDir, tempDir } from "../helpers/tmp.js";
import { makeKey } from "./store.contract.js";

const NOW = Date.UTC(2026, 10, 27, 12, 0, 0);
const WINDOW_MS = 200;
/**
 * Entries this old are archived: the window, the archive's margin (redisStore.ts
 * ARCHIVE_MARGIN_MS, 1 s) and one cutoff step (ARCHIVE_STEP_MS, at most the window), and some.
 */
const PAST_WINDOW_MS = 2 * WINDOW_MS + 1000 + 150;
const actor = { actor: "operator", action: "Test", target: "t" };

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function collect(s: RedisStore): Promise<ConsumeRecord[]> {
  const out: ConsumeRecord[] = [];
  for await (const e of s.scanLedger()) out.push(e);
  return out;
}

/** Every entry line of every segment under `dir`: [stream id, request id]. */
async function segmentLines(dir: string): Promise<[string, string][]> {
  const out: [string, string][] = [];
  for (const f of await filesUnder(dir)) {
    if (!f.endsWith(".ndjson.gz")) continue;
    for (const line of gunzipSync(await readFile(f)).toString("utf8").split("\n")) {
      if (!line) continue;
      const e = JSON.parse(line) as { id: string; rec: ConsumeRecord };
      out.push([e.id, e.rec.requestId]);
    }
  }
  return out;
}

describe("ledger archive compaction (segment files in a real directory)", function () {
  this.timeout(60_000);
  let dir = "";
  beforeEach(async () => {
    dir = await tempDir("aisa-compact-");
  });
  afterEach(async () => {
    await removeDir(dir);
  });

  const T0 = Date.UTC(2026, 0, 1);
  /** `n` segments of `per` entries each, an hour apart (ids on that clock); every entry written. */
  async function segments(archive: LedgerArchive, n: number, per: number): Promise<ArchivedEntry[]> {
    const all: ArchivedEntry[] = [];
    for (let i = 0; i < n; i++) {
      const batch: ArchivedEntry[] = [];
      for (let j = 0; j < per; j++) {
        const id = `${T0 + i * 3_600_000 + j}-${j % 3}`;
        batch.push({ id, rec: { requestId: `r-${i}-${j}`, units: i * per + j, at: T0 + i * 3_600_000 + j } as unknown as ConsumeRecord });
      }
      await archive.write("acme", batch);
      all.push(...batch);
    }
    return all;
  }
  async function read(archive: LedgerArchive): Promise<ArchivedEntry[]> {
    const out: ArchivedEntry[] = [];
    for await (const e of archive.read("acme")) out.push(e);
    return out;
  }
  const names = async (archive: LedgerArchive) => (await archive.segments("acme")).map((s) => s.path.slice(s.path.lastIndexOf("/") + 1));
  const later = `${T0 + 1000 * 3_600_000}-0`;

  it("merges old segments into one (fewer files, the same entries once, in order); too few, too young or too big ones are left alone", async () => {
    const archive = new LedgerArchive(join(dir, "a"), "p:");
    const all = await segments(archive, 30, 5);
    expect(await names(archive)).to.have.length(30);
    expect(await archive.compact("acme", { before: later, minSegments: 31, maxBytes: 8 << 20 }), "fewer than minSegments").to.deep.equal({ merged: 0, deleted: 0 });
    expect(await archive.compact("acme", { before: `${T0}-0`, minSegments: 2, maxBytes: 8 << 20 }), "none old enough").to.deep.equal({ merged: 0, deleted: 0 });
    // Only the first 20 are old enough: they become one segment, the last 10 stay.
    expect(await archive.compact("acme", { before: `${T0 + 20 * 3_600_000}-0`, minSegments: 2, maxBytes: 8 << 20 })).to.deep.equal({ merged: 20, deleted: 20 });
    const after = await names(archive);
    expect(after).to.have.length(11);
    expect(after[0]).to.equal(`${all[0]!.id}_${all[99]!.id}.ndjson.gz`);
    expect(await read(archive)).to.deep.equal(all);
    expect(await archive.newest("acme")).to.equal(all[all.length - 1]!.id);
    // The merged one and the rest: merged again into one (it is still small).
    expect(await archive.compact("acme", { before: later, minSegments: 2, maxBytes: 8 << 20 })).to.deep.equal({ merged: 11, deleted: 11 });
    expect(await names(archive)).to.deep.equal([`${all[0]!.id}_${all[all.length - 1]!.id}.ndjson.gz`]);
    expect(await read(archive)).to.deep.equal(all);
    // A size bound: runs of segments within it, the bound respected.
    const sized = new LedgerArchive(join(dir, "b"), "p:");
    const every = await segments(sized, 12, 40);
    const one = (await sized.segments("acme")).map((s) => s.path);
    const { size } = await import("node:fs/promises").then((fs) => fs.stat(one[0]!));
    await sized.compact("acme", { before: later, minSegments: 2, maxBytes: size * 4 });
    const runs = await sized.segments("acme");
    expect(runs.length).to.be.within(3, 6);
    expect(await read(sized)).to.deep.equal(every);
  });

  for (const step of ["renamed", "deleted"] as const) {
    it(`a crash ${step === "renamed" ? "after the merged segment's rename, before the deletes" : "after the first member's delete"}: every entry read once; the next compaction deletes the members it covers`, async () => {
      const archive = new LedgerArchive(join(dir, "a"), "p:");
      const all = await segments(archive, 6, 4);
      let err: unknown;
      try {
        await archive.compact("acme", {
          before: later,
          minSegments: 2,
          maxBytes: 8 << 20,
          fault: (s) => {
            if (s === step) throw new Error(`injected crash (${s})`);
          },
        });
      } catch (e) {
        err = e;
      }
      expect((err as Error).message).to.equal(`injected crash (${step})`);
      expect(await names(archive), "the merged segment beside its members").to.have.length(step === "renamed" ? 7 : 6);
      expect(await read(archive)).to.deep.equal(all);
      expect((await archive.compact("acme", { before: later, minSegments: 100, maxBytes: 8 << 20 })).deleted).to.equal(step === "renamed" ? 6 : 5);
      expect(await names(archive)).to.deep.equal([`${all[0]!.id}_${all[all.length - 1]!.id}.ndjson.gz`]);
      expect(await read(archive)).to.deep.equal(all);
    });
  }

  it("a reader that listed the members before a compaction deleted them goes on in the merged segment: every entry once", async () => {
    const archive = new LedgerArchive(join(dir, "a"), "p:");
    const all = await segments(archive, 5, 3);
    const got: ArchivedEntry[] = [];
    const it = archive.read("acme")[Symbol.asyncIterator]();
    for (let i = 0; i < 4; i++) got.push((await it.next()).value as ArchivedEntry);
    expect(await archive.compact("acme", { before: later, minSegments: 2, maxBytes: 8 << 20 })).to.deep.equal({ merged: 5, deleted: 5 });
    for (let r = await it.next(); !r.done; r = await it.next()) got.push(r.value);
    expect(got).to.deep.equal(all);
  });
});

for (const mode of ["one Redis", "a 3-master Redis Cluster"] as const) {
  describe(`Redis ledger archive on ${mode}`, function () {
    this.timeout(60_000);
    let url = "";
    let xlen: (key: string) => number = () => -1;
    let cleanupServer: (() => Promise<void>) | undefined;
    let dirs: string[] = [];
    let stores: RedisStore[] = [];

    before(async function () {
      requireRedis(this);
      if (mode === "one Redis") {
        const s = await startRedis();
        url = s.url;
        cleanupServer = () => s.cleanup();
        xlen = (key) => Number(s.cli(["XLEN", key]).trim());
      } else {
        const c = await startRedisCluster();
        url = c.url;
        cleanupServer = () => c.cleanup();
        const n = c.nodes[0]!;
        xlen = (key) => Number(spawnSync("redis-cli", ["-c", "-h", "127.0.0.1", "-p", String(n.port), "XLEN", key], { encoding: "utf8", timeout: 5000 }).stdout.trim());
      }
    });
    after(async () => {
      await cleanupServer?.();
    });
    afterEach(async () => {
      await Promise.all(stores.map((s) => s.close()));
      stores = [];
      await Promise.all(dirs.map((d) => removeDir(d)));
      dirs = [];
    });

    async function archiveDir(): Promise<string> {
      const d = await tempDir("aisa-archive-");
      dirs.push(d);
      return join(d, "ledger-archive");
    }

    /** A store (a sidecar) on `prefix` with a short window and the archive in `dir`. */
    async function open(prefix: string, dir: string | undefined, archiveFault?: (step: "renamed") => void, windowMs = WINDOW_MS, ledgerCompaction?: RedisStoreOptions["ledgerCompaction"]): Promise<RedisStore> {
      const s = new RedisStore({ url, prefix, clock: () => NOW, callTimeoutMs: 2000, idempotencyWindowMs: windowMs, ledgerArchive: dir, archiveFault, ledgerCompaction });
      stores.push(s);
      await s.open(NOW);
      return s;
    }

    /** An account with a key and `n` Consumes on it; their records. */
    async function consumes(s: RedisStore, account: string, n: number, tag: string, now = NOW): Promise<ConsumeRecord[]> {
      if (!s.getAccount(account)) await s.insertAccount({ id: account, name: account, createdAt: NOW }, 1_000_000, actor);
      const k = makeKey({ accountId: account });
      await s.insertKey(k.record, actor);
      const out: ConsumeRecord[] = [];
      for (let i = 0; i < n; i++) {
        const r = await s.consume({ requestId: `${tag}-${account}-${i}`, keyId: k.record.id, reservationId: "", model: "m", inputTokens: 3, outputTokens: 4, units: 10 + i, now });
        out.push(r.record);
      }
      return out;
    }

    const fresh = () => `la${randomBytes(5).toString("hex")}:`;

    it("entries older than the window end up in a segment and leave the stream (not before the pass, nor younger ones); scanLedger reads archive then stream, each entry once, and reconciles with the account", async () => {
      const prefix = fresh();
      const dir = await archiveDir();
      const s = await open(prefix, dir, undefined);
      const led = new RedisKeys(prefix).a("acme", "led");
      const old = await consumes(s, "acme", 5, "old");
      await sleep(PAST_WINDOW_MS);
      // Appended when the first five are past the window: with an archive the append trims nothing.
      const next = await consumes(s, "acme", 1, "next");
      expect(xlen(led), "stream before the pass").to.equal(6);
      // A sidecar whose window is an hour archives none of them: nothing younger than its window leaves.
      const patient = await open(prefix, dir, undefined, 3_600_000);
      expect(await patient.archiveLedger()).to.equal(0);
      expect(xlen(led)).to.equal(6);
      const n = await s.archiveLedger();
      expect(n, "the five old ones (and the sixth if this machine was slow)").to.be.oneOf([5, 6]);
      expect(xlen(led), "stream after the pass").to.equal(6 - n);
      const recent = await consumes(s, "acme", 2, "new");
      const all = [...old, ...next, ...recent];
      const ledger = await collect(s);
      expect(ledger).to.deep.equal(all);
      // Reconciliation: the account's charges are the ledger's units, to the unit.
      expect(s.getAccount("acme")!.counters.charged).to.equal(ledger.reduce((t, e) => t + e.units, 0));
      // Later every entry is in a segment, in order, once; the stream is empty.
      await sleep(PAST_WINDOW_MS);
      expect(await s.archiveLedger()).to.equal(all.length - n);
      expect(xlen(led)).to.equal(0);
      expect((await segmentLines(dir)).map(([, r]) => r).sort()).to.deep.equal(all.map((r) => r.requestId).sort());
      // Another sidecar pointed at the same directory reads the same ledger.
      const peer = await open(prefix, dir);
      expect(await collect(peer)).to.deep.equal(all);
    });

    it("a pass that fails right after a segment's rename (before the trim): no entry read twice, none lost; the next pass trims them without writing them again", async () => {
      const prefix = fresh();
      const dir = await archiveDir();
      const crashing = await open(prefix, dir, (step) => {
        if (step === "renamed") throw new Error("injected crash after rename");
      });
      const led = new RedisKeys(prefix).a("acme", "led");
      const old = await consumes(crashing, "acme", 4, "old");
      await sleep(PAST_WINDOW_MS);
      let err: unknown;
      try {
        await crashing.archiveLedger();
      } catch (e) {
        err = e;
      }
      expect((err as Error).message).to.equal("injected crash after rename");
      expect(xlen(led), "still in the stream").to.equal(4);
      expect((await segmentLines(dir)).length, "and in a segment").to.equal(4);
      expect(await collect(crashing)).to.deep.equal(old);
      const next = await open(prefix, dir);
      expect(await next.archiveLedger(), "newly archived").to.equal(0);
      expect(xlen(led)).to.equal(0);
      expect((await segmentLines(dir)).map(([, r]) => r)).to.deep.equal(old.map((r) => r.requestId));
      expect(await collect(next)).to.deep.equal(old);
    });

    it("two archivers racing (two stores on one Redis and one directory): each entry archived exactly once, none left behind", async () => {
      const prefix = fresh();
      const dir = await archiveDir();
      const a = await open(prefix, dir);
      const b = await open(prefix, dir);
      const all: ConsumeRecord[] = [];
      for (const acct of ["acme", "bolt", "crux"]) all.push(...(await consumes(a, acct, 6, "r")));
      await sleep(PAST_WINDOW_MS);
      const counts: number[] = [];
      for (let round = 0; round < 3; round++) counts.push(...(await Promise.all([a.archiveLedger(), b.archiveLedger()])));
      expect(counts.reduce((t, n) => t + n, 0)).to.equal(all.length);
      const lines = await segmentLines(dir);
      expect(lines).to.have.length(all.length);
      expect(new Set(lines.map(([id]) => id)).size).to.equal(all.length);
      expect(new Set(lines.map(([, r]) => r))).to.deep.equal(new Set(all.map((r) => r.requestId)));
      for (const acct of ["acme", "bolt", "crux"]) expect(xlen(new RedisKeys(prefix).a(acct, "led"))).to.equal(0);
      const byAccount = (rs: ConsumeRecord[]) => rs.slice().sort((x, y) => x.requestId.localeCompare(y.requestId));
      expect(byAccount(await collect(b))).to.deep.equal(byAccount(all));
    });

    /** make: the broken archive directory; repair: the directory a sidecar then archives to. */
    const unwritable: { name: string; make: (base: string, prefix: string) => Promise<string>; repair: (base: string, prefix: string) => Promise<string>; message: RegExp }[] = [
      {
        name: "the archive's parent is a file",
        make: async (base) => {
          await writeFile(`${base}-file`, "x");
          return join(`${base}-file`, "archive");
        },
        // Nothing could name the fleet's archive: any working directory becomes it.
        repair: () => archiveDir(),
        message: /^ledger archive: cannot read .*-file\/archive\/.*archive-id \(.*ENOTDIR.*\); nothing was archived or trimmed/,
      },
      {
        name: "the account's segment directory is a file",
        make: async (base, prefix) => {
          const acct = new LedgerArchive(base, prefix).accountDir("acme");
          await mkdir(dirname(acct), { recursive: true });
          await writeFile(acct, "x");
          return base;
        },
        // The fleet's archive (its id was written): repaired in place.
        repair: async (base, prefix) => {
          await unlink(new LedgerArchive(base, prefix).accountDir("acme"));
          return base;
        },
        message: /^ledger archive: cannot read the segments of account acme under .* \(.*ENOTDIR.*\); nothing was trimmed: the entries stay in Redis/,
      },
    ];
    for (const c of unwritable) {
      it(`an archive that cannot be used (${c.name}): the pass fails with a line naming the directory, nothing is trimmed, the entries stay in Redis and the lock is free`, async () => {
        const prefix = fresh();
        const base = await archiveDir();
        const s = await open(prefix, await c.make(base, prefix));
        const led = new RedisKeys(prefix).a("acme", "led");
        const old = await consumes(s, "acme", 3, "old");
        await sleep(PAST_WINDOW_MS);
        let err: unknown;
        try {
          await s.archiveLedger();
        } catch (e) {
          err = e;
        }
        expect((err as Error).message).to.match(c.message);
        expect(xlen(led)).to.equal(3);
        // A sidecar with a working archive takes over at once (the failed pass released the lock).
        const other = await open(prefix, await c.repair(base, prefix));
        expect(await collect(other)).to.deep.equal(old);
        expect(await other.archiveLedger()).to.equal(3);
        expect(xlen(led)).to.equal(0);
        expect(await collect(other)).to.deep.equal(old);
      });
    }

    it("a sidecar pointed at another directory than the fleet's archive does not archive (the archive-id differs): nothing trimmed, a line naming both", async () => {
      const prefix = fresh();
      const shared = await archiveDir();
      const a = await open(prefix, shared);
      const led = new RedisKeys(prefix).a("acme", "led");
      const first = await consumes(a, "acme", 2, "first");
      await sleep(PAST_WINDOW_MS);
      expect(await a.archiveLedger()).to.equal(2);
      const later = await consumes(a, "acme", 2, "later");
      await sleep(PAST_WINDOW_MS);
      const own = await archiveDir();
      const b = await open(prefix, own);
      let err: unknown;
      try {
        await b.archiveLedger();
      } catch (e) {
        err = e;
      }
      expect((err as Error).message).to.match(/^ledger archive: .* is not this fleet's ledger archive \(it has no archive-id; the fleet's is [0-9a-f]+\): every sidecar must name the one shared directory/);
      expect(xlen(led)).to.equal(2);
      expect(await a.archiveLedger()).to.equal(2);
      expect(await collect(a)).to.deep.equal([...first, ...later]);
    });

    it("two compactors racing (two sidecars' archive passes, the fleet lock): one merges an account's segments into one, every entry read once", async () => {
      const prefix = fresh();
      const dir = await archiveDir();
      // Three passes of a sidecar that does not compact: three segments.
      const writer = await open(prefix, dir, undefined, WINDOW_MS, { minSegments: Number.MAX_SAFE_INTEGER });
      const all: ConsumeRecord[] = [];
      for (let pass = 0; pass < 3; pass++) {
        all.push(...(await consumes(writer, "acme", 3, `p${pass}`)));
        await sleep(PAST_WINDOW_MS);
        expect(await writer.archiveLedger()).to.equal(3);
      }
      const archive = new LedgerArchive(dir, prefix);
      expect(await archive.segments("acme")).to.have.length(3);
      const compacting = { ageMs: 0, minSegments: 2 };
      const a = await open(prefix, dir, undefined, WINDOW_MS, compacting);
      const b = await open(prefix, dir, undefined, WINDOW_MS, compacting);
      for (let round = 0; round < 3; round++) await Promise.all([a.archiveLedger(), b.archiveLedger()]);
      const segs = await archive.segments("acme");
      expect(segs, "one merged segment").to.have.length(1);
      expect(segs[0]!.first).to.equal((await segmentLines(dir))[0]![0]);
      const lines = await segmentLines(dir);
      expect(lines.map(([, r]) => r)).to.deep.equal(all.map((r) => r.requestId));
      expect(await collect(a)).to.deep.equal(all);
      expect(await collect(b)).to.deep.equal(all);
    });

    it("migrate from this Redis (with --ledger-archive) to a data directory copies the archived entries and the stream's, each once", async () => {
      const prefix = fresh();
      const dir = await archiveDir();
      const s = await open(prefix, dir);
      const old = await consumes(s, "acme", 4, "old");
      await sleep(PAST_WINDOW_MS);
      expect(await s.archiveLedger()).to.equal(4);
      const recent = await consumes(s, "acme", 2, "new");
      const parent = await tempDir("aisa-migrated-");
      dirs.push(parent);
      const target = join(parent, "data");
      const quiet = { write: () => true };
      const counts = await runMigrate({ from: { kind: "redis", url, label: "redis" }, to: { kind: "level", dir: target, label: "target" }, prefix, windowMs: WINDOW_MS, ledgerArchive: dir, force: false, json: true }, { stdout: quiet, stderr: quiet });
      expect(counts.ledger).to.equal(6);
      const level = new LevelStore({ dir: target, clock: () => NOW });
      await level.open(NOW);
      try {
        const got: ConsumeRecord[] = [];
        for await (const e of level.scanLedger()) got.push(e);
        const byId = (rs: ConsumeRecord[]) => rs.slice().sort((x, y) => x.requestId.localeCompare(y.requestId));
        expect(byId(got)).to.deep.equal(byId([...old, ...recent]));
      } finally {
        await level.close();
      }
    });

    it("migrate from a Redis that has archived refuses without its archive directory, or with another one, naming the flag; the target stays empty", async () => {
      const prefix = fresh();
      const dir = await archiveDir();
      const s = await open(prefix, dir);
      await consumes(s, "acme", 3, "old");
      await sleep(PAST_WINDOW_MS);
      expect(await s.archiveLedger()).to.equal(3);
      const quiet = { write: () => true };
      const other = await archiveDir();
      await new LedgerArchive(other, prefix).writeId("not-this-fleet");
      for (const [ledgerArchive, want] of [
        [undefined, /the source redis: the source has moved ledger entries to its ledger archive \(archive id \w+\): name that directory with --ledger-archive DIR/],
        [other, /the source redis: --ledger-archive .* is not the source's ledger archive \(its archive-id is not-this-fleet; the source's is \w+\)/],
      ] as const) {
        const parent = await tempDir("aisa-migrated-");
        dirs.push(parent);
        const target = join(parent, "data");
        const err = await runMigrate({ from: { kind: "redis", url, label: "redis" }, to: { kind: "level", dir: target, label: "target" }, prefix, windowMs: WINDOW_MS, ledgerArchive, force: false, json: true }, { stdout: quiet, stderr: quiet }).then(
          () => undefined,
          (e: unknown) => e as Error,
        );
        expect(err?.message).to.match(want);
        expect(existsSync(target), "nothing written to the target").to.equal(false);
      }
    });

    it("without an archive the trim is on Redis's clock: a sidecar whose clock runs 3 hours ahead trims nothing still inside the window", async () => {
      const prefix = fresh();
      const led = new RedisKeys(prefix).a("acme", "led");
      const honest = await open(prefix, undefined, undefined, 60_000);
      // 250 entries: past 2 stream nodes (100 entries each), which MINID ~ would drop whole.
      const inWindow = await consumes(honest, "acme", 250, "honest", Date.now());
      const aheadMs = 3 * 3_600_000;
      const ahead = new RedisStore({ url, prefix, clock: () => Date.now() + aheadMs, callTimeoutMs: 2000, idempotencyWindowMs: 60_000 });
      stores.push(ahead);
      await ahead.open(Date.now() + aheadMs);
      const k = makeKey({ accountId: "acme" });
      await ahead.insertKey(k.record, actor);
      const late = await ahead.consume({ requestId: "ahead-1", keyId: k.record.id, reservationId: "", model: "m", inputTokens: 1, outputTokens: 1, units: 5, now: Date.now() + aheadMs });
      expect(xlen(led), "every entry of the last minute on Redis's clock is still in the stream").to.equal(251);
      expect(await collect(honest)).to.deep.equal([...inWindow, late.record]);
    });

    it("without an archive the append still trims past the window (the entries are dropped, as before)", async () => {
      const prefix = fresh();
      // A window the few recent Consumes below fit in on a loaded machine (the trim runs on Redis's
      // clock, TIME, as each append runs: an entry older than the window is dropped at once).
      const windowMs = 3000;
      const s = await open(prefix, undefined, undefined, windowMs);
      const led = new RedisKeys(prefix).a("acme", "led");
      await consumes(s, "acme", 200, "old", Date.now());
      await sleep(windowMs + 200);
      const recent = await consumes(s, "acme", 5, "new", Date.now());
      expect(await s.archiveLedger()).to.equal(0);
      // MINID ~ trims whole stream nodes (100 entries): the old ones' full nodes are gone.
      expect(xlen(led)).to.be.lessThan(105);
      expect((await collect(s)).slice(-5)).to.deep.equal(recent);
    });
  });
}
