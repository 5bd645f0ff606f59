// The service-level scheduler: the store's maintenance steps in order, an async step that is
// still running skips its next period, stop() waits for the runs under way.
import { expect } from "chai";
import { maintainStore, Scheduler } from "../../src/service/scheduler.js";
import type { StoreMaintenance } from "../../src/store/types.js";

function fakeStore(needsRecovery: boolean): StoreMaintenance & { calls: string[] } {
  const calls: string[] = [];
  return {
    calls,
    needsRecovery,
    releaseExpired: (now) => (calls.push(`release ${now}`), 0),
    refill: (now) => void calls.push(`refill ${now}`),
    recover: async () => void calls.push("recover"),
  };
}

describe("service scheduler", () => {
  it("maintainStore: releases expired reservations, then refills — or recovers instead after a failed write", () => {
    const ok = fakeStore(false);
    maintainStore(ok, 5);
    expect(ok.calls).to.deep.equal(["release 5", "refill 5"]);
    const failed = fakeStore(true);
    maintainStore(failed, 7);
    expect(failed.calls).to.deep.equal(["release 7", "recover"]);
  });

  it("runs each step periodically, skips a period while an async run is under way, reports failures, stop() waits", async () => {
    const errors: string[] = [];
    let sync = 0;
    let started = 0;
    let finish: (() => void) | undefined;
    const s = new Scheduler({ onError: (task, err) => errors.push(`${task}: ${(err as Error).message}`) })
      .every("sync", 10, () => {
        sync++;
        if (sync === 2) throw new Error("boom");
      })
      .every("slow", 10, () => {
        started++;
        return new Promise<void>((r) => (finish = r));
      });
    s.start();
    await new Promise((r) => setTimeout(r, 80));
    expect(sync).to.be.greaterThan(2);
    expect(started, "one run while the first is pending").to.equal(1);
    expect(errors).to.deep.equal(["sync: boom"]);
    let stopped = false;
    const stopping = s.stop().then(() => (stopped = true));
    await new Promise((r) => setTimeout(r, 20));
    expect(stopped, "waits for the slow run").to.equal(false);
    finish!();
    await stopping;
    const after = sync;
    await new Promise((r) => setTimeout(r, 40));
    expect(sync, "no run after stop").to.equal(after);
  });
});
