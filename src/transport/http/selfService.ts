// Self-service for account holders (issue 19 item 6), as JSON on the HTTP listener:
//   GET /v1/account           → the account's balance (and what open reservations hold)
//   GET /v1/keys              → each key's quota: total, remaining, reserved, spendable, next reset
//   GET /v1/usage?days=N      → usage by UTC day for the last N days (1..366, default 30)
// Authenticated like the admin API: `authorization: Bearer <token>` (an account-scoped token
// from `aisa-authz tokens create --account A`, or the operator's). The SAME AdminService and
// UsageRecorder as the admin gRPC API, with the same tenancy rules: an account token reads only
// its own account (`?account=` naming another is 404 NOT_FOUND, as the admin API answers);
// operator and unscoped tokens choose with `?account=` (default "default").
// 64-bit amounts are JSON strings (as the rest of the JSON API); times RFC 3339 or null.
import { SidecarError, notFound } from "../../domain/errors.js";
import type { KeyState, Principal } from "../../domain/types.js";
import { DEFAULT_ACCOUNT } from "../../domain/types.js";
import type { AdminService } from "../../service/admin.js";
import type { UsageQuery, UsageQueryResult } from "../../service/usage.js";
import type { HttpReply } from "./forwardAuth.js";
import { errorReply, json } from "./jsonApi.js";

export const SELF_PATHS: ReadonlySet<string> = new Set(["/v1/account", "/v1/keys", "/v1/usage"]);

const DAY_MS = 86_400_000;
export const MAX_USAGE_DAYS = 366;

export interface SelfServiceOptions {
  admin: AdminService;
  usage: { query(q: UsageQuery, p: Principal): Promise<UsageQueryResult> };
  clock: () => number;
  log: (err: unknown) => void;
}

function iso(t: number | null | undefined): string | null {
  return t === null || t === undefined ? null : new Date(t).toISOString();
}

function principalOf(o: SelfServiceOptions, authorization: string | undefined): Principal {
  const m = /^Bearer[ \t]+(\S+)[ \t]*$/i.exec(authorization ?? "");
  if (!m) throw new SidecarError("UNAUTHENTICATED", "missing credentials: send 'authorization: Bearer <account token>'");
  const p = o.admin.authenticate(m[1]!);
  if (!p) throw new SidecarError("UNAUTHENTICATED", "invalid token");
  return p;
}

/** The account the caller reads: its own (account tokens), else ?account= (default "default"). */
function accountOf(p: Principal, search: URLSearchParams): string {
  const asked = search.get("account") ?? "";
  if (p.accountId !== null) {
    if (asked !== "" && asked !== p.accountId) throw notFound("account", asked);
    return p.accountId;
  }
  return asked || DEFAULT_ACCOUNT;
}

export function keyJson(o: SelfServiceOptions, s: KeyState): Record<string, unknown> {
  const r = s.record;
  const c = s.counters;
  const facts = o.admin.keyFacts(s);
  return {
    id: r.id,
    name: r.name,
    status: facts.expired ? "expired" : r.status,
    group: r.group,
    unlimited: r.unlimited,
    total: String(r.unlimited ? 0 : r.quotaTotal),
    remaining: String(r.unlimited ? 0 : c.remaining),
    reserved: String(c.reserved),
    spendable: String(r.unlimited ? 0 : c.remaining - c.reserved),
    used: String(c.used),
    refill: r.refill,
    next_reset_at: iso(o.admin.nextReset(s)),
    expires_at: iso(r.expiresAt),
    last_used_at: iso(c.lastUsedAt),
    limits: { rpm: r.limits.rpm, tpm: r.limits.tpm, concurrency: r.limits.concurrency },
  };
}

async function account(o: SelfServiceOptions, p: Principal, search: URLSearchParams): Promise<HttpReply> {
  const a = o.admin.getAccount(p, accountOf(p, search));
  const c = a.counters;
  return json(200, {
    account: {
      id: a.record.id,
      name: a.record.name,
      balance: String(c.balance),
      reserved: String(c.reserved),
      available: String(c.balance - c.reserved),
      credited: String(c.credited),
      charged: String(c.charged),
    },
  });
}

async function keys(o: SelfServiceOptions, p: Principal, search: URLSearchParams): Promise<HttpReply> {
  const accountId = accountOf(p, search);
  const out: Record<string, unknown>[] = [];
  let pageToken = "";
  do {
    const page = await o.admin.listKeys(p, { accountId, pageSize: 1000, pageToken, sort: "created_asc" });
    for (const s of page.keys) out.push(keyJson(o, s));
    pageToken = page.nextPageToken;
  } while (pageToken !== "");
  return json(200, { account_id: accountId, keys: out });
}

async function usage(o: SelfServiceOptions, p: Principal, search: URLSearchParams): Promise<HttpReply> {
  const accountId = accountOf(p, search);
  const raw = search.get("days");
  const days = raw === null || raw === "" ? 30 : Number(raw);
  if (!Number.isInteger(days) || days < 1 || days > MAX_USAGE_DAYS) {
    throw new SidecarError("INVALID_ARGUMENT", `days: must be an integer 1..${MAX_USAGE_DAYS} (got ${JSON.stringify(raw).slice(0, 40)})`);
  }
  const now = o.clock();
  const today = Math.floor(now / DAY_MS) * DAY_MS;
  const since = today - (days - 1) * DAY_MS;
  const r = await o.usage.query({ filter: { accountId }, groupBy: "account", gran: "d", since, until: now + 1 }, p);
  const byDay = new Map<number, UsageQueryResult["rows"][number]["counters"]>();
  for (const row of r.rows) if (row.id === accountId) byDay.set(row.start, row.counters);
  const rows: Record<string, unknown>[] = [];
  for (let d = since; d <= today; d += DAY_MS) {
    const c = byDay.get(d);
    rows.push({
      date: new Date(d).toISOString().slice(0, 10),
      requests: String(c?.requests ?? 0),
      denied: String(c?.denied ?? 0),
      input_tokens: String(c?.inputTokens ?? 0),
      output_tokens: String(c?.outputTokens ?? 0),
      units: String(c?.units ?? 0),
    });
  }
  return json(200, { account_id: accountId, days: rows });
}

/** GET /v1/account, /v1/keys, /v1/usage. Never throws: errors are the JSON API's error replies. */
export async function handleSelfService(o: SelfServiceOptions, path: string, search: URLSearchParams, authorization: string | undefined): Promise<HttpReply> {
  try {
    const p = principalOf(o, authorization);
    if (path === "/v1/account") return await account(o, p, search);
    if (path === "/v1/keys") return await keys(o, p, search);
    return await usage(o, p, search);
  } catch (err) {
    return errorReply(err, o.log);
  }
}
