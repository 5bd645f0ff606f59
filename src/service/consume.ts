// Consume: validate, resolve the key, price the usage, and charge it exactly
// once per request id through the store's atomic, durable consume().
import { invalid, notFound, failedPrecondition, SidecarError } from "../domain/errors.js";
import { chargeSaturated, chargeUnits, MAX_CONSUME_TOKENS, resolvePrice } from "../policy/pricing.js";
import { isSameRequest, type ConsumeFacts } from "../policy/replay.js";
import { reservationKeyId } from "../store/book/reservations.js";
import { hashSecretBytes } from "../keys/secrets.js";
import type { AuthzStore, ConsumeRecord, ConsumeTarget, LedgerSource } from "../store/types.js";
import { consumeTrace } from "../observability/consumeTrace.js";

const MAX_TOKENS = MAX_CONSUME_TOKENS;
const MAX_EXPLICIT_UNITS = 1_000_000_000_000_000; // 10^15 units = 2 billion USD at the default rate
const CONTROL = /[\u0000-\u001f\u007f]/;

export interface ConsumeRequestInput {
  requestId: string;
  target: { reservationId: string } | { keyId: string } | { apiKey: string } | undefined;
  model: string;
  inputTokens: string | number;
  outputTokens: string | number;
  units: string | number;
  /** Of inputTokens: read from the prompt cache (optional; 0 = none). */
  cacheReadTokens?: string | number;
  /** Of inputTokens: written to the prompt cache (optional). */
  cacheWriteTokens?: string | number;
  /** Of outputTokens: reasoning (optional). */
  reasoningTokens?: string | number;
}

export interface ConsumeOutcome {
  record: ConsumeRecord;
  replayed: boolean;
}

/**
 * Consulted before an app's Consume settles a reservation (service/metering.ts). `claim`: a
 * record when ext_proc metering already settled it (the Consume is then answered with that record
 * as a replay and charges nothing); undefined to go on, the gate then holding the reservation as
 * the app's until `unclaim` (called when that Consume fails before charging).
 */
export interface ReservationGate {
  claim(reservationId: string): Promise<ConsumeRecord | undefined>;
  unclaim(reservationId: string): void;
}

/** The NOT_FOUND of a Consume whose target names nothing. */
function lost(target: ConsumeTarget): SidecarError {
  return target.kind === "reservation" ? notFound("reservation", target.id) : target.kind === "key" ? notFound("key", target.id) : notFound("key for", "api_key");
}

/** A token count or units as given (a decimal string, or a number): a safe integer in 0..max, or INVALID_ARGUMENT naming the field. Exported for its test. */
export function count(v: string | number, field: string, max: number): number {
  // The common case, a short decimal string or an integer number, read without a trimmed copy or
  // a RegExp match (this ran 6× per Consume); anything else takes the general path below.
  if (typeof v === "string") {
    const n = v.length;
    if (n === 0) return 0;
    if (n <= 15) {
      let x = 0;
      let i = 0;
      for (; i < n; i++) {
        const c = v.charCodeAt(i) - 48;
        if (c < 0 || c > 9) break;
        x = x * 10 + c;
      }
      if (i === n) {
        if (x > max) throw invalid(field, `must be at most ${max} (got ${v})`);
        return x;
      }
    }
  } else if (typeof v === "number" && Number.isSafeInteger(v) && v >= 0 && v <= max) return v === 0 ? 0 : v; // never -0
  const s = String(v ?? "0").trim() || "0";
  if (!/^-?\d+$/.test(s)) throw invalid(field, `${JSON.stringify(s)} is not an integer`);
  const x = Number(s);
  if (x < 0) throw invalid(field, `must not be negative (got ${s})`);
  if (!Number.isSafeInteger(x) || x > max) throw invalid(field, `must be at most ${max} (got ${s})`);
  return x;
}

/** The claim of a Consume that claims nothing (no gate): never written. */
const NO_CLAIM: { readonly id: string } = Object.freeze({ id: "" });

export class ConsumeService {
  readonly #store: AuthzStore;
  readonly #clock: () => number;
  readonly #onConsume: (r: ConsumeRecord) => void;
  /** Set by the metering service (service/metering.ts) when ext_proc metering is served. */
  gate: ReservationGate | undefined;

  constructor(opts: { store: AuthzStore; clock: () => number; onConsume?: (r: ConsumeRecord) => void }) {
    this.#store = opts.store;
    this.#clock = opts.clock;
    this.#onConsume = opts.onConsume ?? (() => {});
  }

  /** `opts.metered`: the caller is ext_proc metering itself (it skips the gate, and its ledger entry's source is ext_proc). */
  consume(req: ConsumeRequestInput, opts?: { metered?: boolean }): Promise<ConsumeOutcome> {
    const metered = opts?.metered === true;
    // Without a gate to claim from (or when metering itself) nothing is claimed: no claim to undo.
    // Nor by key id or api_key: the gate holds reservations only (serve always sets one, and its
    // claiming frame cost every Consume ~0.4 KB of garbage).
    if (metered || !this.gate || !req.target || !("reservationId" in req.target)) return this.#consume(req, undefined, NO_CLAIM, metered ? "ext_proc" : "consume");
    return this.#consumeClaiming(req, this.gate);
  }

  async #consumeClaiming(req: ConsumeRequestInput, gate: ReservationGate): Promise<ConsumeOutcome> {
    const claim = { id: "" };
    try {
      return await this.#consume(req, gate, claim, "consume");
    } catch (err) {
      if (claim.id) this.gate?.unclaim(claim.id); // nothing was charged: ext_proc may still settle it
      throw err;
    }
  }

  async #consume(req: ConsumeRequestInput, gate: ReservationGate | undefined, claim: { id: string } | typeof NO_CLAIM, source: LedgerSource): Promise<ConsumeOutcome> {
    const traced = consumeTrace ? consumeTrace.enter() : -1; // AISA_TRACE_CONSUME only
    // 1. Validate everything first: bad input charges nothing.
    const requestId = (req.requestId ?? "").trim();
    if (!requestId) throw invalid("request_id", "is required (the idempotency key)");
    if (requestId.length > 128 || CONTROL.test(requestId)) throw invalid("request_id", "must be 1..128 printable characters");
    const inputTokens = count(req.inputTokens, "input_tokens", MAX_TOKENS);
    const outputTokens = count(req.outputTokens, "output_tokens", MAX_TOKENS);
    const explicit = count(req.units, "units", MAX_EXPLICIT_UNITS);
    const cacheReadTokens = count(req.cacheReadTokens ?? 0, "cache_read_tokens", MAX_TOKENS);
    const cacheWriteTokens = count(req.cacheWriteTokens ?? 0, "cache_write_tokens", MAX_TOKENS);
    const reasoningTokens = count(req.reasoningTokens ?? 0, "reasoning_tokens", MAX_TOKENS);
    // The kinds are parts of the totals (the input's cache reads and writes, the output's reasoning).
    if (cacheReadTokens + cacheWriteTokens > inputTokens) {
      throw invalid(cacheReadTokens > inputTokens ? "cache_read_tokens" : "cache_write_tokens", `cache_read_tokens + cache_write_tokens (${cacheReadTokens + cacheWriteTokens}) must not exceed input_tokens (${inputTokens}): they are parts of it`);
    }
    if (reasoningTokens > outputTokens) throw invalid("reasoning_tokens", `must not exceed output_tokens (${outputTokens}): it is a part of it (got ${reasoningTokens})`);
    const model = (req.model ?? "").trim();
    if (model.length > 256) throw invalid("model", "must be at most 256 characters");
    if (!req.target) throw invalid("target", "one of reservation_id, key_id or api_key is required");
    let target: ConsumeTarget;
    let field: string;
    if ("reservationId" in req.target) {
      target = { kind: "reservation", id: req.target.reservationId };
      field = "reservation_id";
    } else if ("keyId" in req.target) {
      target = { kind: "key", id: req.target.keyId };
      field = "key_id";
    } else {
      target = { kind: "secret", hash: hashSecretBytes(req.target.apiKey.trim()) };
      field = "api_key";
    }
    if (target.kind !== "secret" && !target.id) throw invalid(field, "must not be empty");

    const now = this.#clock();
    const facts: ConsumeFacts = {
      keyId: undefined,
      reservationId: target.kind === "reservation" ? target.id : "",
      model,
      inputTokens,
      outputTokens,
      units: explicit,
      cacheReadTokens,
      cacheWriteTokens,
      reasoningTokens,
    };

    // 2. A request id seen before returns its first answer, whatever else changed since —
    //    if this is the same request (policy/replay.ts); else an error that reveals nothing of it.
    //    An engine whose consume() answers replays itself (a shared engine: the idempotency
    //    record is read in the same script that charges) is asked first only when this Consume
    //    cannot be charged as given (target gone, no price): one round trip per Consume, not two.
    //    A reservation ext_proc may be settling is claimed after the check, as before.
    const lookUpFirst = this.#store.consumeAnswersReplays !== true || (gate !== undefined && target.kind === "reservation");
    // (The ledger read is awaited here and in the catch below rather than through a shared async
    // closure: that closure, its context and its promise were ~0.5 KB of every Consume's garbage.)
    if (lookUpFirst) {
      const prior = await this.#store.findConsume(requestId);
      if (traced >= 0) consumeTrace!.mark(traced, 2);
      if (prior) return this.#priorAnswer(requestId, prior, target, facts, now);
    }
    // 2b. A reservation ext_proc metering settled (or is settling): its settlement won.
    if (gate && target.kind === "reservation") {
      const metered = await gate.claim(target.id);
      if (metered) return { record: metered, replayed: true };
      (claim as { id: string }).id = target.id;
    }

    // 3. Resolve and price. A key deleted after its request was admitted is still charged:
    //    by reservation or key id, to its account (the store keeps what that needs).
    const ref = this.#store.resolveConsumeTarget(target, now) ?? (target.kind === "secret" ? undefined : await this.#store.resolveDeletedTarget(target));
    let units = explicit;
    try {
      if (!ref) throw lost(target);
      facts.keyId = ref.keyId;
      if (units === 0) {
        if (!model) throw invalid("model", "is required unless units is set");
        const price = resolvePrice(this.#store, model);
        if (!price) throw failedPrecondition(`model: ${JSON.stringify(model)} has no price (set one with \`aisa-authz prices set\`, or a default price for "*")`);
        units = chargeUnits(price, inputTokens, outputTokens, ref.ratioPpm, facts);
        // Only a price set before SetPrice bounded prices can get here; never cap a charge silently.
        if (chargeSaturated(units)) throw invalid("input_tokens", `with output_tokens at the price of ${JSON.stringify(model)} the charge reaches 2^53 − 1 units, the largest amount kept exactly`);
      }
    } catch (err) {
      // Not chargeable as given: a replay of a request charged before (its key since deleted, its
      // price since removed) still gets its first answer.
      const prior = lookUpFirst ? undefined : await this.#store.findConsume(requestId);
      if (prior) return this.#priorAnswer(requestId, prior, target, facts, now);
      throw err;
    }

    // 4. Charge (atomic, durable, idempotent).
    if (traced >= 0) consumeTrace!.mark(traced, 3);
    const out = await this.#store.consume({ requestId, keyId: ref.keyId, reservationId: ref.reservationId, model, inputTokens, outputTokens, units, now, cacheReadTokens, cacheWriteTokens, reasoningTokens, source });
    if (traced >= 0) consumeTrace!.mark(traced, 4);
    // A concurrent Consume with the same id got there first: the same rule as step 2.
    if (out.replayed) return this.#replay(requestId, out.record, facts);
    this.#onConsume(out.record);
    return out;
  }

  /** The answer to a request id found in the ledger: its first answer if this is the same request (policy/replay.ts), else ALREADY_EXISTS. */
  #priorAnswer(requestId: string, prior: ConsumeRecord, target: ConsumeTarget, facts: ConsumeFacts, now: number): ConsumeOutcome {
    facts.keyId = target.kind === "key" ? target.id : target.kind === "reservation" ? reservationKeyId(target.id) : this.#store.resolveConsumeTarget(target, now)?.keyId;
    if (facts.keyId === undefined && target.kind === "secret") throw lost(target);
    return this.#replay(requestId, prior, facts);
  }

  #replay(requestId: string, first: ConsumeRecord, facts: ConsumeFacts): ConsumeOutcome {
    if (isSameRequest(first, facts)) return { record: first, replayed: true };
    throw new SidecarError(
      "ALREADY_EXISTS",
      `request_id: ${JSON.stringify(requestId)} was already used by a different Consume (another key, reservation, model or token count); a retry must repeat its request exactly, a new request needs a new request_id`,
    );
  }
}
