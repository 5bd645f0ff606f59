// A child process for inkCaches.test.ts: Ink renders FRAMES frames of ROWS rows whose text
// changes every frame (as a key table's figures do under live usage), with the TUI's settings
// (NODE_ENV=production), then prints how much heap the process kept (after full GCs) and how
// many distinct texts Ink laid out. Run with --expose-gc. (Mocha loads every file under test/:
// imported rather than run, this does nothing.)
import React from "react";
import { Box, Text, render } from "ink";
import { PassThrough } from "node:stream";
import { fileURLToPath } from "node:url";

const FRAMES = Number(process.argv[2] ?? 2000);
const ROWS = 30;
const out = Object.assign(new PassThrough(), { columns: 120, rows: ROWS + 5, isTTY: false });
out.on("data", () => {});

function Table({ n }: { n: number }) {
  return (
    <Box flexDirection="column">
      {Array.from({ length: ROWS }, (_, i) => (
        <Text key={i} wrap="truncate">
          <Text color="magenta">{i === 0 ? "› " : "  "}</Text>
          {`key-${String(i).padStart(2, "0")} ${"·".repeat(40)} remaining ${(n * ROWS + i) * 7} of 1000000 used ${n}`}
        </Text>
      ))}
    </Box>
  );
}

async function main(): Promise<void> {
  const gc = (globalThis as { gc?: () => void }).gc!;
  const heapMb = () => {
    gc();
    gc();
    return process.memoryUsage().heapUsed / 2 ** 20;
  };
  // Every rerender is laid out (Ink measures text at each commit); maxFps high so most are drawn too.
  const ink = render(<Table n={0} />, { stdout: out as unknown as NodeJS.WriteStream, exitOnCtrlC: false, patchConsole: false, maxFps: 1000 });
  await new Promise((r) => setTimeout(r, 50));
  const before = heapMb();
  for (let n = 1; n <= FRAMES; n++) {
    ink.rerender(<Table n={n} />);
    await new Promise((r) => setImmediate(r));
  }
  await new Promise((r) => setTimeout(r, 100));
  const keptMb = heapMb() - before;
  ink.unmount();
  process.stdout.write(JSON.stringify({ frames: FRAMES, distinctTexts: FRAMES * ROWS, keptMb }) + "\n");
}

if (process.argv[1] === fileURLToPath(import.meta.url)) await main();
