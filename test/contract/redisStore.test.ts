// The Redis engine (fleet mode, issue 15) runs the storage contract unchanged against one Redis
// and against a 3-master Redis Cluster the test creates, each test in its own key prefix.
// Peers are second RedisStores on the same Redis and prefix (another sidecar); `follow` is a
// peer's subscription to the change feed.
import { randomBytes } from "node:crypto";
import { RedisStore } from "../../src/store/redis/redisStore.js";
import { cmpId } from "../../src/store/redis/feed.js";
import type { ChangeBatch, Store } from "../../src/store/types.js";
import { requireRedis, startRedis, startRedisCluster } from "../helpers/redis.js";
import { runStoreContract, type StoreHarness } from "./store.contract.js";

export const NOW = Date.UTC(2026, 10, 27, 12, 0, 0);

/** A harness on the Redis at `url()`: every fresh store gets its own prefix. */
export function redisHarness(url: () => string): () => Promise<StoreHarness> {
  return async () => {
    const clock = () => NOW;
    const open: RedisStore[] = [];
    const prefixOf = new WeakMap<Store, string>();
    const openAt = async (prefix: string): Promise<RedisStore> => {
      const s = new RedisStore({ url: url(), prefix, clock, callTimeoutMs: 2000 });
      open.push(s);
      await s.open(clock());
      prefixOf.set(s, prefix);
      return s;
    };
    const followers = new Map<Store, { last: string }>();
    return {
      fresh: () => openAt(`t${randomBytes(6).toString("hex")}:`),
      async reopen(store) {
        await store.close();
        return openAt(prefixOf.get(store)!);
      },
      peer: (store) => openAt(prefixOf.get(store)!),
      async follow(store, apply: (batch: ChangeBatch) => void) {
        const peer = await openAt(prefixOf.get(store)!);
        const seen = { last: peer.changes.position() };
        followers.set(store, seen);
        const stop = peer.changes.subscribe(seen.last, (b) => {
          seen.last = b.position;
          apply(b);
        });
        return () => {
          stop();
          void peer.close();
        };
      },
      async caughtUp(store) {
        const seen = followers.get(store);
        if (!seen) return;
        const want = store.changes.position();
        for (let i = 0; i < 300 && cmpId(seen.last, want) < 0; i++) await new Promise((r) => setTimeout(r, 10));
      },
      async cleanup() {
        await Promise.all(open.map((s) => s.close()));
      },
    };
  };
}

describe("RedisStore on one Redis", function () {
  this.timeout(30_000);
  let server: Awaited<ReturnType<typeof startRedis>> | undefined;
  before(async function () {
    requireRedis(this);
    server = await startRedis();
  });
  after(async () => {
    await server?.cleanup();
  });
  runStoreContract("RedisStore, one Redis", redisHarness(() => server!.url));
});

describe("RedisStore on a 3-master Redis Cluster", function () {
  this.timeout(60_000);
  let cluster: Awaited<ReturnType<typeof startRedisCluster>> | undefined;
  before(async function () {
    requireRedis(this);
    cluster = await startRedisCluster();
  });
  after(async () => {
    await cluster?.cleanup();
  });
  runStoreContract("RedisStore, Redis Cluster", redisHarness(() => cluster!.url));
});
