// src/domain/keyView.ts: what a key is for the people looking at it (effective models,
// expiry, status filters, spendable quota) — the rules the service, CLI and TUI share.
import { expect } from "chai";
import { allowsModel, effectiveModels, isExpiredAt, keyFacts, keyUsability, matchesStatusFilter, spendableUnits } from "../../src/domain/keyView.js";

describe("keyView: effective models", () => {
  const cases = [
    { name: "no lists: every model", key: [], group: [], want: { models: [], restricted: false, source: "none" } },
    { name: "unknown group: the key's list only (as Check)", key: [], group: undefined, want: { models: [], restricted: false, source: "none" } },
    { name: "key list only", key: ["a", "b"], group: [], want: { models: ["a", "b"], restricted: true, source: "key" } },
    { name: "group list only: the group restricts an 'Unlimited' key", key: [], group: ["gpt-4o-mini"], want: { models: ["gpt-4o-mini"], restricted: true, source: "group" } },
    { name: "both: the intersection, in the key's order", key: ["c", "a", "b"], group: ["b", "c"], want: { models: ["c", "b"], restricted: true, source: "key+group" } },
    { name: "both, disjoint: restricted to nothing", key: ["a"], group: ["b"], want: { models: [], restricted: true, source: "key+group" } },
  ] as const;
  for (const c of cases) it(c.name, () => expect(effectiveModels(c.key, c.group)).to.deep.equal(c.want));

  it("allowsModel agrees with the effective list", () => {
    expect(allowsModel(effectiveModels([], ["gpt-4o-mini"]), "flat-model")).to.equal(false);
    expect(allowsModel(effectiveModels([], ["gpt-4o-mini"]), "gpt-4o-mini")).to.equal(true);
    expect(allowsModel(effectiveModels([], []), "anything")).to.equal(true);
    expect(allowsModel(effectiveModels(["a"], ["b"]), "a")).to.equal(false);
  });
});

describe("keyView: expiry and status", () => {
  const now = 1_000_000;
  it("expires AT expiresAt (Check denies from then on)", () => {
    expect(isExpiredAt(now, now)).to.equal(true);
    expect(isExpiredAt(now + 1, now)).to.equal(false);
    expect(isExpiredAt(null, now)).to.equal(false);
    expect(isExpiredAt(undefined, now)).to.equal(false);
  });
  const cases = [
    { enabled: true, expired: false, want: "enabled", filters: { enabled: true, disabled: false, expired: false } },
    { enabled: false, expired: false, want: "disabled", filters: { enabled: false, disabled: true, expired: false } },
    { enabled: true, expired: true, want: "expired", filters: { enabled: false, disabled: false, expired: true } },
    { enabled: false, expired: true, want: "expired", filters: { enabled: false, disabled: true, expired: true } },
  ] as const;
  for (const c of cases) {
    it(`enabled=${c.enabled} expired=${c.expired} reads "${c.want}"; ENABLED keeps only usable keys`, () => {
      expect(keyUsability(c.enabled, c.expired)).to.equal(c.want);
      for (const f of ["enabled", "disabled", "expired"] as const) expect(matchesStatusFilter(f, c.enabled, c.expired), f).to.equal(c.filters[f]);
    });
  }
  it("keyFacts states the group's list and the expiry at `now`", () => {
    expect(keyFacts([], now - 1, ["m"], now)).to.deep.equal({ effectiveModels: ["m"], modelsRestricted: true, groupModels: ["m"], expired: true });
  });
});

describe("keyView: spendable quota", () => {
  it("is remaining minus what open reservations hold", () => {
    expect(spendableUnits(3000n, 3000n)).to.equal(0n);
    expect(spendableUnits(3000n, 1000n)).to.equal(2000n);
    expect(spendableUnits(-5n, 0n)).to.equal(-5n);
    expect(spendableUnits(9_223_372_036_854_775_807n, 1n)).to.equal(9_223_372_036_854_775_806n);
  });
});
