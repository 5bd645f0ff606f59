// Before (and after) every load run: one real call with a grpc-js client sending the very
// bytes the load generator sends, checking grpc-status 0 and the expected verdict
// (h2load counts any HTTP 200 as success, even with grpc-status != 0).
import * as grpc from "@grpc/grpc-js";
import { CheckResponse as EnvoyCheckResponse } from "../../src/gen/envoy/service/auth/v3/external_auth.js";
import { CheckResponse as AppCheckResponse, Reason } from "../../src/gen/aisa/v1/authorizer.js";

export type Expect =
  | { kind: "envoy"; allowed: true }
  | { kind: "envoy"; allowed: false; reason: string }
  | { kind: "app"; allowed: true }
  | { kind: "app"; allowed: false; reason: string }
  | { kind: "any" };

const clients = new Map<string, grpc.Client>();

function client(address: string): grpc.Client {
  let c = clients.get(address);
  if (!c) {
    c = new grpc.Client(address, grpc.credentials.createInsecure());
    clients.set(address, c);
  }
  return c;
}

export function closeVerifyClients(): void {
  for (const c of clients.values()) c.close();
  clients.clear();
}

/** Sends `message` (protobuf bytes, no frame prefix) to `method`; throws unless the reply matches `expect`. Returns a short description. */
export function verifyCall(address: string, method: string, message: Buffer, expect: Expect): Promise<string> {
  return new Promise((resolve, reject) => {
    client(address).makeUnaryRequest(
      method,
      (b: Buffer) => b,
      (b: Buffer) => b,
      message,
      new grpc.Metadata(),
      { deadline: Date.now() + 10_000 },
      (err, res) => {
        if (err) return reject(new Error(`${method} on ${address}: grpc-status ${err.code} (${grpc.status[err.code]}): ${err.details}`));
        try {
          resolve(check(res!, expect));
        } catch (e) {
          reject(new Error(`${method} on ${address}: ${(e as Error).message}`));
        }
      },
    );
  });
}

function check(bytes: Buffer, expect: Expect): string {
  if (expect.kind === "any") return "grpc-status 0";
  if (expect.kind === "envoy") {
    const r = EnvoyCheckResponse.decode(bytes);
    const code = r.status?.code ?? 0;
    const hr = r.httpResponse;
    if (expect.allowed) {
      if (code !== 0 || hr?.$case !== "okResponse") throw new Error(`expected allow, got status ${code} ${hr?.$case} ${JSON.stringify(r.dynamicMetadata)}`);
      const hdr = hr.value.headers.find((h) => h.header?.key === "x-aisa-reservation");
      if (!hdr?.header?.value) throw new Error("allow without x-aisa-reservation");
      return "grpc-status 0, status.code 0, ok_response";
    }
    const reason = (r.dynamicMetadata as Record<string, unknown> | undefined)?.["reason"];
    if (code === 0 || hr?.$case !== "deniedResponse" || reason !== expect.reason) {
      throw new Error(`expected deny ${expect.reason}, got status ${code} ${hr?.$case} reason ${String(reason)}`);
    }
    return `grpc-status 0, status.code ${code}, denied ${hr.value.status?.code} ${expect.reason}`;
  }
  const r = AppCheckResponse.decode(bytes);
  if (expect.allowed) {
    if (!r.allowed || !r.reservationId) throw new Error(`expected allowed, got ${Reason[r.reason]}`);
    return "grpc-status 0, allowed";
  }
  if (r.allowed || Reason[r.reason] !== `REASON_${expect.reason}`) throw new Error(`expected ${expect.reason}, got ${Reason[r.reason]}`);
  return `grpc-status 0, denied ${expect.reason}`;
}
