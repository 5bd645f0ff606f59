// Check orchestration: memory lookup → the pure policy → atomic reservation.
// Shared by the Envoy ext_authz adapter and aisa.v1.Authorizer/Check, so both
// decide identically. No gRPC types, no storage engine.
import { StoreUnavailableError } from "../domain/errors.js";
import { hashSecretInto } from "../keys/secrets.js";
import { evaluatePolicy } from "../policy/evaluate.js";
import { resolvePrice } from "../policy/pricing.js";
import { limitHit, NO_FIGURES, rateFigures, type LimitHit, type RateFigures } from "../policy/rateFigures.js";
import type { DenyReason, Reason } from "../policy/reasons.js";
import type { AuthInput, PolicyConfig, PolicyInput, RateView } from "../policy/types.js";
import type { AuthzStore, HotSnapshot, ReserveResult, StoreHealth } from "../store/types.js";
import type { MaybePromise } from "../domain/maybe.js";

export interface CheckOutcome {
  allowed: boolean;
  reason: Reason;
  keyId: string;
  accountId: string;
  group: string;
  reservationId: string;
  reservedUnits: number;
  keyRemaining: number;
  keyUnlimited: boolean;
  accountBalance: number;
  retryAfterMs: number;
  limits: { rpmRemaining: number; tpmRemaining: number; concurrencyRemaining: number };
  /** The x-ratelimit-* figures of the key (policy/rateFigures.ts); NO_FIGURES without rpm/tpm or without a key. */
  figures: RateFigures;
  /** A money or rate deny: which limit was hit, what remains, when it resets; else null. */
  hit: LimitHit | null;
}

const NO_RATE: RateView = Object.freeze({ requestsInWindow: 0, tokensInWindow: 0, open: 0, windowResetMs: 0 });
const NO_LIMITS = Object.freeze({ rpmRemaining: -1, tpmRemaining: -1, concurrencyRemaining: -1 });
/** The policy input's request between Checks. */
const NO_INPUT: AuthInput = Object.freeze({ credential: null, clientIp: null, model: null, modelDeclared: false, modelConflict: false, maxTokens: null, estimatedUnits: null, malformed: "no request" });

export interface AuthorizerOptions {
  store: AuthzStore & { health(): StoreHealth };
  policy: PolicyConfig;
  reservationTtlMs: number;
  /** Observes every decision (metrics, usage): the reason, the outcome returned, and the request's model. */
  onDecision?: (reason: Reason, outcome: CheckOutcome, model: string | null) => void;
}

/** A shared engine's failed reserve: whatever it threw, the Check cannot be decided. */
function unavailable(err: unknown): never {
  throw err instanceof StoreUnavailableError ? err : new StoreUnavailableError(err instanceof Error ? err.message : String(err));
}

export class Authorizer {
  readonly #store: AuthorizerOptions["store"];
  readonly #policy: PolicyConfig;
  readonly #ttl: number;
  readonly #onDecision: NonNullable<AuthorizerOptions["onDecision"]>;
  /** The presented secret's SHA-256, reused by every Check: lookup reads it synchronously and keeps no reference. */
  readonly #digest = new Uint8Array(32);

  /** evaluatePolicy's input, filled per Check (see check). */
  readonly #policyInput: PolicyInput;

  constructor(opts: AuthorizerOptions) {
    this.#store = opts.store;
    this.#policy = opts.policy;
    this.#policyInput = { now: 0, request: NO_INPUT, key: undefined, group: undefined, account: undefined, price: undefined, rate: NO_RATE, config: opts.policy };
    this.#ttl = opts.reservationTtlMs;
    this.#onDecision = opts.onDecision ?? (() => {});
  }

  /**
   * Decides one request: synchronously on the embedded engine, as a promise on a shared one.
   * Throws (or rejects with) StoreUnavailableError when it cannot decide (fail closed).
   */
  check(input: AuthInput, now: number): MaybePromise<CheckOutcome> {
    if (this.#store.health() !== "SERVING") throw new StoreUnavailableError();
    const snap = input.credential !== null && input.malformed === null ? this.#store.lookup(hashSecretInto(input.credential, this.#digest), now) : undefined;
    const price = input.model !== null ? resolvePrice(this.#store, input.model) : undefined;
    // The policy's input in one reused object (evaluatePolicy is synchronous, keeps nothing of
    // it and calls nothing back): an 8-field literal per Check was garbage (bench/README.md).
    const pin = this.#policyInput;
    pin.now = now;
    pin.request = input;
    pin.key = snap?.key;
    pin.group = snap?.group;
    pin.account = snap?.account;
    pin.price = price;
    pin.rate = snap?.rate ?? NO_RATE;
    const verdict = evaluatePolicy(pin);
    // Nothing of this Check is held until the next one.
    pin.request = NO_INPUT;
    pin.key = undefined;
    pin.group = undefined;
    pin.account = undefined;
    pin.price = undefined;
    pin.rate = NO_RATE;
    const k = snap?.key;
    // No object spread in the outcomes below: V8 (Node 20) takes a slow path for
    // `{ ...base, more }` that cost ~10 µs per Check (bench/README.md).
    const keyId = k?.id ?? "";
    const accountId = k?.accountId ?? "";
    const group = k?.group ?? "";
    const keyUnlimited = k?.unlimited ?? false;
    if (!verdict.allowed || !snap || !k) {
      const reason: DenyReason = verdict.allowed ? "KEY_INVALID" : verdict.reason;
      const quotaReset = k ? this.#resetMs(reason, k.id, k.group, now) : null;
      return this.#decided(input, {
        keyId,
        accountId,
        group,
        keyUnlimited,
        allowed: false,
        reason,
        reservationId: "",
        reservedUnits: 0,
        keyRemaining: k && !k.unlimited ? Math.max(0, k.quotaAvailable) : 0,
        accountBalance: snap?.account ? Math.max(0, snap.account.available) : 0,
        retryAfterMs: verdict.allowed ? 0 : quotaReset !== null ? quotaReset : verdict.retryAfterMs,
        limits: k ? this.#limits(k.limits, snap.rate) : NO_LIMITS,
        figures: k ? rateFigures(k.limits, snap.rate, false) : NO_FIGURES,
        hit: k && !verdict.allowed ? limitHit(reason, k.limits, snap.rate, verdict.retryAfterMs, k.quotaAvailable, quotaReset) : null,
      });
    }
    const r = this.#store.reserve({ handle: snap.handle, keyId: k.id, units: verdict.estimateUnits, now, ttlMs: this.#ttl });
    // A shared engine answers later: its failure (unreachable, past the deadline) is a
    // StoreUnavailableError, which every transport turns into its fail-closed answer.
    return r instanceof Promise ? r.then((rr) => this.#reserved(input, snap, rr, now), unavailable) : this.#reserved(input, snap, r, now);
  }

  /** The outcome once the engine has reserved (or refused). */
  #reserved(input: AuthInput, snap: HotSnapshot, r: ReserveResult, now: number): CheckOutcome {
    const k = snap.key;
    const keyId = k.id;
    const accountId = k.accountId;
    const group = k.group;
    const keyUnlimited = k.unlimited;
    if (!r.ok) {
      const quotaReset = this.#resetMs(r.reason, k.id, k.group, now);
      return this.#decided(input, {
        keyId,
        accountId,
        group,
        keyUnlimited,
        allowed: false,
        reason: r.reason,
        reservationId: "",
        reservedUnits: 0,
        keyRemaining: k.unlimited ? 0 : Math.max(0, k.quotaAvailable),
        accountBalance: Math.max(0, snap.account?.available ?? 0),
        retryAfterMs: quotaReset !== null ? quotaReset : r.retryAfterMs,
        limits: this.#limits(k.limits, snap.rate),
        figures: rateFigures(k.limits, snap.rate, false),
        hit: limitHit(r.reason, k.limits, snap.rate, r.retryAfterMs, k.quotaAvailable, quotaReset),
      });
    }
    return this.#decided(input, {
      keyId,
      accountId,
      group,
      keyUnlimited,
      allowed: true,
      reason: "ALLOWED",
      reservationId: r.reservationId,
      reservedUnits: r.units,
      keyRemaining: r.keyRemaining,
      accountBalance: r.accountBalance,
      retryAfterMs: 0,
      limits: this.#limits(k.limits, snap.rate, 1),
      figures: rateFigures(k.limits, snap.rate, true),
      hit: null,
    });
  }

  /**
   * A quota or group-budget deny only (never the allow path): ms until the key's next refill
   * (its account's zone) or the group budget's next reset (the budget's zone; domain/refill.ts),
   * at least 1 s; null for other reasons or when there is none. retryAfterMs carries it, so the
   * deny's `retry-after` says when waiting helps.
   */
  #resetMs(reason: DenyReason, keyId: string, group: string, now: number): number | null {
    const next =
      reason === "KEY_QUOTA_EXHAUSTED" ? (this.#store.nextRefillAt?.(keyId) ?? null) : reason === "GROUP_BUDGET_EXHAUSTED" ? (this.#store.groupBudgetResetAt?.(group) ?? null) : null;
    return next === null ? null : Math.max(1000, next - now);
  }

  #decided(input: AuthInput, out: CheckOutcome): CheckOutcome {
    this.#onDecision(out.reason, out, input.model);
    return out;
  }

  /** What remains of the key's limits, with `admitted` (0 or 1) more request in the window and open (no rate object per allow). */
  #limits(l: { rpm: number; tpm: number; concurrency: number }, rate: RateView, admitted = 0): CheckOutcome["limits"] {
    // A key without limits (most keys): the shared frozen answer, the same three -1s.
    if (!(l.rpm > 0) && !(l.tpm > 0) && !(l.concurrency > 0)) return NO_LIMITS;
    return {
      rpmRemaining: l.rpm > 0 ? Math.max(0, l.rpm - (rate.requestsInWindow + admitted)) : -1,
      tpmRemaining: l.tpm > 0 ? Math.max(0, l.tpm - rate.tokensInWindow) : -1,
      concurrencyRemaining: l.concurrency > 0 ? Math.max(0, l.concurrency - (rate.open + admitted)) : -1,
    };
  }
}
