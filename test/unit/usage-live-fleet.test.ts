// The live hub on a fleet (service/usage.ts, FLEET): two recorders joined by an in-memory
// LiveBus. A sidecar publishes only while another watches; a fleet-wide subscriber gets the sum
// of its own and the others' seconds; a local one (the webhooks) only its own; a bus that is
// down is said (fleet.othersMissing); mergeLiveEvents keeps the fleet status.
// The Redis implementation is tested with real processes in test/integration/fleetWatch.test.ts.
import { expect } from "chai";
import { randomBytes } from "node:crypto";
import type { Principal } from "../../src/domain/types.js";
import { SecretBox } from "../../src/keys/secrets.js";
import { AdminService } from "../../src/service/admin.js";
import { mergeLiveEvents, UsageRecorder, type LiveBus, type LiveEvent, type LiveSecond } from "../../src/service/usage.js";
import { LevelStore } from "../../src/store/level/levelStore.js";
import { removeDir, tempDir } from "../helpers/tmp.js";

const OPERATOR: Principal = { tokenId: "operator", accountId: null, readOnly: false };
const ALL = { keyId: "", accountId: "", group: "", model: "" };

/** Buses of one "Redis": a second goes to the other buses' listeners; wanted = another bus has listeners. */
class Net {
  readonly buses = new Set<MemBus>();
}

class MemBus implements LiveBus {
  healthy = true;
  readonly published: LiveSecond[] = [];
  readonly listeners = new Set<(s: LiveSecond, sender: string) => void>();
  #wanted = false;
  constructor(
    readonly net: Net,
    readonly id: string,
  ) {
    net.buses.add(this);
  }
  get wanted(): boolean {
    return this.#wanted;
  }
  #update(): void {
    this.#wanted = [...this.net.buses].some((b) => b !== this && b.listeners.size > 0);
  }
  publish(s: LiveSecond): void {
    this.published.push(JSON.parse(JSON.stringify(s)) as LiveSecond);
    for (const b of this.net.buses) if (b !== this && b.healthy && this.healthy) for (const fn of b.listeners) fn(JSON.parse(JSON.stringify(s)) as LiveSecond, this.id);
    this.#update();
  }
  poll(): void {
    this.#update();
  }
  subscribe(fn: (s: LiveSecond, sender: string) => void): () => void {
    this.listeners.add(fn);
    return () => this.listeners.delete(fn);
  }
  async close(): Promise<void> {}
}

describe("usage: live events on a fleet (LiveBus)", function () {
  this.timeout(20_000);
  let dir: string;
  let store: LevelStore;
  let net: Net;
  let busA: MemBus, busB: MemBus;
  let a: UsageRecorder, b: UsageRecorder;
  const now = Date.parse("2026-05-04T10:00:00Z");
  const clock = () => now;
  const who = (keyId: string) => ({ keyId, accountId: "acct", group: "g" });

  beforeEach(async () => {
    dir = await tempDir();
    store = new LevelStore({ dir, clock });
    await store.open(now);
    net = new Net();
    busA = new MemBus(net, "A");
    busB = new MemBus(net, "B");
    a = new UsageRecorder({ store, clock, bus: busA });
    b = new UsageRecorder({ store, clock, bus: busB });
  });
  afterEach(async () => {
    await a.stop();
    await b.stop();
    await store.close();
    await removeDir(dir);
  });

  it("nobody watching: nothing is published (only polls)", async () => {
    b.recordDecision("ALLOWED", who("k1"), "m");
    await b.tickLive();
    await a.tickLive();
    expect(busB.published).to.have.length(0);
    expect(busA.published).to.have.length(0);
  });

  it("a fleet-wide subscriber on A gets B's traffic added to A's, once; a local one only A's", async () => {
    const fleet: LiveEvent[] = [];
    const local: LiveEvent[] = [];
    a.subscribe(ALL, (e) => fleet.push(e), { fleet: true });
    a.subscribe(ALL, (e) => local.push(e));
    await b.tickLive(); // B polls: someone watches
    expect(busB.wanted).to.equal(true);
    expect(busA.wanted, "A has no watcher elsewhere: it does not publish").to.equal(false);

    for (let i = 0; i < 3; i++) b.recordDecision("ALLOWED", who("k1"), "m");
    b.recordDecision("KEY_DISABLED", who("k2"), "m");
    a.recordDecision("ALLOWED", who("k1"), "m");
    a.recordConsume({ requestId: "r1", reservationId: "", keyId: "k1", accountId: "acct", group: "g", model: "m", inputTokens: 5, outputTokens: 7, units: 4, at: now } as any);
    await b.tickLive(); // publishes its second
    expect(busB.published).to.have.length(1);
    expect(busB.published[0]!.t).to.have.length(2);
    await a.tickLive();

    const e = fleet.at(-1)!;
    expect(e.total).to.include({ requests: 4, denied: 1, consumed: 1, units: 4 });
    expect(e.byKey.find((r) => r.id === "k1")!.counters.requests).to.equal(4);
    expect(e.byKey.find((r) => r.id === "k2")!.counters.denies).to.deep.equal({ KEY_DISABLED: 1 });
    expect(e.byGroup.find((r) => r.id === "g")!.counters.requests).to.equal(4);
    expect(e.fleet).to.deep.equal({ sidecars: 2, othersMissing: false });
    const l = local.at(-1)!;
    expect(l.total).to.include({ requests: 1, denied: 0, consumed: 1 });
    expect(l.fleet).to.equal(undefined);

    // The next second is empty on both: nothing is delivered twice.
    await b.tickLive();
    await a.tickLive();
    expect(fleet.at(-1)!.total.requests).to.equal(0);
    expect(fleet.at(-1)!.fleet!.sidecars, "B still heard (it publishes every second, even empty)").to.equal(2);
  });

  it("B's admin key events reach A's fleet-wide subscribers (with the key's state), not its local ones", async () => {
    const admin = new AdminService({ store, box: new SecretBox(randomBytes(32)), clock, operatorTokenHash: "x", events: (e) => b.keyEvent(e) });
    const fleet: LiveEvent[] = [];
    const local: LiveEvent[] = [];
    a.subscribe(ALL, (e) => fleet.push(e), { fleet: true });
    a.subscribe(ALL, (e) => local.push(e));
    await b.tickLive();
    const { key } = await admin.createKey(OPERATOR, { name: "made-on-b", quota: 10 }, undefined);
    await admin.setKeysEnabled(OPERATOR, [key.record.id], false);
    await b.tickLive();
    await a.tickLive();
    const evs = fleet.flatMap((e) => e.keyEvents);
    expect(evs.map((k) => k.kind)).to.deep.equal(["created", "disabled"]);
    expect(evs[0]!.key!.record.id).to.equal(key.record.id);
    expect(local.flatMap((e) => e.keyEvents)).to.deep.equal([]);
  });

  it("the bus down: fleet-wide events say others are missing and still carry A's own traffic; back → counted again", async () => {
    const fleet: LiveEvent[] = [];
    a.subscribe(ALL, (e) => fleet.push(e), { fleet: true });
    await b.tickLive();
    busA.healthy = false;
    b.recordDecision("ALLOWED", who("k1"), "m");
    a.recordDecision("ALLOWED", who("k1"), "m");
    await b.tickLive();
    await a.tickLive();
    expect(fleet.at(-1)!.total.requests).to.equal(1);
    expect(fleet.at(-1)!.fleet!.othersMissing).to.equal(true);
    busA.healthy = true;
    b.recordDecision("ALLOWED", who("k1"), "m");
    await b.tickLive();
    await a.tickLive();
    expect(fleet.at(-1)!.total.requests).to.equal(1);
    expect(fleet.at(-1)!.fleet!.othersMissing).to.equal(false);
  });

  it("the last fleet-wide subscriber gone: A leaves the bus, B stops publishing", async () => {
    const off = a.subscribe(ALL, () => {}, { fleet: true });
    await b.tickLive();
    await b.tickLive();
    expect(busB.published).to.have.length(1);
    off();
    expect(busA.listeners.size).to.equal(0);
    await b.tickLive(); // published once more, learns nobody listens
    await b.tickLive();
    await b.tickLive();
    expect(busB.published).to.have.length(2);
  });

  it("mergeLiveEvents keeps the fleet status: most sidecars, missing if either was", () => {
    const ev = (fleet: LiveEvent["fleet"]): LiveEvent => ({ from: now, at: now, total: { requests: 0, denied: 0, denies: {}, inputTokens: 0, outputTokens: 0, units: 0, consumed: 0 }, byKey: [], byGroup: [], keyEvents: [], alerts: [], remaining: [], fleet });
    expect(mergeLiveEvents(ev({ sidecars: 3, othersMissing: false }), ev({ sidecars: 2, othersMissing: true })).fleet).to.deep.equal({ sidecars: 3, othersMissing: true });
    expect(mergeLiveEvents(ev(undefined), ev(undefined)).fleet).to.equal(undefined);
  });
});
