// Loaded into a sidecar with `--import` (bench/checkRss.ts puts it in NODE_OPTIONS): every 100 ms
// it writes the process's memory as V8 and node see it (process.memoryUsage(), V8's heap spaces)
// to AISA_MEMPROBE_FILE (written to a temp name, then renamed: a reader never sees half a file).
// The timer is unref'd: it keeps nothing alive and changes nothing the sidecar does.
// When the bench creates AISA_MEMPROBE_FILE.gc, the next tick removes it and runs a full GC
// first (what is garbage, and what native memory only its collection frees, shows as the drop).
import { existsSync, renameSync, rmSync, writeFileSync } from "node:fs";
import { getHeapSpaceStatistics, setFlagsFromString } from "node:v8";
import { runInNewContext } from "node:vm";

const file = process.env.AISA_MEMPROBE_FILE;
if (file) {
  const MB = 1 / (1024 * 1024);
  let seq = 0;
  let gcs = 0;
  let gc;
  const t = setInterval(() => {
    if (existsSync(`${file}.gc`)) {
      rmSync(`${file}.gc`, { force: true });
      if (!gc) {
        setFlagsFromString("--expose-gc");
        gc = runInNewContext("gc");
      }
      gc();
      gcs++;
    }
    const m = process.memoryUsage();
    const spaces = {};
    for (const s of getHeapSpaceStatistics()) spaces[s.space_name] = { sizeMb: s.space_size * MB, physicalMb: s.physical_space_size * MB, usedMb: s.space_used_size * MB };
    const snap = { seq: ++seq, gcs, rssMb: m.rss * MB, heapTotalMb: m.heapTotal * MB, heapUsedMb: m.heapUsed * MB, externalMb: m.external * MB, arrayBuffersMb: m.arrayBuffers * MB, spaces };
    try {
      writeFileSync(`${file}.tmp`, JSON.stringify(snap));
      renameSync(`${file}.tmp`, file);
    } catch {
      // the bench's scratch dir is gone: it is shutting us down
    }
  }, 100);
  t.unref();
}
