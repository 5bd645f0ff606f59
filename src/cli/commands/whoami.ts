// aisa-authz whoami
import type { Command } from "commander";
import { withClient, type Io } from "../context.js";
import { whoAmIJson } from "../json.js";
import { whoAmIFields } from "../views.js";

export function whoamiCommand(program: Command, io: Io): void {
  program
    .command("whoami")
    .description("show which token you are using and the server's settings")
    .action((_f: unknown, cmd: Command) =>
      withClient(io, cmd, async (ctx) => {
        const w = await ctx.api.whoAmI();
        if (ctx.json) ctx.printJson(whoAmIJson(w, ctx.api.address));
        else ctx.print(whoAmIFields(w, ctx.api.address));
      }),
    );
}
