// A fleet sidecar SIGKILLed between a Consume's two calls (the account's charge, then the group
// budget's: redisStore.ts "GROUP") never leaves the group budget under-charged: another sidecar's
// recovery pass applies the debt the dead one left in the account's outbox, once. Two real
// `aisa-authz serve` processes on one real redis-server; the first runs with the test-only pause
// AISA_TEST_GROUP_CHARGE_PAUSE_MS (RedisStoreOptions.groupChargeHook), which holds every Consume
// of a budgeted group between its two calls so the kill lands in the window.
import { expect } from "chai";
import * as grpc from "@grpc/grpc-js";
import { randomBytes } from "node:crypto";
import * as adminPb from "../../src/gen/aisa/v1/admin.js";
import * as authorizerPb from "../../src/gen/aisa/v1/authorizer.js";
import { RefillPeriod } from "../../src/gen/aisa/v1/types.js";
import { generateTokenSecret } from "../../src/keys/secrets.js";
import { startServe, stopProcess, waitExit, type ServeProcess } from "../helpers/proc.js";
import { requireRedis, startRedis, type RedisServer } from "../helpers/redis.js";
import { removeDir, tempDir } from "../helpers/tmp.js";
import { grpcUnary as unary, type AnyClient as Client } from "../helpers/clients.js";

describe("fleet: a sidecar killed between a Consume's account charge and its group budget charge", function () {
  this.timeout(120_000);
  let redis: (RedisServer & { cleanup(): Promise<void> }) | undefined;
  const dirs: string[] = [];
  const sidecars: ServeProcess[] = [];
  const clients: Client[] = [];
  const prefix = `gcfleet${randomBytes(4).toString("hex")}:`;
  const adminToken = generateTokenSecret();
  const masterKey = randomBytes(32).toString("hex");
  const meta = new grpc.Metadata();
  meta.set("authorization", `Bearer ${adminToken}`);
  const env = (extra: NodeJS.ProcessEnv = {}): NodeJS.ProcessEnv => ({
    AISA_STORE: redis!.url,
    AISA_REDIS_PREFIX: prefix,
    AISA_MASTER_KEY: masterKey,
    AISA_ADMIN_TOKEN: adminToken,
    AISA_DENY_UNPRICED_MODELS: "0",
    AISA_REDIS_TIMEOUT_MS: "500",
    AISA_REDIS_LEASE_MS: "0",
    ...extra,
  });
  const start = async (extra: NodeJS.ProcessEnv = {}) => {
    const dir = await tempDir();
    dirs.push(dir);
    const s = await startServe(dir, [], env(extra));
    sidecars.push(s);
    const admin = new adminPb.AdminClient(s.adminAddress, grpc.credentials.createInsecure()) as Client;
    const authz = new authorizerPb.AuthorizerClient(s.dataAddress, grpc.credentials.createInsecure()) as Client;
    clients.push(admin, authz);
    return { s, admin, authz };
  };

  before(function () {
    requireRedis(this);
  });
  after(async () => {
    for (const c of clients) c.close();
    for (const s of sidecars) await stopProcess(s.child);
    await redis?.cleanup();
    for (const d of dirs) await removeDir(d);
  });

  const until = async (what: string, ok: () => Promise<boolean> | boolean, ms = 30_000) => {
    const end = Date.now() + ms;
    while (Date.now() < end) {
      if (await ok()) return;
      await new Promise((r) => setTimeout(r, 100));
    }
    throw new Error(`timed out after ${ms} ms: ${what}`);
  };

  it("SIGKILL in the window: the other sidecar's recovery charges the budget exactly once; the client's retry there is a replay and charges nothing more", async () => {
    redis = await startRedis();
    // A pauses every budgeted Consume between its two calls (a test hook; 10 minutes: it is killed first).
    const a = await start({ AISA_TEST_GROUP_CHARGE_PAUSE_MS: "600000" });
    const b = await start();
    await unary(b.admin, adminPb, "adjustBalance", { accountId: "default", delta: "1000000", reason: "seed" }, meta);
    await unary(b.admin, adminPb, "createGroup", { name: "team", budget: { units: "1000", period: RefillPeriod.REFILL_PERIOD_DAILY } }, meta);
    const k = await unary<adminPb.CreateKeyResponse>(b.admin, adminPb, "createKey", { spec: { name: "team key", group: "team", quota: "100000" } }, meta);
    const outbox = () => Number(redis!.cli(["ZCARD", `${prefix}{a:default}:gob`]).trim());
    const spentOnRedis = () => Number(redis!.cli(["HGET", `${prefix}{gb:team}:b`, "spent"]).trim() || "0");
    const spentSeenBy = async (c: Client) => {
      const g = (await unary<adminPb.ListGroupsResponse>(c, adminPb, "listGroups", {}, meta)).groups.find((x) => x.name === "team")!;
      return Number(g.budgetSpent);
    };

    // A Check through A (once its book has the key from the feed), then the Consume that A holds in the window.
    let reservationId = "";
    await until("A admits the key", async () => {
      const r = await unary<authorizerPb.CheckResponse>(a.authz, authorizerPb, "check", { apiKey: k.secret, estimatedUnits: "100" }).catch(() => undefined);
      reservationId = r?.allowed ? r.reservationId : "";
      return reservationId !== "";
    });
    const consume = (c: Client) => unary<authorizerPb.ConsumeResponse>(c, authorizerPb, "consume", { requestId: "killed-1", target: { $case: "reservationId", value: reservationId }, units: "60" }, undefined, 20_000);
    const held = consume(a.authz).then(
      () => "answered",
      (e: grpc.ServiceError) => `failed: ${e.code}`,
    );
    await until("the account's charge committed: the debt is in its outbox", () => outbox() === 1, 15_000);
    expect(spentOnRedis(), "the budget is not charged yet (A is in the window)").to.equal(0);
    a.s.child.kill("SIGKILL");
    expect(await waitExit(a.s.child)).to.equal("SIGKILL");
    expect(await held).to.match(/^failed: /);

    // B's maintenance step recovers it (grace 5 s, a pass every 2 s).
    await until("B's recovery charged the budget", async () => spentOnRedis() === 60);
    await until("the outbox emptied", () => outbox() === 0);
    await until("B's book shows the charge", async () => (await spentSeenBy(b.admin)) === 60);

    // The client retries through B: the first record, no second charge anywhere.
    const retry = await consume(b.authz);
    expect(retry.replayed).to.equal(true);
    await new Promise((r) => setTimeout(r, 3000)); // at least one more recovery pass
    expect(spentOnRedis()).to.equal(60);
    expect(await spentSeenBy(b.admin)).to.equal(60);
    expect(outbox()).to.equal(0);
  });
});
