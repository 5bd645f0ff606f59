// The data plane's reused-writer serialisation gives exactly the bytes of the generated
// serializers, for every response shape, in any order, and after a failed encode.
import { expect } from "chai";
import { AuthorizerService, CheckResponse as AppCheckResponse, ConsumeBatchResponse, ConsumeResponse } from "../../src/gen/aisa/v1/authorizer.js";
import { AuthorizationService, CheckResponse } from "../../src/gen/envoy/service/auth/v3/external_auth.js";
import { REASONS } from "../../src/policy/reasons.js";
import { reusedWriterSerializer, withReusedWriters } from "../../src/transport/serialize.js";
import { allowResponse, denyResponse } from "../../src/transport/envoy/toCheckResponse.js";

const who = { keyId: "key_0000000000000000000A", accountId: "acct_1", group: "premium" };
const envoyResponses: [string, CheckResponse][] = [
  ["allow", allowResponse({ ...who, reservationId: "rsv_abcdefghijklmnopqrst.key_0000000000000000000A", credentialHeaders: ["authorization", "x-api-key"], credentialQueryParams: ["key"] })],
  ["allow, no credential headers", allowResponse({ ...who, reservationId: "rsv_x", credentialHeaders: [], credentialQueryParams: [] })],
  ...REASONS.filter((r) => r !== "ALLOWED").map((r): [string, CheckResponse] => [`deny ${r}`, denyResponse(r as never, { ...who, retryAfterMs: 1500 })]),
  ["empty", CheckResponse.fromPartial({})],
];

describe("reused-writer serialisation", () => {
  const fast = withReusedWriters(AuthorizationService, { check: CheckResponse }).check.responseSerialize;
  const generated = AuthorizationService.check.responseSerialize;

  it("gives the generated serializer's bytes for every Envoy response shape, twice over in mixed order", () => {
    const order = [...envoyResponses, ...[...envoyResponses].reverse()];
    for (const [name, res] of order) expect(Buffer.compare(fast(res), generated(res)), name).to.equal(0);
  });

  it("returned Buffers stay intact after later responses", () => {
    const outs = envoyResponses.map(([, res]) => fast(res));
    envoyResponses.forEach(([name, res], i) => expect(Buffer.compare(outs[i]!, generated(res)), name).to.equal(0));
  });

  it("a failed encode leaves nothing behind for the next response", () => {
    const enc = reusedWriterSerializer(ConsumeResponse);
    const ok = ConsumeResponse.fromPartial({ unitsCharged: "263", keyRemaining: "99737", keyUnlimited: false, accountBalance: "1000", replayed: false, keyId: who.keyId });
    // int64 fields are strings; one that is not a number throws midway through the message.
    expect(() => enc({ ...ok, accountBalance: "not a number" } as ConsumeResponse)).to.throw();
    expect(Buffer.compare(enc(ok), Buffer.from(ConsumeResponse.encode(ok).finish()))).to.equal(0);
  });

  it("large responses (a 1,000-item ConsumeBatch) encode exactly, and small ones after them", () => {
    const def = withReusedWriters(AuthorizerService, { check: AppCheckResponse, consume: ConsumeResponse, consumeBatch: ConsumeBatchResponse });
    const item = ConsumeResponse.fromPartial({ unitsCharged: "180", keyRemaining: "5", accountBalance: "77", keyId: who.keyId });
    const big = ConsumeBatchResponse.fromPartial({ results: Array.from({ length: 1000 }, (_, i) => (i % 7 ? { result: { $case: "ok", value: item } } : { result: { $case: "error", value: { code: 3, message: `items[${i}]: bad`, details: [] } } })) });
    expect(Buffer.compare(def.consumeBatch.responseSerialize(big), AuthorizerService.consumeBatch.responseSerialize(big))).to.equal(0);
    const small = ConsumeBatchResponse.fromPartial({ results: [{ result: { $case: "ok", value: item } }] });
    expect(Buffer.compare(def.consumeBatch.responseSerialize(small), AuthorizerService.consumeBatch.responseSerialize(small))).to.equal(0);
    const app = AppCheckResponse.fromPartial({ allowed: true, reason: 1, httpStatus: 200, keyId: who.keyId, reservationId: "rsv_1" });
    expect(Buffer.compare(def.check.responseSerialize(app), AuthorizerService.check.responseSerialize(app))).to.equal(0);
  });

  it("refuses a method the service does not have", () => {
    expect(() => withReusedWriters(AuthorizationService, { nope: CheckResponse } as never)).to.throw(/nope/);
  });
});
