// The LevelDB engine runs the storage contract on real LevelDB in temp dirs.
import { LevelStore } from "../../src/store/level/levelStore.js";
import type { Store } from "../../src/store/types.js";
import { removeDir, tempDir } from "../helpers/tmp.js";
import { runStoreContract } from "./store.contract.js";

runStoreContract("LevelStore", async () => {
  const dirs: string[] = [];
  const clock = () => Date.UTC(2026, 10, 27, 12, 0, 0);
  const openAt = async (dir: string): Promise<Store> => {
    const s = new LevelStore({ dir, clock });
    await s.open(clock());
    return s;
  };
  const where = new WeakMap<Store, string>();
  return {
    async fresh() {
      const dir = await tempDir();
      dirs.push(dir);
      const s = await openAt(dir);
      where.set(s, dir);
      return s;
    },
    async reopen(store) {
      const dir = where.get(store)!;
      await store.close();
      const s = await openAt(dir);
      where.set(s, dir);
      return s;
    },
    async follow(store, apply) {
      return (store as LevelStore).changes.onPublish(apply);
    },
    async cleanup() {
      await Promise.all(dirs.map(removeDir));
    },
  };
});
