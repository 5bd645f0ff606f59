// Instructions per durable store-level Consume, counted by valgrind (reproducible on a shared
// machine, unlike CPU time): run it under callgrind with N = 0 and N = 3000 for each build
// (`npm run build` first: it imports ROOT/dist), and divide the difference of the two
// "Collected" totals by N. Each run does 200 warm-up Consumes first, 32 in flight.
//   valgrind --tool=callgrind --callgrind-out-file=/dev/null node bench/consumeCallgrind.mjs ROOT 0
//   valgrind --tool=callgrind --callgrind-out-file=/dev/null node bench/consumeCallgrind.mjs ROOT 3000
// (~2 min each here.)
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
const [root, nArg] = process.argv.slice(2);
const N = Number(nArg);
const { LevelStore } = await import(join(root, "dist/src/store/level/levelStore.js"));
const { hashSecret, maskSecret } = await import(join(root, "dist/src/keys/secrets.js"));
const dir = mkdtempSync(join(tmpdir(), "lean-cg-"));
const store = new LevelStore({ dir });
await store.open(Date.now());
const actor = { actor: "operator", action: "Bench", target: "t" };
await store.adjustBalance("default", 1e15, actor);
const ids = [];
for (let i = 0; i < 64; i++) {
  const id = `key_cg${String(i).padStart(6, "0")}`;
  const secret = `sk-cg-${i}-abcdefghijklmnopqrstuvwxyz0123456789`;
  await store.insertKey({ id, name: "k", accountId: "default", group: "default", status: "enabled", unlimited: true, quotaTotal: 0, expiresAt: null, models: [], ips: [], createdAt: 1, updatedAt: 1, limits: { rpm: 0, tpm: 0, concurrency: 0 }, refill: "none", metadata: {}, secretHash: hashSecret(secret), secretEnc: "c2VhbGVk", masked: maskSecret(secret), prevSecretHash: null, prevSecretExpiresAt: null }, actor);
  ids.push(id);
}
let seq = 0, next = 0;
const run = async (n) => { next = 0; await Promise.all(Array.from({ length: 32 }, async (_, w) => { let k = w; while (next < n) { next++; await store.consume({ requestId: `cg-${seq++}`, keyId: ids[k++ & 63], reservationId: "", model: "gpt-4o-mini", inputTokens: 1200, outputTokens: 300, units: 180, now: 1765000000000 }); } })); };
await run(200); // warm-up, both N
await run(N);
await store.close();
rmSync(dir, { recursive: true, force: true });
