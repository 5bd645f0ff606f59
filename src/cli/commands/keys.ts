// aisa-authz keys create|list|get|update|enable|disable|delete|reveal|rotate
import { createInterface } from "node:readline/promises";
import { Option, type Command } from "commander";
import { KeySort, Tristate, type DeepPartial, type KeySpec, type ListKeysRequest } from "../../gen/aisa/v1/admin.js";
import { KeyStatus, RefillPeriod, type Key, type RateLimits } from "../../gen/aisa/v1/types.js";
import { withClient, type Ctx, type Io } from "../context.js";
import { DEFAULT_MONEY, formatExpiry, parseQuotaInput, renderTable, toMoney, type Money } from "../../display/format.js";
import { EXPIRY_AMOUNT_MAX } from "../../domain/limits.js";
import { keyJson, type Json } from "../json.js";
import { parseAnchorFlag, parseInt32, parseInt64, parseList, parseMeta, parseDurationSeconds, parsePeriodFlag, parseText, UsageError } from "../parse.js";
import { keyFields, keysTable } from "../views.js";

const SORT: Record<string, KeySort> = {
  created: KeySort.KEY_SORT_CREATED_ASC,
  "-created": KeySort.KEY_SORT_CREATED_DESC,
  name: KeySort.KEY_SORT_NAME,
  expires: KeySort.KEY_SORT_EXPIRES,
  remaining: KeySort.KEY_SORT_REMAINING,
  "last-used": KeySort.KEY_SORT_LAST_USED,
};

const STATUS: Record<string, KeyStatus> = {
  enabled: KeyStatus.KEY_STATUS_ENABLED,
  disabled: KeyStatus.KEY_STATUS_DISABLED,
  expired: KeyStatus.KEY_STATUS_EXPIRED,
};

/** Values of the create/update flags; undefined = flag not given. */
interface SpecFlags {
  name?: string;
  account?: string;
  group?: string;
  quota?: string;
  unlimited?: boolean;
  expires?: string;
  models?: string;
  ips?: string;
  rpm?: string;
  tpm?: string;
  concurrency?: string;
  refill?: string;
  refillAnchor?: string;
  meta?: string[];
}

function collect(value: string, previous: string[] | undefined): string[] {
  return [...(previous ?? []), value];
}

function addSpecOptions(cmd: Command, mode: "create" | "update"): Command {
  if (mode === "create") cmd.requiredOption("--name <name>", "a label for the key (1..128 characters)");
  else cmd.option("--name <name>", "new label");
  if (mode === "create") cmd.option("--account <id>", 'account whose balance the key spends (default: "default", or the token\'s account)');
  // Update changes only the flags given: its help states no create-time defaults.
  const create = mode === "create";
  const quotaHelp = 'per-key quota total: units (3000) or an amount in the display currency ("$5")';
  cmd
    .option("--group <group>", create ? 'Token Grouping: the group the key belongs to (default: "default")' : "move the key to this group")
    .option("--quota <amount>", create ? quotaHelp : `${quotaHelp}; turns --unlimited off`)
    .option("--unlimited", create ? "Unlimited Quota: no per-key quota (the default when --quota is not given)" : "remove the per-key quota");
  if (!create) cmd.option("--no-unlimited", "restore a per-key quota (requires --quota: its size)");
  cmd
    .option("--expires <when>", `Expiration Time: never | 1h | 1d | 1mo | up to ${EXPIRY_AMOUNT_MAX} of a unit (m, h, d, w, mo) | an RFC 3339 time${create ? " (default: never)" : ""}`)
    .option("--models <list>", 'Model Restrictions: allowed models, comma-separated ("" = all models; the group\'s list applies too)')
    .option("--ips <list>", 'IP Whitelist: allowed client IPs/CIDRs, comma-separated, IPv4 or IPv6 ("" = any)')
    .option("--rpm <n>", "requests per minute (0 = no limit)")
    .option("--tpm <n>", "tokens per minute (0 = no limit)")
    .option("--concurrency <n>", "requests in flight (0 = no limit)")
    .option("--refill <period>", "quota refill period: none, daily, weekly, monthly or <N>d (every N days), in the account's time zone")
    .option("--refill-anchor <day>", "monthly: day of the month 1..31 (short months clamp); weekly: mon..sun; <N>d: the date YYYY-MM-DD cycles count from")
    .option("--meta <key=value>", `label the key (repeatable${mode === "update" ? '; replaces all labels, --meta "" clears' : ""})`, collect);
  return cmd;
}

function limitsFrom(f: SpecFlags, base: RateLimits | undefined): RateLimits {
  return {
    rpm: f.rpm !== undefined ? parseInt32(f.rpm, "--rpm") : (base?.rpm ?? 0),
    tpm: f.tpm !== undefined ? parseInt32(f.tpm, "--tpm") : (base?.tpm ?? 0),
    concurrency: f.concurrency !== undefined ? parseInt32(f.concurrency, "--concurrency") : (base?.concurrency ?? 0),
  };
}

/**
 * --quota: units, or an amount in the display currency ("$5", "5 USD"), converted exactly by the
 * one rule the TUI form uses too (src/display/format.ts). WhoAmI is asked only for an amount.
 */
export async function parseQuotaFlag(text: string, money: () => Promise<Money>): Promise<string> {
  const t = text.trim();
  if (/^[+-]?\d+$/.test(t)) return parseInt64(t, "--quota");
  const p = parseQuotaInput(t, await money());
  if (p.units === null) throw new UsageError(`--quota: ${JSON.stringify(text)}: ${p.error ?? "not a quota"}`);
  return p.units;
}

async function createSpec(f: SpecFlags, money: () => Promise<Money>): Promise<DeepPartial<KeySpec>> {
  if (f.quota !== undefined && f.unlimited) throw new UsageError("--quota and --unlimited cannot be used together");
  return {
    name: parseText(f.name ?? "", "--name"),
    group: f.group ?? "",
    expires: f.expires ?? "",
    quota: f.quota !== undefined ? await parseQuotaFlag(f.quota, money) : "0",
    unlimited: f.quota === undefined,
    models: f.models !== undefined ? parseList(f.models) : [],
    ips: f.ips !== undefined ? parseList(f.ips) : [],
    limits: limitsFrom(f, undefined),
    ...refillFrom(f, undefined),
    metadata: f.meta ? parseMeta(f.meta) : {},
  };
}

/** The refill fields of the flags (over the key's current period when only --refill-anchor is given). */
function refillFrom(f: SpecFlags, current: Key | undefined): Pick<KeySpec, "refill" | "refillEveryDays" | "refillAnchor"> {
  const p = f.refill !== undefined ? parsePeriodFlag(f.refill, "--refill", true) : { period: current?.refill ?? RefillPeriod.REFILL_PERIOD_NONE, everyDays: current?.refillEveryDays ?? 0 };
  if (f.refillAnchor !== undefined && p.period === RefillPeriod.REFILL_PERIOD_NONE) throw new UsageError("--refill-anchor needs a refill period (--refill)");
  const anchor = f.refillAnchor !== undefined ? parseAnchorFlag(f.refillAnchor, p.period, p.everyDays, "--refill-anchor") : 0;
  return { refill: p.period, refillEveryDays: p.everyDays, refillAnchor: anchor };
}

/** The spec and update_mask for exactly the flags given. `current` is fetched only for partial limits. */
export async function updateSpec(
  f: SpecFlags,
  current: () => Promise<Key>,
  money: () => Promise<Money> = () => Promise.resolve(DEFAULT_MONEY),
): Promise<{ spec: DeepPartial<KeySpec>; mask: string[] }> {
  if (f.quota !== undefined && f.unlimited === true) throw new UsageError("--quota and --unlimited cannot be used together");
  // Switching the per-key quota on needs its size: without it the key would get 0 / 0.
  if (f.unlimited === false && f.quota === undefined) throw new UsageError("--no-unlimited needs --quota: the size of the per-key quota (e.g. --quota 500000 or --quota '$1')");
  const spec: DeepPartial<KeySpec> = {};
  const mask: string[] = [];
  const set = <F extends keyof KeySpec>(field: F, maskName: string, value: DeepPartial<KeySpec>[F]) => {
    spec[field] = value;
    mask.push(maskName);
  };
  if (f.name !== undefined) set("name", "name", parseText(f.name, "--name"));
  if (f.group !== undefined) set("group", "group", f.group);
  if (f.expires !== undefined) set("expires", "expires", f.expires);
  if (f.quota !== undefined) set("quota", "quota", await parseQuotaFlag(f.quota, money));
  // A quota only means something on a limited key (the server ignores it on an
  // unlimited one), so --quota N also switches the per-key quota on.
  if (f.unlimited !== undefined || f.quota !== undefined) set("unlimited", "unlimited", f.unlimited ?? false);
  if (f.models !== undefined) set("models", "models", parseList(f.models));
  if (f.ips !== undefined) set("ips", "ips", parseList(f.ips));
  if (f.rpm !== undefined || f.tpm !== undefined || f.concurrency !== undefined) {
    // "limits" is a single field of the mask: keep the limits that were not named.
    limitsFrom(f, undefined); // reject bad numbers before any call
    const all = f.rpm !== undefined && f.tpm !== undefined && f.concurrency !== undefined;
    set("limits", "limits", limitsFrom(f, all ? undefined : (await current()).limits));
  }
  if (f.refill !== undefined || f.refillAnchor !== undefined) {
    const r = refillFrom(f, f.refill === undefined ? await current() : undefined);
    spec.refillEveryDays = r.refillEveryDays;
    spec.refillAnchor = r.refillAnchor;
    set("refill", "refill", r.refill);
  }
  if (f.meta !== undefined) set("metadata", "metadata", parseMeta(f.meta));
  if (mask.length === 0) {
    throw new UsageError(
      "nothing to change: give at least one of --name, --group, --expires, --quota, --unlimited/--no-unlimited, --models, --ips, --rpm, --tpm, --concurrency, --refill, --refill-anchor, --meta",
    );
  }
  return { spec, mask };
}

/** Warns about models no price names and no group lists: Check refuses them (or bills the default estimate). */
async function warnUnknownModels(ctx: Ctx, models: readonly string[] | undefined): Promise<void> {
  if (!models || models.length === 0) return;
  let known: Set<string>;
  try {
    const [prices, groups] = await Promise.all([ctx.api.listPrices({}), ctx.api.listGroups({})]);
    known = new Set([...prices.prices.map((p) => p.model), ...groups.groups.flatMap((g) => g.models)]);
  } catch {
    return; // best effort: the change itself already succeeded
  }
  const unknown = models.filter((m) => !known.has(m));
  if (unknown.length > 0) {
    ctx.warn(
      `no price or group names ${unknown.map((m) => JSON.stringify(m)).join(", ")}: check the spelling (\`aisa-authz prices list\` shows the priced models); requests for an unpriced model are refused when unpriced models are denied`,
    );
  }
}

async function showKey(ctx: Ctx, key: Key, extra?: { secret: string; heading: string }): Promise<void> {
  if (ctx.json) {
    ctx.printJson(extra ? { ...keyJson(key, ctx.now()), key: extra.secret } : keyJson(key, ctx.now()));
    return;
  }
  const d = await ctx.display();
  let text = "";
  if (extra) text += `${extra.heading}\n\n  ${extra.secret}\n\nCopy it now and store it securely (an operator can show it again with \`aisa-authz keys reveal ${key.id}\`).\n\n`;
  ctx.print(text + keyFields(key, d, ctx.now()));
}

async function confirm(io: Io, question: string): Promise<boolean> {
  const rl = createInterface({ input: io.stdin, output: io.stderr as NodeJS.WritableStream, terminal: true });
  try {
    const answer = await rl.question(question);
    return /^y(es)?$/i.test(answer.trim());
  } finally {
    rl.close();
  }
}

async function moneyOf(ctx: Ctx): Promise<Money> {
  const d = await ctx.display();
  return toMoney(d.quotaPerUnit, d.currency);
}

function uniqueIds(ids: string[]): string[] {
  return [...new Set(ids)];
}

export function keysCommand(program: Command, io: Io): void {
  const keys = program.command("keys").description("manage API keys");

  addSpecOptions(keys.command("create").description("create an API key and print its secret (shown once)"), "create").action(
    (f: SpecFlags, cmd: Command) =>
      withClient(io, cmd, async (ctx) => {
        const res = await ctx.api.createKey({ spec: await createSpec(f, () => moneyOf(ctx)), accountId: f.account ?? "" });
        if (!res.key) throw new Error("server returned no key");
        await warnUnknownModels(ctx, res.key.models);
        await showKey(ctx, res.key, { secret: res.secret, heading: `Created key ${res.key.id} ("${res.key.name}"). Its secret:` });
      }),
  );

  keys
    .command("list")
    .description("list keys (newest first)")
    .option("--search <text>", "substring of the name or id (case-insensitive)")
    .addOption(
      new Option("--status <status>", "enabled = usable now (enabled, not expired); disabled = switched off; expired = past its expiry").choices(Object.keys(STATUS)),
    )
    .option("--group <group>", "only keys of this group")
    .option("--account <id>", "only keys of this account")
    .addOption(new Option("--expired", "only expired keys").conflicts("unexpired"))
    .option("--unexpired", "only keys that have not expired")
    .option("--model <model>", "only keys that may use this model (by their own and their group's lists)")
    .addOption(new Option("--sort <order>", "sort order").choices(Object.keys(SORT)))
    .option("--limit <n>", "at most this many keys (default 100)")
    .option("--all", "every matching key (follows all pages)")
    .action(
      (
        f: {
          search?: string;
          status?: string;
          group?: string;
          account?: string;
          expired?: boolean;
          unexpired?: boolean;
          model?: string;
          sort?: string;
          limit?: string;
          all?: boolean;
        },
        cmd: Command,
      ) =>
        withClient(io, cmd, async (ctx) => {
          if (f.limit !== undefined && f.all) throw new UsageError("--limit and --all cannot be used together");
          const limit = f.all ? Infinity : f.limit !== undefined ? parseInt32(f.limit, "--limit") : 100;
          if (limit < 1) throw new UsageError(`--limit: must be at least 1 (got ${f.limit})`);
          const req: DeepPartial<ListKeysRequest> = {
            query: f.search ?? "",
            status: f.status ? STATUS[f.status] : KeyStatus.KEY_STATUS_UNSPECIFIED,
            group: f.group ?? "",
            accountId: f.account ?? "",
            expired: f.expired ? Tristate.TRISTATE_TRUE : f.unexpired ? Tristate.TRISTATE_FALSE : Tristate.TRISTATE_UNSPECIFIED,
            model: f.model ?? "",
            sort: f.sort ? SORT[f.sort] : KeySort.KEY_SORT_UNSPECIFIED,
          };
          const found: Key[] = [];
          let total = 0;
          let pageToken = "";
          do {
            const res = await ctx.api.listKeys({ ...req, pageSize: Math.min(1000, limit - found.length), pageToken });
            found.push(...res.keys);
            total = res.totalSize;
            if (res.nextPageToken && res.nextPageToken === pageToken) throw new Error("server repeated a page token");
            pageToken = res.nextPageToken;
          } while (pageToken && found.length < limit);
          const shown = found.slice(0, limit);
          if (ctx.json) {
            ctx.printJson({ keys: shown.map((k) => keyJson(k, ctx.now())), total });
            return;
          }
          if (shown.length === 0) {
            ctx.print(total === 0 ? "No keys." : `No keys on this page (${total} match).`);
            return;
          }
          const d = await ctx.display();
          let text = keysTable(shown, d, ctx.now(), ctx.width());
          if (shown.length < total) text += `\nShowing ${shown.length} of ${total} keys (use --all or --limit to see more).\n`;
          ctx.print(text);
        }),
    );

  keys
    .command("get")
    .description("show one key")
    .argument("<id>", "key id")
    .action((id: string, _f: unknown, cmd: Command) =>
      withClient(io, cmd, async (ctx) => {
        await showKey(ctx, await ctx.api.getKey({ id }));
      }),
    );

  addSpecOptions(
    keys.command("update").description("change the settings named by the flags given, and only those").argument("<id>", "key id"),
    "update",
  ).action((id: string, f: SpecFlags, cmd: Command) =>
    withClient(io, cmd, async (ctx) => {
      const { spec, mask } = await updateSpec(f, () => ctx.api.getKey({ id }), () => moneyOf(ctx));
      const key = await ctx.api.updateKey({ id, spec, updateMask: mask });
      if (mask.includes("models")) await warnUnknownModels(ctx, key.models);
      await showKey(ctx, key);
    }),
  );

  for (const [name, enabled] of [
    ["enable", true],
    ["disable", false],
  ] as const) {
    keys
      .command(name)
      .description(enabled ? "enable keys (requests with them are accepted again)" : "disable keys (requests with them are rejected)")
      .argument("<ids...>", "key ids")
      .action((ids: string[], _f: unknown, cmd: Command) =>
        withClient(io, cmd, async (ctx) => {
          const res = await ctx.api.setKeysEnabled({ ids: uniqueIds(ids), enabled });
          if (ctx.json) {
            ctx.printJson({ keys: res.keys.map((k) => keyJson(k, ctx.now())) });
            return;
          }
          const d = await ctx.display();
          ctx.print(`${enabled ? "Enabled" : "Disabled"} ${res.keys.length} key${res.keys.length === 1 ? "" : "s"}.\n\n${keysTable(res.keys, d, ctx.now(), ctx.width())}`);
        }),
      );
  }

  keys
    .command("delete")
    .description("delete keys permanently; their secrets stop working at once")
    .argument("<ids...>", "key ids")
    .option("-y, --yes", "do not ask for confirmation")
    .action((ids: string[], f: { yes?: boolean }, cmd: Command) =>
      withClient(io, cmd, async (ctx) => {
        const unique = uniqueIds(ids);
        if (!f.yes) {
          if (!io.stdin.isTTY) {
            throw new UsageError(`refusing to delete ${unique.length} key${unique.length === 1 ? "" : "s"} without confirmation: stdin is not a terminal; pass --yes`);
          }
          const found = await Promise.all(unique.map((id) => ctx.api.getKey({ id })));
          io.stderr.write(`About to delete ${found.length} key${found.length === 1 ? "" : "s"}; ${found.length === 1 ? "its secret stops" : "their secrets stop"} working at once:\n`);
          io.stderr.write(renderTable(["ID", "NAME", "KEY"], found.map((k) => [k.id, k.name, k.maskedKey])).replace(/^/gm, "  "));
          const ok = await confirm(io, "Delete? This cannot be undone. [y/N] ");
          if (!ok) throw new CancelledError("cancelled; nothing was deleted");
        }
        const res = await ctx.api.deleteKeys({ ids: unique });
        if (ctx.json) ctx.printJson({ deleted_ids: res.deletedIds });
        else ctx.print(`Deleted ${res.deletedIds.length} key${res.deletedIds.length === 1 ? "" : "s"}: ${res.deletedIds.join(", ")}`);
      }),
    );

  keys
    .command("reveal")
    .description("print the full secrets of keys (for copying); audited")
    .argument("<ids...>", "key ids")
    .action((ids: string[], _f: unknown, cmd: Command) =>
      withClient(io, cmd, async (ctx) => {
        const res = await ctx.api.revealKeys({ ids: uniqueIds(ids) });
        if (ctx.json) {
          ctx.printJson({ keys: res.keys.map((k): Json => ({ id: k.id, name: k.name, key: k.secret })) });
        } else if (res.keys.length === 1) {
          ctx.print(res.keys[0]?.secret ?? "");
        } else {
          ctx.print(renderTable(["ID", "NAME", "KEY"], res.keys.map((k) => [k.id, k.name, k.secret])));
        }
      }),
    );

  keys
    .command("rotate")
    .description("issue a new secret for a key (same id, usage and counters)")
    .argument("<id>", "key id")
    .option("--grace <duration>", "how long the old secret keeps working: 0, 30m, 1h, 1d (default 0)")
    .action((id: string, f: { grace?: string }, cmd: Command) =>
      withClient(io, cmd, async (ctx) => {
        const grace = f.grace !== undefined ? parseDurationSeconds(f.grace, "--grace") : 0;
        const res = await ctx.api.rotateKey({ id, graceSeconds: String(grace) });
        if (!res.key) throw new Error("server returned no key");
        const old = res.key.previousSecretExpiresAt
          ? `The previous secret keeps working until ${formatExpiry(res.key.previousSecretExpiresAt, ctx.now()).replace(/^in \S+ \((.*)\)$/, "$1")}.`
          : "The previous secret has stopped working.";
        await showKey(ctx, res.key, { secret: res.secret, heading: `Rotated key ${res.key.id} ("${res.key.name}"). ${old} The new secret:` });
      }),
    );
}

/** The user declined a confirmation: exit 1, nothing changed. */
export class CancelledError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "CancelledError";
  }
}
