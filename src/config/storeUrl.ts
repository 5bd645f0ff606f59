// `--store` / AISA_STORE: which storage engine a sidecar runs on.
//   (unset), "" or "level"            the embedded LevelDB in --data (the default)
//   redis://[user:pass@]host:port[/db] one Redis (a fleet of sidecars shares it)
//   rediss://…                         the same over TLS
//   redis-cluster://[user:pass@]h1:p1,h2:p2,…  Redis Cluster (seed nodes; the rest are discovered)
// A value that is none of these is an error naming the setting (serve exits 2), never a silent
// fallback to the embedded store: a fleet member that quietly ran alone would spend money twice.

export type StoreSpec =
  | { kind: "level" }
  | {
      kind: "redis";
      /** The URL as given (node-redis reads it); carries the password when one is set. */
      url: string;
      tls: boolean;
      host: string;
      port: number;
      db: number;
      username?: string;
      password?: string;
      /** The URL with the password replaced by "***": what logs and errors show. */
      display: string;
    }
  | {
      kind: "redis-cluster";
      /** The URL as given (the engine reads it). */
      url: string;
      nodes: { host: string; port: number }[];
      username?: string;
      password?: string;
      display: string;
    };

const CONTROL = /[\u0000-\u001f\u007f]/;

function fail(name: string, v: string, why: string): never {
  throw new Error(`${name}: ${JSON.stringify(redact(v))} ${why}; expected redis://[user:pass@]host:port[/db], rediss://…, redis-cluster://host:port,host:port,… or "level" (the embedded store)`);
}

/** The value with any password hidden (for messages). */
function redact(v: string): string {
  return v.replace(/^([a-z-]+:\/\/[^:@/]*:)[^@/]*@/i, "$1***@");
}

function hostPort(name: string, v: string, part: string): { host: string; port: number } {
  const m = /^(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9.-]+):(\d{1,5})$/.exec(part);
  if (!m) fail(name, v, `names no host:port in ${JSON.stringify(part)}`);
  const port = Number(m[2]);
  if (port < 1 || port > 65535) fail(name, v, `has port ${port} (1–65535)`);
  return { host: m[1]!.replace(/^\[|\]$/g, ""), port };
}

function credentials(name: string, v: string, userinfo: string | undefined): { username?: string; password?: string } {
  if (userinfo === undefined) return {};
  const i = userinfo.indexOf(":");
  const dec = (s: string) => {
    try {
      return decodeURIComponent(s);
    } catch {
      return fail(name, v, "has a malformed %-escape in its credentials");
    }
  };
  if (i < 0) return { username: dec(userinfo) };
  const username = dec(userinfo.slice(0, i));
  return { ...(username !== "" ? { username } : {}), password: dec(userinfo.slice(i + 1)) };
}

export function parseStoreUrl(name: string, value: string | undefined): StoreSpec {
  const v = (value ?? "").trim();
  if (v === "" || v === "level" || v === "leveldb") return { kind: "level" };
  if (CONTROL.test(v)) fail(name, v, "contains a control character");
  if (v.length > 4096) fail(name, v, "is longer than 4096 characters");
  const m = /^(redis|rediss|redis-cluster):\/\/(?:([^@/]*)@)?([^/?#]*)(\/[^?#]*)?([?#].*)?$/i.exec(v);
  if (!m) fail(name, v, "is not a store URL");
  const scheme = m[1]!.toLowerCase();
  const creds = credentials(name, v, m[2]);
  const hosts = m[3]!;
  const path = m[4] ?? "";
  if (m[5] !== undefined) fail(name, v, "has a query or fragment (options are flags, not URL parameters)");
  if (hosts === "") fail(name, v, "names no host");
  const display = redact(v);
  if (scheme === "redis-cluster") {
    if (path !== "" && path !== "/") fail(name, v, "has a database path (Redis Cluster has only database 0)");
    const nodes = hosts.split(",").map((p) => hostPort(name, v, p.trim()));
    return { kind: "redis-cluster", url: v, nodes, ...creds, display };
  }
  if (hosts.includes(",")) fail(name, v, `lists several hosts; use redis-cluster:// for Redis Cluster`);
  const { host, port } = hostPort(name, v, hosts);
  let db = 0;
  if (path !== "" && path !== "/") {
    if (!/^\/\d{1,5}$/.test(path)) fail(name, v, `has database ${JSON.stringify(path.slice(1))} (a number)`);
    db = Number(path.slice(1));
  }
  return { kind: "redis", url: v, tls: scheme === "rediss", host, port, db, ...creds, display };
}
