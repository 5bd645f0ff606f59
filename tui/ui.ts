// What `runTui` (tui/main.tsx) loads once the first calls are under way: React, Ink and the
// screens. `npm run build` also bundles this module with everything it imports but the modules
// main.tsx has already loaded (scripts/bundleTui.mjs → dist/tui/ui.bundle.js), so the compiled
// TUI reads one file instead of ~250: importing Ink and React took ~430 ms of module loading
// (resolution, file reads, CommonJS lexing) on an idle 2-core machine, ~90 ms as one bundle.
export { createElement } from "react";
export { render } from "ink";
export { App } from "./App.js";
