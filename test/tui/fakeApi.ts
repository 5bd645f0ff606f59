// An in-memory AdminApi for the component tests (the end-to-end test uses the
// real sidecar). It records calls and can be switched "down" to exercise the
// reconnect banner.
import type { KeySpec, UsageCounters, UsageEvent, UsageFilter, UsageRow } from "../../src/gen/aisa/v1/admin.js";
import { KeyStatus, type Account, type Group, type Key, type Price } from "../../src/gen/aisa/v1/types.js";
import { ApiError, type AdminApi, type CreateKeyResponse, type RevealedKey, type WhoAmIResponse } from "../../tui/client.js";

export const T0 = Date.UTC(2026, 10, 27, 12, 0, 0);

export function makeKey(i: number, o: Partial<Key> = {}): Key {
  return {
    id: `key_${String(i).padStart(20, "0")}`,
    name: `key-${i}`,
    accountId: "default",
    group: "default",
    status: KeyStatus.KEY_STATUS_ENABLED,
    quota: { unlimited: true, total: "0", remaining: "0", used: "0", reserved: "0" },
    expiresAt: undefined,
    models: [],
    ips: [],
    createdAt: new Date(T0 - 86_400_000),
    updatedAt: new Date(T0 - 86_400_000),
    lastUsedAt: undefined,
    limits: undefined,
    refill: 0,
    metadata: {},
    maskedKey: `sk-…${String(i).padStart(4, "0").slice(-4)}`,
    previousSecretExpiresAt: undefined,
    refilledAt: undefined,
    // As the server states them for a key in an unrestricted group (override for a group list).
    effectiveModels: [...(o.models ?? [])],
    modelsRestricted: (o.models ?? []).length > 0,
    groupModels: [],
    expired: false,
    ...o,
  };
}

/** Counters with defaults (int64 fields are strings). */
export function counters(o: { requests?: number; denied?: Record<string, number>; input?: number; output?: number; units?: number } = {}): UsageCounters {
  const denies: Record<string, string> = {};
  let denied = 0;
  for (const [r, n] of Object.entries(o.denied ?? {})) {
    denies[r] = String(n);
    denied += n;
  }
  return {
    requests: String(o.requests ?? 0),
    denied: String(denied),
    deniesByReason: denies,
    inputTokens: String(o.input ?? 0),
    outputTokens: String(o.output ?? 0),
    units: String(o.units ?? 0),
    consumed: String(o.units ? 1 : 0),
    cacheReadTokens: "0",
    cacheWriteTokens: "0",
    reasoningTokens: "0",
  };
}

/** One second of live usage ending at `at` (epoch ms). */
export function usageEvent(at: number, o: Partial<Omit<UsageEvent, "at">> = {}): UsageEvent {
  return { at: new Date(at), total: counters(), byKey: [], byGroup: [], keyEvents: [], alerts: [], remaining: [], ...o };
}

export function row(at: number, id: string, c: UsageCounters): UsageRow {
  return { bucketStart: new Date(at - 1000), id, counters: c };
}

/** An open fake WatchUsage stream. */
export interface FakeStream {
  readonly filter: Partial<UsageFilter>;
  readonly onEvent: (ev: UsageEvent) => void;
  readonly onError: (err: ApiError) => void;
  cancelled: boolean;
  ended: boolean;
}

export interface FakeOptions {
  keys?: Key[];
  groups?: Group[];
  prices?: Price[];
  accounts?: Account[];
  who?: Partial<WhoAmIResponse>;
}

export function makeGroup(name: string, keyCount = 0): Group {
  return { name, description: `${name} group`, priceRatio: "1", models: [], keyCount: String(keyCount), createdAt: new Date(T0), accounts: [], budgetSpent: "0", budgetReserved: "0" };
}

export class FakeAdminApi implements AdminApi {
  keys: Key[];
  groups: Group[];
  prices: Price[];
  accounts: Account[];
  who: WhoAmIResponse;
  /** Units charged per group (the ledger's groups: where each charge was made). */
  charges = new Map<string, bigint>();
  /** When true every call fails with UNAVAILABLE. */
  down = false;
  /** The next createKey/updateKey fails with this error. */
  nextError: ApiError | null = null;
  readonly calls: { method: string; args: unknown[] }[] = [];
  /** Every WatchUsage stream opened, in order. */
  readonly streams: FakeStream[] = [];
  private seq = 1_000_000;

  constructor(o: FakeOptions = {}) {
    this.keys = o.keys ?? [];
    this.groups = o.groups ?? [makeGroup("default", this.keys.length), makeGroup("prod")];
    this.prices = o.prices ?? [
      { model: "gpt-4o", inputPerMillion: "1250000", outputPerMillion: "5000000", perRequest: "0" },
      { model: "gpt-4o-mini", inputPerMillion: "75000", outputPerMillion: "300000", perRequest: "0" },
    ];
    this.accounts = o.accounts ?? [
      { id: "default", name: "Default", balance: "5000000", createdAt: new Date(T0), reserved: "0", credited: "5000000", charged: "0", timezone: "UTC" },
    ];
    this.who = {
      tokenId: "operator",
      accountId: "",
      readOnly: false,
      quotaPerUnit: "500000",
      currency: "USD",
      serverVersion: "test",
      ...o.who,
    };
  }

  private async call<T>(method: string, args: unknown[], fn: () => T): Promise<T> {
    this.calls.push({ method, args });
    await Promise.resolve();
    if (this.down) throw new ApiError("UNAVAILABLE", "No connection established");
    return fn();
  }

  whoAmI(): Promise<WhoAmIResponse> {
    return this.call("whoAmI", [], () => this.who);
  }
  /** ListKeys' page size: each page is reported to onProgress as the real client does. */
  pageSize = 1000;
  /** When set, every page after the first waits for it (a sidecar still sending the rest). */
  pageGate: Promise<void> | null = null;

  async listKeys(onProgress?: (loaded: number, total: number, page: readonly Key[]) => void): Promise<Key[]> {
    const all = await this.call("listKeys", [], () => [...this.keys]);
    for (let i = 0; i === 0 || i < all.length; i += this.pageSize) {
      if (i > 0 && this.pageGate) await this.pageGate;
      if (this.down) throw new ApiError("UNAVAILABLE", "No connection established");
      const page = all.slice(i, i + this.pageSize);
      onProgress?.(i + page.length, all.length, page);
    }
    return all;
  }
  createKey(spec: KeySpec, accountId = ""): Promise<CreateKeyResponse> {
    return this.call("createKey", [spec, accountId], () => {
      const err = this.nextError;
      if (err) {
        this.nextError = null;
        throw err;
      }
      const i = this.seq++;
      const secret = `sk-FAKE${String(i).padStart(38, "0")}`;
      const key = makeKey(i, {
        name: spec.name,
        accountId: accountId || "default",
        group: spec.group || "default",
        models: spec.models,
        ips: spec.ips,
        quota: { unlimited: spec.unlimited, total: spec.quota, remaining: spec.quota, used: "0", reserved: "0" },
        maskedKey: `sk-…${secret.slice(-4)}`,
      });
      this.keys.unshift(key);
      return { key, secret };
    });
  }
  updateKey(id: string, spec: KeySpec, mask: readonly string[]): Promise<Key> {
    return this.call("updateKey", [id, spec, mask], () => {
      const err = this.nextError;
      if (err) {
        this.nextError = null;
        throw err;
      }
      const i = this.keys.findIndex((k) => k.id === id);
      const k = this.keys[i];
      if (!k) throw new ApiError("NOT_FOUND", `key ${id} not found`);
      const next: Key = { ...k };
      if (mask.includes("name")) next.name = spec.name;
      if (mask.includes("group")) next.group = spec.group;
      if (mask.includes("models")) next.models = spec.models;
      if (mask.includes("ips")) next.ips = spec.ips;
      this.keys[i] = next;
      return next;
    });
  }
  setKeysEnabled(ids: readonly string[], enabled: boolean): Promise<Key[]> {
    return this.call("setKeysEnabled", [ids, enabled], () =>
      ids.map((id) => {
        const i = this.keys.findIndex((k) => k.id === id);
        const k = this.keys[i];
        if (!k) throw new ApiError("NOT_FOUND", `key ${id} not found`);
        const next = { ...k, status: enabled ? KeyStatus.KEY_STATUS_ENABLED : KeyStatus.KEY_STATUS_DISABLED };
        this.keys[i] = next;
        return next;
      }),
    );
  }
  deleteKeys(ids: readonly string[]): Promise<string[]> {
    return this.call("deleteKeys", [ids], () => {
      this.keys = this.keys.filter((k) => !ids.includes(k.id));
      return [...ids];
    });
  }
  revealKeys(ids: readonly string[]): Promise<RevealedKey[]> {
    return this.call("revealKeys", [ids], () =>
      ids.map((id) => ({ id, name: this.keys.find((k) => k.id === id)?.name ?? "", secret: `sk-SECRET-${id}` })),
    );
  }
  listGroups(): Promise<Group[]> {
    return this.call("listGroups", [], () => this.groups);
  }
  listAccounts(): Promise<Account[]> {
    return this.call("listAccounts", [], () => this.accounts);
  }
  listPrices(): Promise<Price[]> {
    return this.call("listPrices", [], () => this.prices);
  }
  getAccount(id: string): Promise<Account> {
    return this.call("getAccount", [id], () => {
      const a = this.accounts.find((x) => x.id === id);
      if (!a) throw new ApiError("NOT_FOUND", `account ${id} not found`);
      return a;
    });
  }
  groupCharges(): Promise<Map<string, bigint>> {
    return this.call("groupCharges", [], () => new Map(this.charges));
  }
  watchUsage(filter: Partial<UsageFilter>, onEvent: (ev: UsageEvent) => void, onError: (err: ApiError) => void): () => void {
    this.calls.push({ method: "watchUsage", args: [filter] });
    const stream: FakeStream = { filter, onEvent, onError, cancelled: false, ended: false };
    this.streams.push(stream);
    if (this.down) {
      // Like grpc-js: the failure arrives asynchronously.
      setImmediate(() => this.end(stream, new ApiError("UNAVAILABLE", "No connection established")));
    }
    return () => {
      if (!stream.ended) stream.cancelled = true;
      stream.ended = true;
    };
  }

  /** Streams neither cancelled nor ended. */
  get openStreams(): FakeStream[] {
    return this.streams.filter((s) => !s.ended);
  }

  /** Sends one event to every open stream; returns how many got it. */
  emit(ev: UsageEvent): number {
    const open = this.openStreams;
    for (const s of open) s.onEvent(ev);
    return open.length;
  }

  /** Ends a stream by itself: with an error, or cleanly (code OK) like a sidecar shutdown. */
  end(stream: FakeStream, err: ApiError = new ApiError("OK", "the sidecar ended the live usage stream")): void {
    if (stream.ended) return;
    stream.ended = true;
    stream.onError(err);
  }

  /** Ends every open stream. */
  endAll(err?: ApiError): void {
    for (const s of this.openStreams) this.end(s, err);
  }

  close(): void {
    // nothing to release
  }
}
