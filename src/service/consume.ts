// Consume: validate, resolve the key, price the usage, and charge it exactly
// once per request id through the store's atomic, durable consume().
import { invalid, notFound, failedPrecondition } from "../domain/errors.js";
import { chargeUnits } from "../policy/pricing.js";
import { hashSecretBytes } from "../keys/secrets.js";
import type { AuthzStore, ConsumeRecord, ConsumeTarget } from "../store/types.js";

export const DEFAULT_PRICE_MODEL = "*";
const MAX_TOKENS = 100_000_000;
const MAX_EXPLICIT_UNITS = 1_000_000_000_000_000; // 10^15 units = 2 billion USD at the default rate
const CONTROL = /[\u0000-\u001f\u007f]/;

export interface ConsumeRequestInput {
  requestId: string;
  target: { reservationId: string } | { keyId: string } | { apiKey: string } | undefined;
  model: string;
  inputTokens: string | number;
  outputTokens: string | number;
  units: string | number;
}

export interface ConsumeOutcome {
  record: ConsumeRecord;
  replayed: boolean;
}

function count(v: string | number, field: string, max: number): number {
  const s = String(v ?? "0").trim() || "0";
  if (!/^-?\d+$/.test(s)) throw invalid(field, `${JSON.stringify(s)} is not an integer`);
  const n = Number(s);
  if (n < 0) throw invalid(field, `must not be negative (got ${s})`);
  if (!Number.isSafeInteger(n) || n > max) throw invalid(field, `must be at most ${max} (got ${s})`);
  return n;
}

export class ConsumeService {
  readonly #store: AuthzStore;
  readonly #clock: () => number;
  readonly #onConsume: (r: ConsumeRecord) => void;

  constructor(opts: { store: AuthzStore; clock: () => number; onConsume?: (r: ConsumeRecord) => void }) {
    this.#store = opts.store;
    this.#clock = opts.clock;
    this.#onConsume = opts.onConsume ?? (() => {});
  }

  async consume(req: ConsumeRequestInput): Promise<ConsumeOutcome> {
    // 1. Validate everything first: bad input charges nothing.
    const requestId = (req.requestId ?? "").trim();
    if (!requestId) throw invalid("request_id", "is required (the idempotency key)");
    if (requestId.length > 128 || CONTROL.test(requestId)) throw invalid("request_id", "must be 1..128 printable characters");
    const inputTokens = count(req.inputTokens, "input_tokens", MAX_TOKENS);
    const outputTokens = count(req.outputTokens, "output_tokens", MAX_TOKENS);
    const explicit = count(req.units, "units", MAX_EXPLICIT_UNITS);
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

    // 2. A request id seen before returns its first answer, whatever else changed since.
    const prior = await this.#store.findConsume(requestId);
    if (prior) return { record: prior, replayed: true };

    // 3. Resolve and price.
    const now = this.#clock();
    const ref = this.#store.resolveConsumeTarget(target, now);
    if (!ref) throw target.kind === "reservation" ? notFound("reservation", target.id) : target.kind === "key" ? notFound("key", target.id) : notFound("key for", "api_key");
    let units = explicit;
    if (units === 0) {
      if (!model) throw invalid("model", "is required unless units is set");
      const price = this.#store.getPrice(model) ?? this.#store.getPrice(DEFAULT_PRICE_MODEL);
      if (!price) throw failedPrecondition(`model: ${JSON.stringify(model)} has no price (set one with \`aisa-authz prices set\`, or a default price for "*")`);
      units = chargeUnits(price, inputTokens, outputTokens, ref.ratioPpm);
    }

    // 4. Charge (atomic, durable, idempotent).
    const out = await this.#store.consume({ requestId, keyId: ref.keyId, reservationId: ref.reservationId, model, inputTokens, outputTokens, units, now });
    if (!out.replayed) this.#onConsume(out.record);
    return out;
  }
}
