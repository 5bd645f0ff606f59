// Bounds on the length of every string in a request, checked right after it decodes and before
// any handler does work with it (a 100 KB key id must not be looked up, logged or echoed).
// The first string over its bound is named by its protobuf field path (`target.key_id`,
// `spec.models[3]`, `spec.metadata["k"]`), so the caller gets INVALID_ARGUMENT naming the field.

/** Identifier-like fields: at most this many characters. */
export const ID_MAX_CHARS = 256;
/** Any other string (descriptions, reasons, search text…), and every map key. */
export const TEXT_MAX_CHARS = 1024;

/** Field names (proto spelling) bounded by ID_MAX_CHARS; the elements of a repeated field count as the field. */
const ID_FIELDS = new Set([
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
]);

function snake(name: string): string {
  return name.replace(/[A-Z]/g, (c) => "_" + c.toLowerCase());
}

function join(path: string, name: string): string {
  return path ? `${path}.${name}` : name;
}

/**
 * The first string of `message` (a decoded ts-proto message) longer than its bound, as
 * "field.path: must be at most N characters (got M)"; null when every string fits. Pure.
 */
export function oversizeField(message: unknown): string | null {
  return walk(message, "", "", 0);
}

function walk(v: unknown, path: string, field: string, depth: number): string | null {
  if (typeof v === "string") {
    const max = ID_FIELDS.has(field) ? ID_MAX_CHARS : TEXT_MAX_CHARS;
    return v.length > max ? `${path}: must be at most ${max} characters (got ${v.length})` : null;
  }
  if (v === null || typeof v !== "object" || depth > 32 || v instanceof Date || ArrayBuffer.isView(v)) return null;
  if (Array.isArray(v)) {
    for (let i = 0; i < v.length; i++) {
      const bad = walk(v[i], `${path}[${i}]`, field, depth + 1);
      if (bad) return bad;
    }
    return null;
  }
  const o = v as Record<string, unknown>;
  if (typeof o["$case"] === "string" && "value" in o) {
    // A oneof (ts-proto unions): the chosen field's name is $case.
    const name = snake(o["$case"]);
    return walk(o["value"], join(path, name), name, depth + 1);
  }
  for (const k of Object.keys(o)) {
    // Message properties have short camelCase names; anything else is a key of a map field.
    if (k.length > TEXT_MAX_CHARS) return `${path || "request"}: map keys must be at most ${TEXT_MAX_CHARS} characters (got ${k.length})`;
    const bad = /^[a-z][A-Za-z0-9]*$/.test(k) ? walk(o[k], join(path, snake(k)), snake(k), depth + 1) : walk(o[k], `${path}[${JSON.stringify(k)}]`, field, depth + 1);
    if (bad) return bad;
  }
  return null;
}
