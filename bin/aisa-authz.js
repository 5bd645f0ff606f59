#!/usr/bin/env node
// Entry point of the `aisa-authz` bin. Runs the TypeScript sources through tsx's
// loader so the same command works in a checkout without a build step.
import { register } from "tsx/esm/api";
register();
await import("../src/cli/main.ts");
