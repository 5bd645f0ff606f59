// Key records in the LevelDB engine: each key's full record (`keys`), its hot projection
// (`khot`), hash index entries (`khash`), counters (`kctr`) and, once deleted, its tombstone
// (`kdel`), written together in one batch with the audit entry. Validated against the key book
// first, applied to it after the batch commits. A record that does not decode is left out of
// listings, refused by reads and changes, and can still be deleted (from what the index knows).
import { failedPrecondition, notFound, SidecarError } from "../../domain/errors.js";
import type { KeyRecord, KeyState } from "../../domain/types.js";
import type { DeletedKey, KeyBook, KeyCounterValues } from "../book/keyBook.js";
import { encodeProjection, hotKeyOf } from "../keyProjection.js";
import type { AuditInput, KeyChange } from "../types.js";
import type { AuditLog } from "./audit.js";
import { encodeCounters, parseRecord, RAW_SYNC, RESTORE, type Op } from "./codecs.js";
import type { LevelDisk } from "./disk.js";

export interface KeyRecordsDeps {
  disk: () => LevelDisk;
  book: KeyBook;
  clock: () => number;
  onError: (err: unknown) => void;
  /** Runs an admin mutation under the engine's serial lock. */
  serial: <T>(fn: () => Promise<T>) => Promise<T>;
  submit: (ops: Op[]) => Promise<void>;
  audit: () => AuditLog;
}

export class KeyRecords {
  readonly #disk: () => LevelDisk;
  readonly #book: KeyBook;
  readonly #clock: () => number;
  readonly #onError: (err: unknown) => void;
  readonly #serial: <T>(fn: () => Promise<T>) => Promise<T>;
  readonly #submit: (ops: Op[]) => Promise<void>;
  readonly #audit: () => AuditLog;

  constructor(d: KeyRecordsDeps) {
    this.#disk = d.disk;
    this.#book = d.book;
    this.#clock = d.clock;
    this.#onError = d.onError;
    this.#serial = d.serial;
    this.#submit = d.submit;
    this.#audit = d.audit;
  }

  /** The put of a key's counters as the book holds them now (`refilledAt` overrides its refill start). */
  countersOp(id: string, refilledAt?: number | null): Op {
    return { type: "put", sublevel: this.#disk().subs.kctr, key: id, value: encodeCounters(this.#book.keyCounters(id, refilledAt)), raw: true };
  }

  /** The full record and its hot projection: every write of a key writes both (one batch). */
  #putKeyOps(record: KeyRecord): [Op, Op] {
    return [
      { type: "put", sublevel: this.#disk().subs.keys, key: record.id, value: record },
      { type: "put", sublevel: this.#disk().subs.khot, key: record.id, value: encodeProjection(record), raw: true },
    ];
  }

  insertKey(record: KeyRecord, audit: AuditInput): Promise<KeyState> {
    return this.#serial(async () => {
      this.#book.checkNewKey(record);
      const hot = hotKeyOf(record);
      const start = record.unlimited ? 0 : record.quotaTotal;
      const counters: KeyCounterValues = { remaining: start, used: 0, credited: start, lastUsedAt: null, refilledAt: null };
      await this.#submit([
        ...this.#putKeyOps(record),
        { type: "put", sublevel: this.#disk().subs.khash, key: record.secretHash, value: record.id },
        { type: "put", sublevel: this.#disk().subs.kctr, key: record.id, value: encodeCounters(counters), raw: true },
        ...this.#audit().ops({ ...audit, after: audit.after ?? record }),
      ]);
      this.#book.addKey(hot, { remaining: counters.remaining, used: 0, credited: counters.credited, lastUsedAt: null }, record.createdAt);
      return this.#book.keyState(record);
    });
  }

  /**
   * Bulk import (migrations, benchmarks): inserts many keys in large atomic
   * batches, with one audit entry per batch. Every record must be new and
   * reference an existing account and group; a batch with a bad record writes
   * nothing.
   */
  importKeys(records: readonly KeyRecord[], audit: AuditInput, batchSize = 10_000): Promise<number> {
    return this.#serial(async () => {
      let n = 0;
      for (let i = 0; i < records.length; i += batchSize) {
        const chunk = records.slice(i, i + batchSize);
        const ops: Op[] = [];
        for (const record of chunk) {
          this.#book.checkNewKey(record);
          const start = record.unlimited ? 0 : record.quotaTotal;
          ops.push(
            ...this.#putKeyOps(record),
            { type: "put", sublevel: this.#disk().subs.khash, key: record.secretHash, value: record.id },
            { type: "put", sublevel: this.#disk().subs.kctr, key: record.id, value: encodeCounters({ remaining: start, used: 0, credited: start, lastUsedAt: null, refilledAt: null }), raw: true },
          );
        }
        ops.push(...this.#audit().ops({ ...audit, detail: `${chunk.length} keys` }));
        await this.#submit(ops);
        for (const record of chunk) {
          const start = record.unlimited ? 0 : record.quotaTotal;
          this.#book.addKey(hotKeyOf(record), { remaining: start, used: 0, credited: start, lastUsedAt: null }, record.createdAt);
        }
        n += chunk.length;
      }
      return n;
    });
  }

  async getKey(id: string): Promise<KeyState | undefined> {
    if (!this.#book.hasKey(id)) return undefined;
    const record = this.#decodeKey(id, await this.#disk().rawGet("keys", id));
    if (record === "unreadable") throw failedPrecondition(`key ${id}: its record is unreadable (see the server log); delete it, or ${RESTORE}`);
    return record ? this.#book.keyState(record) : undefined;
  }

  /** Every key (of `accountId`); a record that does not decode is left out and logged (#decodeKey). */
  async *scanKeys(accountId?: string): AsyncIterable<KeyState> {
    for await (const [id, text] of this.#disk().rawEntries("keys")) {
      if (!this.#book.hasKey(id)) continue;
      const rec = this.#decodeKey(id, text);
      if (!rec || rec === "unreadable") continue;
      if (accountId !== undefined && rec.accountId !== accountId) continue;
      yield this.#book.keyState(rec);
    }
  }

  async #readKeys(ids: readonly string[]): Promise<(KeyRecord | undefined | "unreadable")[]> {
    if (ids.length === 0) return [];
    const texts: (string | undefined)[] = await this.#disk().db.getMany(ids.map((id) => this.#disk().subs.keys.prefix + id), RAW_SYNC);
    return texts.map((t, i) => this.#decodeKey(ids[i]!, t ?? undefined));
  }

  updateKeys(ids: readonly string[], change: (current: KeyState) => KeyChange, audit: (before: KeyState, after: KeyState) => AuditInput): Promise<KeyState[]> {
    return this.#serial(async () => {
      const records = await this.#readKeys(ids);
      const befores: KeyState[] = records.map((r, i) => {
        if (r === "unreadable") throw failedPrecondition(`key ${ids[i]}: its record is unreadable (see the server log); delete it, or ${RESTORE}`);
        if (!r || !this.#book.hasKey(r.id)) throw notFound("key", ids[i]!);
        return this.#book.keyState(r);
      });
      // Compute every change first: a throw aborts the whole call with nothing written.
      const changes = befores.map((b) => change(b));
      for (const c of changes) this.#book.checkKeyChange(c.record);
      const hots = changes.map((c) => hotKeyOf(c.record));
      // A key's refill period starts (or goes on) at `since`. One that starts now is written
      // with the counters in this batch: a reload must not start it at createdAt, which would
      // reset the quota at once (a free refill) at the next open.
      const now = this.#clock();
      const sinces = changes.map((c) => this.#book.refillSinceFor(c.record, now));
      const ops: Op[] = [];
      const afters: KeyState[] = [];
      for (let i = 0; i < changes.length; i++) {
        const before = befores[i]!;
        const c = changes[i]!;
        const refillStarts = this.#book.refillStarts(c.record);
        this.#book.changeQuota(c.record.id, c.remainingSet, c.remainingDelta);
        ops.push(...this.#putKeyOps(c.record));
        if (c.record.secretHash !== before.record.secretHash) {
          ops.push({ type: "put", sublevel: this.#disk().subs.khash, key: c.record.secretHash, value: c.record.id });
          if (before.record.prevSecretHash && before.record.prevSecretHash !== c.record.prevSecretHash) {
            ops.push({ type: "del", sublevel: this.#disk().subs.khash, key: before.record.prevSecretHash });
          }
          if (c.record.prevSecretHash !== before.record.secretHash) {
            ops.push({ type: "del", sublevel: this.#disk().subs.khash, key: before.record.secretHash });
          }
        }
        if (c.remainingSet !== undefined || c.remainingDelta || refillStarts) ops.push(this.countersOp(c.record.id, refillStarts ? sinces[i]! : undefined));
        const after: KeyState = { record: c.record, counters: { ...before.counters, remaining: this.#book.keyState(c.record).counters.remaining } };
        afters.push(after);
        ops.push(...this.#audit().ops(audit(before, after)));
      }
      await this.#submit(ops);
      for (let i = 0; i < changes.length; i++) this.#book.updateKey(hots[i]!, sinces[i]!, befores[i]!.record.group);
      return afters.map((a) => this.#book.keyState(a.record));
    });
  }

  deleteKeys(ids: readonly string[], check: (current: KeyState) => void, audit: (before: KeyState) => AuditInput): Promise<void> {
    return this.#serial(async () => {
      // An unreadable record is deleted from what the index knows of it (its hashes included).
      const records = (await this.#readKeys(ids)).map((r, i) => (r === "unreadable" ? (this.#book.hasKey(ids[i]!) ? this.#recordFromIndex(ids[i]!) : undefined) : r));
      const befores = records.map((r, i) => {
        if (!r || !this.#book.hasKey(r.id)) throw notFound("key", ids[i]!);
        const s = this.#book.keyState(r);
        check(s);
        return s;
      });
      const ops: Op[] = [];
      const tombs = new Map<string, DeletedKey>();
      for (const b of befores) {
        const r = b.record;
        ops.push({ type: "del", sublevel: this.#disk().subs.keys, key: r.id });
        ops.push({ type: "del", sublevel: this.#disk().subs.khot, key: r.id });
        ops.push({ type: "del", sublevel: this.#disk().subs.kctr, key: r.id });
        // The tombstone: a request admitted before this delete is still charged to the account.
        const tomb = this.#book.tombstoneOf(r, this.#clock());
        tombs.set(r.id, tomb);
        ops.push({ type: "put", sublevel: this.#disk().subs.kdel, key: r.id, value: tomb });
        ops.push({ type: "del", sublevel: this.#disk().subs.khash, key: r.secretHash });
        if (r.prevSecretHash) ops.push({ type: "del", sublevel: this.#disk().subs.khash, key: r.prevSecretHash });
        ops.push(...this.#audit().ops(audit(b)));
      }
      this.#book.beginDelete(tombs);
      try {
        await this.#submit(ops);
      } finally {
        this.#book.endDelete(tombs.keys());
      }
      this.#book.removeKeys(befores.map((b) => b.record.id));
    });
  }

  /**
   * A key record as stored, or `unreadable` when its value does not decode (a torn disk, a bad
   * copy): such a key is still in the index (its projection decoded), so it can be deleted.
   */
  #decodeKey(id: string, text: string | undefined): KeyRecord | undefined | "unreadable" {
    if (text === undefined) return undefined;
    try {
      return parseRecord<KeyRecord>("keys", id, text);
    } catch (err) {
      this.#onError(new SidecarError("FAILED_PRECONDITION", `key ${id}: ${(err as Error).message}; it is left out of listings and cannot be shown or changed; delete it (aisa-authz keys delete ${id}) or ${RESTORE}`, { cause: err }));
      return "unreadable";
    }
  }

  /** What the index knows of a key whose record is unreadable: enough to check access, delete and audit it. */
  #recordFromIndex(id: string): KeyRecord {
    const e = this.#book.index.entry(this.#book.index.slotOf(id));
    return {
      id,
      name: "",
      accountId: e.accountId,
      group: e.group,
      status: e.enabled ? "enabled" : "disabled",
      unlimited: e.unlimited,
      quotaTotal: 0,
      expiresAt: e.expiresAt,
      models: e.models ?? [],
      ips: [],
      createdAt: 0,
      updatedAt: 0,
      limits: e.limits,
      refill: "none",
      metadata: {},
      secretHash: e.secretHash,
      secretEnc: "",
      masked: "",
      prevSecretHash: e.prevSecretHash,
      prevSecretExpiresAt: e.prevSecretExpiresAt,
    };
  }
}
