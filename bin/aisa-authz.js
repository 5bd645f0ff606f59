#!/usr/bin/env node
// Entry point of the `aisa-authz` bin. Runs the compiled build (dist/, from `npm run build`,
// which `npm install` runs) when it is newer than every source file: no TypeScript loader,
// so start-up is faster and the process smaller. Otherwise — a checkout being edited, or
// typescript absent (`npm install --omit=dev`) — it runs the TypeScript sources through tsx,
// so a stale build never runs. AISA_FROM_SOURCE=1 forces the sources.
import { readdirSync, statSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";

const root = fileURLToPath(new URL("..", import.meta.url));

/** Newest mtime (ms) of the files under dir; -1 when there are none. */
function newest(dir) {
  let t = -1;
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const p = join(dir, e.name);
    t = Math.max(t, e.isDirectory() ? newest(p) : statSync(p).mtimeMs);
  }
  return t;
}

function buildIsFresh() {
  if (process.env.AISA_FROM_SOURCE === "1") return false;
  try {
    const built = statSync(join(root, "dist/.build-stamp")).mtimeMs;
    return ["src", "tui"].every((d) => newest(join(root, d)) <= built);
  } catch {
    return false; // no build
  }
}

if (buildIsFresh()) {
  await import("../dist/src/cli/main.js");
} else {
  const { register } = await import("tsx/esm/api");
  register();
  await import("../src/cli/main.ts");
}
