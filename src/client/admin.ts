// THE client of the aisa.v1 Admin API, used by the CLI (src/cli/) and the TUI
// (tui/client.ts builds its paging, chunking and live-stream conveniences on it). It owns
// the channel, the bearer-token metadata and the per-call deadline, and turns gRPC failures
// into AdminError. It prints nothing and knows nothing about argument parsing or screens.
import { credentials, Metadata, status, type CallOptions, type ChannelOptions, type ClientUnaryCall, type ServiceError } from "@grpc/grpc-js";
import {
  AdjustBalanceRequest,
  UpdateAccountRequest,
  AdminClient,
  CreateWebhookRequest,
  DeleteWebhookRequest,
  ListWebhookDeliveriesRequest,
  ListWebhooksRequest,
  TestWebhookRequest,
  type CreateWebhookResponse,
  type DeleteWebhookResponse,
  type ListWebhookDeliveriesResponse,
  type ListWebhooksResponse,
  type WebhookDelivery,
  CreateAccountRequest,
  CreateGroupRequest,
  CreateKeyRequest,
  CreateTokenRequest,
  DeleteGroupRequest,
  DeleteKeysRequest,
  DeletePriceRequest,
  GetAccountRequest,
  GetKeyRequest,
  ListAccountsRequest,
  ListAuditRequest,
  ListGroupsRequest,
  ListKeysRequest,
  ListPricesRequest,
  ListTokensRequest,
  QueryUsageRequest,
  RevealKeysRequest,
  RevokeTokenRequest,
  RotateKeyRequest,
  SetKeysEnabledRequest,
  SetPriceRequest,
  UpdateGroupRequest,
  UpdateKeyRequest,
  WhoAmIRequest,
  type CreateKeyResponse,
  type CreateTokenResponse,
  type DeepPartial,
  type DeleteGroupResponse,
  type DeleteKeysResponse,
  type DeletePriceResponse,
  type ListAccountsResponse,
  type ListAuditResponse,
  type ListGroupsResponse,
  type ListKeysResponse,
  type ListPricesResponse,
  type ListTokensResponse,
  type QueryUsageResponse,
  type UsageEvent,
  WatchUsageRequest,
  type RevealKeysResponse,
  type RevokeTokenResponse,
  type RotateKeyResponse,
  type SetKeysEnabledResponse,
  type WhoAmIResponse,
} from "../gen/aisa/v1/admin.js";
import type { Account, Group, Key, Price } from "../gen/aisa/v1/types.js";

/** The default admin address (the sidecar's default --admin-listen). */
export const DEFAULT_ADMIN_ADDRESS = "127.0.0.1:9192";
/** Default per-call deadline. */
export const DEFAULT_TIMEOUT_MS = 10_000;

/** Name of a gRPC status code, e.g. 5 → "NOT_FOUND". */
export function statusName(code: number): string {
  return (status as unknown as Record<number, string>)[code] ?? `CODE_${code}`;
}

/** A failed admin call: the gRPC status plus the address that was tried. */
export class AdminError extends Error {
  /** gRPC status code (grpc-js `status`). */
  readonly code: number;
  /** e.g. "INVALID_ARGUMENT". */
  readonly codeName: string;
  /** The server's (or grpc-js's) message, e.g. "spec.name: must not be empty". */
  readonly details: string;
  /** The admin address the call went to. */
  readonly address: string;
  /** True when no connection could be made (nothing listening, bad host…). */
  readonly connectionFailed: boolean;
  /** True when the deadline passed before an answer came. */
  readonly timedOut: boolean;

  constructor(code: number, details: string, address: string, options?: { cause?: unknown }) {
    const codeName = statusName(code);
    super(`${codeName}: ${details}`, options);
    this.name = "AdminError";
    this.code = code;
    this.codeName = codeName;
    this.details = details;
    this.address = address;
    this.connectionFailed =
      code === status.UNAVAILABLE &&
      /no connection established|name resolution failed|ECONNREFUSED|ENOTFOUND|EHOSTUNREACH|ENETUNREACH|failed to connect|connection dropped/i.test(details);
    this.timedOut = code === status.DEADLINE_EXCEEDED;
  }
}

export interface ConnectOptions {
  /** host:port (or any grpc-js target, e.g. unix:/path). */
  address: string;
  /** The admin bearer token (operator or account-scoped). */
  token: string;
  /** Per-call deadline in ms; default 10 s. */
  timeoutMs?: number;
  /**
   * TLS (the sidecar serves the admin API over TLS when started with
   * --tls-cert/--tls-key): true = system roots, or the PEM root certificates
   * to trust. Default: plaintext.
   */
  tls?: boolean | { rootCerts: Buffer };
  /** grpc-js channel options (e.g. reconnect backoff for a long-lived TUI). */
  channelOptions?: ChannelOptions;
}

/** Per-call options. */
export interface CallOpts {
  /** This call's deadline in ms (default: the connection's timeoutMs). */
  timeoutMs?: number;
}

/** The events of one WatchUsage stream. */
export interface WatchHandlers {
  onEvent(ev: UsageEvent): void;
  /** Called at most once, when the stream ends by itself: the error, or null for a clean end (status OK). Never after cancel. */
  onEnd(err: AdminError | null): void;
}

/** Typed, promise-returning wrappers over every Admin RPC. Requests may be partial. */
export interface AdminApi {
  readonly address: string;
  whoAmI(req?: DeepPartial<WhoAmIRequest>): Promise<WhoAmIResponse>;
  createKey(req: DeepPartial<CreateKeyRequest>): Promise<CreateKeyResponse>;
  getKey(req: DeepPartial<GetKeyRequest>): Promise<Key>;
  listKeys(req?: DeepPartial<ListKeysRequest>, opts?: CallOpts): Promise<ListKeysResponse>;
  updateKey(req: DeepPartial<UpdateKeyRequest>): Promise<Key>;
  setKeysEnabled(req: DeepPartial<SetKeysEnabledRequest>): Promise<SetKeysEnabledResponse>;
  deleteKeys(req: DeepPartial<DeleteKeysRequest>): Promise<DeleteKeysResponse>;
  revealKeys(req: DeepPartial<RevealKeysRequest>): Promise<RevealKeysResponse>;
  rotateKey(req: DeepPartial<RotateKeyRequest>): Promise<RotateKeyResponse>;
  createAccount(req: DeepPartial<CreateAccountRequest>): Promise<Account>;
  getAccount(req: DeepPartial<GetAccountRequest>): Promise<Account>;
  listAccounts(req?: DeepPartial<ListAccountsRequest>): Promise<ListAccountsResponse>;
  adjustBalance(req: DeepPartial<AdjustBalanceRequest>): Promise<Account>;
  updateAccount(req: DeepPartial<UpdateAccountRequest>): Promise<Account>;
  createGroup(req: DeepPartial<CreateGroupRequest>): Promise<Group>;
  updateGroup(req: DeepPartial<UpdateGroupRequest>): Promise<Group>;
  listGroups(req?: DeepPartial<ListGroupsRequest>): Promise<ListGroupsResponse>;
  deleteGroup(req: DeepPartial<DeleteGroupRequest>): Promise<DeleteGroupResponse>;
  createToken(req: DeepPartial<CreateTokenRequest>): Promise<CreateTokenResponse>;
  listTokens(req?: DeepPartial<ListTokensRequest>): Promise<ListTokensResponse>;
  revokeToken(req: DeepPartial<RevokeTokenRequest>): Promise<RevokeTokenResponse>;
  listAudit(req?: DeepPartial<ListAuditRequest>): Promise<ListAuditResponse>;
  setPrice(req: DeepPartial<SetPriceRequest>): Promise<Price>;
  listPrices(req?: DeepPartial<ListPricesRequest>): Promise<ListPricesResponse>;
  deletePrice(req: DeepPartial<DeletePriceRequest>): Promise<DeletePriceResponse>;
  queryUsage(req?: DeepPartial<QueryUsageRequest>): Promise<QueryUsageResponse>;
  /** Opens a live usage stream; returns its cancel function. */
  watchUsage(req: DeepPartial<WatchUsageRequest>, handlers: WatchHandlers): () => void;
  // Webhooks (operator only). Optional so that test doubles of this interface need not have them.
  createWebhook?(req: DeepPartial<CreateWebhookRequest>): Promise<CreateWebhookResponse>;
  listWebhooks?(req?: DeepPartial<ListWebhooksRequest>): Promise<ListWebhooksResponse>;
  deleteWebhook?(req: DeepPartial<DeleteWebhookRequest>): Promise<DeleteWebhookResponse>;
  listWebhookDeliveries?(req?: DeepPartial<ListWebhookDeliveriesRequest>): Promise<ListWebhookDeliveriesResponse>;
  testWebhook?(req: DeepPartial<TestWebhookRequest>): Promise<WebhookDelivery>;
  /** Closes the channel. Calls made afterwards fail. */
  close(): void;
}

/** grpc-js appends an empty "Resolution note: " to connection errors. */
function cleanDetails(details: string): string {
  return details.replace(/\.?\s*Resolution note:\s*$/, "").trim();
}

type Callback<Res> = (err: ServiceError | null, res: Res) => void;
type UnaryMethod<Req, Res> = (req: Req, md: Metadata, opts: Partial<CallOptions>, cb: Callback<Res>) => ClientUnaryCall;

/**
 * Opens a channel to the admin API. The connection is made lazily by the first
 * call; a server that is not there shows up as an AdminError with
 * `connectionFailed` set.
 */
export function connectAdmin(opts: ConnectOptions): AdminApi {
  const { address, token } = opts;
  const timeoutMs = opts.timeoutMs ?? DEFAULT_TIMEOUT_MS;
  const creds = !opts.tls
    ? credentials.createInsecure()
    : credentials.createSsl(opts.tls === true ? null : opts.tls.rootCerts);
  const client = new AdminClient(address, creds, opts.channelOptions ?? {});
  const metadata = (): Metadata => {
    const md = new Metadata();
    md.set("authorization", `Bearer ${token}`);
    return md;
  };

  function call<Req, Res>(method: UnaryMethod<Req, Res>, req: Req, callOpts?: CallOpts): Promise<Res> {
    const md = metadata();
    return new Promise<Res>((resolve, reject) => {
      method.call(client, req, md, { deadline: Date.now() + (callOpts?.timeoutMs ?? timeoutMs) }, (err, res) => {
        if (err) reject(new AdminError(err.code ?? status.UNKNOWN, cleanDetails(err.details || err.message), address, { cause: err }));
        else resolve(res);
      });
    });
  }

  return {
    address,
    whoAmI: (req = {}) => call(client.whoAmI, WhoAmIRequest.fromPartial(req)),
    createKey: (req) => call(client.createKey, CreateKeyRequest.fromPartial(req)),
    getKey: (req) => call(client.getKey, GetKeyRequest.fromPartial(req)),
    listKeys: (req = {}, callOpts) => call(client.listKeys, ListKeysRequest.fromPartial(req), callOpts),
    updateKey: (req) => call(client.updateKey, UpdateKeyRequest.fromPartial(req)),
    setKeysEnabled: (req) => call(client.setKeysEnabled, SetKeysEnabledRequest.fromPartial(req)),
    deleteKeys: (req) => call(client.deleteKeys, DeleteKeysRequest.fromPartial(req)),
    revealKeys: (req) => call(client.revealKeys, RevealKeysRequest.fromPartial(req)),
    rotateKey: (req) => call(client.rotateKey, RotateKeyRequest.fromPartial(req)),
    createAccount: (req) => call(client.createAccount, CreateAccountRequest.fromPartial(req)),
    getAccount: (req) => call(client.getAccount, GetAccountRequest.fromPartial(req)),
    listAccounts: (req = {}) => call(client.listAccounts, ListAccountsRequest.fromPartial(req)),
    adjustBalance: (req) => call(client.adjustBalance, AdjustBalanceRequest.fromPartial(req)),
    updateAccount: (req) => call(client.updateAccount, UpdateAccountRequest.fromPartial(req)),
    createGroup: (req) => call(client.createGroup, CreateGroupRequest.fromPartial(req)),
    updateGroup: (req) => call(client.updateGroup, UpdateGroupRequest.fromPartial(req)),
    listGroups: (req = {}) => call(client.listGroups, ListGroupsRequest.fromPartial(req)),
    deleteGroup: (req) => call(client.deleteGroup, DeleteGroupRequest.fromPartial(req)),
    createToken: (req) => call(client.createToken, CreateTokenRequest.fromPartial(req)),
    listTokens: (req = {}) => call(client.listTokens, ListTokensRequest.fromPartial(req)),
    revokeToken: (req) => call(client.revokeToken, RevokeTokenRequest.fromPartial(req)),
    listAudit: (req = {}) => call(client.listAudit, ListAuditRequest.fromPartial(req)),
    setPrice: (req) => call(client.setPrice, SetPriceRequest.fromPartial(req)),
    listPrices: (req = {}) => call(client.listPrices, ListPricesRequest.fromPartial(req)),
    deletePrice: (req) => call(client.deletePrice, DeletePriceRequest.fromPartial(req)),
    queryUsage: (req = {}) => call(client.queryUsage, QueryUsageRequest.fromPartial(req)),
    createWebhook: (req) => call(client.createWebhook, CreateWebhookRequest.fromPartial(req)),
    listWebhooks: (req = {}) => call(client.listWebhooks, ListWebhooksRequest.fromPartial(req)),
    deleteWebhook: (req) => call(client.deleteWebhook, DeleteWebhookRequest.fromPartial(req)),
    listWebhookDeliveries: (req = {}) => call(client.listWebhookDeliveries, ListWebhookDeliveriesRequest.fromPartial(req)),
    testWebhook: (req) => call(client.testWebhook, TestWebhookRequest.fromPartial(req)),
    watchUsage: (req, handlers) => {
      const stream = client.watchUsage(WatchUsageRequest.fromPartial(req), metadata());
      let done = false;
      const end = (err: AdminError | null): void => {
        if (done) return;
        done = true;
        handlers.onEnd(err);
      };
      stream.on("data", (ev: UsageEvent) => {
        if (!done) handlers.onEvent(ev);
      });
      // A non-OK status arrives as 'error' (then 'status'); a clean end as 'status' OK only.
      stream.on("error", (err: ServiceError) => end(new AdminError(err.code ?? status.UNKNOWN, cleanDetails(err.details || err.message), address, { cause: err })));
      stream.on("status", (st: { code: number }) => {
        if (st.code === status.OK) end(null);
      });
      return () => {
        if (done) return;
        done = true;
        // The CANCELLED status that follows goes to the listeners above, which ignore it.
        stream.cancel();
      };
    },
    close: () => client.close(),
  };
}
