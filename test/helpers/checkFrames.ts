// The reference for the Envoy endpoint's reply frames: what it sent before it wrote them itself.
import { CheckResponse } from "../../src/gen/envoy/service/auth/v3/external_auth.js";

/** The frame the endpoint sent before: the generated encoder's bytes of `res`, framed (gRPC's 5-byte prefix, uncompressed). */
export function generated(res: CheckResponse): Buffer {
  const body = CheckResponse.encode(res).finish();
  const f = Buffer.alloc(5 + body.length);
  f.writeUInt32BE(body.length, 1);
  f.set(body, 5);
  return f;
}
