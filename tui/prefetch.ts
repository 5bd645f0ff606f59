// The TUI's first calls, started before the UI has loaded. Importing Ink, React and the screens
// takes ~1 s (more on a busy machine: Ink's layout engine is WebAssembly), and the sidecar's
// first ListKeys page at 100k keys takes as long again (it scans and sorts every key); one after
// the other they were the first paint. `prefetched(api)` starts WhoAmI and ListKeys at once and
// hands them to the App's first load: the first WhoAmI and ListKeys calls through it return the
// calls already under way, and ListKeys' progress callback first gets the pages that arrived
// before it was given. Every later call goes to `api` as usual (a reload reads afresh).
import type { AdminApi, Key } from "./client.js";

type Progress = (loaded: number, total: number, page: readonly Key[]) => void;

export function prefetched(api: AdminApi): AdminApi {
  let who: ReturnType<AdminApi["whoAmI"]> | null = api.whoAmI();
  const pages: [number, number, readonly Key[]][] = [];
  let listener: Progress | undefined;
  let keys: Promise<Key[]> | null = api.listKeys((loaded, total, page) => {
    pages.push([loaded, total, page]);
    listener?.(loaded, total, page);
  });
  // The App's callback (and the keys it gathered) are not kept once the listing is over.
  keys.finally(() => (listener = undefined)).catch(() => undefined);
  // Not awaited until the App asks (it reports a failure then); never an unhandled rejection.
  who.catch(() => undefined);
  keys.catch(() => undefined);

  const whoAmI: AdminApi["whoAmI"] = () => {
    const p = who;
    who = null;
    return p ?? api.whoAmI();
  };
  const listKeys: AdminApi["listKeys"] = (onProgress) => {
    const p = keys;
    if (p === null) return api.listKeys(onProgress);
    keys = null;
    if (onProgress) {
      for (const [loaded, total, page] of pages) onProgress(loaded, total, page);
      listener = onProgress;
    }
    pages.length = 0;
    return p;
  };
  return new Proxy(api, {
    get(target, prop, receiver) {
      if (prop === "whoAmI") return whoAmI;
      if (prop === "listKeys") return listKeys;
      const v = Reflect.get(target, prop, receiver) as unknown;
      return typeof v === "function" ? (v as (...a: unknown[]) => unknown).bind(target) : v;
    },
  });
}
