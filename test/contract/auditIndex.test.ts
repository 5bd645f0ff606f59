// LevelStore: account-scoped ListAudit reads the account's entries from an index (`auditacct`);
// a data dir written by an older build keeps its earlier entries, which carry no account, in a
// legacy range that is scanned and matched by the record each entry recorded.
import { expect } from "chai";
import { Level } from "level";
import { LevelStore } from "../../src/store/level/levelStore.js";
import { removeDir, tempDir } from "../helpers/tmp.js";

const T0 = Date.UTC(2026, 10, 27, 12, 0, 0);

describe("LevelStore: audit entries by account", () => {
  let dir: string;
  let now = T0;
  const open = async () => {
    const s = new LevelStore({ dir, clock: () => now });
    await s.open(now);
    return s;
  };
  beforeEach(async () => {
    dir = await tempDir();
  });
  afterEach(async () => {
    await removeDir(dir);
  });

  it("pages over an older build's entries (matched by their recorded record) after the indexed ones", async () => {
    let s = await open();
    const e = (target: string, before: Record<string, unknown>) => ({ actor: "operator", action: "UpdateKey", target, before });
    // What an older build wrote: no account field, no index entry.
    await s.appendAudit([
      e("key_old1", { id: "key_old1", accountId: "acme" }),
      e("key_beta", { id: "key_beta", accountId: "beta", metadata: { accountId: "acme" } }),
      { actor: "operator", action: "CreditAccount", target: "acme" },
      e("key_old2", { id: "key_old2", accountId: "acme" }),
    ]);
    await s.close();
    const db = new Level<string, string>(`${dir}/db`, { valueEncoding: "utf8" });
    await db.sublevel("meta", { valueEncoding: "json" }).del("auditIndexFrom");
    await db.close();
    now = T0 + 60_000;
    s = await open(); // this build's first open of the dir: entries from now on are indexed
    await s.appendAudit([
      { actor: "operator", action: "UpdateKey", target: "key_new1", account: "acme" },
      { actor: "operator", action: "UpdateKey", target: "key_b", account: "beta" },
      { actor: "operator", action: "UpdateKey", target: "key_new2", account: "acme" },
    ]);
    const pages: string[][] = [];
    let before: string | undefined;
    for (;;) {
      const page = await s.listAudit({ account: "acme", limit: 2, before });
      if (page.length === 0) break;
      pages.push(page.map((x) => x.target));
      before = page[page.length - 1]!.id;
    }
    expect(pages).to.deep.equal([["key_new2", "key_new1"], ["key_old2", "key_old1"]]);
    expect((await s.listAudit({ account: "acme", limit: 3 })).map((x) => x.target)).to.deep.equal(["key_new2", "key_new1", "key_old2"]);
    expect((await s.listAudit({ account: "beta", limit: 10 })).map((x) => x.target)).to.deep.equal(["key_b", "key_beta"]);
    // since: only entries at or after it, from the index alone.
    expect((await s.listAudit({ account: "acme", limit: 10, since: T0 + 60_000 })).map((x) => x.target)).to.deep.equal(["key_new2", "key_new1"]);
    await s.close();
  });
});
