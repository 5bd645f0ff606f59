// The `f` menu: one row per filter (status, group, account, expired, model);
// the value changes in place and the list behind narrows at once.
import { useState, type ReactNode } from "react";
import { Box, Text } from "ink";
import type { CommandState } from "../keys/commands.js";
import { PRIORITY, useCommandLayer } from "../keys/keypress.js";
import { NO_FILTERS, type ExpiredFilter, type KeyFilters, type StatusFilter } from "../state/keyIndex.js";
import { Dialog } from "./Dialog.js";

export interface FilterChoices {
  readonly groups: readonly string[];
  readonly accounts: readonly string[];
  readonly models: readonly string[];
  /** An account token sees only its account: the account filter is fixed. */
  readonly accountScoped: boolean;
}

interface Row {
  readonly label: string;
  readonly options: readonly string[];
  readonly current: (f: KeyFilters) => string;
  readonly set: (f: KeyFilters, v: string) => KeyFilters;
  readonly disabled?: string;
}

const ANY = "any";

function rows(c: FilterChoices): Row[] {
  return [
    {
      label: "Status",
      options: ["any", "enabled", "disabled", "expired"],
      current: (f) => f.status,
      set: (f, v) => ({ ...f, status: v as StatusFilter }),
    },
    {
      label: "Group",
      options: [ANY, ...c.groups],
      current: (f) => f.group ?? ANY,
      set: (f, v) => ({ ...f, group: v === ANY ? null : v }),
    },
    {
      label: "Account",
      options: [ANY, ...c.accounts],
      current: (f) => f.accountId ?? ANY,
      set: (f, v) => ({ ...f, accountId: v === ANY ? null : v }),
      disabled: c.accountScoped ? "an account token sees its own account only" : undefined,
    },
    {
      label: "Expired",
      options: ["any", "expired", "active"],
      current: (f) => f.expired,
      set: (f, v) => ({ ...f, expired: v as ExpiredFilter }),
    },
    {
      label: "Model",
      options: [ANY, ...c.models],
      current: (f) => f.model ?? ANY,
      set: (f, v) => ({ ...f, model: v === ANY ? null : v }),
    },
  ];
}

export interface FilterMenuProps {
  readonly filters: KeyFilters;
  readonly choices: FilterChoices;
  readonly shown: number;
  readonly total: number;
  readonly width: number;
  readonly state: CommandState;
  readonly onChange: (f: KeyFilters) => void;
  readonly onClose: () => void;
  readonly onDisabled: (message: string) => void;
}

export function FilterMenu({ filters, choices, shown, total, width, state, onChange, onClose, onDisabled }: FilterMenuProps): ReactNode {
  const [row, setRow] = useState(0);
  const list = rows(choices);
  const step = (delta: number): void => {
    const r = list[row];
    if (!r) return;
    if (r.disabled) {
      onDisabled(`${r.label.toLowerCase()}: ${r.disabled}`);
      return;
    }
    const i = r.options.indexOf(r.current(filters));
    const next = r.options[(i + delta + r.options.length) % r.options.length] ?? ANY;
    onChange(r.set(filters, next));
  };
  useCommandLayer({
    scopes: ["filters", "list"],
    state,
    priority: PRIORITY.dialog,
    modal: true,
    onDisabled,
    actions: {
      "nav.up": () => setRow((r) => Math.max(0, r - 1)),
      "nav.down": () => setRow((r) => Math.min(list.length - 1, r + 1)),
      "nav.top": () => setRow(0),
      "nav.bottom": () => setRow(list.length - 1),
      "filters.next": () => step(1),
      "filters.prev": () => step(-1),
      "filters.clear": () => onChange(NO_FILTERS),
      "filters.close": onClose,
    },
  });
  return (
    <Dialog title={`Filters: ${shown} of ${total} keys`} width={Math.min(width, 70)} footerScopes={["filters"]} state={state}>
      {list.map((r, i) => {
        const value = r.current(filters);
        const pos = r.options.indexOf(value);
        return (
          <Box key={r.label}>
            <Text inverse={i === row}>{i === row ? "› " : "  "}</Text>
            <Box width={10} flexShrink={0}>
              <Text bold={i === row} dimColor={r.disabled !== undefined}>
                {r.label}
              </Text>
            </Box>
            <Text color={value === ANY ? undefined : "yellow"} dimColor={r.disabled !== undefined} wrap="truncate">
              ‹ {value} › <Text dimColor>({pos + 1}/{r.options.length})</Text>
            </Text>
          </Box>
        );
      })}
    </Dialog>
  );
}
