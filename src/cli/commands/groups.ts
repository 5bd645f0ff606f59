// aisa-authz groups create|list|update|delete
import type { Command } from "commander";
import type { CreateGroupRequest, DeepPartial } from "../../gen/aisa/v1/admin.js";
import { RefillPeriod, type Budget, type Group } from "../../gen/aisa/v1/types.js";
import { withClient, type Io } from "../context.js";
import { groupJson } from "../json.js";
import { parseAnchorFlag, parseList, parsePeriodFlag, parsePositiveInt64, parseText, UsageError } from "../parse.js";
import { groupFields, groupsTable } from "../views.js";

interface GroupFlags {
  description?: string;
  ratio?: string;
  models?: string;
  accounts?: string;
  budget?: string;
  budgetPeriod?: string;
  budgetAnchor?: string;
  budgetTimezone?: string;
}

/**
 * The Budget message of the flags given, over `current` (an update changes only what its flags
 * name); null for --budget none (remove); undefined when no budget flag was given.
 */
function budgetFrom(f: GroupFlags, current: Budget | undefined): Budget | null | undefined {
  if (f.budget === undefined && f.budgetPeriod === undefined && f.budgetAnchor === undefined && f.budgetTimezone === undefined) return undefined;
  if (f.budget !== undefined && f.budget.trim().toLowerCase() === "none") {
    if (f.budgetPeriod !== undefined || f.budgetAnchor !== undefined || f.budgetTimezone !== undefined) throw new UsageError("--budget none removes the budget: give no other --budget-* flag with it");
    return null;
  }
  const units = f.budget !== undefined ? parsePositiveInt64(f.budget, "--budget") : current?.units;
  if (units === undefined) throw new UsageError("--budget-period, --budget-anchor and --budget-timezone need --budget <units> (the group has no budget yet)");
  let period = current?.period ?? RefillPeriod.REFILL_PERIOD_MONTHLY;
  let everyDays = current?.everyDays ?? 0;
  let anchor = current?.anchor ?? 0;
  if (f.budgetPeriod !== undefined) {
    ({ period, everyDays } = parsePeriodFlag(f.budgetPeriod, "--budget-period"));
    anchor = 0; // an anchor belongs to its period
  }
  if (f.budgetAnchor !== undefined) anchor = parseAnchorFlag(f.budgetAnchor, period, everyDays, "--budget-anchor");
  const timezone = f.budgetTimezone !== undefined ? f.budgetTimezone.trim() : (current?.timezone ?? "");
  return { units, period, everyDays, anchor, timezone };
}

function addGroupOptions(cmd: Command): Command {
  return cmd
    .option("--description <text>", "free text (at most 512 characters)")
    .option("--ratio <decimal>", 'billing multiplier, e.g. 1, 0.8, 1.5 (default "1")')
    .option("--models <list>", 'models keys of this group may use, comma-separated ("" = all)')
    .option("--accounts <list>", 'accounts whose own tokens may put their keys into this group, comma-separated ("" = none: only operators assign it)')
    .option("--budget <units>", 'spend cap per period for all the group\'s keys together, in quota units ("none" removes it)')
    .option("--budget-period <period>", "daily, weekly, monthly (default) or <N>d for every N days")
    .option("--budget-anchor <day>", "monthly: day of the month 1..31 (short months clamp); weekly: mon..sun; <N>d: the date YYYY-MM-DD cycles count from")
    .option("--budget-timezone <zone>", 'IANA time zone the periods are counted in (default "UTC")');
}

export function groupsCommand(program: Command, io: Io): void {
  const groups = program.command("groups").description("manage key groups (usage, permissions and billing)");

  addGroupOptions(groups.command("create").description("create a group (operator only)").argument("<name>", "group name, [a-z0-9][a-z0-9_.-]{0,62}")).action(
    (name: string, f: GroupFlags, cmd: Command) =>
      withClient(io, cmd, async (ctx) => {
        const g = await ctx.api.createGroup({
          name,
          description: parseText(f.description ?? "", "--description"),
          priceRatio: f.ratio ?? "",
          models: f.models !== undefined ? parseList(f.models) : [],
          accounts: f.accounts !== undefined ? parseList(f.accounts) : [],
          budget: budgetFrom(f, undefined) ?? undefined,
        });
        if (ctx.json) ctx.printJson(groupJson(g));
        else ctx.print(`Created group ${g.name}.\n\n${groupFields(g)}`);
      }),
  );

  groups
    .command("list")
    .description("list groups with their key counts")
    .action((_f: unknown, cmd: Command) =>
      withClient(io, cmd, async (ctx) => {
        const res = await ctx.api.listGroups();
        if (ctx.json) ctx.printJson({ groups: res.groups.map(groupJson) });
        else ctx.print(res.groups.length ? groupsTable(res.groups) : "No groups.");
      }),
    );

  addGroupOptions(groups.command("update").description("change the fields named by the flags given (operator only)").argument("<name>", "group name")).action(
    (name: string, f: GroupFlags, cmd: Command) =>
      withClient(io, cmd, async (ctx) => {
        const group: DeepPartial<CreateGroupRequest> = { name };
        const mask: string[] = [];
        if (f.description !== undefined) {
          group.description = parseText(f.description, "--description");
          mask.push("description");
        }
        if (f.ratio !== undefined) {
          group.priceRatio = f.ratio;
          mask.push("price_ratio");
        }
        if (f.models !== undefined) {
          group.models = parseList(f.models);
          mask.push("models");
        }
        if (f.accounts !== undefined) {
          group.accounts = parseList(f.accounts);
          mask.push("accounts");
        }
        const needsCurrent = f.budget === undefined || f.budgetPeriod === undefined || f.budgetTimezone === undefined;
        let current: Group | undefined;
        if ((f.budget !== undefined || f.budgetPeriod !== undefined || f.budgetAnchor !== undefined || f.budgetTimezone !== undefined) && needsCurrent) {
          current = (await ctx.api.listGroups()).groups.find((g) => g.name === name);
        }
        const budget = budgetFrom(f, current?.budget);
        if (budget !== undefined) {
          if (budget !== null) group.budget = budget;
          mask.push("budget");
        }
        if (mask.length === 0) throw new UsageError("nothing to change: give at least one of --description, --ratio, --models, --accounts, --budget, --budget-period, --budget-anchor, --budget-timezone");
        const g = await ctx.api.updateGroup({ name, group, updateMask: mask });
        if (ctx.json) ctx.printJson(groupJson(g));
        else ctx.print(`Updated group ${g.name}.\n\n${groupFields(g)}`);
      }),
  );

  groups
    .command("delete")
    .description('delete a group that no key uses ("default" cannot be deleted; operator only)')
    .argument("<name>", "group name")
    .action((name: string, _f: unknown, cmd: Command) =>
      withClient(io, cmd, async (ctx) => {
        await ctx.api.deleteGroup({ name });
        if (ctx.json) ctx.printJson({ deleted: name });
        else ctx.print(`Deleted group ${name}.`);
      }),
    );
}
