// The live hub builds each second's event once per distinct filter and shares it among the
// subscribers with that filter (issue 13, finding 4: the per-second cost must not grow with
// the number of streams); a late subscriber still gets the key_expiring alerts sent before it.
import { expect } from "chai";
import { randomBytes } from "node:crypto";
import type { Principal } from "../../src/domain/types.js";
import { SecretBox } from "../../src/keys/secrets.js";
import { AdminService } from "../../src/service/admin.js";
import { UsageRecorder, type LiveEvent } from "../../src/service/usage.js";
import { watchAdmission } from "../../src/service/watchLimits.js";
import { LevelStore } from "../../src/store/level/levelStore.js";
import { AdminService as AdminService_, UsageEvent } from "../../src/gen/aisa/v1/admin.js";
import { withSharedSerialization } from "../../src/transport/serialize.js";
import { removeDir, tempDir } from "../helpers/tmp.js";

const OPERATOR: Principal = { tokenId: "operator", accountId: null, readOnly: false };
const now0 = Date.parse("2026-05-04T10:00:00Z");
const f = (accountId: string) => ({ keyId: "", accountId, group: "", model: "" });

describe("usage: live events shared per filter", function () {
  this.timeout(20_000);
  let dir: string;
  let store: LevelStore;
  let r: UsageRecorder;
  const now = Date.parse("2026-05-04T10:00:00Z");
  const clock = () => now;

  beforeEach(async () => {
    dir = await tempDir();
    store = new LevelStore({ dir, clock });
    await store.open(now);
    r = new UsageRecorder({ store, clock });
  });
  afterEach(async () => {
    await r.stop();
    await store.close();
    await removeDir(dir);
  });

  it("500 subscribers with one filter get the same event object; another filter gets its own", async () => {
    const same: LiveEvent[] = [];
    const other: LiveEvent[] = [];
    const offs = [];
    for (let i = 0; i < 500; i++) offs.push(r.subscribe(f("acct"), (e) => same.push(e)));
    offs.push(r.subscribe(f("else"), (e) => other.push(e)));
    r.recordDecision("ALLOWED", { keyId: "key_a", accountId: "acct", group: "g" }, "m1");
    await r.tickLive();
    expect(same).to.have.length(500);
    expect(new Set(same).size, "one event object for the 500").to.equal(1);
    expect(same[0]!.total.requests).to.equal(1);
    expect(other).to.have.length(1);
    expect(other[0]).to.not.equal(same[0]);
    expect(other[0]!.total.requests).to.equal(0);
    for (const off of offs) off();
    expect(r.subscribers).to.equal(0);
  });

  it("key_expiring: sent once to the filter's subscribers; one that joins later gets it on its first event", async () => {
    const admin = new AdminService({ store, box: new SecretBox(randomBytes(32)), clock, operatorTokenHash: "x", events: (e) => r.keyEvent(e) });
    const { key } = await admin.createKey(OPERATOR, { name: "soon", quota: 10, expires: "1h" }, undefined);
    const expiring = (evs: LiveEvent[]) => evs.flatMap((e) => e.alerts).filter((a) => a.kind === "key_expiring" && a.targetId === key.record.id);
    const early: LiveEvent[] = [];
    const offEarly = r.subscribe(f(""), (e) => early.push(e));
    await r.tickLive();
    expect(expiring(early)).to.have.length(1);
    const late: LiveEvent[] = [];
    const offLate = r.subscribe(f(""), (e) => late.push(e));
    await r.tickLive();
    expect(expiring(early), "not again to the early one").to.have.length(1);
    expect(expiring(late), "the late one catches up").to.have.length(1);
    await r.tickLive();
    expect(expiring(late)).to.have.length(1);
    offEarly();
    offLate();
  });

  it("watchAdmission: per token first, then in total; the message names the limit and its flag", () => {
    const limits = { perToken: 8, total: 256 };
    expect(watchAdmission("t1", 7, 255, limits)).to.equal(null);
    expect(watchAdmission("t1", 8, 10, limits)).to.match(/at most 8 per token, --watch-streams-per-token/);
    expect(watchAdmission("t1", 0, 256, limits)).to.match(/at most 256 in total, --watch-streams-total/);
  });
});

describe("usage: a shared event is encoded once", () => {
  it("withSharedSerialization: the same response object gives the same bytes object, equal to the plain encoding", () => {
    const def = withSharedSerialization(AdminService_, ["watchUsage"]);
    const ev = UsageEvent.fromPartial({ at: new Date(now0), byKey: [{ id: "key_a" }] });
    const a = def.watchUsage.responseSerialize(ev);
    expect(def.watchUsage.responseSerialize(ev)).to.equal(a);
    expect(Buffer.compare(a, AdminService_.watchUsage.responseSerialize(ev))).to.equal(0);
    expect(def.watchUsage.responseSerialize(UsageEvent.fromPartial({ at: new Date(now0) }))).to.not.equal(a);
  });
});
