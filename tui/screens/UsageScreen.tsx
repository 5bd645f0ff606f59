// The Usage screen: the live usage model's snapshot, the sparkline metric and the alerts list.
import type { ReactNode } from "react";
import type { Money } from "../../src/display/format.js";
import { UsageView } from "../components/UsageView.js";
import type { Scope } from "../keys/commands.js";
import { PRIORITY, useCommandLayer } from "../keys/keypress.js";
import type { Metric, UsageSnapshot } from "../state/usage.js";
import type { StreamPhase } from "../state/useLiveUsage.js";
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
