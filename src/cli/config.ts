// Where the admin API is and which token to present, from flags, environment
// and the data directory. No console, no argument parsing: the TUI may reuse it.
import { readFileSync } from "node:fs";
import { resolve } from "node:path";
import { DEFAULT_ADMIN_ADDRESS } from "../client/admin.js";

export interface ConnectionFlags {
  /** --admin */
  admin?: string;
  /** --token */
  token?: string;
  /** --data */
  data?: string;
  /** --admin-ca: PEM roots to trust; implies TLS. */
  adminCa?: string;
  /** --admin-tls: TLS with the system roots. */
  adminTls?: boolean;
}

export interface Connection {
  address: string;
  token: string;
  /** Where the token came from, for messages: "--token", "AISA_ADMIN_TOKEN" or the file path. */
  tokenSource: string;
  /** Plaintext (false), TLS with system roots (true), or TLS trusting these roots. */
  tls: boolean | { rootCerts: Buffer };
}

/** A setting that cannot be used (unreadable CA file, …). */
export class ConnectionConfigError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "ConnectionConfigError";
  }
}

/** --admin-ca / AISA_ADMIN_CA (a PEM file; implies TLS), else --admin-tls, else plaintext. */
export function resolveTls(flags: ConnectionFlags, env: NodeJS.ProcessEnv): boolean | { rootCerts: Buffer } {
  const ca = nonEmpty(flags.adminCa) ?? nonEmpty(env.AISA_ADMIN_CA);
  if (ca) {
    try {
      return { rootCerts: readFileSync(ca) };
    } catch (err) {
      throw new ConnectionConfigError(`--admin-ca: cannot read ${resolve(ca)}: ${(err as NodeJS.ErrnoException).code ?? String(err)}`);
    }
  }
  return flags.adminTls === true;
}

/** Raised when no admin token can be found; the message says where we looked. */
export class MissingTokenError extends Error {
  readonly tokenFile: string;
  constructor(tokenFile: string, problem: string) {
    super(
      `no admin token: pass --token <token>, set AISA_ADMIN_TOKEN, or run where the sidecar's data directory is readable ` +
        `(tried ${tokenFile}: ${problem}; choose the directory with --data or AISA_DATA_DIR)`,
    );
    this.name = "MissingTokenError";
    this.tokenFile = tokenFile;
  }
}

/** --data / AISA_DATA_DIR / ./data, as an absolute path. */
export function resolveDataDir(flags: ConnectionFlags, env: NodeJS.ProcessEnv): string {
  return resolve(nonEmpty(flags.data) ?? nonEmpty(env.AISA_DATA_DIR) ?? "data");
}

/** --admin / AISA_ADMIN_ADDR / 127.0.0.1:9192. */
export function resolveAddress(flags: ConnectionFlags, env: NodeJS.ProcessEnv): string {
  return nonEmpty(flags.admin) ?? nonEmpty(env.AISA_ADMIN_ADDR) ?? DEFAULT_ADMIN_ADDRESS;
}

/** --token / AISA_ADMIN_TOKEN / <data>/admin.token (trimmed). Throws MissingTokenError. */
export function resolveConnection(flags: ConnectionFlags, env: NodeJS.ProcessEnv): Connection {
  const address = resolveAddress(flags, env);
  const tls = resolveTls(flags, env);
  const fromFlag = nonEmpty(flags.token);
  if (fromFlag) return { address, token: fromFlag, tokenSource: "--token", tls };
  const fromEnv = nonEmpty(env.AISA_ADMIN_TOKEN);
  if (fromEnv) return { address, token: fromEnv, tokenSource: "AISA_ADMIN_TOKEN", tls };
  const file = resolve(resolveDataDir(flags, env), "admin.token");
  let text: string;
  try {
    text = readFileSync(file, "utf8");
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    throw new MissingTokenError(file, code === "ENOENT" ? "no such file" : code === "EACCES" ? "permission denied" : String(code ?? err));
  }
  const token = text.trim();
  if (!token) throw new MissingTokenError(file, "the file is empty");
  return { address, token, tokenSource: file, tls };
}

function nonEmpty(s: string | undefined): string | undefined {
  const t = s?.trim();
  return t ? t : undefined;
}
