// The store of the in-process Check benches (checkAlloc.ts, checkPromoted.ts): a LevelStore in
// `dir` with the default account funded, BENCH_MODEL priced and one unlimited key.
import { DEFAULT_ACCOUNT } from "../../src/domain/types.js";
import { LevelStore } from "../../src/store/level/levelStore.js";
import { makeKey } from "../../test/contract/store.contract.js";
import { BENCH_MODEL } from "./payloads.js";

export async function openCheckStore(dir: string): Promise<{ store: LevelStore; secret: string }> {
  const store = new LevelStore({ dir });
  await store.open(Date.now());
  const audit = { actor: "bench", action: "seed", target: "*" };
  await store.adjustBalance(DEFAULT_ACCOUNT, 1e15, audit);
  await store.setPrice({ model: BENCH_MODEL, inputPerMillion: 75_000, outputPerMillion: 300_000, perRequest: 0 }, audit);
  const key = makeKey({ unlimited: true, quotaTotal: 0 });
  await store.insertKey(key.record, audit);
  return { store, secret: key.secret };
}
