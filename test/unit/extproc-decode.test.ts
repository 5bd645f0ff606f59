// The ext_proc request decoder (transport/envoy/extProc.ts): the generated decoder's result,
// except metadata_context on body and trailer messages, which it skips.
import { expect } from "chai";
import { ProcessingRequest } from "../../src/gen/envoy/service/ext_proc/v3/external_processor.js";
import { decodeProcessingRequest } from "../../src/transport/envoy/extProc.js";

const md = { filterMetadata: { "envoy.filters.http.ext_authz": { reservation_id: "rsv_1", reserved_units: 105 } }, typedFilterMetadata: {} };
const hv = (key: string, v: string) => ({ key, value: "", rawValue: Buffer.from(v) });

describe("ext_proc request decoding", () => {
  const cases: Partial<ProcessingRequest>[] = [
    { request: { $case: "requestHeaders", value: { headers: { headers: [hv(":path", "/v1/chat/completions"), hv("x-aisa-reservation", "rsv_1")] }, endOfStream: false } }, metadataContext: md },
    { request: { $case: "responseHeaders", value: { headers: { headers: [hv(":status", "200")] }, endOfStream: true } }, metadataContext: md, observabilityMode: true },
    { request: { $case: "responseBody", value: { body: Buffer.from("data: {}\n\n"), endOfStream: true } }, metadataContext: md },
    { request: { $case: "requestBody", value: { body: Buffer.from("{}"), endOfStream: false } } },
    { request: { $case: "responseTrailers", value: { trailers: { headers: [hv("grpc-status", "0")] } } }, metadataContext: md },
  ];
  for (const c of cases) {
    it(c.request!.$case, () => {
      const bytes = ProcessingRequest.encode(ProcessingRequest.fromPartial(c as ProcessingRequest)).finish();
      const want = ProcessingRequest.decode(bytes);
      const got = decodeProcessingRequest(bytes);
      if (c.request!.$case !== "requestHeaders" && c.request!.$case !== "responseHeaders") want.metadataContext = undefined;
      expect(got).to.deep.equal(want);
    });
  }
  it("junk bytes throw (the transport answers INVALID_ARGUMENT)", () => {
    expect(() => decodeProcessingRequest(Buffer.from([0x42, 0xff, 0xff, 0xff]))).to.throw();
  });
});
