// Every field of one key (the table drops columns on narrow terminals).
import type { ReactNode } from "react";
import { Box, Text } from "ink";
import type { Key } from "../../src/gen/aisa/v1/types.js";
import type { CommandState } from "../keys/commands.js";
import { PRIORITY, useCommandLayer } from "../keys/keypress.js";
import {
  availableModels,
  formatExpiry,
  formatInteger,
  formatKeyStatus,
  formatLastUsed,
  formatLimits,
  formatMetadata,
  formatRefill,
  formatTime,
  formatUnitsMoney,
  maskedIps,
  spendable,
  UNLIMITED,
  type Money,
} from "../../src/display/format.js";
import { Dialog } from "./Dialog.js";

export interface KeyDetailsProps {
  readonly k: Key;
  readonly money: Money;
  readonly now: number;
  readonly width: number;
  /** Rows available; the least important fields are left out when short. */
  readonly height: number;
  readonly state: CommandState;
  readonly onClose: () => void;
  readonly onDisabled: (message: string) => void;
}

function units(u: string, money: Money): string {
  return `${formatInteger(u)} units (${formatUnitsMoney(u, money)})`;
}

export function KeyDetails({ k, money, now, width, height, state, onClose, onDisabled }: KeyDetailsProps): ReactNode {
  useCommandLayer({
    scopes: ["details"],
    state,
    priority: PRIORITY.dialog,
    modal: true,
    onDisabled,
    actions: { "details.close": onClose },
  });
  const q = k.quota;
  // Most important first: what does not fit the terminal is left out.
  // The same fields and words as `aisa-authz keys get` (src/cli/views.ts), from the same rules.
  const reserved = q && q.reserved !== "0" && q.reserved !== "" ? q.reserved : null;
  const rows: [string, string][] = [
    ["ID", k.id],
    ["Status", formatKeyStatus(k, now)],
    ["Key", k.maskedKey],
    ["Quota", !q || q.unlimited ? UNLIMITED : `${units(spendable(q).toString(), money)} left of ${units(q.total, money)}`],
    ["Expiration Time", formatExpiry(k.expiresAt, now)],
    ["Token Grouping", k.group],
    ["Account", k.accountId],
    ["Available Models", availableModels(k)],
    ["IP Whitelist", maskedIps(k.ips)],
    ["Creation Time", formatTime(k.createdAt)],
    ["Last used", formatLastUsed(k.lastUsedAt, now)],
    ["Used", q ? units(q.used, money) : "0"],
    ["Reserved", reserved ? `${units(reserved, money)} (held by requests in flight)` : "0"],
    ["Rate limits", formatLimits(k.limits)],
    ["Refill", formatRefill(k.refill)],
    ["Updated", formatTime(k.updatedAt)],
    ["Metadata", formatMetadata(k.metadata)],
  ];
  const shown = rows.slice(0, Math.max(1, height - 4));
  return (
    <Dialog title={`Key ${k.name}`} width={width} footerScopes={["details"]} state={state}>
      {shown.map(([label, value]) => (
        <Box key={label}>
          <Box width={17} flexShrink={0}>
            <Text dimColor>{label}</Text>
          </Box>
          <Text wrap="truncate">{value}</Text>
        </Box>
      ))}
    </Dialog>
  );
}
