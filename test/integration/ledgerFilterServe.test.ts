// `--ledger-filter-mb` on a real `aisa-authz serve`: the ready line reports it, bad values exit 2
// naming the flag, and /metrics shows the filter (answering once the start-up scan is done).
import { expect } from "chai";
import { metricValue } from "../helpers/metrics.js";
import { startServe, stopProcess, type ServeProcess } from "../helpers/proc.js";
import { removeDir, tempDir } from "../helpers/tmp.js";

const metric = (p: ServeProcess, name: string) => metricValue(p.metricsAddress, name);

describe("serve --ledger-filter-mb", function () {
  this.timeout(60_000);
  let dir: string;
  before(async () => {
    dir = await tempDir();
  });
  after(async () => {
    await removeDir(dir);
  });

  it("0, > 4096 or a word exits 2 naming the flag", async () => {
    for (const [value, why] of [["0", ">= 1"], ["4097", "<= 4096"], ["lots", ""]]) {
      const failure = await startServe(dir, ["--ledger-filter-mb", value!]).then(
        async (p) => {
          await stopProcess(p.child);
          return expect.fail(`serve --ledger-filter-mb ${value} started`);
        },
        (err: { exitCode: number; stderr: string }) => err,
      );
      expect(failure.exitCode, value).to.equal(2);
      expect(failure.stderr, value).to.match(/^error: --ledger-filter-mb: /);
      expect(failure.stderr, value).to.include(why!);
    }
  });

  it("the ready line reports the bound (32 by default); /metrics shows the filter answering, its ids and bytes", async () => {
    const byDefault = await startServe(dir);
    try {
      expect(byDefault.ready.ledgerFilterMb).to.equal(32);
      expect(await metric(byDefault, "aisa_ledger_filter_answering"), "an empty ledger is scanned before ready").to.equal(1);
      expect(await metric(byDefault, "aisa_ledger_filter_ids")).to.equal(0);
      expect(await metric(byDefault, "aisa_ledger_filter_bytes")).to.be.greaterThan(0).and.at.most(32 * 2 ** 20);
    } finally {
      expect(await stopProcess(byDefault.child)).to.equal(0);
    }
    const larger = await startServe(dir, [], { AISA_LEDGER_FILTER_MB: "64" });
    try {
      expect(larger.ready.ledgerFilterMb).to.equal(64);
    } finally {
      expect(await stopProcess(larger.child)).to.equal(0);
    }
  });
});
