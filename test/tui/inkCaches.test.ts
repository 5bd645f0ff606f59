// Ink 6.8 keeps every distinct text it measures and wraps in two module-level caches that never
// evict (vadimdemedes/ink#986): a key table whose figures change under live usage grows the
// TUI's heap for as long as it runs. patches/ink+6.8.0.patch (applied by patch-package on
// install) bounds both. This renders 60,000 distinct row texts in a child process with the
// TUI's settings and checks the heap the process keeps afterwards: ~12 MB with Ink's caches as
// shipped (measured), ~1 MB with the patch.
import { expect } from "chai";
import { execFile } from "node:child_process";
import { readFileSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const HERE = dirname(fileURLToPath(import.meta.url));

describe("Ink's text caches are bounded (patches/ink+6.8.0.patch)", function () {
  this.timeout(90_000);

  it("the installed Ink carries the patch", () => {
    const dir = dirname(createRequire(import.meta.url).resolve("ink"));
    for (const f of ["measure-text.js", "wrap-text.js"]) expect(readFileSync(join(dir, f), "utf8"), f).to.include("CACHE_MAX");
  });

  it("60,000 distinct row texts leave under 5 MB of heap behind (Ink as shipped kept ~12 MB)", async () => {
    const out = await new Promise<string>((resolve, reject) =>
      execFile(process.execPath, ["--expose-gc", "--import", "tsx", join(HERE, "textChurn.tsx"), "2000"], { env: { ...process.env, NODE_ENV: "production" }, timeout: 80_000 }, (err, stdout, stderr) =>
        err ? reject(new Error(`${err.message}\n${stderr}`)) : resolve(stdout),
      ),
    );
    const r = JSON.parse(out.trim().split("\n").pop()!);
    expect(r.distinctTexts).to.equal(60_000);
    expect(r.keptMb, `heap kept after ${r.distinctTexts} texts`).to.be.lessThan(5);
  });
});
