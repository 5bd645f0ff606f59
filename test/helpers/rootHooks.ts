// Mocha root hooks (.mocharc "require"): once the run ends, the temp dirs helpers kept for it
// (tmp.ts removeAtEnd) are removed.
import { removeDirsLeftForTheEnd } from "./tmp.js";

export const mochaHooks = {
  async afterAll(): Promise<void> {
    await removeDirsLeftForTheEnd();
  },
};
