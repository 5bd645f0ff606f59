#!/bin/sh
// 2>/dev/null; c=; s=; for a in "$@"; do if [ -n "$s" ]; then s=; continue; fi; case $a in --admin|--token|--data|--admin-ca) s=1;; -*) ;; *) c=$a; break;; esac; done; y=; [ "$c" = tui ] || { NODE_OPTIONS="--max-semi-space-size=4 ${NODE_OPTIONS:-}"; y=--min-semi-space-size=4; }; export MALLOC_ARENA_MAX="${MALLOC_ARENA_MAX:-2}" NODE_OPTIONS; exec node $y "$0" "$@"
//
// The two lines above are a shell prologue (the file is both a shell script and an ES module):
// run as a program (`./bin/aisa-authz.js`, `npm start`, `npx aisa-authz`, an npm-linked
// `aisa-authz`), /bin/sh runs the second line (the `//` command fails quietly) and execs node on
// this same file with two memory settings that must be in place before node starts, each a
// default the environment overrides:
//   - MALLOC_ARENA_MAX=2: glibc gives every thread that allocates (V8's GC and compiler
//     helpers, libuv's pool running LevelDB) an arena of its own, up to 8 per core, and keeps
//     what each has held; two are enough here. musl ignores it.
//   - --max-semi-space-size=4 (MB), in NODE_OPTIONS so that a later value there wins: V8's
//     young generation then stays at 8 MB instead of growing to 32 MB under load. Request
//     garbage dies young either way, so throughput is the same (bench/README.md, "RSS").
//   - --min-semi-space-size=4 (MB), on node's command line (node refuses it in NODE_OPTIONS):
//     the young generation starts at that size instead of 1 MB, so a lightly loaded sidecar
//     scavenges half as often, and fewer Checks at one in flight meet a scavenge (their p99;
//     bench/README.md, "At the end of stop 31"). V8 clamps it to a smaller maximum.
//     Not for `tui`: each of its frames leaves MBs of young garbage, and in 8 MB it collected
//     3–4 times per keystroke (bench/README.md, TUI "Fourth pass"); it keeps V8's default.
//     The command is the first argument that is not a global flag or a global flag's value
//     (`aisa-authz --admin h:p --token T tui` is the TUI too; `keys create --name tui` is not).
// Together ~45 MB less RSS under load. Run as `node bin/aisa-authz.js` (tests do), node
// reads both lines as comments and the settings are not applied.
//
// Entry point of the `aisa-authz` bin. Runs the compiled build (dist/, from `npm run build`,
// which `npm install` runs) when it is newer than every source file: no TypeScript loader,
// so start-up is faster and the process smaller. Otherwise — a checkout being edited, or
// typescript absent (`npm install --omit=dev`) — it runs the TypeScript sources through tsx,
// so a stale build never runs. AISA_FROM_SOURCE=1 (or true/yes/on) forces the sources.
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

/**
 * AISA_FROM_SOURCE, read with the boolean words of every setting (src/config/config.ts
 * parseBool; this launcher runs before any TypeScript can load, so it repeats them, and
 * test/integration/settings.test.ts checks both give the same answer and message).
 */
function fromSource() {
  const raw = process.env.AISA_FROM_SOURCE;
  const w = (raw ?? "").trim().toLowerCase();
  if (w === "") return false;
  if (["1", "true", "yes", "on"].includes(w)) return true;
  if (["0", "false", "no", "off"].includes(w)) return false;
  process.stderr.write(`error: AISA_FROM_SOURCE: ${JSON.stringify(raw)} is not a boolean; use 1, true, yes, on or 0, false, no, off\n`);
  process.exit(2);
}

function buildIsFresh() {
  if (fromSource()) return false;
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
