// Correctness check for the Consume fast path (LevelStore keeps "not in the ledger" answers
// of findConsume for the consume() that follows): many actors doing what ConsumeService does
// (findConsume, then consume) on few request ids with random delays, plus the interleavings
// that must not be cached (a read in flight while a consume of the same id commits). Every
// request id must be charged exactly once, before and after a restart.
// Usage: node --import tsx bench/consumeRaceCheck.ts   (exits 1 on a double or missing charge)
// Candidate for test/contract (owned by the store's authors).
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { DEFAULT_ACCOUNT, DEFAULT_GROUP, type KeyRecord } from "../src/domain/types.js";
import { generateId, generateKeySecret, hashSecret } from "../src/keys/secrets.js";
import { LevelStore } from "../src/store/level/levelStore.js";

const UNITS = 7;

async function main(): Promise<void> {
  const dir = await mkdtemp(join(tmpdir(), "aisa-race-"));
  let store = new LevelStore({ dir });
  const failures: string[] = [];
  try {
    await store.open(Date.now());
    const audit = { actor: "check", action: "seed", target: "*" };
    await store.adjustBalance(DEFAULT_ACCOUNT, 1e12, audit);
    const now = Date.now();
    const keyId = generateId("key_");
    const rec: KeyRecord = {
      id: keyId,
      name: "race",
      accountId: DEFAULT_ACCOUNT,
      group: DEFAULT_GROUP,
      status: "enabled",
      unlimited: false,
      quotaTotal: 1e9,
      expiresAt: null,
      models: [],
      ips: [],
      createdAt: now,
      updatedAt: now,
      limits: { rpm: 0, tpm: 0, concurrency: 0 },
      refill: "none",
      metadata: {},
      secretHash: hashSecret(generateKeySecret()),
      secretEnc: "",
      masked: "sk-…",
      prevSecretHash: null,
      prevSecretExpiresAt: null,
    };
    await store.importKeys([rec], audit);
    const input = (requestId: string) => ({ requestId, keyId, reservationId: "", model: "m", inputTokens: 1, outputTokens: 1, units: UNITS, now: Date.now() });
    const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
    const used = () => store.index.used(store.index.slotOf(keyId));

    // 1. Service-like actors: findConsume, then consume; 10 actors per request id.
    const IDS = 50;
    let charged = 0;
    await Promise.all(
      Array.from({ length: IDS * 10 }, async (_, a) => {
        const rid = `r${a % IDS}`;
        await sleep(Math.random() * 30);
        if (await store.findConsume(rid)) return;
        if (Math.random() < 0.5) await sleep(Math.random() * 10);
        if (!(await store.consume(input(rid))).replayed) charged++;
      }),
    );
    if (charged !== IDS || used() !== IDS * UNITS) failures.push(`actors: ${charged} charges for ${IDS} ids, used ${used()} (expected ${IDS * UNITS})`);

    // 2. Cached "not found", consume, then a retry after completion: a replay.
    await store.findConsume("seq");
    const c1 = await store.consume(input("seq"));
    const c2 = await store.consume(input("seq"));
    if (c1.replayed || !c2.replayed) failures.push(`sequential: first replayed=${c1.replayed}, retry replayed=${c2.replayed}`);

    // 3. A read in flight while a consume of the same id commits must not be kept.
    const read = store.findConsume("overlap");
    await store.consume(input("overlap"));
    await read;
    const again = await store.consume(input("overlap"));
    if (!again.replayed) failures.push("overlap: a read that overlapped a commit was kept; the retry charged again");

    const expected = (IDS + 2) * UNITS;
    if (used() !== expected) failures.push(`total used ${used()}, expected ${expected}`);
    await store.close();
    store = new LevelStore({ dir });
    await store.open(Date.now());
    if (used() !== expected) failures.push(`after restart: used ${used()}, expected ${expected}`);
  } finally {
    await store.close();
    await rm(dir, { recursive: true, force: true });
  }
  if (failures.length) {
    process.stderr.write(`FAIL\n${failures.join("\n")}\n`);
    process.exit(1);
  }
  process.stdout.write("ok: every request id charged exactly once\n");
}

main().catch((err) => {
  process.stderr.write(`${err?.stack ?? err}\n`);
  process.exit(1);
});
