// The WatchUsage subscription of the TUI: one stream while the sidecar is
// reachable, feeding the UsageModel and the caller's `onEvent` (live Remaining,
// key events, alert flashes).
//
//   off ──enabled──▶ connecting ──first event──▶ live
//
// When the stream ends (an error, a clean end with OK at sidecar shutdown,
// or no event for stallMs):
// - UNAVAILABLE / DEADLINE_EXCEEDED from gRPC: the sidecar is gone; handed to
//   onConnectionLost (useSidecar: banner, backoff, reload). `enabled` drops,
//   which cancels everything here, and the stream reopens once ready again.
// - UNIMPLEMENTED: "unavailable", no retry (a sidecar without WatchUsage).
// - anything else (OK, a refusal, a silent stream): "retrying", reopened
//   after the same backoff as the sidecar's (250 ms doubling to 15 s).
//
// Exactly one stream is open at a time; every path that opens one first
// cancels the previous, and unmount or `enabled` going false cancels it.
import { useCallback, useEffect, useRef, useState } from "react";
import { ApiError, describeError, isConnectionError, type AdminApi, type UsageEvent, type UsageFilter } from "../client.js";
import { backoffMs } from "./useSidecar.js";
import { UsageModel, type FeedEntry } from "./usage.js";

export type StreamPhase = "off" | "connecting" | "live" | "retrying" | "unavailable";

export interface LiveUsageOptions {
  /** Open the stream (the sidecar is connected). */
  readonly enabled: boolean;
  readonly filter?: Partial<UsageFilter>;
  readonly reconnectBaseMs: number;
  readonly reconnectMaxMs: number;
  /** No event for this long (the server sends one a second) restarts the stream. */
  readonly stallMs: number;
  /** The stream found the sidecar gone: hand over to the connection state machine. */
  readonly onConnectionLost: (err: unknown) => void;
  /** Display names of key ids (the loaded keys), for the alerts feed and top keys. */
  readonly nameOf?: (keyId: string) => string | undefined;
  /**
   * Every event, after the model applied it, with the feed entries it added (newest first).
   * Returning false says nothing the caller shows changed: no re-render for this event (a
   * full-screen frame a second otherwise); views of the model catch up at the next render.
   */
  readonly onEvent: (ev: UsageEvent, added: readonly FeedEntry[]) => boolean | void;
}

export interface LiveUsage {
  readonly model: UsageModel;
  /** Changes with the model (memo key for views of the model); read at render time. */
  readonly version: number;
  readonly phase: StreamPhase;
  /** Why the stream is retrying or unavailable. */
  readonly error: string | null;
  /** Failed attempts in a row. */
  readonly attempt: number;
  /** Empties the alerts list (and re-renders its views). */
  clearFeed(): void;
}

interface StreamState {
  readonly phase: StreamPhase;
  readonly error: string | null;
  readonly attempt: number;
}

const OFF: StreamState = { phase: "off", error: null, attempt: 0 };

export function useLiveUsage(api: AdminApi, opts: LiveUsageOptions): LiveUsage {
  const [model] = useState(() => new UsageModel());
  // `changes` counts the model's changes, `version` the re-renders asked for: an event the
  // caller does not show changes the first only, and the next render sees it.
  const changes = useRef(0);
  const [, setVersion] = useState(0);
  const [st, setSt] = useState<StreamState>(OFF);
  const onEvent = useRef(opts.onEvent);
  const onLost = useRef(opts.onConnectionLost);
  const nameOf = useRef(opts.nameOf);
  useEffect(() => {
    onEvent.current = opts.onEvent;
    onLost.current = opts.onConnectionLost;
    nameOf.current = opts.nameOf;
  });
  // Failures in a row survive re-enabling: a stream that keeps failing while
  // unary calls work backs off instead of cycling through reloads.
  const failures = useRef(0);
  const filterKey = JSON.stringify(opts.filter ?? {});
  const { enabled, reconnectBaseMs, reconnectMaxMs, stallMs } = opts;

  useEffect(() => {
    if (!enabled) {
      setSt(OFF);
      return undefined;
    }
    const filter = JSON.parse(filterKey) as Partial<UsageFilter>;
    let stopped = false;
    let cancel: (() => void) | null = null;
    let retry: ReturnType<typeof setTimeout> | null = null;
    let watchdog: ReturnType<typeof setTimeout> | null = null;

    const close = (): void => {
      if (watchdog) clearTimeout(watchdog);
      watchdog = null;
      const c = cancel;
      cancel = null;
      c?.();
    };
    const later = (ms = backoffMs(failures.current, reconnectBaseMs, reconnectMaxMs)): void => {
      if (retry) clearTimeout(retry);
      retry = setTimeout(() => {
        retry = null;
        open();
      }, ms);
    };
    /** `local`: the sidecar answers, only this stream is stuck (no reload). */
    const failed = (err: ApiError, local = false): void => {
      if (stopped) return;
      close();
      failures.current++;
      const error = describeError(err);
      if (err.code === "UNIMPLEMENTED") {
        setSt({ phase: "unavailable", error: "this sidecar has no WatchUsage", attempt: failures.current });
        return;
      }
      setSt({ phase: "retrying", error, attempt: failures.current });
      if (!local && isConnectionError(err)) {
        // The sidecar is gone: its reconnect loop shows the banner and reloads;
        // `enabled` turns false meanwhile (the cleanup below cancels this
        // retry) and the stream reopens when it is back. The slow retry only
        // covers a connection state that did not change.
        onLost.current(err);
        later(reconnectMaxMs);
        return;
      }
      later();
    };
    const arm = (): void => {
      if (watchdog) clearTimeout(watchdog);
      if (stallMs <= 0) return;
      watchdog = setTimeout(() => failed(new ApiError("DEADLINE_EXCEEDED", `no live usage for ${Math.round(stallMs / 1000)} s`), true), stallMs);
    };
    const open = (): void => {
      if (stopped) return;
      close();
      setSt((s) => ({ ...s, phase: failures.current === 0 ? "connecting" : "retrying" }));
      let first = true;
      let ended = false;
      let mine: (() => void) | null = null;
      mine = api.watchUsage(
        filter,
        (ev) => {
          if (stopped || ended || cancel !== mine) return;
          arm();
          if (first) {
            first = false;
            failures.current = 0;
            setSt({ phase: "live", error: null, attempt: 0 });
          }
          const added = model.apply(ev, { nameOf: nameOf.current });
          changes.current++;
          if (onEvent.current(ev, added) !== false) setVersion((v) => v + 1);
        },
        (err) => {
          if (ended) return;
          ended = true;
          if (cancel === mine) cancel = null;
          failed(err);
        },
      );
      if (ended) return; // failed at once
      cancel = mine;
      arm();
    };

    // After failures, wait like a retry would (the sidecar just came back).
    if (failures.current > 0) {
      setSt((s) => ({ ...s, phase: "retrying" }));
      later();
    } else {
      open();
    }
    return () => {
      stopped = true;
      if (retry) clearTimeout(retry);
      close();
    };
  }, [api, enabled, filterKey, reconnectBaseMs, reconnectMaxMs, stallMs, model]);

  const clearFeed = useCallback(() => {
    model.clearFeed();
    changes.current++;
    setVersion((v) => v + 1);
  }, [model]);

  return { model, version: changes.current, ...st, clearFeed };
}
