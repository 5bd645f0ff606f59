// Everything the TUI knows from the sidecar, and the connection state machine:
//
//   connecting ──load ok──▶ ready ──heartbeat/call fails (UNAVAILABLE)──▶ down
//        ▲                                                            │
//        └──────────── retry after backoff (250 ms … 15 s) ◀──────────┘
//   UNAUTHENTICATED / PERMISSION_DENIED on load ▶ denied (no retry; R retries)
//
// A failed call never throws out of here: it becomes state the screens show.
import { useCallback, useEffect, useRef, useState } from "react";
import type { Account, AdminApi, Group, Key, Price, WhoAmIResponse } from "../client.js";
import { ApiError, describeError, isConnectionError } from "../client.js";

export type Phase = "connecting" | "ready" | "down" | "denied";

export interface SidecarState {
  readonly phase: Phase;
  /** Why the sidecar is down or denied us. */
  readonly error: string | null;
  /** Failed attempts in a row (for the banner). */
  readonly attempt: number;
  readonly who: WhoAmIResponse | null;
  readonly keys: readonly Key[];
  readonly groups: readonly Group[];
  readonly prices: readonly Price[];
  readonly accounts: readonly Account[];
  /** The account shown in the header (the token's, else "default"). */
  readonly account: Account | null;
  /** Keys loaded so far while a load is running. */
  readonly progress: { readonly loaded: number; readonly total: number } | null;
  /** Bumped after each successful load. */
  readonly loads: number;
}

export interface SidecarOptions {
  readonly reconnectBaseMs: number;
  readonly reconnectMaxMs: number;
  /** How often a ready connection is probed with WhoAmI (0 = never). */
  readonly heartbeatMs: number;
}

export interface Sidecar extends SidecarState {
  /** Reloads everything now (also the "retry now" of the banner). */
  reload(): void;
  /** Applies a local change to the key list (after a successful mutation). */
  updateKeys(fn: (keys: readonly Key[]) => readonly Key[]): void;
  /** A call failed: connection errors flip to "down" and start reconnecting. Returns the user-facing message. */
  fail(err: unknown): string;
}

const INITIAL: SidecarState = {
  phase: "connecting",
  error: null,
  attempt: 0,
  who: null,
  keys: [],
  groups: [],
  prices: [],
  accounts: [],
  account: null,
  progress: null,
  loads: 0,
};

/** Secondary lists must not block the key table: a refusal there yields an empty list. */
async function orEmpty<T>(p: Promise<T[]>): Promise<T[]> {
  try {
    return await p;
  } catch (err) {
    if (isConnectionError(err)) throw err;
    return [];
  }
}

/** How often the loading line is redrawn while the keys arrive. */
const PROGRESS_MS = 1000;

export function backoffMs(attempt: number, base: number, max: number): number {
  return Math.min(max, base * 2 ** Math.max(0, attempt - 1));
}

export function useSidecar(api: AdminApi, opts: SidecarOptions): Sidecar {
  const [st, setSt] = useState<SidecarState>(INITIAL);
  const generation = useRef(0);
  const alive = useRef(true);

  const load = useCallback(async (): Promise<void> => {
    const gen = ++generation.current;
    const current = (): boolean => alive.current && gen === generation.current;
    setSt((s) => ({ ...s, progress: { loaded: 0, total: 0 } }));
    try {
      const who = await api.whoAmI();
      // The rows shown while the first load runs use the token's currency.
      if (current()) setSt((s) => (s.loads === 0 ? { ...s, who } : s));
      // Until a load has succeeded, the keys are shown as they arrive: the first page at once
      // (the first screen of rows after one round trip, not after every page of 100k keys), then
      // each time the loaded count has doubled — each shown list is indexed again (search
      // haystacks, id map), so doubling keeps that work linear in the key count. Nothing changes
      // a key meanwhile: the phase stays "connecting" (mutations wait), and a reload of a loaded
      // list keeps showing the old list until the new one is complete.
      // The "Loading keys n of m" line follows at most every PROGRESS_MS: each update draws a frame,
      // and with the rows shown a frame per 1000-key page was most of the load's CPU.
      const arrived: Key[] = [];
      let shown = 0;
      let told = 0;
      const [keys, groups, prices, accounts] = await Promise.all([
        api.listKeys((loaded, total, page) => {
          if (!current()) return;
          arrived.push(...page);
          const progress = { loaded, total };
          if (loaded < total && arrived.length >= 2 * shown) {
            shown = arrived.length;
            told = Date.now();
            const partial = arrived.slice();
            setSt((s) => (s.loads === 0 ? { ...s, keys: partial, progress } : { ...s, progress }));
          } else if (Date.now() - told >= PROGRESS_MS) {
            told = Date.now();
            setSt((s) => ({ ...s, progress }));
          }
        }),
        orEmpty(api.listGroups()),
        orEmpty(api.listPrices()),
        orEmpty(api.listAccounts()),
      ]);
      const accountId = who.accountId || (accounts.some((a) => a.id === "default") ? "default" : "");
      let account: Account | null = null;
      if (accountId) {
        try {
          account = await api.getAccount(accountId);
        } catch (err) {
          if (isConnectionError(err)) throw err;
          account = accounts.find((a) => a.id === accountId) ?? null;
        }
      }
      if (!current()) return;
      setSt((s) => ({
        ...s,
        phase: "ready",
        error: null,
        attempt: 0,
        who,
        keys,
        groups,
        prices,
        accounts,
        account,
        progress: null,
        loads: s.loads + 1,
      }));
    } catch (err) {
      if (!current()) return;
      const denied = err instanceof ApiError && (err.code === "UNAUTHENTICATED" || err.code === "PERMISSION_DENIED");
      setSt((s) => ({
        ...s,
        phase: denied ? "denied" : "down",
        error: describeError(err),
        attempt: s.attempt + 1,
        progress: null,
      }));
    }
  }, [api]);

  const reload = useCallback(() => {
    void load();
  }, [load]);

  // First load, and cleanup.
  useEffect(() => {
    alive.current = true;
    void load();
    return () => {
      alive.current = false;
      generation.current++;
    };
  }, [load]);

  // Reconnect with backoff while down.
  useEffect(() => {
    if (st.phase !== "down") return undefined;
    const t = setTimeout(() => void load(), backoffMs(st.attempt, opts.reconnectBaseMs, opts.reconnectMaxMs));
    return () => clearTimeout(t);
  }, [st.phase, st.attempt, load, opts.reconnectBaseMs, opts.reconnectMaxMs]);

  // Heartbeat while ready, so a sidecar that went away shows up as a banner
  // even when nobody presses a key.
  useEffect(() => {
    if (st.phase !== "ready" || opts.heartbeatMs <= 0) return undefined;
    let inFlight = false;
    const t = setInterval(() => {
      if (inFlight) return;
      inFlight = true;
      api.whoAmI().then(
        () => {
          inFlight = false;
        },
        (err: unknown) => {
          inFlight = false;
          if (!alive.current || !isConnectionError(err)) return;
          generation.current++;
          setSt((s) => (s.phase === "ready" ? { ...s, phase: "down", error: describeError(err), attempt: 1 } : s));
        },
      );
    }, opts.heartbeatMs);
    return () => clearInterval(t);
  }, [st.phase, opts.heartbeatMs, api]);

  const updateKeys = useCallback((fn: (keys: readonly Key[]) => readonly Key[]) => {
    setSt((s) => ({ ...s, keys: fn(s.keys) }));
  }, []);

  const fail = useCallback((err: unknown): string => {
    const msg = describeError(err);
    if (isConnectionError(err)) {
      generation.current++;
      setSt((s) => (s.phase === "ready" ? { ...s, phase: "down", error: msg, attempt: 1 } : s));
    }
    return msg;
  }, []);

  return { ...st, reload, updateKeys, fail };
}
