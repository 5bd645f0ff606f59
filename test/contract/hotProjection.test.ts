// The LevelDB engine's hot projection (`khot`): after every kind of key mutation the
// projection on disk is exactly what the full record projects to (checkIntegrity compares
// them byte for byte), and the hot index loaded from the projection equals the index loaded
// from the full records (the upgrade path, forced with rebuildProjection). A data dir written
// before the projection existed (schema 1) is upgraded on open with identical index contents.
// Real LevelDB in temp dirs.
import { expect } from "chai";
import { Level } from "level";
import type { KeyRecord } from "../../src/domain/types.js";
import { generateKeySecret, hashSecret, hashSecretBytes } from "../../src/keys/secrets.js";
import { LevelStore } from "../../src/store/level/levelStore.js";
import type { HotDumpEntry } from "../../src/store/book/keyBook.js";
import { decodeCounters, encodeCounters } from "../../src/store/level/codecs.js";
import { decodeProjection, encodeProjection, hotKeyOf, ProjectionError } from "../../src/store/keyProjection.js";
import { removeDir, tempDir } from "../helpers/tmp.js";
import { makeKey } from "./store.contract.js";

const NOW = Date.UTC(2026, 10, 27, 12, 0, 0);
const actor = { actor: "operator", action: "Test", target: "t" };
const clock = () => NOW;

async function openStore(dir: string, rebuildProjection = false): Promise<LevelStore> {
  const s = new LevelStore({ dir, clock, rebuildProjection });
  await s.open(NOW);
  return s;
}

/** The store's whole key state in memory: index entries, refills and group counts. */
function state(s: LevelStore): { keys: HotDumpEntry[]; groups: Record<string, number> } {
  return { keys: s.book.dump(), groups: s.book.groupKeyCounts() };
}

/**
 * Closes `s`, then loads the dir from the projection and from the full records; both loads
 * and the live state must agree, and the disk must be consistent. Returns a store opened on
 * the projection.
 */
async function expectSameAfterReopen(s: LevelStore, dir: string): Promise<LevelStore> {
  const live = state(s);
  expect(await s.checkIntegrity()).to.deep.equal([]);
  await s.close();
  const fromRecords = await openStore(dir, true);
  expect(fromRecords.loadedFrom).to.equal("records");
  const loaded = state(fromRecords);
  expect(loaded).to.deep.equal(live);
  expect(await fromRecords.checkIntegrity()).to.deep.equal([]);
  await fromRecords.close();
  const fromProjection = await openStore(dir);
  expect(fromProjection.loadedFrom).to.equal("projection");
  expect(state(fromProjection)).to.deep.equal(loaded);
  return fromProjection;
}

/** Keys covering every field the projection carries. */
function variedKeys(): { record: KeyRecord; secret: string }[] {
  return [
    makeKey(),
    makeKey({ unlimited: true, quotaTotal: 0 }),
    makeKey({ status: "disabled", quotaTotal: 7 }),
    makeKey({ expiresAt: NOW + 86_400_000, quotaTotal: 123_456_789_012 }),
    makeKey({ models: ["gpt-4o-mini", "gpt-4o"], ips: ["10.0.0.0/8", "2001:db8::/32"] }),
    makeKey({ models: ["gpt-4o-mini", "gpt-4o"], ips: ["10.0.0.0/8", "2001:db8::/32"] }),
    makeKey({ ips: ["192.168.1.7/32"] }),
    makeKey({ limits: { rpm: 60, tpm: 100_000, concurrency: 4 } }),
    makeKey({ limits: { rpm: 0, tpm: 0, concurrency: 2 }, unlimited: true, quotaTotal: 0 }),
    makeKey({ refill: "daily", quotaTotal: 50 }),
    makeKey({ refill: "weekly", quotaTotal: 60, group: "team-ü" }),
    makeKey({ refill: "monthly", quotaTotal: 70, accountId: "acct_b" }),
    makeKey({ createdAt: NOW - 1, updatedAt: NOW, expiresAt: 0 }),
    makeKey({ quotaTotal: -5 }),
    // Ids the index cannot pack (kept as strings): longer than 24, non-ASCII, with a NUL.
    makeKey({ id: "key_this-id-is-far-longer-than-twenty-four" }),
    makeKey({ id: "key_ünïcödé" }),
    makeKey({ id: "key_\u0000nul" }),
    makeKey({ id: "k" }),
  ];
}

async function seedAccountsAndGroups(s: LevelStore): Promise<void> {
  await s.insertAccount({ id: "acct_b", name: "B", createdAt: NOW }, 1000, actor);
  await s.insertGroup({ name: "team-ü", description: "", ratioPpm: 1_500_000, models: [], createdAt: NOW }, actor);
  await s.adjustBalance("default", 1_000_000, actor);
}

describe("LevelStore hot projection (khot)", function () {
  this.timeout(30_000);
  let dir: string;
  let store: LevelStore;

  beforeEach(async () => {
    dir = await tempDir();
    store = await openStore(dir);
    await seedAccountsAndGroups(store);
  });

  afterEach(async () => {
    await store.close();
    await removeDir(dir);
  });

  it("a new data dir loads from the projection", () => {
    expect(store.loadedFrom).to.equal("projection");
  });

  it("insertKey: the projection matches the record, and both loads give the same index", async () => {
    for (const k of variedKeys()) await store.insertKey(k.record, actor);
    store = await expectSameAfterReopen(store, dir);
    expect(store.index.size).to.equal(variedKeys().length);
  });

  it("importKeys: the same, in bulk batches", async () => {
    const keys = [...variedKeys(), ...Array.from({ length: 300 }, (_, i) => makeKey({ quotaTotal: i, models: i % 3 ? [] : ["m" + (i % 5)] }))];
    await store.importKeys(
      keys.map((k) => k.record),
      actor,
      64,
    );
    store = await expectSameAfterReopen(store, dir);
    for (const k of keys) expect(store.lookup(hashSecretBytes(k.secret), NOW)?.key.id).to.equal(k.record.id);
  });

  const updates: { name: string; change: (r: KeyRecord) => KeyRecord; remaining?: { set?: number; delta?: number } }[] = [
    { name: "disable", change: (r) => ({ ...r, status: "disabled" }) },
    { name: "rename (not a hot field)", change: (r) => ({ ...r, name: "renamed", metadata: { a: "b" } }) },
    { name: "quota raised", change: (r) => ({ ...r, quotaTotal: r.quotaTotal + 10 }), remaining: { delta: 10 } },
    { name: "unlimited → limited", change: (r) => ({ ...r, unlimited: false, quotaTotal: 99 }), remaining: { set: 99 } },
    { name: "limited → unlimited", change: (r) => ({ ...r, unlimited: true, quotaTotal: 0 }) },
    { name: "expiry set", change: (r) => ({ ...r, expiresAt: NOW + 1000 }) },
    { name: "expiry cleared", change: (r) => ({ ...r, expiresAt: null }) },
    { name: "limits", change: (r) => ({ ...r, limits: { rpm: 5, tpm: 6, concurrency: 7 } }) },
    { name: "limits cleared", change: (r) => ({ ...r, limits: { rpm: 0, tpm: 0, concurrency: 0 } }) },
    { name: "models and IPs", change: (r) => ({ ...r, models: ["x"], ips: ["10.1.0.0/16"] }) },
    { name: "restrictions cleared", change: (r) => ({ ...r, models: [], ips: [] }) },
    { name: "group moved", change: (r) => ({ ...r, group: "team-ü" }) },
    { name: "account moved", change: (r) => ({ ...r, accountId: "acct_b" }) },
    { name: "refill", change: (r) => ({ ...r, refill: "daily" }) },
    { name: "refill off", change: (r) => ({ ...r, refill: "none" }) },
  ];
  for (const u of updates) {
    it(`updateKeys (${u.name}): the projection follows the record`, async () => {
      const keys = variedKeys();
      for (const k of keys) await store.insertKey(k.record, actor);
      await store.updateKeys(
        keys.map((k) => k.record.id),
        (c) => ({ record: u.change(c.record), remainingSet: u.remaining?.set, remainingDelta: u.remaining?.delta }),
        () => actor,
      );
      store = await expectSameAfterReopen(store, dir);
    });
  }

  it("rotation with a grace period and without: the projection carries the grace secret", async () => {
    const k = makeKey();
    await store.insertKey(k.record, actor);
    const next = generateKeySecret();
    await store.updateKeys([k.record.id], (c) => ({ record: { ...c.record, secretHash: hashSecret(next), prevSecretHash: c.record.secretHash, prevSecretExpiresAt: NOW + 60_000 } }), () => actor);
    store = await expectSameAfterReopen(store, dir);
    expect(store.lookup(hashSecretBytes(k.secret), NOW)?.key.id).to.equal(k.record.id);
    expect(store.lookup(hashSecretBytes(k.secret), NOW + 60_000)).to.equal(undefined);
    expect(store.lookup(hashSecretBytes(next), NOW)?.key.id).to.equal(k.record.id);
    const third = generateKeySecret();
    await store.updateKeys([k.record.id], (c) => ({ record: { ...c.record, secretHash: hashSecret(third), prevSecretHash: null, prevSecretExpiresAt: null } }), () => actor);
    store = await expectSameAfterReopen(store, dir);
    expect(store.lookup(hashSecretBytes(next), NOW)).to.equal(undefined);
    expect(store.lookup(hashSecretBytes(third), NOW)?.key.id).to.equal(k.record.id);
  });

  it("deleteKeys: the projection goes with the record; a deleted key stays gone after reopen", async () => {
    const keys = variedKeys();
    for (const k of keys) await store.insertKey(k.record, actor);
    const gone = keys.filter((_, i) => i % 2 === 0);
    await store.deleteKeys(
      gone.map((k) => k.record.id),
      () => {},
      () => actor,
    );
    store = await expectSameAfterReopen(store, dir);
    for (const k of gone) expect(store.lookup(hashSecretBytes(k.secret), NOW)).to.equal(undefined);
    // Slots freed by the deletes are reused by new keys, with their own ids.
    const fresh = variedKeys().map((k) => {
      const { secretHash: _h, masked: _m, ...rest } = k.record;
      return makeKey({ ...rest, id: k.record.id + "x" });
    });
    for (const k of fresh) await store.insertKey(k.record, actor);
    store = await expectSameAfterReopen(store, dir);
    for (const k of fresh) expect(store.lookup(hashSecretBytes(k.secret), NOW)?.key.id).to.equal(k.record.id);
  });

  it("counters written by Consume and refills load the same from either source", async () => {
    const keys = variedKeys();
    for (const k of keys) await store.insertKey(k.record, actor);
    let n = 0;
    for (const k of keys) {
      await store.consume({ requestId: `r${n++}`, keyId: k.record.id, reservationId: "", model: "m", inputTokens: 1, outputTokens: 2, units: 3, now: NOW });
    }
    store = await expectSameAfterReopen(store, dir);
    expect(store.book.dump().every((e) => e.used === 3)).to.equal(true);
  });

  it("upgrades a data dir written before the projection (schema 1): same index, then loads from the projection", async () => {
    const keys = variedKeys();
    for (const k of keys) await store.insertKey(k.record, actor);
    await store.consume({ requestId: "r1", keyId: keys[0]!.record.id, reservationId: "", model: "m", inputTokens: 1, outputTokens: 2, units: 3, now: NOW });
    const before = state(store);
    await store.close();
    // The old layout: no khot entries, no "hot" marker, schema 1 (what the previous build wrote).
    await toOldLayout(dir);
    store = await openStore(dir);
    expect(store.loadedFrom).to.equal("records");
    expect(state(store)).to.deep.equal(before);
    expect(await store.checkIntegrity()).to.deep.equal([]);
    store = await expectSameAfterReopen(store, dir);
    expect(state(store)).to.deep.equal(before);
    await store.close();
    expect(await readMeta(dir)).to.deep.equal({ schema: 4, hot: 1 });
    store = await openStore(dir);
  });

  it("an interrupted upgrade, then a key deleted by the old build: the redo drops the stale projection", async () => {
    const keys = variedKeys();
    for (const k of keys) await store.insertKey(k.record, actor);
    const victim = keys[3]!;
    await store.close();
    // Projection entries present (as if an upgrade wrote them and died before its marker), then
    // the old build (schema 1) deleted a key: its record goes, its projection stays.
    await toOldLayout(dir, { keepProjection: true, deleteKey: victim.record });
    store = await openStore(dir);
    expect(store.loadedFrom).to.equal("records");
    expect(store.lookup(hashSecretBytes(victim.secret), NOW)).to.equal(undefined);
    expect(await store.checkIntegrity()).to.deep.equal([]);
    store = await expectSameAfterReopen(store, dir);
    expect(store.lookup(hashSecretBytes(victim.secret), NOW)).to.equal(undefined);
    expect(store.index.size).to.equal(keys.length - 1);
  });

  it("a forced rebuild (rebuildProjection) repairs a damaged projection; one interrupted after its first step is redone on the next open", async () => {
    const keys = variedKeys();
    for (const k of keys) await store.insertKey(k.record, actor);
    await store.close();
    const damage = async (withMarker: boolean) => {
      const db = new Level<string, string>(`${dir}/db`, { valueEncoding: "utf8" });
      const khot = db.sublevel<string, string>("khot", { valueEncoding: "utf8" });
      await khot.put(keys[0]!.record.id, "garbage");
      await khot.del(keys[1]!.record.id);
      if (!withMarker) await db.sublevel("meta", { valueEncoding: "json" }).del("hot");
      await db.close();
    };
    await damage(true);
    let err: unknown;
    try {
      await openStore(dir);
    } catch (e) {
      err = e;
    }
    expect(err).to.be.instanceOf(ProjectionError);
    expect(String(err)).to.include(keys[0]!.record.id);
    store = await openStore(dir, true);
    expect(store.loadedFrom).to.equal("records");
    expect(store.index.size).to.equal(keys.length);
    expect(await store.checkIntegrity()).to.deep.equal([]);
    store = await expectSameAfterReopen(store, dir);
    expect(store.loadedFrom).to.equal("projection");
    // What a forced rebuild leaves if it dies after its first step (marker removed) and part of
    // the projection: a plain open rebuilds again rather than trusting it.
    await store.close();
    await damage(false);
    store = await openStore(dir);
    expect(store.loadedFrom).to.equal("records");
    for (const k of keys) expect(store.lookup(hashSecretBytes(k.secret), NOW), k.record.id).to.not.equal(undefined);
    expect(await store.checkIntegrity()).to.deep.equal([]);
  });

  it("counters: the compact encoding round-trips; JSON counters of earlier builds still read", async () => {
    const cases = [
      { remaining: 5, used: 0, credited: 5, lastUsedAt: null, refilledAt: null },
      { remaining: -3.5, used: 1e15, credited: 2 ** 53, lastUsedAt: NOW, refilledAt: null },
      { remaining: 0, used: 7, credited: 7, lastUsedAt: null, refilledAt: NOW - 86_400_000 },
      { remaining: 1, used: 2, credited: 3, lastUsedAt: NOW, refilledAt: NOW },
    ];
    for (const c of cases) {
      expect(decodeCounters("k", encodeCounters(c))).to.deep.equal(c);
      expect(decodeCounters("k", JSON.stringify(c))).to.deep.equal(c);
    }
    expect(decodeCounters("k", JSON.stringify({ remaining: 4, used: 6, lastUsedAt: null }))).to.deep.equal({ remaining: 4, used: 6, credited: 10, lastUsedAt: null, refilledAt: null });
    expect(() => decodeCounters("k", "AAAA")).to.throw(/bad counters/);
    // A JSON value left in a current dir (a key whose counters were not rewritten since) loads.
    const k = makeKey({ quotaTotal: 100 });
    await store.insertKey(k.record, actor);
    await store.close();
    const db = new Level<string, string>(`${dir}/db`, { valueEncoding: "utf8" });
    await db.sublevel<string, string>("kctr", { valueEncoding: "utf8" }).put(k.record.id, JSON.stringify({ remaining: 60, used: 40, credited: 100, lastUsedAt: NOW, refilledAt: null }));
    await db.close();
    store = await openStore(dir);
    expect(store.loadedFrom).to.equal("projection");
    expect((await store.getKey(k.record.id))?.counters).to.include({ remaining: 60, used: 40, lastUsedAt: NOW });
    expect(await store.checkIntegrity()).to.deep.equal([]);
    await store.consume({ requestId: "c1", keyId: k.record.id, reservationId: "", model: "m", inputTokens: 1, outputTokens: 1, units: 10, now: NOW });
    store = await expectSameAfterReopen(store, dir);
    expect((await store.getKey(k.record.id))?.counters).to.include({ remaining: 50, used: 50 });
  });

  it("checkIntegrity reports a projection that disagrees with its record or has none, and unreadable counters", async () => {
    const [a, b] = [makeKey(), makeKey()];
    await store.insertKey(a.record, actor);
    await store.insertKey(b.record, actor);
    await store.close();
    const db = new Level<string, string>(`${dir}/db`, { valueEncoding: "utf8" });
    const khot = db.sublevel<string, string>("khot", { valueEncoding: "utf8" });
    await khot.put(a.record.id, encodeProjection({ ...a.record, status: "disabled" }));
    await khot.del(b.record.id);
    await khot.put("key_orphan", encodeProjection(makeKey().record));
    await db.sublevel<string, string>("kctr", { valueEncoding: "utf8" }).put(b.record.id, "garbage");
    await db.close();
    store = await openStore(dir);
    expect((await store.checkIntegrity()).sort()).to.deep.equal(
      [
        `hot projection for missing key key_orphan`,
        `key ${a.record.id}: hot projection differs from the record`,
        `key ${b.record.id}: hot projection missing`,
        `key ${b.record.id}: counters unreadable`,
      ].sort(),
    );
  });

  it("refuses a data dir of an unknown schema", async () => {
    await store.close();
    const db = new Level<string, unknown>(`${dir}/db`, { valueEncoding: "json" });
    await db.sublevel<string, unknown>("meta", { valueEncoding: "json" }).put("schema", 5);
    await db.close();
    store = new LevelStore({ dir, clock });
    let err: unknown;
    try {
      await store.open(NOW);
    } catch (e) {
      err = e;
    }
    expect(String(err)).to.include("schema 5");
    store = await (async () => {
      // Put it back so afterEach can close a store.
      const db2 = new Level<string, unknown>(`${dir}/db`, { valueEncoding: "json" });
      await db2.sublevel<string, unknown>("meta", { valueEncoding: "json" }).put("schema", 3);
      await db2.close();
      return openStore(dir);
    })();
  });

  describe("codec", () => {
    for (const k of variedKeys()) {
      it(`decode(encode(record)) = the record's hot fields (${describeKey(k.record)})`, () => {
        const decoded = decodeProjection(k.record.id, encodeProjection(k.record));
        expect(plain(decoded)).to.deep.equal(plain(hotKeyOf(k.record)));
      });
    }
    it("a grace secret is kept only with its expiry", () => {
      const r = makeKey({ prevSecretHash: hashSecret("old"), prevSecretExpiresAt: NOW + 5 }).record;
      expect(plain(decodeProjection(r.id, encodeProjection(r))).prevSecretHash).to.equal(hashSecret("old"));
      const noExpiry = { ...r, prevSecretExpiresAt: null };
      expect(plain(decodeProjection(r.id, encodeProjection(noExpiry))).prevSecretHash).to.equal(null);
    });
    it("rejects a value of another format version", () => {
      const v = encodeProjection(makeKey().record);
      const bytes = Buffer.from(v.slice(0, v.indexOf("[")), "base64");
      bytes[0] = 9;
      expect(() => decodeProjection("key_x", bytes.toString("base64") + v.slice(v.indexOf("[")))).to.throw(/bad hot projection/);
      expect(() => decodeProjection("key_x", "not a projection")).to.throw(/bad hot projection/);
    });
  });
});

function describeKey(r: KeyRecord): string {
  return [r.status, r.unlimited ? "unlimited" : `quota ${r.quotaTotal}`, r.expiresAt !== null ? "expiry" : "", r.refill, r.models.length ? "models" : "", r.ips.length ? "ips" : "", r.limits.rpm || r.limits.concurrency ? "limits" : "", r.accountId, r.group, JSON.stringify(r.id)]
    .filter(Boolean)
    .join(", ");
}

/** A HotKey with its hashes as hex and its restrictions as plain lists (deep-equal friendly). */
function plain(k: ReturnType<typeof hotKeyOf>): Record<string, unknown> {
  return {
    ...k,
    secretHash: Buffer.from(k.secretHash).toString("hex"),
    prevSecretHash: k.prevSecretHash ? Buffer.from(k.prevSecretHash).toString("hex") : null,
    limits: { ...k.limits },
    restrictions: { models: k.restrictions.models ? [...k.restrictions.models] : null, ips: k.restrictions.ips ? k.restrictions.ips.map((x) => ({ ...x })) : null },
  };
}

/** Rewrites `dir` (closed) into the layout the build before the projection wrote. */
async function toOldLayout(dir: string, opts: { keepProjection?: boolean; deleteKey?: KeyRecord } = {}): Promise<void> {
  const db = new Level<string, unknown>(`${dir}/db`, { valueEncoding: "json" });
  const sub = (name: string) => db.sublevel<string, unknown>(name, { valueEncoding: "json" });
  if (!opts.keepProjection) await db.sublevel("khot").clear();
  // Counters as the old build wrote them: JSON (and, for the first key, from before
  // `credited` existed).
  const kctr = db.sublevel<string, string>("kctr", { valueEncoding: "utf8" });
  let first = true;
  for await (const [id, v] of kctr.iterator()) {
    const c = decodeCounters(id, v);
    const old: Record<string, unknown> = first ? { remaining: c.remaining, used: c.used, lastUsedAt: c.lastUsedAt, refilledAt: c.refilledAt } : { ...c };
    first = false;
    await kctr.put(id, JSON.stringify(old));
  }
  await sub("meta").del("hot");
  await sub("meta").del("keysHint");
  await sub("meta").put("schema", 1);
  if (opts.deleteKey) {
    const r = opts.deleteKey;
    await db.batch([
      { type: "del", sublevel: sub("keys"), key: r.id },
      { type: "del", sublevel: sub("kctr"), key: r.id },
      { type: "del", sublevel: sub("khash"), key: r.secretHash },
    ]);
  }
  const left: string[] = [];
  for await (const k of db.sublevel("khot").keys()) left.push(k);
  expect(left.length > 0).to.equal(opts.keepProjection === true);
  await db.close();
}

async function readMeta(dir: string): Promise<Record<string, unknown>> {
  const db = new Level<string, unknown>(`${dir}/db`, { valueEncoding: "json" });
  const meta = db.sublevel<string, unknown>("meta", { valueEncoding: "json" });
  const out = { schema: await meta.get("schema"), hot: await meta.get("hot") };
  await db.close();
  return out;
}
