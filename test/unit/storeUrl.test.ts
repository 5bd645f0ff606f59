// --store / AISA_STORE: every accepted shape, and every refusal names the setting and hides
// the password.
import { expect } from "chai";
import { ledgerArchiveDir, loadConfig } from "../../src/config/config.js";
import { parseStoreUrl } from "../../src/config/storeUrl.js";

describe("store URL (--store / AISA_STORE)", () => {
  it("unset, empty, 'level' and 'leveldb' are the embedded store", () => {
    for (const v of [undefined, "", "  ", "level", "leveldb"]) expect(parseStoreUrl("--store", v)).to.deep.equal({ kind: "level" });
    expect(loadConfig({}, {}).store).to.deep.equal({ kind: "level" });
  });

  it("redis:// with user, password, database; rediss:// is TLS; IPv6 hosts in brackets", () => {
    expect(parseStoreUrl("--store", "redis://127.0.0.1:6379")).to.deep.include({ kind: "redis", tls: false, host: "127.0.0.1", port: 6379, db: 0 });
    const s = parseStoreUrl("--store", "rediss://ops:s%40cret@redis.internal:6380/3");
    expect(s).to.deep.include({ kind: "redis", tls: true, host: "redis.internal", port: 6380, db: 3, username: "ops", password: "s@cret", display: "rediss://ops:***@redis.internal:6380/3" });
    expect(parseStoreUrl("--store", "redis://:pw@[::1]:6379")).to.deep.include({ host: "::1", password: "pw", display: "redis://:***@[::1]:6379" });
    expect(parseStoreUrl("--store", "redis://:pw@[::1]:6379")).not.to.have.property("username");
  });

  it("redis-cluster:// lists seed nodes", () => {
    expect(parseStoreUrl("--store", "redis-cluster://a:7000, b:7001,c:7002")).to.deep.include({
      kind: "redis-cluster",
      nodes: [
        { host: "a", port: 7000 },
        { host: "b", port: 7001 },
        { host: "c", port: 7002 },
      ],
    });
  });

  const bad: [string, string][] = [
    ["bogus://x:1", "is not a store URL"],
    ["redis://", "names no host"],
    ["redis://host", "names no host:port"],
    ["redis://host:0", "has port 0"],
    ["redis://host:70000", "has port 70000"],
    ["redis://host:6379/zero", 'has database "zero"'],
    ["redis://a:1,b:2", "use redis-cluster://"],
    ["redis://host:6379?timeout=5", "has a query or fragment"],
    ["redis-cluster://a:1/2", "Redis Cluster has only database 0"],
    ["redis://ho\u0007st:6379", "contains a control character"],
    ["redis://u:%zz@h:1", "malformed %-escape"],
    ["/var/lib/redis", "is not a store URL"],
  ];
  for (const [v, why] of bad) {
    it(`refuses ${JSON.stringify(v)} (${why})`, () => {
      expect(() => parseStoreUrl("--store", v)).to.throw(/^--store: .*expected redis:\/\//);
      expect(() => parseStoreUrl("--store", v)).to.throw(why);
    });
  }

  it("trims surrounding whitespace (a value pasted from a file)", () => {
    expect(parseStoreUrl("--store", " redis://host:6379\n")).to.deep.include({ host: "host", port: 6379 });
  });

  it("never shows the password of a refused URL", () => {
    expect(() => parseStoreUrl("AISA_STORE", "redis://u:topsecret@h:1/x")).to.throw(/^AISA_STORE: "redis:\/\/u:\*\*\*@h:1\/x"/);
    try {
      parseStoreUrl("AISA_STORE", "redis://u:topsecret@h:1/x");
    } catch (err) {
      expect((err as Error).message).not.to.include("topsecret");
    }
  });

  it("the flag wins over the environment; the deadline and prefix are validated", () => {
    expect(loadConfig({ store: "level" }, { AISA_STORE: "redis://h:1" }).store).to.deep.equal({ kind: "level" });
    expect(loadConfig({}, { AISA_STORE: "redis://h:1" }).store).to.deep.include({ kind: "redis", port: 1 });
    expect(loadConfig({}, {}).redisTimeoutMs).to.equal(50);
    expect(() => loadConfig({ redisTimeoutMs: "0" }, {})).to.throw(/^--redis-timeout-ms/);
    expect(() => loadConfig({}, { AISA_REDIS_PREFIX: "a{b}" })).to.throw(/^AISA_REDIS_PREFIX/);
    expect(loadConfig({}, { AISA_IDEMPOTENCY_WINDOW_HOURS: "24" }).idempotencyWindowMs).to.equal(86_400_000);
  });

  const archives: { name: string; flags: Parameters<typeof loadConfig>[0]; env: NodeJS.ProcessEnv; dir: string | undefined }[] = [
    { name: "the embedded store: none (it keeps its whole ledger)", flags: { dataDir: "/d" }, env: { AISA_LEDGER_ARCHIVE: "/x" }, dir: undefined },
    { name: "Redis, unset: <data>/ledger-archive", flags: { dataDir: "/d", store: "redis://h:1" }, env: {}, dir: "/d/ledger-archive" },
    { name: "Redis, the environment", flags: { dataDir: "/d", store: "redis://h:1" }, env: { AISA_LEDGER_ARCHIVE: "/mnt/ledger" }, dir: "/mnt/ledger" },
    { name: "Redis, the flag wins", flags: { dataDir: "/d", store: "redis://h:1", ledgerArchive: "/flag" }, env: { AISA_LEDGER_ARCHIVE: "/mnt/ledger" }, dir: "/flag" },
    { name: "Redis, off: none", flags: { dataDir: "/d", store: "redis://h:1" }, env: { AISA_LEDGER_ARCHIVE: "OFF" }, dir: undefined },
  ];
  for (const c of archives) {
    it(`--ledger-archive / AISA_LEDGER_ARCHIVE: ${c.name}`, () => {
      expect(ledgerArchiveDir(loadConfig(c.flags, c.env))).to.equal(c.dir);
    });
  }
});
