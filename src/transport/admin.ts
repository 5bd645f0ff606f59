// gRPC adapter of the aisa.v1.Admin service: authenticates the bearer token,
// converts messages, calls AdminService, maps errors. Knows nothing of storage.
import { status, type sendUnaryData, type ServerUnaryCall } from "@grpc/grpc-js";
import type { KeyState, Principal } from "../domain/types.js";
import { SidecarError } from "../domain/errors.js";
import type { KeyUsability } from "../domain/keyView.js";
import { KeyStatus } from "../gen/aisa/v1/types.js";
import { KeySort, Tristate, type AdminServer, type Webhook, type WebhookDelivery as WebhookDeliveryPb } from "../gen/aisa/v1/admin.js";
import type { WebhookDelivery, WebhookEndpoint, WebhookService } from "../service/webhooks.js";
import type { AdminService, KeySort as DomainSort } from "../service/admin.js";
import { accountToProto, auditToProto, budgetFromProto, groupToProto, keyToProto as keyStateToProto, priceToProto, specFromProto, tokenToProto } from "./convert.js";
import { toServiceError } from "./grpcErrors.js";
import { isMalformed, malformedReason } from "./tolerant.js";

export interface AdminTransportOptions {
  service: AdminService;
  quotaPerUnit: number;
  currency: string;
  version: string;
  log: (err: unknown) => void;
  /** QueryUsage / WatchUsage handlers (src/transport/usage.ts). */
  usage: Pick<AdminServer, "queryUsage" | "watchUsage">;
  /** Webhook endpoints and deliveries (service/webhooks.ts); absent = the calls answer FAILED_PRECONDITION. */
  webhooks?: WebhookService;
}

function webhookToProto(svc: WebhookService, e: WebhookEndpoint): Webhook {
  const st = svc.stats(e.id);
  return { id: e.id, url: e.url, events: [...e.events], thresholds: [...e.thresholds], balanceLow: String(e.balanceLow), createdAt: new Date(e.createdAt), pending: st.pending, delivered: st.delivered, failed: st.failed, lastError: st.lastError };
}

function deliveryToProto(d: WebhookDelivery): WebhookDeliveryPb {
  return {
    id: d.id,
    webhookId: d.endpointId,
    eventId: d.event.id,
    eventType: d.event.type,
    state: d.state,
    attempts: d.attempts,
    nextAttemptAt: d.state === "pending" ? new Date(d.nextAttemptAt) : undefined,
    lastError: d.lastError,
    lastStatus: d.lastStatus,
    createdAt: new Date(d.createdAt),
    finishedAt: d.finishedAt === null ? undefined : new Date(d.finishedAt),
    body: JSON.stringify(d.event),
  };
}

const SORTS: Record<KeySort, DomainSort> = {
  [KeySort.KEY_SORT_UNSPECIFIED]: "created_desc",
  [KeySort.KEY_SORT_CREATED_DESC]: "created_desc",
  [KeySort.KEY_SORT_CREATED_ASC]: "created_asc",
  [KeySort.KEY_SORT_NAME]: "name",
  [KeySort.KEY_SORT_EXPIRES]: "expires",
  [KeySort.KEY_SORT_REMAINING]: "remaining",
  [KeySort.KEY_SORT_LAST_USED]: "last_used",
  [KeySort.UNRECOGNIZED]: "created_desc",
};

const STATUSES: Partial<Record<KeyStatus, KeyUsability>> = {
  [KeyStatus.KEY_STATUS_ENABLED]: "enabled",
  [KeyStatus.KEY_STATUS_DISABLED]: "disabled",
  [KeyStatus.KEY_STATUS_EXPIRED]: "expired",
};

/** Extracts the bearer token from call metadata. */
export function bearerOf(call: ServerUnaryCall<unknown, unknown> | { metadata: ServerUnaryCall<unknown, unknown>["metadata"] }): string {
  const v = call.metadata.get("authorization")[0];
  if (typeof v !== "string") return "";
  const m = /^\s*bearer\s+(\S+)\s*$/i.exec(v);
  return m ? m[1]! : "";
}

export function authenticate(service: AdminService, call: { metadata: ServerUnaryCall<unknown, unknown>["metadata"] }): Principal {
  const token = bearerOf(call);
  if (!token) throw new SidecarError("UNAUTHENTICATED", "missing credentials: send metadata 'authorization: Bearer <admin token>'");
  const p = service.authenticate(token);
  if (!p) throw new SidecarError("UNAUTHENTICATED", "invalid admin token");
  return p;
}

export function createAdminServer(opts: AdminTransportOptions): AdminServer {
  const svc = opts.service;
  const keyToProto = (s: KeyState) => {
    const k = keyStateToProto(s, svc.keyFacts(s));
    const next = svc.nextReset(s);
    if (next !== null) k.nextResetAt = new Date(next);
    return k;
  };
  const hooks = (): WebhookService => {
    if (!opts.webhooks) throw new SidecarError("FAILED_PRECONDITION", "webhooks are not configured on this server");
    return opts.webhooks;
  };
  function unary<Req, Res>(fn: (req: Req, p: Principal) => Promise<Res> | Res) {
    return (call: ServerUnaryCall<Req, Res>, callback: sendUnaryData<Res>): void => {
      let p: Principal;
      try {
        p = authenticate(svc, call);
      } catch (err) {
        callback(toServiceError(err, opts.log));
        return;
      }
      Promise.resolve()
        .then(() => {
          if (isMalformed(call.request)) throw new SidecarError("INVALID_ARGUMENT", malformedReason(call.request));
          return fn(call.request, p);
        })
        .then(
          (res) => callback(null, res),
          (err) => callback(toServiceError(err, opts.log)),
        );
    };
  }

  return {
    whoAmI: unary(async (_req, p) => ({
      tokenId: p.tokenId,
      accountId: p.accountId ?? "",
      readOnly: p.readOnly,
      quotaPerUnit: String(opts.quotaPerUnit),
      currency: opts.currency,
      serverVersion: opts.version,
    })),
    createKey: unary(async (req, p) => {
      const r = await svc.createKey(p, specFromProto(req.spec), req.accountId);
      return { key: keyToProto(r.key), secret: r.secret };
    }),
    getKey: unary(async (req, p) => keyToProto(await svc.getKey(p, req.id))),
    listKeys: unary(async (req, p) => {
      const r = await svc.listKeys(p, {
        query: req.query,
        status: STATUSES[req.status],
        group: req.group || undefined,
        accountId: req.accountId || undefined,
        expired: req.expired === Tristate.TRISTATE_TRUE ? true : req.expired === Tristate.TRISTATE_FALSE ? false : undefined,
        model: req.model || undefined,
        sort: SORTS[req.sort] ?? "created_desc",
        pageSize: req.pageSize,
        pageToken: req.pageToken,
      });
      return { keys: r.keys.map(keyToProto), nextPageToken: r.nextPageToken, totalSize: r.total };
    }),
    updateKey: unary(async (req, p) => keyToProto(await svc.updateKey(p, req.id, specFromProto(req.spec), req.updateMask))),
    setKeysEnabled: unary(async (req, p) => ({ keys: (await svc.setKeysEnabled(p, req.ids, req.enabled)).map(keyToProto) })),
    deleteKeys: unary(async (req, p) => ({ deletedIds: await svc.deleteKeys(p, req.ids) })),
    revealKeys: unary(async (req, p) => ({ keys: await svc.revealKeys(p, req.ids) })),
    rotateKey: unary(async (req, p) => {
      const grace = Number(req.graceSeconds || "0");
      const r = await svc.rotateKey(p, req.id, Number.isSafeInteger(grace) ? grace * 1000 : -1);
      return { key: keyToProto(r.key), secret: r.secret };
    }),
    createAccount: unary(async (req, p) => accountToProto(await svc.createAccount(p, { id: req.id, name: req.name, initialBalance: req.initialBalance, timezone: req.timezone }))),
    getAccount: unary(async (req, p) => accountToProto(svc.getAccount(p, req.id))),
    listAccounts: unary(async (_req, p) => ({ accounts: svc.listAccounts(p).map(accountToProto) })),
    updateAccount: unary(async (req, p) => accountToProto(await svc.updateAccount(p, req.id, { name: req.name, timezone: req.timezone }, req.updateMask))),
    adjustBalance: unary(async (req, p) => accountToProto(await svc.adjustBalance(p, req.accountId, req.delta, req.reason))),
    createGroup: unary(async (req, p) =>
      groupToProto(
        await svc.createGroup(p, { name: req.name, description: req.description, priceRatio: req.priceRatio, models: req.models, accounts: req.accounts, budget: budgetFromProto(req.budget) }),
      ),
    ),
    updateGroup: unary(async (req, p) =>
      groupToProto(
        await svc.updateGroup(
          p,
          req.name,
          {
            description: req.group?.description,
            priceRatio: req.group?.priceRatio,
            models: req.group?.models ?? [],
            accounts: req.group?.accounts ?? [],
            budget: budgetFromProto(req.group?.budget),
          },
          req.updateMask,
        ),
      ),
    ),
    listGroups: unary(async (_req, p) => ({ groups: svc.listGroups(p).map(groupToProto) })),
    deleteGroup: unary(async (req, p) => {
      await svc.deleteGroup(p, req.name);
      return {};
    }),
    createToken: unary(async (req, p) => {
      const r = await svc.createToken(p, { name: req.name, accountId: req.accountId, readOnly: req.readOnly });
      return { token: tokenToProto(r.token), secret: r.secret };
    }),
    listTokens: unary(async (_req, p) => ({ tokens: svc.listTokens(p).map(tokenToProto) })),
    revokeToken: unary(async (req, p) => {
      await svc.revokeToken(p, req.id);
      return {};
    }),
    listAudit: unary(async (req, p) => {
      const r = await svc.listAudit(p, { target: req.target, actor: req.actor, since: req.since?.getTime(), pageSize: req.pageSize, pageToken: req.pageToken });
      return { entries: r.entries.map(auditToProto), nextPageToken: r.nextPageToken };
    }),
    setPrice: unary(async (req, p) =>
      priceToProto(
        await svc.setPrice(p, {
          model: req.price?.model,
          inputPerMillion: req.price?.inputPerMillion,
          outputPerMillion: req.price?.outputPerMillion,
          perRequest: req.price?.perRequest,
          cacheReadPerMillion: req.price?.cacheReadPerMillion,
          cacheWritePerMillion: req.price?.cacheWritePerMillion,
          reasoningPerMillion: req.price?.reasoningPerMillion,
        }),
      ),
    ),
    listPrices: unary(async (_req, p) => ({ prices: svc.listPrices(p).map(priceToProto) })),
    deletePrice: unary(async (req, p) => {
      await svc.deletePrice(p, req.model);
      return {};
    }),
    queryUsage: opts.usage.queryUsage,
    watchUsage: opts.usage.watchUsage,
    createWebhook: unary(async (req, p) => {
      const e = await hooks().create(p, { url: req.url, events: req.events, thresholds: req.thresholds, balanceLow: Number(req.balanceLow || 0) });
      return { webhook: webhookToProto(hooks(), e), secret: e.secret };
    }),
    listWebhooks: unary(async (_req, p) => {
      await hooks().refresh(); // a fleet's endpoints: as the shared store has them now
      return { webhooks: hooks().list(p).map((e) => webhookToProto(hooks(), e)), dropped: String(hooks().dropped) };
    }),
    deleteWebhook: unary(async (req, p) => {
      await hooks().remove(p, req.id);
      return {};
    }),
    listWebhookDeliveries: unary(async (req, p) => {
      await hooks().refresh();
      return { deliveries: hooks().deliveries(p, { endpointId: req.webhookId, state: req.state, limit: req.limit }).map(deliveryToProto) };
    }),
    testWebhook: unary(async (req, p) => deliveryToProto(await hooks().test(p, req.id))),
  };
}

export { status };
