// The Usage screen: the live usage model's snapshot, the sparkline metric and the alerts list.
import type { ReactNode } from "react";
import { formatInteger, formatRate, formatUnitsMoneyRate, type Money } from "../../src/display/format.js";
import { METRIC_LABEL, UsageView } from "../components/UsageView.js";
import type { Scope } from "../keys/commands.js";
import { PRIORITY, useCommandLayer } from "../keys/keypress.js";
import type { Metric, UsageSnapshot } from "../state/usage.js";
import type { LiveUsage, StreamPhase } from "../state/useLiveUsage.js";
import type { ScreenProps } from "./types.js";

export const USAGE_SCOPES: readonly Scope[] = ["usage"];

export interface UsageScreenProps extends ScreenProps {
  readonly snap: UsageSnapshot;
  readonly metric: Metric;
  readonly money: Money;
  readonly phase: StreamPhase;
  readonly error: string | null;
  readonly clearFeed: () => void;
}

export function UsageScreen(props: UsageScreenProps): ReactNode {
  const { state, active, dispatch, onDisabled } = props;
  useCommandLayer({
    scopes: USAGE_SCOPES,
    state,
    priority: PRIORITY.screen,
    isActive: active,
    onDisabled,
    actions: {
      "usage.metric": () => dispatch({ type: "metric.next" }),
      "usage.clearAlerts": () => {
        props.clearFeed();
        dispatch({ type: "status", status: { text: "Alerts cleared", tone: "info" } });
      },
    },
  });
  return <UsageView snap={props.snap} metric={props.metric} money={props.money} phase={props.phase} error={props.error} width={props.width} height={props.height} />;
}

/** The header's live figure ("12 req/s ≈ $0.0025/s"), or why there is none. */
export function liveHeader(live: Pick<LiveUsage, "phase">, snap: Pick<UsageSnapshot, "last">, money: Money): { readonly text: string; readonly tone: "ok" | "warn" | "off" } | undefined {
  if (live.phase === "live") return { text: `${formatRate(snap.last.requests)} req/s ${formatUnitsMoneyRate(snap.last.units, money)}/s`, tone: "ok" };
  if (live.phase === "off") return undefined;
  return live.phase === "unavailable" ? { text: "live usage: unavailable", tone: "off" } : { text: "live usage: connecting…", tone: "warn" };
}

/** The Usage tab's line: what the stream covers, or its state. */
export function liveTab(live: Pick<LiveUsage, "phase" | "error" | "attempt">, snap: UsageSnapshot, metric: Metric): { readonly text: string; readonly tone: "ok" | "warn" | "error" } {
  if (live.phase === "live") {
    const keys = `${formatInteger(snap.keyCount)} active key${snap.keyCount === 1 ? "" : "s"}`;
    return { text: `● live · last ${snap.covered} s · ${keys} · sparklines: ${METRIC_LABEL[metric]}`, tone: "ok" };
  }
  if (live.phase === "unavailable") return { text: `✖ ${live.error ?? "unavailable"}`, tone: "error" };
  return { text: live.phase === "retrying" ? `○ reconnecting (attempt ${live.attempt})…` : "○ connecting…", tone: "warn" };
}
