// Pre-encoded gRPC request frames for h2load (5-byte prefix + protobuf), built with the
// generated encoders in src/gen, and the fixed responses of the baseline servers.
import { randomBytes } from "node:crypto";
import { CheckRequest as EnvoyCheckRequest, CheckResponse as EnvoyCheckResponse } from "../../src/gen/envoy/service/auth/v3/external_auth.js";
import { CheckRequest as AppCheckRequest } from "../../src/gen/aisa/v1/authorizer.js";
import { allowResponse } from "../../src/transport/envoy/toCheckResponse.js";

export const ENVOY_CHECK_PATH = "/envoy.service.auth.v3.Authorization/Check";
export const APP_CHECK_PATH = "/aisa.v1.Authorizer/Check";
export const BENCH_MODEL = "gpt-4o-mini";

/** A gRPC length-prefixed message: flag 0, 4-byte big-endian length, then the bytes. */
export function grpcFrame(msg: Uint8Array): Buffer {
  const out = Buffer.allocUnsafe(5 + msg.length);
  out[0] = 0;
  out.writeUInt32BE(msg.length, 1);
  out.set(msg, 5);
  return out;
}

/**
 * A ~1 KB OpenAI chat-completions body with `messages` BEFORE `model` (as the OpenAI SDKs
 * serialise it), so the scanner walks the whole body to find the model.
 */
export function chatBody(targetBytes = 1024): string {
  const messages = [
    { role: "system", content: "You are a helpful assistant for an online store. Answer briefly and cite the order number when relevant." },
    { role: "user", content: "Hi! I ordered a pair of running shoes last week (order #48213) and they have not arrived yet. Can you check?" },
    { role: "assistant", content: "Of course. Order #48213 shipped on Monday with tracking 1Z999AA10123456784; the carrier shows it out for delivery today." },
    { role: "user", content: "" },
  ];
  const tail = { model: BENCH_MODEL, max_tokens: 256, temperature: 0.2, stream: false };
  const build = (filler: string) => {
    messages[3]!.content = `Great, thanks. One more thing: ${filler}`;
    return JSON.stringify({ messages, ...tail });
  };
  const base = build("").length;
  const filler = "could you also tell me whether the return window is 30 days? ".repeat(40).slice(0, Math.max(0, targetBytes - base));
  return build(filler);
}

export interface EnvoyRequestOptions {
  /** The presented secret (Authorization: Bearer). */
  secret: string;
  /** L4 peer Envoy reports (attributes.source). */
  peerIp?: string;
  body?: string;
}

/**
 * A realistic Envoy CheckRequest, shaped as Envoy's ext_authz filter sends it for an OpenAI SDK
 * call: the 4 pseudo-headers plus 8 regular headers (authorization, content-type,
 * content-length, user-agent, accept, x-request-id, x-forwarded-for with Envoy's appended
 * peer, x-forwarded-proto), and the ~1 KB JSON body via with_request_body.
 */
export function envoyCheckRequest(o: EnvoyRequestOptions): EnvoyCheckRequest {
  const peer = o.peerIp ?? "203.0.113.7";
  const body = o.body ?? chatBody();
  return EnvoyCheckRequest.fromPartial({
    attributes: {
      source: { address: { address: { $case: "socketAddress", value: { address: peer, portSpecifier: { $case: "portValue", value: 51234 } } } } },
      destination: { address: { address: { $case: "socketAddress", value: { address: "10.0.0.10", portSpecifier: { $case: "portValue", value: 8443 } } } } },
      request: {
        time: new Date(),
        http: {
          id: String(BigInt.asUintN(63, randomBytes(8).readBigUInt64BE())),
          method: "POST",
          headers: {
            ":authority": "api.aisa.example",
            ":method": "POST",
            ":path": "/v1/chat/completions",
            ":scheme": "https",
            authorization: `Bearer ${o.secret}`,
            "content-type": "application/json",
            "content-length": String(Buffer.byteLength(body)),
            "user-agent": "OpenAI/Python 1.54.0",
            accept: "application/json",
            "x-request-id": "6f1c2a9e-3b7d-4c1e-9a52-0000000012d5",
            "x-forwarded-for": peer,
            "x-forwarded-proto": "https",
          },
          path: "/v1/chat/completions",
          host: "api.aisa.example",
          scheme: "https",
          size: String(Buffer.byteLength(body)),
          protocol: "HTTP/1.1",
          body,
        },
      },
    },
  } as any);
}

export function encodeEnvoyCheck(req: EnvoyCheckRequest): Buffer {
  return Buffer.from(EnvoyCheckRequest.encode(req).finish());
}

export function appCheckRequest(secret: string, clientIp = "203.0.113.7"): AppCheckRequest {
  return AppCheckRequest.fromPartial({ apiKey: secret, model: BENCH_MODEL, clientIp, maxTokens: "256" });
}

export function encodeAppCheck(req: AppCheckRequest): Buffer {
  return Buffer.from(AppCheckRequest.encode(req).finish());
}

/** The fixed reply of the baselines: an allow response shaped like the sidecar's. */
export function fixedCheckResponse(): EnvoyCheckResponse {
  return allowResponse({
    keyId: "key_0000000000000000000A",
    accountId: "default",
    group: "default",
    reservationId: "rsv_00000000000000000000.key_0000000000000000000A",
    credentialHeaders: ["authorization"],
  });
}

export function encodeFixedCheckResponse(): Buffer {
  return Buffer.from(EnvoyCheckResponse.encode(fixedCheckResponse()).finish());
}
