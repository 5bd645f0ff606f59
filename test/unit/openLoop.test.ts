// bench/lib/openLoop.ts on a fake clock: the schedule (call i due at t0 + i/rate, however the
// answers come back), the in-flight cap (capped calls wait and are counted; past the backlog
// the oldest are dropped and counted), and latency timed from when a call was due.
import { expect } from "chai";
import { OpenLoopSchedule } from "../../bench/lib/openLoop.js";

/** Every call take() lets start at `now`, as due times. */
function takeAll(s: OpenLoopSchedule, now: number): number[] {
  const out: number[] = [];
  for (let d = s.take(now); !Number.isNaN(d); d = s.take(now)) out.push(d);
  return out;
}

describe("bench open-loop schedule", () => {
  it("puts call i at t0 + i/rate, whether or not earlier calls were answered", () => {
    const s = new OpenLoopSchedule({ rate: 1000, maxInFlight: 100 }, 50);
    expect(takeAll(s, 49.9)).to.deep.equal([]);
    expect(takeAll(s, 50)).to.deep.equal([50]);
    expect(takeAll(s, 50.5)).to.deep.equal([]);
    // Nothing answered: the schedule goes on regardless (open loop).
    expect(takeAll(s, 53.2)).to.deep.equal([51, 52, 53]);
    expect(s.inFlight).to.equal(4);
    expect(s.nextAt()).to.equal(54);
    expect(s.started).to.equal(4);
    expect(s.capped).to.equal(0);
    expect(s.dropped).to.equal(0);
  });

  it("times latency from the due time: a call sent late counts its lateness", () => {
    const s = new OpenLoopSchedule({ rate: 100, maxInFlight: 10 }, 0);
    // The client's timer fires 25 ms late: calls due at 0, 10 and 20 ms all start at 25.
    const due = takeAll(s, 25);
    expect(due).to.deep.equal([0, 10, 20]);
    // All three answered at 27 ms: 2 ms after they were sent, but 27, 17 and 7 ms after they were due.
    expect(due.map((d) => s.finish(d, 27))).to.deep.equal([27, 17, 7]);
    expect(s.inFlight).to.equal(0);
  });

  it("holds at most maxInFlight outstanding: a call due while the cap is full waits (its wait in its latency) and is counted once", () => {
    const s = new OpenLoopSchedule({ rate: 1000, maxInFlight: 2 }, 0);
    expect(takeAll(s, 1)).to.deep.equal([0, 1]);
    expect(s.nextAt()).to.equal(Infinity); // nothing can start until a slot frees
    // Calls due at 2, 3 and 4 ms find both slots taken; looking again does not count them again.
    expect(takeAll(s, 4)).to.deep.equal([]);
    expect(takeAll(s, 4.5)).to.deep.equal([]);
    expect(s.capped).to.equal(3);
    // The call due at 0 ends at 6: those due at 5 and 6 were also due while the cap was full.
    expect(s.finish(0, 6)).to.equal(6);
    expect(s.capped).to.equal(5);
    // One slot: the oldest waiting call (due at 2) starts, and its latency will count from 2.
    expect(takeAll(s, 6)).to.deep.equal([2]);
    expect(s.finish(2, 7)).to.equal(5);
    expect(s.peakInFlight).to.equal(2);
    expect(s.started).to.equal(3);
    expect(s.dropped).to.equal(0);
  });

  it("drops the oldest waiting calls past the backlog, and counts them", () => {
    const s = new OpenLoopSchedule({ rate: 1000, maxInFlight: 1, maxBacklog: 3 }, 0);
    expect(takeAll(s, 0)).to.deep.equal([0]);
    // Due 1..9 while the one slot is taken: 9 waiting, 3 may wait, 6 dropped.
    expect(takeAll(s, 9)).to.deep.equal([]);
    expect(s.dropped).to.equal(6);
    expect(s.capped).to.equal(9);
    s.finish(0, 9);
    expect(takeAll(s, 9)).to.deep.equal([7]);
    expect(s.started + s.dropped + 2).to.equal(s.dueBy(9)); // 8 and 9 still waiting
  });

  it("does not count calls as capped when a slot was free", () => {
    const s = new OpenLoopSchedule({ rate: 1000, maxInFlight: 2 }, 0);
    for (let t = 0; t < 100; t++) {
      const [d] = takeAll(s, t);
      expect(d).to.equal(t);
      expect(s.finish(d!, t + 0.5)).to.equal(0.5);
    }
    expect(s.capped).to.equal(0);
    expect(s.started).to.equal(100);
    expect(s.peakInFlight).to.equal(1);
  });

  it("ends after `total` calls: done once the last is answered", () => {
    const s = new OpenLoopSchedule({ rate: 1000, maxInFlight: 10, total: 3 }, 0);
    const due = takeAll(s, 100);
    expect(due).to.deep.equal([0, 1, 2]);
    expect(s.nextAt()).to.equal(Infinity);
    expect(s.done).to.equal(false);
    for (const d of due) s.finish(d, 101);
    expect(s.done).to.equal(true);
    expect(s.dueBy(1e9)).to.equal(3);
  });

  it("refuses a bad configuration, naming the field", () => {
    expect(() => new OpenLoopSchedule({ rate: 0, maxInFlight: 1 }, 0)).to.throw(/rate/);
    expect(() => new OpenLoopSchedule({ rate: Number.NaN, maxInFlight: 1 }, 0)).to.throw(/rate/);
    expect(() => new OpenLoopSchedule({ rate: 10, maxInFlight: 0 }, 0)).to.throw(/maxInFlight/);
    expect(() => new OpenLoopSchedule({ rate: 10, maxInFlight: 1.5 }, 0)).to.throw(/maxInFlight/);
    expect(() => new OpenLoopSchedule({ rate: 10, maxInFlight: 1, maxBacklog: -1 }, 0)).to.throw(/maxBacklog/);
    const s = new OpenLoopSchedule({ rate: 10, maxInFlight: 1 }, 0);
    expect(() => s.finish(0, 1)).to.throw(/without a started call/);
  });
});
