// The create/edit key form as pure data: values, validation as you type, and
// the KeySpec (+ update mask) sent to the server. The server validates again;
// its INVALID_ARGUMENT message names the field, which `fieldOfServerError`
// maps back to the form.
import type { KeySpec } from "../../src/gen/aisa/v1/admin.js";
import type { Key } from "../../src/gen/aisa/v1/types.js";
import { formatInteger, formatUnitsMoney, parseQuotaInput, type Money, type ParsedQuota } from "../../src/display/format.js";

export type { ParsedQuota };
import { ipEntryProblem, IPS_MAX, modelProblem, nameProblem } from "../../src/domain/limits.js";
import { parseRfc3339 } from "../../src/domain/time.js";

export type ExpiryChoice = "never" | "1mo" | "1d" | "1h" | "exact";

/** The quick options of the product page, plus an exact RFC 3339 time. */
export const EXPIRY_OPTIONS: readonly { readonly value: ExpiryChoice; readonly label: string }[] = [
  { value: "never", label: "Never expires" },
  { value: "1mo", label: "One month" },
  { value: "1d", label: "One day" },
  { value: "1h", label: "One hour" },
  { value: "exact", label: "Exact time (RFC 3339)" },
];

export type FieldId = "name" | "account" | "group" | "expiry" | "expiresAt" | "quota" | "unlimited" | "models" | "ips" | "submit";

export type FieldKind = "text" | "multiline" | "choice" | "button";

export const FIELD_KIND: Readonly<Record<FieldId, FieldKind>> = {
  name: "text",
  account: "choice",
  group: "choice",
  expiry: "choice",
  expiresAt: "text",
  quota: "text",
  unlimited: "choice",
  models: "text",
  ips: "multiline",
  submit: "button",
};

export interface FormValues {
  readonly name: string;
  /** The account whose balance a new key spends ("" = the token's account, or "default"). */
  readonly account: string;
  readonly group: string;
  readonly expiry: ExpiryChoice;
  /** RFC 3339, used when expiry is "exact". */
  readonly expiresAt: string;
  /** Units ("500000", "1_000_000") or an amount ("$5", "5 USD"). */
  readonly quota: string;
  readonly unlimited: boolean;
  /** Comma-separated; blank = all models. */
  readonly models: string;
  /** One address or CIDR per line; blank = any IP. */
  readonly ips: string;
}

export interface FormContext {
  readonly now: number;
  readonly money: Money;
  /** Group names to pick from. */
  readonly groups: readonly string[];
  /** Accounts a new key may spend from (operators); empty = no Account field (an account token's own). */
  readonly accounts?: readonly string[];
  /** Models with a price (offered by the picker; others get a warning). */
  readonly pricedModels: readonly string[];
}

/** The service's own limits (src/domain/limits.ts): the form can never disagree with the server. */
export const MAX_IPS = IPS_MAX;

/** The fields in tab order; the exact-time field exists only for "Exact time". */
export function formFields(v: FormValues, withAccount = false): FieldId[] {
  const out: FieldId[] = withAccount ? ["name", "account", "group", "expiry"] : ["name", "group", "expiry"];
  if (v.expiry === "exact") out.push("expiresAt");
  out.push("quota", "unlimited", "models", "ips", "submit");
  return out;
}

function rfc3339(d: Date): string {
  return d.toISOString().replace(/\.\d{3}Z$/, "Z");
}

/** A new key's defaults, or an existing key's current settings. */
export function initialValues(key?: Key): FormValues {
  if (!key) {
    return { name: "", account: "default", group: "default", expiry: "never", expiresAt: "", quota: "", unlimited: true, models: "", ips: "" };
  }
  const q = key.quota;
  return {
    name: key.name,
    account: key.accountId,
    group: key.group || "default",
    expiry: key.expiresAt ? "exact" : "never",
    expiresAt: key.expiresAt ? rfc3339(key.expiresAt) : "",
    quota: q && !q.unlimited ? q.total : "",
    unlimited: q ? q.unlimited : true,
    models: key.models.join(", "),
    ips: key.ips.join("\n"),
  };
}

// ---------------------------------------------------------------- quota

/** The quota field's text (src/display/format.ts: units or a currency amount, exact). */
export function parseQuota(text: string, money: Money): ParsedQuota {
  return parseQuotaInput(text, money);
}

/** The line next to the quota field, updated as you type: "≈ $1.00" or "= 2,500,000 units". */
export function quotaHint(v: FormValues, money: Money): string {
  if (v.unlimited) return "Unlimited: only the account balance limits this key";
  const p = parseQuota(v.quota, money);
  if (p.error !== null || p.units === null) return `${formatInteger(money.quotaPerUnit)} units = 1 ${money.currency}`;
  return p.fromAmount ? `= ${formatInteger(p.units)} units` : formatUnitsMoney(p.units, money);
}

// ---------------------------------------------------------------- IPs

/** Why one whitelist entry is invalid, or null: the service's rule and words (src/domain/limits.ts). */
export function validateIp(entry: string): string | null {
  return ipEntryProblem(entry);
}

export interface IpLine {
  /** 1-based line number in the field. */
  readonly line: number;
  readonly text: string;
  readonly error: string | null;
}

/** Non-blank lines of the whitelist, each validated. */
export function checkIpLines(text: string): IpLine[] {
  const out: IpLine[] = [];
  text.split("\n").forEach((raw, i) => {
    const t = raw.trim();
    if (t !== "") out.push({ line: i + 1, text: t, error: validateIp(t) });
  });
  return out;
}

export function parseModels(text: string): string[] {
  return text
    .split(/[,\n]/)
    .map((m) => m.trim())
    .filter((m) => m !== "");
}

// ---------------------------------------------------------------- validation

export interface FormCheck {
  /** Blocking problems, per field. */
  readonly errors: Partial<Record<FieldId, string>>;
  /** Non-blocking notes (e.g. a model without a price). */
  readonly warnings: Partial<Record<FieldId, string>>;
}

export function checkForm(v: FormValues, ctx: FormContext): FormCheck {
  const errors: Partial<Record<FieldId, string>> = {};
  const warnings: Partial<Record<FieldId, string>> = {};

  if (v.name.trim() === "") errors.name = "required";
  else {
    // THE name rule (src/domain/limits.ts: length and the text rules), as the server applies it.
    const problem = nameProblem(v.name);
    if (problem) errors.name = problem;
  }

  if (ctx.groups.length > 0 && !ctx.groups.includes(v.group)) errors.group = `unknown group ${JSON.stringify(v.group)}`;

  if (v.expiry === "exact") {
    const t = v.expiresAt.trim();
    if (t === "") errors.expiresAt = "required, e.g. 2030-01-31T00:00:00Z";
    else {
      // THE strict parser (src/domain/time.ts): no Feb 30, no T24:00, years 0001..9999.
      const r = parseRfc3339(t);
      if (!r.ok) errors.expiresAt = r.problem;
      else if (r.ms <= ctx.now) errors.expiresAt = "must be in the future";
    }
  }

  if (!v.unlimited) {
    const q = parseQuota(v.quota, ctx.money);
    if (q.error !== null) errors.quota = q.error;
    else if (q.units === null) errors.quota = "required (or turn on Unlimited)";
  }

  const models = parseModels(v.models);
  const badAt = models.findIndex((m) => modelProblem(m) !== null);
  // Named by position: the value may be a pasted secret, which is never echoed.
  if (badAt >= 0) errors.models = `model ${badAt + 1}: ${modelProblem(models[badAt] as string)}`;
  else {
    const unpriced = models.filter((m) => !ctx.pricedModels.includes(m));
    if (unpriced.length > 0 && ctx.pricedModels.length > 0) warnings.models = `no price: ${unpriced.join(", ")}`;
  }

  const ips = checkIpLines(v.ips);
  const bad = ips.filter((l) => l.error !== null);
  if (bad.length > 0) {
    const first = bad[0] as IpLine;
    errors.ips = `line ${first.line}: ${first.text}: ${first.error}${bad.length > 1 ? ` (+${bad.length - 1} more)` : ""}`;
  } else if (ips.length > MAX_IPS) errors.ips = `at most ${MAX_IPS} entries`;

  return { errors, warnings };
}

export function hasErrors(c: FormCheck): boolean {
  return Object.keys(c.errors).length > 0;
}

// ---------------------------------------------------------------- requests

function expiresValue(v: FormValues): string {
  return v.expiry === "exact" ? v.expiresAt.trim() : v.expiry;
}

/** The KeySpec for CreateKey (call only when checkForm found no errors). */
export function buildSpec(v: FormValues, ctx: FormContext): KeySpec {
  const units = v.unlimited ? "0" : (parseQuota(v.quota, ctx.money).units ?? "0");
  return {
    name: v.name,
    group: v.group,
    expires: expiresValue(v),
    quota: units,
    unlimited: v.unlimited,
    models: parseModels(v.models),
    ips: checkIpLines(v.ips).map((l) => l.text),
    limits: undefined,
    refill: 0,
    metadata: {},
  };
}

function sameList(a: readonly string[], b: readonly string[]): boolean {
  return a.length === b.length && a.every((x, i) => x === b[i]);
}

/** UpdateKey's spec and mask: only the fields that differ from the key. */
export function buildUpdate(original: Key, v: FormValues, ctx: FormContext): { spec: KeySpec; mask: string[] } {
  const spec = buildSpec(v, ctx);
  const mask: string[] = [];
  if (v.name !== original.name) mask.push("name");
  if (v.group !== original.group) mask.push("group");
  const before = original.expiresAt?.getTime();
  const unchangedExpiry =
    (v.expiry === "never" && before === undefined) ||
    (v.expiry === "exact" && before !== undefined && Date.parse(v.expiresAt.trim()) === before);
  if (!unchangedExpiry) mask.push("expires");
  const wasUnlimited = original.quota?.unlimited ?? true;
  if (v.unlimited !== wasUnlimited) mask.push("unlimited");
  if (!v.unlimited && (wasUnlimited || spec.quota !== (original.quota?.total ?? "0"))) mask.push("quota");
  if (!sameList(spec.models, original.models)) mask.push("models");
  if (!sameList(spec.ips, original.ips)) mask.push("ips");
  return { spec, mask };
}

/**
 * The form field a server error names ("spec.ips[1]: …", "name: …"), or null
 * for errors about no particular field.
 */
export function fieldOfServerError(message: string, v: FormValues): FieldId | null {
  const m = /^(?:[A-Z_]+:\s*)?(?:spec\.)?(name|group|expires|quota|unlimited|models|ips)\b/.exec(message);
  if (!m) return null;
  const f = m[1] as string;
  if (f === "expires") return v.expiry === "exact" ? "expiresAt" : "expiry";
  return f as FieldId;
}
