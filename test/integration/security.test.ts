// Admin security and secrets at rest.
import { expect } from "chai";
import { readFile } from "node:fs/promises";
import { status } from "@grpc/grpc-js";
import type { CreateKeyResponse, RevealKeysResponse, RotateKeyResponse } from "../../src/gen/aisa/v1/admin.js";
import { startSidecar } from "../../src/main.js";
import { call, expectGrpcError, LogSink, removeDir, startTestSidecar, tempDir } from "../helpers/sidecar.js";
import { filesUnder } from "../helpers/tmp.js";
import { startServe, stopProcess } from "../helpers/proc.js";
import { pino } from "pino";

describe("security", function () {
  this.timeout(120_000);

  it("refuses a non-loopback admin address without TLS unless --admin-insecure", async () => {
    const dir = await tempDir();
    try {
      let err: any;
      try {
        await startSidecar({ dataDir: dir, listen: "127.0.0.1:0", envoyListen: "127.0.0.1:0", httpListen: "127.0.0.1:0", adminListen: "0.0.0.0:0", metricsListen: "", logger: pino({ level: "silent" }) });
      } catch (e) {
        err = e;
      }
      expect(err?.message).to.match(/refusing to serve the admin API on non-loopback 0\.0\.0\.0:0 without TLS/);
      // The same through the real bin: non-zero exit, the reason on stderr.
      let failure: any;
      try {
        await startServe(dir, ["--admin-listen", "0.0.0.0:0"]);
      } catch (e) {
        failure = e;
      }
      expect(failure?.exitCode).to.equal(2); // a usage error, named by its flag (decideExposure)
      expect(failure?.stderr).to.include("--admin-insecure");
      // With --admin-insecure it starts (the operator accepted the risk).
      const p = await startServe(dir, ["--admin-listen", "0.0.0.0:0", "--admin-insecure"]);
      expect(p.adminAddress).to.match(/^0\.0\.0\.0:\d+$/);
      expect(await stopProcess(p.child)).to.equal(0);
    } finally {
      await removeDir(dir);
    }
  });

  it("after creating, rotating and revealing 1,000 keys, no secret is in the data dir, the logs or any error", async () => {
    const logs = new LogSink();
    const s = await startTestSidecar({ logger: pino({ level: "debug" }, logs) });
    try {
      const admin = <Res>(m: string, r: unknown) => call<unknown, Res>(s.admin, m, r, s.meta());
      const secrets: string[] = [];
      const errors: string[] = [];
      const ids: string[] = [];
      for (let i = 0; i < 1000; i++) {
        const r = await admin<CreateKeyResponse>("createKey", { spec: { name: `s${i}`, quota: "10" } });
        secrets.push(r.secret);
        ids.push(r.key!.id);
      }
      for (let i = 0; i < 1000; i += 2) {
        const r = await admin<RotateKeyResponse>("rotateKey", { id: ids[i], graceSeconds: i % 4 === 0 ? "60" : "0" });
        secrets.push(r.secret);
      }
      for (let i = 0; i < 1000; i += 100) {
        const r = await admin<RevealKeysResponse>("revealKeys", { ids: ids.slice(i, i + 100) });
        expect(r.keys).to.have.length(100);
      }
      // Errors that could echo a secret: a secret as an admin token, as a model, as a key id.
      for (const secret of secrets.slice(0, 20)) {
        errors.push((await expectGrpcError(call(s.admin, "listKeys", {}, s.meta(secret)), status.UNAUTHENTICATED)).details);
        errors.push((await expectGrpcError(admin("getKey", { id: secret }), status.NOT_FOUND)).details);
        errors.push((await expectGrpcError(admin("createKey", { spec: { name: "x", models: [`a ${secret}`] } }), status.INVALID_ARGUMENT)).details);
        errors.push((await expectGrpcError(call(s.authorizer, "consume", { requestId: "r", target: { $case: "keyId", value: secret }, units: "1" }), status.NOT_FOUND)).details);
      }
      await s.close();
      const files = await filesUnder(s.dir);
      let bytes = 0;
      for (const f of files) {
        const text = (await readFile(f)).toString("latin1");
        bytes += text.length;
        for (const secret of secrets) {
          if (text.includes(secret.slice(3))) expect.fail(`${f} contains a secret`);
        }
      }
      const logText = logs.lines.join("\n");
      for (const secret of secrets) {
        expect(logText.includes(secret.slice(3)), "a secret in the logs").to.equal(false);
        for (const e of errors) expect(e.includes(secret.slice(3)), `a secret in an error: ${e}`).to.equal(false);
      }
      console.log(`      secrets: ${secrets.length} secrets, ${files.length} files (${(bytes / 1e6).toFixed(1)} MB), ${logs.lines.length} log lines, ${errors.length} errors: no secret anywhere`);
    } finally {
      await removeDir(s.dir);
    }
  });
});
