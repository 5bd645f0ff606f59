import { mkdtemp, readdir, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";

export async function tempDir(prefix = "aisa-test-"): Promise<string> {
  return mkdtemp(join(tmpdir(), prefix));
}

export async function removeDir(dir: string): Promise<void> {
  await rm(dir, { recursive: true, force: true });
}

/**
 * Temp dirs a helper made that a test may still use after stopping what ran in them (a sidecar
 * restarted on the same data, the files read back): removed when the mocha run ends (the root
 * hook in test/helpers/rootHooks.ts, loaded by .mocharc), whether or not the test removed them.
 */
// On globalThis: mocha loads the root hook's copy of this module apart from the one some test
// files import (one set for both).
const atEnd: Set<string> = ((globalThis as Record<symbol, Set<string> | undefined>)[Symbol.for("aisa-test.removeAtEnd")] ??= new Set());

export function removeAtEnd(dir: string): string {
  atEnd.add(dir);
  return dir;
}

export async function removeDirsLeftForTheEnd(): Promise<void> {
  for (const d of atEnd) await removeDir(d);
  atEnd.clear();
}

/** Every file below `dir`, recursively. */
export async function filesUnder(dir: string): Promise<string[]> {
  const out: string[] = [];
  for (const e of await readdir(dir, { withFileTypes: true })) {
    const p = join(dir, e.name);
    if (e.isDirectory()) out.push(...(await filesUnder(p)));
    else out.push(p);
  }
  return out;
}
