// The ledger archive's compaction (src/store/redis/ledgerArchive.ts compact()): one account's
// archive of `segments` small segments (`per` entries each, an hour apart, as the archiver writes
// them) is written twice; one copy is compacted as the archive pass would (2 MiB bound), then
// reading every entry (LedgerArchive.read: what scanLedger, reconciliation and migrate do) is
// timed on both copies, alternately, `rounds` times: medians, and the ratio compacted / not, so a
// drift of the shared machine hits both alike. Files before and after, and the compaction's time
// against the time it took to write those segments (the archiver's writes, in the same run).
// Usage: node --import tsx bench/ledgerCompaction.ts [segments=2000] [per=20] [rounds=7]
// Prints one JSON object on stdout.
import { mkdtempSync, readdirSync, rmSync } from "node:fs";
import { loadavg, tmpdir } from "node:os";
import { join } from "node:path";
import { LedgerArchive, type ArchivedEntry } from "../src/store/redis/ledgerArchive.js";
import type { ConsumeRecord } from "../src/store/types.js";

const T0 = Date.UTC(2026, 0, 1);
const HOUR = 3_600_000;

async function fill(a: LedgerArchive, segments: number, per: number): Promise<void> {
  for (let i = 0; i < segments; i++) {
    const batch: ArchivedEntry[] = [];
    for (let j = 0; j < per; j++) {
      const at = T0 + i * HOUR + j * 1000;
      const rec: ConsumeRecord = { requestId: `req-${i}-${j}-0123456789abcdef`, keyId: "key_0123456789abcdef", accountId: "acme", model: "gpt-x", inputTokens: 100 + j, outputTokens: 50, units: 1234 + j, at, keyRemaining: 100_000 - j, accountBalance: 5_000_000 - j, reservationId: "" } as ConsumeRecord;
      batch.push({ id: `${at}-0`, rec });
    }
    await a.write("acme", batch);
  }
}

async function readAll(a: LedgerArchive): Promise<{ ms: number; entries: number }> {
  const t = performance.now();
  let entries = 0;
  for await (const _ of a.read("acme")) entries++;
  return { ms: performance.now() - t, entries };
}

const median = (xs: number[]): number => xs.slice().sort((p, q) => p - q)[xs.length >> 1]!;

const [segments = 2000, per = 20, rounds = 7] = process.argv.slice(2).map(Number);
const base = mkdtempSync(join(tmpdir(), "aisa-compact-bench-"));
try {
  const plain = new LedgerArchive(join(base, "plain"), "p:");
  const compacted = new LedgerArchive(join(base, "compacted"), "p:");
  await fill(plain, segments, per);
  const f = performance.now();
  await fill(compacted, segments, per);
  const fillMs = performance.now() - f;
  const t = performance.now();
  const r = await compacted.compact("acme", { before: `${T0 + segments * HOUR}-0`, minSegments: 24, maxBytes: 2 << 20 });
  const compactMs = performance.now() - t;
  const files = (a: LedgerArchive) => readdirSync(a.accountDir("acme")).length;
  const before: number[] = [];
  const after: number[] = [];
  for (let k = 0; k < rounds; k++) {
    const x = await readAll(plain);
    const y = await readAll(compacted);
    if (x.entries !== segments * per || y.entries !== segments * per) throw new Error(`read ${x.entries} / ${y.entries} entries, wrote ${segments * per}`);
    before.push(x.ms);
    after.push(y.ms);
  }
  console.log(
    JSON.stringify({
      segments,
      per,
      entries: segments * per,
      filesBefore: files(plain),
      filesAfter: files(compacted),
      merged: r.merged,
      compactMs: Math.round(compactMs),
      // The same run's baseline: writing those segments as the archiver does (fsync each).
      fillMs: Math.round(fillMs),
      compactRatio: Number((compactMs / fillMs).toFixed(3)),
      readMsBefore: Math.round(median(before)),
      readMsAfter: Math.round(median(after)),
      readRatio: Number((median(after) / median(before)).toFixed(3)),
      loadavg: loadavg().map((x) => Number(x.toFixed(1))),
    }),
  );
} finally {
  rmSync(base, { recursive: true, force: true });
}
