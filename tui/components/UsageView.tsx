// The Usage view: live usage from WatchUsage. Rates for the last second and
// the rolling window, denies by reason, a sparkline of the whole stream, top
// keys by spend and groups (each with its sparkline), and the alerts and key
// events as they arrive, newest first. Every line is cut to the width; the
// sections share the height (80×24 keeps all of them).
import type { ReactNode } from "react";
import { Box, Text } from "ink";
import { formatInteger, formatRate, formatUnitsMoney, formatUnitsMoneyRate, truncate, type Money } from "../../src/display/format.js";
import type { StreamPhase } from "../state/useLiveUsage.js";
import { resample, sparkline, sparkWidth, WINDOW_SECONDS, type FeedEntry, type Metric, type RankedRow, type Rates, type UsageSnapshot } from "../state/usage.js";

export const METRIC_LABEL: Readonly<Record<Metric, string>> = {
  requests: "requests/s",
  denied: "denied/s",
  tokens: "tokens/s",
  units: "units/s",
};

export interface UsageViewProps {
  readonly snap: UsageSnapshot;
  readonly metric: Metric;
  readonly money: Money;
  readonly phase: StreamPhase;
  readonly error: string | null;
  readonly width: number;
  readonly height: number;
}

const LABEL = 11;

function ratesLine(r: Rates, money: Money): string {
  return (
    `${formatRate(r.requests)} req/s · ${formatRate(r.denied)} denied/s · ${formatRate(r.tokens)} tokens/s · ` +
    `${formatRate(r.units)} units/s ${formatUnitsMoneyRate(r.units, money)}/s`
  );
}

/** Which rows each section gets out of `rows` (none is starved; spare rows go where there is content). */
export function splitRows(rows: number, want: { keys: number; groups: number; feed: number }): { keys: number; groups: number; feed: number } {
  const avail = Math.max(3, rows);
  let groups = Math.min(Math.max(1, want.groups), Math.max(1, Math.floor(avail / 4)));
  let keys = Math.min(Math.max(1, want.keys), Math.max(1, Math.floor((avail - groups) / 2)));
  let feed = Math.max(1, avail - groups - keys);
  // Give rows the feed cannot use back to keys, then groups.
  let spare = feed - Math.max(1, want.feed);
  if (spare > 0) {
    feed -= spare;
    const k = Math.min(spare, Math.max(0, want.keys - keys));
    keys += k;
    spare -= k;
    const g = Math.min(spare, Math.max(0, want.groups - groups));
    groups += g;
    spare -= g;
    feed += spare;
  }
  return { keys, groups, feed };
}

interface Cols {
  readonly name: number;
  readonly spark: number;
}

const NUM_COLS = [
  { id: "units", title: "Units", width: 11 },
  { id: "money", title: "≈", width: 10 },
  { id: "req", title: "Req/s", width: 7 },
  { id: "deny", title: "Deny/s", width: 7 },
] as const;

function layout(width: number): { cols: Cols; nums: (typeof NUM_COLS)[number][] } {
  // Narrow terminals drop Deny/s first, then Req/s.
  let nums: (typeof NUM_COLS)[number][] = [...NUM_COLS];
  const need = (n: typeof nums): number => 2 + 12 + 1 + 10 + 1 + n.reduce((s, c) => s + c.width + 1, 0);
  while (nums.length > 2 && need(nums) > width) nums = nums.slice(0, -1);
  const fixed = 2 + nums.reduce((s, c) => s + c.width + 1, 0);
  const left = width - fixed;
  const spark = sparkWidth(Math.max(1, left - 12 - 1));
  const name = Math.max(8, Math.min(32, left - spark - 2));
  return { cols: { name, spark }, nums };
}

function RankedRows({ title, rows, count, metric, money, width, height, empty }: {
  title: string;
  rows: readonly RankedRow[];
  count: number;
  metric: Metric;
  money: Money;
  width: number;
  height: number;
  empty: string;
}): ReactNode {
  const { cols, nums } = layout(width);
  const shown = rows.slice(0, Math.max(0, height));
  const header =
    `  ${truncate(`${title}${count > shown.length ? ` (top ${shown.length} of ${formatInteger(count)})` : ""}`, cols.name).padEnd(cols.name + 1)}` +
    `${truncate(METRIC_LABEL[metric], cols.spark).padEnd(cols.spark + 1)}` +
    nums.map((c) => c.title.padStart(c.width) + " ").join("");
  return (
    <Box flexDirection="column">
      <Text bold wrap="truncate">
        {header}
      </Text>
      {shown.length === 0 ? (
        <Text dimColor wrap="truncate">
          {"  "}
          {empty}
        </Text>
      ) : (
        shown.map((r, i) => {
          const values = resample(r.series, cols.spark);
          const cells: Record<(typeof NUM_COLS)[number]["id"], string> = {
            units: formatInteger(Math.round(r.sums.units)),
            money: formatUnitsMoney(r.sums.units, money, true),
            req: formatRate(r.rates.requests),
            deny: formatRate(r.rates.denied),
          };
          return (
            <Text key={r.id} wrap="truncate">
              <Text dimColor>{String(i + 1).padStart(2).slice(-2)}</Text>
              {truncate(` ${r.name}`, cols.name).padEnd(cols.name + 1)}
              <Text color="cyan">{sparkline(values).padEnd(cols.spark)}</Text>
              {" "}
              {nums.map((c) => truncate(cells[c.id], c.width).padStart(c.width) + " ").join("")}
            </Text>
          );
        })
      )}
    </Box>
  );
}

const TONE_COLOR: Readonly<Record<FeedEntry["tone"], string | undefined>> = { info: undefined, warn: "yellow", error: "red" };

function clock(at: number): string {
  return new Date(at).toISOString().slice(11, 19);
}

export function UsageView({ snap, metric, money, phase, error, width, height }: UsageViewProps): ReactNode {
  const covered = snap.covered;
  const windowLabel = `Last ${covered > 0 ? covered : WINDOW_SECONDS} s`;
  const reasons =
    snap.reasons.length === 0
      ? "none"
      : snap.reasons.map((r) => `${r.reason} ${formatRate(r.perSecond)}`).join(" · ");
  const peak = snap.total.reduce((m, v) => (v > m ? v : m), 0);
  const suffix = ` max ${formatRate(peak)}`;
  const totalSpark = sparkWidth(Math.max(1, width - LABEL - suffix.length - 1));
  const spent = `${formatInteger(Math.round(snap.sums.units))} units ${formatUnitsMoney(snap.sums.units, money)}`;

  let notice: ReactNode = null;
  if (phase === "unavailable") notice = <Text color="red">Live usage unavailable: {error ?? "no stream"}</Text>;
  else if (phase === "retrying") notice = <Text color="yellow">Live usage stream lost ({error ?? "ended"}); reconnecting… (showing what was received)</Text>;
  else if (phase === "off") notice = <Text color="yellow">Live usage starts once the sidecar is connected.</Text>;
  else if (snap.head === null) notice = <Text dimColor>Waiting for the first second of live usage…</Text>;
  else if (snap.fleet?.othersMissing) notice = <Text color="yellow">Fleet: other sidecars&apos; traffic missing (Redis Pub/Sub down); showing this sidecar&apos;s only until it reconnects</Text>;
  else if (snap.fleet) notice = <Text dimColor>Fleet: {snap.fleet.sidecars} sidecar{snap.fleet.sidecars === 1 ? "" : "s"} heard; the whole fleet&apos;s traffic</Text>;

  const fixedLines = 4 + (notice ? 1 : 0);
  const sections = splitRows(height - fixedLines - 3, {
    keys: snap.topKeys.length,
    groups: snap.groups.length,
    feed: snap.feed.length,
  });

  return (
    <Box flexDirection="column" width={width}>
      {notice ? (
        <Box width={width} height={1}>
          <Text wrap="truncate">{notice}</Text>
        </Box>
      ) : null}
      <Text wrap="truncate">
        <Text bold>{"Last 1 s".padEnd(LABEL)}</Text>
        {ratesLine(snap.last, money)}
      </Text>
      <Text wrap="truncate">
        <Text bold>{windowLabel.padEnd(LABEL)}</Text>
        {ratesLine(snap.window, money)}
        <Text dimColor> · {spent}</Text>
      </Text>
      <Text wrap="truncate">
        <Text bold>{"Denies/s".padEnd(LABEL)}</Text>
        <Text color={snap.reasons.length > 0 ? "red" : undefined} dimColor={snap.reasons.length === 0}>
          {reasons}
        </Text>
      </Text>
      <Text wrap="truncate">
        <Text bold>{truncate(METRIC_LABEL[metric], LABEL - 1).padEnd(LABEL)}</Text>
        <Text color="cyan">{sparkline(resample(snap.total, totalSpark)).padEnd(totalSpark)}</Text>
        <Text dimColor>{suffix}</Text>
      </Text>
      <RankedRows
        title="Top keys by spend"
        rows={snap.topKeys}
        count={snap.keyCount}
        metric={metric}
        money={money}
        width={width}
        height={sections.keys}
        empty={`no key activity in the last ${WINDOW_SECONDS} s`}
      />
      <RankedRows
        title="Groups"
        rows={snap.groups}
        count={snap.groups.length}
        metric={metric}
        money={money}
        width={width}
        height={sections.groups}
        empty={`no group activity in the last ${WINDOW_SECONDS} s`}
      />
      <Text bold wrap="truncate">
        {`Alerts and key events (newest first, ${snap.feed.length})`}
      </Text>
      {snap.feed.length === 0 ? (
        <Text dimColor wrap="truncate">
          {"  none yet (quota and balance at 50/80/100 %, keys expiring within 24 h, key changes)"}
        </Text>
      ) : (
        snap.feed.slice(0, sections.feed).map((e) => (
          <Text key={e.seq} wrap="truncate">
            <Text dimColor>{clock(e.at)} </Text>
            <Text color={TONE_COLOR[e.tone]} bold>
              {truncate(e.label, 12).padEnd(13)}
            </Text>
            {e.text}
          </Text>
        ))
      )}
    </Box>
  );
}
