// The bench's lean ConsumeBatch client (bench/lib/leanH2.ts: HTTP/2 frames written by hand,
// replies scanned) against a real sidecar: 600 calls of 4 Consumes, up to 32 in flight over one
// connection (past the initial 64 KB flow-control windows both ways), each charged exactly once;
// a call naming an unknown key fails as an error, not as a success.
import { expect } from "chai";
import type { CreateKeyResponse } from "../../src/gen/aisa/v1/admin.js";
import type { Key } from "../../src/gen/aisa/v1/types.js";
import { batchTemplate, channelFirstId } from "../../bench/lib/leanConsume.js";
import { LeanH2Client } from "../../bench/lib/leanH2.js";
import { call, removeDir, startTestSidecar, type TestSidecar } from "../helpers/sidecar.js";

describe("bench lean ConsumeBatch client against a sidecar", function () {
  this.timeout(60_000);
  let s: TestSidecar;
  before(async () => {
    s = await startTestSidecar();
    await call(s.admin, "adjustBalance", { accountId: "default", delta: "100000000", reason: "seed" }, s.meta());
    await call(s.admin, "setPrice", { price: { model: "gpt-4o-mini", inputPerMillion: "75000", outputPerMillion: "300000", perRequest: "0" } }, s.meta());
  });
  after(async () => {
    await s.close();
    await removeDir(s.dir);
  });

  it("charges every item of every call once, and reports a failed call as an error", async () => {
    const keys = await Promise.all([0, 1].map((i) => call<unknown, CreateKeyResponse>(s.admin, "createKey", { spec: { name: `lean-${i}`, quota: "1000000000" } }, s.meta())));
    const ids = keys.map((k) => k.key!.id);
    const item = (keyId: string) => ({ keyId, model: "gpt-4o-mini", inputTokens: "1200", outputTokens: "300" });
    const templates = [...ids, "key_does_not_exist"].map((id) => batchTemplate("lean-test-", 4, item(id)));
    const i = s.dataAddress.lastIndexOf(":");
    const results: (Error | null)[] = [];
    let finish: () => void = () => {};
    const calls = 600;
    let sent = 0;
    let inFlight = 0;
    const allDone = new Promise<void>((r) => (finish = r));
    const client = new LeanH2Client({
      host: s.dataAddress.slice(0, i),
      port: Number(s.dataAddress.slice(i + 1)),
      path: "/aisa.v1.Authorizer/ConsumeBatch",
      templates,
      batch: 4,
      allowReplayed: false,
      done: (err, tag) => {
        results[tag] = err;
        inFlight--;
        if (results.filter((x) => x !== undefined).length === calls + 1) finish();
        else pump();
      },
    });
    const pump = () => {
      while (inFlight < 32 && sent < calls) {
        inFlight++;
        client.start(sent % 2, sent);
        sent++;
      }
    };
    await client.ready;
    pump();
    // Then one call for the unknown key (template 2).
    await new Promise<void>((r) => {
      const wait = () => (sent === calls && inFlight === 0 ? r() : setTimeout(wait, 5));
      wait();
    });
    inFlight++;
    client.start(2, calls);
    await allDone;
    client.close();
    expect(results.slice(0, calls).filter((e) => e !== null)).to.deep.equal([]);
    expect(String(results[calls]?.message)).to.match(/4 batch items failed/);
    // 1200 × 0.075 + 300 × 0.3 = 180 units per Consume; 300 calls × 4 per key.
    for (const id of ids) expect((await call<unknown, Key>(s.admin, "getKey", { id }, s.meta())).quota!.used).to.equal(String(300 * 4 * 180));
  });

  it("two connections under one id prefix, each from its channelFirstId (as consumeLoad's channels), with scattered ids: no id sent twice, every item charged once", async () => {
    const key = await call<unknown, CreateKeyResponse>(s.admin, "createKey", { spec: { name: "lean-channels", quota: "1000000000" } }, s.meta());
    const id = key.key!.id;
    const templates = [batchTemplate("lean-ch-", 4, { keyId: id, model: "gpt-4o-mini", inputTokens: "1200", outputTokens: "300" })];
    const at = s.dataAddress.lastIndexOf(":");
    const perClient = 100;
    const errors: (Error | null)[] = [];
    const clients = [0, 1].map(
      (ch) =>
        new Promise<void>((resolve, reject) => {
          let sent = 0;
          let ended = 0;
          const client: LeanH2Client = new LeanH2Client({
            host: s.dataAddress.slice(0, at),
            port: Number(s.dataAddress.slice(at + 1)),
            path: "/aisa.v1.Authorizer/ConsumeBatch",
            templates,
            batch: 4,
            // A replayed item is an error: a second connection counting from 0 would be one.
            allowReplayed: false,
            scatterIds: true,
            firstId: channelFirstId(ch, 2),
            done: (err) => {
              errors.push(err);
              if (++ended === perClient) {
                client.close();
                resolve();
              } else if (sent < perClient) client.start(0, sent++);
            },
          });
          client.ready.then(() => {
            for (let i = 0; i < 8; i++) client.start(0, sent++);
          }, reject);
        }),
    );
    await Promise.all(clients);
    expect(errors).to.have.length(2 * perClient);
    expect(errors.filter((e) => e !== null).map((e) => e!.message)).to.deep.equal([]);
    expect((await call<unknown, Key>(s.admin, "getKey", { id }, s.meta())).quota!.used).to.equal(String(2 * perClient * 4 * 180));
    // The ranges: disjoint, and the bound refused by name.
    expect(channelFirstId(1, 2)).to.be.greaterThan(channelFirstId(0, 2) + 1e12);
    expect(() => channelFirstId(2, 2)).to.throw(/channel 2 of 2/);
  });
});
