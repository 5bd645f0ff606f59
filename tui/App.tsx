// The TUI: the API Keys page in a terminal. State lives here; screens and
// dialogs are components that get data and callbacks; every key goes through
// the one dispatcher (keys/keypress.tsx) and the one table (keys/commands.ts).
import { useEffect, useMemo, useReducer, useRef, useState, type ReactNode } from "react";
import { Box, Text, useApp, useStdout } from "ink";
import { KeyStatus, type Key } from "../src/gen/aisa/v1/types.js";
import type { Account, AdminApi, UsageEvent } from "./client.js";
import type { Clipboard } from "./clipboard.js";
import { Banner, Header, StatusLine, Tabs } from "./components/Chrome.js";
import { ConfirmDelete } from "./components/ConfirmDelete.js";
import { FilterMenu } from "./components/FilterMenu.js";
import { GroupsTable, groupStats } from "./components/GroupsTable.js";
import { HelpBar } from "./components/HelpBar.js";
import { HelpScreen, helpLines } from "./components/HelpScreen.js";
import { KeyDetails } from "./components/KeyDetails.js";
import { KeyForm } from "./components/KeyForm.js";
import { KeysTable, scrollTop } from "./components/KeysTable.js";
import { RevealDialog } from "./components/RevealDialog.js";
import { SecretDialog } from "./components/SecretDialog.js";
import { METRIC_LABEL, UsageView } from "./components/UsageView.js";
import { WebhooksView } from "./components/WebhooksView.js";
import { formatInteger, formatRate, formatUnitsMoneyRate, toMoney } from "../src/display/format.js";
import type { CommandState, Scope } from "./keys/commands.js";
import { KeypressProvider, PRIORITY, useCommandLayer } from "./keys/keypress.js";
import { buildSpec, buildUpdate, type FormContext, type FormValues } from "./state/keyForm.js";
import { describeFilters, hiddenMarkCount, indexKeys, KeyFilterCache, type KeyFilters } from "./state/keyIndex.js";
import { applyKeyEvents, RemainingOverlay } from "./state/liveKeys.js";
import { moveSelection, resolveSelection, type Selection, type SelectionList } from "./state/selection.js";
import { INITIAL_UI, NONE, uiReducer, type Overlay, type Status, type UiAction } from "./state/appState.js";
import { applyTextKey, isMotion, textAt } from "./state/textEdit.js";
import type { FeedEntry } from "./state/usage.js";
import { useLiveUsage } from "./state/useLiveUsage.js";
import { useSidecar } from "./state/useSidecar.js";
import { terminalSafeApi } from "./safeApi.js";

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

const SEARCH_EDIT = { maxLength: 256 } as const;
const NO_CLIPBOARD: Clipboard = { copy: () => Promise.resolve({ methods: [] }) };


/** Top keys kept in the Usage view's snapshot (the view shows what fits). */
const TOP_KEYS = 50;

function useTerminalSize(fixed?: { columns: number; rows: number }): { columns: number; rows: number } {
  const { stdout } = useStdout();
  const read = (): { columns: number; rows: number } => ({ columns: stdout.columns || 80, rows: stdout.rows || 24 });
  const [size, setSize] = useState(read);
  useEffect(() => {
    if (fixed) return undefined;
    const onResize = (): void => setSize(read());
    stdout.on("resize", onResize);
    return () => {
      stdout.off("resize", onResize);
    };
  }, [stdout, fixed]);
  return fixed ?? size;
}

/** A clock that ticks every `ms` (relative times and the "expired" filter). */
function useClock(now: () => number, ms: number): number {
  const [t, setT] = useState(now);
  useEffect(() => {
    const i = setInterval(() => setT(now()), ms);
    return () => clearInterval(i);
  }, [now, ms]);
  return t;
}

function plural(n: number, what: string): string {
  return `${formatInteger(n)} ${what}${n === 1 ? "" : "s"}`;
}

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

  // Screen state and its rules: one reducer (tui/state/appState.ts), tested without Ink.
  const [ui, dispatch] = useReducer(uiReducer, INITIAL_UI);
  const { view, metric, overlay, query, searching, filters, marks, sel, groupCursor, helpScroll, status, busy } = ui;
  const set = (patch: Extract<UiAction, { type: "set" }>["patch"]): void => dispatch({ type: "set", patch });
  const setOverlay = (o: Overlay): void => set({ overlay: o });
  const setStatus = (st: Status | null): void => set({ status: st });
  const setSel = (u: Selection | ((x: Selection) => Selection)): void => set({ sel: u });
  const setSearching = (on: boolean): void => set({ searching: on });
  const keysTop = useRef(0);
  /** The Webhooks view's help bar (its scopes and state), or null while its dialog has the footer. */
  const [webhookBar, setWebhookBar] = useState<{ readonly scopes: readonly Scope[]; readonly state: CommandState } | null>(null);
  const groupsTop = useRef(0);

  // ---- live usage (WatchUsage): one stream while connected, on every screen
  const keyById = useMemo(() => new Map(sc.keys.map((k) => [k.id, k])), [sc.keys]);
  const remaining = useRef(new RemainingOverlay()).current;
  useEffect(() => remaining.prune((id) => keyById.get(id)), [remaining, keyById]);
  const [liveBalance, setLiveBalance] = useState<{ readonly base: Account; readonly balance: string } | null>(null);
  const onUsage = (ev: UsageEvent, added: readonly FeedEntry[]): void => {
    // Key events replace keys in place (no reload); remaining values are
    // recorded against the keys loaded now (a replaced key brings its own quota).
    // (The selection is a key id: someone else's create/delete cannot slide another key under the cursor.)
    if (ev.keyEvents.length > 0) sc.updateKeys((all) => applyKeyEvents(all, ev.keyEvents));
    if (ev.remaining.length > 0) {
      remaining.record(ev.remaining, (id) => keyById.get(id));
      const shown = sc.account;
      if (shown) {
        const mine = ev.remaining.filter((r) => keyById.get(r.keyId)?.accountId === shown.id).at(-1);
        if (mine) setLiveBalance({ base: shown, balance: mine.accountBalance });
      }
    }
    // Alerts (and a key running out of quota) flash in the status line; the Usage view lists them all.
    const flash = added.filter((e) => e.source === "alert" || e.kind === "quota_exhausted");
    const first = flash[0];
    if (first && view !== "usage") {
      const more = flash.length > 1 ? ` (+${flash.length - 1} more: 3 shows all)` : "";
      setStatus({ text: `⚠ ${first.text}${more}`, tone: first.tone === "error" ? "error" : "warn" });
    }
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
    () => live.model.snapshot(metric, TOP_KEYS, (id) => keyById.get(id)?.name),
    // live.version: the model changed (it is mutable).
    [live.model, live.version, metric, keyById],
  );
  const liveGroups = useMemo(() => new Map(snap.groups.map((g) => [g.id, g])), [snap]);
  const account = liveBalance && liveBalance.base === sc.account ? { ...liveBalance.base, balance: liveBalance.balance } : sc.account;
  // The header's balance follows the account filter: an operator looking at acme's keys sees acme's balance.
  const headerAccount = filters.accountId !== null && filters.accountId !== account?.id ? (sc.accounts.find((a) => a.id === filters.accountId) ?? account) : account;

  // ---- derived data (memoised: moving the cursor never re-filters)
  const index = useMemo(() => indexKeys(sc.keys), [sc.keys]);
  // Typing narrows from the previous result (KeyFilterCache): a keystroke re-tests the matches left.
  const filterCache = useRef(new KeyFilterCache()).current;
  const visible = useMemo(() => filterCache.filter(index, query.value, filters, now), [filterCache, index, query.value, filters, now]);
  const stats = useMemo(() => groupStats(sc.keys), [sc.keys]);
  // "Used (all time)" is the ledger's per-group total, fetched when the Groups view opens
  // and on every reload (a key's later moves do not move its past charges).
  const [charges, setCharges] = useState<ReadonlyMap<string, bigint> | null>(null);
  useEffect(() => {
    if (view !== "groups" || sc.phase !== "ready") return undefined;
    let live = true;
    api.groupCharges().then(
      (m) => live && setCharges(m),
      () => live && setCharges(null),
    );
    return () => {
      live = false;
    };
  }, [view, sc.loads, sc.phase, api]);
  const hiddenMarks = useMemo(() => hiddenMarkCount(marks, index, visible), [marks, index, visible]);
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
    const ids = new Set(sc.keys.map((k) => k.id));
    dispatch({ type: "marks.keep", exists: (id) => ids.has(id) });
  }, [sc.keys]);
  useEffect(() => {
    if (sc.loads > 1) setStatus({ text: "Reloaded from the sidecar", tone: "ok" });
  }, [sc.loads]);

  // ---- layout (one line short of the terminal: Ink redraws a full-height frame by clearing the screen)
  const width = size.columns;
  const bannerShown = sc.phase !== "ready" || sc.progress !== null;
  const bodyHeight = Math.max(3, size.rows - 1 - 4 - (bannerShown ? 1 : 0));

  // The cursor follows the selected key id, in this very render (no frame, and so no key
  // press, ever sees another key selected after an insert, reload or delete elsewhere).
  const selList = useMemo((): SelectionList => {
    let positions: Map<string, number> | null = null;
    return {
      count: visible.length,
      positionOf: (id) => {
        positions ??= new Map(visible.map((i, p) => [(index.keys[i] as Key).id, p]));
        return positions.get(id) ?? -1;
      },
      at: (p) => index.keys[visible[p] as number],
      exists: (id) => keyById.has(id),
    };
  }, [visible, index, keyById]);
  const listRef = useRef(selList);
  listRef.current = selList;
  const resolved = resolveSelection(sel, selList);
  if (resolved.next !== sel) {
    setSel(resolved.next);
    if (resolved.gone !== null) {
      const on = resolved.next.name === null ? "" : `; the cursor is on ${JSON.stringify(resolved.next.name)}`;
      setStatus({ text: `The selected key ${JSON.stringify(resolved.gone)} is gone (deleted)${on}`, tone: "warn" });
    }
  }
  const cur = resolved.index;
  const selected: Key | undefined = visible.length > 0 ? index.keys[visible[cur] as number] : undefined;
  const gcur = Math.min(groupCursor, Math.max(0, sc.groups.length - 1));

  const targetIds = (): string[] => (marks.size > 0 ? [...marks] : selected ? [selected.id] : []);
  const targetKeys = (): Key[] => {
    if (marks.size === 0) return selected ? [selected] : [];
    return sc.keys.filter((k) => marks.has(k.id));
  };

  const state: CommandState = {
    connected: sc.phase === "ready",
    readOnly: sc.who?.readOnly ?? false,
    accountScoped: (sc.who?.accountId ?? "") !== "",
    visibleCount: view === "keys" ? visible.length : sc.groups.length,
    targetCount: marks.size > 0 ? marks.size : selected ? 1 : 0,
    markCount: marks.size,
    alertCount: snap.feed.length,
  };

  const report = (text: string, tone: Status["tone"] = "info"): void => setStatus({ text, tone });

  const onDisabled = (text: string): void => report(text, "error");

  /** Runs an API action; failures become a status line (connection failures also the banner). */
  const act = (label: string, fn: () => Promise<void>): void => {
    set({ busy: label });
    fn()
      .catch((err: unknown) => report(sc.fail(err), "error"))
      .finally(() => set({ busy: null }));
  };

  const changeFilters = (f: KeyFilters): void => dispatch({ type: "filters", filters: f });

  const describeTargets = (keys: readonly Key[]): string =>
    keys.length === 1 && keys[0] ? JSON.stringify(keys[0].name) : plural(keys.length, "key");

  // ---- actions
  const move = (delta: number | "top" | "bottom"): void => {
    // Functional: a key repeat faster than React renders still moves each time.
    if (view === "keys") {
      setSel((s) => moveSelection(s, delta, listRef.current));
      return;
    }
    const count = sc.groups.length;
    set({
      groupCursor: (c) => {
        const from = Math.min(c, Math.max(0, count - 1));
        const to = delta === "top" ? 0 : delta === "bottom" ? count - 1 : from + delta;
        return Math.max(0, Math.min(count - 1, to));
      },
    });
  };
  const page = Math.max(1, bodyHeight - 2);

  const toggle = (): void => {
    const keys = targetKeys();
    const enable = keys.every((k) => k.status !== KeyStatus.KEY_STATUS_ENABLED);
    act(enable ? "enabling" : "disabling", async () => {
      const updated = await api.setKeysEnabled(
        keys.map((k) => k.id),
        enable,
      );
      const byId = new Map(updated.map((k) => [k.id, k]));
      sc.updateKeys((all) => all.map((k) => byId.get(k.id) ?? k));
      report(`${enable ? "Enabled" : "Disabled"} ${describeTargets(keys)}`, "ok");
    });
  };

  const copy = (show: boolean): void => {
    const ids = targetIds();
    act("revealing", async () => {
      const revealed = await api.revealKeys(ids);
      if (show) {
        setOverlay({ kind: "reveal", keys: revealed, note: "Select and copy by hand. Each reveal is audited by the server." });
        return;
      }
      const text = revealed.length === 1 ? (revealed[0]?.secret ?? "") : revealed.map((r) => `${r.name}\t${r.secret}`).join("\n");
      const res = await clipboard.copy(text);
      if (res.methods.length === 0) {
        setOverlay({
          kind: "reveal",
          keys: revealed,
          note: res.note ? `${res.note}. Copy by hand for now.` : "No clipboard here (no terminal for OSC 52, no wl-copy/xclip/pbcopy): copy by hand.",
        });
      } else {
        report(`Copied ${plural(revealed.length, "key")} via ${res.methods.join(" + ")}`, "ok");
      }
    });
  };

  const confirmDelete = (): void => {
    const keys = targetKeys();
    setOverlay({
      kind: "confirm",
      ids: keys.map((k) => k.id),
      hidden: marks.size > 0 ? hiddenMarks : 0,
      names: keys.slice(0, 5).map((k) => k.name),
    });
  };

  const doDelete = (ids: readonly string[]): void => {
    setOverlay(NONE);
    act("deleting", async () => {
      const deleted = new Set(await api.deleteKeys(ids));
      // Deleted here, on purpose: the cursor takes the next row without a "gone" warning.
      setSel((x) => (x.id !== null && deleted.has(x.id) ? { ...x, id: null } : x));
      sc.updateKeys((all) => all.filter((k) => !deleted.has(k.id)));
      dispatch({ type: "marks.keep", exists: (id) => !deleted.has(id) });
      report(`Deleted ${plural(deleted.size, "key")}`, "ok");
    });
  };

  const submitForm = async (values: FormValues): Promise<string | null> => {
    try {
      if (overlay.kind === "create") {
        const res = await api.createKey(buildSpec(values, formCtx), values.account || undefined);
        const created = res.key;
        if (created) sc.updateKeys((all) => [created, ...all]);
        setOverlay({ kind: "secret", name: created?.name ?? values.name, secret: res.secret });
        report(`Created ${JSON.stringify(created?.name ?? values.name)}`, "ok");
        return null;
      }
      if (overlay.kind === "edit") {
        const { spec, mask } = buildUpdate(overlay.key, values, formCtx);
        if (mask.length === 0) {
          setOverlay(NONE);
          report("No changes");
          return null;
        }
        const updated = await api.updateKey(overlay.key.id, spec, mask);
        sc.updateKeys((all) => all.map((k) => (k.id === updated.id ? updated : k)));
        setOverlay(NONE);
        report(`Saved ${JSON.stringify(updated.name)} (${mask.join(", ")})`, "ok");
      }
      return null;
    } catch (err) {
      return sc.fail(err);
    }
  };

  const back = (): void => dispatch({ type: "back" });

  // ---- the screen layer (lowest priority; dialogs above it capture keys)
  const screenScopes: Scope[] =
    view === "keys" ? ["keys", "list", "global"] : view === "groups" ? ["groups", "list", "global"] : view === "usage" ? ["usage", "global"] : ["global"];
  useCommandLayer({
    scopes: screenScopes,
    state,
    priority: PRIORITY.screen,
    isActive: overlay.kind === "none",
    onDisabled,
    actions: {
      "nav.up": () => move(-1),
      "nav.down": () => move(1),
      "nav.top": () => move("top"),
      "nav.bottom": () => move("bottom"),
      "nav.pageUp": () => move(-page),
      "nav.pageDown": () => move(page),
      "view.next": () => dispatch({ type: "view", view: "next" }),
      "view.keys": () => dispatch({ type: "view", view: "keys" }),
      "view.groups": () => dispatch({ type: "view", view: "groups" }),
      "view.usage": () => dispatch({ type: "view", view: "usage" }),
      "view.webhooks": () => dispatch({ type: "view", view: "webhooks" }),
      "usage.metric": () => dispatch({ type: "metric.next" }),
      "usage.clearAlerts": () => {
        live.clearFeed();
        report("Alerts cleared");
      },
      "app.refresh": () => {
        report("Reloading…");
        sc.reload();
      },
      "app.help": () => {
        set({ helpScroll: 0, overlay: { kind: "help" } });
      },
      "app.quit": () => exit(),
      "keys.search": () => {
        set({ searching: true, query: (q) => textAt(q.value) });
      },
      "keys.filters": () => setOverlay({ kind: "filters" }),
      "keys.create": () => setOverlay({ kind: "create" }),
      "keys.edit": () => selected && setOverlay({ kind: "edit", key: selected }),
      "keys.toggle": toggle,
      "keys.delete": confirmDelete,
      "keys.copy": () => copy(false),
      "keys.show": () => copy(true),
      "keys.details": () => selected && setOverlay({ kind: "details", key: selected }),
      "keys.mark": () => selected && dispatch({ type: "mark.toggle", id: selected.id }),
      "keys.markAll": () => dispatch({ type: "mark.all", ids: visible.map((i) => (index.keys[i] as Key).id) }),
      "keys.clearMarks": () => set({ marks: new Set() }),
      "keys.back": back,
      "groups.open": () => {
        const g = sc.groups[gcur];
        if (!g) return;
        dispatch({ type: "group.open", group: g.name });
      },
    },
  });

  // ---- the search line: takes text while open; arrows fall through to the list
  useCommandLayer({
    scopes: ["search"],
    state,
    priority: PRIORITY.inline,
    isActive: searching && overlay.kind === "none" && view === "keys",
    acceptsPaste: true,
    onDisabled,
    actions: {
      "search.accept": () => setSearching(false),
      "search.cancel": () => {
        setSearching(false);
        dispatch({ type: "query", query: textAt("") });
      },
    },
    fallback: (ev) => {
      if (ev.special === "up" || ev.special === "down" || ev.special === "pageUp" || ev.special === "pageDown") return false;
      // Whether a key edits text does not depend on the text, so the decision
      // can use this render's state while the edit itself is a functional
      // update (keys typed faster than React renders are not lost).
      if (applyTextKey(query, ev, SEARCH_EDIT) === null) return false;
      dispatch({ type: "query", query: (q) => applyTextKey(q, ev, SEARCH_EDIT) ?? q, keepSelection: isMotion(ev) });
      return true;
    },
  });

  // ---- the help screen scrolls with the list keys
  // (Only while the help screen is open: `state` is a new object every render.)
  const helpLength = overlay.kind === "help" ? helpLines(state).length : 0;
  useCommandLayer({
    scopes: ["help", "list"],
    state,
    priority: PRIORITY.dialog,
    isActive: overlay.kind === "help",
    modal: true,
    onDisabled,
    actions: {
      "help.close": () => setOverlay(NONE),
      "nav.up": () => set({ helpScroll: (x) => Math.max(0, x - 1) }),
      "nav.down": () => set({ helpScroll: (x) => Math.min(Math.max(0, helpLength - 1), x + 1) }),
      "nav.top": () => set({ helpScroll: 0 }),
      "nav.bottom": () => set({ helpScroll: helpLength }),
      "nav.pageUp": () => set({ helpScroll: (x) => Math.max(0, x - page) }),
      "nav.pageDown": () => set({ helpScroll: (x) => Math.min(helpLength, x + page) }),
    },
  });

  // ---- body
  const keysTable = (height: number): ReactNode => {
    const rows = Math.max(0, height - 1);
    if (rows <= 0) return null;
    keysTop.current = scrollTop(keysTop.current, cur, rows, visible.length);
    return (
      <Box flexDirection="column">
        <KeysTable
          rows={visible.slice(keysTop.current, keysTop.current + rows).map((i) => remaining.apply(index.keys[i] as Key))}
          top={keysTop.current}
          cursor={cur}
          marks={marks}
          money={money}
          now={now}
          width={width}
        />
        {visible.length === 0 && sc.phase === "ready" ? (
          <Text dimColor>
            {sc.keys.length === 0 ? "  No keys yet. Press n to create one." : "  No keys match the search and filters (esc clears them)."}
          </Text>
        ) : null}
      </Box>
    );
  };

  let body: ReactNode;
  const withTable = (dialog: ReactNode, dialogHeight: number): ReactNode => (
    <>
      {dialog}
      {view === "keys" ? keysTable(bodyHeight - dialogHeight) : null}
    </>
  );
  switch (overlay.kind) {
    case "help":
      body = <HelpScreen state={state} width={width} height={bodyHeight} scroll={helpScroll} />;
      break;
    case "filters":
      body = withTable(
        <FilterMenu
          filters={filters}
          choices={{
            groups: sc.groups.map((g) => g.name),
            accounts: sc.accounts.map((a) => a.id),
            models: modelChoices,
            accountScoped: state.accountScoped,
          }}
          shown={visible.length}
          total={sc.keys.length}
          width={width}
          state={state}
          onChange={changeFilters}
          onClose={() => setOverlay(NONE)}
          onDisabled={onDisabled}
        />,
        9,
      );
      break;
    case "confirm":
      body = withTable(
        <ConfirmDelete
          count={overlay.ids.length}
          hidden={overlay.hidden}
          names={overlay.names}
          width={width}
          state={state}
          onCancel={() => {
            setOverlay(NONE);
            report("Delete cancelled");
          }}
          onConfirm={() => doDelete(overlay.ids)}
          onDisabled={onDisabled}
        />,
        overlay.ids.length > 1 ? 11 : 8,
      );
      break;
    case "create":
    case "edit":
      body = (
        <KeyForm
          mode={overlay.kind}
          original={overlay.kind === "edit" ? overlay.key : undefined}
          ctx={formCtx}
          width={width}
          height={bodyHeight}
          state={state}
          onSubmit={submitForm}
          onCancel={() => setOverlay(NONE)}
          onDisabled={onDisabled}
        />
      );
      break;
    case "secret":
      body = withTable(
        <SecretDialog
          name={overlay.name}
          secret={overlay.secret}
          width={width}
          state={state}
          onCopy={() => {
            void clipboard.copy(overlay.secret).then((res) =>
              report(
                res.methods.length > 0 ? `Copied via ${res.methods.join(" + ")}` : res.note ? `${res.note}; copy the key from the screen` : "No clipboard here: copy the key from the screen",
                res.methods.length > 0 ? "ok" : "error",
              ),
            );
          }}
          onClose={() => setOverlay(NONE)}
          onDisabled={onDisabled}
        />,
        6,
      );
      break;
    case "reveal":
      body = (
        <RevealDialog
          keys={overlay.keys}
          note={overlay.note}
          width={width}
          height={bodyHeight}
          state={state}
          onClose={() => setOverlay(NONE)}
          onDisabled={onDisabled}
        />
      );
      break;
    case "details":
      body = (
        <KeyDetails
          k={remaining.apply(keyById.get(overlay.key.id) ?? overlay.key)}
          money={money}
          now={now}
          width={width}
          height={bodyHeight}
          state={state}
          onClose={() => setOverlay(NONE)}
          onDisabled={onDisabled}
        />
      );
      break;
    case "none":
      if (view === "webhooks") {
        body = (
          <WebhooksView
            api={api}
            width={width}
            height={bodyHeight}
            state={state}
            onDisabled={onDisabled}
            report={report}
            copy={(text) => void clipboard.copy(text).then((res) => report(res.methods.length > 0 ? `Copied via ${res.methods.join(" + ")}` : "No clipboard here: copy the secret from the screen", res.methods.length > 0 ? "ok" : "error"))}
            onBar={setWebhookBar}
          />
        );
      } else if (view === "usage") {
        body = (
          <UsageView snap={snap} metric={metric} money={money} phase={live.phase} error={live.error} width={width} height={bodyHeight} />
        );
      } else if (view === "groups") {
        const rows = Math.max(1, bodyHeight - 2);
        groupsTop.current = scrollTop(groupsTop.current, gcur, rows, sc.groups.length);
        body = (
          <GroupsTable
            groups={sc.groups}
            stats={stats}
            charges={charges}
            cursor={gcur}
            top={groupsTop.current}
            height={bodyHeight}
            width={width}
            money={money}
            live={liveGroups}
            liveNote={live.phase === "live" ? "" : "Live usage: not streaming right now."}
          />
        );
      } else {
        body = keysTable(bodyHeight);
      }
      break;
  }

  const barScopes: Scope[] = searching ? ["search"] : screenScopes;
  const headerLive =
    live.phase === "live"
      ? { text: `${formatRate(snap.last.requests)} req/s ${formatUnitsMoneyRate(snap.last.units, money)}/s`, tone: "ok" as const }
      : live.phase === "off"
        ? undefined
        : { text: live.phase === "unavailable" ? "live usage: unavailable" : "live usage: connecting…", tone: live.phase === "unavailable" ? ("off" as const) : ("warn" as const) };
  const tabUsage =
    live.phase === "live"
      ? {
          text: `● live · last ${snap.covered} s · ${formatInteger(snap.keyCount)} active key${snap.keyCount === 1 ? "" : "s"} · sparklines: ${METRIC_LABEL[metric]}`,
          tone: "ok" as const,
        }
      : live.phase === "unavailable"
        ? { text: `✖ ${live.error ?? "unavailable"}`, tone: "error" as const }
        : { text: live.phase === "retrying" ? `○ reconnecting (attempt ${live.attempt})…` : "○ connecting…", tone: "warn" as const };
  return (
    <Box flexDirection="column" width={width} height={size.rows - 1}>
      <Header address={address} who={sc.who} account={headerAccount} money={money} width={width} live={headerLive} />
      <Banner phase={sc.phase} error={sc.error} attempt={sc.attempt} address={address} progress={sc.progress} width={width} />
      <Tabs
        view={view}
        shown={visible.length}
        total={sc.keys.length}
        query={searching ? "" : query.value}
        filters={describeFilters(filters)}
        marks={marks.size}
        hiddenMarks={hiddenMarks}
        groups={sc.groups.length}
        loaded={sc.loads > 0}
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
      <StatusLine text={status?.text ?? null} tone={status?.tone ?? "info"} busy={busy} width={width}>
        {searching ? (
          <Text color="cyan">
            /{query.value.slice(0, query.cursor)}
            <Text inverse>{query.value.slice(query.cursor, query.cursor + 1) || " "}</Text>
            {query.value.slice(query.cursor + 1)}
            {"   "}
          </Text>
        ) : null}
      </StatusLine>
      {overlay.kind !== "none" ? (
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
