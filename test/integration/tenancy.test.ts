// Tenant isolation of the admin API for account-scoped tokens: group assignment (a group
// decides a key's models and price), which groups an account sees, and audit paging.
// A real sidecar (LevelDB in a temp dir, gRPC on 127.0.0.1:0) and real tokens.
import { expect } from "chai";
import { status } from "@grpc/grpc-js";
import { KeySort, type CreateKeyResponse, type CreateTokenResponse, type ListAuditResponse, type ListGroupsResponse, type ListKeysResponse } from "../../src/gen/aisa/v1/admin.js";
import type { CheckResponse } from "../../src/gen/aisa/v1/authorizer.js";
import type { AuditEntry, Group, Key } from "../../src/gen/aisa/v1/types.js";
import { call, expectGrpcError, removeDir, startTestSidecar, type TestSidecar } from "../helpers/sidecar.js";

describe("tenancy: what an account-scoped token may assign and see", function () {
  this.timeout(60_000);
  let s: TestSidecar;
  let acme: string; // token of account "acme"
  let beta: string; // token of account "beta"
  const admin = <Res>(method: string, req: unknown, token?: string) => call<unknown, Res>(s.admin, method, req, s.meta(token));
  const check = (req: Record<string, unknown>) => call<unknown, CheckResponse>(s.authorizer, "check", req);

  before(async () => {
    s = await startTestSidecar();
    for (const id of ["acme", "beta"]) await admin("createAccount", { id, name: id, initialBalance: "100000000" });
    acme = (await admin<CreateTokenResponse>("createToken", { name: "acme ops", accountId: "acme" })).secret;
    beta = (await admin<CreateTokenResponse>("createToken", { name: "beta ops", accountId: "beta" })).secret;
    await admin("setPrice", { price: { model: "*", inputPerMillion: "75000", outputPerMillion: "300000" } });
    await admin("createGroup", { name: "cheap", description: "cheap models only", models: ["cheap-model"] });
    await admin("createGroup", { name: "discount", description: "partners", priceRatio: "0.01" });
    await admin("createGroup", { name: "beta-only", description: "beta's private group" });
  });
  after(async () => {
    await s.close();
    await removeDir(s.dir);
  });

  describe("group assignment (finding 2)", () => {
    let key: CreateKeyResponse;
    before(async () => {
      // The operator puts acme's key in "cheap".
      key = await admin<CreateKeyResponse>("createKey", { spec: { name: "acme cheap", group: "cheap", quota: "100000000" }, accountId: "acme" });
    });

    const denied = [
      { name: "to default (escapes the group's model list)", group: "default" },
      { name: "to a ratio-0.01 group", group: "discount" },
      { name: "to another tenant's group", group: "beta-only" },
      { name: "to a group that does not exist (answered like a closed one)", group: "no-such-group" },
    ];
    for (const c of denied) {
      it(`UpdateKey by the account token ${c.name}: PERMISSION_DENIED naming spec.group, nothing changed`, async () => {
        const e = await expectGrpcError(admin("updateKey", { id: key.key!.id, spec: { group: c.group }, updateMask: ["group"] }, acme), status.PERMISSION_DENIED);
        expect(e.details).to.match(/^spec\.group: /);
        expect((await admin<Key>("getKey", { id: key.key!.id })).group).to.equal("cheap");
      });
    }

    it("so Check still denies a model outside the group's list", async () => {
      const c = await check({ apiKey: key.secret, model: "gpt-4o", clientIp: "203.0.113.7" });
      expect(c.allowed).to.equal(false);
    });

    for (const c of denied.filter((d) => d.group !== "default")) {
      it(`CreateKey by the account token ${c.name.replace(/^to/, "into")}: PERMISSION_DENIED naming spec.group, nothing created`, async () => {
        const before = await admin<{ totalSize: number }>("listKeys", { pageSize: 1000 }, acme);
        const e = await expectGrpcError(admin("createKey", { spec: { name: "sneaky", group: c.group } }, acme), status.PERMISSION_DENIED);
        expect(e.details).to.match(/^spec\.group: /);
        expect((await admin<{ totalSize: number }>("listKeys", { pageSize: 1000 }, acme)).totalSize).to.equal(before.totalSize);
      });
    }

    it("the account token may create in default and keep a key's current group", async () => {
      const k = await admin<CreateKeyResponse>("createKey", { spec: { name: "acme default" } }, acme);
      expect(k.key!.group).to.equal("default");
      const same = await admin<Key>("updateKey", { id: key.key!.id, spec: { name: "renamed", group: "cheap" }, updateMask: ["name", "group"] }, acme);
      expect(same.group).to.equal("cheap");
    });

    it("an operator opens a group to an account; then (only) that account may assign it", async () => {
      const e = await expectGrpcError(admin("updateGroup", { name: "discount", group: { accounts: ["acme"] }, updateMask: ["accounts"] }, acme), status.PERMISSION_DENIED);
      expect(e.details).to.include("groups");
      const g = await admin<Group>("updateGroup", { name: "discount", group: { accounts: ["acme"] }, updateMask: ["accounts"] });
      expect(g.accounts).to.deep.equal(["acme"]);
      const moved = await admin<Key>("updateKey", { id: key.key!.id, spec: { group: "discount" }, updateMask: ["group"] }, acme);
      expect(moved.group).to.equal("discount");
      const created = await admin<CreateKeyResponse>("createKey", { spec: { name: "acme discount", group: "discount" } }, acme);
      expect(created.key!.group).to.equal("discount");
      await expectGrpcError(admin("createKey", { spec: { name: "beta discount", group: "discount" } }, beta), status.PERMISSION_DENIED);
      // Closing it again stops new assignments; the operator still moves keys anywhere.
      await admin("updateGroup", { name: "discount", group: { accounts: [] }, updateMask: ["accounts"] });
      await expectGrpcError(admin("createKey", { spec: { name: "again", group: "discount" } }, acme), status.PERMISSION_DENIED);
      expect((await admin<Key>("updateKey", { id: key.key!.id, spec: { group: "cheap" }, updateMask: ["group"] })).group).to.equal("cheap");
    });

    it("opening a group to an unknown account is INVALID_ARGUMENT naming the entry, and changes nothing", async () => {
      const e = await expectGrpcError(admin("updateGroup", { name: "cheap", group: { accounts: ["acme", "nope"] }, updateMask: ["accounts"] }), status.INVALID_ARGUMENT);
      expect(e.details).to.match(/^group\.accounts\[1\]: /);
      const e2 = await expectGrpcError(admin("createGroup", { name: "x", accounts: ["nope"] }), status.INVALID_ARGUMENT);
      expect(e2.details).to.match(/^accounts\[0\]: /);
      const groups = await admin<ListGroupsResponse>("listGroups", {});
      expect(groups.groups.find((g) => g.name === "cheap")!.accounts).to.deep.equal([]);
      expect(groups.groups.map((g) => g.name)).to.not.include("x");
    });
  });

  describe("groups an account token sees (finding 11)", () => {
    before(async () => {
      await admin("createKey", { spec: { name: "beta private", group: "beta-only" }, accountId: "beta" });
      await admin("createKey", { spec: { name: "beta cheap 1", group: "cheap" }, accountId: "beta" });
      await admin("createKey", { spec: { name: "beta cheap 2", group: "cheap" }, accountId: "beta" });
      await admin("createGroup", { name: "opened", description: "open to acme and beta", accounts: ["acme", "beta"] });
    });

    it("only default, the groups its keys use and the groups opened to it, counting its own keys, naming only itself", async () => {
      const all = await admin<ListGroupsResponse>("listGroups", {});
      const mine = await admin<ListGroupsResponse>("listGroups", {}, acme);
      const count = async (token: string, group: string) =>
        (await admin<{ keys: Key[] }>("listKeys", { group, pageSize: 1000 }, token)).keys.length;
      expect(mine.groups.map((g) => g.name)).to.deep.equal(["cheap", "default", "discount", "opened"]); // discount: its key from the test above
      for (const g of mine.groups) expect(Number(g.keyCount), g.name).to.equal(await count(acme, g.name));
      expect(mine.groups.find((g) => g.name === "opened")!.accounts).to.deep.equal(["acme"]);
      // The operator sees every group, every key and every account a group is opened to.
      expect(all.groups.map((g) => g.name)).to.include("beta-only");
      expect(Number(all.groups.find((g) => g.name === "cheap")!.keyCount)).to.be.greaterThan(Number(mine.groups.find((g) => g.name === "cheap")!.keyCount));
      expect(all.groups.find((g) => g.name === "opened")!.accounts).to.deep.equal(["acme", "beta"]);
      const theirs = await admin<ListGroupsResponse>("listGroups", {}, beta);
      expect(theirs.groups.map((g) => g.name)).to.deep.equal(["beta-only", "cheap", "default", "opened"]);
      expect(Number(theirs.groups.find((g) => g.name === "cheap")!.keyCount)).to.equal(2);
    });
  });
  describe("audit paging for an account token (finding 12)", () => {
    it("accepts every page token it hands out: audit ids end in 4 or 5 base62 characters", async () => {
      for (const t of ["0000000000000000000000", "00000000000000000000000"]) {
        expect((await admin<ListAuditResponse>("listAudit", { pageSize: 1, pageToken: t })).entries, t).to.deep.equal([]);
      }
      await expectGrpcError(admin("listAudit", { pageToken: "000000000000000000000000" }), status.INVALID_ARGUMENT);
    });

    it("pages over the account's own entries only: full pages, the right next token, its deleted keys included", async () => {
      await admin("createAccount", { id: "gamma", name: "gamma" });
      const gamma = (await admin<CreateTokenResponse>("createToken", { name: "gamma ops", accountId: "gamma" })).secret;
      const ids: string[] = [];
      for (let i = 0; i < 4; i++) ids.push((await admin<CreateKeyResponse>("createKey", { spec: { name: `g${i}` } }, gamma)).key!.id);
      await admin("updateKey", { id: ids[0], spec: { name: "g0 renamed" }, updateMask: ["name"] }, gamma);
      await admin("deleteKeys", { ids: [ids[1], ids[2]] }, gamma);
      // Then 150 entries by others: 30 keys of another account, each revealed 4 times.
      const others: string[] = [];
      for (let i = 0; i < 30; i++) others.push((await admin<CreateKeyResponse>("createKey", { spec: { name: `o${i}` } })).key!.id);
      for (let i = 0; i < 4; i++) await admin("revealKeys", { ids: others });

      const pages: AuditEntry[][] = [];
      let token = "";
      do {
        const r = await admin<ListAuditResponse>("listAudit", { pageSize: 3, pageToken: token }, gamma);
        pages.push(r.entries);
        token = r.nextPageToken;
      } while (token && pages.length < 20);
      expect(pages.map((p) => p.length)).to.deep.equal([3, 3, 1]);
      const entries = pages.flat();
      expect(entries.map((e) => e.action)).to.deep.equal(["DeleteKey", "DeleteKey", "UpdateKey", "CreateKey", "CreateKey", "CreateKey", "CreateKey"]);
      expect(new Set(entries.map((e) => e.target))).to.deep.equal(new Set(ids));
      // Filters still apply within the account's entries; another account's key gives nothing.
      expect((await admin<ListAuditResponse>("listAudit", { target: ids[1] }, gamma)).entries.map((e) => e.action)).to.deep.equal(["DeleteKey", "CreateKey"]);
      expect((await admin<ListAuditResponse>("listAudit", { target: others[0] }, gamma)).entries).to.deep.equal([]);
      // The operator still sees everything.
      expect((await admin<ListAuditResponse>("listAudit", { pageSize: 1000 })).entries.length).to.be.greaterThan(157);
    });
  });

  describe("ListKeys paging keeps the listing between pages (no rescan per page), scoped to its tenant", () => {
    const ids: string[] = [];
    before(async () => {
      for (let i = 0; i < 5; i++) ids.push((await admin<CreateKeyResponse>("createKey", { spec: { name: `pg-${i}` }, accountId: "acme" })).key!.id);
      await admin<CreateKeyResponse>("createKey", { spec: { name: "pg-beta" }, accountId: "beta" });
    });

    it("later pages read each key fresh: a key disabled after page 1 shows disabled on page 2, a deleted one is left out", async () => {
      const p1 = await admin<ListKeysResponse>("listKeys", { query: "pg-", pageSize: 2, sort: KeySort.KEY_SORT_NAME }, acme);
      expect(p1.keys.map((k) => k.name)).to.deep.equal(["pg-0", "pg-1"]);
      expect(p1.totalSize).to.equal(5);
      await admin("setKeysEnabled", { ids: [ids[2]], enabled: false }, acme);
      await admin("deleteKeys", { ids: [ids[3]] }, acme);
      const p2 = await admin<ListKeysResponse>("listKeys", { query: "pg-", pageSize: 2, sort: KeySort.KEY_SORT_NAME, pageToken: p1.nextPageToken }, acme);
      expect(p2.keys.map((k) => k.name)).to.deep.equal(["pg-2"]);
      expect(p2.keys[0]!.status).to.not.equal(p1.keys[0]!.status);
      const p3 = await admin<ListKeysResponse>("listKeys", { query: "pg-", pageSize: 2, sort: KeySort.KEY_SORT_NAME, pageToken: p2.nextPageToken }, acme);
      expect(p3.keys.map((k) => k.name)).to.deep.equal(["pg-4"]);
      expect(p3.nextPageToken).to.equal("");
    });

    it("another tenant presenting acme's page token gets its own listing, never acme's keys", async () => {
      const p1 = await admin<ListKeysResponse>("listKeys", { query: "pg-", pageSize: 1, sort: KeySort.KEY_SORT_NAME }, acme);
      expect(p1.nextPageToken).to.not.equal("");
      const other = await admin<ListKeysResponse>("listKeys", { query: "pg-", pageSize: 1, sort: KeySort.KEY_SORT_NAME, pageToken: p1.nextPageToken }, beta);
      // Beta has one pg- key: offset 1 of its own listing is past the end.
      expect(other.keys).to.deep.equal([]);
      expect(other.totalSize).to.equal(1);
      // The same token with another query recomputes that query's listing.
      const q2 = await admin<ListKeysResponse>("listKeys", { query: "pg-4", pageSize: 1, pageToken: p1.nextPageToken }, acme);
      expect(q2.totalSize).to.equal(1);
    });
  });
});
