// The durable-Consume benches' store setup: the default account funded for any run, and 64
// unlimited keys to spread Consumes over (consumeTail.ts, consumeReplay.ts).
import type { LevelStore } from "../../src/store/level/levelStore.js";
import type { makeKey as MakeKey } from "../../test/contract/store.contract.js";

/** Funds "default" and adds 64 unlimited keys to `store` (open); their ids. `makeKey`: the checkout's own (consumeTail's --roots). */
export async function fundAndAddKeys(store: Pick<LevelStore, "adjustBalance" | "insertKey">, makeKey: typeof MakeKey): Promise<string[]> {
  const actor = { actor: "operator", action: "Bench", target: "t" };
  await store.adjustBalance("default", 1e15, actor);
  const keys: string[] = [];
  for (let i = 0; i < 64; i++) {
    const k = makeKey({ unlimited: true, quotaTotal: 0 });
    await store.insertKey(k.record, actor);
    keys.push(k.record.id);
  }
  return keys;
}
