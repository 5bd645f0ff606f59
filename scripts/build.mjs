// npm run build: compiles src/ and tui/ to dist/ with tsc, then writes dist/.build-stamp
// dated when the build STARTED, so bin/aisa-authz.js can tell a build older than any source
// file (edited during or after the build) and run the sources instead.
import { execFileSync } from "node:child_process";
import { closeSync, openSync, utimesSync } from "node:fs";
import { createRequire } from "node:module";
import { fileURLToPath } from "node:url";

const root = fileURLToPath(new URL("..", import.meta.url));
const started = new Date();
const tsc = createRequire(import.meta.url).resolve("typescript/bin/tsc");
try {
  execFileSync(process.execPath, [tsc, "-p", "tsconfig.build.json"], { cwd: root, stdio: "inherit" });
} catch {
  process.exit(1);
}
const stamp = `${root}dist/.build-stamp`;
closeSync(openSync(stamp, "w"));
utimesSync(stamp, started, started);
