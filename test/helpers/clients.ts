// Small clients and fixtures the process tests share.
import * as grpc from "@grpc/grpc-js";
import { spawn } from "node:child_process";
import { join } from "node:path";
import { AuthorizationClient, CheckRequest, type CheckResponse } from "../../src/gen/envoy/service/auth/v3/external_auth.js";

/** One Envoy-shaped Check of `secret` (GET /v1/models from 203.0.113.7) against `address`. */
export function envoyCheck(address: string, secret: string): Promise<CheckResponse> {
  const client = new AuthorizationClient(address, grpc.credentials.createInsecure());
  const req = CheckRequest.fromPartial({
    attributes: {
      source: { address: { address: { $case: "socketAddress", value: { address: "203.0.113.7", portSpecifier: { $case: "portValue", value: 1 } } } } },
      request: { http: { method: "GET", path: "/v1/models", headers: { authorization: `Bearer ${secret}` } } },
    },
  } as any);
  return new Promise<CheckResponse>((resolve, reject) => client.check(req, new grpc.Metadata(), { deadline: Date.now() + 5000 }, (err, res) => (err ? reject(err) : resolve(res!)))).finally(() => client.close());
}

/**
 * A self-signed P-256 certificate for localhost / 127.0.0.1 in `dir` (cert.pem, key.pem), made
 * by openssl; undefined when openssl is missing or fails.
 */
export async function selfSignedCert(dir: string): Promise<{ cert: string; key: string } | undefined> {
  const cert = join(dir, "cert.pem");
  const key = join(dir, "key.pem");
  const code = await new Promise<number | null>((res) => {
    const p = spawn(
      "openssl",
      ["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", key, "-out", cert, "-days", "1",
        "-subj", "/CN=localhost", "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost"],
      { stdio: "ignore" },
    );
    p.once("error", () => res(null));
    p.once("close", (c) => res(c));
  });
  return code === 0 ? { cert, key } : undefined;
}

/** A generated gRPC client, called by method name (the process tests' unary helper). */
export type AnyClient = grpc.Client & Record<string, any>;

/** One unary call by method name: `mod` is the generated module holding `<Method>Request`. */
export function grpcUnary<Res>(client: AnyClient, mod: any, method: string, req: unknown, meta = new grpc.Metadata(), deadlineMs = 5000): Promise<Res> {
  const msg = mod[`${method[0]!.toUpperCase()}${method.slice(1)}Request`].fromPartial(req);
  return new Promise((resolve, reject) => client[method](msg, meta, { deadline: Date.now() + deadlineMs }, (e: Error | null, r: Res) => (e ? reject(e) : resolve(r))));
}

/**
 * Retries a call answered UNAVAILABLE (a Redis call past its deadline on a busy machine), as a
 * client would (a Consume with the same request id); up to 50 retries, 20 ms apart.
 */
export async function retryUnavailable<T>(f: () => Promise<T>): Promise<T> {
  for (let attempt = 0; ; attempt++) {
    try {
      return await f();
    } catch (err) {
      if ((err as grpc.ServiceError).code !== grpc.status.UNAVAILABLE || attempt >= 50) throw err;
      await new Promise((r) => setTimeout(r, 20));
    }
  }
}
