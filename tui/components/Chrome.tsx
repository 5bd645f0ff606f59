// The fixed lines around the body: header (who and balance), view tabs with
// "n of m", the connection banner and the status line.
import type { ReactNode } from "react";
import { Box, Text } from "ink";
import type { Account, WhoAmIResponse } from "../client.js";
import { formatInteger, formatUnitsMoney, type Money } from "../../src/display/format.js";
import type { Phase } from "../state/useSidecar.js";

export interface HeaderProps {
  readonly address: string;
  readonly who: WhoAmIResponse | null;
  readonly account: Account | null;
  readonly money: Money;
  readonly width: number;
  /** A short live usage figure ("12 req/s ≈ $0.0025/s"), or why there is none. */
  readonly live?: { readonly text: string; readonly tone: "ok" | "warn" | "off" };
}

/** "operator", or "account acme", plus " (read-only)". */
export function callerLabel(who: WhoAmIResponse | null): string {
  if (!who) return "…";
  const base = who.accountId ? `account ${who.accountId}` : "operator";
  return `${base}${who.readOnly ? " (read-only)" : ""}`;
}

export function Header({ address, who, account, money, width, live }: HeaderProps): ReactNode {
  // What gives way on a narrow terminal, in order: the live figure, the units, the address —
  // never the balance itself.
  const balance = account ? formatUnitsMoney(account.balance, money) : "";
  const units = account ? ` (${formatInteger(account.balance)} units)` : "";
  const base = `aisa-authz · ${callerLabel(who)}${account ? ` · account ${account.id} balance ${balance}` : ""}`.length;
  const addr = address.length + 1;
  const liveLen = live ? 3 + live.text.length : 0;
  const showAddress = base + addr <= width;
  const showUnits = base + (showAddress ? addr : 0) + units.length <= width;
  const showLive = live !== undefined && base + (showAddress ? addr : 0) + (showUnits ? units.length : 0) + liveLen <= width;
  return (
    <Box width={width} height={1}>
      <Text wrap="truncate">
        <Text bold color="cyan">
          aisa-authz
        </Text>
        {showAddress ? <Text dimColor> {address} </Text> : <Text> </Text>}
        <Text>· </Text>
        <Text bold>{callerLabel(who)}</Text>
        {account ? (
          <Text>
            {" · "}account {account.id} balance <Text color={account.balance.startsWith("-") ? "red" : "green"}>{balance}</Text>
            {showUnits ? <Text dimColor>{units}</Text> : null}
          </Text>
        ) : null}
        {live && showLive ? (
          <Text color={live.tone === "ok" ? "green" : live.tone === "warn" ? "yellow" : undefined} dimColor={live.tone === "off"}>
            {" · "}
            {live.text}
          </Text>
        ) : null}
      </Text>
    </Box>
  );
}

export type View = "keys" | "groups" | "usage" | "webhooks";

export interface TabsProps {
  readonly view: View;
  readonly shown: number;
  readonly total: number;
  readonly query: string;
  readonly filters: string;
  readonly marks: number;
  readonly hiddenMarks: number;
  readonly groups: number;
  /** False until the first load finished (counts would be a misleading "0 of 0"). */
  readonly loaded: boolean;
  readonly width: number;
  /** The Usage tab's summary: stream state and window. */
  readonly usage?: { readonly text: string; readonly tone: "ok" | "warn" | "error" };
}

export function Tabs({ view, shown, total, query, filters, marks, hiddenMarks, groups, loaded, width, usage }: TabsProps): ReactNode {
  if (!loaded) {
    return (
      <Box width={width} height={1}>
        <Text wrap="truncate">
          <Text inverse={view === "keys"}>{" 1 Keys "}</Text> <Text inverse={view === "groups"}>{" 2 Groups "}</Text>{" "}
          <Text inverse={view === "usage"}>{" 3 Usage "}</Text> <Text inverse={view === "webhooks"}>{" 4 Webhooks "}</Text>
          <Text dimColor>{"  loading…"}</Text>
        </Text>
      </Box>
    );
  }
  return (
    <Box width={width} height={1}>
      <Text wrap="truncate">
        <Text inverse={view === "keys"} bold={view === "keys"}>
          {" 1 Keys "}
        </Text>
        <Text> </Text>
        <Text inverse={view === "groups"} bold={view === "groups"}>
          {" 2 Groups "}
        </Text>
        <Text> </Text>
        <Text inverse={view === "usage"} bold={view === "usage"}>
          {" 3 Usage "}
        </Text>
        <Text> </Text>
        <Text inverse={view === "webhooks"} bold={view === "webhooks"}>
          {" 4 Webhooks "}
        </Text>
        {view === "webhooks" ? null : view === "usage" ? (
          <Text color={usage?.tone === "ok" ? "green" : usage?.tone === "error" ? "red" : "yellow"}>
            {"  "}
            {usage?.text ?? ""}
          </Text>
        ) : view === "keys" ? (
          <Text>
            {"  "}
            <Text bold>
              {formatInteger(shown)} of {formatInteger(total)}
            </Text>{" "}
            keys
            {query ? <Text color="cyan"> /{query}</Text> : null}
            {filters ? <Text color="yellow"> [{filters}]</Text> : null}
            {marks > 0 ? (
              <Text color="magenta">
                {" "}
                ● {formatInteger(marks)} marked{hiddenMarks > 0 ? ` (${formatInteger(hiddenMarks)} hidden by filter)` : ""}
              </Text>
            ) : null}
          </Text>
        ) : (
          <Text>
            {"  "}
            <Text bold>{groups}</Text> groups
          </Text>
        )}
      </Text>
    </Box>
  );
}

export interface BannerProps {
  readonly phase: Phase;
  readonly error: string | null;
  readonly attempt: number;
  readonly address: string;
  readonly progress: { readonly loaded: number; readonly total: number } | null;
  readonly width: number;
}

/** One line, or nothing when connected and idle. */
export function Banner({ phase, error, attempt, address, progress, width }: BannerProps): ReactNode {
  let line: ReactNode = null;
  if (phase === "down") {
    line = (
      <Text backgroundColor="red" color="white" bold wrap="truncate">
        {` ✖ Sidecar unreachable at ${address}. Reconnecting automatically (attempt ${attempt}) · R retries now · ${error ?? "no answer"} `}
      </Text>
    );
  } else if (phase === "denied") {
    line = (
      <Text backgroundColor="red" color="white" bold wrap="truncate">
        {` ✖ The sidecar at ${address} refused the token (${error ?? ""}). Check --token · R retries `}
      </Text>
    );
  } else if (progress) {
    line = (
      <Text color="yellow" wrap="truncate">
        {phase === "connecting" && progress.total === 0
          ? ` Connecting to ${address}…`
          : ` Loading keys ${formatInteger(progress.loaded)} of ${formatInteger(progress.total)}…`}
      </Text>
    );
  }
  if (!line) return null;
  return (
    <Box width={width} height={1}>
      {line}
    </Box>
  );
}

export interface StatusLineProps {
  readonly text: string | null;
  readonly tone: "info" | "ok" | "warn" | "error";
  readonly busy: string | null;
  readonly width: number;
  readonly children?: ReactNode;
}

export function StatusLine({ text, tone, busy, width, children }: StatusLineProps): ReactNode {
  const color = tone === "error" ? "red" : tone === "ok" ? "green" : tone === "warn" ? "yellow" : undefined;
  return (
    <Box width={width} height={1}>
      <Text wrap="truncate">
        {children}
        {busy ? <Text color="yellow">{busy}… </Text> : null}
        {text ? <Text color={color}>{text}</Text> : null}
      </Text>
    </Box>
  );
}
