// Every field of one key (the table drops columns on narrow terminals).
import type { ReactNode } from "react";
import { Box, Text } from "ink";
import { KeyStatus, RefillPeriod, type Key } from "../../src/gen/aisa/v1/types.js";
import type { CommandState } from "../keys/commands.js";
import { PRIORITY, useCommandLayer } from "../keys/keypress.js";
import {
  formatDateTime,
  formatExpires,
  formatInteger,
  formatUnitsMoney,
  NEVER_EXPIRES,
  UNLIMITED,
  type Money,
} from "../format.js";
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

const REFILL: Readonly<Record<number, string>> = {
  [RefillPeriod.REFILL_PERIOD_DAILY]: "daily",
  [RefillPeriod.REFILL_PERIOD_WEEKLY]: "weekly",
  [RefillPeriod.REFILL_PERIOD_MONTHLY]: "monthly",
};

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
  const rows: [string, string][] = [
    ["Id", k.id],
    ["Status", k.status === KeyStatus.KEY_STATUS_ENABLED ? "Enabled" : "Disabled"],
    ["Key", k.maskedKey],
    ["Quota", !q || q.unlimited ? UNLIMITED : `${units(q.remaining, money)} left of ${units(q.total, money)}`],
    ["Expires", k.expiresAt ? `${formatExpires(k.expiresAt, now)} (${formatDateTime(k.expiresAt)})` : NEVER_EXPIRES],
    ["Group", k.group],
    ["Account", k.accountId],
    ["Models", k.models.length ? k.models.join(", ") : UNLIMITED],
    ["IP restrictions", k.ips.length ? k.ips.join(", ") : UNLIMITED],
    ["Created", formatDateTime(k.createdAt)],
    ["Last used", k.lastUsedAt ? formatDateTime(k.lastUsedAt) : "never"],
    ["Used", q ? units(q.used, money) : "0"],
    [
      "Rate limits",
      k.limits && (k.limits.rpm || k.limits.tpm || k.limits.concurrency)
        ? `rpm ${k.limits.rpm || "-"} · tpm ${k.limits.tpm || "-"} · concurrency ${k.limits.concurrency || "-"}`
        : "none",
    ],
    ["Refill", REFILL[k.refill] ?? "none"],
    ["Reserved", q ? units(q.reserved, money) : "0"],
    ["Updated", formatDateTime(k.updatedAt)],
    ["Metadata", Object.entries(k.metadata).map(([a, b]) => `${a}=${b}`).join(", ") || "—"],
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
