// The admin API end to end: a real sidecar (LevelDB in a temp dir, gRPC on
// 127.0.0.1:0) and the generated grpc-js client, with real tokens.
import { expect } from "chai";
import { readFile, stat } from "node:fs/promises";
import { join } from "node:path";
import { status } from "@grpc/grpc-js";
import type { CreateKeyResponse, ListKeysResponse, RevealKeysResponse, RotateKeyResponse, ListAuditResponse, CreateTokenResponse, ListGroupsResponse } from "../../src/gen/aisa/v1/admin.js";
import { KeySort, Tristate } from "../../src/gen/aisa/v1/admin.js";
import { KeyStatus, RefillPeriod, type Account, type Key } from "../../src/gen/aisa/v1/types.js";
import { call, expectGrpcError, removeDir, startTestSidecar, type TestSidecar } from "../helpers/sidecar.js";
import { filesUnder } from "../helpers/tmp.js";

describe("admin API (gRPC, end to end)", function () {
  this.timeout(60_000);
  let s: TestSidecar;
  const admin = <Res>(method: string, req: unknown, token?: string) => call<unknown, Res>(s.admin, method, req, s.meta(token));
  const create = (spec: Record<string, unknown>, accountId = "", token?: string) =>
    admin<CreateKeyResponse>("createKey", { spec: { name: "k", ...spec }, accountId }, token);

  before(async () => {
    s = await startTestSidecar();
  });
  after(async () => {
    await s.close();
    await removeDir(s.dir);
  });

  it("makes the operator token and master key on first start, mode 0600", async () => {
    for (const f of ["admin.token", "master.key"]) {
      const st = await stat(join(s.dir, f));
      expect(st.mode & 0o777, f).to.equal(0o600);
    }
    expect((await readFile(join(s.dir, "admin.token"), "utf8")).trim()).to.equal(s.adminToken);
  });

  describe("authentication", () => {
    it("rejects a call without a token: UNAUTHENTICATED", async () => {
      await expectGrpcError(call(s.admin, "listKeys", {}, s.meta("")), status.UNAUTHENTICATED);
    });
    it("rejects a wrong token: UNAUTHENTICATED", async () => {
      await expectGrpcError(admin("listKeys", {}, "aat-wrong"), status.UNAUTHENTICATED);
    });
    it("accepts the operator token", async () => {
      const who = await admin<{ tokenId: string; accountId: string; quotaPerUnit: string }>("whoAmI", {});
      expect(who.tokenId).to.equal("operator");
      expect(who.accountId).to.equal("");
      expect(who.quotaPerUnit).to.equal("500000");
    });
  });

  describe("keys", () => {
    it("creates a key with every setting and returns the secret once", async () => {
      await admin("createGroup", { name: "team-a", description: "Team A", priceRatio: "1.5" });
      const r = await create({
        name: "prod backend",
        group: "team-a",
        quota: "1000000",
        expires: "1mo",
        models: ["gpt-4o-mini", "claude-3-5-haiku"],
        ips: ["10.1.2.3/8", "2001:DB8::/32", "::ffff:203.0.113.7"],
        limits: { rpm: 60, tpm: 100000, concurrency: 4 },
        refill: RefillPeriod.REFILL_PERIOD_MONTHLY,
        metadata: { env: "prod" },
      });
      expect(r.secret).to.match(/^sk-[0-9A-Za-z]{43}$/);
      const k = r.key!;
      expect(k.id).to.match(/^key_[0-9A-Za-z]{20}$/);
      expect(k.status).to.equal(KeyStatus.KEY_STATUS_ENABLED);
      expect(k.group).to.equal("team-a");
      expect(k.accountId).to.equal("default");
      expect(k.quota).to.deep.include({ unlimited: false, total: "1000000", remaining: "1000000", used: "0" });
      expect(k.ips).to.deep.equal(["10.0.0.0/8", "2001:db8::/32", "203.0.113.7"]);
      expect(k.maskedKey).to.equal(`sk-…${r.secret.slice(-4)}`);
      expect(k.expiresAt!.getTime()).to.be.greaterThan(Date.now() + 27 * 86_400_000);
      expect(k.refill).to.equal(RefillPeriod.REFILL_PERIOD_MONTHLY);
      expect(k.metadata).to.deep.equal({ env: "prod" });
      const got = await admin<Key>("getKey", { id: k.id });
      expect(got.name).to.equal("prod backend");
      expect(JSON.stringify(got)).to.not.include(r.secret);
    });

    it("defaults to the default group, never expires, and unlimited when asked", async () => {
      const r = await create({ name: "defaults", unlimited: true });
      expect(r.key!.group).to.equal("default");
      expect(r.key!.expiresAt).to.equal(undefined);
      expect(r.key!.quota!.unlimited).to.equal(true);
    });

    const bad: [string, Record<string, unknown>, string][] = [
      ["empty name", { name: "  " }, "spec.name"],
      ["overlong name", { name: "x".repeat(129) }, "spec.name"],
      ["unknown group", { group: "nope" }, "spec.group"],
      ["bad CIDR", { ips: ["10.0.0.0/8", "300.1.1.1"] }, "spec.ips[1]"],
      ["octal IPv4", { ips: ["010.0.0.1"] }, "spec.ips[0]"],
      ["negative quota", { quota: "-5" }, "spec.quota"],
      ["expiry in the past", { expires: "2020-01-01T00:00:00Z" }, "spec.expires"],
      ["garbage expiry", { expires: "tomorrow" }, "spec.expires"],
      ["empty model name", { models: ["gpt-4o", " "] }, "spec.models[1]"],
    ];
    for (const [name, spec, field] of bad) {
      it(`rejects ${name} with INVALID_ARGUMENT naming ${field}, and writes nothing`, async () => {
        const before = await admin<ListKeysResponse>("listKeys", { pageSize: 1000 });
        const e = await expectGrpcError(create(spec), status.INVALID_ARGUMENT);
        expect(e.details).to.include(field);
        const after = await admin<ListKeysResponse>("listKeys", { pageSize: 1000 });
        expect(after.totalSize).to.equal(before.totalSize);
      });
    }

    it("rejects an unknown account", async () => {
      const e = await expectGrpcError(create({}, "nope"), status.INVALID_ARGUMENT);
      expect(e.details).to.include("account_id");
    });

    it("updates only the fields in the mask", async () => {
      const r = await create({ name: "before", quota: "100", models: ["a"] });
      const id = r.key!.id;
      const k = await admin<Key>("updateKey", { id, spec: { name: "after", quota: "999", models: [] }, updateMask: ["name"] });
      expect(k.name).to.equal("after");
      expect(k.quota!.total).to.equal("100");
      expect(k.models).to.deep.equal(["a"]);
      const k2 = await admin<Key>("updateKey", { id, spec: { quota: "250", models: [] }, updateMask: ["quota", "models"] });
      expect(k2.quota!.total).to.equal("250");
      expect(k2.quota!.remaining).to.equal("250");
      expect(k2.models).to.deep.equal([]);
      const e = await expectGrpcError(admin("updateKey", { id, spec: {}, updateMask: ["secret"] }), status.INVALID_ARGUMENT);
      expect(e.details).to.include("update_mask[0]");
      await expectGrpcError(admin("updateKey", { id, spec: {}, updateMask: [] }), status.INVALID_ARGUMENT);
      await expectGrpcError(admin("updateKey", { id: "key_missing", spec: { name: "x" }, updateMask: ["name"] }), status.NOT_FOUND);
    });

    it("lists with search, filters, sort and page tokens", async () => {
      const tag = `search-${Date.now()}`;
      const ids: string[] = [];
      for (let i = 0; i < 5; i++) ids.push((await create({ name: `${tag}-${i}`, quota: String(100 * (5 - i)) })).key!.id);
      await admin("setKeysEnabled", { ids: [ids[0]], enabled: false });
      const all = await admin<ListKeysResponse>("listKeys", { query: tag.toUpperCase(), pageSize: 2, sort: KeySort.KEY_SORT_NAME });
      expect(all.totalSize).to.equal(5);
      expect(all.keys.map((k) => k.name)).to.deep.equal([`${tag}-0`, `${tag}-1`]);
      const p2 = await admin<ListKeysResponse>("listKeys", { query: tag, pageSize: 2, sort: KeySort.KEY_SORT_NAME, pageToken: all.nextPageToken });
      expect(p2.keys.map((k) => k.name)).to.deep.equal([`${tag}-2`, `${tag}-3`]);
      const disabled = await admin<ListKeysResponse>("listKeys", { query: tag, status: KeyStatus.KEY_STATUS_DISABLED });
      expect(disabled.keys.map((k) => k.id)).to.deep.equal([ids[0]]);
      const byId = await admin<ListKeysResponse>("listKeys", { query: ids[3]!.slice(4, 14) });
      expect(byId.keys.map((k) => k.id)).to.deep.equal([ids[3]]);
      const rem = await admin<ListKeysResponse>("listKeys", { query: tag, sort: KeySort.KEY_SORT_REMAINING });
      expect(rem.keys.map((k) => k.quota!.total)).to.deep.equal(["100", "200", "300", "400", "500"]);
      const unexpired = await admin<ListKeysResponse>("listKeys", { query: tag, expired: Tristate.TRISTATE_TRUE });
      expect(unexpired.totalSize).to.equal(0);
      await expectGrpcError(admin("listKeys", { pageToken: "garbage!" }), status.INVALID_ARGUMENT);
    });

    it("enables, disables and deletes in bulk, all or none", async () => {
      const a = (await create({ name: "bulk-a" })).key!.id;
      const b = (await create({ name: "bulk-b" })).key!.id;
      await expectGrpcError(admin("setKeysEnabled", { ids: [a, "key_missing"], enabled: false }), status.NOT_FOUND);
      expect((await admin<Key>("getKey", { id: a })).status).to.equal(KeyStatus.KEY_STATUS_ENABLED);
      const r = await admin<{ keys: Key[] }>("setKeysEnabled", { ids: [a, b], enabled: false });
      expect(r.keys.map((k) => k.status)).to.deep.equal([KeyStatus.KEY_STATUS_DISABLED, KeyStatus.KEY_STATUS_DISABLED]);
      await expectGrpcError(admin("deleteKeys", { ids: [a, a] }), status.INVALID_ARGUMENT);
      await expectGrpcError(admin("deleteKeys", { ids: [a, "key_missing"] }), status.NOT_FOUND);
      await admin("getKey", { id: a });
      const d = await admin<{ deletedIds: string[] }>("deleteKeys", { ids: [a, b] });
      expect(d.deletedIds).to.deep.equal([a, b]);
      await expectGrpcError(admin("getKey", { id: a }), status.NOT_FOUND);
    });

    it("reveals full secrets (audited) and rotates keeping the id and counters", async () => {
      const r = await create({ name: "reveal", quota: "77" });
      const id = r.key!.id;
      const rev = await admin<RevealKeysResponse>("revealKeys", { ids: [id] });
      expect(rev.keys[0]!.secret).to.equal(r.secret);
      const rot = await admin<RotateKeyResponse>("rotateKey", { id, graceSeconds: "0" });
      expect(rot.secret).to.not.equal(r.secret);
      expect(rot.key!.id).to.equal(id);
      expect(rot.key!.quota!.remaining).to.equal("77");
      const rev2 = await admin<RevealKeysResponse>("revealKeys", { ids: [id] });
      expect(rev2.keys[0]!.secret).to.equal(rot.secret);
      const audit = await admin<ListAuditResponse>("listAudit", { target: id });
      expect(audit.entries.map((e) => e.action)).to.include.members(["CreateKey", "RevealKeys", "RotateKey"]);
      const text = JSON.stringify(audit);
      expect(text).to.not.include(r.secret);
      expect(text).to.not.include(rot.secret);
      await expectGrpcError(admin("rotateKey", { id, graceSeconds: "99999999" }), status.INVALID_ARGUMENT);
    });

    it("audits a bulk reveal once per key, findable by each key id", async () => {
      const a = (await create({ name: "bulk-reveal-a" })).key!.id;
      const b = (await create({ name: "bulk-reveal-b" })).key!.id;
      const rev = await admin<RevealKeysResponse>("revealKeys", { ids: [a, b] });
      expect(rev.keys.map((k) => k.id)).to.deep.equal([a, b]);
      for (const id of [a, b]) {
        const audit = await admin<ListAuditResponse>("listAudit", { target: id });
        const entry = audit.entries.find((e) => e.action === "RevealKeys");
        expect(entry?.actor).to.equal("operator");
        expect(entry?.detail).to.include("bulk reveal of 2 keys");
      }
    });
  });

  describe("accounts, groups and account-scoped tokens", () => {
    let acmeToken: string;
    let otherKeyId: string;

    before(async () => {
      await admin<Account>("createAccount", { id: "acme", name: "Acme Corp", initialBalance: "5000" });
      const t = await admin<CreateTokenResponse>("createToken", { name: "acme ops", accountId: "acme" });
      acmeToken = t.secret;
      otherKeyId = (await create({ name: "default-account key" })).key!.id;
    });

    it("credits and debits with a reason; rejects zero and missing reasons", async () => {
      const a = await admin<Account>("adjustBalance", { accountId: "acme", delta: "2500", reason: "top-up" });
      expect(a.balance).to.equal("7500");
      const b = await admin<Account>("adjustBalance", { accountId: "acme", delta: "-500", reason: "refund" });
      expect(b.balance).to.equal("7000");
      expect((await expectGrpcError(admin("adjustBalance", { accountId: "acme", delta: "0", reason: "x" }), status.INVALID_ARGUMENT)).details).to.include("delta");
      expect((await expectGrpcError(admin("adjustBalance", { accountId: "acme", delta: "5", reason: "" }), status.INVALID_ARGUMENT)).details).to.include("reason");
      await expectGrpcError(admin("adjustBalance", { accountId: "nope", delta: "5", reason: "x" }), status.NOT_FOUND);
      await expectGrpcError(admin("createAccount", { id: "acme", name: "again" }), status.ALREADY_EXISTS);
    });

    it("an account token creates keys in its own account only", async () => {
      const r = await create({ name: "acme key" }, "", acmeToken);
      expect(r.key!.accountId).to.equal("acme");
      await expectGrpcError(create({ name: "sneaky" }, "default", acmeToken), status.NOT_FOUND);
    });

    it("an account token sees only its account's keys; another account's key is NOT_FOUND", async () => {
      const list = await admin<ListKeysResponse>("listKeys", { pageSize: 1000 }, acmeToken);
      expect(list.keys.length).to.be.greaterThan(0);
      expect(list.keys.every((k) => k.accountId === "acme")).to.equal(true);
      await expectGrpcError(admin("getKey", { id: otherKeyId }, acmeToken), status.NOT_FOUND);
      await expectGrpcError(admin("updateKey", { id: otherKeyId, spec: { name: "x" }, updateMask: ["name"] }, acmeToken), status.NOT_FOUND);
      await expectGrpcError(admin("setKeysEnabled", { ids: [otherKeyId], enabled: false }, acmeToken), status.NOT_FOUND);
      await expectGrpcError(admin("deleteKeys", { ids: [otherKeyId] }, acmeToken), status.NOT_FOUND);
      await expectGrpcError(admin("revealKeys", { ids: [otherKeyId] }, acmeToken), status.NOT_FOUND);
      await expectGrpcError(admin("rotateKey", { id: otherKeyId }, acmeToken), status.NOT_FOUND);
      expect((await admin<Key>("getKey", { id: otherKeyId })).status).to.equal(KeyStatus.KEY_STATUS_ENABLED);
    });

    it("an account token cannot move balances, manage groups, tokens or prices", async () => {
      await expectGrpcError(admin("adjustBalance", { accountId: "acme", delta: "1000000", reason: "free money" }, acmeToken), status.PERMISSION_DENIED);
      await expectGrpcError(admin("createGroup", { name: "g2" }, acmeToken), status.PERMISSION_DENIED);
      await expectGrpcError(admin("createToken", { name: "t" }, acmeToken), status.PERMISSION_DENIED);
      await expectGrpcError(admin("setPrice", { price: { model: "m", inputPerMillion: "1", outputPerMillion: "1" } }, acmeToken), status.PERMISSION_DENIED);
      await expectGrpcError(admin("getAccount", { id: "default" }, acmeToken), status.NOT_FOUND);
      const own = await admin<Account>("getAccount", { id: "acme" }, acmeToken);
      expect(own.id).to.equal("acme");
    });

    it("a read-only token reads but cannot change anything", async () => {
      const t = await admin<CreateTokenResponse>("createToken", { name: "viewer", readOnly: true });
      await admin("listKeys", {}, t.secret);
      await expectGrpcError(create({ name: "nope" }, "", t.secret), status.PERMISSION_DENIED);
      await expectGrpcError(admin("revealKeys", { ids: [otherKeyId] }, t.secret), status.PERMISSION_DENIED);
    });

    it("a revoked token stops working at once", async () => {
      const t = await admin<CreateTokenResponse>("createToken", { name: "temp" });
      await admin("listKeys", {}, t.secret);
      await admin("revokeToken", { id: t.token!.id });
      await expectGrpcError(admin("listKeys", {}, t.secret), status.UNAUTHENTICATED);
    });

    it("groups: key counts, update by mask, delete only when unused", async () => {
      await admin("createGroup", { name: "team-b", description: "B", priceRatio: "0.8", models: ["gpt-4o"] });
      const id = (await create({ name: "in b", group: "team-b" })).key!.id;
      const groups = await admin<ListGroupsResponse>("listGroups", {});
      const b = groups.groups.find((g) => g.name === "team-b")!;
      expect(b.keyCount).to.equal("1");
      expect(b.priceRatio).to.equal("0.8");
      const upd = await admin<{ priceRatio: string; description: string }>("updateGroup", { name: "team-b", group: { priceRatio: "1.25", description: "ignored" }, updateMask: ["price_ratio"] });
      expect(upd.priceRatio).to.equal("1.25");
      expect(upd.description).to.equal("B");
      expect((await expectGrpcError(admin("createGroup", { name: "Bad Name" }), status.INVALID_ARGUMENT)).details).to.include("name");
      expect((await expectGrpcError(admin("createGroup", { name: "r", priceRatio: "-1" }), status.INVALID_ARGUMENT)).details).to.include("price_ratio");
      await expectGrpcError(admin("deleteGroup", { name: "team-b" }), status.FAILED_PRECONDITION);
      await admin("deleteKeys", { ids: [id] });
      await admin("deleteGroup", { name: "team-b" });
      await expectGrpcError(admin("deleteGroup", { name: "default" }), status.FAILED_PRECONDITION);
    });
  });

  describe("secrets at rest", () => {
    it("after creating 100 keys, no file in the data dir contains any secret", async () => {
      const secrets: string[] = [];
      for (let i = 0; i < 100; i++) secrets.push((await create({ name: `secret-scan-${i}` })).secret);
      const files = await filesUnder(s.dir);
      expect(files.length).to.be.greaterThan(3);
      for (const f of files) {
        const buf = await readFile(f);
        const latin = buf.toString("latin1");
        for (const secret of secrets) {
          expect(latin.includes(secret), `${f} contains a secret`).to.equal(false);
          // Also the base62 body alone (without the sk- prefix).
          expect(latin.includes(secret.slice(3)), `${f} contains a secret body`).to.equal(false);
        }
      }
      for (const line of s.logs.lines) for (const secret of secrets) expect(line).to.not.include(secret);
    });
  });
});
