// The audit log in the `audit` sublevel (time-ordered ids) and its by-account index
// (`auditacct`: account|auditId, written in the entry's batch), for account-scoped ListAudit.
// Entries older than the index (meta "auditIndexFrom", an older build's) are scanned.
import { randomFillSync } from "node:crypto";
import type { AuditRecord } from "../../domain/types.js";
import type { AuditInput, ListAuditQuery } from "../types.js";
import type { Op } from "./codecs.js";

// The 4 random characters of an audit id: base62 of 3 CSPRNG bytes (as base62(randomBytes(3), 4)
// wrote them), taken from a pooled buffer: a randomBytes(3) call cost ~15 µs a key in a bulk
// SetKeysEnabled (11 % of its CPU profile; bench/README.md).
const BASE62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
const pool = Buffer.allocUnsafe(3 * 1024);
let poolPos = pool.length;
function randomSuffix(): string {
  if (poolPos === pool.length) {
    randomFillSync(pool);
    poolPos = 0;
  }
  let n = (pool[poolPos]! << 16) | (pool[poolPos + 1]! << 8) | pool[poolPos + 2]!;
  poolPos += 3;
  let out = "";
  while (n > 0) {
    out = BASE62[n % 62]! + out;
    n = Math.floor(n / 62);
  }
  return out.padStart(4, "0");
}

/** Removes secret material from a record before it goes into the audit log. */
export function auditSafe(v: unknown): unknown {
  if (!v || typeof v !== "object") return v;
  const { secretHash: _a, secretEnc: _b, prevSecretHash: _c, ...rest } = v as Record<string, unknown>;
  return rest;
}

/** One audit entry as stored (secret material stripped), with its time-ordered id. */
export function auditRecordOf(a: AuditInput, at: number, seq: number): AuditRecord {
  // Time-ordered id: 12 hex digits of ms + a 6-digit sequence + 4 random chars.
  const id = `${at.toString(16).padStart(12, "0")}${(seq % 1_000_000).toString().padStart(6, "0")}${randomSuffix()}`;
  return {
    id,
    at,
    actor: a.actor,
    action: a.action,
    target: a.target,
    ...(a.account !== undefined ? { account: a.account } : {}),
    before: a.before === undefined ? "" : JSON.stringify(auditSafe(a.before)),
    after: a.after === undefined ? "" : JSON.stringify(auditSafe(a.after)),
    detail: a.detail ?? "",
  };
}

export class AuditLog {
  readonly #entries: any;
  readonly #byAccount: any;
  readonly #clock: () => number;
  /** Audit ids from here on are indexed by account (`auditacct`); "" = all of them. */
  readonly #indexFrom: string;
  /** A live key's account (entries written before they named their account). */
  readonly #ownerOfKey: (keyId: string) => string | undefined;
  #seq = 0;

  constructor(entries: unknown, byAccount: unknown, clock: () => number, indexFrom: string, ownerOfKey: (keyId: string) => string | undefined) {
    this.#entries = entries;
    this.#byAccount = byAccount;
    this.#clock = clock;
    this.#indexFrom = indexFrom;
    this.#ownerOfKey = ownerOfKey;
  }

  /** The audit entry's put and, when it names an account, its `auditacct` index entry. */
  ops(a: AuditInput): Op[] {
    const rec = auditRecordOf(a, this.#clock(), this.#seq++);
    const put: Op = { type: "put", sublevel: this.#entries, key: rec.id, value: rec };
    if (a.account === undefined) return [put];
    return [put, { type: "put", sublevel: this.#byAccount, key: `${a.account}|${rec.id}`, value: "", raw: true }];
  }

  async list(q: ListAuditQuery): Promise<AuditRecord[]> {
    const out: AuditRecord[] = [];
    const since = q.since !== undefined ? q.since.toString(16).padStart(12, "0") : "";
    let before = q.before;
    if (q.account !== undefined) {
      // The account's entries from its index: a page reads what it returns. Then, if the page is
      // not full, the legacy range (entries older than the index) by scanning, as before.
      if (await this.#listIndexed(q, since, out)) return out;
      if (!this.#indexFrom) return out;
      if (!before || before > this.#indexFrom) before = this.#indexFrom;
    }
    const range: Record<string, string> = {};
    if (before) range["lt"] = before;
    if (since) range["gte"] = since;
    const it = this.#entries.iterator({ ...range, reverse: true });
    try {
      for (;;) {
        const batch: [string, AuditRecord][] = await it.nextv(500);
        if (batch.length === 0) break;
        for (const [, rec] of batch) {
          if (q.target && rec.target !== q.target) continue;
          if (q.actor && rec.actor !== q.actor) continue;
          if (q.account !== undefined && !this.#auditAbout(rec, q.account)) continue;
          out.push(rec);
          if (out.length >= q.limit) return out;
        }
      }
    } finally {
      await it.close();
    }
    return out;
  }

  /** Appends the account's indexed entries (ids >= #indexFrom) to `out`; true when it filled the page. */
  async #listIndexed(q: ListAuditQuery, since: string, out: AuditRecord[]): Promise<boolean> {
    const prefix = `${q.account}|`;
    const lo = since > this.#indexFrom ? since : this.#indexFrom;
    const it = this.#byAccount.keys({ gte: prefix + lo, lt: prefix + (q.before ?? "\uffff"), reverse: true });
    try {
      for (;;) {
        const keys: string[] = await it.nextv(Math.min(500, Math.max(16, q.limit)));
        if (keys.length === 0) return false;
        const recs: (AuditRecord | undefined)[] = await this.#entries.getMany(keys.map((k) => k.slice(prefix.length)));
        for (const rec of recs) {
          if (!rec) continue;
          if (q.target && rec.target !== q.target) continue;
          if (q.actor && rec.actor !== q.actor) continue;
          out.push(rec);
          if (out.length >= q.limit) return true;
        }
      }
    } finally {
      await it.close();
    }
  }

  /** Is an audit entry about `accountId`'s keys? (ListAuditQuery.account) */
  #auditAbout(rec: AuditRecord, accountId: string): boolean {
    if (rec.account !== undefined) return rec.account === accountId;
    // Written before entries named their account: a key entry whose recorded record names it
    // (every key mutation recorded one), or a live key of the account (reveals recorded none).
    if (!rec.target.startsWith("key_")) return false;
    for (const json of [rec.before, rec.after]) {
      if (!json) continue;
      try {
        const owner = (JSON.parse(json) as { accountId?: unknown }).accountId;
        if (owner !== undefined) return owner === accountId;
      } catch {
        // not a record: fall through to the live key
      }
    }
    return this.#ownerOfKey(rec.target) === accountId;
  }
}
