// Usage history (QueryUsage), live usage (WatchUsage) and alerts end to end:
// a real sidecar, real Checks and Consumes through aisa.v1.Authorizer, real
// admin mutations, and the CLI's `usage` command in-process.
import { expect } from "chai";
import * as grpc from "@grpc/grpc-js";
import { status } from "@grpc/grpc-js";
import type { CreateKeyResponse, QueryUsageResponse, UsageCounters, UsageEvent, UsageRow } from "../../src/gen/aisa/v1/admin.js";
import { Granularity, UsageDimension, WatchUsageRequest } from "../../src/gen/aisa/v1/admin.js";
import type { CheckResponse, ConsumeResponse } from "../../src/gen/aisa/v1/authorizer.js";
import { runCli } from "../../src/cli/program.js";
import { call, expectGrpcError, removeDir, startTestSidecar, type TestSidecar } from "../helpers/sidecar.js";

interface Sum {
  requests: number;
  denied: number;
  denies: Record<string, number>;
  inputTokens: number;
  outputTokens: number;
  units: number;
  consumed: number;
}

const zero = (): Sum => ({ requests: 0, denied: 0, denies: {}, inputTokens: 0, outputTokens: 0, units: 0, consumed: 0 });

function add(into: Sum, c: UsageCounters | undefined): Sum {
  if (!c) return into;
  into.requests += Number(c.requests);
  into.denied += Number(c.denied);
  for (const [r, n] of Object.entries(c.deniesByReason)) into.denies[r] = (into.denies[r] ?? 0) + Number(n);
  into.inputTokens += Number(c.inputTokens);
  into.outputTokens += Number(c.outputTokens);
  into.units += Number(c.units);
  into.consumed += Number(c.consumed);
  return into;
}

/** Rows summed per id (a test may straddle a bucket boundary: compare sums, not rows). */
function byId(rows: UsageRow[]): Record<string, Sum> {
  const out: Record<string, Sum> = {};
  for (const r of rows) add((out[r.id] ??= zero()), r.counters);
  return out;
}

const sum = (p: Partial<Sum>): Sum => ({ ...zero(), ...p });

/** Collects a WatchUsage stream's messages. */
class Watch {
  readonly messages: UsageEvent[] = [];
  readonly stream: grpc.ClientReadableStream<UsageEvent>;
  error: grpc.ServiceError | undefined;
  ended = false;
  readonly #waiters: (() => void)[] = [];

  constructor(s: TestSidecar, filter: { keyId?: string; accountId?: string; group?: string; model?: string }, token?: string) {
    this.stream = s.admin.watchUsage(WatchUsageRequest.fromPartial({ filter }), s.meta(token));
    this.stream.on("data", (m: UsageEvent) => {
      this.messages.push(m);
      this.#wake();
    });
    this.stream.on("error", (e: grpc.ServiceError) => {
      this.error = e;
      this.#wake();
    });
    this.stream.on("end", () => {
      this.ended = true;
      this.#wake();
    });
  }

  #wake(): void {
    for (const w of this.#waiters.splice(0)) w();
  }

  /** Waits until `pred` holds over what arrived (fails after `ms`). */
  async until(what: string, pred: (w: Watch) => boolean, ms = 15_000): Promise<void> {
    const deadline = Date.now() + ms;
    while (!pred(this)) {
      if (this.error) throw new Error(`stream failed while waiting for ${what}: ${this.error.details}`);
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`timed out waiting for ${what}; got ${this.messages.length} messages`);
      await new Promise<void>((r) => {
        const t = setTimeout(r, left);
        this.#waiters.push(() => {
          clearTimeout(t);
          r();
        });
      });
    }
  }

  total(): Sum {
    return this.messages.reduce((acc, m) => add(acc, m.total), zero());
  }

  keySum(id: string): Sum {
    const out = zero();
    for (const m of this.messages) for (const r of m.byKey) if (r.id === id) add(out, r.counters);
    return out;
  }

  alerts() {
    return this.messages.flatMap((m) => m.alerts);
  }

  keyEvents() {
    return this.messages.flatMap((m) => m.keyEvents);
  }
}

describe("usage: QueryUsage, WatchUsage and alerts (end to end)", function () {
  this.timeout(60_000);
  let s: TestSidecar;
  const admin = <Res>(method: string, req: unknown, token?: string) => call<unknown, Res>(s.admin, method, req, s.meta(token));
  const check = (apiKey: string, model: string) => call<unknown, CheckResponse>(s.authorizer, "check", { apiKey, model, clientIp: "203.0.113.7", maxTokens: "100" });
  const consume = (req: Record<string, unknown>) => call<unknown, ConsumeResponse>(s.authorizer, "consume", req);
  const query = (req: Record<string, unknown>, token?: string) => admin<QueryUsageResponse>("queryUsage", req, token);
  let rid = 0;
  const newId = () => `usage-${Date.now()}-${++rid}`;
  const createKey = (name: string, accountId: string, spec: Record<string, unknown>) => admin<CreateKeyResponse>("createKey", { spec: { name, ...spec }, accountId });

  before(async () => {
    s = await startTestSidecar();
    // 1M input tokens cost 75000 units, 1M output 300000.
    await admin("setPrice", { price: { model: "m-usage", inputPerMillion: "75000", outputPerMillion: "300000" } });
  });
  after(async () => {
    await s.close();
    await removeDir(s.dir);
  });

  describe("QueryUsage after real Checks and Consumes", () => {
    let a: CreateKeyResponse;
    let b: CreateKeyResponse;
    let other: CreateKeyResponse;
    let acctToken: string;

    before(async () => {
      await admin("createAccount", { id: "uq", name: "Usage query", initialBalance: "10000000" });
      await admin("createAccount", { id: "uq-other", name: "Other", initialBalance: "10000000" });
      await admin("createGroup", { name: "gq" });
      a = await createKey("a", "uq", { group: "gq", quota: "1000000" });
      b = await createKey("b", "uq", { quota: "1000000" });
      other = await createKey("other", "uq-other", { quota: "1000000" });
      acctToken = (await admin<{ secret: string }>("createToken", { name: "uq", accountId: "uq" })).secret;

      // Key a: 3 admitted and settled (1000 in + 100 out = 75 + 30 = 105 units each), 1 unpriced model.
      for (let i = 0; i < 3; i++) {
        const c = await check(a.secret, "m-usage");
        expect(c.allowed).to.equal(true);
        await consume({ requestId: newId(), target: { $case: "reservationId", value: c.reservationId }, model: "m-usage", inputTokens: "1000", outputTokens: "100" });
      }
      expect((await check(a.secret, "m-unpriced")).allowed).to.equal(false);
      // Key b: 2 admitted, one settled (2000 in = 150 units), then disabled and denied once.
      const c1 = await check(b.secret, "m-usage");
      expect((await check(b.secret, "m-usage")).allowed).to.equal(true);
      await consume({ requestId: newId(), target: { $case: "reservationId", value: c1.reservationId }, model: "m-usage", inputTokens: "2000", outputTokens: "0" });
      await admin("setKeysEnabled", { ids: [b.key!.id], enabled: false });
      expect((await check(b.secret, "m-usage")).allowed).to.equal(false);
      // An unknown key: no key, account or group — only its model row counts it.
      expect((await check("sk-not-a-real-key-000000000000000000000000000", "m-usage")).allowed).to.equal(false);
      // The other account: 1 admitted.
      expect((await check(other.secret, "m-usage")).allowed).to.equal(true);
    });

    const A = () => sum({ requests: 3, denied: 1, denies: { MODEL_NOT_PRICED: 1 }, inputTokens: 3000, outputTokens: 300, units: 315, consumed: 3 });
    const B = () => sum({ requests: 2, denied: 1, denies: { KEY_DISABLED: 1 }, inputTokens: 2000, units: 150, consumed: 1 });

    const cases: { name: string; req: () => Record<string, unknown>; want: () => Record<string, Sum>; total?: () => Sum }[] = [
      {
        name: "by key, filtered by account (minute buckets)",
        req: () => ({ filter: { accountId: "uq" }, groupBy: UsageDimension.USAGE_DIMENSION_KEY, granularity: Granularity.GRANULARITY_MINUTE }),
        want: () => ({ [a.key!.id]: A(), [b.key!.id]: B() }),
        total: () => sum({ requests: 5, denied: 2, denies: { MODEL_NOT_PRICED: 1, KEY_DISABLED: 1 }, inputTokens: 5000, outputTokens: 300, units: 465, consumed: 4 }),
      },
      {
        name: "one key (hour buckets, the default)",
        req: () => ({ filter: { keyId: a.key!.id } }),
        want: () => ({ [a.key!.id]: A() }),
      },
      {
        name: "by account (day buckets)",
        req: () => ({ filter: { accountId: "uq" }, groupBy: UsageDimension.USAGE_DIMENSION_ACCOUNT, granularity: Granularity.GRANULARITY_DAY }),
        want: () => ({ uq: add(add(zero(), { ...counters(A()) }), counters(B())) }),
      },
      {
        name: "by group within an account (from key rows)",
        req: () => ({ filter: { accountId: "uq" }, groupBy: UsageDimension.USAGE_DIMENSION_GROUP }),
        want: () => ({ gq: A(), default: B() }),
      },
      {
        name: "one group (group rows)",
        req: () => ({ filter: { group: "gq" }, groupBy: UsageDimension.USAGE_DIMENSION_GROUP }),
        want: () => ({ gq: A() }),
      },
      {
        name: "by account within a group (from key rows)",
        req: () => ({ filter: { group: "gq" }, groupBy: UsageDimension.USAGE_DIMENSION_ACCOUNT }),
        want: () => ({ uq: A() }),
      },
      {
        name: "by model, server-wide (the unknown key's deny included)",
        req: () => ({ filter: { model: "m-usage" }, groupBy: UsageDimension.USAGE_DIMENSION_MODEL, granularity: Granularity.GRANULARITY_MINUTE }),
        want: () => ({
          "m-usage": sum({ requests: 6, denied: 2, denies: { KEY_DISABLED: 1, KEY_INVALID: 1 }, inputTokens: 5000, outputTokens: 300, units: 465, consumed: 4 }),
        }),
      },
      {
        name: "denies naming a model with no price count under (unpriced), not under the client's name",
        req: () => ({ groupBy: UsageDimension.USAGE_DIMENSION_MODEL }),
        want: () => ({
          "m-usage": sum({ requests: 6, denied: 2, denies: { KEY_DISABLED: 1, KEY_INVALID: 1 }, inputTokens: 5000, outputTokens: 300, units: 465, consumed: 4 }),
          "(unpriced)": sum({ denied: 1, denies: { MODEL_NOT_PRICED: 1 } }),
        }),
      },
    ];
    for (const c of cases) {
      it(`${c.name}: exact numbers`, async () => {
        const r = await query(c.req());
        expect(byId(r.rows)).to.deep.equal(c.want());
        const total = add(zero(), r.total);
        expect(total).to.deep.equal(c.total ? c.total() : Object.values(c.want()).reduce((acc, x) => add(acc, counters(x)), zero()));
        for (let i = 1; i < r.rows.length; i++) expect(r.rows[i]!.bucketStart!.getTime()).to.be.at.least(r.rows[i - 1]!.bucketStart!.getTime());
      });
    }

    it("a range before the usage is empty; since after until is INVALID_ARGUMENT", async () => {
      const r = await query({ filter: { accountId: "uq" }, since: new Date(Date.now() - 3 * 86_400_000), until: new Date(Date.now() - 2 * 86_400_000) });
      expect(r.rows).to.deep.equal([]);
      const e = await expectGrpcError(query({ since: new Date(), until: new Date(Date.now() - 1000) }), status.INVALID_ARGUMENT);
      expect(e.details).to.include("until");
    });

    it("model rows cannot be narrowed to a key, account or group: INVALID_ARGUMENT naming the field", async () => {
      const e1 = await expectGrpcError(query({ filter: { model: "m-usage", accountId: "uq" }, groupBy: UsageDimension.USAGE_DIMENSION_MODEL }), status.INVALID_ARGUMENT);
      expect(e1.details).to.include("filter.model");
      const e2 = await expectGrpcError(query({ filter: { keyId: a.key!.id }, groupBy: UsageDimension.USAGE_DIMENSION_MODEL }), status.INVALID_ARGUMENT);
      expect(e2.details).to.include("group_by");
    });

    it("an account token sees its own account only; another account's key or account is NOT_FOUND", async () => {
      const mine = await query({ groupBy: UsageDimension.USAGE_DIMENSION_KEY }, acctToken);
      expect(Object.keys(byId(mine.rows)).sort()).to.deep.equal([a.key!.id, b.key!.id].sort());
      const acct = await query({ groupBy: UsageDimension.USAGE_DIMENSION_ACCOUNT }, acctToken);
      expect(Object.keys(byId(acct.rows))).to.deep.equal(["uq"]);
      await expectGrpcError(query({ filter: { keyId: other.key!.id } }, acctToken), status.NOT_FOUND);
      await expectGrpcError(query({ filter: { keyId: "key_doesnotexist" } }, acctToken), status.NOT_FOUND);
      await expectGrpcError(query({ filter: { accountId: "uq-other" } }, acctToken), status.NOT_FOUND);
      await expectGrpcError(query({ groupBy: UsageDimension.USAGE_DIMENSION_MODEL }, acctToken), status.INVALID_ARGUMENT);
      await expectGrpcError(call(s.admin, "queryUsage", {}, s.meta("aat-wrong")), status.UNAUTHENTICATED);
    });

    it("the CLI: `aisa-authz usage --account uq --by key --json` and the table", async () => {
      const run = async (...args: string[]) => {
        let out = "";
        let err = "";
        const io = {
          stdout: { write: (t: string) => (out += t) },
          stderr: { write: (t: string) => (err += t) },
          stdin: process.stdin,
          env: {},
          now: () => Date.now(),
        };
        const code = await runCli(["node", "aisa-authz", "--admin", s.adminAddress, "--token", s.adminToken, ...args], io);
        return { code, out, err };
      };
      const j = await run("usage", "--account", "uq", "--by", "key", "--granularity", "minute", "--since", "1h", "--json");
      expect(j.code, j.err).to.equal(0);
      const doc = JSON.parse(j.out) as { rows: { id: string; units: number }[]; total: { requests: number; units: number; denies_by_reason: Record<string, number> } };
      expect(doc.total).to.deep.include({ requests: 5, units: 465 });
      expect(doc.total.denies_by_reason).to.deep.equal({ MODEL_NOT_PRICED: 1, KEY_DISABLED: 1 });
      expect(new Set(doc.rows.map((r) => r.id))).to.deep.equal(new Set([a.key!.id, b.key!.id]));
      const t = await run("usage", "--key", a.key!.id);
      expect(t.code, t.err).to.equal(0);
      expect(t.out).to.include(a.key!.id).and.to.include("315");
      const bad = await run("usage", "--by", "colour");
      expect(bad.code).to.equal(2);
      expect(bad.err).to.include("--by");
      const m = await run("usage", "--model", "(unpriced)", "--json");
      expect(m.code, m.err).to.equal(0);
      expect(JSON.parse(m.out).total.denied).to.equal(1);
    });
  });

  describe("WatchUsage", () => {
    it("streams one message per second with the deltas, key events and remaining quota; ends cleanly on cancel", async () => {
      await admin("createAccount", { id: "uw", name: "Usage watch", initialBalance: "10000000" });
      const k = await createKey("watched", "uw", { quota: "1000000" });
      const w = new Watch(s, { accountId: "uw" });
      await w.until("the first message", (x) => x.messages.length >= 1);

      const c = await check(k.secret, "m-usage");
      expect(c.allowed).to.equal(true);
      await consume({ requestId: newId(), target: { $case: "reservationId", value: c.reservationId }, model: "m-usage", inputTokens: "1000", outputTokens: "100" });
      expect((await check(k.secret, "m-unpriced")).allowed).to.equal(false);
      await admin("setKeysEnabled", { ids: [k.key!.id], enabled: false });

      const want = sum({ requests: 1, denied: 1, denies: { MODEL_NOT_PRICED: 1 }, inputTokens: 1000, outputTokens: 100, units: 105, consumed: 1 });
      await w.until("the deltas and the disable", (x) => x.total().consumed >= 1 && x.total().denied >= 1 && x.keyEvents().some((e) => e.kind === "disabled"));
      const n = w.messages.length;
      await w.until("one more second", (x) => x.messages.length > n);
      expect(w.total()).to.deep.equal(want);
      expect(w.keySum(k.key!.id)).to.deep.equal(want);
      const groups = w.messages.flatMap((m) => m.byGroup.map((r) => r.id));
      expect(new Set(groups)).to.deep.equal(new Set(["default"]));
      const disabled = w.keyEvents().find((e) => e.kind === "disabled")!;
      expect(disabled.keyId).to.equal(k.key!.id);
      expect(disabled.key!.status).to.equal(2); // KEY_STATUS_DISABLED
      const rem = w.messages.flatMap((m) => m.remaining).find((r) => r.keyId === k.key!.id)!;
      expect(rem).to.deep.include({ remaining: String(1000000 - 105), unlimited: false, accountBalance: String(10000000 - 105) });
      // One message per second: each covers a later second than the one before.
      for (let i = 1; i < w.messages.length; i++) expect(w.messages[i]!.at!.getTime()).to.be.greaterThan(w.messages[i - 1]!.at!.getTime());

      const errorsBefore = s.logs.lines.filter((l) => JSON.parse(l).level >= 50).length;
      w.stream.cancel();
      await w.until("the cancellation", (x) => x.error !== undefined || x.ended).catch(() => {});
      expect(w.error?.code).to.equal(status.CANCELLED);
      // The server keeps serving and logged no error for the client going away.
      await new Promise((r) => setTimeout(r, 1500));
      expect(s.logs.lines.filter((l) => JSON.parse(l).level >= 50).length).to.equal(errorsBefore);
      const again = new Watch(s, { accountId: "uw" });
      await again.until("a message on a new stream", (x) => x.messages.length >= 1);
      again.stream.cancel();
    });

    it("alerts at 50/80/100 % of a key's quota and of an account's balance, a quota_exhausted event, and a key expiring within 24 h", async () => {
      await admin("createAccount", { id: "ua", name: "Usage alerts", initialBalance: "1000" });
      const k = await createKey("alerting", "ua", { quota: "1000" });
      const w = new Watch(s, { accountId: "ua" });
      await w.until("the first message", (x) => x.messages.length >= 1);
      const soon = await createKey("expiring", "ua", { quota: "10", expires: "1h" });
      for (const units of [500, 300, 200]) {
        const r = await consume({ requestId: newId(), target: { $case: "keyId", value: k.key!.id }, units: String(units) });
        expect(r.unitsCharged).to.equal(String(units));
        // Let each charge land in its own second (alerts must also work when they share one).
        await w.until("the charge", (x) => x.total().units >= [500, 800, 1000][[500, 300, 200].indexOf(units)]!);
      }
      await w.until(
        "all alerts",
        (x) =>
          x.alerts().filter((a) => a.kind === "key_quota").length >= 3 &&
          x.alerts().filter((a) => a.kind === "account_balance").length >= 3 &&
          x.keyEvents().some((e) => e.kind === "quota_exhausted") &&
          x.alerts().some((a) => a.kind === "key_expiring"),
      );
      const n = w.messages.length;
      await w.until("one more second", (x) => x.messages.length > n);
      const alerts = w.alerts();
      expect(alerts.filter((a) => a.kind === "key_quota").map((a) => [a.targetId, a.percent])).to.deep.equal([
        [k.key!.id, 50],
        [k.key!.id, 80],
        [k.key!.id, 100],
      ]);
      expect(alerts.filter((a) => a.kind === "account_balance").map((a) => [a.targetId, a.percent])).to.deep.equal([
        ["ua", 50],
        ["ua", 80],
        ["ua", 100],
      ]);
      const exp = alerts.filter((a) => a.kind === "key_expiring");
      expect(exp.map((a) => a.targetId)).to.deep.equal([soon.key!.id]);
      expect(exp[0]!.expiresAt!.getTime()).to.equal(soon.key!.expiresAt!.getTime());
      const exhausted = w.keyEvents().filter((e) => e.kind === "quota_exhausted");
      expect(exhausted.map((e) => e.keyId)).to.deep.equal([k.key!.id]);
      expect(exhausted[0]!.key!.quota!.remaining).to.equal("0");
      expect(w.keyEvents().some((e) => e.kind === "created" && e.keyId === soon.key!.id)).to.equal(true);
      w.stream.cancel();
    });

    it("an account token sees its own account only; another account's key is NOT_FOUND", async () => {
      await admin("createAccount", { id: "us1", name: "Mine", initialBalance: "1000000" });
      await admin("createAccount", { id: "us2", name: "Theirs", initialBalance: "1000000" });
      const mine = await createKey("mine", "us1", { unlimited: true });
      const theirs = await createKey("theirs", "us2", { unlimited: true });
      const created = await admin<{ secret: string; token: { id: string } }>("createToken", { name: "us1", accountId: "us1", readOnly: true });
      const tok = created.secret;

      const denied = new Watch(s, { keyId: theirs.key!.id }, tok);
      await denied.until("the error", (x) => x.error !== undefined);
      expect(denied.error!.code).to.equal(status.NOT_FOUND);
      const other = new Watch(s, { accountId: "us2" }, tok);
      await other.until("the error", (x) => x.error !== undefined);
      expect(other.error!.code).to.equal(status.NOT_FOUND);
      const unauth = new Watch(s, {}, "aat-wrong");
      await unauth.until("the error", (x) => x.error !== undefined);
      expect(unauth.error!.code).to.equal(status.UNAUTHENTICATED);

      const w = new Watch(s, {}, tok);
      await w.until("the first message", (x) => x.messages.length >= 1);
      await consume({ requestId: newId(), target: { $case: "keyId", value: theirs.key!.id }, units: "7" });
      await admin("setKeysEnabled", { ids: [theirs.key!.id], enabled: false });
      await consume({ requestId: newId(), target: { $case: "keyId", value: mine.key!.id }, units: "3" });
      await w.until("my charge", (x) => x.total().units >= 3);
      const n = w.messages.length;
      await w.until("one more second", (x) => x.messages.length > n);
      expect(w.total().units).to.equal(3);
      expect(new Set(w.messages.flatMap((m) => m.byKey.map((r) => r.id)))).to.deep.equal(new Set([mine.key!.id]));
      expect(w.keyEvents()).to.deep.equal([]);
      expect(w.messages.flatMap((m) => m.remaining.map((r) => r.keyId))).to.deep.equal([mine.key!.id]);
      // Revoking the token ends its open stream.
      await admin("revokeToken", { id: created.token.id });
      await w.until("the end", (x) => x.error !== undefined);
      expect(w.error!.code).to.equal(status.UNAUTHENTICATED);
    });
  });
});

describe("usage: history survives a restart, without loss or double counting", function () {
  this.timeout(60_000);
  let s: TestSidecar;
  let dir = "";
  after(async () => {
    await s?.close().catch(() => {});
    if (dir) await removeDir(dir);
  });
  const admin = <Res>(method: string, req: unknown) => call<unknown, Res>(s.admin, method, req, s.meta());

  it("stop flushes; a new sidecar on the same data dir adds to the stored buckets", async () => {
    s = await startTestSidecar();
    dir = s.dir;
    await admin("setPrice", { price: { model: "m-r", inputPerMillion: "1000", outputPerMillion: "1000" } });
    await admin("createAccount", { id: "ur", name: "Restart", initialBalance: "1000000" });
    const k = await admin<CreateKeyResponse>("createKey", { spec: { name: "r", unlimited: true }, accountId: "ur" });
    const charge = async (units: number) => {
      const c = await call<unknown, CheckResponse>(s.authorizer, "check", { apiKey: k.secret, model: "m-r" });
      expect(c.allowed).to.equal(true);
      await call(s.authorizer, "consume", { requestId: `r-${Math.random()}`, target: { $case: "reservationId", value: c.reservationId }, units: String(units) });
    };
    const totals = async () => {
      const out: Record<string, Sum> = {};
      for (const [name, gran] of [
        ["minute", Granularity.GRANULARITY_MINUTE],
        ["hour", Granularity.GRANULARITY_HOUR],
        ["day", Granularity.GRANULARITY_DAY],
      ] as const) {
        const r = await admin<QueryUsageResponse>("queryUsage", { filter: { keyId: k.key!.id }, granularity: gran, since: new Date(Date.now() - 3_600_000) });
        out[name] = add(zero(), r.total);
        const acct = await admin<QueryUsageResponse>("queryUsage", { filter: { accountId: "ur" }, groupBy: UsageDimension.USAGE_DIMENSION_ACCOUNT, granularity: gran, since: new Date(Date.now() - 3_600_000) });
        out[`${name}/account`] = add(zero(), acct.total);
      }
      return out;
    };
    const expectAll = (got: Record<string, Sum>, want: Sum) => {
      for (const [name, v] of Object.entries(got)) expect(v, name).to.deep.equal(want);
    };
    const w = new Watch(s, {});
    await w.until("the first message", (x) => x.messages.length >= 1);
    await charge(10);
    await charge(20);
    // Before any flush: answered from memory.
    expectAll(await totals(), sum({ requests: 2, units: 30, consumed: 2 }));
    await s.close();
    // Stopping the server ended the open WatchUsage stream cleanly (status OK).
    await w.until("the end", (x) => x.ended || x.error !== undefined);
    expect(w.error).to.equal(undefined);

    // Restart (no second passes between the last charge and stop: stop flushes).
    s = await startTestSidecar({ dataDir: dir });
    expectAll(await totals(), sum({ requests: 2, units: 30, consumed: 2 }));
    await charge(5);
    expectAll(await totals(), sum({ requests: 3, units: 35, consumed: 3 }));
    // After a flush (the buckets were seeded from the store, not overwritten).
    await new Promise((r) => setTimeout(r, 1500));
    expectAll(await totals(), sum({ requests: 3, units: 35, consumed: 3 }));
    await s.close();

    s = await startTestSidecar({ dataDir: dir });
    expectAll(await totals(), sum({ requests: 3, units: 35, consumed: 3 }));
  });
});

function counters(x: Sum): UsageCounters {
  const d: Record<string, string> = {};
  for (const [k, v] of Object.entries(x.denies)) d[k] = String(v);
  return {
    requests: String(x.requests),
    denied: String(x.denied),
    deniesByReason: d,
    inputTokens: String(x.inputTokens),
    outputTokens: String(x.outputTokens),
    units: String(x.units),
    consumed: String(x.consumed),
    cacheReadTokens: "0",
    cacheWriteTokens: "0",
    reasoningTokens: "0",
  };
}
