// `aisa-authz migrate` on the Redis engine (src/store/portable.ts): reads and writes the layout
// redisStore.ts documents at its top, under the same prefix as serve (AISA_REDIS_PREFIX). Writes
// go out as the engine's own CAS script (scripts.ts, no checks: only its ops): one script call
// per chunk of ~1000 records on one Redis, one per hash tag of the chunk on a cluster (a script
// touches one slot), the calls of a chunk pipelined. The source is only read (SCAN, HSCAN,
// HGETALL, XRANGE, ZRANGE). Nothing runs as a business operation: counters are written as the
// absolute values the source holds.
import { createClient, createCluster } from "redis";
import type { AccountRecord, AuditRecord, GroupBudgetCounters, GroupRecord, KeyRecord, PriceRecord, TokenRecord } from "../../domain/types.js";
import type { DeletedKey, KeyCounterValues } from "../book/keyBook.js";
import { CHUNK, chunked, PORTABLE_META, WEBHOOK_META, type PortableEngine, type StateChunk } from "../portable.js";
import type { ConsumeRecord, UsageBucket } from "../types.js";
import { parseRedisUrl } from "./conn.js";
import { hashPairs } from "./feed.js";
import { decodeGroupCharge, groupChargeOwed } from "./groupCharge.js";
import { keyState, sumCounters } from "./redisStore.js";
import { CAS } from "./scripts.js";
import { RedisKeys } from "./keys.js";
import { LedgerArchive } from "./ledgerArchive.js";
import { encodeProjection } from "../keyProjection.js";

/**
 * A stored key's fields in its account's hash (redisStore.ts's layout: record, version 1, state,
 * counters) as HSET field/value pairs; its hot projection goes to P{a:<account>}:p beside them.
 * Migrate's import and the start-up bench (bench/fleetStart.ts) write keys with it.
 */
export function keyHashFields(r: KeyRecord, k: KeyCounterValues): string[] {
  const id = r.id;
  const fields = [`k:${id}`, JSON.stringify(r), `v:${id}`, "1", `x:${id}`, keyState(r), `r:${id}`, String(k.remaining), `u:${id}`, String(k.used), `c:${id}`, String(k.credited)];
  if (k.lastUsedAt !== null) fields.push(`l:${id}`, String(k.lastUsedAt));
  if (k.refilledAt !== null) fields.push(`f:${id}`, String(k.refilledAt));
  return fields;
}

/** The usage writer field migrated buckets are stored under (each sidecar adds its own; reads sum them). */
const MIGRATED_WRITER = "migrated";
/** Commands in flight at most while wiping; ops per script call while writing. */
const WINDOW = 4000;

type Cmd = [key: string, args: string[]];

/** `s` as a SCAN MATCH pattern matching itself only (glob characters escaped). */
function globLiteral(s: string): string {
  return s.replace(/[*?[\]\\]/g, "\\$&");
}

/** The hash tag of a key ("{a:x}"): the slot family it lives on. */
function tagOf(key: string): string {
  const i = key.indexOf("{");
  return i < 0 ? key : key.slice(i, key.indexOf("}", i) + 1);
}

export class RedisPortable implements PortableEngine {
  readonly #p: string;
  readonly #keys: RedisKeys;
  readonly #cluster: boolean;
  readonly #client: any;
  readonly #window: number;
  /** Stream ids of the copied ledger entries: `${#ledgerBase}-${#ledgerSeq}`, increasing. */
  #ledgerBase: number | undefined;
  #ledgerSeq = 0;
  readonly #clock: () => number;
  #archive: LedgerArchive | undefined;

  private constructor(url: string, prefix: string, windowMs: number, clock: () => number) {
    if (/[{}]/.test(prefix)) throw new Error("the Redis key prefix may not contain braces");
    const parsed = parseRedisUrl(url);
    this.#cluster = parsed.cluster;
    this.#p = prefix;
    this.#keys = new RedisKeys(prefix);
    this.#window = windowMs;
    this.#clock = clock;
    const socket = { connectTimeout: 5000, reconnectStrategy: false as const };
    this.#client = parsed.cluster ? createCluster({ rootNodes: parsed.urls.map((u) => ({ url: u })), defaults: { socket } as any }) : createClient({ url: parsed.urls[0], socket } as any);
    this.#client.on("error", () => {});
  }

  /** `ledgerArchive`: the fleet's ledger archive directory, read by exportState before each account's stream. */
  static async open(url: string, prefix: string, idempotencyWindowMs: number, clock: () => number = Date.now, ledgerArchive?: string): Promise<RedisPortable> {
    const p = new RedisPortable(url, prefix, idempotencyWindowMs, clock);
    if (ledgerArchive) p.#archive = new LedgerArchive(ledgerArchive, prefix);
    await p.#client.connect();
    return p;
  }

  /**
   * A source's ledger archive must be given and be the fleet's. A fleet that has archived (its
   * meta names an archive id) keeps the older ledger entries only in that directory: without it
   * the copy would silently leave them out; another directory would copy another fleet's entries.
   */
  async checkSourceArchive(): Promise<void> {
    const meta = this.#g("meta");
    const fleet = await this.#call(meta, ["HGET", meta, "ledgerArchiveId"]);
    if (!fleet) return;
    if (!this.#archive) {
      throw new Error(`the source has moved ledger entries to its ledger archive (archive id ${String(fleet)}): name that directory with --ledger-archive DIR (or AISA_LEDGER_ARCHIVE), else those entries would not be copied`);
    }
    const here = await this.#archive.readId();
    if (here !== String(fleet)) {
      throw new Error(`--ledger-archive ${this.#archive.dir} is not the source's ledger archive (${here === undefined ? "it has no archive-id" : `its archive-id is ${here}`}; the source's is ${String(fleet)})`);
    }
  }

  // ---- key names (redisStore.ts's layout) -------------------------------------------------
  #g(name: string): string {
    return this.#keys.g(name);
  }
  #a(account: string, name = "h"): string {
    return this.#keys.a(account, name);
  }
  #gb(group: string, name: string): string {
    return this.#keys.gb(group, name);
  }
  #u(name: string): string {
    return this.#keys.u(name);
  }

  #call(key: string, args: readonly string[]): Promise<any> {
    return this.#cluster ? this.#client.sendCommand(key, false, args) : this.#client.sendCommand(args);
  }

  /** Sends the commands pipelined, at most WINDOW unanswered at a time; rejects on the first error. */
  async #send(cmds: readonly Cmd[]): Promise<void> {
    for (let i = 0; i < cmds.length; i += WINDOW) await Promise.all(cmds.slice(i, i + WINDOW).map(([k, a]) => this.#call(k, a)));
  }

  /**
   * Writes the commands through the CAS script: on one Redis all in one call (per WINDOW ops); on
   * a cluster one call per hash tag, pipelined. Each command's first argument after its name is its key.
   */
  async #write(cmds: readonly Cmd[]): Promise<void> {
    const groups = new Map<string, Cmd[]>();
    for (const c of cmds) {
      const t = this.#cluster ? tagOf(c[0]) : "";
      let g = groups.get(t);
      if (!g) groups.set(t, (g = []));
      g.push(c);
    }
    const calls: Promise<unknown>[] = [];
    for (const list of groups.values()) {
      for (let i = 0; i < list.length; i += WINDOW) {
        const keys: string[] = [];
        const index = new Map<string, number>();
        const ops = list.slice(i, i + WINDOW).map(([key, [cmd, , ...rest]]) => {
          let k = index.get(key);
          if (k === undefined) index.set(key, (k = keys.push(key)));
          return [cmd!, String(k), ...rest];
        });
        calls.push(
          this.#call(keys[0]!, ["EVAL", CAS, String(keys.length), ...keys, JSON.stringify({ c: [], o: ops })]).then((r: unknown[]) => {
            if (Number(r[0]) !== 1) throw new Error("a write script was refused");
          }),
        );
      }
    }
    await Promise.all(calls);
  }

  /** The nodes to SCAN: every master on a cluster, else the one server. */
  async #nodes(): Promise<any[]> {
    return this.#cluster ? Promise.all(this.#client.masters.map((m: unknown) => this.#client.nodeClient(m))) : [this.#client];
  }

  /** Every key under the prefix (or, with `under`, under that key name beginning). */
  async *#scanKeys(under = this.#p): AsyncIterable<string> {
    for (const node of await this.#nodes()) {
      let cursor = "0";
      do {
        const [next, keys] = await node.sendCommand(["SCAN", cursor, "MATCH", `${globLiteral(under)}*`, "COUNT", "1000"]);
        cursor = String(next);
        for (const k of keys) yield String(k);
      } while (cursor !== "0");
    }
  }

  async contents(): Promise<string | undefined> {
    let n = 0;
    const sample: string[] = [];
    for await (const k of this.#scanKeys()) {
      if (sample.length < 3) sample.push(k);
      if (++n >= 10_000) break;
    }
    return n === 0 ? undefined : `Redis holds ${n >= 10_000 ? "10000+" : n} key(s) under the prefix ${JSON.stringify(this.#p)} (e.g. ${sample.join(", ")})`;
  }

  /** A hash's fields and values, a page (~CHUNK) at a time. */
  async *#hscanPages(key: string): AsyncIterable<[string, string][]> {
    let cursor = "0";
    do {
      const [next, raw] = await this.#call(key, ["HSCAN", key, cursor, "COUNT", String(CHUNK)]);
      cursor = String(next);
      const page: [string, string][] = [];
      for (let i = 0; i + 1 < raw.length; i += 2) page.push([String(raw[i]), String(raw[i + 1])]);
      if (page.length) yield page;
    } while (cursor !== "0");
  }

  async #hscan(key: string, match?: string): Promise<[string, string][]> {
    const out: [string, string][] = [];
    let cursor = "0";
    do {
      const args = ["HSCAN", key, cursor, ...(match ? ["MATCH", match] : []), "COUNT", "5000"];
      const [next, raw] = await this.#call(key, args);
      cursor = String(next);
      for (let i = 0; i + 1 < raw.length; i += 2) out.push([String(raw[i]), String(raw[i + 1])]);
    } while (cursor !== "0");
    return out;
  }

  /**
   * What the accounts' outboxes still owe group budgets (groupCharge.ts: a Consume whose sidecar
   * died between the account's charge and the group's, or whose second call was still on its way),
   * by group: the units the recovery pass would add — the budget still there, the request's period
   * not over, its charge not yet applied (no live mark) — as the GROUP script's 'charge' decides.
   * The exported budget counts them, so a migration never drops a debt (nor counts one twice).
   */
  async #owedGroupCharges(accounts: readonly string[]): Promise<Map<string, number>> {
    const now = this.#clock();
    const owed = new Map<string, number>();
    // Per group, read once: its period's start (rs), or null when it has no budget.
    const starts = new Map<string, number | null>();
    for (const id of accounts) {
      const gob = this.#a(id, "gob");
      for (const member of (await this.#call(gob, ["ZRANGE", gob, "0", "-1"])) as unknown[]) {
        const g = decodeGroupCharge(String(member));
        if (!g) continue;
        let rs = starts.get(g.group);
        if (rs === undefined) {
          const b = this.#gb(g.group, "b");
          const [spent, since, r] = (await this.#call(b, ["HMGET", b, "spent", "since", "rs"])) as (string | null | undefined)[];
          rs = spent == null && since == null ? null : r == null ? 0 : Number(r);
          starts.set(g.group, rs);
        }
        if (rs === null) continue;
        const ap = this.#gb(g.group, "ap");
        const mark = (await this.#call(ap, ["ZSCORE", ap, g.requestId])) as string | null | undefined;
        if (!groupChargeOwed(g, rs, mark == null ? undefined : Number(mark), now)) continue;
        owed.set(g.group, (owed.get(g.group) ?? 0) + g.units);
      }
    }
    return owed;
  }

  async *exportState(): AsyncIterable<StateChunk> {
    const metaKey = this.#g("meta");
    const meta: { name: string; value: unknown }[] = [];
    for (const name of PORTABLE_META) {
      const v = await this.#call(metaKey, ["HGET", metaKey, `m:${name}`]);
      if (v !== null && v !== undefined) meta.push({ name, value: JSON.parse(String(v)) });
    }
    yield { kind: "meta", items: meta };
    // The webhook endpoints as stored: sealed with the master key (main.ts), carried so.
    const hooks = await this.#call(metaKey, ["HGET", metaKey, `m:${WEBHOOK_META}`]);
    const sealed = hooks === null || hooks === undefined ? undefined : (JSON.parse(String(hooks)) as { sealed?: unknown }).sealed;
    yield { kind: "webhooks", items: typeof sealed === "string" ? [{ sealed }] : [] };

    const ids: string[] = (await this.#call(this.#g("accts"), ["SMEMBERS", this.#g("accts")])).map(String).sort();
    const accounts: (StateChunk & { kind: "accounts" })["items"] = [];
    const present: string[] = [];
    for (const id of ids) {
      const [rec, cr, ch] = await this.#call(this.#a(id), ["HMGET", this.#a(id), "rec", "cr", "ch"]);
      if (!rec) continue;
      accounts.push({ record: JSON.parse(String(rec)) as AccountRecord, credited: Number(cr ?? 0), charged: Number(ch ?? 0) });
      present.push(id);
    }
    yield { kind: "accounts", items: accounts };
    const owed = await this.#owedGroupCharges(present);

    const table = async <T>(name: string): Promise<T[]> => (await this.#hscan(this.#g(name))).map(([, v]) => JSON.parse(v) as T);
    const groups: (StateChunk & { kind: "groups" })["items"] = [];
    for (const record of await table<GroupRecord>("groups")) {
      if (!record.budget) {
        groups.push({ record });
        continue;
      }
      const b = this.#gb(record.name, "b");
      const [spent, since] = await this.#call(b, ["HMGET", b, "spent", "since"]);
      const counters = { spent: Number(spent ?? 0) + (owed.get(record.name) ?? 0), since: Number(since) } satisfies GroupBudgetCounters;
      groups.push(since === null || since === undefined ? { record } : { record, budget: counters });
    }
    yield { kind: "groups", items: groups };
    yield { kind: "tokens", items: await table<TokenRecord>("tokens") };
    yield { kind: "prices", items: await table<PriceRecord>("prices") };

    // Keys: one account's hash in memory at a time.
    let keys: { record: KeyRecord; counters: KeyCounterValues }[] = [];
    for (const id of present) {
      const f = new Map(await this.#hscan(this.#a(id)));
      for (const [field, v] of f) {
        if (!field.startsWith("k:")) continue;
        const k = field.slice(2);
        const l = f.get(`l:${k}`);
        const rf = f.get(`f:${k}`);
        keys.push({
          record: JSON.parse(v) as KeyRecord,
          counters: { remaining: Number(f.get(`r:${k}`) ?? 0), used: Number(f.get(`u:${k}`) ?? 0), credited: Number(f.get(`c:${k}`) ?? 0), lastUsedAt: l ? Number(l) : null, refilledAt: rf ? Number(rf) : null },
        });
        if (keys.length >= CHUNK) {
          yield { kind: "keys", items: keys };
          keys = [];
        }
      }
    }
    yield { kind: "keys", items: keys };
    for await (const page of this.#hscanPages(this.#g("kdel"))) yield { kind: "deletedKeys", items: page.map(([id, v]) => ({ id, tombstone: JSON.parse(v) as DeletedKey })) };

    for (const id of present) {
      const led = this.#a(id, "led");
      let from = "-";
      // Archived entries first (ledgerArchive.ts), then the stream after the newest archived id.
      if (this.#archive) {
        yield* chunked(
          "ledger",
          this.#archive.read(id),
          (e) => {
            from = `(${e.id}`;
            return e.rec;
          },
          true,
        );
      }
      for (;;) {
        const entries: [string, string[]][] = await this.#call(led, ["XRANGE", led, from, "+", "COUNT", String(CHUNK)]);
        if (!entries || entries.length === 0) break;
        const items: ConsumeRecord[] = [];
        for (const e of entries) {
          const [, fields] = Array.isArray(e) ? e : [(e as any).id, (e as any).message];
          const m = new Map(hashPairs(fields));
          const r = JSON.parse(m.get("j")!) as ConsumeRecord;
          r.keyRemaining = Number(m.get("kr") ?? 0);
          r.accountBalance = Number(m.get("ab") ?? 0);
          r.reservationId = m.get("rs") ?? "";
          items.push(r);
        }
        yield { kind: "ledger", items };
        const last = entries[entries.length - 1]!;
        from = `(${Array.isArray(last) ? last[0] : (last as any).id}`;
      }
    }

    for await (const page of this.#hscanPages(this.#g("audit"))) yield { kind: "audit", items: page.map(([, v]) => JSON.parse(v) as AuditRecord) };

    // Usage: each bucket summed over its writers (the fleet's totals, as queries read them).
    for (const gran of ["m", "h", "d"] as const) {
      for (const dim of ["key", "account", "group", "model"] as const) {
        const index = this.#u(`t:${gran}|${dim}`);
        const members: string[] = (await this.#call(index, ["ZRANGE", index, "0", "-1"])).map(String);
        for (let i = 0; i < members.length; i += CHUNK) {
          const items: UsageBucket[] = [];
          for (const m of members.slice(i, i + CHUNK)) {
            const bar = m.indexOf("|");
            const key = this.#u(`b:${gran}|${dim}|${m.slice(bar + 1)}|${m.slice(0, bar)}`);
            let out: UsageBucket | undefined;
            for (const v of (await this.#call(key, ["HVALS", key])) as string[]) {
              const b = JSON.parse(String(v)) as UsageBucket;
              if (!out) out = { ...b, denies: { ...b.denies } };
              else sumCounters(out, b);
            }
            if (out) items.push(out);
          }
          yield { kind: "usage", items };
        }
      }
    }

    // Threshold-alert marks (P{g}:am:<id> = expiresAt, expiring then): those still set.
    const markPrefix = this.#g("am:");
    let marks: string[] = [];
    const readMarks = async (): Promise<StateChunk> => {
      const values = await Promise.all(marks.map((k) => this.#call(k, ["GET", k])));
      const items = marks.map((k, i) => ({ id: k.slice(markPrefix.length), expiresAt: Number(values[i]) })).filter((m, i) => values[i] !== null && Number.isFinite(m.expiresAt));
      marks = [];
      return { kind: "alertMarks", items };
    };
    for await (const k of this.#scanKeys(markPrefix)) {
      marks.push(k);
      if (marks.length >= CHUNK) yield await readMarks();
    }
    yield await readMarks();
  }

  #cmds(c: StateChunk): Cmd[] {
    const out: Cmd[] = [];
    const cmd = (key: string, ...args: (string | number)[]) => out.push([key, args.map(String)]);
    const now = this.#clock();
    switch (c.kind) {
      case "meta":
        for (const m of c.items) cmd(this.#g("meta"), "HSET", this.#g("meta"), `m:${m.name}`, JSON.stringify(m.value));
        break;
      case "webhooks":
        for (const w of c.items) cmd(this.#g("meta"), "HSET", this.#g("meta"), `m:${WEBHOOK_META}`, JSON.stringify({ sealed: w.sealed }));
        break;
      case "alertMarks":
        for (const m of c.items) {
          const ttl = Math.ceil(m.expiresAt - now);
          if (ttl > 0) cmd(this.#g(`am:${m.id}`), "SET", this.#g(`am:${m.id}`), String(m.expiresAt), "PX", ttl);
        }
        break;
      case "accounts":
        for (const a of c.items) {
          const h = this.#a(a.record.id);
          cmd(h, "HSET", h, "rec", JSON.stringify(a.record), "cr", a.credited, "ch", a.charged, "held", 0);
          cmd(this.#g("accts"), "SADD", this.#g("accts"), a.record.id);
        }
        break;
      case "groups":
        for (const g of c.items) {
          cmd(this.#g("groups"), "HSET", this.#g("groups"), g.record.name, JSON.stringify(g.record));
          if (g.record.budget) {
            const b = this.#gb(g.record.name, "b");
            if (g.budget) cmd(b, "HSET", b, "spent", g.budget.spent, "since", g.budget.since, "held", 0);
            else cmd(b, "HSET", b, "spent", 0, "held", 0);
          }
        }
        break;
      case "tokens":
        for (const t of c.items) cmd(this.#g("tokens"), "HSET", this.#g("tokens"), t.id, JSON.stringify(t));
        break;
      case "prices":
        for (const p of c.items) cmd(this.#g("prices"), "HSET", this.#g("prices"), p.model, JSON.stringify(p));
        break;
      case "keys":
        for (const { record: r, counters: k } of c.items) {
          const h = this.#a(r.accountId);
          cmd(h, "HSET", h, ...keyHashFields(r, k));
          // The hot projection the engine loads its book from (redisStore.ts: P{a:<account>}:p).
          cmd(this.#a(r.accountId, "p"), "HSET", this.#a(r.accountId, "p"), r.id, encodeProjection(r));
        }
        break;
      case "deletedKeys":
        for (const t of c.items) {
          const text = JSON.stringify(t.tombstone);
          cmd(this.#g("kdel"), "HSET", this.#g("kdel"), t.id, text);
          cmd(this.#a(t.tombstone.accountId), "HSET", this.#a(t.tombstone.accountId), `d:${t.id}`, text);
        }
        break;
      case "ledger":
        for (const r of c.items) {
          const fields = ["j", JSON.stringify(r), "kr", String(r.keyRemaining), "ab", String(r.accountBalance), "rs", r.reservationId];
          // Stream ids are the migration's time (entries of the source come in request-id order,
          // not time order): the copied ledger stays a full window after the migration.
          // Ids chosen here (the migration's start time, then a sequence), so the idempotency
          // record can name its entry: the engine keeps the entry's id there (CONSUME, FIND).
          this.#ledgerBase ??= now;
          const lid = `${this.#ledgerBase}-${this.#ledgerSeq++}`;
          cmd(this.#a(r.accountId, "led"), "XADD", this.#a(r.accountId, "led"), lid, ...fields);
          const ttl = r.at + this.#window - now;
          if (ttl > 0) {
            const idem = this.#a(r.accountId, `i:${r.requestId}`);
            cmd(idem, "SET", idem, lid, "PX", Math.ceil(ttl));
            cmd(this.#g(`rq:${r.requestId}`), "SET", this.#g(`rq:${r.requestId}`), r.accountId, "PX", Math.ceil(ttl));
          }
        }
        break;
      case "audit":
        for (const r of c.items) {
          cmd(this.#g("audit"), "HSET", this.#g("audit"), r.id, JSON.stringify(r));
          cmd(this.#g("auditz"), "ZADD", this.#g("auditz"), 0, r.id);
          if (r.account !== undefined) cmd(this.#g(`audita:${r.account}`), "ZADD", this.#g(`audita:${r.account}`), 0, r.id);
        }
        break;
      case "usage":
        for (const b of c.items) {
          const key = this.#u(`b:${b.gran}|${b.dim}|${b.id}|${b.start}`);
          const member = `${b.start}|${b.id}`;
          cmd(key, "HSET", key, MIGRATED_WRITER, JSON.stringify(b));
          cmd(this.#u(`t:${b.gran}|${b.dim}`), "ZADD", this.#u(`t:${b.gran}|${b.dim}`), b.start, member);
          const owner = b.dim === "account" ? b.id : b.dim === "key" ? (b.account ?? "") : "";
          if (owner) cmd(this.#u(`a:${b.gran}|${b.dim}|${owner}`), "ZADD", this.#u(`a:${b.gran}|${b.dim}|${owner}`), b.start, member);
        }
        break;
    }
    return out;
  }

  async importState(chunks: AsyncIterable<StateChunk>, onChunk: (c: StateChunk) => void): Promise<void> {
    // One chunk written while the next is read from the source.
    let pending: Promise<void> = Promise.resolve();
    for await (const c of chunks) {
      const cmds = this.#cmds(c);
      await pending;
      pending = this.#write(cmds).then(() => onChunk(c));
      pending.catch(() => {}); // awaited on the next turn (or below); not an unhandled rejection meanwhile
    }
    await pending;
    // The marker last: a sidecar that finds it does not create the default account and group.
    await this.#write([[this.#g("meta"), ["HSET", this.#g("meta"), "schema", "1"]]]);
  }

  async wipe(): Promise<void> {
    let batch: Cmd[] = [];
    for await (const k of this.#scanKeys()) {
      batch.push([k, ["UNLINK", k]]);
      if (batch.length >= WINDOW) {
        await this.#send(batch);
        batch = [];
      }
    }
    await this.#send(batch);
  }

  async close(): Promise<void> {
    try {
      await this.#client.close();
    } catch {
      this.#client.destroy?.();
    }
  }
}
