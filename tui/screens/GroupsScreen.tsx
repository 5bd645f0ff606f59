// The Groups screen: key counts from the loaded keys, price ratio, live requests and Used
// (all time) — the ledger's per-group total, fetched when the screen opens and on every reload
// (a key's later moves do not move its past charges). enter shows a group's keys.
import { useEffect, useLayoutEffect, useState, type ReactNode } from "react";
import type { Group } from "../../src/gen/aisa/v1/types.js";
import type { Money } from "../../src/display/format.js";
import type { AdminApi } from "../client.js";
import { GroupsTable, type GroupStats } from "../components/GroupsTable.js";
import type { Scope } from "../keys/commands.js";
import { PRIORITY, useCommandLayer } from "../keys/keypress.js";
import type { Move } from "../state/appState.js";
import type { RankedRow } from "../state/usage.js";
import { scrollTop } from "../components/KeysTable.js";
import type { ScreenProps, ScrollMemory } from "./types.js";

export const GROUPS_SCOPES: readonly Scope[] = ["groups", "list"];

export interface GroupsScreenProps extends ScreenProps {
  readonly api: AdminApi;
  readonly groups: readonly Group[];
  /** Key counts per group, from the loaded keys. */
  readonly stats: ReadonlyMap<string, GroupStats>;
  /** The stored cursor (clamped here to the groups there are). */
  readonly cursor: number;
  /** Fetch the charges only while connected; a new load number refetches them. */
  readonly connected: boolean;
  readonly loads: number;
  readonly live: ReadonlyMap<string, RankedRow>;
  readonly streaming: boolean;
  readonly money: Money;
  readonly page: number;
  readonly scroll: ScrollMemory;
}

export function GroupsScreen(props: GroupsScreenProps): ReactNode {
  const { api, groups, stats, state, active, dispatch, onDisabled, connected, loads } = props;
  const cursor = Math.min(props.cursor, Math.max(0, groups.length - 1));
  const [charges, setCharges] = useState<ReadonlyMap<string, bigint> | null>(null);
  useEffect(() => {
    if (!connected) return undefined;
    let live = true;
    api.groupCharges().then(
      (m) => live && setCharges(m),
      () => live && setCharges(null),
    );
    return () => {
      live = false;
    };
  }, [api, connected, loads]);

  const move = (m: Move): void => dispatch({ type: "group.move", move: m, count: groups.length });
  useCommandLayer({
    scopes: GROUPS_SCOPES,
    state,
    priority: PRIORITY.screen,
    isActive: active,
    onDisabled,
    actions: {
      "nav.up": () => move(-1),
      "nav.down": () => move(1),
      "nav.top": () => move("top"),
      "nav.bottom": () => move("bottom"),
      "nav.pageUp": () => move(-props.page),
      "nav.pageDown": () => move(props.page),
      "groups.open": () => {
        const g = groups[cursor];
        if (g) dispatch({ type: "group.open", group: g.name });
      },
    },
  });

  const top = scrollTop(props.scroll.current, cursor, Math.max(1, props.height - 2), groups.length);
  useLayoutEffect(() => {
    props.scroll.current = top;
  });
  return (
    <GroupsTable
      groups={groups}
      stats={stats}
      charges={charges}
      cursor={cursor}
      top={top}
      height={props.height}
      width={props.width}
      money={props.money}
      live={props.live}
      liveNote={props.streaming ? "" : "Live usage: not streaming right now."}
    />
  );
}
