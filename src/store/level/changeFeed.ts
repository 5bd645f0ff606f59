// The LevelDB engine's change feed (ChangeFeed, store/types.ts): trivial. The embedded engine
// is one process and the only writer of its directory (LevelDB's lock file refuses a second
// opener), so no other sidecar commits anything: there is nothing to deliver, and the
// position never moves. A shared engine (the Redis fleet) publishes each committed batch's
// BookChanges instead and delivers those of other sidecars.
import type { ChangeBatch, ChangeFeed } from "../types.js";

export class SingleWriterFeed implements ChangeFeed {
  position(): string {
    return "single-writer";
  }

  subscribe(_from: string, _apply: (batch: ChangeBatch) => void): () => void {
    return () => {};
  }
}
