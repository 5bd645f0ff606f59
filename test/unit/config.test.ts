// THE boolean setting parser (src/config/config.ts): every boolean setting, environment
// variable or flag value, accepts the documented words and names itself otherwise.
import { expect } from "chai";
import { FALSE_WORDS, loadConfig, parseBool, TRUE_WORDS } from "../../src/config/config.js";

describe("boolean settings: one parser, documented words", () => {
  it("the words are 1, true, yes, on / 0, false, no, off", () => {
    expect([...TRUE_WORDS, ...FALSE_WORDS]).to.deep.equal(["1", "true", "yes", "on", "0", "false", "no", "off"]);
  });
  const cases: { v: string | boolean | undefined; def: boolean; want: boolean | "error" }[] = [
    ...["1", "true", "TRUE", "Yes", "on", " On "].map((v) => ({ v, def: false, want: true as const })),
    ...["0", "false", "False", "NO", "off"].map((v) => ({ v, def: true, want: false as const })),
    { v: undefined, def: true, want: true },
    { v: "", def: false, want: false },
    { v: true, def: false, want: true },
    ...["enabled", "disabled", "ture", "2", "y", "n", "-1"].map((v) => ({ v, def: true, want: "error" as const })),
  ];
  for (const c of cases) {
    it(`${JSON.stringify(c.v)} (default ${c.def}) → ${c.want}`, () => {
      if (c.want === "error") expect(() => parseBool("AISA_X", c.v, c.def)).to.throw(`AISA_X: ${JSON.stringify(c.v)} is not a boolean; use 1, true, yes, on or 0, false, no, off`);
      else expect(parseBool("AISA_X", c.v, c.def)).to.equal(c.want);
    });
  }
  const settings: { env?: Record<string, string>; flags?: Record<string, string>; name: string }[] = [
    { env: { AISA_DENY_UNPRICED_MODELS: "enabled" }, name: "AISA_DENY_UNPRICED_MODELS" },
    { env: { AISA_ADMIN_INSECURE: "sure" }, name: "AISA_ADMIN_INSECURE" },
    { env: { AISA_REBUILD_PROJECTION: "please" }, name: "AISA_REBUILD_PROJECTION" },
    { flags: { adminInsecure: "maybe" }, name: "--admin-insecure" },
    { flags: { rebuildProjection: "maybe" }, name: "--rebuild-projection" },
  ];
  for (const c of settings) {
    it(`loadConfig names ${c.name} for an unknown word`, () => {
      expect(() => loadConfig(c.flags ?? {}, c.env ?? {})).to.throw(`${c.name}: `);
    });
  }
  it("loadConfig reads the words (deny unpriced off, admin insecure on)", () => {
    const cfg = loadConfig({}, { AISA_DENY_UNPRICED_MODELS: "off", AISA_ADMIN_INSECURE: "YES" });
    expect(cfg.denyUnpricedModels).to.equal(false);
    expect(cfg.adminInsecure).to.equal(true);
    expect(loadConfig({ rebuildProjection: "no" }, { AISA_REBUILD_PROJECTION: "1" }).rebuildProjection).to.equal(false);
  });
});

describe("AISA_MAX_RESERVATIONS", () => {
  it("defaults to 1,000,000, reads a count, and refuses 0 or a non-integer naming itself", () => {
    expect(loadConfig({}, {}).maxReservations).to.equal(1_000_000);
    expect(loadConfig({}, { AISA_MAX_RESERVATIONS: "5000" }).maxReservations).to.equal(5000);
    for (const v of ["0", "-1", "1.5", "many"]) expect(() => loadConfig({}, { AISA_MAX_RESERVATIONS: v })).to.throw("AISA_MAX_RESERVATIONS: ");
  });
});

describe("--redis-lease-ms / AISA_REDIS_LEASE_MS", () => {
  it("defaults to 1000 (leases on), reads 0 as off, and refuses a negative or non-integer TTL naming the flag", () => {
    expect(loadConfig({}, {}).redisLeaseMs).to.equal(1000);
    expect(loadConfig({}, { AISA_REDIS_LEASE_MS: "0" }).redisLeaseMs).to.equal(0);
    expect(loadConfig({ redisLeaseMs: "250" }, { AISA_REDIS_LEASE_MS: "0" }).redisLeaseMs).to.equal(250);
    for (const bad of ["-1", "1.5", "soon"]) {
      expect(() => loadConfig({}, { AISA_REDIS_LEASE_MS: bad })).to.throw(`--redis-lease-ms: expected an integer >= 0, got ${JSON.stringify(bad)}`);
    }
  });
});

describe("--level-write-buffer-mb / AISA_LEVEL_WRITE_BUFFER_MB", () => {
  it("defaults to 64, takes the flag over the env, and refuses 0, > 1024 or a non-integer naming the flag", () => {
    expect(loadConfig({}, {}).levelWriteBufferMb).to.equal(64);
    expect(loadConfig({}, { AISA_LEVEL_WRITE_BUFFER_MB: "4" }).levelWriteBufferMb).to.equal(4);
    expect(loadConfig({ levelWriteBufferMb: "16" }, { AISA_LEVEL_WRITE_BUFFER_MB: "4" }).levelWriteBufferMb).to.equal(16);
    expect(loadConfig({}, { AISA_LEVEL_WRITE_BUFFER_MB: "1024" }).levelWriteBufferMb).to.equal(1024);
    for (const bad of ["0", "-1", "1.5", "big"]) {
      expect(() => loadConfig({}, { AISA_LEVEL_WRITE_BUFFER_MB: bad })).to.throw(`--level-write-buffer-mb: expected an integer >= 1, got ${JSON.stringify(bad)}`);
    }
    expect(() => loadConfig({ levelWriteBufferMb: "1025" }, {})).to.throw('--level-write-buffer-mb: expected an integer <= 1024, got "1025"');
  });
});

describe("--ledger-filter-mb / AISA_LEDGER_FILTER_MB", () => {
  it("defaults to 32, takes the flag over the env, and refuses 0, > 4096 or a non-integer naming the flag", () => {
    expect(loadConfig({}, {}).ledgerFilterMb).to.equal(32);
    expect(loadConfig({}, { AISA_LEDGER_FILTER_MB: "128" }).ledgerFilterMb).to.equal(128);
    expect(loadConfig({ ledgerFilterMb: "64" }, { AISA_LEDGER_FILTER_MB: "128" }).ledgerFilterMb).to.equal(64);
    expect(loadConfig({}, { AISA_LEDGER_FILTER_MB: "4096" }).ledgerFilterMb).to.equal(4096);
    for (const bad of ["0", "-1", "1.5", "big", "1e400"]) {
      expect(() => loadConfig({}, { AISA_LEDGER_FILTER_MB: bad })).to.throw(`--ledger-filter-mb: expected an integer >= 1, got ${JSON.stringify(bad)}`);
    }
    expect(() => loadConfig({ ledgerFilterMb: "4097" }, {})).to.throw('--ledger-filter-mb: expected an integer <= 4096, got "4097"');
  });
});
