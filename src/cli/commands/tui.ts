// aisa-authz tui: the terminal UI, a client of the admin API (loaded lazily).
import type { Command } from "commander";
import { resolveConnection } from "../config.js";
import { globalsOf, type Io } from "../context.js";

export function tuiCommand(program: Command, io: Io): void {
  program
    .command("tui")
    .description("open the terminal UI (uses --admin, --token, --data like every client command)")
    .action(async (_f: unknown, cmd: Command) => {
      const { address, token, tls } = resolveConnection(globalsOf(cmd), io.env);
      const { runTui } = await import("../../../tui/main.js");
      await runTui({ address, token, tls });
    });
}
