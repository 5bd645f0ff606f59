// aisa-authz tokens create|list|revoke
import type { Command } from "commander";
import { withClient, type Io } from "../context.js";
import { parseText } from "../parse.js";
import { tokenJson } from "../json.js";
import { tokenFields, tokensTable } from "../views.js";

export function tokensCommand(program: Command, io: Io): void {
  const tokens = program.command("tokens").description("manage admin tokens (operator only)");

  tokens
    .command("create")
    .description("mint an admin token and print its secret (shown once)")
    .requiredOption("--name <name>", "a label for the token")
    .option("--account <id>", "limit the token to this account's keys (default: an operator token)")
    .option("--read-only", "the token cannot change anything")
    .action((f: { name: string; account?: string; readOnly?: boolean }, cmd: Command) =>
      withClient(io, cmd, async (ctx) => {
        const res = await ctx.api.createToken({ name: parseText(f.name, "--name"), accountId: f.account ?? "", readOnly: f.readOnly === true });
        if (!res.token) throw new Error("server returned no token");
        if (ctx.json) {
          ctx.printJson({ ...tokenJson(res.token), secret: res.secret });
          return;
        }
        ctx.print(
          `Created token ${res.token.id}. Its secret:\n\n  ${res.secret}\n\nStore it securely: it is not shown again. Use it with --token or AISA_ADMIN_TOKEN.\n\n${tokenFields(res.token)}`,
        );
      }),
    );

  tokens
    .command("list")
    .description("list admin tokens (never their secrets)")
    .action((_f: unknown, cmd: Command) =>
      withClient(io, cmd, async (ctx) => {
        const res = await ctx.api.listTokens();
        if (ctx.json) ctx.printJson({ tokens: res.tokens.map(tokenJson) });
        else ctx.print(res.tokens.length ? tokensTable(res.tokens) : "No tokens.");
      }),
    );

  tokens
    .command("revoke")
    .description('revoke an admin token ("operator" cannot be revoked)')
    .argument("<id>", "token id")
    .action((id: string, _f: unknown, cmd: Command) =>
      withClient(io, cmd, async (ctx) => {
        await ctx.api.revokeToken({ id });
        if (ctx.json) ctx.printJson({ revoked: id });
        else ctx.print(`Revoked token ${id}.`);
      }),
    );
}
