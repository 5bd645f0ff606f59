// The Groups view: each group with its key count (from ListGroups), ratio and
// models, its budget (spent this period / cap), what the loaded keys say about usage (enabled
// keys, units spent since creation), and live usage from WatchUsage: requests per second and a
// sparkline over the rolling window.
import type { ReactNode } from "react";
import { Box, Text } from "ink";
import { KeyStatus, RefillPeriod, type Group, type Key } from "../../src/gen/aisa/v1/types.js";
import { formatInteger, formatList, formatRate, formatUnitsMoney, truncate, type Money } from "../../src/display/format.js";
import { resample, sparkline, WINDOW_SECONDS, type RankedRow } from "../state/usage.js";

export interface GroupStats {
  /** The loaded keys in the group now (follows every create, move and delete without a reload). */
  readonly keys: number;
  readonly enabled: number;
}

/** One O(n) pass over the loaded keys. */
export function groupStats(keys: readonly Key[]): Map<string, GroupStats> {
  const acc = new Map<string, { keys: number; enabled: number }>();
  for (const k of keys) {
    let s = acc.get(k.group);
    if (!s) {
      s = { keys: 0, enabled: 0 };
      acc.set(k.group, s);
    }
    s.keys++;
    if (k.status === KeyStatus.KEY_STATUS_ENABLED) s.enabled++;
  }
  return acc;
}

const COLS = [
  { id: "name", title: "Group", width: 16 },
  { id: "keys", title: "Keys", width: 8 },
  { id: "enabled", title: "Enabled", width: 8 },
  { id: "ratio", title: "Ratio", width: 7 },
  { id: "rate", title: "Req/s", width: 7 },
  { id: "spark", title: `Last ${WINDOW_SECONDS} s`, width: 15 },
  { id: "used", title: "Used (all time)", width: 16 },
  { id: "budget", title: "Budget spent/cap", width: 22 },
  { id: "models", title: "Models", width: 18 },
  { id: "description", title: "Description", width: 30 },
] as const;

const BUDGET_KIND: Record<number, string> = { [RefillPeriod.REFILL_PERIOD_DAILY]: "day", [RefillPeriod.REFILL_PERIOD_WEEKLY]: "week", [RefillPeriod.REFILL_PERIOD_MONTHLY]: "month" };

/** "550/1,000 per month" (spent in the current period / cap), "-" without a budget. */
function budgetText(g: Group): string {
  const b = g.budget;
  if (!b) return "-";
  const per = b.period === RefillPeriod.REFILL_PERIOD_DAILY && b.everyDays > 1 ? `${b.everyDays} d` : (BUDGET_KIND[b.period] ?? "period");
  return g.budgetResetsAt ? `${formatInteger(g.budgetSpent)}/${formatInteger(b.units)} per ${per}` : `cap ${formatInteger(b.units)} per ${per}`;
}

export interface GroupsTableProps {
  readonly groups: readonly Group[];
  readonly stats: ReadonlyMap<string, GroupStats>;
  /** Units charged in each group (the ledger's: where each charge was made), or null while unknown. */
  readonly charges: ReadonlyMap<string, bigint> | null;
  readonly cursor: number;
  readonly top: number;
  readonly height: number;
  readonly width: number;
  readonly money: Money;
  /** Live usage per group name (groups without activity in the window are absent). */
  readonly live: ReadonlyMap<string, RankedRow>;
  /** Why there are no live figures ("" when the stream is live). */
  readonly liveNote: string;
}

export function GroupsTable({ groups, stats, charges, cursor, top, height, width, money, live, liveNote }: GroupsTableProps): ReactNode {
  let left = width - 2;
  const cols = COLS.filter((c) => {
    if (c.width + 1 > left) return false;
    left -= c.width + 1;
    return true;
  });
  const rowsHeight = Math.max(1, height - 2);
  return (
    <Box flexDirection="column" height={height}>
      <Box height={1}>
        <Text>{"  "}</Text>
        {cols.map((c) => (
          <Box key={c.id} width={c.width + 1} flexShrink={0}>
            <Text bold underline wrap="truncate">
              {c.title}
            </Text>
          </Box>
        ))}
      </Box>
      <Box flexDirection="column" height={rowsHeight}>
        {groups.slice(top, top + rowsHeight).map((g, n) => {
          const selected = top + n === cursor;
          const s = stats.get(g.name);
          const l = live.get(g.name);
          const text: Record<(typeof COLS)[number]["id"], string> = {
            name: g.name,
            keys: formatInteger(s?.keys ?? 0),
            enabled: formatInteger(s?.enabled ?? 0),
            ratio: g.priceRatio || "1",
            rate: formatRate(l?.rates.requests ?? 0),
            spark: l ? sparkline(resample(l.series, 15)) : "",
            used: charges === null ? "…" : formatUnitsMoney((charges.get(g.name) ?? 0n).toString(), money, true),
            budget: budgetText(g),
            models: formatList(g.models, 18),
            description: g.description,
          };
          return (
            <Box key={g.name} height={1}>
              <Text inverse={selected}>{selected ? "› " : "  "}</Text>
              {cols.map((c) => (
                <Box key={c.id} width={c.width + 1} flexShrink={0}>
                  <Text inverse={selected} wrap="truncate">
                    {truncate(text[c.id], c.width).padEnd(c.width + 1)}
                  </Text>
                </Box>
              ))}
            </Box>
          );
        })}
      </Box>
      <Text dimColor wrap="truncate">
        {liveNote || `Req/s and the sparkline: live, over the last ${WINDOW_SECONDS} s (3 opens the Usage view).`} Used = units charged in the group (as usage --by group).
      </Text>
    </Box>
  );
}
