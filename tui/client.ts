// The TUI's only way to the sidecar: the admin gRPC API. The TUI never opens the
// store (LevelDB allows one process per directory, and the sidecar holds it).
//
// `AdminApi` is the narrow, promise-returning surface the screens need; the
// component tests implement it in memory, `GrpcAdminApi` implements it over the
// generated ts-proto client.
import { status } from "@grpc/grpc-js";
import { AdminError, connectAdmin, type AdminApi as SharedAdminApi } from "../src/client/admin.js";
import {
  type Alert,
  type CreateKeyResponse,
  type KeyEvent,
  type KeyRemaining,
  type KeySpec,
  type RevealedKey,
  type UsageCounters,
  type UsageEvent,
  type UsageFilter,
  type UsageRow,
  type Webhook,
  type WebhookDelivery,
  type WhoAmIResponse,
  Granularity,
  UsageDimension,
} from "../src/gen/aisa/v1/admin.js";
import type { Account, Group, Key, Price } from "../src/gen/aisa/v1/types.js";
import type { WebhookCreateInput } from "../src/domain/webhookInput.js";

export type {
  Account,
  Alert,
  CreateKeyResponse,
  Group,
  Key,
  KeyEvent,
  KeyRemaining,
  KeySpec,
  Price,
  RevealedKey,
  UsageCounters,
  UsageEvent,
  UsageFilter,
  UsageRow,
  Webhook,
  WebhookDelivery,
  WhoAmIResponse,
};

/** gRPC status names, as the admin API documents them. */
export type ApiErrorCode = keyof typeof status;

/** A failed admin call: the gRPC status name and the server's message (which names the field for INVALID_ARGUMENT). */
export class ApiError extends Error {
  readonly code: ApiErrorCode;
  constructor(code: ApiErrorCode, message: string) {
    super(message);
    this.name = "ApiError";
    this.code = code;
  }
}

/**
 * True when the error means "the sidecar could not be reached" (as opposed to
 * "the sidecar said no"): the TUI shows the banner and reconnects.
 */
export function isConnectionError(err: unknown): boolean {
  return err instanceof ApiError && (err.code === "UNAVAILABLE" || err.code === "DEADLINE_EXCEEDED");
}

/** A one-line, user-facing description of any error (never a stack). */
export function describeError(err: unknown): string {
  if (err instanceof ApiError) return `${err.code}: ${err.message}`;
  if (err instanceof Error) return err.message;
  return String(err);
}

/** Most id-list RPCs accept at most this many ids per call. */
export const MAX_IDS_PER_CALL = 1000;

export interface AdminApi {
  /** Who the token is (operator or account-scoped, read-only) and the display currency. */
  whoAmI(): Promise<WhoAmIResponse>;
  /**
   * Every key visible to the token, newest first (all pages). `onProgress` is called after each
   * page with the keys of that page (in order), so the caller can show the first rows while the
   * rest is still loading.
   */
  listKeys(onProgress?: (loaded: number, total: number, page: readonly Key[]) => void): Promise<Key[]>;
  /** Creates a key; the response holds the full secret, shown once. */
  createKey(spec: KeySpec, accountId?: string): Promise<CreateKeyResponse>;
  /** Changes the fields of `spec` named in `mask` (KeySpec field names). */
  updateKey(id: string, spec: KeySpec, mask: readonly string[]): Promise<Key>;
  /**
   * Enables or disables keys; returns them after the change. Atomic per call of
   * at most MAX_IDS_PER_CALL ids (larger selections are sent in chunks).
   */
  setKeysEnabled(ids: readonly string[], enabled: boolean): Promise<Key[]>;
  /** Deletes keys; returns the deleted ids. Chunked like setKeysEnabled. */
  deleteKeys(ids: readonly string[]): Promise<string[]>;
  /** The full secrets (audited by the server). Chunked like setKeysEnabled. */
  revealKeys(ids: readonly string[]): Promise<RevealedKey[]>;
  listGroups(): Promise<Group[]>;
  listAccounts(): Promise<Account[]>;
  listPrices(): Promise<Price[]>;
  getAccount(id: string): Promise<Account>;
  /**
   * Units charged per group since the ledger began (QueryUsage by group, day buckets): the
   * ledger's definition, the group a charge was MADE in — `usage --by group` reads the same.
   */
  groupCharges(): Promise<Map<string, bigint>>;
  /**
   * Live usage (WatchUsage): `onEvent` gets one UsageEvent per second until the
   * returned function cancels the stream. `onError` is called at most once,
   * when the stream ends by itself: with the gRPC status, or with code "OK"
   * when the sidecar ended it cleanly (shutdown). Never called after cancel.
   * An account-scoped token only ever sees its own account (the server filters).
   */
  watchUsage(filter: Partial<UsageFilter>, onEvent: (ev: UsageEvent) => void, onError: (err: ApiError) => void): () => void;
  /** Releases the connection (and cancels open streams). */
  close(): void;
  /** Webhook endpoints with their delivery counts (operator only). Optional: test doubles need not have it. */
  listWebhooks?(): Promise<Webhook[]>;
  /** The most recent deliveries of every endpoint (operator only), newest first. */
  listWebhookDeliveries?(limit: number): Promise<WebhookDelivery[]>;
  /** Adds an endpoint (CreateWebhook, operator only); its signing secret is returned once. */
  createWebhook?(input: WebhookCreateInput): Promise<{ webhook: Webhook; secret: string }>;
  /** Removes an endpoint and its queued deliveries (DeleteWebhook, operator only). */
  deleteWebhook?(id: string): Promise<void>;
  /** Queues a `ping` event to one endpoint (TestWebhook, operator only); returns its delivery. */
  testWebhook?(id: string): Promise<WebhookDelivery>;
}

/** Units per group over usage rows (int64 strings, summed exactly). */
export function sumByGroup(rows: readonly UsageRow[]): Map<string, bigint> {
  const out = new Map<string, bigint>();
  for (const r of rows) out.set(r.id, (out.get(r.id) ?? 0n) + BigInt(r.counters?.units || "0"));
  return out;
}

export interface GrpcAdminApiOptions {
  /** Deadline of a single call, ms (default 10 s). */
  deadlineMs?: number;
  /** Deadline of one ListKeys page, ms (default 30 s). */
  pageDeadlineMs?: number;
  /** TLS: true = system roots, or the PEM roots to trust (same shape as the CLI's --admin-tls/--admin-ca). Default plaintext. */
  tls?: boolean | { rootCerts: Buffer };
}

function chunks<T>(items: readonly T[], size: number): T[][] {
  const out: T[][] = [];
  for (let i = 0; i < items.length; i += size) out.push(items.slice(i, i + size));
  return out;
}

/** The shared client's error (src/client/admin.ts) in the TUI's vocabulary. */
function toApiError(err: unknown): unknown {
  if (err instanceof AdminError) return new ApiError((err.codeName in status ? err.codeName : "UNKNOWN") as ApiErrorCode, err.details);
  return err;
}

/**
 * The TUI's AdminApi over THE admin client the CLI uses too (src/client/admin.ts: channel,
 * token, deadlines, errors): this class adds only what a screen needs — every page of keys,
 * id lists chunked to the server's limit, per-group charges, and live streams closed with it.
 */
export class GrpcAdminApi implements AdminApi {
  private readonly api: SharedAdminApi;
  private readonly pageDeadlineMs: number;
  /** Cancel functions of the open WatchUsage streams (close() ends them). */
  private readonly streams = new Set<() => void>();

  constructor(address: string, token: string, options: GrpcAdminApiOptions = {}) {
    this.api = connectAdmin({
      address,
      token,
      tls: options.tls ?? false,
      timeoutMs: options.deadlineMs ?? 10_000,
      // Reconnect quickly after the sidecar comes back; the TUI has its own backoff for retrying calls.
      channelOptions: { "grpc.initial_reconnect_backoff_ms": 250, "grpc.max_reconnect_backoff_ms": 5000 },
    });
    this.pageDeadlineMs = options.pageDeadlineMs ?? 30_000;
  }

  private async unary<Res>(p: () => Promise<Res>): Promise<Res> {
    try {
      return await p();
    } catch (err) {
      throw toApiError(err);
    }
  }

  whoAmI(): Promise<WhoAmIResponse> {
    return this.unary(() => this.api.whoAmI({}));
  }

  async listWebhooks(): Promise<Webhook[]> {
    return (await this.unary(() => this.api.listWebhooks!({}))).webhooks;
  }

  async listWebhookDeliveries(limit: number): Promise<WebhookDelivery[]> {
    return (await this.unary(() => this.api.listWebhookDeliveries!({ limit }))).deliveries;
  }

  async createWebhook(input: WebhookCreateInput): Promise<{ webhook: Webhook; secret: string }> {
    const res = await this.unary(() => this.api.createWebhook!(input));
    if (!res.webhook) throw new Error("the sidecar returned no webhook");
    return { webhook: res.webhook, secret: res.secret };
  }

  async deleteWebhook(id: string): Promise<void> {
    await this.unary(() => this.api.deleteWebhook!({ id }));
  }

  testWebhook(id: string): Promise<WebhookDelivery> {
    return this.unary(() => this.api.testWebhook!({ id }));
  }

  async listKeys(onProgress?: (loaded: number, total: number, page: readonly Key[]) => void): Promise<Key[]> {
    const all: Key[] = [];
    let pageToken = "";
    for (;;) {
      const page = await this.unary(() => this.api.listKeys({ pageSize: 1000, pageToken }, { timeoutMs: this.pageDeadlineMs }));
      all.push(...page.keys);
      onProgress?.(all.length, Math.max(page.totalSize, all.length), page.keys);
      if (!page.nextPageToken || page.keys.length === 0) return all;
      pageToken = page.nextPageToken;
    }
  }

  createKey(spec: KeySpec, accountId = ""): Promise<CreateKeyResponse> {
    return this.unary(() => this.api.createKey({ spec, accountId }));
  }

  updateKey(id: string, spec: KeySpec, mask: readonly string[]): Promise<Key> {
    return this.unary(() => this.api.updateKey({ id, spec, updateMask: [...mask] }));
  }

  async setKeysEnabled(ids: readonly string[], enabled: boolean): Promise<Key[]> {
    const out: Key[] = [];
    for (const part of chunks(ids, MAX_IDS_PER_CALL)) out.push(...(await this.unary(() => this.api.setKeysEnabled({ ids: part, enabled }))).keys);
    return out;
  }

  async deleteKeys(ids: readonly string[]): Promise<string[]> {
    const out: string[] = [];
    for (const part of chunks(ids, MAX_IDS_PER_CALL)) out.push(...(await this.unary(() => this.api.deleteKeys({ ids: part }))).deletedIds);
    return out;
  }

  async revealKeys(ids: readonly string[]): Promise<RevealedKey[]> {
    const out: RevealedKey[] = [];
    for (const part of chunks(ids, MAX_IDS_PER_CALL)) out.push(...(await this.unary(() => this.api.revealKeys({ ids: part }))).keys);
    return out;
  }

  async listGroups(): Promise<Group[]> {
    return (await this.unary(() => this.api.listGroups({}))).groups;
  }

  async listAccounts(): Promise<Account[]> {
    return (await this.unary(() => this.api.listAccounts({}))).accounts;
  }

  async listPrices(): Promise<Price[]> {
    return (await this.unary(() => this.api.listPrices({}))).prices;
  }

  getAccount(id: string): Promise<Account> {
    return this.unary(() => this.api.getAccount({ id }));
  }

  async groupCharges(): Promise<Map<string, bigint>> {
    const res = await this.unary(() =>
      this.api.queryUsage({ groupBy: UsageDimension.USAGE_DIMENSION_GROUP, granularity: Granularity.GRANULARITY_DAY, since: new Date(0) }),
    );
    return sumByGroup(res.rows);
  }

  /** Open WatchUsage streams (tests: nothing leaks). */
  get openStreams(): number {
    return this.streams.size;
  }

  watchUsage(filter: Partial<UsageFilter>, onEvent: (ev: UsageEvent) => void, onError: (err: ApiError) => void): () => void {
    const cancel = this.api.watchUsage(
      { filter: { keyId: "", accountId: "", group: "", model: "", ...filter } },
      {
        onEvent,
        onEnd: (err) => {
          this.streams.delete(stop);
          onError(err ? (toApiError(err) as ApiError) : new ApiError("OK", "the sidecar ended the live usage stream"));
        },
      },
    );
    const stop = (): void => {
      this.streams.delete(stop);
      cancel();
    };
    this.streams.add(stop);
    return stop;
  }

  close(): void {
    for (const stop of [...this.streams]) stop();
    this.api.close();
  }
}
