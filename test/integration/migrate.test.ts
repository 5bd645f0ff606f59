// aisa-authz migrate (issue 15, item 7): a real LevelDB store seeded through a real `serve` and
// the admin API (keys incl. a rotated and a deleted one, a group with a budget, prices, tokens,
// Consumes, balance moves) is copied by the real bin to a real redis-server; a sidecar started on
// Redis with the same master key and admin token answers every admin read as the source did,
// reveals the same secret, admits the same Check and answers a replayed Consume with the first
// answer (not charged twice). Then back to a new data dir, compared again. Refusals: a non-empty
// target (named) unless --force, a source a sidecar holds, bad flags (exit 2, naming the flag).
// The webhook endpoints (plain in the source's webhooks.json, sealed on Redis) and the sent
// threshold-alert marks come along both ways: the target's sidecar lists the same endpoint and
// signs a test event with the secret its create returned.
import { expect } from "chai";
import * as grpc from "@grpc/grpc-js";
import { randomBytes } from "node:crypto";
import { existsSync } from "node:fs";
import { readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import * as adminPb from "../../src/gen/aisa/v1/admin.js";
import * as authorizerPb from "../../src/gen/aisa/v1/authorizer.js";
import { generateTokenSecret, SecretBox } from "../../src/keys/secrets.js";
import { signWebhook } from "../../src/service/webhooks.js";
import { runBin, startServe, stopProcess, type ServeProcess } from "../helpers/proc.js";
import { requireRedis, startRedis, startRedisCluster, type RedisServer } from "../helpers/redis.js";
import { removeDir, tempDir } from "../helpers/tmp.js";
import { startWebhookReceiver, until, type Post, type WebhookReceiver } from "../helpers/webhookReceiver.js";
import { LevelPortable } from "../../src/store/level/portable.js";
import { WEBHOOK_META, type StateChunk } from "../../src/store/portable.js";

/** Everything a data directory holds, by kind, as the exporter reads it (webhook endpoints opened: sealing is randomised). */
async function exported(dir: string, masterKey: string): Promise<Record<string, unknown[]>> {
  const key = Buffer.from(masterKey, "hex");
  const p = await LevelPortable.openSource(dir, async () => key);
  const out: Record<string, unknown[]> = {};
  try {
    for await (const c of p.exportState() as AsyncIterable<StateChunk>) {
      const items = c.kind === "webhooks" ? c.items.map((w) => JSON.parse(new SecretBox(key).open(w.sealed, WEBHOOK_META)) as unknown) : c.items;
      (out[c.kind] ??= []).push(...items);
    }
  } finally {
    await p.close();
  }
  return out;
}

type Client = grpc.Client & Record<string, any>;

/** Sidecars on Redis: a Redis call deadline for a loaded test machine (the default 50 ms answers UNAVAILABLE there now and then). */
const LOADED = ["--redis-timeout-ms", "2000"];

function unary<Res>(client: Client, mod: any, method: string, req: unknown, meta = new grpc.Metadata()): Promise<Res> {
  const msg = mod[`${method[0]!.toUpperCase()}${method.slice(1)}Request`].fromPartial(req);
  return new Promise((resolve, reject) => client[method](msg, meta, { deadline: Date.now() + 10_000 }, (e: Error | null, r: Res) => (e ? reject(e) : resolve(r))));
}

describe("migrate: LevelDB → Redis → LevelDB", function () {
  this.timeout(180_000);
  let redis: (RedisServer & { cleanup(): Promise<void> }) | undefined;
  const dirs: string[] = [];
  const procs: ServeProcess[] = [];
  const prefix = `mig${randomBytes(3).toString("hex")}:`;
  const masterKey = randomBytes(32).toString("hex");
  const adminToken = generateTokenSecret();
  const meta = new grpc.Metadata();
  meta.set("authorization", `Bearer ${adminToken}`);
  const env = (extra: NodeJS.ProcessEnv = {}): NodeJS.ProcessEnv => ({ AISA_MASTER_KEY: masterKey, AISA_ADMIN_TOKEN: adminToken, AISA_DENY_UNPRICED_MODELS: "0", AISA_REDIS_PREFIX: prefix, ...extra });
  let source = "";
  let receiver: WebhookReceiver | undefined;
  const posts = (): Post[] => receiver?.posts ?? [];
  const hook = { id: "", secret: "", url: "" };
  const seeded: { secret: string; keyId: string; rotatedId: string; rotatedOld: string; rotatedNew: string; deletedId: string; unlimitedSecret: string; consume: authorizerPb.ConsumeResponse | undefined; first: Record<string, unknown> } = {
    secret: "",
    keyId: "",
    rotatedId: "",
    rotatedOld: "",
    rotatedNew: "",
    deletedId: "",
    unlimitedSecret: "",
    consume: undefined,
    first: {},
  };

  async function serve(dir: string, args: string[] = [], extra: NodeJS.ProcessEnv = {}): Promise<{ p: ServeProcess; admin: Client; authz: Client; stop(): Promise<void> }> {
    const p = await startServe(dir, args, env(extra));
    procs.push(p);
    const admin = new adminPb.AdminClient(p.adminAddress, grpc.credentials.createInsecure()) as Client;
    const authz = new authorizerPb.AuthorizerClient(p.dataAddress, grpc.credentials.createInsecure()) as Client;
    return {
      p,
      admin,
      authz,
      async stop() {
        admin.close();
        authz.close();
        await stopProcess(p.child);
      },
    };
  }

  /** Everything a client can read, normalised for comparison. */
  async function snapshot(admin: Client): Promise<Record<string, unknown>> {
    const a = (m: string, req: unknown) => unary<any>(admin, adminPb, m, req, meta);
    const keys = await a("listKeys", { pageSize: 1000 });
    const byId: Record<string, unknown> = {};
    for (const k of keys.keys) byId[k.id] = await a("getKey", { id: k.id });
    const audit = await a("listAudit", { pageSize: 1000 });
    const since = new Date(Date.now() - 86_400_000);
    const usage: Record<string, unknown> = {};
    for (const groupBy of [1, 2, 3, 4]) usage[groupBy] = await a("queryUsage", { groupBy, granularity: adminPb.Granularity.GRANULARITY_HOUR, since });
    return {
      keys: keys.keys,
      byId,
      accounts: (await a("listAccounts", {})).accounts,
      groups: (await a("listGroups", {})).groups,
      prices: (await a("listPrices", {})).prices,
      tokens: (await a("listTokens", {})).tokens,
      audit: audit.entries,
      usage,
    };
  }

  let sourceSnapshot: Record<string, unknown> = {};

  /** The sidecar's endpoints as listed (delivery counts left out: the queue is each sidecar's own). */
  async function hooks(admin: Client): Promise<unknown[]> {
    const r = await unary<adminPb.ListWebhooksResponse>(admin, adminPb, "listWebhooks", {}, meta);
    return r.webhooks.map((w) => ({ id: w.id, url: w.url, events: w.events, thresholds: w.thresholds, balanceLow: w.balanceLow, createdAt: w.createdAt }));
  }

  /** A test event sent through this sidecar arrives signed with the secret the source's create returned. */
  async function signsWithTheSameSecret(admin: Client, tag: string): Promise<void> {
    const before = posts().length;
    await unary(admin, adminPb, "testWebhook", { id: hook.id }, meta);
    await until(`the ping (${tag})`, () => posts().slice(before).some((p) => p.type === "ping"));
    const ping = posts().slice(before).find((p) => p.type === "ping")!;
    expect(ping.path, tag).to.equal("/hook");
    expect(ping.signature, tag).to.equal(signWebhook(hook.secret, Number(ping.timestamp), ping.body));
  }

  before(async function () {
    requireRedis(this);
    receiver = await startWebhookReceiver();
    hook.url = `http://127.0.0.1:${receiver.port}/hook`;
    redis = await startRedis();
    source = await tempDir();
    dirs.push(source);
    const s = await serve(source);
    const a = <T>(m: string, req: unknown) => unary<T>(s.admin, adminPb, m, req, meta);
    await a("adjustBalance", { accountId: "default", delta: "100000", reason: "seed" });
    await a("createAccount", { id: "acme", name: "Acme", initialBalance: "5000" });
    await a("adjustBalance", { accountId: "acme", delta: "-700", reason: "refund" });
    await a("createGroup", { name: "capped", description: "with a budget", priceRatio: "1", budget: { units: "100000", period: 3 } });
    await a("setPrice", { price: { model: "gpt-x", inputPerMillion: "1000000", outputPerMillion: "2000000", perRequest: "1" } });
    await a("createToken", { name: "ops", accountId: "" });
    // An endpoint whose 1 % threshold the Consumes below cross: its alert mark is set in the store.
    const created = await a<adminPb.CreateWebhookResponse>("createWebhook", { url: hook.url, events: ["quota.threshold", "key.deleted"], thresholds: [1] });
    hook.id = created.webhook!.id;
    hook.secret = created.secret;
    const k = await a<adminPb.CreateKeyResponse>("createKey", { spec: { name: "main", quota: "1000", group: "capped" }, accountId: "acme" });
    seeded.secret = k.secret;
    seeded.keyId = k.key!.id;
    const u = await a<adminPb.CreateKeyResponse>("createKey", { spec: { name: "unlimited", unlimited: true }, accountId: "" });
    seeded.unlimitedSecret = u.secret;
    const r = await a<adminPb.CreateKeyResponse>("createKey", { spec: { name: "rotated", quota: "50" }, accountId: "acme" });
    seeded.rotatedId = r.key!.id;
    seeded.rotatedOld = r.secret;
    seeded.rotatedNew = (await a<adminPb.RotateKeyResponse>("rotateKey", { id: r.key!.id, graceSeconds: "3600" })).secret;
    const d = await a<adminPb.CreateKeyResponse>("createKey", { spec: { name: "deleted", quota: "10" }, accountId: "acme" });
    seeded.deletedId = d.key!.id;
    // Consumes: through a reservation (Check first), by key id, and one on the key deleted next.
    for (let i = 0; i < 5; i++) {
      const c = await unary<authorizerPb.CheckResponse>(s.authz, authorizerPb, "check", { apiKey: seeded.secret, estimatedUnits: "3" });
      expect(c.allowed).to.equal(true);
      const req = { requestId: `req-${i}`, target: { $case: "reservationId", value: c.reservationId }, model: "gpt-x", inputTokens: "10", outputTokens: "5", units: String(3 + i) };
      const res = await unary<authorizerPb.ConsumeResponse>(s.authz, authorizerPb, "consume", req);
      if (i === 0) {
        seeded.consume = res;
        seeded.first = req;
      }
    }
    await unary(s.authz, authorizerPb, "consume", { requestId: "req-unl", target: { $case: "apiKey", value: seeded.unlimitedSecret }, model: "gpt-x", units: "11" });
    await unary(s.authz, authorizerPb, "consume", { requestId: "req-del", target: { $case: "keyId", value: seeded.deletedId }, units: "4" });
    await a("deleteKeys", { ids: [seeded.deletedId] });
    await until("the quota.threshold alert", () => posts().some((p) => p.type === "quota.threshold"));
    sourceSnapshot = await snapshot(s.admin);
    sourceSnapshot["webhooks"] = await hooks(s.admin);
    expect(sourceSnapshot["webhooks"]).to.have.length(1);
    // The comparison compares something: every kind is there.
    const snap = sourceSnapshot as any;
    expect(snap.keys).to.have.length(3);
    expect(snap.accounts).to.have.length(2);
    expect(snap.groups).to.have.length(2);
    expect(snap.prices).to.have.length(1);
    expect(snap.tokens).to.have.length(1);
    expect(snap.audit.length).to.be.greaterThan(5);
    for (const g of [1, 2, 3, 4]) expect(snap.usage[g].rows.length, `usage by ${g}`).to.be.greaterThan(0);
    expect(Number(snap.usage[2].total.units)).to.equal(3 + 4 + 5 + 6 + 7 + 11 + 4);
    await s.stop();
  });

  after(async () => {
    for (const p of procs) await stopProcess(p.child).catch(() => {});
    await redis?.cleanup();
    await receiver?.close();
    for (const d of dirs) await removeDir(d);
  });

  it("refuses bad flags with exit 2, naming the flag", async () => {
    const cases: [string[], RegExp][] = [
      [["migrate", "--to", redis!.url], /--from-data/],
      [["migrate", "--from-data", source], /--to-data|--to\b/],
      [["migrate", "--from-data", source, "--to", "http://x:1"], /--to/],
      [["migrate", "--from-data", source, "--to", "level"], /--to.*--to-data/],
      [["migrate", "--from-data", source, "--from", redis!.url, "--to", redis!.url], /--from-data and --from/],
      [["migrate", "--from-data", source, "--to", redis!.url, "--redis-prefix", "{x}"], /--redis-prefix/],
      [["migrate", "--from-data", source, "--to", redis!.url, "--bogus"], /--bogus/],
    ];
    for (const [args, re] of cases) {
      const r = await runBin(args, env());
      expect(r.code, `${args.join(" ")}: ${r.stderr}`).to.equal(2);
      expect(r.stderr, args.join(" ")).to.match(re);
    }
  });

  it("refuses a source a sidecar holds (data directory in use)", async () => {
    const s = await serve(source);
    try {
      const r = await runBin(["migrate", "--from-data", source, "--to", redis!.url], env());
      expect(r.code).to.equal(1);
      expect(r.stderr).to.match(/data directory in use/);
    } finally {
      await s.stop();
    }
    expect(redis!.cli(["DBSIZE"]).trim()).to.equal("0");
  });

  it("copies LevelDB to Redis: the same answers, secrets, admission and idempotency", async () => {
    const started = Date.now();
    const r = await runBin(["migrate", "--from-data", source, "--to", redis!.url, "--json"], env());
    expect(r.code, r.stderr).to.equal(0);
    const out = JSON.parse(r.stdout) as { copied: Record<string, number> };
    console.log(`      migrate LevelDB → Redis: ${Date.now() - started} ms (process), ${JSON.stringify(out.copied)}`);
    expect(out.copied).to.include({ keys: 3, deletedKeys: 1, accounts: 2, groups: 2, tokens: 1, prices: 1, ledger: 7, meta: 1, webhooks: 1, alertMarks: 1 });
    expect(out.copied.audit).to.be.greaterThan(5);
    expect(out.copied.usage).to.be.greaterThan(0);

    // Sealed in Redis as a fleet keeps them; the alert already sent is marked there.
    const stored = redis!.cli(["HGET", `${prefix}{g}:meta`, "m:webhookEndpoints"]);
    expect(stored).to.include("sealed");
    expect(stored).to.not.include(hook.secret);
    expect(redis!.cli(["--scan", "--pattern", `${prefix}{g}:am:*`]).trim().split("\n")).to.have.length(1);
    const s = await serve(await tempDir().then((d) => (dirs.push(d), d)), ["--store", redis!.url, ...LOADED]);
    try {
      expect({ ...(await snapshot(s.admin)), webhooks: await hooks(s.admin) }).to.deep.equal(sourceSnapshot);
      await signsWithTheSameSecret(s.admin, "a sidecar on Redis");
      const rev = await unary<adminPb.RevealKeysResponse>(s.admin, adminPb, "revealKeys", { ids: [seeded.keyId] }, meta);
      expect(rev.keys[0]!.secret).to.equal(seeded.secret);
      // The rotated key: its new secret and, within the grace period, its previous one.
      for (const apiKey of [seeded.rotatedNew, seeded.rotatedOld]) {
        const c = await unary<authorizerPb.CheckResponse>(s.authz, authorizerPb, "check", { apiKey, estimatedUnits: "1" });
        expect(c.allowed).to.equal(true);
        await unary(s.authz, authorizerPb, "consume", { requestId: `rot-${apiKey.slice(-6)}`, target: { $case: "reservationId", value: c.reservationId }, units: "0" }).catch(() => {});
      }
      // A replay of a charged request id returns the first answer; nothing is charged again.
      const again = await unary<authorizerPb.ConsumeResponse>(s.authz, authorizerPb, "consume", seeded.first);
      expect(again.replayed).to.equal(true);
      expect({ ...again, replayed: false }).to.deep.equal({ ...seeded.consume!, replayed: false });
      const before = await unary<any>(s.admin, adminPb, "getKey", { id: seeded.keyId }, meta);
      expect(before).to.deep.equal((sourceSnapshot.byId as Record<string, unknown>)[seeded.keyId]);
      // Admitted as on the source, and charged from the copied counters.
      const c = await unary<authorizerPb.CheckResponse>(s.authz, authorizerPb, "check", { apiKey: seeded.secret, estimatedUnits: "3" });
      expect(c.allowed).to.equal(true);
      const res = await unary<authorizerPb.ConsumeResponse>(s.authz, authorizerPb, "consume", { requestId: "req-after", target: { $case: "reservationId", value: c.reservationId }, units: "2" });
      expect(Number(res.keyRemaining)).to.equal(Number(before.quota.remaining) - 2);
      // The deleted key stays deleted; a late Consume of it charges its account (the tombstone came along).
      const late = await unary<authorizerPb.ConsumeResponse>(s.authz, authorizerPb, "consume", { requestId: "req-del-late", target: { $case: "keyId", value: seeded.deletedId }, units: "1" });
      expect(late.unitsCharged).to.equal("1");
    } finally {
      await s.stop();
    }
  });

  it("carrying webhook endpoints needs the source's master key: none, or another one, is refused by name and the target wiped", async () => {
    const other = await startRedis();
    try {
      const none = await runBin(["migrate", "--from-data", source, "--to", other.url], { ...env(), AISA_MASTER_KEY: "" });
      expect(none.code, none.stderr).to.equal(1);
      expect(none.stderr).to.match(/webhooks\.json holds 1 webhook endpoint\(s\), sealed with the master key on the way: set AISA_MASTER_KEY \(no .*master\.key either\)/);
      const wrong = await runBin(["migrate", "--from-data", source, "--to", other.url], env({ AISA_MASTER_KEY: randomBytes(32).toString("hex") }));
      expect(wrong.code, wrong.stderr).to.equal(1);
      expect(wrong.stderr).to.match(/the master key given to migrate is not the one the store in .* was sealed with/);
      expect(other.cli(["DBSIZE"]).trim()).to.equal("0");
    } finally {
      await other.cleanup();
    }
  });

  it("refuses an empty source (e.g. a wrong prefix) without creating the target", async () => {
    const target = `${source}-never`;
    const r = await runBin(["migrate", "--from", redis!.url, "--to-data", target, "--redis-prefix", "nothing-here:"], env());
    expect(r.code).to.equal(1);
    expect(r.stderr).to.match(/holds nothing under the prefix "nothing-here:"/);
    expect(existsSync(target)).to.equal(false);
  });

  it("refuses a non-empty target, naming what is there, unless --force", async () => {
    const r = await runBin(["migrate", "--from-data", source, "--to", redis!.url], env());
    expect(r.code).to.equal(1);
    expect(r.stderr).to.match(/not empty: Redis holds \d+ key\(s\) under the prefix/);
    expect(r.stderr).to.match(/--force/);
    // A fleet sidecar's data directory: no store, but its webhook delivery queue.
    const sidecarDir = await tempDir();
    dirs.push(sidecarDir);
    const queue = JSON.stringify({ endpointsShared: true, deliveries: [{ id: "dlv_1" }], dropped: 0 });
    await writeFile(join(sidecarDir, "webhooks.json"), queue, { mode: 0o600 });
    const q = await runBin(["migrate", "--from", redis!.url, "--to-data", sidecarDir], env());
    expect(q.code, q.stderr).to.equal(1);
    expect(q.stderr).to.match(/not empty: .*webhooks\.json with 0 webhook endpoint\(s\) and 1 delivery record\(s\)/);
    expect(await readFile(join(sidecarDir, "webhooks.json"), "utf8")).to.equal(queue);
  });

  it("a failure midway exits 1, says what was copied, and wipes the target", async () => {
    // A Redis user that may not XADD: keys, accounts … are written, then the ledger fails.
    const other = await startRedis();
    try {
      other.cli(["ACL", "SETUSER", "mig", "on", ">pw", "~*", "&*", "+@all", "-xadd"]);
      const r = await runBin(["migrate", "--from-data", source, "--to", `redis://mig:pw@${other.hostPort}`], env());
      expect(r.code, r.stderr).to.equal(1);
      expect(r.stderr).to.match(/migration failed: .*(NOPERM|can't run this command)/i);
      expect(r.stderr).to.match(/Copied before the failure: 1 meta records, 2 accounts, 2 groups, 1 tokens, 1 prices, 3 keys, 1 deleted-key tombstones, 0 ledger entries/);
      expect(r.stderr).to.match(/the target was wiped/);
      expect(other.cli(["DBSIZE"]).trim()).to.equal("0");
    } finally {
      await other.cleanup();
    }
  });

  it("copies to a 3-master Redis Cluster and back (redis-cluster://)", async () => {
    const cluster = await startRedisCluster();
    try {
      const r = await runBin(["migrate", "--from-data", source, "--to", cluster.url], env());
      expect(r.code, r.stderr).to.equal(0);
      const s = await serve(await tempDir().then((d) => (dirs.push(d), d)), ["--store", cluster.url, ...LOADED]);
      try {
        expect({ ...(await snapshot(s.admin)), webhooks: await hooks(s.admin) }).to.deep.equal(sourceSnapshot);
      } finally {
        await s.stop();
      }
      const back = await tempDir();
      dirs.push(back);
      const b = await runBin(["migrate", "--from", cluster.url, "--to-data", back, "--json"], env());
      expect(b.code, b.stderr).to.equal(0);
      // The endpoints and the alert mark found on the cluster's nodes (the mark by SCAN over every master).
      expect((JSON.parse(b.stdout) as { copied: Record<string, number> }).copied).to.include({ webhooks: 1, alertMarks: 1 });
      const l = await serve(back);
      try {
        expect({ ...(await snapshot(l.admin)), webhooks: await hooks(l.admin) }).to.deep.equal(sourceSnapshot);
      } finally {
        await l.stop();
      }
    } finally {
      await cluster.cleanup();
    }
  });

  it("copies Redis back to a new data dir: the same answers again", async () => {
    const back = await tempDir();
    dirs.push(back);
    const r = await runBin(["migrate", "--from", redis!.url, "--to-data", back], env());
    expect(r.code, r.stderr).to.equal(0);
    expect(r.stdout).to.match(/migrated .* → data directory .*: \d+ meta records, 2 accounts/);
    // The Redis sidecar charged "req-after" and "req-del-late": a fresh copy of the source
    // (--force) makes the two comparable.
    const f = await runBin(["migrate", "--from-data", source, "--to", redis!.url, "--force"], env());
    expect(f.code, f.stderr).to.equal(0);
    expect(f.stderr).to.match(/wiped the target/);
    const again = await tempDir();
    dirs.push(again);
    expect((await runBin(["migrate", "--from", redis!.url, "--to-data", again], env())).code).to.equal(0);
    // LevelDB → Redis → LevelDB: every record and counter, the ledger and the audit log identical.
    const [was, is] = [await exported(source, masterKey), await exported(again, masterKey)];
    expect(is).to.deep.equal(was);
    expect(is["ledger"]).to.have.length(7);
    expect(is["webhooks"]).to.have.length(1);
    expect(is["alertMarks"]).to.have.length(1);
    // The endpoints are plain again in the new directory's webhooks.json (0600), with no queue.
    const file = JSON.parse(await readFile(join(again, "webhooks.json"), "utf8")) as { endpoints: { id: string; secret: string }[]; deliveries: unknown[] };
    expect(file.endpoints.map((e) => [e.id, e.secret])).to.deep.equal([[hook.id, hook.secret]]);
    expect(file.deliveries).to.deep.equal([]);
    const s = await serve(again);
    try {
      expect({ ...(await snapshot(s.admin)), webhooks: await hooks(s.admin) }).to.deep.equal(sourceSnapshot);
      await signsWithTheSameSecret(s.admin, "a sidecar on the copied data directory");
      const rev = await unary<adminPb.RevealKeysResponse>(s.admin, adminPb, "revealKeys", { ids: [seeded.keyId] }, meta);
      expect(rev.keys[0]!.secret).to.equal(seeded.secret);
      const replay = await unary<authorizerPb.ConsumeResponse>(s.authz, authorizerPb, "consume", seeded.first);
      expect(replay.replayed).to.equal(true);
      expect({ ...replay, replayed: false }).to.deep.equal({ ...seeded.consume!, replayed: false });
    } finally {
      await s.stop();
    }
    // A sidecar with another master key refuses the copy.
    const wrong = await startServe(again, [], env({ AISA_MASTER_KEY: randomBytes(32).toString("hex") })).then(
      (p) => (procs.push(p), "started"),
      (e: Error) => e.message,
    );
    expect(wrong).to.match(/master key/);
  });
});
