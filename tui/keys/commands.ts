// THE key-binding table of the TUI: the single source of truth for dispatch,
// the bottom help bar, the `?` help screen and the dialog footers. Nothing else
// in tui/ compares raw keys against letters; it asks `matchCommand`.
//
// Modelled on gemini-cli's `Command` enum + `commandDescriptions` (a command
// without a description does not compile) and lazygit's Binding
// (Description, ShortDescription, Tag, DisplayOnScreen, GetDisabledReason).
//
// Scopes decide which commands are live: the focused layer passes its scopes
// (e.g. ["keys", "list", "global"]); the first command in table order whose
// key matches wins.

/** A normalised key press (see keys/keypress.tsx for how Ink's events map to it). */
export interface KeyEvent {
  /** Printable text ("" for special keys). May hold several characters (paste). */
  readonly input: string;
  /** A non-printable key. */
  readonly special?: SpecialKey;
  /** Ctrl was held (with a letter in `input`). */
  readonly ctrl: boolean;
}

export type SpecialKey =
  | "up"
  | "down"
  | "left"
  | "right"
  | "pageUp"
  | "pageDown"
  | "home"
  | "end"
  | "enter"
  | "escape"
  | "tab"
  | "backTab"
  | "backspace"
  | "space";

export type Scope =
  | "global"
  | "list"
  | "keys"
  | "groups"
  | "usage"
  | "webhooks"
  | "search"
  | "filters"
  | "confirm"
  | "form"
  | "formChoice"
  | "formModels"
  | "picker"
  | "secret"
  | "reveal"
  | "details"
  | "help";

export type Tag = "Navigation" | "Views" | "Keys" | "Selection" | "Search and filters" | "Live usage" | "Webhooks" | "General" | "Form" | "Dialogs";

/** Everything a disabled-reason needs to know; each layer fills in what applies. */
export interface CommandState {
  /** The last call reached the sidecar. */
  readonly connected: boolean;
  /** The first load is still bringing keys in (the rows so far are shown; nothing is changed yet). */
  readonly loading?: boolean;
  /** WhoAmI.read_only. */
  readonly readOnly: boolean;
  /** The token is scoped to one account. */
  readonly accountScoped: boolean;
  /** Rows shown in the focused list. */
  readonly visibleCount: number;
  /** Keys an action applies to: the marked keys, else the selected row (0 or 1). */
  readonly targetCount: number;
  /** Marked keys (also those hidden by the filter). */
  readonly markCount: number;
  /** Confirm dialog: why the focused button cannot be pressed yet, if so. */
  readonly confirmBlocked?: string | null;
  /** Entries in the live alerts list (Usage view). */
  readonly alertCount?: number;
}

export interface CommandSpec {
  /** Key chords: a literal character ("j", "G", "/"), or "<name>" (see KEY_NAMES), or "<c-x>" for ctrl+x. */
  readonly keys: readonly string[];
  /** One line for the help screen. */
  readonly description: string;
  /** A word or two for the help bar / dialog footer. */
  readonly short: string;
  readonly tag: Tag;
  readonly scope: Scope;
  /** Shown in the bottom help bar (all commands are on the help screen). */
  readonly displayOnScreen: boolean;
  /** Why the command cannot run now, or null when it can. Pressing it then shows the reason. */
  readonly disabledReason?: (s: CommandState) => string | null;
}

export type Command =
  | "nav.up"
  | "nav.down"
  | "nav.top"
  | "nav.bottom"
  | "nav.pageUp"
  | "nav.pageDown"
  | "view.next"
  | "view.keys"
  | "view.groups"
  | "view.usage"
  | "view.webhooks"
  | "keys.search"
  | "keys.filters"
  | "keys.create"
  | "keys.edit"
  | "keys.toggle"
  | "keys.delete"
  | "keys.copy"
  | "keys.show"
  | "keys.details"
  | "keys.mark"
  | "keys.markAll"
  | "keys.clearMarks"
  | "keys.back"
  | "groups.open"
  | "usage.metric"
  | "usage.clearAlerts"
  | "webhooks.create"
  | "webhooks.delete"
  | "webhooks.test"
  | "webhooks.only"
  | "app.refresh"
  | "app.help"
  | "app.quit"
  | "search.accept"
  | "search.cancel"
  | "filters.next"
  | "filters.prev"
  | "filters.clear"
  | "filters.close"
  | "confirm.switch"
  | "confirm.activate"
  | "confirm.cancel"
  | "form.next"
  | "form.prev"
  | "form.accept"
  | "form.submit"
  | "form.cancel"
  | "form.choiceNext"
  | "form.choicePrev"
  | "form.pickModels"
  | "picker.toggle"
  | "picker.done"
  | "picker.cancel"
  | "secret.copy"
  | "secret.close"
  | "reveal.close"
  | "details.close"
  | "help.close";

const notConnected = (s: CommandState): string | null => (s.connected ? null : s.loading === true ? "keys still loading" : "not connected to sidecar");

/** Changes something: needs a connection and a token that may write. */
const mutation = (s: CommandState): string | null => notConnected(s) ?? (s.readOnly ? "read-only token" : null);

/** Acts on the marked keys, else on the selected row. */
const onTargets = (s: CommandState): string | null =>
  mutation(s) ?? (s.targetCount === 0 ? "no key selected" : null);

/** Webhooks: only operators configure destinations. */
const operatorMutation = (s: CommandState): string | null => mutation(s) ?? (s.accountScoped ? "operator tokens only" : null);

const onEndpoint = (s: CommandState): string | null => (s.visibleCount === 0 ? "no endpoint selected" : null);

const onSelectedRow = (s: CommandState): string | null => (s.visibleCount === 0 ? "no key selected" : null);

/**
 * The table. Order matters twice: it is the order of the help bar and help
 * screen, and the first match wins within the live scopes.
 */
export const COMMANDS: Readonly<Record<Command, CommandSpec>> = {
  "nav.up": { keys: ["k", "<up>"], description: "Move up", short: "up", tag: "Navigation", scope: "list", displayOnScreen: false },
  "nav.down": { keys: ["j", "<down>"], description: "Move down", short: "down", tag: "Navigation", scope: "list", displayOnScreen: false },
  "nav.top": { keys: ["g", "<home>"], description: "Go to the first row", short: "top", tag: "Navigation", scope: "list", displayOnScreen: false },
  "nav.bottom": { keys: ["G", "<end>"], description: "Go to the last row", short: "bottom", tag: "Navigation", scope: "list", displayOnScreen: false },
  "nav.pageUp": { keys: ["<pgup>", "<c-b>"], description: "Page up", short: "page up", tag: "Navigation", scope: "list", displayOnScreen: false },
  "nav.pageDown": { keys: ["<pgdn>", "<c-f>"], description: "Page down", short: "page down", tag: "Navigation", scope: "list", displayOnScreen: false },

  "keys.search": {
    keys: ["/"], description: "Search by name or id as you type (the header shows \"n of m\")", short: "search",
    tag: "Search and filters", scope: "keys", displayOnScreen: true,
  },
  "keys.filters": {
    keys: ["f"], description: "Filter by status, group, account, expired or model", short: "filters",
    tag: "Search and filters", scope: "keys", displayOnScreen: true,
  },
  "keys.create": {
    keys: ["n"], description: "Create a key", short: "new", tag: "Keys", scope: "keys", displayOnScreen: true,
    disabledReason: mutation,
  },
  "keys.edit": {
    keys: ["e"], description: "Edit the selected key", short: "edit", tag: "Keys", scope: "keys", displayOnScreen: true,
    disabledReason: (s) => mutation(s) ?? onSelectedRow(s),
  },
  "keys.toggle": {
    keys: ["x", "t"], description: "Enable or disable the marked keys, else the selected key", short: "on/off",
    tag: "Keys", scope: "keys", displayOnScreen: true, disabledReason: onTargets,
  },
  "keys.delete": {
    keys: ["d"], description: "Delete the marked keys, else the selected key (asks first)", short: "delete",
    tag: "Keys", scope: "keys", displayOnScreen: true, disabledReason: onTargets,
  },
  "keys.copy": {
    keys: ["c"], description: "Copy the full secret of the marked keys, else the selected key, to the clipboard", short: "copy",
    tag: "Keys", scope: "keys", displayOnScreen: true, disabledReason: onTargets,
  },
  "keys.show": {
    keys: ["C"], description: "Show the full secret of the marked keys, else the selected key, for manual copy", short: "show",
    tag: "Keys", scope: "keys", displayOnScreen: false, disabledReason: onTargets,
  },
  "keys.details": {
    keys: ["<enter>"], description: "Show every field of the selected key", short: "details", tag: "Keys", scope: "keys",
    displayOnScreen: false, disabledReason: onSelectedRow,
  },
  "keys.mark": {
    keys: ["<space>"], description: "Mark or unmark the selected key", short: "mark", tag: "Selection", scope: "keys",
    displayOnScreen: true, disabledReason: onSelectedRow,
  },
  "keys.markAll": {
    keys: ["a"], description: "Mark every visible key (again: unmark them)", short: "mark all", tag: "Selection",
    scope: "keys", displayOnScreen: false, disabledReason: (s) => (s.visibleCount === 0 ? "no rows visible" : null),
  },
  "keys.clearMarks": {
    keys: ["<c-\\>"], description: "Clear all marks", short: "clear marks", tag: "Selection", scope: "keys",
    displayOnScreen: false, disabledReason: (s) => (s.markCount === 0 ? "nothing marked" : null),
  },
  "keys.back": {
    keys: ["<esc>"], description: "Clear the search, then the filters, then the marks", short: "clear", tag: "Selection",
    scope: "keys", displayOnScreen: false,
  },
  "groups.open": {
    keys: ["<enter>"], description: "Show the keys of the selected group", short: "keys", tag: "Views", scope: "groups",
    displayOnScreen: true, disabledReason: (s) => (s.visibleCount === 0 ? "no group selected" : null),
  },
  "usage.metric": {
    keys: ["m"], description: "Sparklines show requests, denies, tokens or units per second (cycles)", short: "metric",
    tag: "Live usage", scope: "usage", displayOnScreen: true,
  },
  "usage.clearAlerts": {
    keys: ["c"], description: "Clear the list of alerts and key events", short: "clear alerts", tag: "Live usage",
    scope: "usage", displayOnScreen: true, disabledReason: (s) => ((s.alertCount ?? 0) === 0 ? "no alerts" : null),
  },
  "webhooks.create": {
    keys: ["n"], description: "Add a webhook endpoint: URL, events, thresholds, balance low (its signing secret is shown once)", short: "add",
    tag: "Webhooks", scope: "webhooks", displayOnScreen: true, disabledReason: operatorMutation,
  },
  "webhooks.delete": {
    keys: ["d"], description: "Remove the selected endpoint and its queued deliveries (asks first)", short: "remove",
    tag: "Webhooks", scope: "webhooks", displayOnScreen: true, disabledReason: (s) => operatorMutation(s) ?? onEndpoint(s),
  },
  "webhooks.test": {
    keys: ["t"], description: "Send a test event (ping) to the selected endpoint", short: "test",
    tag: "Webhooks", scope: "webhooks", displayOnScreen: true, disabledReason: (s) => operatorMutation(s) ?? onEndpoint(s),
  },
  "webhooks.only": {
    keys: ["<enter>"], description: "Show only the selected endpoint's deliveries (again: every endpoint's)", short: "only this",
    tag: "Webhooks", scope: "webhooks", displayOnScreen: true, disabledReason: onEndpoint,
  },
  "view.next": { keys: ["<tab>"], description: "Cycle the Keys, Groups and Usage views", short: "view", tag: "Views", scope: "global", displayOnScreen: true },
  "view.keys": { keys: ["1"], description: "Keys view", short: "keys", tag: "Views", scope: "global", displayOnScreen: false },
  "view.groups": { keys: ["2"], description: "Groups view (key counts, ratio, usage)", short: "groups", tag: "Views", scope: "global", displayOnScreen: false },
  "view.usage": {
    keys: ["3"], description: "Usage view: live requests/s, denies by reason, tokens and spend, sparklines, top keys, alerts",
    short: "usage", tag: "Views", scope: "global", displayOnScreen: false,
  },
  "view.webhooks": {
    keys: ["4"], description: "Webhooks view: endpoints, delivery counts, recent deliveries and their failures; add, remove, test (operator only)",
    short: "webhooks", tag: "Views", scope: "global", displayOnScreen: false,
  },
  "app.refresh": {
    keys: ["R"], description: "Reload everything from the sidecar (and reconnect now)", short: "refresh", tag: "General",
    scope: "global", displayOnScreen: false,
  },
  "app.help": { keys: ["?"], description: "Show every key binding", short: "help", tag: "General", scope: "global", displayOnScreen: true },
  "app.quit": { keys: ["q"], description: "Quit", short: "quit", tag: "General", scope: "global", displayOnScreen: true },

  "search.accept": { keys: ["<enter>"], description: "Keep the search and go back to the list", short: "done", tag: "Search and filters", scope: "search", displayOnScreen: true },
  "search.cancel": { keys: ["<esc>"], description: "Clear the search", short: "clear", tag: "Search and filters", scope: "search", displayOnScreen: true },
  "filters.next": { keys: ["<right>", "l", "<space>", "<enter>"], description: "Next value of the filter", short: "change", tag: "Search and filters", scope: "filters", displayOnScreen: true },
  "filters.prev": { keys: ["<left>", "h"], description: "Previous value of the filter", short: "back", tag: "Search and filters", scope: "filters", displayOnScreen: false },
  "filters.clear": { keys: ["c"], description: "Clear all filters", short: "clear all", tag: "Search and filters", scope: "filters", displayOnScreen: true },
  "filters.close": { keys: ["<esc>", "f", "q"], description: "Close the filter menu", short: "close", tag: "Search and filters", scope: "filters", displayOnScreen: true },

  "confirm.switch": { keys: ["<tab>", "<left>", "<right>", "h", "l"], description: "Move the focus between Cancel and Delete", short: "switch", tag: "Dialogs", scope: "confirm", displayOnScreen: true },
  "confirm.activate": {
    keys: ["<enter>"], description: "Press the focused button", short: "press", tag: "Dialogs", scope: "confirm", displayOnScreen: true,
    disabledReason: (s) => s.confirmBlocked ?? null,
  },
  "confirm.cancel": { keys: ["<esc>"], description: "Cancel", short: "cancel", tag: "Dialogs", scope: "confirm", displayOnScreen: true },

  "form.next": { keys: ["<tab>", "<down>"], description: "Next field", short: "next", tag: "Form", scope: "form", displayOnScreen: true },
  "form.prev": { keys: ["<s-tab>", "<up>"], description: "Previous field", short: "prev", tag: "Form", scope: "form", displayOnScreen: false },
  "form.accept": {
    keys: ["<enter>"], description: "Next field; on the submit button, submit; in the IP whitelist, a new line", short: "enter",
    tag: "Form", scope: "form", displayOnScreen: false,
  },
  "form.submit": {
    keys: ["<c-s>"], description: "Submit the form", short: "submit", tag: "Form", scope: "form", displayOnScreen: true,
    disabledReason: notConnected,
  },
  "form.cancel": { keys: ["<esc>"], description: "Cancel the form", short: "cancel", tag: "Form", scope: "form", displayOnScreen: true },
  "form.choiceNext": {
    keys: ["<right>", "<space>"], description: "Next option (group, expiration, Unlimited)", short: "change",
    tag: "Form", scope: "formChoice", displayOnScreen: true,
  },
  "form.choicePrev": {
    keys: ["<left>"], description: "Previous option (group, expiration, Unlimited)", short: "back",
    tag: "Form", scope: "formChoice", displayOnScreen: false,
  },
  "form.pickModels": {
    keys: ["<c-p>"], description: "Pick models from the priced models", short: "pick", tag: "Form", scope: "formModels",
    displayOnScreen: true,
  },
  "picker.toggle": { keys: ["<space>"], description: "Check or uncheck the model", short: "check", tag: "Form", scope: "picker", displayOnScreen: true },
  "picker.done": { keys: ["<enter>"], description: "Use the checked models", short: "done", tag: "Form", scope: "picker", displayOnScreen: true },
  "picker.cancel": { keys: ["<esc>"], description: "Close the picker without changes", short: "cancel", tag: "Form", scope: "picker", displayOnScreen: true },

  "secret.copy": { keys: ["c"], description: "Copy the new key (or webhook signing secret) to the clipboard", short: "copy", tag: "Dialogs", scope: "secret", displayOnScreen: true },
  "secret.close": { keys: ["<enter>", "<esc>"], description: "Close (the full key is not shown again)", short: "close", tag: "Dialogs", scope: "secret", displayOnScreen: true },
  "reveal.close": { keys: ["<esc>", "<enter>", "q"], description: "Close the secrets", short: "close", tag: "Dialogs", scope: "reveal", displayOnScreen: true },
  "details.close": { keys: ["<esc>", "<enter>", "q"], description: "Close the key details", short: "close", tag: "Dialogs", scope: "details", displayOnScreen: true },
  "help.close": { keys: ["<esc>", "?", "q"], description: "Close the help", short: "close", tag: "Dialogs", scope: "help", displayOnScreen: true },
};

export type CommandTable = Readonly<Record<string, CommandSpec>>;

export const COMMAND_IDS = Object.keys(COMMANDS) as Command[];

/** "<name>" chords: the name and how it is shown. */
const KEY_NAMES: Readonly<Record<string, { special: SpecialKey; label: string }>> = {
  up: { special: "up", label: "↑" },
  down: { special: "down", label: "↓" },
  left: { special: "left", label: "←" },
  right: { special: "right", label: "→" },
  pgup: { special: "pageUp", label: "PgUp" },
  pgdn: { special: "pageDown", label: "PgDn" },
  home: { special: "home", label: "Home" },
  end: { special: "end", label: "End" },
  enter: { special: "enter", label: "enter" },
  esc: { special: "escape", label: "esc" },
  tab: { special: "tab", label: "tab" },
  "s-tab": { special: "backTab", label: "shift+tab" },
  space: { special: "space", label: "space" },
};

interface Chord {
  readonly input?: string;
  readonly special?: SpecialKey;
  readonly ctrl?: boolean;
  readonly label: string;
}

const chordCache = new Map<string, Chord>();

/** Parses one chord of the table ("j", "<down>", "<c-s>", "<c-\\>"). */
export function parseChord(chord: string): Chord {
  const hit = chordCache.get(chord);
  if (hit) return hit;
  let parsed: Chord;
  if (chord.length > 1 && chord.startsWith("<") && chord.endsWith(">")) {
    const name = chord.slice(1, -1);
    const named = KEY_NAMES[name];
    if (named) parsed = { special: named.special, label: named.label };
    else if (name.startsWith("c-") && name.length === 3) parsed = { input: name.slice(2), ctrl: true, label: `ctrl+${name.slice(2)}` };
    else throw new TypeError(`unknown key chord ${chord}`);
  } else {
    parsed = { input: chord, label: chord };
  }
  chordCache.set(chord, parsed);
  return parsed;
}

function chordMatches(chord: Chord, ev: KeyEvent): boolean {
  if (chord.special) return ev.special === chord.special;
  if (chord.ctrl) return ev.ctrl && ev.input === chord.input;
  return !ev.ctrl && ev.special === undefined && ev.input === chord.input;
}

/** The first command (in table order) of the given scopes bound to this key. */
export function matchCommand(scopes: readonly Scope[], ev: KeyEvent): Command | undefined {
  for (const id of COMMAND_IDS) {
    const spec = COMMANDS[id];
    if (!scopes.includes(spec.scope)) continue;
    if (spec.keys.some((k) => chordMatches(parseChord(k), ev))) return id;
  }
  return undefined;
}

/** "j/↓" */
export function keyLabel(spec: CommandSpec): string {
  return spec.keys.map((k) => parseChord(k).label).join("/");
}

/** Why the command cannot run now (null = it can). */
export function disabledReason(spec: CommandSpec, state: CommandState | undefined): string | null {
  if (!spec.disabledReason || !state) return null;
  return spec.disabledReason(state);
}

export interface BarItem {
  readonly id: string;
  readonly key: string;
  readonly short: string;
  readonly disabled: boolean;
}

/** The help bar / dialog footer: the displayOnScreen commands of the live scopes, in table order. */
export function helpBarItems(scopes: readonly Scope[], state?: CommandState, table: CommandTable = COMMANDS): BarItem[] {
  const out: BarItem[] = [];
  for (const [id, spec] of Object.entries(table)) {
    if (!spec.displayOnScreen || !scopes.includes(spec.scope)) continue;
    // The bar shows the first chord only; the help screen shows all of them.
    out.push({ id, key: parseChord(spec.keys[0] ?? "").label, short: spec.short, disabled: disabledReason(spec, state) !== null });
  }
  return out;
}

export interface HelpRow {
  readonly id: string;
  readonly keys: string;
  readonly description: string;
  readonly scope: Scope;
  readonly disabled: string | null;
}

export interface HelpSection {
  readonly tag: Tag;
  readonly rows: readonly HelpRow[];
}

/** The help screen: every command, grouped by tag (in order of first appearance). */
export function helpSections(state?: CommandState, table: CommandTable = COMMANDS): HelpSection[] {
  const byTag = new Map<Tag, HelpRow[]>();
  for (const [id, spec] of Object.entries(table)) {
    const rows = byTag.get(spec.tag) ?? [];
    rows.push({ id, keys: keyLabel(spec), description: spec.description, scope: spec.scope, disabled: disabledReason(spec, state) });
    byTag.set(spec.tag, rows);
  }
  return [...byTag].map(([tag, rows]) => ({ tag, rows }));
}
