// aisa-authz usage: usage history (Admin/QueryUsage) as a table or --json.
import type { Command } from "commander";
import { Granularity, UsageDimension, type QueryUsageResponse, type UsageCounters } from "../../gen/aisa/v1/admin.js";
import { withClient, type Ctx, type Display, type Io } from "../context.js";
import { formatInteger, formatMoney, formatTime, renderTable } from "../../display/format.js";
import { int64, time, type Json } from "../json.js";
import { parseSince, UsageError } from "../parse.js";

const BY: Record<string, UsageDimension> = {
  key: UsageDimension.USAGE_DIMENSION_KEY,
  account: UsageDimension.USAGE_DIMENSION_ACCOUNT,
  group: UsageDimension.USAGE_DIMENSION_GROUP,
  model: UsageDimension.USAGE_DIMENSION_MODEL,
};

const GRANULARITY: Record<string, Granularity> = {
  minute: Granularity.GRANULARITY_MINUTE,
  hour: Granularity.GRANULARITY_HOUR,
  day: Granularity.GRANULARITY_DAY,
};

interface UsageFlags {
  key?: string;
  account?: string;
  group?: string;
  model?: string;
  by?: string;
  granularity?: string;
  since?: string;
  until?: string;
}

function choice<T>(table: Record<string, T>, value: string, flag: string): T {
  const v = table[value.trim().toLowerCase()];
  if (v === undefined) throw new UsageError(`${flag}: ${JSON.stringify(value)} is not one of ${Object.keys(table).join(", ")}`);
  return v;
}

/** --since / --until: a duration back from now (24h, 7d) or an RFC 3339 time. */
function parseWhen(value: string, now: number, flag: string): Date {
  try {
    return parseSince(value, now);
  } catch (err) {
    if (err instanceof UsageError) throw new UsageError(err.message.replace(/^--since/, flag));
    throw err;
  }
}

function countersJson(c: UsageCounters | undefined): { [k: string]: Json } {
  const denies: { [k: string]: Json } = {};
  for (const [r, n] of Object.entries(c?.deniesByReason ?? {}).sort(([a], [b]) => (a < b ? -1 : 1))) denies[r] = int64(n);
  return {
    requests: int64(c?.requests),
    denied: int64(c?.denied),
    denies_by_reason: denies,
    input_tokens: int64(c?.inputTokens),
    output_tokens: int64(c?.outputTokens),
    units: int64(c?.units),
    consumed: int64(c?.consumed),
    cache_read_tokens: int64(c?.cacheReadTokens),
    cache_write_tokens: int64(c?.cacheWriteTokens),
    reasoning_tokens: int64(c?.reasoningTokens),
  };
}

/** " (of which 3,000 cache reads, …)" for the token kinds that are not 0; "" when none is. */
function kindsText(c: UsageCounters | undefined): string {
  const parts = (
    [
      [c?.cacheReadTokens, "cache reads"],
      [c?.cacheWriteTokens, "cache writes"],
      [c?.reasoningTokens, "reasoning"],
    ] as const
  )
    .filter(([n]) => n !== undefined && n !== "0" && n !== "")
    .map(([n, what]) => `${formatInteger(n!)} ${what}`);
  return parts.length ? ` (of which ${parts.join(", ")})` : "";
}

function deniesText(c: UsageCounters | undefined): string {
  const parts = Object.entries(c?.deniesByReason ?? {})
    .sort(([a], [b]) => (a < b ? -1 : 1))
    .map(([r, n]) => `${r} ${formatInteger(n)}`);
  return parts.length ? ` (${parts.join(", ")})` : "";
}

/** The table and the total line. Pure. */
export function usageView(res: QueryUsageResponse, by: string, d: Display, names?: ReadonlyMap<string, string>, width?: number): string {
  const named = names !== undefined;
  const headers = ["BUCKET", by.toUpperCase(), ...(named ? ["NAME"] : []), "REQUESTS", "DENIED", "INPUT TOKENS", "OUTPUT TOKENS", "UNITS", "COST", "CHARGED CALLS"];
  const rows = res.rows.map((r) => {
    const c = r.counters;
    return [
      formatTime(r.bucketStart),
      r.id || "(unknown)",
      ...(named ? [names.get(r.id) ?? "(deleted)"] : []),
      formatInteger(c?.requests ?? "0"),
      formatInteger(c?.denied ?? "0"),
      formatInteger(c?.inputTokens ?? "0"),
      formatInteger(c?.outputTokens ?? "0"),
      formatInteger(c?.units ?? "0"),
      formatMoney(c?.units ?? "0", d.quotaPerUnit, d.currency) || "-",
      formatInteger(c?.consumed ?? "0"),
    ];
  });
  const t = res.total;
  const money = formatMoney(t?.units ?? "0", d.quotaPerUnit, d.currency);
  const total =
    `Total: ${formatInteger(t?.requests ?? "0")} requests, ${formatInteger(t?.denied ?? "0")} denied${deniesText(t)}, ` +
    `${formatInteger(t?.inputTokens ?? "0")} input + ${formatInteger(t?.outputTokens ?? "0")} output tokens${kindsText(t)}, ` +
    `${formatInteger(t?.units ?? "0")} units${money ? ` (≈ ${money})` : ""}, ${formatInteger(t?.consumed ?? "0")} charged calls`;
  return `${renderTable(headers, rows, { width, shrinkable: named ? [2] : [] })}\n${total}\n`;
}

/** Most distinct ids whose names `usage` looks up one by one. */
const NAME_LOOKUPS_MAX = 500;

/**
 * The names of the keys (or accounts) usage rows name, so rows read as the page does. Deleted
 * keys are left out (shown "(deleted)"); undefined when there are too many to look up.
 */
async function namesOf(ctx: Ctx, by: string, ids: readonly string[]): Promise<Map<string, string> | undefined> {
  const distinct = [...new Set(ids.filter((id) => id !== ""))];
  if (by === "account") {
    const res = await ctx.api.listAccounts({});
    return new Map(res.accounts.map((a) => [a.id, a.name]));
  }
  if (by !== "key" || distinct.length > NAME_LOOKUPS_MAX) return undefined;
  const names = new Map<string, string>();
  for (let i = 0; i < distinct.length; i += 50) {
    await Promise.all(
      distinct.slice(i, i + 50).map((id) =>
        ctx.api.getKey({ id }).then(
          (k) => void names.set(id, k.name),
          () => undefined, // deleted since: "(deleted)"
        ),
      ),
    );
  }
  return names;
}

export function usageCommand(program: Command, io: Io): void {
  program
    .command("usage")
    .description("usage history: requests, denies, tokens and units per key, account, group or model")
    .option("--key <id>", "only this key")
    .option("--account <id>", "only this account (an account token always sees its own)")
    .option("--group <name>", "only this group")
    .option("--model <name>", "only this model (rows by model; cannot be combined with --key/--account/--group)")
    .option("--by <dimension>", "rows per key, group, model or account (default: key; model with --model)")
    .option("--granularity <size>", "bucket size: minute (kept 48h), hour (90 days) or day (default hour)")
    .option("--since <when>", "from a duration ago (24h, 7d) or an RFC 3339 time (default 24h)")
    .option("--until <when>", "up to a duration ago or an RFC 3339 time (default now)")
    .action((f: UsageFlags, cmd: Command) =>
      withClient(io, cmd, async (ctx) => {
        const now = ctx.now();
        const byName = (f.by ?? (f.model ? "model" : "key")).trim().toLowerCase();
        const groupBy = choice(BY, byName, "--by");
        const granName = (f.granularity ?? "hour").trim().toLowerCase();
        const granularity = choice(GRANULARITY, granName, "--granularity");
        const since = parseWhen(f.since ?? "24h", now, "--since");
        const until = f.until !== undefined ? parseWhen(f.until, now, "--until") : undefined;
        if (until && since.getTime() >= until.getTime()) throw new UsageError("--until: must be after --since");
        const res = await ctx.api.queryUsage({
          filter: { keyId: f.key ?? "", accountId: f.account ?? "", group: f.group ?? "", model: f.model ?? "" },
          groupBy,
          granularity,
          since,
          until,
        });
        const names = res.rows.length > 0 ? await namesOf(ctx, byName, res.rows.map((r) => r.id)) : undefined;
        if (ctx.json) {
          ctx.printJson({
            group_by: byName,
            granularity: granName,
            since: time(since),
            until: time(until),
            rows: res.rows.map((r) => ({
              bucket_start: time(r.bucketStart),
              id: r.id,
              ...(names ? { name: names.get(r.id) ?? null } : {}),
              ...countersJson(r.counters),
            })),
            total: countersJson(res.total),
          });
          return;
        }
        if (res.rows.length === 0) {
          ctx.print("No usage in this range.");
          return;
        }
        ctx.print(usageView(res, byName, await ctx.display(), names, ctx.width()));
      }),
    );
}
