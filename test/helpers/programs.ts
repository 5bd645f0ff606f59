// Real programs from Debian the tests run (tmux, h2load, nginx, caddy, haproxy): on a user's
// machine a missing one skips its tests with the apt line to install it; under CI=true it fails
// the run instead, so CI never passes by skipping (.ci/run installs them all).
import { spawnSync } from "node:child_process";

/** Whether `cmd` is on PATH. */
export function onPath(cmd: string): boolean {
  return spawnSync("sh", ["-c", `command -v ${cmd}`], { stdio: "ignore" }).status === 0;
}

/**
 * Whether a program the tests need is here (`found`, else looked up on PATH). Missing under
 * CI=true: throws, naming the apt package.
 */
export function programAvailable(cmd: string, aptPackage: string, found: boolean = onPath(cmd)): boolean {
  if (!found && process.env["CI"] === "true") throw new Error(`${cmd} is not installed (apt-get install -y ${aptPackage}); under CI=true the tests that need it must run`);
  return found;
}

/** Skips the calling test or suite when the program is missing (fails under CI=true), naming the apt line. */
export function requireProgram(ctx: Mocha.Context, cmd: string, aptPackage: string, found?: boolean): void {
  if (programAvailable(cmd, aptPackage, found)) return;
  console.warn(`      skipped: ${cmd} is not installed (sudo apt-get install -y ${aptPackage})`);
  ctx.skip();
}
