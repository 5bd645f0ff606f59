// `aisa-authz migrate` on the LevelDB engine (src/store/portable.ts): reads a data directory's
// sublevels as stored (no load into a key book, no upgrade, no write: the source is only read)
// and writes a new one in the same layout the engine writes (schema.ts), with its own encoders
// (codecs.ts, keyProjection.ts, usageBuckets.ts). Holding LevelDB's lock while it works, it
// refuses a directory a sidecar has open ("data directory in use").
//
// Webhook endpoints are not in the LevelDB store but in <data>/webhooks.json (service/webhooks.ts:
// {endpoints, deliveries, dropped}, mode 0600): the export seals the file's endpoints with the
// master key (the portable form, the Redis engine's), the import opens them and writes the file
// (endpoints only: a delivery queue is a sidecar's own).
import { randomBytes } from "node:crypto";
import { mkdir, open, readFile, rename, unlink } from "node:fs/promises";
import { readdirSync } from "node:fs";
import { join } from "node:path";
import type { AccountRecord, AuditRecord, GroupBudgetCounters, GroupRecord, KeyRecord, PriceRecord, TokenRecord } from "../../domain/types.js";
import type { DeletedKey } from "../book/keyBook.js";
import type { AccountCounterValues } from "../book/tables.js";
import { encodeProjection, PROJECTION_VERSION } from "../keyProjection.js";
import { SecretBox } from "../../keys/secrets.js";
import type { WebhookEndpoint } from "../../service/webhooks.js";
import { checkMasterKey, chunked, PORTABLE_META, WEBHOOK_META, type MasterKeySource, type PortableEngine, type StateChunk } from "../portable.js";
import type { ConsumeRecord, UsageBucket } from "../types.js";
import { decodeCounters, encodeCounters, encodeLedgerRecord, parseLedgerRecord, parseRecord, RAW_SYNC, toRawOps, type Op } from "./codecs.js";
import { LevelDisk } from "./disk.js";
import { SCHEMA_VERSION, USAGE_LAYOUT, type SubName } from "./schema.js";
import { usagePuts } from "./usageBuckets.js";

function hasStore(dir: string): boolean {
  try {
    return readdirSync(`${dir}/db`).some((f) => f === "CURRENT" || /^MANIFEST-\d+$|\.(ldb|sst|log)$/.test(f));
  } catch {
    return false;
  }
}

interface WebhookFile {
  endpoints?: WebhookEndpoint[];
  endpointsShared?: boolean;
  deliveries?: unknown[];
}

/** `<dir>/webhooks.json` as stored (undefined when there is none). */
async function webhookFile(dir: string): Promise<WebhookFile | undefined> {
  const file = join(dir, "webhooks.json");
  let text: string;
  try {
    text = await readFile(file, "utf8");
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return undefined;
    throw new Error(`cannot read ${file}: ${(err as Error).message}`);
  }
  try {
    return JSON.parse(text) as WebhookFile;
  } catch (err) {
    throw new Error(`${file} is not JSON (${(err as Error).message})`);
  }
}

/** The endpoints `<dir>/webhooks.json` holds ([] when none, or when they are a shared store's). */
async function fileEndpoints(dir: string): Promise<WebhookEndpoint[]> {
  const j = await webhookFile(dir);
  return !j || j.endpointsShared ? [] : (j.endpoints ?? []);
}

export class LevelPortable implements PortableEngine {
  readonly #dir: string;
  readonly #masterKey: MasterKeySource;
  #disk: LevelDisk | undefined;
  /** The master key's check value the copy carries (the meta chunk), for the webhooks' key check. */
  #keyCheck: unknown;

  private constructor(dir: string, masterKey: MasterKeySource | undefined) {
    this.#dir = dir;
    this.#masterKey = masterKey ?? (() => Promise.reject(new Error("no master key was given (AISA_MASTER_KEY)")));
  }

  /**
   * The source: an existing store, opened (its lock taken) but never written. `masterKey`: to
   * seal the webhook endpoints of its webhooks.json (asked only when there are some).
   */
  static async openSource(dir: string, masterKey?: MasterKeySource): Promise<LevelPortable> {
    if (!hasStore(dir)) throw new Error(`--from-data: ${dir} holds no aisa-authz store (no ${dir}/db)`);
    const p = new LevelPortable(dir, masterKey);
    p.#disk = new LevelDisk(dir);
    await p.#disk.open();
    const schema = await p.#disk.readMeta("schema");
    const hot = await p.#disk.readMeta("hot");
    const usage = await p.#disk.readMeta("usage");
    if (schema !== SCHEMA_VERSION || hot !== PROJECTION_VERSION || usage !== USAGE_LAYOUT) {
      await p.close();
      throw new Error(`--from-data: ${dir} was written by an older build (schema ${String(schema)}); start \`aisa-authz serve --data ${dir}\` once with this build (it upgrades the store on open), stop it, then migrate`);
    }
    return p;
  }

  /** The target: created when missing (mode 0700, as serve does). `masterKey`: to open copied webhook endpoints. */
  static async openTarget(dir: string, masterKey?: MasterKeySource): Promise<LevelPortable> {
    await mkdir(dir, { recursive: true, mode: 0o700 });
    const p = new LevelPortable(dir, masterKey);
    p.#disk = new LevelDisk(dir);
    await p.#disk.open();
    return p;
  }

  get #d(): LevelDisk {
    if (!this.#disk) throw new Error("store not open");
    return this.#disk;
  }

  async contents(): Promise<string | undefined> {
    const found: string[] = [];
    for (const name of ["keys", "accts", "groups", "tokens", "prices", "ledger", "audit", "usage", "kdel", "alerts", "meta"] as const) {
      let n = 0;
      for await (const _ of this.#d.rawEntries(name)) if (++n >= 1000) break;
      if (n > 0) found.push(`${n >= 1000 ? "1000+" : n} ${name} record(s)`);
    }
    // A webhooks.json with endpoints or a delivery queue (a sidecar's): the import would replace it.
    const j = await webhookFile(this.#dir).catch(() => undefined);
    const hooks = j && !j.endpointsShared ? (j.endpoints?.length ?? 0) : 0;
    const queued = j?.deliveries?.length ?? 0;
    if (hooks > 0 || queued > 0) found.push(`webhooks.json with ${hooks} webhook endpoint(s) and ${queued} delivery record(s)`);
    return found.length ? `${this.#dir}/db holds ${found.join(", ")}` : undefined;
  }

  async *#records<T>(name: SubName): AsyncIterable<[string, T]> {
    for await (const [k, text] of this.#d.rawEntries(name)) yield [k, parseRecord<T>(name, k, text)];
  }

  async *#ledgerRecords(): AsyncIterable<ConsumeRecord> {
    for await (const [k, text] of this.#d.rawEntries("ledger")) yield parseLedgerRecord(k, text);
  }

  async *exportState(): AsyncIterable<StateChunk> {
    const d = this.#d;
    const meta: { name: string; value: unknown }[] = [];
    for (const name of PORTABLE_META) {
      const v = await d.readMeta(name);
      if (v !== undefined) meta.push({ name, value: v });
    }
    yield { kind: "meta", items: meta };
    this.#keyCheck = meta.find((m) => m.name === "masterKeyCheck")?.value;
    const endpoints = await fileEndpoints(this.#dir);
    if (endpoints.length === 0) yield { kind: "webhooks", items: [] };
    else yield { kind: "webhooks", items: [{ sealed: new SecretBox(await this.#key(`${this.#dir}/webhooks.json holds ${endpoints.length} webhook endpoint(s)`)).seal(JSON.stringify(endpoints), WEBHOOK_META) }] };

    const accounts: StateChunk & { kind: "accounts" } = { kind: "accounts", items: [] };
    for await (const [id, record] of this.#records<AccountRecord>("accts")) {
      const ctext = await d.rawGet("actr", id);
      const c = ctext === undefined ? { balance: 0, credited: 0, charged: 0 } : parseRecord<AccountCounterValues>("actr", id, ctext);
      accounts.items.push({ record, credited: c.credited, charged: c.charged });
    }
    yield accounts;

    const groups: StateChunk & { kind: "groups" } = { kind: "groups", items: [] };
    for await (const [name, record] of this.#records<GroupRecord>("groups")) {
      const ctext = record.budget ? await d.rawGet("gctr", name) : undefined;
      groups.items.push(ctext === undefined ? { record } : { record, budget: parseRecord<GroupBudgetCounters>("gctr", name, ctext) });
    }
    yield groups;

    const tokens: TokenRecord[] = [];
    for await (const [, r] of this.#records<TokenRecord>("tokens")) tokens.push(r);
    yield { kind: "tokens", items: tokens };
    const prices: PriceRecord[] = [];
    for await (const [, r] of this.#records<PriceRecord>("prices")) prices.push(r);
    yield { kind: "prices", items: prices };

    // Keys merge-joined with their counters (both sublevels ordered by id).
    const records = this.#records<KeyRecord>("keys");
    const ctrs = d.rawEntries("kctr")[Symbol.asyncIterator]();
    let ctr = await ctrs.next();
    const withCounters = async function* () {
      for await (const [id, record] of records) {
        while (!ctr.done && ctr.value[0] < id) ctr = await ctrs.next();
        if (!ctr.done && ctr.value[0] === id) yield { record, counters: decodeCounters(id, ctr.value[1]) };
        else {
          const start = record.unlimited ? 0 : record.quotaTotal;
          yield { record, counters: { remaining: start, used: 0, credited: start, lastUsedAt: null, refilledAt: null } };
        }
      }
    };
    yield* chunked("keys", withCounters(), (k) => k);
    await ctrs.return?.();
    yield* chunked("deletedKeys", this.#records<DeletedKey>("kdel"), ([id, tombstone]) => ({ id, tombstone }));
    yield* chunked("ledger", this.#ledgerRecords(), (r) => r);
    yield* chunked("audit", this.#records<AuditRecord>("audit"), ([, r]) => r);
    // Usage: each bucket once, from its time-ordered entry (the account entries are copies).
    yield* chunked("usage", this.#records<UsageBucket>("usage"), ([k, b]) => (k.startsWith("t|") ? b : undefined));
    // Threshold-alert marks still in force (an expired one is as good as absent).
    const now = Date.now();
    yield* chunked("alertMarks", this.#d.rawEntries("alerts"), ([id, text]) => {
      const expiresAt = Number(text); // a JSON number (alertMarks.ts)
      return Number.isFinite(expiresAt) && expiresAt > now ? { id, expiresAt } : undefined;
    });
  }

  /** The master key, checked against the copy's check value; `why` names what needs it. */
  async #key(why: string): Promise<Buffer> {
    let key: Buffer;
    try {
      key = await this.#masterKey();
    } catch (err) {
      throw new Error(`${why}, sealed with the master key on the way: ${(err as Error).message}`);
    }
    checkMasterKey(key, this.#keyCheck, `the store in ${this.#dir}`);
    return key;
  }

  /** Writes `<dir>/webhooks.json` with these endpoints and no queue: temp file (0600), fsync, rename. */
  async #writeEndpoints(sealed: string): Promise<void> {
    const endpoints = JSON.parse(new SecretBox(await this.#key("the copy carries webhook endpoints")).open(sealed, WEBHOOK_META)) as WebhookEndpoint[];
    const file = join(this.#dir, "webhooks.json");
    const tmp = `${file}.${randomBytes(4).toString("hex")}.tmp`;
    const fh = await open(tmp, "wx", 0o600);
    try {
      await fh.writeFile(JSON.stringify({ endpoints, deliveries: [], dropped: 0 }));
      await fh.sync();
    } finally {
      await fh.close();
    }
    await rename(tmp, file);
  }

  #ops(c: StateChunk): Op[] {
    const s = this.#d.subs;
    const ops: Op[] = [];
    const put = (sublevel: any, key: string, value: unknown, raw?: true) => ops.push(raw ? { type: "put", sublevel, key, value, raw } : { type: "put", sublevel, key, value });
    switch (c.kind) {
      case "meta":
        for (const m of c.items) put(s.meta, m.name, m.value);
        break;
      case "webhooks": // not in the store: importState writes webhooks.json
        break;
      case "alertMarks":
        for (const m of c.items) put(s.alerts, m.id, m.expiresAt);
        break;
      case "accounts":
        for (const a of c.items) {
          put(s.accts, a.record.id, a.record);
          put(s.actr, a.record.id, { balance: a.credited - a.charged, credited: a.credited, charged: a.charged } satisfies AccountCounterValues);
        }
        break;
      case "groups":
        for (const g of c.items) {
          put(s.groups, g.record.name, g.record);
          if (g.budget) put(s.gctr, g.record.name, g.budget);
        }
        break;
      case "tokens":
        for (const t of c.items) put(s.tokens, t.id, t);
        break;
      case "prices":
        for (const p of c.items) put(s.prices, p.model, p);
        break;
      case "keys":
        for (const { record: r, counters } of c.items) {
          put(s.keys, r.id, r);
          put(s.khot, r.id, encodeProjection(r), true);
          put(s.khash, r.secretHash, r.id);
          if (r.prevSecretHash) put(s.khash, r.prevSecretHash, r.id);
          put(s.kctr, r.id, encodeCounters(counters), true);
        }
        break;
      case "deletedKeys":
        for (const t of c.items) put(s.kdel, t.id, t.tombstone);
        break;
      case "ledger":
        for (const r of c.items) put(s.ledger, r.requestId, encodeLedgerRecord(r), true);
        break;
      case "audit":
        for (const r of c.items) {
          put(s.audit, r.id, r);
          if (r.account !== undefined) put(s.auditacct, `${r.account}|${r.id}`, "", true);
        }
        break;
      case "usage":
        for (const b of c.items) ops.push(...usagePuts(b, s.usage));
        break;
    }
    return ops;
  }

  async importState(chunks: AsyncIterable<StateChunk>, onChunk: (c: StateChunk) => void): Promise<void> {
    const d = this.#d;
    let keys = 0;
    for await (const c of chunks) {
      if (c.kind === "meta") this.#keyCheck = c.items.find((m) => m.name === "masterKeyCheck")?.value;
      if (c.kind === "webhooks" && c.items.length > 0) await this.#writeEndpoints(c.items[0]!.sealed);
      const ops = this.#ops(c);
      if (ops.length) await d.db.batch(toRawOps(ops) as any, RAW_SYNC);
      if (c.kind === "keys") keys += c.items.length;
      onChunk(c);
    }
    // The markers last: a store without them is not one serve would open as current.
    const m = d.subs.meta;
    await d.db.batch(
      toRawOps([
        { type: "put", sublevel: m, key: "auditIndexFrom", value: "" },
        { type: "put", sublevel: m, key: "keysHint", value: keys },
        { type: "put", sublevel: m, key: "hot", value: PROJECTION_VERSION },
        { type: "put", sublevel: m, key: "usage", value: USAGE_LAYOUT },
        { type: "put", sublevel: m, key: "schema", value: SCHEMA_VERSION },
      ]) as any,
      RAW_SYNC,
    );
  }

  /** Clears the store and removes webhooks.json (its endpoints and queue). */
  async wipe(): Promise<void> {
    await this.#d.db.clear();
    await unlink(join(this.#dir, "webhooks.json")).catch((err: NodeJS.ErrnoException) => {
      if (err.code !== "ENOENT") throw err;
    });
  }

  async close(): Promise<void> {
    if (this.#disk && this.#disk.db.status !== "closed") await this.#disk.db.close();
    this.#disk = undefined;
  }
}
