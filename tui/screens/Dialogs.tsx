// The dialogs and full-screen overlays of the Keys screen: the filter menu, the delete
// confirmation, the create/edit form, the new key, the revealed secrets and a key's details.
// Each is its own component with its own key layer (tui/components/); this picks the one the
// reducer's overlay names and says where it goes.
import type { ReactNode } from "react";
import type { Account, Group, Key } from "../../src/gen/aisa/v1/types.js";
import type { Money } from "../../src/display/format.js";
import { ConfirmDelete } from "../components/ConfirmDelete.js";
import { FilterMenu } from "../components/FilterMenu.js";
import { KeyDetails } from "../components/KeyDetails.js";
import { KeyForm } from "../components/KeyForm.js";
import { RevealDialog } from "../components/RevealDialog.js";
import { SecretDialog } from "../components/SecretDialog.js";
import type { KeyFilters } from "../state/keyIndex.js";
import type { FormContext } from "../state/keyForm.js";
import type { Overlay } from "../state/appState.js";
import type { KeyActions } from "../state/keyActions.js";
import type { RemainingOverlay } from "../state/liveKeys.js";
import type { ScreenProps } from "./types.js";

/** Where an overlay goes: over the whole body, or this many lines above the key table. */
export function placement(o: Overlay): "full" | number | null {
  switch (o.kind) {
    case "none":
      return null;
    case "filters":
      return 9;
    case "confirm":
      return o.ids.length > 1 ? 11 : 8;
    case "secret":
      return 6;
    case "help":
    case "create":
    case "edit":
    case "reveal":
    case "details":
      return "full";
  }
}

export interface DialogsProps extends Omit<ScreenProps, "active"> {
  readonly overlay: Overlay;
  readonly filters: KeyFilters;
  readonly groups: readonly Group[];
  readonly accounts: readonly Account[];
  readonly modelChoices: readonly string[];
  /** Rows the search and filters leave, of how many keys. */
  readonly shown: number;
  readonly total: number;
  readonly keyById: ReadonlyMap<string, Key>;
  readonly remaining: RemainingOverlay;
  readonly formCtx: FormContext;
  readonly money: Money;
  readonly now: number;
  readonly actions: KeyActions;
}

export function Dialogs(props: DialogsProps): ReactNode {
  const { overlay, state, dispatch, onDisabled, width, height, actions } = props;
  const close = (): void => dispatch({ type: "close" });
  switch (overlay.kind) {
    case "none":
    case "help":
      return null;
    case "filters":
      return (
        <FilterMenu
          filters={props.filters}
          choices={{
            groups: props.groups.map((g) => g.name),
            accounts: props.accounts.map((a) => a.id),
            models: props.modelChoices,
            accountScoped: state.accountScoped,
          }}
          shown={props.shown}
          total={props.total}
          width={width}
          state={state}
          onChange={(f) => dispatch({ type: "filters", filters: f })}
          onClose={close}
          onDisabled={onDisabled}
        />
      );
    case "confirm":
      return (
        <ConfirmDelete
          count={overlay.ids.length}
          hidden={overlay.hidden}
          names={overlay.names}
          width={width}
          state={state}
          onCancel={() => {
            close();
            actions.report("Delete cancelled");
          }}
          onConfirm={() => void actions.remove(overlay.ids)}
          onDisabled={onDisabled}
        />
      );
    case "create":
    case "edit":
      return (
        <KeyForm
          mode={overlay.kind}
          original={overlay.kind === "edit" ? overlay.key : undefined}
          ctx={props.formCtx}
          width={width}
          height={height}
          state={state}
          onSubmit={(values) => actions.submit(overlay, values, props.formCtx)}
          onCancel={close}
          onDisabled={onDisabled}
        />
      );
    case "secret":
      return (
        <SecretDialog
          name={overlay.name}
          secret={overlay.secret}
          width={width}
          state={state}
          onCopy={() => void actions.copySecret(overlay.secret)}
          onClose={close}
          onDisabled={onDisabled}
        />
      );
    case "reveal":
      return <RevealDialog keys={overlay.keys} note={overlay.note} width={width} height={height} state={state} onClose={close} onDisabled={onDisabled} />;
    case "details":
      return (
        <KeyDetails
          k={props.remaining.apply(props.keyById.get(overlay.key.id) ?? overlay.key)}
          money={props.money}
          now={props.now}
          width={width}
          height={height}
          state={state}
          onClose={close}
          onDisabled={onDisabled}
        />
      );
  }
}
