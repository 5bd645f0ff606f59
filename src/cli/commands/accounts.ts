// aisa-authz accounts create|list|get|update|credit|debit
import type { Command } from "commander";
import { withClient, type Ctx, type Io } from "../context.js";
import { accountJson } from "../json.js";
import { parseInt64, parsePositiveInt64, parseText, UsageError } from "../parse.js";
import { accountFields, accountsTable } from "../views.js";
import type { Account } from "../../gen/aisa/v1/types.js";

async function showAccount(ctx: Ctx, a: Account, heading?: string): Promise<void> {
  if (ctx.json) {
    ctx.printJson(accountJson(a));
    return;
  }
  const d = await ctx.display();
  ctx.print((heading ? `${heading}\n\n` : "") + accountFields(a, d));
}

export function accountsCommand(program: Command, io: Io): void {
  const accounts = program.command("accounts").description("manage accounts (the balances keys spend)");

  accounts
    .command("create")
    .description("create an account (operator only)")
    .option("--id <id>", 'account id, [a-z0-9][a-z0-9_-]{0,62} (default: generated "acct_…")')
    .requiredOption("--name <name>", "account name")
    .option("--balance <units>", "opening balance in quota units (default 0)")
    .option("--timezone <zone>", 'IANA time zone its keys\' refill periods are counted in, e.g. "Europe/Berlin" (default "UTC")')
    .action((f: { id?: string; name: string; balance?: string; timezone?: string }, cmd: Command) =>
      withClient(io, cmd, async (ctx) => {
        const initialBalance = f.balance !== undefined ? parseInt64(f.balance, "--balance") : "0";
        const a = await ctx.api.createAccount({ id: f.id ?? "", name: parseText(f.name, "--name"), initialBalance, timezone: (f.timezone ?? "").trim() });
        await showAccount(ctx, a, `Created account ${a.id}.`);
      }),
    );

  accounts
    .command("list")
    .description("list accounts")
    .action((_f: unknown, cmd: Command) =>
      withClient(io, cmd, async (ctx) => {
        const res = await ctx.api.listAccounts();
        if (ctx.json) {
          ctx.printJson({ accounts: res.accounts.map(accountJson) });
          return;
        }
        const d = await ctx.display();
        ctx.print(res.accounts.length ? accountsTable(res.accounts, d) : "No accounts.");
      }),
    );

  accounts
    .command("get")
    .description("show one account")
    .argument("<id>", "account id")
    .action((id: string, _f: unknown, cmd: Command) =>
      withClient(io, cmd, async (ctx) => {
        await showAccount(ctx, await ctx.api.getAccount({ id }));
      }),
    );

  accounts
    .command("update")
    .description("change an account's name or time zone (operator only). A zone change keeps what its keys' current periods spent; they refill first at the next boundary in the new zone")
    .argument("<id>", "account id")
    .option("--name <name>", "new account name")
    .option("--timezone <zone>", 'new IANA time zone, e.g. "Europe/Berlin" ("UTC" resets it)')
    .option("--zone <zone>", "the same as --timezone")
    .action((id: string, f: { name?: string; timezone?: string; zone?: string }, cmd: Command) =>
      withClient(io, cmd, async (ctx) => {
        if (f.timezone !== undefined && f.zone !== undefined && f.timezone.trim() !== f.zone.trim()) throw new UsageError("give --timezone or --zone, not two different zones");
        const zone = f.timezone ?? f.zone;
        const mask: string[] = [];
        if (f.name !== undefined) mask.push("name");
        if (zone !== undefined) mask.push("timezone");
        if (mask.length === 0) throw new UsageError("nothing to change: give --name and/or --timezone");
        const a = await ctx.api.updateAccount({ id, name: f.name !== undefined ? parseText(f.name, "--name") : "", timezone: (zone ?? "").trim(), updateMask: mask });
        await showAccount(ctx, a, `Updated account ${a.id}.`);
      }),
    );

  for (const [name, sign] of [
    ["credit", 1n],
    ["debit", -1n],
  ] as const) {
    accounts
      .command(name)
      .description(sign > 0n ? "add quota units to an account's balance (operator only)" : "remove quota units from an account's balance (operator only)")
      .argument("<id>", "account id")
      .argument("<amount>", "quota units (a positive integer)")
      .requiredOption("--reason <text>", "why (kept in the audit log)")
      .action((id: string, amount: string, f: { reason: string }, cmd: Command) =>
        withClient(io, cmd, async (ctx) => {
          const units = BigInt(parsePositiveInt64(amount, "AMOUNT"));
          const a = await ctx.api.adjustBalance({ accountId: id, delta: (units * sign).toString(), reason: parseText(f.reason, "--reason") });
          await showAccount(ctx, a, `${sign > 0n ? "Credited" : "Debited"} ${units} units ${sign > 0n ? "to" : "from"} account ${a.id}.`);
        }),
      );
  }
}
