// The aisa-authz command tree (commander) and its error boundary: every
// failure ends here as `error: …` on stderr and an exit code — 2 for usage
// errors, 1 for API and connection errors.
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { Command, CommanderError } from "commander";
import { PACKAGE_ROOT } from "../config/paths.js";
import { AdminError } from "../client/admin.js";
import { ConnectionConfigError, MissingTokenError } from "./config.js";
import { processIo, type Io } from "./context.js";
import { UsageError } from "./parse.js";
import { terminalSafeLines } from "../domain/text.js";
import { accountsCommand } from "./commands/accounts.js";
import { auditCommand } from "./commands/audit.js";
import { groupsCommand } from "./commands/groups.js";
import { CancelledError, keysCommand } from "./commands/keys.js";
import { pricesCommand } from "./commands/prices.js";
import { migrateCommand } from "./commands/migrate.js";
import { serveCommand } from "./commands/serve.js";
import { tokensCommand } from "./commands/tokens.js";
import { webhooksCommand } from "./commands/webhooks.js";
import { tuiCommand } from "./commands/tui.js";
import { usageCommand } from "./commands/usage.js";
import { whoamiCommand } from "./commands/whoami.js";

export const EXIT_OK = 0;
export const EXIT_FAILURE = 1;
export const EXIT_USAGE = 2;

function packageVersion(): string {
  try {
    const pkg = JSON.parse(readFileSync(join(PACKAGE_ROOT, "package.json"), "utf8")) as { version?: string };
    return pkg.version ?? "0.0.0";
  } catch {
    return "0.0.0";
  }
}

/** Builds the full command tree; actions write through `io`. */
export function buildProgram(io: Io): Command {
  const program = new Command("aisa-authz");
  program
    .description("aisa-authz: API keys, quotas and an admin API for the AISA platform (an Envoy ext_authz sidecar)")
    .version(packageVersion(), "-V, --version")
    .option("--admin <addr>", "admin API address (env AISA_ADMIN_ADDR; default 127.0.0.1:9192)")
    .option("--token <token>", "admin token (env AISA_ADMIN_TOKEN; default: the contents of <data>/admin.token)")
    .option("--data <dir>", "data directory (env AISA_DATA_DIR; default ./data)")
    .option("--admin-ca <file>", "connect with TLS, trusting this PEM CA (env AISA_ADMIN_CA)")
    .option("--admin-tls", "connect with TLS, trusting the system's CAs")
    .option("--json", "print exactly one JSON document on stdout")
    .configureHelp({ showGlobalOptions: true, sortSubcommands: false })
    .configureOutput({
      writeOut: (s) => void io.stdout.write(s),
      writeErr: (s) => void io.stderr.write(terminalSafeLines(s)),
    })
    .showHelpAfterError("(add --help for usage)")
    .exitOverride();
  serveCommand(program, io);
  migrateCommand(program, io);
  tuiCommand(program, io);
  keysCommand(program, io);
  accountsCommand(program, io);
  groupsCommand(program, io);
  tokensCommand(program, io);
  webhooksCommand(program, io);
  pricesCommand(program, io);
  auditCommand(program, io);
  usageCommand(program, io);
  whoamiCommand(program, io);
  return program;
}

/** The message for a failed admin call, with a hint where one helps. */
export function describeAdminError(err: AdminError): string {
  if (err.connectionFailed) {
    return (
      `error: ${err.codeName}: cannot connect to the admin API at ${err.address}: ${err.details}\n` +
      `Is the sidecar running? Start it with \`aisa-authz serve\`, or point --admin / AISA_ADMIN_ADDR at it.` +
      (/failed to connect|certificate|ssl|tls/i.test(err.details) ? ` If it serves TLS (--tls-cert), pass --admin-ca <file> or --admin-tls.` : "")
    );
  }
  if (err.timedOut) {
    return (
      `error: ${err.codeName}: no answer from the admin API at ${err.address} in time (${err.details})\n` +
      `Is the sidecar running there? Start it with \`aisa-authz serve\`, or point --admin / AISA_ADMIN_ADDR at it.`
    );
  }
  if (err.codeName === "UNAUTHENTICATED") {
    return `error: ${err.codeName}: ${err.details}\nCheck the token: --token, AISA_ADMIN_TOKEN, or <data>/admin.token of the sidecar at ${err.address}.`;
  }
  return `error: ${err.codeName}: ${err.details}`;
}

/** Prints the error and returns the exit code. */
export function reportError(err: unknown, io0: Io): number {
  // Messages echo input (the server's, and argv): nothing reaches the terminal raw.
  const io = { stderr: { write: (s: string) => io0.stderr.write(terminalSafeLines(s)) } };
  if (err instanceof CommanderError) {
    // commander has already printed its message (or the help / version).
    return err.exitCode === 0 ? EXIT_OK : EXIT_USAGE;
  }
  if (err instanceof UsageError || err instanceof MissingTokenError || err instanceof ConnectionConfigError) {
    io.stderr.write(`error: ${err.message}\n`);
    return EXIT_USAGE;
  }
  if (err instanceof AdminError) {
    io.stderr.write(`${describeAdminError(err)}\n`);
    return EXIT_FAILURE;
  }
  if (err instanceof CancelledError) {
    io.stderr.write(`${err.message}\n`);
    return EXIT_FAILURE;
  }
  io.stderr.write(`error: ${err instanceof Error ? err.message : String(err)}\n`);
  return EXIT_FAILURE;
}

/** Parses argv (as process.argv: node, script, args…), runs the command, returns the exit code. */
export async function runCli(argv: readonly string[], io: Io = processIo()): Promise<number> {
  const program = buildProgram(io);
  try {
    await program.parseAsync([...argv]);
    return EXIT_OK;
  } catch (err) {
    return reportError(err, io);
  }
}
