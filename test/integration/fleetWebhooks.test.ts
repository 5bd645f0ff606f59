// Webhook endpoints on a fleet (issue 15): two real sidecars on one real redis-server share one
// endpoint set through the store — configured through A, listed, test-sent and deleted through B;
// an existing <data>/webhooks.json moves its endpoints into the shared set on the first start
// (and a removed one stays removed across a restart). The embedded store keeps them in the file
// (test/integration/webhooks.test.ts).
import { randomBytes } from "node:crypto";
import { readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { expect } from "chai";
import type * as adminPb from "../../src/gen/aisa/v1/admin.js";
import { parseStoreUrl } from "../../src/config/storeUrl.js";
import { signWebhook } from "../../src/service/webhooks.js";
import { RedisKeys } from "../../src/store/redis/keys.js";
import { requireRedis, startRedis } from "../helpers/redis.js";
import { call, removeDir, startTestSidecar, tempDir, type TestSidecar } from "../helpers/sidecar.js";
import { startWebhookReceiver, until, type Post, type WebhookReceiver } from "../helpers/webhookReceiver.js";

describe("fleet: webhook endpoints shared through the Redis store", function () {
  this.timeout(60_000);
  let redis: Awaited<ReturnType<typeof startRedis>> | undefined;
  let receiver: WebhookReceiver | undefined;
  const posts = (): Post[] => receiver?.posts ?? [];
  let port = 0;
  const dirs: string[] = [];
  const sidecars: TestSidecar[] = [];
  const prefix = `wh${randomBytes(4).toString("hex")}:`;
  const masterKey = randomBytes(32).toString("hex");
  const adminToken = randomBytes(24).toString("hex");

  before(async function () {
    requireRedis(this);
    redis = await startRedis();
    receiver = await startWebhookReceiver();
    port = receiver.port;
  });
  after(async () => {
    await Promise.all(sidecars.map((s) => s.close().catch(() => {})));
    await receiver?.close();
    await redis?.cleanup();
    await Promise.all(dirs.map((d) => removeDir(d)));
  });

  async function start(dir: string): Promise<TestSidecar> {
    const s = await startTestSidecar({ dataDir: dir, store: parseStoreUrl("--store", redis!.url), redisPrefix: prefix, masterKey, adminToken, redisTimeoutMs: 2000 });
    sidecars.push(s);
    return s;
  }
  const admin = <Res>(s: TestSidecar, method: string, req: unknown) => call<unknown, Res>(s.admin, method, req, s.meta());
  const listed = async (s: TestSidecar) => (await admin<adminPb.ListWebhooksResponse>(s, "listWebhooks", {})).webhooks.map((w) => w.id).sort();

  it("configured through A, listed, test-sent and deleted through B; A's old webhooks.json endpoint joins the fleet's set once and stays deleted", async () => {
    const dirA = await tempDir();
    const dirB = await tempDir();
    dirs.push(dirA, dirB);
    // A sidecar that had its own endpoint before the fleet shared them.
    const old = { id: "whk_oldendpoint", url: `http://127.0.0.1:${port}/old`, secret: "whsec_old", events: [], thresholds: [50, 80, 100], balanceLow: 0, createdAt: 1 };
    await writeFile(join(dirA, "webhooks.json"), JSON.stringify({ endpoints: [old], deliveries: [], dropped: 0 }), { mode: 0o600 });
    let a = await start(dirA);
    const b = await start(dirB);
    expect(await listed(b), "B lists A's migrated endpoint").to.deep.equal([old.id]);

    const created = await admin<adminPb.CreateWebhookResponse>(a, "createWebhook", { url: `http://127.0.0.1:${port}/new` });
    const id = created.webhook!.id;
    expect(await listed(b), "B lists the endpoint created through A").to.deep.equal([id, old.id].sort());

    // B sends the test event itself, signed with the secret A's create returned.
    await admin(b, "testWebhook", { id });
    await until("the ping through B", () => posts().some((p) => p.path === "/new" && p.type === "ping"));
    const ping = posts().find((p) => p.path === "/new" && p.type === "ping")!;
    expect(ping.signature).to.equal(signWebhook(created.secret, Number(ping.timestamp), ping.body));

    await admin(b, "deleteWebhook", { id: old.id });
    expect(await listed(a), "A no longer lists what B deleted").to.deep.equal([id]);
    // The endpoints are the store's now; A's file keeps its queue only, so a restart brings nothing back.
    const file = JSON.parse(await readFile(join(dirA, "webhooks.json"), "utf8")) as { endpoints?: unknown; endpointsShared?: boolean };
    expect(file).to.deep.include({ endpointsShared: true });
    expect(file.endpoints).to.equal(undefined);
    await a.close();
    sidecars.splice(sidecars.indexOf(a), 1);
    a = await start(dirA);
    expect(await listed(a)).to.deep.equal([id]);
    expect(await listed(b)).to.deep.equal([id]);
    // In Redis the endpoints (and their signing secrets) are sealed with the master key.
    const stored = redis!.cli(["HGET", new RedisKeys(prefix).g("meta"), "m:webhookEndpoints"]);
    expect(stored).to.include("sealed");
    expect(stored).to.not.include("whsec_");
  });
});
