// WatchUsage on a fleet (issue 15 item 5): three real `aisa-authz serve` processes on one real
// redis-server; a stream opened on sidecar A reports, exactly, the Checks and Consumes that go
// through B and C (each counted once); C killed → the stream goes on (and counts one sidecar
// fewer); Redis Pub/Sub refused (ACL) → the stream says other sidecars' traffic is missing,
// still shows A's own, and recovers by itself once Pub/Sub is allowed again. Also the bus itself on one
// Redis and on a 3-master Redis Cluster (sharded Pub/Sub), and its measured cost.
import { expect } from "chai";
import * as grpc from "@grpc/grpc-js";
import { randomBytes } from "node:crypto";
import { readFileSync } from "node:fs";
import { createClient } from "redis";
import * as adminPb from "../../src/gen/aisa/v1/admin.js";
import * as authorizerPb from "../../src/gen/aisa/v1/authorizer.js";
import type * as typesPb from "../../src/gen/aisa/v1/types.js";
import { generateTokenSecret } from "../../src/keys/secrets.js";
import { startServe, stopProcess, waitExit, type ServeProcess } from "../helpers/proc.js";
import { requireRedis, startRedis, startRedisCluster, type RedisServer } from "../helpers/redis.js";
import type { LiveSecond } from "../../src/service/usage.js";
import { RedisLiveBus } from "../../src/store/redis/liveBus.js";
import { removeDir, tempDir } from "../helpers/tmp.js";
import { grpcUnary, retryUnavailable as retrying, type AnyClient } from "../helpers/clients.js";

type Client = AnyClient;
const unary = grpcUnary;


const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** A WatchUsage stream and the sums of what it reported since `reset()`. */
class Watch {
  readonly events: adminPb.UsageEvent[] = [];
  error: grpc.ServiceError | undefined;
  readonly stream: grpc.ClientReadableStream<adminPb.UsageEvent>;
  #mark = 0;
  constructor(admin: Client, meta: grpc.Metadata, keyId: string) {
    this.stream = admin.watchUsage(adminPb.WatchUsageRequest.fromPartial({ filter: { keyId } }), meta);
    this.stream.on("data", (e: adminPb.UsageEvent) => this.events.push(e));
    this.stream.on("error", (e: grpc.ServiceError) => (this.error = e));
  }
  reset(): void {
    this.#mark = this.events.length;
  }
  get since(): adminPb.UsageEvent[] {
    return this.events.slice(this.#mark);
  }
  sum(field: "requests" | "consumed" | "units"): number {
    return this.since.reduce((n, e) => n + Number(e.total?.[field] ?? 0), 0);
  }
  last(): adminPb.UsageEvent | undefined {
    return this.events[this.events.length - 1];
  }
  async until(what: string, ok: () => boolean, timeoutMs = 15_000): Promise<void> {
    const end = Date.now() + timeoutMs;
    while (!ok()) {
      if (this.error) throw this.error;
      if (Date.now() > end) throw new Error(`timed out waiting for ${what}; last event ${JSON.stringify(this.last())}`);
      await sleep(100);
    }
  }
}

describe("fleet: WatchUsage on one sidecar shows the whole fleet's traffic", function () {
  this.timeout(180_000);
  let redis: (RedisServer & { cleanup(): Promise<void> }) | undefined;
  const dirs: string[] = [];
  const sidecars: (ServeProcess | undefined)[] = [];
  const prefix = `fw${randomBytes(4).toString("hex")}:`;
  const adminToken = generateTokenSecret();
  const masterKey = randomBytes(32).toString("hex");
  const meta = new grpc.Metadata();
  meta.set("authorization", `Bearer ${adminToken}`);
  let admins: Client[] = [];
  let authz: Client[] = [];
  let watch: Watch | undefined;
  let keyId = "";
  let secret = "";

  before(async function () {
    requireRedis(this);
    redis = await startRedis();
    const env: NodeJS.ProcessEnv = { AISA_STORE: redis.url, AISA_REDIS_PREFIX: prefix, AISA_MASTER_KEY: masterKey, AISA_ADMIN_TOKEN: adminToken, AISA_DENY_UNPRICED_MODELS: "0", AISA_REDIS_TIMEOUT_MS: "500" };
    for (let i = 0; i < 3; i++) {
      dirs[i] = await tempDir();
      sidecars[i] = await startServe(dirs[i]!, [], env);
    }
    admins = sidecars.map((s) => new adminPb.AdminClient(s!.adminAddress, grpc.credentials.createInsecure()) as Client);
    authz = sidecars.map((s) => new authorizerPb.AuthorizerClient(s!.dataAddress, grpc.credentials.createInsecure()) as Client);
    await unary(admins[0]!, adminPb, "adjustBalance", { accountId: "default", delta: "1000000", reason: "seed" }, meta);
    const k = await unary<adminPb.CreateKeyResponse>(admins[0]!, adminPb, "createKey", { spec: { name: "watched", quota: "100000" } }, meta);
    keyId = k.key!.id;
    secret = k.secret;
  });

  after(async () => {
    watch?.stream.cancel();
    for (const c of [...admins, ...authz]) c.close();
    for (const s of sidecars) if (s) await stopProcess(s.child);
    await redis?.cleanup();
    for (const d of dirs) await removeDir(d);
  });

  /** `n` Check → Consume (units 2) pairs: Checks through sidecar `checkVia`, Consumes through `consumeVia`. */
  const traffic = async (n: number, checkVia: number, consumeVia: number, tag: string, apiKey = secret) => {
    for (let i = 0; i < n; i++) {
      // Counted: admitted Checks (a retried UNAVAILABLE one is not admitted) and charged Consumes (a retry, same id, is not charged twice).
      const r = await retrying(() => unary<authorizerPb.CheckResponse>(authz[checkVia]!, authorizerPb, "check", { apiKey, estimatedUnits: "2" }));
      expect(r.allowed).to.equal(true);
      await retrying(() => unary(authz[consumeVia]!, authorizerPb, "consume", { requestId: `${tag}-${i}`, target: { $case: "reservationId", value: r.reservationId }, units: "2" }));
    }
  };

  /** Waits until the stream reached the expected sums, then 3 s more: nothing counted twice or late. */
  const expectExact = async (w: Watch, requests: number, consumed: number) => {
    await w.until(`${requests} requests and ${consumed} consumes`, () => w.sum("requests") >= requests && w.sum("consumed") >= consumed);
    await sleep(3000);
    expect({ requests: w.sum("requests"), consumed: w.sum("consumed"), units: w.sum("units") }).to.deep.equal({ requests, consumed, units: consumed * 2 });
    const byKey = w.since.flatMap((e) => e.byKey).filter((r) => r.id === keyId).reduce((n, r) => n + Number(r.counters!.requests), 0);
    expect(byKey).to.equal(requests);
  };

  /** Calls of a command so far (INFO commandstats). */
  const calls = async (r: { sendCommand(args: string[]): Promise<unknown> }, cmd: string): Promise<number> => {
    const info = String(await r.sendCommand(["INFO", "commandstats"]));
    return Number(new RegExp(`cmdstat_${cmd.replace("|", "\\|")}:calls=(\\d+)`).exec(info)?.[1] ?? 0);
  };
  /** CPU time (user + system, ms) of a process so far (Linux /proc; 10 ms ticks). */
  const cpuMs = (pid: number): number => {
    const f = readFileSync(`/proc/${pid}/stat`, "utf8").split(") ")[1]!.split(" ");
    return (Number(f[11]) + Number(f[12])) * 10;
  };

  it("costs one small command per sidecar per second: polls while nobody watches, one message each while someone does", async () => {
    const r = createClient({ url: redis!.url });
    await r.connect();
    try {
      const windowMs = 6000;
      const pid = sidecars[1]!.child.pid!;
      const [pub0, poll0, cpu0] = [await calls(r, "publish"), await calls(r, "pubsub|numsub"), cpuMs(pid)];
      await sleep(windowMs);
      const [pub1, poll1, cpu1] = [await calls(r, "publish"), await calls(r, "pubsub|numsub"), cpuMs(pid)];
      expect(pub1 - pub0, "nobody watches: nothing published").to.equal(0);
      expect((poll1 - poll0) / (windowMs / 1000)).to.be.within(2, 4); // 3 sidecars, one poll a second each

      // A raw subscriber watches the channel (counting as a watcher): every sidecar publishes.
      let messages = 0;
      let bytes = 0;
      const publishers = new Set<string>(); // a message is "<sidecar id> <second as JSON>"
      const sub = r.duplicate();
      await sub.connect();
      await sub.subscribe(`${prefix}live`, (m: string) => {
        messages++;
        bytes += Buffer.byteLength(m);
        publishers.add(m.slice(0, m.indexOf(" ")));
      });
      // Until each of the three has noticed the watcher (its once-a-second poll) and published.
      const heardBy = Date.now() + 15_000;
      while (publishers.size < 3) {
        if (Date.now() > heardBy) throw new Error(`only ${publishers.size} of 3 sidecars published to a watched channel in 15 s`);
        await sleep(50);
      }
      messages = bytes = 0;
      // The watched window's figures are only reported (and the mean message size, asserted below):
      // half the unwatched window is enough for them.
      const watchedMs = windowMs / 2;
      const [cpu2, poll2] = [cpuMs(pid), await calls(r, "pubsub|numsub")];
      await sleep(watchedMs);
      const [cpu3, poll3] = [cpuMs(pid), await calls(r, "pubsub|numsub")];
      const idleBytes = bytes / messages;
      messages = bytes = 0;
      await traffic(30, 1, 2, "measure");
      await sleep(1500);
      const busyBytes = bytes / Math.max(1, messages);
      await sub.unsubscribe();
      await sub.close();
      console.log(
        `      live bus cost: idle fleet ${((poll1 - poll0) / 3 / (windowMs / 1000)).toFixed(2)} NUMSUB/s per sidecar, 0 publishes; ` +
          `watched: ${((poll3 - poll2) / 3 / (watchedMs / 1000)).toFixed(2)} NUMSUB/s and 1 PUBLISH/s per sidecar, ${idleBytes.toFixed(0)} B per idle second, ${busyBytes.toFixed(0)} B per second with traffic (1 key); ` +
          `sidecar B CPU ${((cpu1 - cpu0) / (windowMs / 1000)).toFixed(1)} ms/s unwatched idle, ${((cpu3 - cpu2) / (watchedMs / 1000)).toFixed(1)} ms/s watched idle (10 ms ticks)`,
      );
      expect(idleBytes).to.be.below(200);
    } finally {
      await r.close();
    }
  });

  it("reports the Checks and Consumes that go through B and C, each once", async () => {
    watch = new Watch(admins[0]!, meta, keyId);
    // B and C start publishing within a second or two of the stream opening.
    await watch.until("all three sidecars heard", () => watch!.last()?.fleet?.sidecars === 3);
    expect(watch.last()!.fleet!.othersMissing).to.equal(false);
    watch.reset();
    await Promise.all([traffic(20, 1, 2, "bc"), traffic(15, 2, 1, "cb")]);
    await expectExact(watch, 35, 35);
    // The remaining quota of the key charged elsewhere is reported too (the shared store's figure).
    const rem = watch.since.flatMap((e) => e.remaining).filter((r) => r.keyId === keyId);
    expect(rem.length).to.be.greaterThan(0);
    const k = await unary<typesPb.Key>(admins[1]!, adminPb, "getKey", { id: keyId }, meta);
    expect(rem[rem.length - 1]!.remaining).to.equal(k.quota!.remaining);
  });

  it("counts A's own traffic once too (A's own messages are not merged again)", async () => {
    watch!.reset();
    await traffic(10, 0, 0, "aa");
    await expectExact(watch!, 10, 10);
  });

  it("an account token's stream on A shows its own account's traffic through B, never another tenant's", async () => {
    await unary(admins[0]!, adminPb, "createAccount", { id: "tenant-x", name: "Tenant X", initialBalance: "100000" }, meta);
    const tk = await unary<adminPb.CreateTokenResponse>(admins[0]!, adminPb, "createToken", { name: "tenant-x watch", accountId: "tenant-x", readOnly: true }, meta);
    const xKey = await unary<adminPb.CreateKeyResponse>(admins[0]!, adminPb, "createKey", { spec: { name: "tenant key", quota: "100000" }, accountId: "tenant-x" }, meta);
    const tenantMeta = new grpc.Metadata();
    tenantMeta.set("authorization", `Bearer ${tk.secret}`);
    const tw = new Watch(admins[0]!, tenantMeta, "");
    try {
      await tw.until("the fleet heard", () => (tw.last()?.fleet?.sidecars ?? 0) >= 2);
      tw.reset();
      // B carries both tenants' traffic: the default account's watched key and tenant-x's key.
      await Promise.all([traffic(5, 1, 1, "other"), traffic(4, 1, 2, "tenant", xKey.secret)]);
      await tw.until("tenant-x's 4 requests", () => tw.sum("requests") >= 4 && tw.sum("consumed") >= 4);
      await sleep(3000);
      expect({ requests: tw.sum("requests"), consumed: tw.sum("consumed") }).to.deep.equal({ requests: 4, consumed: 4 });
      const keyIds = new Set(tw.since.flatMap((e) => [...e.byKey.map((r) => r.id), ...e.remaining.map((r) => r.keyId), ...e.keyEvents.map((k) => k.keyId)]));
      expect(keyIds.has(keyId), "the other tenant's key leaked into the stream").to.equal(false);
      expect([...keyIds]).to.deep.equal([xKey.key!.id]);
      expect(tw.error).to.equal(undefined);
    } finally {
      tw.stream.cancel();
    }
  });

  it("goes on when sidecar C is killed: B's traffic still exact, one sidecar fewer", async () => {
    sidecars[2]!.child.kill("SIGKILL");
    await waitExit(sidecars[2]!.child);
    sidecars[2] = undefined;
    await watch!.until("C no longer counted", () => watch!.last()?.fleet?.sidecars === 2);
    watch!.reset();
    await traffic(12, 1, 1, "b-after");
    await expectExact(watch!, 12, 12);
    expect(watch!.error).to.equal(undefined);
  });

  it("Pub/Sub refused: the stream says others are missing and still shows A's own traffic; recovers by itself", async () => {
    const r = createClient({ url: redis!.url });
    await r.connect();
    try {
      // Channels denied to the default user (Redis 7 disconnects its subscribers); keys still allowed.
      await r.sendCommand(["ACL", "SETUSER", "default", "resetchannels"]);
      await watch!.until("others_missing", () => watch!.last()?.fleet?.othersMissing === true);
      watch!.reset();
      await traffic(5, 0, 0, "a-alone");
      await traffic(4, 1, 1, "b-lost");
      await watch!.until("A's own traffic", () => watch!.sum("requests") >= 5).catch((err) => {
        console.log(JSON.stringify(watch!.since.map((e) => [e.total?.requests, e.fleet])), sidecars[0]!.stderr.join("").slice(-3000));
        throw err;
      });
      await sleep(2500);
      expect(watch!.sum("requests")).to.equal(5); // B's 4 were not heard: said so by others_missing
      expect(watch!.since.every((e) => e.fleet?.othersMissing === true)).to.equal(true);

      await r.sendCommand(["ACL", "SETUSER", "default", "allchannels"]);
      await watch!.until("recovered", () => watch!.last()?.fleet?.othersMissing === false && watch!.last()?.fleet?.sidecars === 2, 20_000);
      watch!.reset();
      await traffic(6, 1, 1, "b-back");
      await expectExact(watch!, 6, 6);
    } finally {
      await r.sendCommand(["ACL", "SETUSER", "default", "allchannels"]).catch(() => {});
      await r.close();
    }
  });
});

describe("fleet: the live bus on one Redis and on a Redis Cluster (sharded Pub/Sub)", function () {
  this.timeout(120_000);
  const second = (n: number): LiveSecond => ({ v: 1, from: n, at: n + 1000, t: [["k", "a", "g", "m", { requests: n, denied: 0, denies: {}, inputTokens: 0, outputTokens: 0, units: 0, consumed: 0 }]], c: [], a: [], e: [] });

  for (const kind of ["redis", "cluster"] as const) {
    it(`${kind}: a bus publishes only once another watches; the watcher gets the others' seconds, never its own`, async function () {
      requireRedis(this);
      const server = kind === "redis" ? await startRedis() : await startRedisCluster(3);
      const buses: RedisLiveBus[] = [];
      try {
        const url = server.url;
        const prefix = `bus${randomBytes(3).toString("hex")}:`;
        const a = new RedisLiveBus({ url, prefix, id: "A", onError: () => {} });
        const b = new RedisLiveBus({ url, prefix, id: "B", onError: () => {} });
        buses.push(a, b);
        const until = async (what: string, ok: () => boolean) => {
          for (let i = 0; !ok(); i++) {
            if (i > 100) throw new Error(`timed out: ${what}`);
            await sleep(50);
          }
        };
        await until("connected", () => a.healthy && b.healthy);
        b.poll();
        await sleep(200);
        expect(b.wanted).to.equal(false);
        const got: [LiveSecond, string][] = [];
        a.subscribe((s, sender) => got.push([s, sender]));
        await until("B sees a watcher", () => (b.poll(), b.wanted));
        a.poll();
        await sleep(200);
        expect(a.wanted, "A's own subscription does not count").to.equal(false);
        b.publish(second(7));
        a.publish(second(8)); // A's own: dropped by A
        await until("B's second at A", () => got.length > 0);
        await sleep(300);
        expect(got.map(([s, sender]) => [s.t[0]![4].requests, sender])).to.deep.equal([[7, "B"]]);
      } finally {
        for (const bus of buses) await bus.close();
        await server.cleanup();
      }
    });
  }
});
