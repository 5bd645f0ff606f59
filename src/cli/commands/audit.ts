// aisa-authz audit
import type { Command } from "commander";
import type { AuditEntry } from "../../gen/aisa/v1/types.js";
import { withClient, type Io } from "../context.js";
import { auditJson } from "../json.js";
import { parseInt32, parseSince, UsageError } from "../parse.js";
import { auditTable } from "../views.js";

export function auditCommand(program: Command, io: Io): void {
  program
    .command("audit")
    .description("list admin changes, newest first")
    .option("--target <id>", "only entries about this key, account, group or token")
    .option("--actor <id>", 'only entries made by this token id ("operator", "tok_…")')
    .option("--since <when>", "only entries since a duration ago (24h, 7d) or an RFC 3339 time")
    .option("--limit <n>", "at most this many entries (default 50)")
    .action((f: { target?: string; actor?: string; since?: string; limit?: string }, cmd: Command) =>
      withClient(io, cmd, async (ctx) => {
        const limit = f.limit !== undefined ? parseInt32(f.limit, "--limit") : 50;
        if (limit < 1) throw new UsageError(`--limit: must be at least 1 (got ${f.limit})`);
        const since = f.since !== undefined ? parseSince(f.since, ctx.now()) : undefined;
        const entries: AuditEntry[] = [];
        let pageToken = "";
        do {
          const res = await ctx.api.listAudit({
            target: f.target ?? "",
            actor: f.actor ?? "",
            since,
            pageSize: Math.min(1000, limit - entries.length),
            pageToken,
          });
          entries.push(...res.entries);
          if (res.nextPageToken && res.nextPageToken === pageToken) throw new Error("server repeated a page token");
          pageToken = res.nextPageToken;
        } while (pageToken && entries.length < limit);
        const shown = entries.slice(0, limit);
        if (ctx.json) ctx.printJson({ entries: shown.map(auditJson) });
        else ctx.print(shown.length ? auditTable(shown) : "No audit entries.");
      }),
    );
}
