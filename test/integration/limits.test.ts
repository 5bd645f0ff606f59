// Resource limits at the transports: bounded inputs and echoes (issue 13, finding 6).
import { expect } from "chai";
import { status } from "@grpc/grpc-js";
import type { WhoAmIResponse } from "../../src/gen/aisa/v1/admin.js";
import type { CheckResponse } from "../../src/gen/aisa/v1/authorizer.js";
import { boundEchoes, notFound } from "../../src/domain/errors.js";
import { oversizeField } from "../../src/transport/bounds.js";
import { call, expectGrpcError, startTestSidecar, type TestSidecar } from "../helpers/sidecar.js";

const HUGE = "k".repeat(100 * 1024);

describe("limits: bounded inputs and echoes", function () {
  this.timeout(60_000);
  let s: TestSidecar;
  before(async () => {
    s = await startTestSidecar();
  });
  after(async () => {
    await s.close();
  });

  const adminCases: { name: string; method: string; req: unknown; field: string }[] = [
    { name: "GetKey id", method: "getKey", req: { id: HUGE }, field: "id" },
    { name: "DeleteKeys ids[1]", method: "deleteKeys", req: { ids: ["a", HUGE] }, field: "ids[1]" },
    { name: "CreateGroup name", method: "createGroup", req: { name: HUGE }, field: "name" },
    { name: "UpdateKey spec.group", method: "updateKey", req: { id: "x", spec: { group: HUGE } }, field: "spec.group" },
    { name: "CreateKey spec.metadata key", method: "createKey", req: { spec: { name: "n", metadata: { [HUGE]: "v" } } }, field: "spec.metadata" },
    { name: "CreateKey spec.models[0]", method: "createKey", req: { spec: { name: "n", models: [HUGE] } }, field: "spec.models[0]" },
    { name: "AdjustBalance reason", method: "adjustBalance", req: { accountId: "default", delta: "1", reason: HUGE }, field: "reason" },
  ];
  for (const c of adminCases) {
    it(`admin ${c.name} of 100 KB: a prompt INVALID_ARGUMENT naming ${c.field}, and the connection still works`, async () => {
      const err = await expectGrpcError(call(s.admin, c.method, c.req, s.meta()), status.INVALID_ARGUMENT);
      expect(err.details.startsWith(`${c.field}:`), err.details.slice(0, 200)).to.equal(true);
      expect(err.details.length).to.be.below(200);
      const me = await call<unknown, WhoAmIResponse>(s.admin, "whoAmI", {}, s.meta());
      expect(me.tokenId).to.equal("operator");
    });
  }

  it("data port: a 100 KB Consume key_id gets a prompt answer (over the 64 KiB bound of a Consume), 60 KB one naming target.key_id; Check on the same channel works", async () => {
    const big = await expectGrpcError(call(s.authorizer, "consume", { requestId: "r1", target: { $case: "keyId", value: HUGE }, units: "1" }), status.RESOURCE_EXHAUSTED);
    expect(big.details).to.match(/more than 65536 bytes for this method/);
    const K60 = "k".repeat(60 * 1024);
    const err = await expectGrpcError(call(s.authorizer, "consume", { requestId: "r1", target: { $case: "keyId", value: K60 }, units: "1" }), status.INVALID_ARGUMENT);
    expect(err.details).to.match(/^target\.key_id: must be at most 256 characters \(got 61440\)$/);
    const batch = await expectGrpcError(
      call(s.authorizer, "consumeBatch", { items: [{ requestId: "r2", target: { $case: "keyId", value: "x" }, units: "1" }, { requestId: HUGE, units: "1" }] }),
      status.INVALID_ARGUMENT,
    );
    expect(batch.details).to.match(/^items\[1\]\.request_id: /);
    const chk = await call<unknown, CheckResponse>(s.authorizer, "check", { apiKey: "sk-nope" });
    expect(chk.allowed).to.equal(false);
  });

  it("an echoed value is cut to 64 characters with an ellipsis and its length; the message to 1,024", () => {
    const msg = notFound("key", "a".repeat(5000)).publicMessage;
    expect(msg).to.equal(`key "${"a".repeat(64)}…" (5000 characters) not found`);
    expect(boundEchoes(`x ${"é".repeat(3000)}`)).to.have.length(1024);
    expect(boundEchoes('short "ok" stays')).to.equal('short "ok" stays');
  });

  it("oversizeField names the first string over its bound by its proto path", () => {
    expect(oversizeField({ spec: { name: "n", ips: ["1.2.3.4", "9".repeat(300)] } })).to.equal("spec.ips[1]: must be at most 256 characters (got 300)");
    expect(oversizeField({ target: { $case: "reservationId", value: "r".repeat(257) } })).to.match(/^target\.reservation_id: /);
    expect(oversizeField({ description: "d".repeat(1024), name: "g" })).to.equal(null);
  });
});
