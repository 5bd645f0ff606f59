// oversizeField (transport/bounds.ts) builds a field's path only when a string is over its bound.
// Its answer must be the one the path-building walk gave before, for every message: checked
// against that walk (kept here as the reference) over random nested messages — properties,
// oneofs (ts-proto's $case, in camelCase and in proto spelling), repeated fields, map keys, and
// strings around both bounds.
import { expect } from "chai";
import { ID_MAX_CHARS, TEXT_MAX_CHARS, oversizeField } from "../../src/transport/bounds.js";
import { rng } from "../helpers/rng.js";

// The walk as it was (every path built on the way down), the reference.
const REF_ID_FIELDS = new Set(["id", "ids", "key_id", "account_id", "request_id", "reservation_id", "api_key", "client_ip", "model", "models", "name", "group", "target", "actor", "token_id", "page_token", "query", "ips", "update_mask"]);
const refSnake = (name: string) => name.replace(/[A-Z]/g, (c) => "_" + c.toLowerCase());
const refJoin = (path: string, name: string) => (path ? `${path}.${name}` : name);
function refWalk(v: unknown, path: string, field: string, depth: number): string | null {
  if (typeof v === "string") {
    const max = REF_ID_FIELDS.has(field) ? ID_MAX_CHARS : TEXT_MAX_CHARS;
    return v.length > max ? `${path}: must be at most ${max} characters (got ${v.length})` : null;
  }
  if (v === null || typeof v !== "object" || depth > 32 || v instanceof Date || ArrayBuffer.isView(v)) return null;
  if (Array.isArray(v)) {
    for (let i = 0; i < v.length; i++) {
      const bad = refWalk(v[i], `${path}[${i}]`, field, depth + 1);
      if (bad) return bad;
    }
    return null;
  }
  const o = v as Record<string, unknown>;
  if (typeof o["$case"] === "string" && "value" in o) {
    const name = refSnake(o["$case"]);
    return refWalk(o["value"], refJoin(path, name), name, depth + 1);
  }
  for (const k of Object.keys(o)) {
    if (k.length > TEXT_MAX_CHARS) return `${path || "request"}: map keys must be at most ${TEXT_MAX_CHARS} characters (got ${k.length})`;
    const bad = /^[a-z][A-Za-z0-9]*$/.test(k) ? refWalk(o[k], refJoin(path, refSnake(k)), refSnake(k), depth + 1) : refWalk(o[k], `${path}[${JSON.stringify(k)}]`, field, depth + 1);
    if (bad) return bad;
  }
  return null;
}
const reference = (m: unknown) => refWalk(m, "", "", 0);

describe("oversizeField", () => {
  it("gives the path-building walk's answer for 20,000 random messages", () => {
    const r = rng(18);
    const pick = <T>(xs: readonly T[]): T => xs[Math.floor(r() * xs.length)]!;
    const props = ["keyId", "requestId", "reservationId", "apiKey", "accountId", "ids", "models", "name", "group", "target", "items", "spec", "description", "reason", "metadata", "inputTokens", "updateMask", "clientIp", "id", "x1"];
    const cases = ["keyId", "reservationId", "apiKey", "key_id", "request_id", "description", "Model", "updateMask"];
    const mapKeys = ["X-Team", "a b", "Key", "k_1", "é", "1", ""];
    const lengths = [0, 3, ID_MAX_CHARS - 1, ID_MAX_CHARS, ID_MAX_CHARS + 1, TEXT_MAX_CHARS, TEXT_MAX_CHARS + 1];
    const str = () => "s".repeat(r() < 0.85 ? Math.floor(r() * 20) : pick(lengths));
    const value = (depth: number): unknown => {
      const x = r();
      if (depth > 4 || x < 0.35) return r() < 0.8 ? str() : pick([7, true, null, undefined, new Uint8Array(3), new Date(0)]);
      if (x < 0.5) return Array.from({ length: Math.floor(r() * 4) }, () => value(depth + 1));
      if (x < 0.62) return { $case: pick(cases), value: value(depth + 1) };
      const o: Record<string, unknown> = {};
      for (let n = Math.floor(r() * 5); n > 0; n--) {
        const k = r() < 0.8 ? pick(props) : r() < 0.03 ? "m".repeat(TEXT_MAX_CHARS + 1) : pick(mapKeys);
        o[k] = value(depth + 1);
      }
      return o;
    };
    let over = 0;
    for (let n = 0; n < 20_000; n++) {
      const m = value(0);
      const want = reference(m);
      expect(oversizeField(m), JSON.stringify(m)?.slice(0, 300)).to.equal(want);
      if (want !== null) over++;
    }
    // Both answers were exercised.
    expect(over).to.be.greaterThan(2_000);
    expect(over).to.be.lessThan(18_000);
  });

  it("names the field by its proto path in a ConsumeBatch of 1,000 fitting items and one over", () => {
    const item = (i: number) => ({ requestId: `r-${i}`, target: { $case: "keyId", value: "key_1" }, model: "gpt-4o-mini", inputTokens: "1200", outputTokens: "300", units: "0" });
    const items = Array.from({ length: 1000 }, (_, i) => item(i));
    expect(oversizeField({ items })).to.equal(null);
    items[998] = { ...item(998), target: { $case: "reservationId", value: "r".repeat(ID_MAX_CHARS + 1) } };
    expect(oversizeField({ items })).to.equal(`items[998].target.reservation_id: must be at most ${ID_MAX_CHARS} characters (got ${ID_MAX_CHARS + 1})`);
    expect(oversizeField({ spec: { metadata: { "team-x": "v".repeat(TEXT_MAX_CHARS + 1) } } })).to.equal(`spec.metadata["team-x"]: must be at most ${TEXT_MAX_CHARS} characters (got ${TEXT_MAX_CHARS + 1})`);
  });
});
