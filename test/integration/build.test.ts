// The bin runs the compiled build (dist/, from `npm run build`, which `npm install` and
// `npm test` run) when it is newer than every source file, and the TypeScript sources
// through tsx otherwise — so a stale build never runs.
import { expect } from "chai";
import { spawnSync } from "node:child_process";
import { mkdtempSync, rmSync, statSync, utimesSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { BIN, startServe, stopProcess } from "../helpers/proc.js";

const ROOT = fileURLToPath(new URL("../../", import.meta.url));
const STAMP = join(ROOT, "dist/.build-stamp");

async function buildOfServe(env: NodeJS.ProcessEnv = {}): Promise<unknown> {
  const dir = mkdtempSync(join(tmpdir(), "aisa-build-"));
  try {
    const p = await startServe(dir, [], env);
    const build = p.ready.build;
    expect(await stopProcess(p.child)).to.equal(0);
    return build;
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

describe("compiled build (dist/)", function () {
  this.timeout(120_000);

  it("serve runs from dist/ when the build is fresh", async () => {
    const r = spawnSync(process.execPath, [join(ROOT, "scripts/build.mjs")], { cwd: ROOT, encoding: "utf8" });
    expect(r.status, r.stdout + r.stderr).to.equal(0);
    expect(await buildOfServe()).to.equal("dist");
  });

  it("serve runs the sources when a source file is newer than the build", async () => {
    const { atime, mtime } = statSync(STAMP);
    utimesSync(STAMP, new Date(0), new Date(0)); // every source file is now newer
    try {
      expect(await buildOfServe()).to.equal("source");
    } finally {
      utimesSync(STAMP, atime, mtime);
    }
  });

  it("AISA_FROM_SOURCE=1 forces the sources", async () => {
    expect(await buildOfServe({ AISA_FROM_SOURCE: "1" })).to.equal("source");
  });

  it("the compiled CLI answers like the sources", () => {
    const dist = spawnSync(process.execPath, [BIN, "--version"], { encoding: "utf8" });
    const src = spawnSync(process.execPath, [BIN, "--version"], { encoding: "utf8", env: { ...process.env, AISA_FROM_SOURCE: "1" } });
    expect(dist.status).to.equal(0);
    expect(dist.stdout.trim()).to.match(/^\d+\.\d+\.\d+$/);
    expect(dist.stdout).to.equal(src.stdout);
  });
});
