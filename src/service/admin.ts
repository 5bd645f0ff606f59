// Admin operations: validation, authorisation by principal, and calls into the
// store's atomic primitives. No gRPC types here (the transport translates), no
// storage engine (only the AdminStore interface).
import { randomBytes } from "node:crypto";
import type {
  AccountRecord,
  AccountState,
  AuditRecord,
  GroupBudget,
  GroupRecord,
  KeyRecord,
  KeyState,
  Principal,
  PriceRecord,
  RateLimits,
  RefillPeriod,
  TokenRecord,
} from "../domain/types.js";
import { DEFAULT_ACCOUNT, DEFAULT_GROUP } from "../domain/types.js";
import { invalid, notFound, permissionDenied, SidecarError } from "../domain/errors.js";
import { parseExpiry } from "../domain/expiry.js";
import { IPS_MAX, METADATA_ENTRIES_MAX, METADATA_KEY_MAX, METADATA_VALUE_MAX, MODELS_MAX, nameProblem } from "../domain/limits.js";
import { allowsModel, effectiveModels, isExpiredAt, keyFacts, matchesStatusFilter, type KeyFacts, type KeyUsability } from "../domain/keyView.js";
import { normalizeIpEntry } from "../domain/ip.js";
import { nextReset } from "../domain/nextReset.js";
import { addExact, parseRatioPpm, parseUnits } from "../domain/units.js";
import { chargeSaturated, maxChargeUnits } from "../policy/pricing.js";
import { modelNameProblem, quoteText, textProblem } from "../domain/text.js";
import { canonicalTimeZone, MAX_EVERY_DAYS } from "../domain/refill.js";
import { generateId, generateKeySecret, generateTokenSecret, hashSecret, maskSecret, type SecretBox } from "../keys/secrets.js";
import type { AdminStore, AuditInput, GroupWithCount, KeyChange, KeyIndexView } from "../store/types.js";

/** KeySpec as the service takes it (the transport converts enums and int64). */
export interface KeySpecInput {
  name?: string;
  group?: string;
  expires?: string;
  quota?: string | number;
  unlimited?: boolean;
  models?: string[];
  ips?: string[];
  limits?: Partial<RateLimits>;
  refill?: RefillPeriod | undefined;
  /** With refill: every N days (daily), its anchor (see domain/refill.ts). */
  refillEvery?: number | undefined;
  refillAnchor?: number | undefined;
  metadata?: Record<string, string>;
}

export const KEY_SPEC_FIELDS = ["name", "group", "expires", "quota", "unlimited", "models", "ips", "limits", "refill", "metadata"] as const;
export type KeySpecField = (typeof KEY_SPEC_FIELDS)[number];

export type KeySort = "created_desc" | "created_asc" | "name" | "expires" | "remaining" | "last_used";

export interface ListKeysInput {
  query?: string;
  /** "enabled" = usable now (enabled, not expired); "expired" = past its expiry (src/domain/keyView.ts). */
  status?: KeyUsability;
  group?: string;
  accountId?: string;
  expired?: boolean;
  model?: string;
  sort?: KeySort;
  pageSize?: number;
  pageToken?: string;
}

const MAX_BULK = 1000;
const MAX_GRACE_MS = 30 * 86_400_000;
const ID_RE = /^[a-z0-9][a-z0-9_-]{0,62}$/;
const GROUP_RE = /^[a-z0-9][a-z0-9_.-]{0,62}$/;
const REFILLS: readonly RefillPeriod[] = ["none", "daily", "weekly", "monthly"];

/** Stored text (src/domain/text.ts): no control, invisible or bidi characters, nothing shaped like a secret. */
function validText(s: string, field: string): string {
  const problem = textProblem(s);
  if (problem) throw invalid(field, problem);
  return s;
}

function validName(v: string | undefined, field: string): string {
  const problem = nameProblem(v ?? "");
  if (problem) throw invalid(field, problem);
  return (v ?? "").trim();
}

function validRefill(r: RefillPeriod | undefined, field: string): RefillPeriod {
  if (r === undefined) return "none";
  if (!REFILLS.includes(r)) throw invalid(field, `${quoteText(String(r))} is not one of ${REFILLS.join(", ")}`);
  return r;
}

function validModels(models: readonly string[] | undefined, field: string): string[] {
  const out: string[] = [];
  const seen = new Set<string>();
  (models ?? []).forEach((m, i) => {
    const s = m.trim();
    const problem = modelNameProblem(s);
    if (problem) throw invalid(`${field}[${i}]`, problem);
    if (!seen.has(s)) {
      seen.add(s);
      out.push(s);
    }
  });
  if (out.length > MODELS_MAX) throw invalid(field, `at most ${MODELS_MAX} models`);
  return out;
}

function validIps(ips: readonly string[] | undefined, field: string): string[] {
  const list = ips ?? [];
  if (list.length > IPS_MAX) throw invalid(field, `at most ${IPS_MAX} entries (got ${list.length})`);
  const out: string[] = [];
  const seen = new Set<string>();
  list.forEach((s, i) => {
    const n = normalizeIpEntry(s, `${field}[${i}]`);
    if (!seen.has(n)) {
      seen.add(n);
      out.push(n);
    }
  });
  return out;
}

function validLimits(l: Partial<RateLimits> | undefined, field: string): RateLimits {
  const one = (v: number | undefined, f: string) => {
    const n = v ?? 0;
    if (!Number.isInteger(n) || n < 0 || n > 1_000_000_000) throw invalid(`${field}.${f}`, `must be an integer 0..1000000000 (got ${n})`);
    return n;
  };
  return { rpm: one(l?.rpm, "rpm"), tpm: one(l?.tpm, "tpm"), concurrency: one(l?.concurrency, "concurrency") };
}

function validMetadata(m: Record<string, string> | undefined, field: string): Record<string, string> {
  const entries = Object.entries(m ?? {});
  if (entries.length > METADATA_ENTRIES_MAX) throw invalid(field, `at most ${METADATA_ENTRIES_MAX} entries`);
  for (const [k, v] of entries) {
    const at = `${field}[${quoteText(k)}]`;
    if (k.length === 0 || k.length > METADATA_KEY_MAX) throw invalid(at, `keys must be 1..${METADATA_KEY_MAX} characters`);
    const kp = textProblem(k);
    if (kp) throw invalid(at, `key ${kp}`);
    if (v.length > METADATA_VALUE_MAX) throw invalid(at, `values must be at most ${METADATA_VALUE_MAX} characters`);
    validText(v, at);
  }
  return Object.fromEntries(entries);
}

function checkIds(ids: readonly string[], field = "ids"): string[] {
  if (ids.length === 0) throw invalid(field, "must name at least one key");
  if (ids.length > MAX_BULK) throw invalid(field, `at most ${MAX_BULK} keys per call`);
  const seen = new Set<string>();
  ids.forEach((id, i) => {
    if (!id) throw invalid(`${field}[${i}]`, "must not be empty");
    if (seen.has(id)) throw invalid(`${field}[${i}]`, `duplicate id ${JSON.stringify(id)}`);
    seen.add(id);
  });
  return [...ids];
}

interface PageToken {
  /** Offset into the listing. */
  o: number;
  /** The listing snapshot the offset is into (ListKeys); absent = recompute the listing. */
  s?: string;
}

function decodePageToken(t: string | undefined): { offset: number; snapshot?: string } {
  if (!t) return { offset: 0 };
  try {
    const v = JSON.parse(Buffer.from(t, "base64url").toString("utf8")) as PageToken;
    if (Number.isInteger(v.o) && v.o >= 0 && (v.s === undefined || (typeof v.s === "string" && v.s.length <= 32))) return { offset: v.o, snapshot: v.s };
  } catch {
    // fall through
  }
  throw invalid("page_token", "is not a token returned by this API");
}

function encodePageToken(offset: number, snapshot?: string): string {
  return Buffer.from(JSON.stringify({ o: offset, s: snapshot } satisfies PageToken)).toString("base64url");
}

/**
 * A ListKeys listing kept between its pages: the matching key ids in order, so page N does not
 * scan, filter and sort every key again (which made paging through 100k keys quadratic). Each
 * page reads its keys fresh and re-applies the filter (a key changed since may drop out; a key
 * created since appears in a new listing). Scoped to the principal's account and the query: a
 * token presented by another tenant or with another query is not served from it.
 */
interface ListSnapshot {
  scope: string;
  query: string;
  ids: string[];
  expiresAt: number;
}
const SNAPSHOT_TTL_MS = 60_000;
const SNAPSHOTS_MAX = 8;

export interface AdminServiceOptions {
  store: AdminStore;
  box: SecretBox;
  clock: () => number;
  /** Operator token id for the bootstrap token. */
  operatorTokenHash: string;
  /** Told after each successful key mutation (live usage). For "deleted", `key` is the state before. Must not throw. */
  events?: (e: { keyId: string; kind: "created" | "updated" | "enabled" | "disabled" | "deleted" | "rotated"; key?: KeyState }) => void;
}

/** A budget as the API passes it (Budget message), before validation. */
export interface BudgetInput {
  units: string | number;
  period: RefillPeriod | undefined;
  every?: number;
  anchor?: number;
  timezone?: string;
}

/** An IANA time zone, canonical ("" or absent = "UTC"). */
function validTimeZone(tz: string | undefined, field: string): string {
  const t = (tz ?? "").trim();
  if (t === "") return "UTC";
  const c = canonicalTimeZone(t);
  if (c === null) throw invalid(field, `${JSON.stringify(t)} is not an IANA time zone (e.g. "UTC", "Europe/Berlin", "America/New_York")`);
  return c;
}

/**
 * A period's N and anchor for `period` (domain/refill.ts): N only for daily (every N days,
 * 0..366), the anchor in the range its period gives it. Returns them as stored (absent =
 * the default).
 */
function validPeriodShape(period: Exclude<RefillPeriod, "none">, every: number | undefined, anchor: number | undefined, everyField: string, anchorField: string): { every?: number; anchor?: number } {
  const e = every ?? 0;
  const a = anchor ?? 0;
  if (!Number.isSafeInteger(e) || e < 0 || e > MAX_EVERY_DAYS) throw invalid(everyField, `must be 0..${MAX_EVERY_DAYS}`);
  if (e > 1 && period !== "daily") throw invalid(everyField, "applies to a daily period only (every N days)");
  const maxAnchor = period === "monthly" ? 31 : period === "weekly" ? 7 : e > 1 ? 2_932_896 /* 9999-12-31 */ : 0;
  if (!Number.isSafeInteger(a) || a < 0 || a > maxAnchor) {
    throw invalid(
      anchorField,
      period === "monthly"
        ? "must be a day of the month, 1..31 (0 = the 1st)"
        : period === "weekly"
          ? "must be an ISO weekday, 1 Monday .. 7 Sunday (0 = Monday)"
          : e > 1
            ? "must be a day since 1970-01-01"
            : "applies to monthly, weekly or every-N-days periods only",
    );
  }
  const out: { every?: number; anchor?: number } = {};
  if (e > 1) out.every = e;
  if (a > 0) out.anchor = a;
  return out;
}

/** A group budget (undefined = none): units > 0, a period, its N and anchor in range, a zone. */
function validBudget(b: BudgetInput | undefined, field: string): GroupBudget | undefined {
  if (b === undefined) return undefined;
  const units = parseUnits(b.units, `${field}.units`);
  if (units <= 0) throw invalid(`${field}.units`, "must be > 0");
  if (b.period === undefined || b.period === "none") throw invalid(`${field}.period`, "must be daily, weekly or monthly");
  const out: GroupBudget = { units, period: b.period, ...validPeriodShape(b.period, b.every, b.anchor, `${field}.every_days`, `${field}.anchor`) };
  const tz = validTimeZone(b.timezone, `${field}.timezone`);
  if (tz !== "UTC") out.timezone = tz;
  return out;
}

/** A key's refill: its period with its N and anchor (record fields; absent = the default). */
function validKeyRefill(spec: KeySpecInput): Pick<KeyRecord, "refill" | "refillEvery" | "refillAnchor"> {
  const refill = validRefill(spec.refill, "spec.refill");
  if (refill === "none") {
    if (spec.refillEvery || spec.refillAnchor) throw invalid(spec.refillEvery ? "spec.refill_every_days" : "spec.refill_anchor", "needs a refill period");
    return { refill };
  }
  const shape = validPeriodShape(refill, spec.refillEvery, spec.refillAnchor, "spec.refill_every_days", "spec.refill_anchor");
  const out: Pick<KeyRecord, "refill" | "refillEvery" | "refillAnchor"> = { refill };
  if (shape.every !== undefined) out.refillEvery = shape.every;
  if (shape.anchor !== undefined) out.refillAnchor = shape.anchor;
  return out;
}

export class AdminService {
  readonly #store: AdminStore;
  readonly #box: SecretBox;
  readonly #clock: () => number;
  readonly #operatorHash: string;
  readonly #events: NonNullable<AdminServiceOptions["events"]>;

  constructor(opts: AdminServiceOptions) {
    this.#store = opts.store;
    this.#box = opts.box;
    this.#clock = opts.clock;
    this.#operatorHash = opts.operatorTokenHash;
    this.#events = opts.events ?? (() => {});
  }

  // ---- authentication ---------------------------------------------------------

  /** Maps a bearer secret to a principal; undefined = not a valid token. Constant-time on the secret (hash lookup). */
  authenticate(secret: string): Principal | undefined {
    if (!secret) return undefined;
    const h = hashSecret(secret);
    // Comparing SHA-256 digests: equal-length, and the map lookup is on a digest
    // the caller cannot steer, so timing reveals nothing about the secret.
    if (h === this.#operatorHash) return { tokenId: "operator", accountId: null, readOnly: false };
    const t = this.#store.findTokenByHash(h);
    return t ? { tokenId: t.id, accountId: t.accountId, readOnly: t.readOnly } : undefined;
  }

  #requireWrite(p: Principal): void {
    if (p.readOnly) throw permissionDenied("this token is read-only");
  }

  #requireOperator(p: Principal, what: string): void {
    if (p.accountId !== null) throw permissionDenied(`an account-scoped token cannot ${what}`);
    this.#requireWrite(p);
  }

  /** NOT_FOUND (not PERMISSION_DENIED) for another account's key: it must not learn the key exists. */
  #visible(p: Principal, s: KeyState, id: string): void {
    if (p.accountId !== null && s.record.accountId !== p.accountId) throw notFound("key", id);
  }

  #audit(p: Principal, action: string, target: string, extra: Partial<AuditInput> = {}): AuditInput {
    return { actor: p.tokenId, action, target, ...extra };
  }

  // ---- keys -------------------------------------------------------------------------

  #groupOf(p: Principal, name: string | undefined, field: string): string {
    const g = (name ?? "").trim() || DEFAULT_GROUP;
    // An account token learns nothing about groups not open to it: unknown and closed answer alike.
    if (!this.#store.getGroup(g)) {
      if (p.accountId !== null) throw permissionDenied(`${field}: this token may not assign group ${JSON.stringify(g)}`);
      throw invalid(field, `group ${JSON.stringify(g)} does not exist`);
    }
    return g;
  }

  /**
   * THE group-assignment rule. A group decides a key's models and price, so only operators
   * assign groups freely. An account-scoped token may keep a key's current group (`current`),
   * choose "default" when creating (`current` null), or choose a group whose `accounts` an
   * operator opened to its account. Runs where the key's current group is read (inside the
   * store's critical section for updates). PERMISSION_DENIED naming `field` otherwise.
   */
  #mayAssignGroup(p: Principal, group: string, current: string | null, field: string): void {
    if (p.accountId === null) return;
    if (group === current) return;
    if (current === null && group === DEFAULT_GROUP) return;
    if (this.#store.getGroup(group)?.accounts?.includes(p.accountId)) return;
    throw permissionDenied(`${field}: this token may not assign group ${JSON.stringify(group)} (an operator assigns it, or opens it to the account with \`aisa-authz groups update ${group} --accounts …\`)`);
  }

  /** Groups an account-scoped token may see: "default", those its keys use, those opened to it. */
  #groupVisible(accountId: string, g: GroupWithCount): boolean {
    return g.name === DEFAULT_GROUP || g.keyCount > 0 || (g.accounts ?? []).includes(accountId);
  }

  async createKey(p: Principal, spec: KeySpecInput, accountId: string | undefined): Promise<{ key: KeyState; secret: string }> {
    this.#requireWrite(p);
    const now = this.#clock();
    let account = (accountId ?? "").trim();
    if (p.accountId !== null) {
      if (account && account !== p.accountId) throw notFound("account", account);
      account = p.accountId;
    }
    account ||= DEFAULT_ACCOUNT;
    if (!this.#store.getAccount(account)) throw invalid("account_id", `account ${JSON.stringify(account)} does not exist`);
    const name = validName(spec.name, "spec.name");
    const group = this.#groupOf(p, spec.group, "spec.group");
    this.#mayAssignGroup(p, group, null, "spec.group");
    const expiresAt = parseExpiry(spec.expires ?? "", now, "spec.expires");
    const unlimited = spec.unlimited === true;
    const quotaTotal = unlimited ? 0 : parseUnits(spec.quota, "spec.quota");
    const secret = generateKeySecret();
    const id = generateId("key_");
    const record: KeyRecord = {
      id,
      name,
      accountId: account,
      group,
      status: "enabled",
      unlimited,
      quotaTotal,
      expiresAt,
      models: validModels(spec.models, "spec.models"),
      ips: validIps(spec.ips, "spec.ips"),
      createdAt: now,
      updatedAt: now,
      limits: validLimits(spec.limits, "spec.limits"),
      ...validKeyRefill(spec),
      metadata: validMetadata(spec.metadata, "spec.metadata"),
      secretHash: hashSecret(secret),
      secretEnc: this.#box.seal(secret, id),
      masked: maskSecret(secret),
      prevSecretHash: null,
      prevSecretExpiresAt: null,
    };
    const key = await this.#store.insertKey(record, this.#audit(p, "CreateKey", id, { account }));
    this.#events({ keyId: id, kind: "created", key });
    return { key, secret };
  }

  /** What a Key message states beyond the record: effective models (key ∩ group), expired, at this moment. */
  keyFacts(s: KeyState): KeyFacts {
    const r = s.record;
    return keyFacts(r.models, r.expiresAt, this.#store.getGroup(r.group)?.models, this.#clock());
  }

  /** When the key's quota is next refilled (domain/nextReset.ts), in its account's time zone, at this moment; null = no refill. */
  nextReset(s: KeyState): number | null {
    return nextReset(s.record, this.#clock(), this.#store.getAccount(s.record.accountId)?.record.timezone);
  }

  async getKey(p: Principal, id: string): Promise<KeyState> {
    if (!id) throw invalid("id", "must not be empty");
    const s = await this.#store.getKey(id);
    if (!s) throw notFound("key", id);
    this.#visible(p, s, id);
    return s;
  }

  async listKeys(p: Principal, q: ListKeysInput): Promise<{ keys: KeyState[]; nextPageToken: string; total: number }> {
    const now = this.#clock();
    const pageSize = q.pageSize === undefined || q.pageSize === 0 ? 100 : q.pageSize;
    if (!Number.isInteger(pageSize) || pageSize < 1 || pageSize > 1000) throw invalid("page_size", `must be 1..1000 (got ${pageSize})`);
    const { offset, snapshot } = decodePageToken(q.pageToken);
    const account = p.accountId ?? (q.accountId || undefined);
    if (p.accountId !== null && q.accountId && q.accountId !== p.accountId) return { keys: [], nextPageToken: "", total: 0 };
    const needle = (q.query ?? "").trim().toLowerCase();
    const sort = q.sort ?? "created_desc";
    // The filters that read only what the key book holds in memory (status, expiry, group)…
    const keepIndexed = (v: KeyIndexView): boolean => {
      const expired = isExpiredAt(v.expiresAt, now);
      if (q.status && !matchesStatusFilter(q.status, v.enabled, expired)) return false;
      if (q.group && v.group !== q.group) return false;
      if (q.expired !== undefined && expired !== q.expired) return false;
      return true;
    };
    // …and all of them, on a record.
    const matches = (s: KeyState): boolean => {
      const r = s.record;
      if (account !== undefined && r.accountId !== account) return false;
      if (needle && !r.name.toLowerCase().includes(needle) && !r.id.toLowerCase().includes(needle)) return false;
      if (!keepIndexed({ enabled: r.status === "enabled", expiresAt: r.expiresAt, group: r.group })) return false;
      // The models Check allows: the key's own list AND its group's.
      if (q.model && !allowsModel(effectiveModels(r.models, this.#store.getGroup(r.group)?.models), q.model)) return false;
      return true;
    };
    const scope = p.accountId ?? "";
    const query = JSON.stringify([account ?? null, needle, q.status ?? null, q.group ?? null, q.expired ?? null, q.model ?? null, sort]);

    // A later page of a listing still kept: read just this page's keys.
    this.#pruneSnapshots(now);
    const snap = snapshot !== undefined ? this.#snapshots.get(snapshot) : undefined;
    if (snap && snap.scope === scope && snap.query === query) {
      const page = await this.#pageRecords(snap.ids.slice(offset, offset + pageSize), matches);
      const more = offset + pageSize < snap.ids.length;
      return { keys: page, nextPageToken: more ? encodePageToken(offset + pageSize, snapshot) : "", total: snap.ids.length };
    }

    // Creation order (the default, and the TUI's) without a filter that needs the record: the
    // order comes from the key book in memory and only this page's records are read — the first
    // page at 100k keys no longer decodes every record.
    if (!needle && !q.model && (sort === "created_desc" || sort === "created_asc")) {
      const ids = this.#store.keyIdsByCreation(account, sort === "created_desc", keepIndexed);
      const page = await this.#pageRecords(ids.slice(offset, offset + pageSize), matches);
      return this.#keptListing(page, ids, offset, pageSize, scope, query, now);
    }

    const all: KeyState[] = [];
    for await (const s of this.#store.scanKeys(account)) if (matches(s)) all.push(s);
    const last = Number.POSITIVE_INFINITY;
    const by: Record<KeySort, (a: KeyState, b: KeyState) => number> = {
      created_desc: (a, b) => b.record.createdAt - a.record.createdAt || (a.record.id < b.record.id ? -1 : 1),
      created_asc: (a, b) => a.record.createdAt - b.record.createdAt || (a.record.id < b.record.id ? -1 : 1),
      name: (a, b) => a.record.name.localeCompare(b.record.name) || (a.record.id < b.record.id ? -1 : 1),
      expires: (a, b) => (a.record.expiresAt ?? last) - (b.record.expiresAt ?? last) || (a.record.id < b.record.id ? -1 : 1),
      remaining: (a, b) =>
        (a.record.unlimited ? last : a.counters.remaining) - (b.record.unlimited ? last : b.counters.remaining) || (a.record.id < b.record.id ? -1 : 1),
      last_used: (a, b) => (b.counters.lastUsedAt ?? -1) - (a.counters.lastUsedAt ?? -1) || (a.record.id < b.record.id ? -1 : 1),
    };
    all.sort(by[sort]);
    return this.#keptListing(all.slice(offset, offset + pageSize), all.map((s) => s.record.id), offset, pageSize, scope, query, now);
  }

  /**
   * The records of a page's ids that still match: a key deleted or changed since the listing's
   * order was taken drops out; an unreadable record is left out (as scanKeys leaves it out, logged
   * by the store), so one damaged record never hides the rest of the list.
   */
  async #pageRecords(ids: readonly string[], matches: (s: KeyState) => boolean): Promise<KeyState[]> {
    const got = await Promise.all(ids.map((id) => this.#store.getKey(id).catch((e: unknown) => {
      if (e instanceof SidecarError && e.code === "FAILED_PRECONDITION") return undefined;
      throw e;
    })));
    return got.filter((s): s is KeyState => s !== undefined && matches(s));
  }

  /** A listing's page; when more pages follow, the listing's ids are kept for them (a page token). */
  #keptListing(page: KeyState[], ids: string[], offset: number, pageSize: number, scope: string, query: string, now: number): { keys: KeyState[]; nextPageToken: string; total: number } {
    if (offset + pageSize >= ids.length) return { keys: page, nextPageToken: "", total: ids.length };
    const id = randomBytes(12).toString("base64url");
    this.#snapshots.set(id, { scope, query, ids, expiresAt: now + SNAPSHOT_TTL_MS });
    while (this.#snapshots.size > SNAPSHOTS_MAX) this.#snapshots.delete(this.#snapshots.keys().next().value!);
    return { keys: page, nextPageToken: encodePageToken(offset + pageSize, id), total: ids.length };
  }

  readonly #snapshots = new Map<string, ListSnapshot>();

  #pruneSnapshots(now: number): void {
    for (const [id, s] of this.#snapshots) if (s.expiresAt <= now) this.#snapshots.delete(id);
  }

  async updateKey(p: Principal, id: string, spec: KeySpecInput, mask: readonly string[]): Promise<KeyState> {
    this.#requireWrite(p);
    if (!id) throw invalid("id", "must not be empty");
    if (mask.length === 0) throw invalid("update_mask", `must name at least one field of: ${KEY_SPEC_FIELDS.join(", ")}`);
    const fields = new Set<KeySpecField>();
    mask.forEach((f, i) => {
      const name = f.replace(/^spec\./, "") as KeySpecField;
      if (!(KEY_SPEC_FIELDS as readonly string[]).includes(name)) throw invalid(`update_mask[${i}]`, `unknown field ${JSON.stringify(f)}; expected one of ${KEY_SPEC_FIELDS.join(", ")}`);
      fields.add(name);
    });
    const now = this.#clock();
    // Validate everything before touching the store.
    const v: Partial<KeyRecord> = {};
    if (fields.has("name")) v.name = validName(spec.name, "spec.name");
    if (fields.has("group")) v.group = this.#groupOf(p, spec.group, "spec.group");
    if (fields.has("expires")) v.expiresAt = parseExpiry(spec.expires ?? "", now, "spec.expires");
    if (fields.has("models")) v.models = validModels(spec.models, "spec.models");
    if (fields.has("ips")) v.ips = validIps(spec.ips, "spec.ips");
    if (fields.has("limits")) v.limits = validLimits(spec.limits, "spec.limits");
    const refill = fields.has("refill") ? validKeyRefill(spec) : undefined;
    if (fields.has("metadata")) v.metadata = validMetadata(spec.metadata, "spec.metadata");
    const newUnlimited = fields.has("unlimited") ? spec.unlimited === true : undefined;
    const newTotal = fields.has("quota") ? parseUnits(spec.quota, "spec.quota") : undefined;
    const [after] = await this.#store.updateKeys(
      [id],
      (cur) => {
        this.#visible(p, cur, id);
        if (v.group !== undefined) this.#mayAssignGroup(p, v.group, cur.record.group, "spec.group");
        const record: KeyRecord = { ...cur.record, ...v, updatedAt: now };
        if (refill) {
          delete record.refillEvery;
          delete record.refillAnchor;
          Object.assign(record, refill);
        }
        const change: KeyChange = { record };
        const unlimited = newUnlimited ?? cur.record.unlimited;
        record.unlimited = unlimited;
        if (unlimited) {
          record.quotaTotal = 0;
        } else {
          const total = newTotal ?? (cur.record.unlimited ? 0 : cur.record.quotaTotal);
          record.quotaTotal = total;
          if (cur.record.unlimited) change.remainingSet = total; // a fresh limit starts full
          else if (total !== cur.record.quotaTotal) change.remainingDelta = total - cur.record.quotaTotal; // spent stays spent
          // Quota ever granted = used + remaining, and a refill grants used + total: both stay exact.
          const remaining = change.remainingSet ?? cur.counters.remaining + (change.remainingDelta ?? 0);
          addExact(cur.counters.used, remaining, "spec.quota", `key ${id}'s quota granted (used + remaining)`);
          if (record.refill !== "none") addExact(cur.counters.used, total, "spec.quota", `key ${id}'s quota granted at its next refill (used + total)`);
        }
        return change;
      },
      (before, afterState) => this.#audit(p, "UpdateKey", id, { account: before.record.accountId, before: before.record, after: afterState.record, detail: `fields: ${[...fields].join(",")}` }),
    );
    this.#events({ keyId: id, kind: "updated", key: after });
    return after!;
  }

  async setKeysEnabled(p: Principal, ids: readonly string[], enabled: boolean): Promise<KeyState[]> {
    this.#requireWrite(p);
    const list = checkIds(ids);
    const now = this.#clock();
    const keys = await this.#store.updateKeys(
      list,
      (cur) => {
        this.#visible(p, cur, cur.record.id);
        return { record: { ...cur.record, status: enabled ? "enabled" : "disabled", updatedAt: now } };
      },
      (before, after) => this.#audit(p, enabled ? "EnableKey" : "DisableKey", before.record.id, { account: before.record.accountId, before: before.record, after: after.record }),
    );
    for (const key of keys) this.#events({ keyId: key.record.id, kind: enabled ? "enabled" : "disabled", key });
    return keys;
  }

  async deleteKeys(p: Principal, ids: readonly string[]): Promise<string[]> {
    this.#requireWrite(p);
    const list = checkIds(ids);
    const gone: KeyState[] = [];
    await this.#store.deleteKeys(
      list,
      (cur) => {
        this.#visible(p, cur, cur.record.id);
        gone.push(cur);
      },
      (before) => this.#audit(p, "DeleteKey", before.record.id, { account: before.record.accountId, before: before.record }),
    );
    for (const key of gone) this.#events({ keyId: key.record.id, kind: "deleted", key });
    return list;
  }

  async revealKeys(p: Principal, ids: readonly string[]): Promise<{ id: string; name: string; secret: string }[]> {
    this.#requireWrite(p);
    const list = checkIds(ids);
    const states: KeyState[] = [];
    for (const id of list) states.push(await this.getKey(p, id));
    const out = states.map((s) => ({ id: s.record.id, name: s.record.name, secret: this.#box.open(s.record.secretEnc, s.record.id) }));
    // Every reveal is audited (without the secret), one entry per key so the
    // key's audit trail shows it, before the secrets leave.
    await this.#store.appendAudit(
      states.map((s) => this.#audit(p, "RevealKeys", s.record.id, { account: s.record.accountId, detail: list.length > 1 ? `bulk reveal of ${list.length} keys` : "" })),
    );
    return out;
  }

  async rotateKey(p: Principal, id: string, graceMs: number): Promise<{ key: KeyState; secret: string }> {
    this.#requireWrite(p);
    if (!id) throw invalid("id", "must not be empty");
    if (!Number.isInteger(graceMs) || graceMs < 0 || graceMs > MAX_GRACE_MS) throw invalid("grace_seconds", "must be 0..2592000 (30 days)");
    const now = this.#clock();
    const secret = generateKeySecret();
    const [after] = await this.#store.updateKeys(
      [id],
      (cur) => {
        this.#visible(p, cur, id);
        const record: KeyRecord = {
          ...cur.record,
          secretHash: hashSecret(secret),
          secretEnc: this.#box.seal(secret, id),
          masked: maskSecret(secret),
          prevSecretHash: graceMs > 0 ? cur.record.secretHash : null,
          prevSecretExpiresAt: graceMs > 0 ? now + graceMs : null,
          updatedAt: now,
        };
        return { record };
      },
      (before, afterState) => this.#audit(p, "RotateKey", id, { account: before.record.accountId, before: before.record, after: afterState.record, detail: `grace_ms=${graceMs}` }),
    );
    this.#events({ keyId: id, kind: "rotated", key: after });
    return { key: after!, secret };
  }

  // ---- accounts -------------------------------------------------------------------

  async createAccount(p: Principal, input: { id?: string; name?: string; initialBalance?: string | number; timezone?: string }): Promise<AccountState> {
    this.#requireOperator(p, "create accounts");
    const id = (input.id ?? "").trim() || generateId("acct_").toLowerCase();
    if (!ID_RE.test(id)) throw invalid("id", `${JSON.stringify(id)} must match [a-z0-9][a-z0-9_-]{0,62}`);
    const name = validName(input.name, "name");
    const balance = parseUnits(input.initialBalance, "initial_balance");
    const record: AccountRecord = { id, name, createdAt: this.#clock() };
    const tz = validTimeZone(input.timezone, "timezone");
    if (tz !== "UTC") record.timezone = tz;
    return this.#store.insertAccount(record, balance, this.#audit(p, "CreateAccount", id));
  }

  getAccount(p: Principal, id: string): AccountState {
    if (!id) throw invalid("id", "must not be empty");
    if (p.accountId !== null && p.accountId !== id) throw notFound("account", id);
    const a = this.#store.getAccount(id);
    if (!a) throw notFound("account", id);
    return a;
  }

  listAccounts(p: Principal): AccountState[] {
    const all = this.#store.listAccounts();
    return p.accountId === null ? all : all.filter((a) => a.record.id === p.accountId);
  }

  /**
   * Changes an account's name and/or time zone (the fields in `mask`). Operator only: an
   * account's zone decides when its keys refill, so its holder cannot move it. A zone change
   * mid-period follows THE rule (store updateAccount): its keys keep their quota left and refill
   * first at the new zone's next boundary — no free refill, nothing instantly over budget.
   */
  async updateAccount(p: Principal, id: string, input: { name?: string; timezone?: string }, mask: readonly string[]): Promise<AccountState> {
    this.#requireOperator(p, "change accounts");
    if (!id) throw invalid("id", "must not be empty");
    const allowed = ["name", "timezone"];
    if (mask.length === 0) throw invalid("update_mask", `must name at least one of ${allowed.join(", ")}`);
    let name: string | undefined;
    let tz: string | undefined;
    mask.forEach((f, i) => {
      if (f === "name") name = validName(input.name, "name");
      else if (f === "timezone") tz = validTimeZone(input.timezone, "timezone");
      else throw invalid(`update_mask[${i}]`, `unknown field ${JSON.stringify(String(f).slice(0, 40))}; expected one of ${allowed.join(", ")}`);
    });
    if (!this.#store.getAccount(id)) throw notFound("account", id);
    return this.#store.updateAccount(
      id,
      (cur) => {
        const next: AccountRecord = { ...cur };
        if (name !== undefined) next.name = name;
        if (tz !== undefined) {
          if (tz === "UTC") delete next.timezone;
          else next.timezone = tz;
        }
        return next;
      },
      (before, after) => this.#audit(p, "UpdateAccount", id, { before, after }),
    );
  }

  async adjustBalance(p: Principal, accountId: string, delta: string | number, reason: string): Promise<AccountState> {
    this.#requireOperator(p, "move balances");
    if (!accountId) throw invalid("account_id", "must not be empty");
    const d = parseUnits(delta, "delta", { allowNegative: true });
    if (d === 0) throw invalid("delta", "must not be 0");
    const r = (reason ?? "").trim();
    if (!r) throw invalid("reason", "must not be empty");
    if (r.length > 256) throw invalid("reason", "must be at most 256 characters");
    validText(r, "reason");
    if (!this.#store.getAccount(accountId)) throw notFound("account", accountId);
    return this.#store.adjustBalance(accountId, d, this.#audit(p, d > 0 ? "CreditAccount" : "DebitAccount", accountId, { detail: `${d > 0 ? "+" : ""}${d}: ${r}` }));
  }

  // ---- groups --------------------------------------------------------------------

  async createGroup(p: Principal, input: { name?: string; description?: string; priceRatio?: string; models?: string[]; accounts?: string[]; budget?: BudgetInput | undefined }): Promise<GroupRecord> {
    this.#requireOperator(p, "manage groups");
    const name = (input.name ?? "").trim();
    if (!GROUP_RE.test(name)) throw invalid("name", `${JSON.stringify(name)} must match [a-z0-9][a-z0-9_.-]{0,62}`);
    const description = (input.description ?? "").trim();
    if (description.length > 512) throw invalid("description", "must be at most 512 characters");
    validText(description, "description");
    const record: GroupRecord = {
      name,
      description,
      ratioPpm: parseRatioPpm(input.priceRatio ?? "", "price_ratio"),
      models: validModels(input.models, "models"),
      createdAt: this.#clock(),
      accounts: this.#validAccounts(input.accounts, "accounts"),
    };
    const budget = validBudget(input.budget, "budget");
    if (budget) record.budget = budget;
    return this.#withBudgetUse(await this.#store.insertGroup(record, this.#audit(p, "CreateGroup", name)));
  }

  async updateGroup(
    p: Principal,
    name: string,
    input: { description?: string; priceRatio?: string; models?: string[]; accounts?: string[]; budget?: BudgetInput | undefined },
    mask: readonly string[],
  ): Promise<GroupRecord> {
    this.#requireOperator(p, "manage groups");
    if (!name) throw invalid("name", "must not be empty");
    const allowed = ["description", "price_ratio", "models", "accounts", "budget"];
    let budgetSet = false;
    let budget: GroupBudget | undefined;
    if (mask.length === 0) throw invalid("update_mask", `must name at least one of ${allowed.join(", ")}`);
    const patch: Partial<GroupRecord> = {};
    mask.forEach((f, i) => {
      const field = f.replace(/^group\./, "");
      if (field === "description") {
        const d = (input.description ?? "").trim();
        if (d.length > 512) throw invalid("group.description", "must be at most 512 characters");
        validText(d, "group.description");
        patch.description = d;
      } else if (field === "price_ratio") patch.ratioPpm = parseRatioPpm(input.priceRatio ?? "", "group.price_ratio");
      else if (field === "models") patch.models = validModels(input.models, "group.models");
      else if (field === "accounts") patch.accounts = this.#validAccounts(input.accounts, "group.accounts");
      else if (field === "budget") {
        budgetSet = true;
        budget = validBudget(input.budget, "group.budget");
      } else throw invalid(`update_mask[${i}]`, `unknown field ${JSON.stringify(f)}; expected one of ${allowed.join(", ")}`);
    });
    const updated = await this.#store.updateGroup(
      name,
      (cur) => {
        const next: GroupRecord = { ...cur, ...patch };
        if (budgetSet) {
          if (budget) next.budget = budget;
          else delete next.budget;
        }
        return next;
      },
      (before, after) => this.#audit(p, "UpdateGroup", name, { before, after }),
    );
    return this.#withBudgetUse(updated);
  }

  /** A group record with its budget's live counters (what ListGroups shows), for the answer of a change. */
  #withBudgetUse(g: GroupRecord): GroupWithCount {
    return this.#store.listGroups().find((x) => x.name === g.name) ?? { ...g, keyCount: 0 };
  }

  /**
   * Operators: every group with all its keys. An account-scoped token: only the groups it
   * may see (#groupVisible), counting only its own keys, with `accounts` cut to its own and
   * without the budget's use (spent and held sum every account's keys).
   */
  listGroups(p: Principal): GroupWithCount[] {
    const acct = p.accountId;
    if (acct === null) return this.#store.listGroups();
    return this.#store
      .listGroups(acct)
      .filter((g) => this.#groupVisible(acct, g))
      .map((g) => {
        // A group's budget use sums every account's keys: not one tenant's to read (its cap is).
        const { budgetUse: _shared, ...own } = g;
        return { ...own, accounts: (g.accounts ?? []).filter((a) => a === acct) };
      });
  }

  /** Accounts a group is opened to: existing ids, no duplicates. */
  #validAccounts(list: readonly string[] | undefined, field: string): string[] {
    const out: string[] = [];
    (list ?? []).forEach((raw, i) => {
      const a = raw.trim();
      if (!this.#store.getAccount(a)) throw invalid(`${field}[${i}]`, `account ${JSON.stringify(a)} does not exist`);
      if (!out.includes(a)) out.push(a);
    });
    if (out.length > MAX_BULK) throw invalid(field, `at most ${MAX_BULK} accounts`);
    return out;
  }

  async deleteGroup(p: Principal, name: string): Promise<void> {
    this.#requireOperator(p, "manage groups");
    if (!name) throw invalid("name", "must not be empty");
    await this.#store.deleteGroup(name, this.#audit(p, "DeleteGroup", name));
  }

  // ---- tokens --------------------------------------------------------------------

  async createToken(p: Principal, input: { name?: string; accountId?: string; readOnly?: boolean }): Promise<{ token: TokenRecord; secret: string }> {
    this.#requireOperator(p, "manage tokens");
    const name = validName(input.name, "name");
    const accountId = (input.accountId ?? "").trim() || null;
    if (accountId !== null && !this.#store.getAccount(accountId)) throw invalid("account_id", `account ${JSON.stringify(accountId)} does not exist`);
    const secret = generateTokenSecret();
    const token: TokenRecord = { id: generateId("tok_"), name, accountId, readOnly: input.readOnly === true, secretHash: hashSecret(secret), createdAt: this.#clock() };
    const saved = await this.#store.insertToken(token, this.#audit(p, "CreateToken", token.id));
    return { token: saved, secret };
  }

  listTokens(p: Principal): TokenRecord[] {
    if (p.accountId !== null) throw permissionDenied("an account-scoped token cannot list tokens");
    return this.#store.listTokens();
  }

  async revokeToken(p: Principal, id: string): Promise<void> {
    this.#requireOperator(p, "manage tokens");
    if (!id) throw invalid("id", "must not be empty");
    if (id === "operator") throw invalid("id", "the operator token cannot be revoked (replace <data>/admin.token or AISA_ADMIN_TOKEN and restart)");
    await this.#store.deleteToken(id, this.#audit(p, "RevokeToken", id));
  }

  // ---- audit ---------------------------------------------------------------------

  async listAudit(p: Principal, q: { target?: string; actor?: string; since?: number; pageSize?: number; pageToken?: string }): Promise<{ entries: AuditRecord[]; nextPageToken: string }> {
    const limit = q.pageSize === undefined || q.pageSize === 0 ? 100 : q.pageSize;
    if (!Number.isInteger(limit) || limit < 1 || limit > 1000) throw invalid("page_size", `must be 1..1000 (got ${limit})`);
    // An audit id (the last entry of the page before): 12 hex digits of ms, a 6-digit sequence and
    // base62 of 3 random bytes — 4 characters, or 5 when the bytes exceed 62^4 (~12% of ids).
    if (q.pageToken && !/^[0-9a-f]{12}\d{6}[0-9A-Za-z]{4,5}$/.test(q.pageToken)) throw invalid("page_token", "is not a token returned by this API");
    // An account token sees the entries about its own keys only, deleted ones included; the
    // store pages over those alone, so every page is full and the next token is right.
    const entries = await this.#store.listAudit({
      target: q.target || undefined,
      actor: q.actor || undefined,
      account: p.accountId ?? undefined,
      since: q.since,
      before: q.pageToken || undefined,
      limit: limit + 1,
    });
    const more = entries.length > limit;
    const page = entries.slice(0, limit);
    return { entries: page, nextPageToken: more ? page[page.length - 1]!.id : "" };
  }

  // ---- prices --------------------------------------------------------------------

  async setPrice(
    p: Principal,
    input: {
      model?: string;
      inputPerMillion?: string | number;
      outputPerMillion?: string | number;
      perRequest?: string | number;
      /** Unset (undefined): those tokens cost the input (or output) rate. */
      cacheReadPerMillion?: string | number | undefined;
      cacheWritePerMillion?: string | number | undefined;
      reasoningPerMillion?: string | number | undefined;
    },
  ): Promise<PriceRecord> {
    this.#requireOperator(p, "set prices");
    const model = (input.model ?? "").trim();
    const problem = modelNameProblem(model);
    if (problem) throw invalid("price.model", problem);
    const rec: PriceRecord = {
      model,
      inputPerMillion: parseUnits(input.inputPerMillion, "price.input_per_million"),
      outputPerMillion: parseUnits(input.outputPerMillion, "price.output_per_million"),
      perRequest: parseUnits(input.perRequest, "price.per_request"),
    };
    // The kind rates are kept only when set (0 is a rate: free), so that a price without them
    // stays as it was stored before they existed.
    if (input.cacheReadPerMillion !== undefined) rec.cacheReadPerMillion = parseUnits(input.cacheReadPerMillion, "price.cache_read_per_million");
    if (input.cacheWritePerMillion !== undefined) rec.cacheWritePerMillion = parseUnits(input.cacheWritePerMillion, "price.cache_write_per_million");
    if (input.reasoningPerMillion !== undefined) rec.reasoningPerMillion = parseUnits(input.reasoningPerMillion, "price.reasoning_per_million");
    if (chargeSaturated(maxChargeUnits(rec))) {
      throw invalid(
        "price",
        "input_per_million, output_per_million and per_request (with the cache and reasoning rates, the dearest of each side) together would charge 2^53 − 1 units or more for a request of 100000000 input and output tokens at the largest group ratio (1000); lower them",
      );
    }
    return this.#store.setPrice(rec, this.#audit(p, "SetPrice", rec.model));
  }

  listPrices(_p: Principal): PriceRecord[] {
    return this.#store.listPrices();
  }

  async deletePrice(p: Principal, model: string): Promise<void> {
    this.#requireOperator(p, "set prices");
    if (!model) throw invalid("model", "must not be empty");
    await this.#store.deletePrice(model, this.#audit(p, "DeletePrice", model));
  }
}

export { SidecarError };
