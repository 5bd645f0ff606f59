// Boolean settings through the real bin: an unknown word exits 2 before anything starts,
// naming the setting (env or flag); the documented words are accepted.
import { expect } from "chai";
import { spawn } from "node:child_process";
import { parseBool } from "../../src/config/config.js";
import { BIN, startServe, stopProcess, waitExit } from "../helpers/proc.js";
import { removeDir, tempDir } from "../helpers/tmp.js";

/** Runs the bin to its exit (stopped by pid if it outlives the timeout). */
async function runBin(args: string[], env: NodeJS.ProcessEnv): Promise<{ code: number | string; stderr: string }> {
  const child = spawn(process.execPath, [BIN, ...args], { env: { ...process.env, ...env }, stdio: ["ignore", "pipe", "pipe"] });
  let stderr = "";
  child.stderr!.on("data", (d: Buffer) => (stderr += d.toString("utf8")));
  child.stdout!.resume();
  try {
    const code = await waitExit(child, 30_000);
    return { code, stderr };
  } catch (err) {
    await stopProcess(child);
    throw err;
  }
}

describe("boolean settings (the real bin)", function () {
  this.timeout(120_000);
  let dir = "";
  before(async () => {
    dir = await tempDir();
  });
  after(async () => {
    await removeDir(dir);
  });

  const serveArgs = () => ["serve", "--data", dir, "--listen", "127.0.0.1:0", "--envoy-listen", "127.0.0.1:0", "--http-listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0", "--metrics-listen", "127.0.0.1:0"];
  const bad: { name: string; args?: string[]; env?: Record<string, string>; message: string }[] = [
    { name: "AISA_DENY_UNPRICED_MODELS=enabled", env: { AISA_DENY_UNPRICED_MODELS: "enabled" }, message: 'error: AISA_DENY_UNPRICED_MODELS: "enabled" is not a boolean; use 1, true, yes, on or 0, false, no, off' },
    { name: "AISA_ADMIN_INSECURE=sure", env: { AISA_ADMIN_INSECURE: "sure" }, message: 'error: AISA_ADMIN_INSECURE: "sure" is not a boolean' },
    { name: "AISA_REBUILD_PROJECTION=please", env: { AISA_REBUILD_PROJECTION: "please" }, message: 'error: AISA_REBUILD_PROJECTION: "please" is not a boolean' },
    { name: "--admin-insecure=maybe", args: ["--admin-insecure=maybe"], message: 'error: --admin-insecure: "maybe" is not a boolean' },
    { name: "--rebuild-projection=later", args: ["--rebuild-projection=later"], message: 'error: --rebuild-projection: "later" is not a boolean' },
    { name: "--store bogus://x:1", args: ["--store", "bogus://x:1"], message: 'error: --store: "bogus://x:1" is not a store URL; expected redis://' },
    { name: "AISA_STORE=redis://u:pw@host (no port)", env: { AISA_STORE: "redis://u:pw@host" }, message: 'error: AISA_STORE: "redis://u:***@host" names no host:port' },
    { name: "--redis-timeout-ms 0", args: ["--redis-timeout-ms", "0"], message: "error: --redis-timeout-ms: must be an integer >= 1 (got 0)" },
    { name: "AISA_FROM_SOURCE=source (read by the launcher)", env: { AISA_FROM_SOURCE: "source" }, message: parseBoolMessage("AISA_FROM_SOURCE", "source") },
  ];
  for (const c of bad) {
    it(`${c.name}: exits 2 naming the setting, before anything starts`, async () => {
      const r = await runBin([...serveArgs(), ...(c.args ?? [])], c.env ?? {});
      expect(r.code, r.stderr).to.equal(2);
      expect(r.stderr).to.include(c.message);
      expect(r.stderr).not.to.include('"msg":"ready"');
    });
  }

  it("the documented words start it (AISA_DENY_UNPRICED_MODELS=OFF, --admin-insecure=no, AISA_FROM_SOURCE=yes)", async () => {
    const p = await startServe(dir, ["--admin-insecure=no"], { AISA_DENY_UNPRICED_MODELS: "OFF", AISA_FROM_SOURCE: "yes" });
    try {
      expect(p.ready["build"]).to.equal("source");
    } finally {
      expect(await stopProcess(p.child)).to.equal(0);
    }
  });
});

function parseBoolMessage(name: string, v: string): string {
  try {
    parseBool(name, v, false);
  } catch (err) {
    return `error: ${(err as Error).message}`;
  }
  throw new Error("parseBool accepted it");
}
