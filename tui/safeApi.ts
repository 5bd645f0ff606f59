// Everything the TUI shows comes from the sidecar, and stored text may hold terminal escapes
// (written before the input rules existed, or by another tool): an OSC that renames the pane
// or writes the clipboard, a CSI that recolours the screen, bidi controls that reorder a row.
// `terminalSafeApi` wraps the AdminApi the App is given so every string in every answer,
// stream event and error message is passed through THE sanitizer (src/domain/text.ts) before
// any component sees it: one choke point instead of one call per <Text>.
import { terminalSafe } from "../src/domain/text.js";
import { ApiError, type AdminApi, type Key } from "./client.js";
import type { WebhookCreateInput } from "../src/domain/webhookInput.js";

function plainObject(v: object): boolean {
  const proto = Object.getPrototypeOf(v) as unknown;
  return proto === Object.prototype || proto === null;
}

/**
 * `v` with every string (values and object keys, at any depth, in arrays and plain objects)
 * made terminal-safe. Copy on write: what needs no change is returned as is (the same
 * objects), so a 100k-key list of clean names costs a scan and no allocation.
 */
export function displaySafe<T>(v: T): T {
  if (typeof v === "string") return terminalSafe(v) as T;
  if (v === null || typeof v !== "object") return v;
  if (Array.isArray(v)) {
    let out: unknown[] | undefined;
    for (let i = 0; i < v.length; i++) {
      const x = v[i] as unknown;
      const y = displaySafe(x);
      if (y !== x) (out ??= v.slice())[i] = y;
    }
    return (out ?? v) as T;
  }
  if (!plainObject(v)) return v; // Date, Buffer: nothing to show raw
  let out: Record<string, unknown> | undefined;
  const rec = v as Record<string, unknown>;
  for (const k in rec) {
    if (!Object.hasOwn(rec, k)) continue;
    const x = rec[k];
    const k2 = terminalSafe(k);
    const y = displaySafe(x as unknown);
    if (y !== x || k2 !== k) {
      out ??= { ...(v as Record<string, unknown>) };
      if (k2 !== k) delete out[k];
      out[k2] = y;
    }
  }
  return (out ?? v) as T;
}

function safeError(err: unknown): unknown {
  if (err instanceof ApiError) {
    const m = terminalSafe(err.message);
    return m === err.message ? err : new ApiError(err.code, m);
  }
  if (err instanceof Error) {
    const m = terminalSafe(err.message);
    if (m !== err.message) err.message = m;
  }
  return err;
}

function safe<T>(p: Promise<T>): Promise<T> {
  return p.then(displaySafe, (err: unknown) => Promise.reject(safeError(err)));
}

/** `api` whose answers, events and errors hold no raw control, bidi or invisible characters. */
export function terminalSafeApi(api: AdminApi): AdminApi {
  return {
    whoAmI: () => safe(api.whoAmI()),
    // Each page is made safe as it arrives (the first rows are shown while the rest loads), and
    // the list is those pages: at 100k keys a second pass over every key cost ~1 s of CPU.
    listKeys: async (onProgress) => {
      const pages: (readonly Key[])[] = [];
      let paged = 0;
      const all = await api
        .listKeys((loaded, total, page) => {
          const clean = displaySafe(page);
          pages.push(clean);
          paged += clean.length;
          onProgress?.(loaded, total, clean);
        })
        .catch((err: unknown) => Promise.reject(safeError(err)));
      return paged === all.length ? pages.flat() : displaySafe(all);
    },
    createKey: (spec, accountId) => safe(api.createKey(spec, accountId)),
    updateKey: (id, spec, mask) => safe(api.updateKey(id, spec, mask)),
    setKeysEnabled: (ids, enabled) => safe(api.setKeysEnabled(ids, enabled)),
    deleteKeys: (ids) => safe(api.deleteKeys(ids)),
    revealKeys: (ids) => safe(api.revealKeys(ids)),
    listGroups: () => safe(api.listGroups()),
    listAccounts: () => safe(api.listAccounts()),
    listPrices: () => safe(api.listPrices()),
    getAccount: (id) => safe(api.getAccount(id)),
    // Group names are checked by the server's name rule; the units are numbers.
    groupCharges: () => api.groupCharges(),
    watchUsage: (filter, onEvent, onError) =>
      api.watchUsage(
        filter,
        (ev) => onEvent(displaySafe(ev)),
        (err) => onError(safeError(err) as ApiError),
      ),
    close: () => api.close(),
    ...(api.listWebhooks ? { listWebhooks: () => safe(api.listWebhooks!()) } : {}),
    ...(api.listWebhookDeliveries ? { listWebhookDeliveries: (limit: number) => safe(api.listWebhookDeliveries!(limit)) } : {}),
    ...(api.createWebhook ? { createWebhook: (input: WebhookCreateInput) => safe(api.createWebhook!(input)) } : {}),
    ...(api.deleteWebhook ? { deleteWebhook: (id: string) => safe(api.deleteWebhook!(id)) } : {}),
    ...(api.testWebhook ? { testWebhook: (id: string) => safe(api.testWebhook!(id)) } : {}),
  };
}
