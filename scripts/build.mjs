// npm run build: compiles src/ and tui/ to dist/ with tsc, then writes dist/.build-stamp
// dated when the build STARTED, so bin/aisa-authz.js can tell a build older than any source
// file (edited during or after the build) and run the sources instead.
import { execFileSync } from "node:child_process";
import { closeSync, openSync, rmSync, utimesSync } from "node:fs";
import { createRequire } from "node:module";
import { fileURLToPath } from "node:url";

const root = fileURLToPath(new URL("..", import.meta.url));

// As npm's `prepare` hook, this build is an optimisation, never a requirement: without dist/
// the bin runs the sources through tsx. `npx aisa-authz` in a fresh checkout makes npm link the
// package and run `prepare` — a ~20 s tsc run that looked like a hang before the first command.
// There it is skipped (and said so); `npm install` / `npm ci` still build, and say they do.
if (process.env.npm_lifecycle_event === "prepare") {
  if (process.env.npm_command === "exec") {
    process.stderr.write("aisa-authz: not compiling under npx; the bin runs the TypeScript sources (`npm run build` makes start-up faster)\n");
    process.exit(0);
  }
  process.stderr.write("aisa-authz: compiling src/ and tui/ to dist/ (about 20 s)…\n");
}
const started = new Date();
const tsc = createRequire(import.meta.url).resolve("typescript/bin/tsc");
// The TUI's React, Ink and screens as one file, after tsc (scripts/bundleTui.mjs). A bundle from
// an earlier build never outlives the modules it was made from.
const { BUNDLE, bundleTui } = await import("./bundleTui.mjs");
rmSync(BUNDLE, { force: true });
try {
  execFileSync(process.execPath, [tsc, "-p", "tsconfig.build.json"], { cwd: root, stdio: "inherit" });
} catch {
  process.exit(1);
}
try {
  await bundleTui();
} catch (err) {
  process.stderr.write(`aisa-authz: bundling the TUI failed: ${err?.stack ?? err}\n`);
  process.exit(1);
}
const stamp = `${root}dist/.build-stamp`;
closeSync(openSync(stamp, "w"));
utimesSync(stamp, started, started);
