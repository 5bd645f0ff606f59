// The bin runs the compiled build (dist/, from `npm run build`, which `npm install` and
// `npm test` run) when it is newer than every source file, and the TypeScript sources
// through tsx otherwise — so a stale build never runs.
import { expect } from "chai";
import { spawnSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, statSync, utimesSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
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

  it("the compiled TUI loads React, Ink and the screens from one bundle that shares main's modules", () => {
    // scripts/bundleTui.mjs, run by the build above: dist/tui/ui.bundle.js, loaded by runTui's loadUi.
    const bundle = readFileSync(join(ROOT, "dist/tui/ui.bundle.js"), "utf8");
    // The gRPC client main.js loaded is imported, not copied: one ApiError class in the process.
    expect(bundle).to.match(/^import \{[^}]*\bApiError\b[^}]*\} from "\.\/client\.js";$/m);
    expect(bundle).not.to.match(/class ApiError\b/);
    expect(bundle).not.to.match(/class GrpcAdminApi\b/);
    // React's production build only; Ink is in it (no import of the package).
    expect(bundle).not.to.include("react.development");
    expect(bundle).not.to.match(/from "(ink|react|react-reconciler|yoga-layout)"/);
    // Ink as installed, i.e. with patches/ink+6.8.0.patch: both text caches bounded.
    expect(bundle.match(/^\s*if \(cache\d* *\.size >= CACHE_MAX\d*\) \{$/gm) ?? []).to.have.length(2);
    // What runTui gets from loadUi (the compiled main.js) is the bundle's App.
    const probe = `
      const main = await import(${JSON.stringify(pathToFileURL(join(ROOT, "dist/tui/main.js")).href)});
      const bundle = await import(${JSON.stringify(pathToFileURL(join(ROOT, "dist/tui/ui.bundle.js")).href)});
      const ui = await main.loadUi();
      console.log(JSON.stringify({ same: ui.App === bundle.App, kinds: [typeof ui.App, typeof ui.render, typeof ui.createElement] }));`;
    const r = spawnSync(process.execPath, ["--input-type=module", "-e", probe], { cwd: ROOT, encoding: "utf8" });
    expect(r.status, r.stderr).to.equal(0);
    const out = JSON.parse(r.stdout.trim().split("\n").pop()!) as { same: boolean; kinds: string[] };
    expect(out.same).to.equal(true);
    expect(out.kinds).to.deep.equal(["function", "function", "function"]);
  });

  it("the TUI run from the sources does not load the bundle", async () => {
    const { loadUi } = await import("../../tui/main.js"); // tui/main.tsx, through tsx
    const ui = await loadUi();
    const modules = await import("../../tui/ui.js");
    expect(ui.App).to.equal(modules.App);
  });

  it("the compiled CLI answers like the sources", () => {
    const dist = spawnSync(process.execPath, [BIN, "--version"], { encoding: "utf8" });
    const src = spawnSync(process.execPath, [BIN, "--version"], { encoding: "utf8", env: { ...process.env, AISA_FROM_SOURCE: "1" } });
    expect(dist.status).to.equal(0);
    expect(dist.stdout.trim()).to.match(/^\d+\.\d+\.\d+$/);
    expect(dist.stdout).to.equal(src.stdout);
  });
});
