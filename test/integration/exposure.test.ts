// Every listener off loopback needs TLS or an explicit -insecure flag (issue 13, finding 19);
// an optional shared secret guards Consume. Real `aisa-authz serve` processes.
import { expect } from "chai";
import { join } from "node:path";
import * as grpc from "@grpc/grpc-js";
import { status } from "@grpc/grpc-js";
import { readFile } from "node:fs/promises";
import { AuthorizerClient, type CheckResponse, type ConsumeResponse } from "../../src/gen/aisa/v1/authorizer.js";
import { HealthCheckResponse_ServingStatus, HealthClient } from "../../src/gen/grpc/health/v1/health.js";
import { decideExposure, type ExposureConfig } from "../../src/config/exposure.js";
import { selfSignedCert } from "../helpers/clients.js";
import { requireProgram } from "../helpers/programs.js";
import { call, expectGrpcError, removeDir, startTestSidecar, tempDir } from "../helpers/sidecar.js";
import { startServe, stopProcess } from "../helpers/proc.js";

async function refused(dir: string, args: string[]): Promise<{ exitCode: number; stderr: string }> {
  try {
    const p = await startServe(dir, args);
    await stopProcess(p.child);
  } catch (e) {
    return e as { exitCode: number; stderr: string };
  }
  throw new Error(`serve ${args.join(" ")} started`);
}

describe("exposure: listeners off loopback need TLS or an explicit -insecure flag", function () {
  this.timeout(120_000);

  const base: ExposureConfig = { listen: "127.0.0.1:0", envoyListen: "127.0.0.1:0", adminListen: "127.0.0.1:0", tlsCert: undefined, tlsKey: undefined, adminInsecure: false, dataInsecure: false };
  const cases: { name: string; cfg: Partial<ExposureConfig>; want: unknown }[] = [
    { name: "all loopback", cfg: {}, want: { admin: "plaintext", data: "plaintext", envoy: "plaintext", http: null } },
    { name: "data 0.0.0.0", cfg: { listen: "0.0.0.0:9191" }, want: /^--listen: refusing .*--data-insecure/ },
    { name: "envoy [::]", cfg: { envoyListen: "[::]:9194" }, want: /^--envoy-listen: refusing .*--data-insecure/ },
    { name: "admin 10.0.0.1", cfg: { adminListen: "10.0.0.1:9192" }, want: /admin API on non-loopback 10\.0\.0\.1:9192 without TLS.*--admin-insecure/ },
    { name: "data + envoy off loopback, --data-insecure", cfg: { listen: "0.0.0.0:1", envoyListen: "0.0.0.0:2", dataInsecure: true }, want: { admin: "plaintext", data: "plaintext", envoy: "plaintext", http: null } },
    { name: "TLS: off loopback served with TLS, loopback data plane stays plaintext", cfg: { listen: "0.0.0.0:1", tlsCert: "c", tlsKey: "k" }, want: { admin: "tls", data: "tls", envoy: "plaintext", http: null } },
    { name: "http forward-auth on loopback", cfg: { httpListen: "127.0.0.1:9195" }, want: { admin: "plaintext", data: "plaintext", envoy: "plaintext", http: "plaintext" } },
    { name: "http forward-auth 0.0.0.0", cfg: { httpListen: "0.0.0.0:9195" }, want: /^--http-listen: refusing .*--data-insecure/ },
    { name: "http forward-auth off loopback with TLS", cfg: { httpListen: "0.0.0.0:9195", tlsCert: "c", tlsKey: "k" }, want: { admin: "tls", data: "plaintext", envoy: "plaintext", http: "tls" } },
    { name: "envoy disabled", cfg: { envoyListen: "" }, want: { admin: "plaintext", data: "plaintext", envoy: null, http: null } },
  ];
  for (const c of cases) {
    it(`decideExposure: ${c.name}`, () => {
      const run = () => decideExposure({ ...base, ...c.cfg });
      if (c.want instanceof RegExp) expect(run).to.throw(c.want);
      else expect(run()).to.deep.equal(c.want);
    });
  }

  it("the bin exits 2 naming the flag for a non-loopback data port, Envoy endpoint or admin port without TLS", async () => {
    const dir = await tempDir();
    try {
      for (const [args, flag] of [
        [["--listen", "0.0.0.0:0"], "--listen"],
        [["--envoy-listen", "0.0.0.0:0"], "--envoy-listen"],
        [["--http-listen", "0.0.0.0:0"], "--http-listen"],
        [["--admin-listen", "0.0.0.0:0"], "--admin-insecure"],
      ] as const) {
        const r = await refused(dir, [...args]);
        expect(r.exitCode, r.stderr).to.equal(2);
        expect(r.stderr).to.include(flag);
      }
      // With --data-insecure the data plane starts off loopback (the operator accepted the risk).
      const p = await startServe(dir, ["--listen", "0.0.0.0:0", "--envoy-listen", "0.0.0.0:0", "--http-listen", "127.0.0.1:0", "--data-insecure"]);
      expect(p.dataAddress).to.match(/^0\.0\.0\.0:\d+$/);
      expect(p.envoyAddress).to.match(/^0\.0\.0\.0:\d+$/);
      expect(await stopProcess(p.child)).to.equal(0);
    } finally {
      await removeDir(dir);
    }
  });

  it("with --tls-cert/--tls-key, a non-loopback data port and Envoy endpoint serve TLS; plaintext clients fail", async function () {
    const dir = await tempDir();
    const made = await selfSignedCert(dir);
    if (!made) {
      await removeDir(dir);
      return requireProgram(this, "openssl", "openssl", false);
    }
    const p = await startServe(join(dir, "data"), ["--listen", "0.0.0.0:0", "--envoy-listen", "0.0.0.0:0", "--http-listen", "127.0.0.1:0", "--tls-cert", made.cert, "--tls-key", made.key]);
    const port = (a: string) => a.slice(a.lastIndexOf(":") + 1);
    const tls = grpc.credentials.createSsl(await readFile(made.cert));
    const name = { "grpc.ssl_target_name_override": "localhost" }; // the certificate's DNS name (an IP as SNI is deprecated)
    const clients: grpc.Client[] = [];
    try {
      const authz = new AuthorizerClient(`127.0.0.1:${port(p.dataAddress)}`, tls, name);
      clients.push(authz);
      const res = await call<unknown, CheckResponse>(authz, "check", { apiKey: "sk-unknown" });
      expect(res.allowed).to.equal(false);
      const plain = new AuthorizerClient(`127.0.0.1:${port(p.dataAddress)}`, grpc.credentials.createInsecure());
      clients.push(plain);
      await expectGrpcError(call(plain, "check", { apiKey: "sk-unknown" }), status.UNAVAILABLE);
      // The Envoy endpoint (node:http2) over TLS: grpc.health.v1, as Envoy's health checker calls it.
      const health = new HealthClient(`127.0.0.1:${port(p.envoyAddress)}`, tls, name);
      clients.push(health);
      const h = await new Promise<number>((resolve, reject) => health.check({ service: "" }, (err, r) => (err ? reject(err) : resolve(r!.status))));
      expect(h).to.equal(HealthCheckResponse_ServingStatus.SERVING);
      const plainHealth = new HealthClient(`127.0.0.1:${port(p.envoyAddress)}`, grpc.credentials.createInsecure());
      clients.push(plainHealth);
      const code = await new Promise<number>((resolve) => plainHealth.check({ service: "" }, new grpc.Metadata(), { deadline: Date.now() + 5000 }, (err) => resolve(err ? err.code : 0)));
      expect(code).to.not.equal(0);
    } finally {
      for (const c of clients) c.close();
      await stopProcess(p.child);
      await removeDir(dir);
    }
  });

  it("AISA_CONSUME_TOKEN: Consume and ConsumeBatch need 'authorization: Bearer <it>'; Check does not", async () => {
    const s = await startTestSidecar({ consumeToken: "consume-secret-1" });
    try {
      const meta = (v?: string) => {
        const m = new grpc.Metadata();
        if (v) m.set("authorization", v);
        return m;
      };
      const req = { requestId: "ct-1", target: { $case: "keyId", value: "key_nope" }, units: "1" };
      for (const m of [meta(), meta("Bearer wrong"), meta("consume-secret-1")]) {
        const e = await expectGrpcError(call(s.authorizer, "consume", req, m), status.UNAUTHENTICATED);
        expect(e.details).to.include("AISA_CONSUME_TOKEN");
        await expectGrpcError(call(s.authorizer, "consumeBatch", { items: [req] }, m), status.UNAUTHENTICATED);
      }
      // With the token the call is authorised (and then fails on its merits: no such key).
      await expectGrpcError(call<unknown, ConsumeResponse>(s.authorizer, "consume", req, meta("Bearer consume-secret-1")), status.NOT_FOUND);
      const chk = await call<unknown, CheckResponse>(s.authorizer, "check", { apiKey: "sk-unknown" });
      expect(chk.allowed).to.equal(false);
    } finally {
      await s.close();
      await removeDir(s.dir);
    }
  });
});
