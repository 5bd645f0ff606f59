// The Check tallies (observability/metrics.ts) export exactly what prom-client's own
// inc(labels) and observe() would: same series, same values, across several scrapes.
import { expect } from "chai";
import { Counter, Histogram, Registry } from "prom-client";
import { Metrics } from "../../src/observability/metrics.js";
import type { Reason } from "../../src/policy/reasons.js";
import { parseMetric } from "../helpers/metrics.js";

const series = (text: string, prefix: string) =>
  text
    .split("\n")
    .filter((l) => l.startsWith(prefix))
    .sort();

describe("Metrics: Check tallies", () => {
  it("aisa_checks_total and aisa_check_duration_seconds match plain prom-client, scrape after scrape", async () => {
    const m = new Metrics();
    const reg = new Registry();
    const checks = new Counter({ name: "aisa_checks_total", help: "h", labelNames: ["verdict", "reason"], registers: [reg] });
    const lat = new Histogram({ name: "aisa_check_duration_seconds", help: "h", buckets: [0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.05], registers: [reg] });
    const reasons: Reason[] = ["ALLOWED", "KEY_INVALID", "ALLOWED", "RATE_LIMITED", "ALLOWED"];
    const secs = [0.00001, 0.00005, 0.00007, 0.0003, 0.002, 0.05, 0.2, 0.0001];
    for (let round = 0; round < 3; round++) {
      for (let i = 0; i < 7 + round; i++) {
        const r = reasons[(i + round) % reasons.length]!;
        const s = secs[(i * 3 + round) % secs.length]!;
        m.countCheck(r);
        checks.inc({ verdict: r === "ALLOWED" ? "allow" : "deny", reason: r });
        m.observeCheckLatency(s);
        lat.observe(s);
      }
      const got = await m.registry.metrics();
      const want = await reg.metrics();
      expect(series(got, "aisa_checks_total")).to.deep.equal(series(want, "aisa_checks_total"));
      const num = (lines: string[]) => lines.map((l) => [l.slice(0, l.lastIndexOf(" ")), Number(l.slice(l.lastIndexOf(" ") + 1))] as const);
      const g = num(series(got, "aisa_check_duration_seconds"));
      const w = num(series(want, "aisa_check_duration_seconds"));
      expect(g.map((x) => x[0])).to.deep.equal(w.map((x) => x[0]));
      g.forEach(([name, v], i) => expect(v, name).to.be.closeTo(w[i]![1], 1e-12));
    }
  });

  it("aisa_consume_duration_seconds (a batch's count at once) matches one plain observe() per Consume, scrape after scrape", async () => {
    const m = new Metrics();
    const reg = new Registry();
    const lat = new Histogram({ name: "aisa_consume_duration_seconds", help: "h", buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5], registers: [reg] });
    const secs = [0.0001, 0.0005, 0.0007, 0.003, 0.005, 0.02, 0.7, 0.05];
    const num = (lines: string[]) => lines.map((l) => [l.slice(0, l.lastIndexOf(" ")), Number(l.slice(l.lastIndexOf(" ") + 1))] as const);
    for (let round = 0; round < 3; round++) {
      for (let i = 0; i < 5 + round; i++) {
        const s = secs[(i * 3 + round) % secs.length]!;
        const n = 1 + ((i + round) % 4) * 11; // 1, 12, 23, 34 Consumes
        m.observeConsumeLatency(s, n);
        for (let k = 0; k < n; k++) lat.observe(s);
      }
      m.observeConsumeLatency(0.002); // one Consume (the default count)
      lat.observe(0.002);
      const g = num(series(await m.registry.metrics(), "aisa_consume_duration_seconds"));
      const w = num(series(await reg.metrics(), "aisa_consume_duration_seconds"));
      expect(g.length).to.equal(w.length);
      expect(g.map((x) => x[0])).to.deep.equal(w.map((x) => x[0]));
      g.forEach(([name, v], i) => expect(v, name).to.be.closeTo(w[i]![1], 1e-9));
    }
  });
});

describe("Metrics: the store's gauges", () => {
  it("aisa_reservations_open / _capacity / aisa_keys are read at each scrape, aisa_reservations_evicted_total adds what moved since the last one", async () => {
    const m = new Metrics();
    const store = { openReservations: 3, reservationCapacity: 1024, reservationsEvicted: 0, index: { size: 10 } };
    m.watchStore(store);
    const scrape = async () => {
      const text = await m.registry.metrics();
      return ["aisa_reservations_open", "aisa_reservations_capacity", "aisa_reservations_evicted_total", "aisa_keys"].map((n) => parseMetric(text, n));
    };
    expect(await scrape()).to.deep.equal([3, 1024, 0, 10]);
    Object.assign(store, { openReservations: 7, reservationCapacity: 2048, reservationsEvicted: 5, index: { size: 11 } });
    expect(await scrape()).to.deep.equal([7, 2048, 5, 11]);
    expect(await scrape()).to.deep.equal([7, 2048, 5, 11]); // a second scrape adds nothing to the counter
    Object.assign(store, { openReservations: 0, reservationCapacity: 1024, reservationsEvicted: 9 });
    expect(await scrape()).to.deep.equal([0, 1024, 9, 11]);
  });
});
