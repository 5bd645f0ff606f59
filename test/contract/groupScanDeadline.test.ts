// deleteGroup on the Redis engine scans every account's key records on Redis (a key another
// sidecar just put in the group may not be in this sidecar's book yet). That scan has one overall
// deadline (RedisStoreOptions.groupScanDeadlineMs): a real redis-server stopped with SIGSTOP in
// the middle of it makes the admin call fail with UNAVAILABLE instead of hanging, and after
// SIGCONT the same call goes through; a scan longer than the deadline on a healthy Redis fails
// the same way (nothing written).
import { execFile } from "node:child_process";
import { randomBytes } from "node:crypto";
import { promisify } from "node:util";
import { status } from "@grpc/grpc-js";
import { expect } from "chai";
import { StoreUnavailableError } from "../../src/domain/errors.js";
import { RedisKeys } from "../../src/store/redis/keys.js";
import { RedisStore } from "../../src/store/redis/redisStore.js";
import { toGrpcStatus } from "../../src/transport/grpcErrors.js";
import { requireRedis, startRedis } from "../helpers/redis.js";

const NOW = Date.UTC(2026, 10, 27, 12, 0, 0);
const actor = { actor: "operator", action: "Test", target: "t" };
/** Accounts in Redis's account set that the scan walks (empty hashes: one HSCAN each). */
const FAKE_ACCOUNTS = 20_000;

describe("Redis deleteGroup: the engine scan of every key record has a deadline", function () {
  this.timeout(120_000);
  let redis: Awaited<ReturnType<typeof startRedis>> | undefined;
  const stores: RedisStore[] = [];
  let stopped = false;

  before(async function () {
    requireRedis(this);
    redis = await startRedis();
  });
  afterEach(async () => {
    if (stopped) redis?.signal("SIGCONT");
    stopped = false;
    await Promise.all(stores.splice(0).map((s) => s.close()));
  });
  after(async () => {
    await redis?.cleanup();
  });

  async function open(prefix: string, groupScanDeadlineMs: number): Promise<RedisStore> {
    const s = new RedisStore({ url: redis!.url, prefix, clock: () => NOW, callTimeoutMs: 500, groupScanDeadlineMs });
    stores.push(s);
    await s.open(NOW);
    await s.insertGroup({ name: "team-a", description: "", ratioPpm: 1_000_000, models: [], createdAt: NOW }, actor);
    return s;
  }

  const fakes = Array.from({ length: FAKE_ACCOUNTS }, (_, i) => `fake-${i}`);
  const addFakes = (prefix: string) => redis!.cli(["SADD", new RedisKeys(prefix).g("accts"), ...fakes]);
  const removeFakes = (prefix: string) => redis!.cli(["SREM", new RedisKeys(prefix).g("accts"), ...fakes]);

  /** HSCAN calls Redis has run so far (INFO commandstats), read without blocking this process. */
  async function hscans(): Promise<number> {
    const { stdout } = await promisify(execFile)("redis-cli", ["-h", "127.0.0.1", "-p", String(redis!.port), "INFO", "commandstats"], { timeout: 5000 });
    return Number(/cmdstat_hscan:calls=(\d+)/.exec(stdout)?.[1] ?? 0);
  }

  function expectUnavailable(err: unknown, deadlineMs: number | undefined): void {
    expect(err, String(err)).to.be.instanceOf(StoreUnavailableError);
    expect(toGrpcStatus(err, () => {}).code).to.equal(status.UNAVAILABLE);
    if (deadlineMs !== undefined) expect(String((err as Error).cause)).to.match(new RegExp(`deleteGroup "team-a": the scan of every account's keys on Redis did not finish within ${deadlineMs} ms`));
  }

  it("SIGSTOP redis-server during the scan: deleteGroup fails with UNAVAILABLE (no hang); after SIGCONT it deletes the group", async () => {
    const prefix = `gs${randomBytes(4).toString("hex")}:`;
    const store = await open(prefix, 3000);
    addFakes(prefix);
    const base = await hscans();
    const call = store.deleteGroup("team-a", actor).then(
      () => "deleted",
      (e: unknown) => e,
    );
    let settled = false;
    void call.then(() => (settled = true));
    // Stop Redis once the scan is under way (some HSCANs ran, many remain).
    while (!settled && (await hscans()) < base + 20) await new Promise((r) => setTimeout(r, 2));
    expect(settled, "the scan was still running when Redis was stopped").to.equal(false);
    redis!.signal("SIGSTOP");
    stopped = true;
    // The call answers, by the scan's deadline or a call's; either way UNAVAILABLE.
    expectUnavailable(await call, undefined);
    expect(store.listGroups().map((g) => g.name)).to.include("team-a");
    redis!.signal("SIGCONT");
    stopped = false;
    removeFakes(prefix);
    // Recovery is automatic: the same call goes through once the store serves again.
    let last: unknown;
    for (let i = 0; i < 200; i++) {
      try {
        await store.deleteGroup("team-a", actor);
        last = undefined;
        break;
      } catch (err) {
        last = err;
        await new Promise((r) => setTimeout(r, 50));
      }
    }
    expect(last, String(last)).to.equal(undefined);
    expect(store.listGroups().map((g) => g.name)).to.not.include("team-a");
  });

  it("a scan longer than the deadline on a healthy Redis: UNAVAILABLE naming the deadline, nothing deleted", async () => {
    const prefix = `gs${randomBytes(4).toString("hex")}:`;
    const store = await open(prefix, 1);
    addFakes(prefix);
    const err = await store.deleteGroup("team-a", actor).then(
      () => undefined,
      (e: unknown) => e,
    );
    expectUnavailable(err, 1);
    expect(redis!.cli(["HEXISTS", new RedisKeys(prefix).g("groups"), "team-a"]).trim()).to.equal("1");
  });
});
