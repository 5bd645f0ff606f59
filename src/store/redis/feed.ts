// The Redis engine's change feed (ChangeFeed, store/types.ts): one Redis Stream `<prefix>{g}:feed`
// (one slot in cluster mode), capped with XADD MAXLEN ~. An entry is one committed batch:
//   s   the sidecar (store instance) that committed it: never delivered back to it
//   c   BookChanges as JSON (admin records); a key change's counters are overridden by kc
//   v   {keyId: record version} of the key records in c
//   kc  key counters, absolute: lines "keyId remaining used credited lastUsedAt refilledAt seq"
//   a, ac   an account id and its counters "credited charged seq"
//   (seq: the account's sequence at those values; a book applies none older than it holds)
//   g, gc   a group and its budget counters "spent since"
//   rs  the reservation a Consume settled (its opener's book drops the hold)
// The position is the stream id. A subscription reads with XREAD BLOCK on its own connection;
// a gap (entries after our position trimmed away: XINFO's max-deleted-entry-id) or a lost
// connection calls onGap (the store reloads its book), then reading goes on from the newest id.
import type { BookChange, ChangeBatch, ChangeFeed, FeedAccountCounters, FeedKeyCounters } from "../types.js";
import type { RedisConn } from "./conn.js";

export interface FeedEntry {
  sid: string;
  changes: BookChange[];
  versions: Record<string, number>;
}

function num(s: string | undefined): number {
  return s === undefined || s === "" ? 0 : Number(s);
}

export function parseKeyCounters(line: string): [string, FeedKeyCounters] {
  const [id, r, u, c, l, f, q] = line.split(" ");
  const counters: FeedKeyCounters = { remaining: num(r), used: num(u), credited: num(c), lastUsedAt: l ? Number(l) : null, refilledAt: f ? Number(f) : null };
  if (q) counters.seq = Number(q);
  return [id!, counters];
}

/** An account's counters as the scripts report them: "credited charged [seq]". */
export function parseAccountCounters(text: string): FeedAccountCounters {
  const [cr, ch, q] = text.split(" ");
  const credited = num(cr);
  const charged = num(ch);
  const counters: FeedAccountCounters = { balance: credited - charged, credited, charged };
  if (q) counters.seq = Number(q);
  return counters;
}

/** Decodes one stream entry's fields into its BookChanges. */
export function decodeEntry(fields: readonly string[]): FeedEntry {
  const m = new Map<string, string>();
  for (let i = 0; i + 1 < fields.length; i += 2) m.set(fields[i]!, fields[i + 1]!);
  const kc = new Map<string, FeedKeyCounters>();
  for (const line of (m.get("kc") ?? "").split("\n")) {
    if (!line) continue;
    const [id, c] = parseKeyCounters(line);
    kc.set(id, c);
  }
  const changes: BookChange[] = [];
  const versions = m.has("v") ? (JSON.parse(m.get("v")!) as Record<string, number>) : {};
  if (m.has("c")) {
    for (const ch of JSON.parse(m.get("c")!) as BookChange[]) {
      if (ch.kind === "key" && kc.has(ch.record.id)) {
        changes.push({ ...ch, counters: kc.get(ch.record.id)! });
        kc.delete(ch.record.id);
      } else changes.push(ch);
    }
  }
  for (const [id, counters] of kc) changes.push({ kind: "keyCounters", id, counters });
  if (m.get("a")) changes.push({ kind: "accountCounters", id: m.get("a")!, counters: parseAccountCounters(m.get("ac") ?? "0 0") });
  // The reservation this commit settled: whichever sidecar opened it drops its cached hold.
  if (m.get("rs")) changes.push({ kind: "reservationSettled", id: m.get("rs")! });
  if (m.get("g")) {
    const [spent, since] = (m.get("gc") ?? "0 0").split(" ").map(Number);
    changes.push({ kind: "groupBudget", name: m.get("g")!, counters: { spent: spent!, since: since! } });
  }
  return { sid: m.get("s") ?? "", changes, versions };
}

/** [field, value] pairs of a flat RESP2 array. */
export function pairsOf(raw: readonly unknown[]): [string, any][] {
  const out: [string, any][] = [];
  for (let i = 0; i + 1 < raw.length; i += 2) out.push([String(raw[i]), raw[i + 1]]);
  return out;
}

/** A hash reply (HGETALL: an object from node-redis, or a flat array) as [field, value] pairs. */
export function hashPairs(raw: unknown): [string, string][] {
  if (!raw) return [];
  if (Array.isArray(raw)) return pairsOf(raw).map(([k, v]) => [k, String(v)]);
  return Object.entries(raw as Record<string, unknown>).map(([k, v]) => [k, String(v)]);
}

/** Compares two stream ids ("ms-seq"). */
export function cmpId(a: string, b: string): number {
  const [am, as] = a.split("-").map(Number);
  const [bm, bs] = b.split("-").map(Number);
  return am! !== bm! ? am! - bm! : (as ?? 0) - (bs ?? 0);
}

export interface RedisFeedDeps {
  conn: () => RedisConn;
  key: string;
  sid: string;
  onError: (err: unknown) => void;
  /** Our position is gone from the stream (trimmed) or the connection was lost: reload. */
  onGap: () => void;
  /** Internal: every entry a subscription saw (versions for the store's own subscription). */
  onEntry?: (e: FeedEntry) => void;
}

export class RedisFeed implements ChangeFeed {
  #position = "0-0";
  readonly #d: RedisFeedDeps;
  readonly #stops = new Set<() => void>();

  constructor(d: RedisFeedDeps) {
    this.#d = d;
  }

  position(): string {
    return this.#position;
  }

  /** Moves the position forward (an own commit's id, a load's start). */
  advance(id: string | undefined): void {
    if (id && cmpId(id, this.#position) > 0) this.#position = id;
  }

  /** The stream's newest id now ("0-0" when empty), and whether entries after `from` were trimmed. */
  async probe(from: string): Promise<{ last: string; gap: boolean }> {
    const conn = this.#d.conn();
    let info: any;
    try {
      info = await conn.call(this.#d.key, ["XINFO", "STREAM", this.#d.key]);
    } catch (err) {
      if (err instanceof Error && /no such key/i.test(err.message)) return { last: "0-0", gap: false };
      throw err;
    }
    const m = new Map<string, any>(Array.isArray(info) ? pairsOf(info) : Object.entries(info ?? {}));
    const last = String(m.get("last-generated-id") ?? "0-0");
    const deleted = String(m.get("max-deleted-entry-id") ?? "0-0");
    return { last, gap: cmpId(deleted, from) > 0 };
  }

  subscribe(from: string, apply: (batch: ChangeBatch) => void): () => void {
    let stopped = false;
    let conn: RedisConn | undefined;
    const stop = () => {
      stopped = true;
      this.#stops.delete(stop);
      void conn?.close(true);
    };
    this.#stops.add(stop);
    const run = async () => {
      let pos = from;
      let needCheck = true;
      while (!stopped) {
        try {
          if (!conn) {
            const c = await this.#d.conn().duplicate();
            if (stopped) {
              await c.close();
              return;
            }
            conn = c;
          }
          if (needCheck) {
            const { last, gap } = await this.probe(pos);
            needCheck = false;
            if (gap) {
              pos = last;
              this.#d.onGap();
            }
          }
          const r: any = await conn.call(this.#d.key, ["XREAD", "COUNT", "500", "BLOCK", "1000", "STREAMS", this.#d.key, pos], 0);
          if (stopped || !r) continue;
          const streams: [string, [string, string[]][]][] = Array.isArray(r) ? r : Object.entries(r);
          if (stopped) continue;
          for (const [, entries] of streams) {
            for (const [id, fields] of entries) {
              pos = id;
              const e = decodeEntry(fields);
              this.#d.onEntry?.(e);
              if (e.sid === this.#d.sid || e.changes.length === 0) continue;
              apply({ position: id, changes: e.changes });
            }
          }
        } catch (err) {
          if (stopped) return;
          this.#d.onError(err);
          const c = conn;
          conn = undefined;
          await c?.close().catch(() => {});
          needCheck = true;
          // A lost connection may have lost entries: the store reloads (its own subscription).
          this.#d.onGap();
          await new Promise((r) => setTimeout(r, 100));
        }
      }
    };
    void run();
    return stop;
  }

  /** Stops every subscription (close). */
  stopAll(): void {
    for (const s of [...this.#stops]) s();
  }
}
