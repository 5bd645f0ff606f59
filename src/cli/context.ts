// What a command's action gets: the admin client, output helpers and the
// display settings (quota_per_unit, currency) fetched lazily from WhoAmI.
import type { Command } from "commander";
import { connectAdmin, type AdminApi } from "../client/admin.js";
import { resolveConnection, type ConnectionFlags } from "./config.js";
import type { Json } from "./json.js";
import { jsonTerminalSafe, terminalSafeLines } from "../domain/text.js";

/** Where the CLI reads and writes; injectable for in-process use. */
export interface Io {
  stdout: { write(s: string): unknown };
  stderr: { write(s: string): unknown };
  stdin: NodeJS.ReadableStream & { isTTY?: boolean };
  env: NodeJS.ProcessEnv;
  now(): number;
  /** The terminal's width when stdout is a terminal (tables are fitted to it); undefined for a pipe. */
  columns?(): number | undefined;
}

export function processIo(): Io {
  return {
    stdout: process.stdout,
    stderr: process.stderr,
    stdin: process.stdin,
    env: process.env,
    now: () => Date.now(),
    columns: () => (process.stdout.isTTY ? process.stdout.columns : undefined),
  };
}

/** The width tables are fitted to: the terminal's, or COLUMNS when set (a pipe has none). */
export function tableWidth(io: Io): number | undefined {
  const fromEnv = Number(io.env.COLUMNS);
  if (Number.isInteger(fromEnv) && fromEnv >= 20) return fromEnv;
  const c = io.columns?.();
  return c !== undefined && c >= 20 ? c : undefined;
}

/** Options every command accepts (declared on the root command). */
export interface GlobalOptions extends ConnectionFlags {
  json?: boolean;
}

export interface Display {
  quotaPerUnit: string;
  currency: string;
}

export interface Ctx {
  api: AdminApi;
  io: Io;
  json: boolean;
  /** Writes text to stdout. */
  print(text: string): void;
  /** Writes exactly one JSON document to stdout. */
  printJson(doc: Json): void;
  /** quota_per_unit and currency from WhoAmI (one call, memoised). */
  display(): Promise<Display>;
  now(): number;
  /** The width tables are fitted to (undefined = no limit). */
  width(): number | undefined;
  /** Writes a warning to stderr ("warning: …"). */
  warn(text: string): void;
}

/** The merged option values of a command and its ancestors. */
export function globalsOf(cmd: Command): GlobalOptions & Record<string, unknown> {
  return cmd.optsWithGlobals();
}

/** Connects with the command's --admin/--token/--data, runs `fn`, always closes the client. */
export async function withClient(io: Io, cmd: Command, fn: (ctx: Ctx) => Promise<void>): Promise<void> {
  const g = globalsOf(cmd);
  const conn = resolveConnection(g, io.env);
  const api = connectAdmin({ address: conn.address, token: conn.token, tls: conn.tls });
  let display: Promise<Display> | undefined;
  const ctx: Ctx = {
    api,
    io,
    json: g.json === true,
    // Stored text may hold terminal escapes written before the input rules existed (or echoed
    // in a message): nothing reaches the terminal raw (src/domain/text.ts).
    print: (text) => void io.stdout.write(terminalSafeLines(text.endsWith("\n") ? text : `${text}\n`)),
    printJson: (doc) => void io.stdout.write(`${jsonTerminalSafe(JSON.stringify(doc, null, 2))}\n`),
    display: () =>
      (display ??= api.whoAmI().then((w) => ({ quotaPerUnit: w.quotaPerUnit, currency: w.currency }))),
    now: () => io.now(),
    width: () => tableWidth(io),
    warn: (text) => void io.stderr.write(terminalSafeLines(`warning: ${text}\n`)),
  };
  try {
    await fn(ctx);
  } finally {
    api.close();
  }
}
