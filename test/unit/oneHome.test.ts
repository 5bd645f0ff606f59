// One home for each screen rule (issue 17): the CLI and the TUI share one admin client, one
// display module and one set of validation rules, and CONTRIBUTING.md describes this tree as it
// is. These read the source tree: a second copy of a rule shows up here as a failing case.
import { expect } from "chai";
import { existsSync, readdirSync, readFileSync } from "node:fs";
import { join, relative } from "node:path";
import { fileURLToPath } from "node:url";

const ROOT = fileURLToPath(new URL("../..", import.meta.url));

function sources(dir: string): string[] {
  const out: string[] = [];
  for (const e of readdirSync(join(ROOT, dir), { withFileTypes: true })) {
    const p = join(dir, e.name);
    if (e.isDirectory()) {
      if (p !== join("src", "gen")) out.push(...sources(p));
    } else if (/\.tsx?$/.test(e.name)) out.push(p);
  }
  return out;
}

const files = [...sources("src"), ...sources("tui")].map((p) => ({ path: p.split("\\").join("/"), text: readFileSync(join(ROOT, p), "utf8") }));
const where = (re: RegExp): string[] => files.filter((f) => re.test(f.text)).map((f) => f.path).sort();

describe("one home for each screen rule", () => {
  const cases: { name: string; re: RegExp; home: string[] }[] = [
    { name: "one admin client opens the channel (CLI and TUI)", re: /new AdminClient\(/, home: ["src/client/admin.ts"] },
    { name: "the TUI's client is built on it", re: /from "\.\.\/src\/client\/admin\.js"/, home: ["tui/client.ts"] },
    {
      name: "money, quota, table and width rules are defined once",
      re: /export function (formatUnitsMoney|formatMoney|toMoney|formatInteger|formatQuotaCell|textWidth|renderTable|fit|parseQuotaInput)\b/,
      home: ["src/display/format.ts"],
    },
    { name: "the validation limits are declared once", re: /\b(NAME_MAX|MODEL_NAME_MAX|MODELS_MAX|IPS_MAX|METADATA_\w+_MAX)\s*=\s*\d/, home: ["src/domain/limits.ts", "src/domain/text.ts"] },
    { name: "one IP parser for operator input (the form's words come from it too)", re: /from "ipaddr\.js"/, home: ["src/domain/ip.ts"] },
  ];
  for (const c of cases) it(c.name, () => expect(where(c.re)).to.deep.equal(c.home));

  it("no second formatting or client module", () => {
    for (const p of ["tui/format.ts", "src/cli/format.ts", "src/cli/client.ts"]) expect(existsSync(join(ROOT, p)), p).to.equal(false);
  });
});

describe("CONTRIBUTING.md describes this tree", () => {
  const text = readFileSync(join(ROOT, "CONTRIBUTING.md"), "utf8");
  it("names no machine-specific path", () => {
    expect(text).to.not.match(/(^|[\s`(])(\/home\/|\/Users\/|\/work\/|\/tmp\/|[A-Z]:\\)/m);
  });
  it("every file or directory it names exists", () => {
    const named = [...text.matchAll(/`((?:src|tui|test|proto|bin|scripts|bench)\/[^`\s]*)`/g)].map((m) => (m[1] as string).replace(/\{.*$/, ""));
    expect(named.length).to.be.above(10);
    expect(named.filter((p) => !existsSync(join(ROOT, p))).map((p) => relative(ROOT, join(ROOT, p)))).to.deep.equal([]);
  });
});
