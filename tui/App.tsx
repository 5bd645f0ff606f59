// The TUI: the API Keys page in a terminal. This shell holds the data (useSidecar, the live
// usage stream), derives what the screens show, and lays out the chrome; the screen state and
// its rules are one reducer (state/appState.ts), the calls are state/keyActions.ts, and each
// screen and dialog is its own component (screens/) with its own key layer. Every key goes
// through the one dispatcher (keys/keypress.tsx) and the one table (keys/commands.ts).
import { useEffect, useMemo, useReducer, useRef, useState, type ReactNode } from "react";
import { Box, Text, useApp } from "ink";
import type { Account, AdminApi, UsageEvent } from "./client.js";
import type { Key } from "../src/gen/aisa/v1/types.js";
import type { Clipboard } from "./clipboard.js";
import { Banner, Header, StatusLine, Tabs } from "./components/Chrome.js";
import { groupStats as countGroupKeys, type GroupStats } from "./components/GroupsTable.js";
import { HelpBar } from "./components/HelpBar.js";
import { WebhooksView } from "./components/WebhooksView.js";
import { toMoney } from "../src/display/format.js";
import type { CommandState, Scope } from "./keys/commands.js";
import { KeypressProvider, PRIORITY, useCommandLayer } from "./keys/keypress.js";
import type { FormContext } from "./state/keyForm.js";
import { describeFilters } from "./state/keyIndex.js";
import { applyKeyEvents, RemainingOverlay } from "./state/liveKeys.js";
import { INITIAL_UI, uiReducer } from "./state/appState.js";
import { keyActions } from "./state/keyActions.js";
import type { FeedEntry } from "./state/usage.js";
import { useLiveUsage } from "./state/useLiveUsage.js";
import { useKeyList } from "./state/useKeyList.js";
import { useSidecar } from "./state/useSidecar.js";
import { useClock, useTerminalSize } from "./state/useTerminal.js";
import { terminalSafeApi } from "./safeApi.js";
import { Dialogs, placement } from "./screens/Dialogs.js";
import { GROUPS_SCOPES, GroupsScreen } from "./screens/GroupsScreen.js";
import { HelpOverlay } from "./screens/HelpOverlay.js";
import { KEYS_SCOPES, KeysScreen, SearchLine } from "./screens/KeysScreen.js";
import { liveHeader, liveTab, USAGE_SCOPES, UsageScreen } from "./screens/UsageScreen.js";
import type { ScrollMemory } from "./screens/types.js";

export interface AppProps {
  readonly api: AdminApi;
  /** Shown in the header and the banner. */
  readonly address?: string;
  /** Where `c` copies to (default: nothing can be copied; secrets are shown). */
  readonly clipboard?: Clipboard;
  /** Fixed size (tests); default: the terminal's, following resizes. */
  readonly size?: { readonly columns: number; readonly rows: number };
  readonly now?: () => number;
  readonly reconnect?: { readonly baseMs: number; readonly maxMs: number };
  /** WhoAmI probe interval while connected (0 = off). */
  readonly heartbeatMs?: number;
  /** A live usage stream silent this long is restarted (default 15 s; 0 = never). */
  readonly usageStallMs?: number;
}

const NO_CLIPBOARD: Clipboard = { copy: () => Promise.resolve({ methods: [] }) };

/** Top keys kept in the Usage view's snapshot (the view shows what fits). */
const TOP_KEYS = 50;

export function App(props: AppProps): ReactNode {
  return (
    <KeypressProvider>
      <Main {...props} />
    </KeypressProvider>
  );
}

function Main(props: AppProps): ReactNode {
  const { address = "sidecar", clipboard = NO_CLIPBOARD, heartbeatMs = 10_000 } = props;
  // Every string from the sidecar is made terminal-safe before any component sees it.
  const api = useMemo(() => terminalSafeApi(props.api), [props.api]);
  const nowFn = props.now ?? Date.now;
  const { exit } = useApp();
  const size = useTerminalSize(props.size);
  const sc = useSidecar(api, {
    reconnectBaseMs: props.reconnect?.baseMs ?? 250,
    reconnectMaxMs: props.reconnect?.maxMs ?? 15_000,
    heartbeatMs,
  });
  const now = useClock(nowFn, 30_000);
  const money = useMemo(() => toMoney(sc.who?.quotaPerUnit, sc.who?.currency), [sc.who]);
  const [ui, dispatch] = useReducer(uiReducer, INITIAL_UI);
  const { view, overlay, marks } = ui;
  // The first rows of the scrolled lists, kept across view switches.
  const keysTop = useRef<ScrollMemory>({ current: 0 }).current;
  const groupsTop = useRef({ current: 0 }).current;

  // ---- the key list and the cursor on it (tui/state/useKeyList.ts)
  const { keyById, visible, list, hiddenMarks, cursor, selected, current } = useKeyList(sc.keys, ui, now, dispatch);
  const actions = keyActions({ api, clipboard, dispatch, updateKeys: sc.updateKeys, fail: sc.fail, list: current });
  const onDisabled = (text: string): void => actions.report(text, "error");

  // ---- live usage (WatchUsage): one stream while connected, on every screen
  const remaining = useRef(new RemainingOverlay()).current;
  useEffect(() => remaining.prune((id) => keyById.get(id)), [remaining, keyById]);
  /** The Webhooks view's help bar (its scopes and state), or null while its dialog has the footer. */
  const [webhookBar, setWebhookBar] = useState<{ readonly scopes: readonly Scope[]; readonly state: CommandState } | null>(null);
  const [liveBalance, setLiveBalance] = useState<{ readonly base: Account; readonly balance: string } | null>(null);
  /** Whether the event changed what is on screen (false: no frame for it; see useLiveUsage). */
  const onUsage = (ev: UsageEvent, added: readonly FeedEntry[]): boolean => {
    // The Usage and Groups views draw the model itself; elsewhere only the header's figures,
    // the alert count, live Remaining and the balance come from it.
    let redraw = view === "usage" || view === "groups" || added.length > 0;
    // Key events replace keys in place (no reload); remaining values are recorded against the
    // keys loaded now (a replaced key brings its own quota). The selection is a key id, so
    // someone else's create or delete cannot slide another key under the cursor.
    if (ev.keyEvents.length > 0) sc.updateKeys((all) => applyKeyEvents(all, ev.keyEvents));
    if (ev.remaining.length > 0) {
      // On the key table with nothing over it, only a change to a row on screen is drawn now
      // (the others are drawn when they scroll in); anywhere else, any change is. The window is
      // the one KeysScreen drew last (keysTop).
      const onTable = view === "keys" && overlay.kind === "none" && keysTop.rows !== undefined;
      let window: Set<string> | undefined;
      remaining.record(ev.remaining, (id) => keyById.get(id), (id) => {
        if (!onTable) redraw = true;
        else {
          window ??= new Set(list.visible.slice(keysTop.current, keysTop.current + keysTop.rows!).map((i) => (list.index.keys[i] as Key).id));
          if (window.has(id)) redraw = true;
        }
      });
      const shown = sc.account;
      if (shown) {
        const mine = ev.remaining.filter((r) => keyById.get(r.keyId)?.accountId === shown.id).at(-1);
        if (mine && (liveBalance?.base !== shown || liveBalance.balance !== mine.accountBalance)) setLiveBalance({ base: shown, balance: mine.accountBalance });
      }
    }
    // Alerts (and a key running out of quota) flash in the status line; the Usage view lists them all.
    const flash = added.filter((e) => e.source === "alert" || e.kind === "quota_exhausted");
    const first = flash[0];
    if (first && view !== "usage") {
      const more = flash.length > 1 ? ` (+${flash.length - 1} more: 3 shows all)` : "";
      dispatch({ type: "status", status: { text: `⚠ ${first.text}${more}`, tone: first.tone === "error" ? "error" : "warn" } });
    }
    return redraw || headerChanged();
  };
  const live = useLiveUsage(api, {
    enabled: sc.phase === "ready",
    reconnectBaseMs: props.reconnect?.baseMs ?? 250,
    reconnectMaxMs: props.reconnect?.maxMs ?? 15_000,
    stallMs: props.usageStallMs ?? 15_000,
    onConnectionLost: (err) => {
      sc.fail(err);
    },
    nameOf: (id) => keyById.get(id)?.name,
    onEvent: onUsage,
  });
  const snap = useMemo(
    () => live.model.snapshot(ui.metric, TOP_KEYS, (id) => keyById.get(id)?.name),
    // live.version: the model changed (it is mutable).
    [live.model, live.version, ui.metric, keyById],
  );
  const headerLive = liveHeader(live, snap, money);
  /** The header's live figures differ from the ones drawn (the model has applied a new event). */
  const headerChanged = (): boolean => liveHeader(live, { last: live.model.lastRates() }, money)?.text !== headerLive?.text;
  const liveGroups = useMemo(() => new Map(snap.groups.map((g) => [g.id, g])), [snap]);
  const account = liveBalance && liveBalance.base === sc.account ? { ...liveBalance.base, balance: liveBalance.balance } : sc.account;
  // The header's balance follows the account filter: an operator looking at acme's keys sees acme's balance.
  const headerAccount = ui.filters.accountId !== null && ui.filters.accountId !== account?.id ? (sc.accounts.find((a) => a.id === ui.filters.accountId) ?? account) : account;

  // The Groups view's key counts, from the loaded keys (so right after a create or a move).
  const groupStats = useMemo(() => (view === "groups" ? countGroupKeys(sc.keys) : new Map<string, GroupStats>()), [view, sc.keys]);
  const modelChoices = useMemo(() => {
    const set = new Set(sc.prices.map((p) => p.model));
    for (const k of sc.keys) for (const m of k.models) set.add(m);
    for (const g of sc.groups) for (const m of g.models) set.add(m);
    return [...set].sort();
  }, [sc.prices, sc.keys, sc.groups]);
  const formCtx: FormContext = useMemo(
    () => ({
      now,
      money,
      groups: sc.groups.map((g) => g.name),
      pricedModels: sc.prices.map((p) => p.model),
      // Operators choose the account a new key spends (an account token's keys are its own).
      accounts: sc.who && !sc.who.accountId && sc.accounts.length > 1 ? sc.accounts.map((a) => a.id) : [],
    }),
    [now, money, sc.groups, sc.prices, sc.accounts, sc.who],
  );

  // Marks of keys that disappeared (reload, delete elsewhere) are dropped.
  useEffect(() => {
    dispatch({ type: "marks.keep", exists: (id) => keyById.has(id) });
  }, [keyById]);
  useEffect(() => {
    if (sc.loads > 1) dispatch({ type: "status", status: { text: "Reloaded from the sidecar", tone: "ok" } });
  }, [sc.loads]);

  // ---- layout (one line short of the terminal: Ink redraws a full-height frame by clearing the screen)
  const width = size.columns;
  const bannerShown = sc.phase !== "ready" || sc.progress !== null;
  const bodyHeight = Math.max(3, size.rows - 1 - 4 - (bannerShown ? 1 : 0));
  const page = Math.max(1, bodyHeight - 2);

  const state: CommandState = {
    connected: sc.phase === "ready",
    loading: sc.phase === "connecting" && sc.progress !== null,
    readOnly: sc.who?.readOnly ?? false,
    accountScoped: (sc.who?.accountId ?? "") !== "",
    visibleCount: view === "keys" ? visible.length : sc.groups.length,
    targetCount: marks.size > 0 ? marks.size : selected ? 1 : 0,
    markCount: marks.size,
    alertCount: snap.feed.length,
  };

  // ---- the app's own commands, under every screen's
  useCommandLayer({
    scopes: ["global"],
    state,
    priority: PRIORITY.app,
    isActive: overlay.kind === "none",
    onDisabled,
    actions: {
      "view.next": () => dispatch({ type: "view", view: "next" }),
      "view.keys": () => dispatch({ type: "view", view: "keys" }),
      "view.groups": () => dispatch({ type: "view", view: "groups" }),
      "view.usage": () => dispatch({ type: "view", view: "usage" }),
      "view.webhooks": () => dispatch({ type: "view", view: "webhooks" }),
      "app.refresh": () => {
        actions.report("Reloading…");
        sc.reload();
      },
      "app.help": () => dispatch({ type: "help.open" }),
      "app.quit": () => exit(),
    },
  });

  // ---- body: the view's screen, a dialog above the key table, or a full-screen overlay
  const common = { state, dispatch, onDisabled, width, height: bodyHeight };
  const where = placement(overlay);
  const dialog = (
    <Dialogs
      {...common}
      overlay={overlay}
      filters={ui.filters}
      groups={sc.groups}
      accounts={sc.accounts}
      modelChoices={modelChoices}
      shown={visible.length}
      total={sc.keys.length}
      keyById={keyById}
      remaining={remaining}
      formCtx={formCtx}
      money={money}
      now={now}
      actions={actions}
    />
  );
  const active = overlay.kind === "none";
  let body: ReactNode;
  if (overlay.kind === "help") body = <HelpOverlay {...common} scroll={ui.helpScroll} page={page} />;
  else if (where === "full") body = dialog;
  else if (view === "keys" || where !== null)
    body = (
      <KeysScreen
        {...common}
        active={active}
        list={list}
        cursor={cursor}
        selected={selected}
        marks={marks}
        hiddenMarks={hiddenMarks}
        searching={ui.searching}
        query={ui.query}
        loaded={sc.phase === "ready"}
        remaining={remaining}
        money={money}
        now={now}
        page={page}
        actions={actions}
        scroll={keysTop}
        above={where === null ? undefined : { node: dialog, height: where }}
      />
    );
  else if (view === "groups")
    body = (
      <GroupsScreen
        {...common}
        active={active}
        api={api}
        groups={sc.groups}
        stats={groupStats}
        cursor={ui.groupCursor}
        connected={sc.phase === "ready"}
        loads={sc.loads}
        live={liveGroups}
        streaming={live.phase === "live"}
        money={money}
        page={page}
        scroll={groupsTop}
      />
    );
  else if (view === "usage")
    body = <UsageScreen {...common} active={active} snap={snap} metric={ui.metric} money={money} phase={live.phase} error={live.error} clearFeed={live.clearFeed} />;
  else
    body = (
      <WebhooksView
        api={api}
        width={width}
        height={bodyHeight}
        state={state}
        onDisabled={onDisabled}
        report={actions.report}
        copy={(text) => void actions.copySecret(text)}
        onBar={setWebhookBar}
      />
    );

  const screenScopes: readonly Scope[] = view === "keys" ? KEYS_SCOPES : view === "groups" ? GROUPS_SCOPES : view === "usage" ? USAGE_SCOPES : [];
  const barScopes: Scope[] = ui.searching ? ["search"] : [...screenScopes, "global"];
  const tabUsage = liveTab(live, snap, ui.metric);
  return (
    <Box flexDirection="column" width={width} height={size.rows - 1}>
      <Header address={address} who={sc.who} account={headerAccount} money={money} width={width} live={headerLive} />
      <Banner phase={sc.phase} error={sc.error} attempt={sc.attempt} address={address} progress={sc.progress} width={width} />
      <Tabs
        view={view}
        shown={visible.length}
        total={sc.keys.length}
        query={ui.searching ? "" : ui.query.value}
        filters={describeFilters(ui.filters)}
        marks={marks.size}
        hiddenMarks={hiddenMarks}
        groups={sc.groups.length}
        loaded={sc.loads > 0 || sc.keys.length > 0}
        width={width}
        usage={tabUsage}
      />
      <Box flexDirection="column" height={bodyHeight} overflowY="hidden">
        {/* flexShrink 0: content taller than the body is clipped, never squeezed
            (Yoga would shrink rows to zero height and Ink would draw them on top of each other).
            Clipped vertically only: every row is already cut to the width (wrap="truncate"), and a
            horizontal clip made Ink measure and re-slice every line of every frame (sliceAnsi,
            widestLine: a quarter of the TUI's CPU in the profile of bench/tui.ts). */}
        <Box flexDirection="column" flexShrink={0}>
          {body}
        </Box>
      </Box>
      <StatusLine text={ui.status?.text ?? null} tone={ui.status?.tone ?? "info"} busy={ui.busy} width={width}>
        {ui.searching ? <SearchLine query={ui.query} /> : null}
      </StatusLine>
      {!active ? (
        <Text> </Text>
      ) : view === "webhooks" ? (
        // The Webhooks view says which of its commands apply (its rows; none while its dialog shows its own footer).
        webhookBar ? <HelpBar scopes={webhookBar.scopes} state={webhookBar.state} width={width} /> : <Text> </Text>
      ) : (
        <HelpBar scopes={barScopes} state={state} width={width} />
      )}
    </Box>
  );
}
