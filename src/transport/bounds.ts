// Bounds on the length of every string in a request, checked right after it decodes and before
// any handler does work with it (a 100 KB key id must not be looked up, logged or echoed).
// The first string over its bound is named by its protobuf field path (`target.key_id`,
// `spec.models[3]`, `spec.metadata["k"]`), so the caller gets INVALID_ARGUMENT naming the field.

/** Identifier-like fields: at most this many characters. */
export const ID_MAX_CHARS = 256;
/** Any other string (descriptions, reasons, search text…), and every map key. */
export const TEXT_MAX_CHARS = 1024;

/** Field names (proto spelling) bounded by ID_MAX_CHARS; the elements of a repeated field count as the field. */
const ID_FIELDS = [
  "id",
  "ids",
  "key_id",
  "account_id",
  "request_id",
  "reservation_id",
  "api_key",
  "client_ip",
  "model",
  "models",
  "name",
  "group",
  "target",
  "actor",
  "token_id",
  "page_token",
  "query",
  "ips",
  "update_mask",
];
/**
 * The same as ts-proto names the properties (camelCase), which is what the walk compares, so it
 * converts no name on the way; with the proto spellings too, as a oneof's `$case` spelled that
 * way was always bounded as an id.
 */
const ID_PROPERTIES = new Set([...ID_FIELDS, ...ID_FIELDS.map((f) => f.replace(/_([a-z])/g, (_, c: string) => c.toUpperCase()))]);

function snake(name: string): string {
  return name.replace(/[A-Z]/g, (c) => "_" + c.toLowerCase());
}

const PROPERTY = /^[a-z][A-Za-z0-9]*$/;

/**
 * An oversize string found by walk: the message and the path's steps, innermost first — a
 * property's camelCase name, or an index or map key already in brackets. Built only when a
 * string is over its bound: a request that fits allocates no path (ConsumeBatch walks 32–1,000
 * items per call).
 */
interface Oversize {
  steps: string[];
  what: string;
  /** A map key over its bound: an empty path reads "request". */
  mapKey: boolean;
}

/**
 * The first string of `message` (a decoded ts-proto message) longer than its bound, as
 * "field.path: must be at most N characters (got M)"; null when every string fits. Pure.
 */
export function oversizeField(message: unknown): string | null {
  const bad = walk(message, "", 0);
  if (!bad) return null;
  let path = "";
  for (let i = bad.steps.length - 1; i >= 0; i--) {
    const s = bad.steps[i]!;
    path = s.startsWith("[") ? path + s : path ? `${path}.${snake(s)}` : snake(s);
  }
  return `${path || (bad.mapKey ? "request" : "")}: ${bad.what}`;
}

/** `field`: the camelCase property the value is (or is an element of); "" at the top. */
function walk(v: unknown, field: string, depth: number): Oversize | null {
  if (typeof v === "string") {
    const max = ID_PROPERTIES.has(field) ? ID_MAX_CHARS : TEXT_MAX_CHARS;
    return v.length > max ? { steps: [], what: `must be at most ${max} characters (got ${v.length})`, mapKey: false } : null;
  }
  if (v === null || typeof v !== "object" || depth > 32 || v instanceof Date || ArrayBuffer.isView(v)) return null;
  if (Array.isArray(v)) {
    for (let i = 0; i < v.length; i++) {
      const bad = walk(v[i], field, depth + 1);
      if (bad) return bad.steps.push(`[${i}]`), bad;
    }
    return null;
  }
  const o = v as Record<string, unknown>;
  if (typeof o["$case"] === "string" && "value" in o) {
    // A oneof (ts-proto unions): the chosen field's name is $case.
    const name = o["$case"];
    const bad = walk(o["value"], name, depth + 1);
    return bad ? (bad.steps.push(name), bad) : null;
  }
  for (const k of Object.keys(o)) {
    // Message properties have short camelCase names; anything else is a key of a map field.
    if (k.length > TEXT_MAX_CHARS) return { steps: [], what: `map keys must be at most ${TEXT_MAX_CHARS} characters (got ${k.length})`, mapKey: true };
    const property = PROPERTY.test(k);
    const bad = walk(o[k], property ? k : field, depth + 1);
    if (bad) return bad.steps.push(property ? k : `[${JSON.stringify(k)}]`), bad;
  }
  return null;
}
