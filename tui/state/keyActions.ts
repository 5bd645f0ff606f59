// What the Keys screen's commands do against the sidecar: enable/disable, reveal and copy,
// delete, create and edit. Each call reports through the screen reducer (tui/state/appState.ts),
// so these run and are tested without Ink (test/tui/appState.test.ts) against the fake API.
// A failed call never throws out of here: it becomes a status line (and, for a lost
// connection, the banner, through `fail`).
import { KeyStatus, type Key } from "../../src/gen/aisa/v1/types.js";
import type { AdminApi } from "../client.js";
import type { Clipboard } from "../clipboard.js";
import { plural, type Status, type UiAction } from "./appState.js";
import type { SelectionList } from "./selection.js";
import { buildSpec, buildUpdate, type FormContext, type FormValues } from "./keyForm.js";

export interface KeyActionDeps {
  readonly api: AdminApi;
  readonly clipboard: Clipboard;
  readonly dispatch: (a: UiAction) => void;
  /** Applies a change to the loaded key list (useSidecar's updateKeys). */
  readonly updateKeys: (fn: (keys: readonly Key[]) => readonly Key[]) => void;
  /** A call failed: returns the message to show (and starts reconnecting when the sidecar is gone). */
  readonly fail: (err: unknown) => string;
  /** The key list as shown now (where the cursor goes after a delete). */
  readonly list: () => SelectionList;
}

export interface KeyActions {
  report(text: string, tone?: Status["tone"]): void;
  /** Enables them all when none is enabled, else disables them all. */
  toggle(keys: readonly Key[]): Promise<void>;
  /** Reveals the secrets, then copies them (or shows them when `show`, or when no clipboard works). */
  copy(ids: readonly string[], show: boolean): Promise<void>;
  remove(ids: readonly string[]): Promise<void>;
  /** Copies a just-created secret (the new key dialog). */
  copySecret(secret: string): Promise<void>;
  /** The form's submit: null when done, else the error to show in the form. */
  submit(form: { readonly kind: "create" } | { readonly kind: "edit"; readonly key: Key }, values: FormValues, ctx: FormContext): Promise<string | null>;
}

const describeTargets = (keys: readonly Key[]): string => (keys.length === 1 && keys[0] ? JSON.stringify(keys[0].name) : plural(keys.length, "key"));

export function keyActions(d: KeyActionDeps): KeyActions {
  const report = (text: string, tone: Status["tone"] = "info"): void => d.dispatch({ type: "status", status: { text, tone } });
  /** Runs an API call with its label in the status line; a failure becomes the status line. */
  const run = async (label: string, fn: () => Promise<void>): Promise<void> => {
    d.dispatch({ type: "busy", label });
    try {
      await fn();
    } catch (err) {
      report(d.fail(err), "error");
    } finally {
      d.dispatch({ type: "busy", label: null });
    }
  };

  return {
    report,
    toggle: (keys) => {
      const enable = keys.every((k) => k.status !== KeyStatus.KEY_STATUS_ENABLED);
      return run(enable ? "enabling" : "disabling", async () => {
        const updated = await d.api.setKeysEnabled(
          keys.map((k) => k.id),
          enable,
        );
        const byId = new Map(updated.map((k) => [k.id, k]));
        d.updateKeys((all) => all.map((k) => byId.get(k.id) ?? k));
        report(`${enable ? "Enabled" : "Disabled"} ${describeTargets(keys)}`, "ok");
      });
    },
    copy: (ids, show) =>
      run("revealing", async () => {
        const revealed = await d.api.revealKeys(ids);
        if (show) {
          d.dispatch({ type: "open", overlay: { kind: "reveal", keys: revealed, note: "Select and copy by hand. Each reveal is audited by the server." } });
          return;
        }
        const text = revealed.length === 1 ? (revealed[0]?.secret ?? "") : revealed.map((r) => `${r.name}\t${r.secret}`).join("\n");
        const res = await d.clipboard.copy(text);
        if (res.methods.length === 0) {
          const note = res.note ? `${res.note}. Copy by hand for now.` : "No clipboard here (no terminal for OSC 52, no wl-copy/xclip/pbcopy): copy by hand.";
          d.dispatch({ type: "open", overlay: { kind: "reveal", keys: revealed, note } });
        } else {
          report(`Copied ${plural(revealed.length, "key")} via ${res.methods.join(" + ")}`, "ok");
        }
      }),
    remove: (ids) => {
      d.dispatch({ type: "close" });
      return run("deleting", async () => {
        const deleted = await d.api.deleteKeys(ids);
        // The reducer learns of the delete before the list loses the keys: the cursor takes
        // the next row without a "gone" warning.
        d.dispatch({ type: "deleted", ids: deleted, list: d.list() });
        const gone = new Set(deleted);
        d.updateKeys((all) => all.filter((k) => !gone.has(k.id)));
      });
    },
    copySecret: async (secret) => {
      const res = await d.clipboard.copy(secret);
      if (res.methods.length > 0) report(`Copied via ${res.methods.join(" + ")}`, "ok");
      else report(res.note ? `${res.note}; copy the key from the screen` : "No clipboard here: copy the key from the screen", "error");
    },
    submit: async (form, values, ctx) => {
      try {
        if (form.kind === "create") {
          const res = await d.api.createKey(buildSpec(values, ctx), values.account || undefined);
          const created = res.key;
          if (created) d.updateKeys((all) => [created, ...all]);
          const name = created?.name ?? values.name;
          d.dispatch({ type: "open", overlay: { kind: "secret", name, secret: res.secret } });
          report(`Created ${JSON.stringify(name)}`, "ok");
          return null;
        }
        const { spec, mask } = buildUpdate(form.key, values, ctx);
        if (mask.length === 0) {
          d.dispatch({ type: "close" });
          report("No changes");
          return null;
        }
        const updated = await d.api.updateKey(form.key.id, spec, mask);
        d.updateKeys((all) => all.map((k) => (k.id === updated.id ? updated : k)));
        d.dispatch({ type: "close" });
        report(`Saved ${JSON.stringify(updated.name)} (${mask.join(", ")})`, "ok");
        return null;
      } catch (err) {
        return d.fail(err);
      }
    },
  };
}

/** The overlay a delete opens: the targets, and how many marked keys the filter hides. */
export function confirmDelete(keys: readonly Key[], marks: number, hiddenMarks: number): UiAction {
  return {
    type: "open",
    overlay: { kind: "confirm", ids: keys.map((k) => k.id), hidden: marks > 0 ? hiddenMarks : 0, names: keys.slice(0, 5).map((k) => k.name) },
  };
}

