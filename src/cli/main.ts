// Entry of the aisa-authz bin (bin/aisa-authz.js imports this through tsx).
import { runCli } from "./program.js";

// `aisa-authz keys list | head`: a reader that goes away is not an error.
process.stdout.on("error", (err: NodeJS.ErrnoException) => {
  if (err.code === "EPIPE") process.exit(process.exitCode ?? 0);
  throw err;
});

// grpc-js sets the TLS servername to the target host even when it is an IP
// address (--admin 127.0.0.1:9192 --admin-ca …), and Node then prints
// DEP0123 on every run. Certificate checks are unaffected; drop that one notice.
const emitWarning = process.emitWarning.bind(process);
process.emitWarning = ((warning: string | Error, ...rest: unknown[]) => {
  const code = typeof rest[0] === "object" && rest[0] !== null ? (rest[0] as { code?: string }).code : rest[1];
  if (code === "DEP0123") return;
  (emitWarning as (...args: unknown[]) => void)(warning, ...rest);
}) as typeof process.emitWarning;

process.exitCode = await runCli(process.argv);
