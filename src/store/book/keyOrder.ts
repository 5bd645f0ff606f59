// ListKeys in creation order from the hot index alone, without reading a record. The first page
// of a listing used to read and JSON-decode every key record to sort them (2.0–3.4 s at 100k keys,
// the TUI's first paint); creation time, status, expiry and group are all in the index.
import type { KeyIndexView } from "../types.js";
import type { HotIndex } from "./hotIndex.js";

/**
 * The ids of the keys (of `accountId`, or all) that `keep` accepts, newest first or oldest first,
 * ties in id order — exactly the order AdminService's created_desc / created_asc sorts records in.
 */
export function keyIdsByCreation(index: HotIndex, accountId: string | undefined, newestFirst: boolean, keep: (v: KeyIndexView) => boolean): string[] {
  const view: KeyIndexView = { enabled: false, expiresAt: null, group: "" };
  const slots: number[] = [];
  for (const s of index.slots()) {
    if (accountId !== undefined && index.accountOf(s) !== accountId) continue;
    view.enabled = index.isEnabled(s);
    view.expiresAt = index.expiresAt(s);
    view.group = index.groupOf(s);
    if (keep(view)) slots.push(s);
  }
  const ids = new Map<number, string>();
  for (const s of slots) ids.set(s, index.idOf(s));
  const dir = newestFirst ? -1 : 1;
  slots.sort((a, b) => dir * (index.createdAt(a) - index.createdAt(b)) || (ids.get(a)! < ids.get(b)! ? -1 : 1));
  return slots.map((s) => ids.get(s)!);
}
