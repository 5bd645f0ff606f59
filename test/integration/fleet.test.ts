// Fleet mode (issue 15): three real `aisa-authz serve` processes on one real redis-server act as
// one sidecar. Money races across all three are exact; a disable, delete or rotation through one
// is refused by the very next Check on the others; kill -9 of a sidecar or of redis-server loses
// no acknowledged Consume and charges none twice; a stopped Redis makes Checks fail closed within
// the deadline. Afterwards the ledger and every counter reconcile to the unit.
import { expect } from "chai";
import * as grpc from "@grpc/grpc-js";
import { randomBytes } from "node:crypto";
import * as adminPb from "../../src/gen/aisa/v1/admin.js";
import * as authorizerPb from "../../src/gen/aisa/v1/authorizer.js";
import type * as typesPb from "../../src/gen/aisa/v1/types.js";
import { generateTokenSecret } from "../../src/keys/secrets.js";
import { RedisStore } from "../../src/store/redis/redisStore.js";
import type { Store } from "../../src/store/types.js";
import { startServe, stopProcess, waitExit, type ServeProcess } from "../helpers/proc.js";
import { requireRedis, startRedis, type RedisServer } from "../helpers/redis.js";
import { removeDir, tempDir } from "../helpers/tmp.js";
import { grpcUnary, retryUnavailable as retrying, type AnyClient } from "../helpers/clients.js";

type Client = AnyClient;
const unary = grpcUnary;

/** Every ledger entry once, each key's and account's counters equal to the ledger's sums. */
export async function reconcileStore(store: Store): Promise<{ problems: string[]; ledger: Map<string, number> }> {
  const problems: string[] = [];
  const ledger = new Map<string, number>();
  const byKey = new Map<string, number>();
  const byAccount = new Map<string, number>();
  for await (const r of store.scanLedger()) {
    if (ledger.has(r.requestId)) problems.push(`request ${r.requestId} charged twice`);
    ledger.set(r.requestId, r.units);
    byKey.set(r.keyId, (byKey.get(r.keyId) ?? 0) + r.units);
    byAccount.set(r.accountId, (byAccount.get(r.accountId) ?? 0) + r.units);
  }
  for await (const k of store.scanKeys()) {
    const charged = byKey.get(k.record.id) ?? 0;
    if (k.counters.used !== charged) problems.push(`key ${k.record.id}: used ${k.counters.used} != ledger ${charged}`);
    if (!k.record.unlimited && k.counters.remaining !== k.record.quotaTotal - charged) problems.push(`key ${k.record.id}: remaining ${k.counters.remaining} != quota ${k.record.quotaTotal} - ledger ${charged}`);
  }
  for (const a of store.listAccounts()) {
    const charged = byAccount.get(a.record.id) ?? 0;
    if (a.counters.charged !== charged) problems.push(`account ${a.record.id}: charged ${a.counters.charged} != ledger ${charged}`);
    if (a.counters.credited - charged !== a.counters.balance) problems.push(`account ${a.record.id}: credited ${a.counters.credited} - charged ${charged} != balance ${a.counters.balance}`);
  }
  return { problems, ledger };
}

// Every test runs with budget-slice leases on (--redis-lease-ms, redisStore.ts "Leases"); the two
// exactness tests run with them off too (every Check a reserve item on Redis).
for (const leaseMs of [1000, 0]) describe(`fleet: three sidecars on one Redis (leases ${leaseMs ? `on, ${leaseMs} ms` : "off"})`, function () {
  this.timeout(300_000);
  let redis: (RedisServer & { cleanup(): Promise<void> }) | undefined;
  const dirs: string[] = [];
  const sidecars: (ServeProcess | undefined)[] = [];
  const prefix = `fleet${randomBytes(4).toString("hex")}:`;
  const adminToken = generateTokenSecret();
  const env = (): NodeJS.ProcessEnv => ({
    AISA_STORE: redis!.url,
    AISA_REDIS_PREFIX: prefix,
    // One master key and one operator token for the whole fleet (README "Running a fleet").
    AISA_MASTER_KEY: masterKey,
    AISA_ADMIN_TOKEN: adminToken,
    AISA_DENY_UNPRICED_MODELS: "0",
    // The SIGSTOP test waits for the deadline on every call: short, but one a loaded 2-core
    // machine meets for the other tests' calls (admin writes are not retried).
    AISA_REDIS_TIMEOUT_MS: "500",
    AISA_REDIS_LEASE_MS: String(leaseMs),
  });
  const masterKey = randomBytes(32).toString("hex");
  /** The failure tests run once (with leases on). */
  const onceOnly = (title: string, fn: () => Promise<void>) => (leaseMs ? it(title, fn) : undefined);
  const meta = new grpc.Metadata();
  meta.set("authorization", `Bearer ${adminToken}`);
  let admins: Client[] = [];
  let authz: Client[] = [];

  const connect = () => {
    for (const c of [...admins, ...authz]) c.close();
    admins = sidecars.map((s) => new adminPb.AdminClient(s!.adminAddress, grpc.credentials.createInsecure()) as Client);
    authz = sidecars.map((s) => new authorizerPb.AuthorizerClient(s!.dataAddress, grpc.credentials.createInsecure()) as Client);
  };
  const start = async (i: number) => {
    dirs[i] ??= await tempDir();
    sidecars[i] = await startServe(dirs[i]!, [], env());
  };

  before(async function () {
    requireRedis(this);
    redis = await startRedis();
    for (let i = 0; i < 3; i++) await start(i);
    connect();
  });

  after(async () => {
    for (const c of [...admins, ...authz]) c.close();
    for (const s of sidecars) if (s) await stopProcess(s.child);
    await redis?.cleanup();
    for (const d of dirs) await removeDir(d);
  });

  const check = (i: number, apiKey: string) => unary<authorizerPb.CheckResponse>(authz[i]!, authorizerPb, "check", { apiKey, estimatedUnits: "1" });
  const consume = (i: number, requestId: string, reservationId: string, units = 1) =>
    unary<authorizerPb.ConsumeResponse>(authz[i]!, authorizerPb, "consume", { requestId, target: { $case: "reservationId", value: reservationId }, units: String(units) });
  const createKey = async (spec: Partial<adminPb.KeySpec>, accountId = "") => unary<adminPb.CreateKeyResponse>(admins[0]!, adminPb, "createKey", { spec: { name: "fleet", ...spec }, accountId }, meta);

  /** Checks the three sidecars admitted from a budget-slice lease so far (their /metrics). */
  const localChecks = async () => {
    let n = 0;
    for (const s of sidecars) {
      const text = await (await fetch(`http://${s!.metricsAddress}/metrics`)).text();
      const m = /^aisa_redis_lease_checks_total\{path="local"\} (\d+)/m.exec(text);
      n += m ? Number(m[1]) : 0;
    }
    return n;
  };

  /** 64 clients spread over the three sidecars race Check → Consume on one key until it is refused. */
  const race = async (apiKey: string, tag: string) => {
    let admitted = 0;
    const reasons = new Map<string, number>();
    await Promise.all(
      Array.from({ length: 64 }, async (_, c) => {
        for (let n = 0; ; n++) {
          const r = await retrying(() => check(c % 3, apiKey));
          if (!r.allowed) {
            reasons.set(authorizerPb.reasonToJSON(r.reason), (reasons.get(authorizerPb.reasonToJSON(r.reason)) ?? 0) + 1);
            return;
          }
          admitted++;
          await retrying(() => consume((c + 1) % 3, `${tag}-${c}-${n}`, r.reservationId));
        }
      }),
    );
    return { admitted, reasons };
  };

  it("admits exactly what the key quota (100) and the account balance (50) hold, across all three", async () => {
    await unary(admins[1]!, adminPb, "adjustBalance", { accountId: "default", delta: "1000000", reason: "seed" }, meta);
    const k = await createKey({ quota: "100" });
    const q = await race(k.secret, "quota");
    expect(q.admitted).to.equal(100);
    expect([...q.reasons.keys()], JSON.stringify([...q.reasons])).to.deep.equal(["REASON_KEY_QUOTA_EXHAUSTED"]);

    await unary(admins[2]!, adminPb, "createAccount", { id: "acct-fifty", name: "Fifty", initialBalance: "50" }, meta);
    const u = await createKey({ unlimited: true }, "acct-fifty");
    const b = await race(u.secret, "balance");
    expect(b.admitted).to.equal(50);
    expect([...b.reasons.keys()], JSON.stringify([...b.reasons])).to.deep.equal(["REASON_ACCOUNT_BALANCE_EXHAUSTED"]);
    // With leases on, some of those Checks were admitted from a slice (no Redis call) — and still exact.
    const local = await localChecks();
    if (leaseMs) expect(local, "Checks admitted from leases").to.be.greaterThan(0);
    else expect(local).to.equal(0);

    // Every sidecar reads the same exact figures once the change feed has delivered the last
    // charges (other sidecars' books follow it: well under a second on loopback).
    for (const a of admins) {
      const figures = async () => [
        (await unary<typesPb.Key>(a, adminPb, "getKey", { id: k.key!.id }, meta)).quota?.remaining,
        (await unary<typesPb.Account>(a, adminPb, "getAccount", { id: "acct-fifty" }, meta)).balance,
        (await unary<typesPb.Account>(a, adminPb, "getAccount", { id: "default" }, meta)).balance,
      ];
      const want = ["0", "0", String(1_000_000 - 100)];
      let got = await figures();
      for (let t = 0; t < 50 && JSON.stringify(got) !== JSON.stringify(want); t++) {
        await new Promise((r) => setTimeout(r, 100));
        got = await figures();
      }
      expect(got).to.deep.equal(want);
    }
  });

  it("refuses a key disabled, deleted or rotated through A on the very next Check on B and C", async () => {
    const results: Record<string, number> = {};
    const local0 = leaseMs ? await localChecks() : 0;
    for (const action of ["disable", "delete", "rotate"] as const) {
      const k = await createKey({ unlimited: true });
      let stop = false;
      let changedAt = Infinity;
      let allowedAfter = 0;
      let checks = 0;
      const hammer = async (i: number) => {
        while (!stop) {
          const sent = performance.now();
          const r = await check(i, k.secret);
          checks++;
          if (r.allowed) {
            if (sent > changedAt) allowedAfter++;
            // Settle it (a Consume of 1 unit) so nothing stays reserved.
            await consume(i, `prop-${action}-${i}-${checks}`, r.reservationId).catch(() => {});
          }
        }
      };
      const hammers = [hammer(1), hammer(2), hammer(1), hammer(2)];
      await new Promise((r) => setTimeout(r, 300));
      if (action === "disable") await unary(admins[0]!, adminPb, "setKeysEnabled", { ids: [k.key!.id], enabled: false }, meta);
      else if (action === "delete") await unary(admins[0]!, adminPb, "deleteKeys", { ids: [k.key!.id] }, meta);
      else await unary(admins[0]!, adminPb, "rotateKey", { id: k.key!.id, graceSeconds: "0" }, meta);
      changedAt = performance.now();
      await new Promise((r) => setTimeout(r, 300));
      stop = true;
      await Promise.all(hammers);
      expect(checks).to.be.greaterThan(20);
      results[action] = allowedAfter;
    }
    expect(results).to.deep.equal({ disable: 0, delete: 0, rotate: 0 });
    if (leaseMs) expect((await localChecks()) - local0, "Checks admitted from leases while B and C were hammered").to.be.greaterThan(0);
  });

  /** Clients Consume with unique ids through all three sidecars, retrying failures with the SAME id (through the next sidecar). */
  const consumeLoad = (keyId: string, tag: string) => {
    const acknowledged = new Map<string, number>();
    let running = true;
    let retries = 0;
    let seq = 0;
    const client = async (c: number) => {
      while (running) {
        const id = `${tag}-${c}-${seq++}`;
        const units = 1 + (seq % 7);
        for (let attempt = 0; ; attempt++) {
          const i = (c + attempt) % 3;
          try {
            if (!sidecars[i]) throw new Error("down");
            const r = await unary<authorizerPb.ConsumeResponse>(authz[i]!, authorizerPb, "consume", { requestId: id, target: { $case: "keyId", value: keyId }, units: String(units) }, new grpc.Metadata(), 2000);
            expect(r.unitsCharged).to.equal(String(units));
            acknowledged.set(id, units);
            break;
          } catch {
            retries++;
            if (!running && attempt > 40) return; // an unacknowledged last request may or may not be charged
            await new Promise((r) => setTimeout(r, 50));
          }
        }
      }
    };
    const clients = Array.from({ length: 6 }, (_, c) => client(c));
    return {
      acknowledged,
      retries: () => retries,
      async stop() {
        running = false;
        await Promise.all(clients);
      },
    };
  };

  const reconcile = async () => {
    const store = new RedisStore({ url: redis!.url, prefix, clock: Date.now, callTimeoutMs: 2000 });
    await store.open(Date.now());
    try {
      return await reconcileStore(store);
    } finally {
      await store.close();
    }
  };

  onceOnly("kill -9 of a sidecar, then of redis-server (appendfsync always), under Consume load: nothing acknowledged lost, nothing charged twice", async () => {
    const k = await createKey({ quota: "100000000" });
    const load = consumeLoad(k.key!.id, "kill");
    await new Promise((r) => setTimeout(r, 700));
    // A sidecar dies mid-load; its clients retry the same ids through the others.
    sidecars[1]!.child.kill("SIGKILL");
    expect(await waitExit(sidecars[1]!.child)).to.equal("SIGKILL");
    sidecars[1] = undefined;
    await new Promise((r) => setTimeout(r, 700));
    await start(1);
    connect();
    await new Promise((r) => setTimeout(r, 500));
    // redis-server dies mid-load and comes back from its AOF.
    await redis!.kill();
    await new Promise((r) => setTimeout(r, 300));
    await redis!.start();
    await new Promise((r) => setTimeout(r, 1500));
    await load.stop();
    const beforeKills = load.acknowledged.size;
    expect(beforeKills).to.be.greaterThan(50);
    const { problems, ledger } = await reconcile();
    expect(problems).to.deep.equal([]);
    for (const [id, units] of load.acknowledged) expect(ledger.get(id), `acknowledged ${id} missing`).to.equal(units);
    console.log(`      fleet kill -9: ${load.acknowledged.size} acknowledged Consumes all in the ledger once, ${load.retries()} retries; reconciliation: 0 problems`);
  });

  onceOnly("SIGSTOP redis-server: Checks fail closed within the deadline on every sidecar; SIGCONT: they pass again", async () => {
    const k = await createKey({ unlimited: true });
    for (let i = 0; i < 3; i++) expect((await check(i, k.secret)).allowed).to.equal(true);
    redis!.signal("SIGSTOP");
    try {
      for (let i = 0; i < 3; i++) {
        const t0 = performance.now();
        const err = await check(i, k.secret).then(
          () => null,
          (e: grpc.ServiceError) => e,
        );
        const ms = performance.now() - t0;
        expect(err, `sidecar ${i} answered a Check while Redis was stopped`).not.to.equal(null);
        expect(err!.code).to.equal(grpc.status.UNAVAILABLE);
        // The deadline (500 ms here) plus scheduling slack on a loaded 2-core machine.
        expect(ms).to.be.lessThan(2000);
      }
    } finally {
      redis!.signal("SIGCONT");
    }
    // Recovery is automatic.
    for (let i = 0; i < 3; i++) {
      let ok = false;
      for (let t = 0; t < 100 && !ok; t++) {
        ok = await check(i, k.secret).then(
          (r) => r.allowed,
          () => false,
        );
        if (!ok) await new Promise((r) => setTimeout(r, 100));
      }
      expect(ok, `sidecar ${i} did not recover`).to.equal(true);
    }
  });
});
