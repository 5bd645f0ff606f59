// aisa-authz prices set|list|delete (alias: pricing)
import type { Command } from "commander";
import { withClient, type Io } from "../context.js";
import { priceJson } from "../json.js";
import { parseInt64 } from "../parse.js";
import { pricesTable } from "../views.js";

export function pricesCommand(program: Command, io: Io): void {
  const prices = program.command("prices").alias("pricing").description("manage model prices (in quota units)");

  prices
    .command("set")
    .description("set (create or replace) a model's price (operator only)")
    .argument("<model>", "model name as requests name it")
    .requiredOption("--input <units>", "units per 1,000,000 input tokens")
    .requiredOption("--output <units>", "units per 1,000,000 output tokens")
    .option("--per-request <units>", "fixed units per request (default 0)")
    .option("--cache-read <units>", "units per 1,000,000 input tokens read from the prompt cache (default: the --input rate)")
    .option("--cache-write <units>", "units per 1,000,000 input tokens written to the prompt cache (default: the --input rate)")
    .option("--reasoning <units>", "units per 1,000,000 reasoning (thinking) output tokens (default: the --output rate)")
    .action((model: string, f: { input: string; output: string; perRequest?: string; cacheRead?: string; cacheWrite?: string; reasoning?: string }, cmd: Command) =>
      withClient(io, cmd, async (ctx) => {
        const p = await ctx.api.setPrice({
          price: {
            model,
            inputPerMillion: parseInt64(f.input, "--input"),
            outputPerMillion: parseInt64(f.output, "--output"),
            perRequest: f.perRequest !== undefined ? parseInt64(f.perRequest, "--per-request") : "0",
            cacheReadPerMillion: f.cacheRead !== undefined ? parseInt64(f.cacheRead, "--cache-read") : undefined,
            cacheWritePerMillion: f.cacheWrite !== undefined ? parseInt64(f.cacheWrite, "--cache-write") : undefined,
            reasoningPerMillion: f.reasoning !== undefined ? parseInt64(f.reasoning, "--reasoning") : undefined,
          },
        });
        if (ctx.json) {
          ctx.printJson(priceJson(p));
          return;
        }
        const d = await ctx.display();
        ctx.print(`Set the price of ${p.model}.\n\n${pricesTable([p], d)}`);
      }),
    );

  prices
    .command("list")
    .description("list model prices")
    .action((_f: unknown, cmd: Command) =>
      withClient(io, cmd, async (ctx) => {
        const res = await ctx.api.listPrices();
        if (ctx.json) {
          ctx.printJson({ prices: res.prices.map(priceJson) });
          return;
        }
        if (res.prices.length === 0) {
          ctx.print("No prices.");
          return;
        }
        ctx.print(pricesTable(res.prices, await ctx.display()));
      }),
    );

  prices
    .command("delete")
    .description("remove a model's price (operator only)")
    .argument("<model>", "model name")
    .action((model: string, _f: unknown, cmd: Command) =>
      withClient(io, cmd, async (ctx) => {
        await ctx.api.deletePrice({ model });
        if (ctx.json) ctx.printJson({ deleted: model });
        else ctx.print(`Deleted the price of ${model}.`);
      }),
    );
}
