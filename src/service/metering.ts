// Settlement of ext_proc-metered requests: Consume's semantics, through ConsumeService.
//
// - Request id: "extproc:" + the reservation id (a hash when that would be too long), so a
//   settlement is idempotent per reservation: a retried or duplicated settlement replays.
// - Usage read from the response → a Consume of those tokens at the model's price. No price
//   for the model (or no model known) → the reservation's estimate, labelled with the model.
// - Upstream non-2xx without usage → the reservation is released: no charge.
// - No usage (the client went away, the upstream aborted, a body that carries none) → the
//   reservation's estimate (the units the Check held; never zero, never twice).
// - An app service's own Consume for the same reservation: whichever settles first wins.
//   ext_proc registers the reservation when its stream starts (request headers, before the
//   upstream has the request); an app Consume that arrives before ext_proc settles marks the
//   reservation as the app's, and ext_proc then charges nothing; an app Consume that arrives
//   once ext_proc is settling (or has settled, also after a restart: the ledger is read) is
//   answered with ext_proc's ledger entry as a replay and charges nothing.
import { createHash } from "node:crypto";
import type { ConsumeRecord } from "../store/types.js";
import type { ConsumeService } from "./consume.js";
import type { Usage } from "../metering/usage.js";
import { SidecarError } from "../domain/errors.js";
import { EXTPROC_REQUEST_PREFIX } from "../store/ledgerEntry.js";

export type Settlement =
  | { kind: "usage"; usage: Usage; model: string; responseModel: string }
  | { kind: "estimate"; model: string; why: string }
  | { kind: "release"; why: string };

export type SettleOutcome = "charged_usage" | "charged_estimate" | "released" | "app_consumed" | "duplicate" | "failed";

export interface SettleResult {
  outcome: SettleOutcome;
  record?: ConsumeRecord;
  /** The usage read (its token kinds: cache reads and writes, reasoning), when charged from usage. */
  usage?: Usage;
}

export interface MeteringStore {
  release(reservationId: string): boolean;
  reservationUnits?(reservationId: string): number | undefined;
  getPrice(model: string): unknown;
  findConsume(requestId: string): Promise<ConsumeRecord | undefined>;
}

interface Entry {
  state: "open" | "settling" | "app";
  settled?: Promise<ConsumeRecord | undefined>;
  /** The reservation's estimate, read when the stream began (the reservation is open then). */
  estimate: number | undefined;
}

const MAX_REQUEST_ID = 128;

/** The Consume request id of a reservation's ext_proc settlement. */
export function meteredRequestId(reservationId: string): string {
  const id = `${EXTPROC_REQUEST_PREFIX}${reservationId}`;
  return id.length <= MAX_REQUEST_ID ? id : `${EXTPROC_REQUEST_PREFIX}sha256:${createHash("sha256").update(reservationId).digest("hex")}`;
}

/**
 * The usage's token kinds, each held within its total (cache reads, then writes, within the
 * input; reasoning within the output) as Consume requires: an upstream that reports more
 * cached than prompt tokens is still charged from its usage, its surplus at the input rate.
 */
export function kindsWithin(u: Usage): { cacheReadTokens: number; cacheWriteTokens: number; reasoningTokens: number } {
  const cacheReadTokens = Math.min(u.cacheReadTokens, u.inputTokens);
  return {
    cacheReadTokens,
    cacheWriteTokens: Math.min(u.cacheWriteTokens, u.inputTokens - cacheReadTokens),
    reasoningTokens: Math.min(u.reasoningTokens, u.outputTokens),
  };
}

export class MeteringService {
  readonly #consume: ConsumeService;
  readonly #store: MeteringStore;
  readonly #defaultEstimate: number;
  readonly #log: (err: unknown, msg: string) => void;
  readonly #inflight = new Map<string, Entry>();
  readonly #onSettled: (outcome: SettleOutcome) => void;

  constructor(opts: { consume: ConsumeService; store: MeteringStore; defaultEstimateUnits: number; log: (err: unknown, msg: string) => void; onSettled?: (o: SettleOutcome) => void }) {
    this.#consume = opts.consume;
    this.#store = opts.store;
    this.#defaultEstimate = opts.defaultEstimateUnits;
    this.#log = opts.log;
    this.#onSettled = opts.onSettled ?? (() => {});
    opts.consume.gate = { claim: (id) => this.#claim(id), unclaim: (id) => this.#unclaim(id) };
  }

  /** Streams metering now. */
  get open(): number {
    return this.#inflight.size;
  }

  /**
   * Resolves once no stream is metering (each ended stream settles), or after `timeoutMs`:
   * shutdown closes the servers first (every stream ends), then waits here before closing the
   * store, so a stream cut by the shutdown is still charged.
   */
  async drain(timeoutMs: number): Promise<number> {
    const until = Date.now() + timeoutMs;
    while (this.#inflight.size > 0 && Date.now() < until) await new Promise((r) => setTimeout(r, 10));
    return this.#inflight.size;
  }

  /**
   * A stream starts metering `reservationId`; false when another stream already does (the
   * second one then settles nothing). `metadataEstimate`: the units the Check's metadata named.
   */
  begin(reservationId: string, metadataEstimate: number | undefined): boolean {
    if (this.#inflight.has(reservationId)) return false;
    this.#inflight.set(reservationId, { state: "open", estimate: this.#store.reservationUnits?.(reservationId) ?? metadataEstimate });
    return true;
  }

  /** Settles a reservation begun with begin(); resolves once the charge is durable. */
  async settle(reservationId: string, s: Settlement): Promise<SettleResult> {
    const e = this.#inflight.get(reservationId);
    if (!e) return this.#done({ outcome: "duplicate" });
    if (e.state === "app") {
      this.#inflight.delete(reservationId);
      return this.#done({ outcome: "app_consumed" });
    }
    if (e.state === "settling") return this.#done({ outcome: "duplicate" });
    e.state = "settling";
    let resolve!: (r: ConsumeRecord | undefined) => void;
    e.settled = new Promise((r) => (resolve = r));
    let result: SettleResult = { outcome: "failed" };
    try {
      result = await this.#settle(reservationId, s, e.estimate);
    } catch (err) {
      this.#log(err, "ext_proc settlement failed");
    } finally {
      resolve(result.record);
      this.#inflight.delete(reservationId);
    }
    return this.#done(result);
  }

  #done(r: SettleResult): SettleResult {
    this.#onSettled(r.outcome);
    return r;
  }

  async #settle(reservationId: string, s: Settlement, estimate: number | undefined): Promise<SettleResult> {
    if (s.kind === "release") {
      this.#store.release(reservationId);
      return { outcome: "released" };
    }
    const requestId = meteredRequestId(reservationId);
    const target = { reservationId };
    if (s.kind === "usage") {
      // The Check's model was priced when it admitted the request; the response's own name
      // (often a dated version) is used only when the Check's is not known.
      const model = s.model || this.#responseModel(s.responseModel);
      try {
        const out = await this.#consume.consume(
          {
            requestId,
            target,
            model,
            inputTokens: s.usage.inputTokens,
            outputTokens: s.usage.outputTokens,
            units: 0,
            ...kindsWithin(s.usage),
          },
          { metered: true },
        );
        return { outcome: "charged_usage", record: out.record, usage: s.usage };
      } catch (err) {
        // No price (or no model): charge the estimate instead of nothing.
        if (!(err instanceof SidecarError) || (err.code !== "FAILED_PRECONDITION" && err.code !== "INVALID_ARGUMENT")) throw err;
        this.#log(err, "ext_proc: usage could not be priced; charging the reservation's estimate");
        s = { kind: "estimate", model, why: "unpriced" };
      }
    }
    const units = Math.max(1, estimate ?? this.#defaultEstimate);
    const out = await this.#consume.consume({ requestId, target, model: s.model, inputTokens: 0, outputTokens: 0, units }, { metered: true });
    return { outcome: "charged_estimate", record: out.record };
  }

  /**
   * The response's model, when the Check's is not known (header-only streams): as named if
   * priced, else without a trailing date version (gpt-4o-mini-2024-07-18 → gpt-4o-mini,
   * claude-3-5-sonnet-20241022 → claude-3-5-sonnet) if that is priced, else as named.
   */
  #responseModel(m: string): string {
    if (!m || this.#store.getPrice(m)) return m;
    const undated = m.replace(/-(\d{4}-\d{2}-\d{2}|\d{8})$/, "");
    return undated !== m && this.#store.getPrice(undated) ? undated : m;
  }

  /** An app's Consume that claimed the reservation failed before charging: ext_proc settles it after all. */
  #unclaim(reservationId: string): void {
    const e = this.#inflight.get(reservationId);
    if (e?.state === "app") e.state = "open";
  }

  /** ConsumeService's gate for an app's Consume by reservation id. */
  async #claim(reservationId: string): Promise<ConsumeRecord | undefined> {
    const e = this.#inflight.get(reservationId);
    if (e) {
      if (e.state === "open") {
        e.state = "app";
        return undefined;
      }
      if (e.state === "app") return undefined;
      return e.settled; // settling: the app's Consume waits for it and replays its record
    }
    return this.#store.findConsume(meteredRequestId(reservationId));
  }
}
