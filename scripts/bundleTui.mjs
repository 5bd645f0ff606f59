// Step of `npm run build` (scripts/build.mjs), after tsc: bundles dist/tui/ui.js — React, Ink and
// the TUI's screens — into ONE file, dist/tui/ui.bundle.js, which the compiled `runTui` imports
// (tui/main.tsx loadUi). Loading Ink and React as ~250 separate modules was most of the TUI's
// time to its first frame (bench/README.md, "The TUI's first frame").
//
// What stays outside the bundle: every module dist/tui/main.js has already loaded by the time it
// imports the UI (its static import graph: the gRPC client, the generated messages, the shared
// helpers those import) and every package they use. The bundle imports those by their path
// relative to dist/tui/, i.e. the same files main.js loaded: one copy of each module in the
// process, so `instanceof ApiError` and module state mean the same on both sides.
//
// React is bundled as its production build (`process.env.NODE_ENV` defined as "production", as
// runTui defaults it for the modules): the shipped TUI never ran the development build.
// Ink imports react-devtools-core only when DEV=true; it is not a dependency, so that import gets
// a stand-in that fails the way a missing package does (Ink then prints how to install it).
import { dirname, join, relative, resolve, sep } from "node:path";
import { fileURLToPath } from "node:url";
import * as esbuild from "esbuild";

const root = fileURLToPath(new URL("..", import.meta.url));
const tuiDir = join(root, "dist/tui");
export const BUNDLE = join(tuiDir, "ui.bundle.js");

/**
 * dist/tui/main.js's static import graph: the absolute paths of the files it loads before the UI,
 * and the packages those import (bare specifiers).
 */
async function staticGraph(entry) {
  const r = await esbuild.build({ entryPoints: [entry], absWorkingDir: root, bundle: true, write: false, metafile: true, platform: "node", format: "esm", packages: "external", logLevel: "silent", outdir: "/nonexistent" });
  const inputs = r.metafile.inputs;
  const files = new Set();
  const packages = new Set();
  const walk = (file) => {
    if (files.has(file)) return;
    files.add(file);
    for (const imp of inputs[file]?.imports ?? []) {
      if (imp.kind !== "import-statement") continue; // main.js's dynamic import of the UI is what gets bundled
      if (imp.external) packages.add(imp.path);
      else walk(imp.path);
    }
  };
  walk(relative(root, entry).split(sep).join("/"));
  return { files: new Set([...files].map((f) => resolve(root, f))), packages };
}

export async function bundleTui() {
  // Packages main.js's graph imports are external too: loaded once, by Node.
  const { files: shared, packages: sharedPackages } = await staticGraph(join(tuiDir, "main.js"));
  const devtoolsStandIn = 'const e = new Error("react-devtools-core is not part of the bundled TUI"); e.code = "ERR_MODULE_NOT_FOUND"; throw e;';
  const plugin = {
    name: "aisa-tui-shared",
    setup(b) {
      b.onResolve({ filter: /^react-devtools-core$/ }, () => ({ path: "react-devtools-core", namespace: "devtools-stand-in" }));
      b.onLoad({ filter: /.*/, namespace: "devtools-stand-in" }, () => ({ contents: devtoolsStandIn, loader: "js" }));
      // Only our own modules' imports are looked at: a package's own imports resolve from where
      // it is installed (e.g. its nested node_modules), so they are bundled as esbuild finds them.
      const ours = (importer) => importer.startsWith(`${root}dist${sep}`);
      b.onResolve({ filter: /^\.\.?\// }, (args) => {
        if (!ours(args.importer)) return undefined;
        const abs = resolve(dirname(args.importer), args.path);
        if (!shared.has(abs)) return undefined;
        const rel = relative(tuiDir, abs).split(sep).join("/");
        return { path: rel.startsWith(".") ? rel : `./${rel}`, external: true };
      });
      b.onResolve({ filter: /^[^./]/ }, (args) => {
        if (!ours(args.importer)) return undefined;
        const pkg = args.path.startsWith("@") ? args.path.split("/").slice(0, 2).join("/") : args.path.split("/")[0];
        return sharedPackages.has(args.path) || sharedPackages.has(pkg) ? { path: args.path, external: true } : undefined;
      });
    },
  };
  await esbuild.build({
    entryPoints: [join(tuiDir, "ui.js")],
    absWorkingDir: root,
    outfile: BUNDLE,
    bundle: true,
    platform: "node",
    format: "esm",
    target: "node20",
    define: { "process.env.NODE_ENV": '"production"' },
    // CommonJS packages (React, react-reconciler, scheduler) call require() for Node's builtins.
    banner: { js: 'import { createRequire as __aisaCreateRequire } from "node:module"; const require = __aisaCreateRequire(import.meta.url);' },
    plugins: [plugin],
    // The bundled packages' licence comments, gathered at the end of the file.
    legalComments: "eof",
    logLevel: "warning",
  });
}
