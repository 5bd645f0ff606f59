// Stored text through the admin API (real sidecar, LevelDB in a temp dir, gRPC on
// 127.0.0.1:0): every field a user stores refuses control, bidi and zero-width characters,
// line separators and pasted secrets with INVALID_ARGUMENT naming the field (never echoing
// the secret); impossible timestamps and unknown refill periods are refused too.
import { expect } from "chai";
import { status } from "@grpc/grpc-js";
import type { CreateKeyResponse, CreateTokenResponse } from "../../src/gen/aisa/v1/admin.js";
import { RefillPeriod, type Key } from "../../src/gen/aisa/v1/types.js";
import { generateKeySecret, generateTokenSecret } from "../../src/keys/secrets.js";
import { call, expectGrpcError, removeDir, startTestSidecar, type TestSidecar } from "../helpers/sidecar.js";

const KEY = generateKeySecret();
const TOKEN = generateTokenSecret();
const OSC = "hi\x1b]2;PWNED\x07\x1b[41m";

describe("stored text and input rules (admin API, end to end)", function () {
  this.timeout(60_000);
  let s: TestSidecar;
  let accountToken = "";
  let keyId = "";
  const admin = <Res>(method: string, req: unknown, token?: string) => call<unknown, Res>(s.admin, method, req, s.meta(token));

  before(async () => {
    s = await startTestSidecar();
    await admin("createAccount", { id: "acme", name: "Acme" });
    accountToken = (await admin<CreateTokenResponse>("createToken", { name: "acme rw", accountId: "acme" })).secret;
    keyId = (await admin<CreateKeyResponse>("createKey", { spec: { name: "base" }, accountId: "acme" })).key!.id;
  });
  after(async () => {
    await s.close();
    await removeDir(s.dir);
  });

  const spec = (extra: Record<string, unknown>) => ({ spec: { name: "k", ...extra } });
  const cases: { name: string; method: string; req: unknown; field: string; problem: string; token?: "account" }[] = [
    // Finding 9: an account token storing an OSC title / SGR sequence in metadata.
    { name: "metadata value with an OSC + SGR sequence (account token)", method: "createKey", req: spec({ metadata: { note: OSC } }), field: 'spec.metadata["note"]', problem: "must not contain control characters (U+001B at 2)", token: "account" },
    { name: "metadata value with NUL", method: "createKey", req: spec({ metadata: { k: "a\0" } }), field: 'spec.metadata["k"]', problem: "U+0000 at 1" },
    { name: "metadata value with CR", method: "createKey", req: spec({ metadata: { k: "a\rb" } }), field: 'spec.metadata["k"]', problem: "U+000D at 1" },
    { name: "metadata value with LF", method: "createKey", req: spec({ metadata: { k: "a\nb" } }), field: 'spec.metadata["k"]', problem: "U+000A at 1" },
    { name: "metadata key with ESC", method: "createKey", req: spec({ metadata: { "k\x1b": "v" } }), field: 'spec.metadata["k\\u001b"]', problem: "key must not contain control characters (U+001B at 1)" },
    { name: "metadata value holding an API key", method: "createKey", req: spec({ metadata: { k: KEY } }), field: 'spec.metadata["k"]', problem: "looks like an API key or admin token" },
    { name: "key name with U+202E", method: "createKey", req: spec({ name: "invoice\u202Egpj.exe" }), field: "spec.name", problem: "invisible or bidirectional formatting characters (U+202E at 7)" },
    { name: "key name with U+2066", method: "createKey", req: spec({ name: "a\u2066b" }), field: "spec.name", problem: "(U+2066 at 1)" },
    { name: "key name with U+200B", method: "createKey", req: spec({ name: "a\u200Bb" }), field: "spec.name", problem: "(U+200B at 1)" },
    { name: "key name with U+FEFF", method: "createKey", req: spec({ name: "a\uFEFFb" }), field: "spec.name", problem: "(U+FEFF at 1)" },
    { name: "key name with U+2028", method: "createKey", req: spec({ name: "a\u2028b" }), field: "spec.name", problem: "line or paragraph separators (U+2028 at 1)" },
    { name: "key name with a C1 CSI", method: "createKey", req: spec({ name: "a\u009b2J" }), field: "spec.name", problem: "(U+009B at 1)" },
    { name: "key name holding an admin token", method: "createKey", req: spec({ name: `my ${TOKEN}` }), field: "spec.name", problem: "looks like an API key or admin token" },
    { name: "model with a zero-width space", method: "createKey", req: spec({ models: ["gpt-4o", "gpt\u200B-4o"] }), field: "spec.models[1]", problem: "(U+200B at 3)" },
    { name: "model with a zero-width joiner", method: "createKey", req: spec({ models: ["gpt-4o\u200D"] }), field: "spec.models[0]", problem: "(U+200D at 6)" },
    { name: "a secret pasted into spec.models", method: "createKey", req: spec({ models: [KEY] }), field: "spec.models[0]", problem: "looks like an API key or admin token" },
    { name: "update: metadata with ESC", method: "updateKey", req: () => ({ id: keyId, spec: { metadata: { k: OSC } }, updateMask: ["metadata"] }), field: 'spec.metadata["k"]', problem: "U+001B at 2", token: "account" },
    { name: "update: name with U+202E", method: "updateKey", req: () => ({ id: keyId, spec: { name: "x\u202E" }, updateMask: ["name"] }), field: "spec.name", problem: "U+202E at 1" },
    { name: "expiry on February 30", method: "createKey", req: spec({ expires: "2027-02-30T00:00:00Z" }), field: "spec.expires", problem: "day 30 is not 01..28 in 2027-02" },
    { name: "expiry at T24:00:00", method: "createKey", req: spec({ expires: "2027-01-01T24:00:00Z" }), field: "spec.expires", problem: "hour 24 is not 00..23" },
    { name: "expiry in year 10000", method: "createKey", req: spec({ expires: "10000-01-01T00:00:00Z" }), field: "spec.expires", problem: "is not" },
    { name: "expiry pushed past 9999 by its offset", method: "createKey", req: spec({ expires: "9999-12-31T23:59:59-01:00" }), field: "spec.expires", problem: "outside years 0001..9999" },
    { name: "an unknown refill period", method: "createKey", req: spec({ refill: 7 }), field: "spec.refill", problem: "unknown refill period 7" },
    { name: "update: an unknown refill period", method: "updateKey", req: () => ({ id: keyId, spec: { refill: 9 }, updateMask: ["refill"] }), field: "spec.refill", problem: "unknown refill period 9" },
    { name: "account name with ESC", method: "createAccount", req: { id: "esc", name: "a\x1b[2J" }, field: "name", problem: "U+001B at 1" },
    { name: "account update: name with a bidi override", method: "updateAccount", req: { id: "acme", name: "Acme\u202E", updateMask: ["name"] }, field: "name", problem: "U+202E at 4" },
    { name: "account update: name holding an API key", method: "updateAccount", req: { id: "acme", name: KEY, updateMask: ["name"] }, field: "name", problem: "looks like an API key" },
    { name: "balance reason with BEL", method: "adjustBalance", req: { accountId: "acme", delta: "5", reason: "top-up\x07" }, field: "reason", problem: "U+0007 at 6" },
    { name: "balance reason holding an API key", method: "adjustBalance", req: { accountId: "acme", delta: "5", reason: `refund for ${KEY}` }, field: "reason", problem: "looks like an API key" },
    { name: "group description with OSC 52", method: "createGroup", req: { name: "g-osc", description: "\x1b]52;c;ZXZpbA==\x07" }, field: "description", problem: "U+001B at 0" },
    { name: "group description with U+202E", method: "createGroup", req: { name: "g-bidi", description: "a\u202E" }, field: "description", problem: "U+202E at 1" },
    { name: "group models with a zero-width space", method: "createGroup", req: { name: "g-zw", models: ["a\u200B"] }, field: "models[0]", problem: "U+200B at 1" },
    { name: "group update: description with ESC", method: "updateGroup", req: { name: "default", group: { description: "x\x1b" }, updateMask: ["description"] }, field: "group.description", problem: "U+001B at 1" },
    { name: "token name with ESC", method: "createToken", req: { name: "t\x1b]0;x\x07" }, field: "name", problem: "U+001B at 1" },
    { name: "price model with U+2060", method: "setPrice", req: { price: { model: "gpt\u2060", inputPerMillion: "1", outputPerMillion: "1" } }, field: "price.model", problem: "U+2060 at 3" },
    { name: "price model holding an API key", method: "setPrice", req: { price: { model: KEY, inputPerMillion: "1", outputPerMillion: "1" } }, field: "price.model", problem: "looks like an API key" },
  ];
  for (const c of cases) {
    it(`refuses ${c.name}: INVALID_ARGUMENT naming ${c.field}`, async () => {
      const req = typeof c.req === "function" ? (c.req as () => unknown)() : c.req;
      const err = await expectGrpcError(admin(c.method, req, c.token === "account" ? accountToken : undefined), status.INVALID_ARGUMENT);
      expect(err.details.startsWith(`${c.field}: `), err.details).to.equal(true);
      expect(err.details).to.include(c.problem);
      expect(err.details).not.to.include(KEY.slice(3));
      expect(err.details).not.to.include(TOKEN.slice(4));
      expect(err.details).not.to.match(/[\u0000-\u001f\u007f-\u009f\u202E\u200B]/);
    });
  }

  // Finding 15: a secret pasted into an id is echoed in NOT_FOUND; the redaction must find it
  // whatever precedes it (the message JSON-quotes the id, so a tab arrives as the letters "\t").
  const pasted: { name: string; id: string; body: string }[] = [
    { name: "after a tab", id: `\t${KEY}`, body: KEY.slice(3) },
    { name: "after a letter", id: `x${KEY}`, body: KEY.slice(3) },
    { name: "after an underscore", id: `_${KEY}`, body: KEY.slice(3) },
    { name: "after a digit", id: `1${KEY}`, body: KEY.slice(3) },
    { name: "a token after a letter", id: `a${TOKEN}`, body: TOKEN.slice(4) },
  ];
  for (const c of pasted) {
    it(`never echoes a secret pasted as a key id (${c.name})`, async () => {
      for (const method of ["getKey", "rotateKey"]) {
        const err = await expectGrpcError(admin(method, { id: c.id }), status.NOT_FOUND);
        expect(err.details).to.include("[REDACTED]");
        expect(err.details).not.to.include(c.body.slice(0, 12));
      }
      const del = await expectGrpcError(admin("deleteKeys", { ids: [c.id] }), status.NOT_FOUND);
      expect(del.details).not.to.include(c.body.slice(0, 12));
    });
  }

  it("an error message never carries a raw control, bidi or invisible character, whatever the input (for any client)", async () => {
    const id = `key_\u009b2J\u202E\u2028\u200B\x7f`;
    for (const method of ["getKey", "rotateKey"]) {
      const err = await expectGrpcError(admin(method, { id }), status.NOT_FOUND);
      expect(err.details).not.to.match(/[\u0000-\u001f\u007f-\u009f\u202E\u2028\u200B]/);
      expect(err.details).to.include("\\u202e");
    }
    const g = await expectGrpcError(admin("createKey", spec({ group: "g\u009b1m" })), status.INVALID_ARGUMENT);
    expect(g.details).not.to.match(/[\u0080-\u009f]/);
  });

  it("nothing refused was stored", async () => {
    const keys = await admin<{ keys: Key[] }>("listKeys", {});
    const text = JSON.stringify(keys);
    expect(text).not.to.include("\\u001b");
    expect(text).not.to.include(KEY.slice(3));
    expect(keys.keys.map((k) => k.refill)).to.not.include(RefillPeriod.UNRECOGNIZED);
  });

  it("still accepts ordinary Unicode text, and refill NONE/unset", async () => {
    const r = await admin<CreateKeyResponse>("createKey", {
      spec: { name: "Ünïcødé 日本 😀 — mask-production", metadata: { "équipe": "données · 100%" }, models: ["anthropic/claude-3.5:beta"], expires: "2028-02-29T23:59:59Z", refill: RefillPeriod.REFILL_PERIOD_WEEKLY },
    });
    expect(r.key!.name).to.equal("Ünïcødé 日本 😀 — mask-production");
    expect(r.key!.refill).to.equal(RefillPeriod.REFILL_PERIOD_WEEKLY);
    expect(r.key!.expiresAt!.toISOString()).to.equal("2028-02-29T23:59:59.000Z");
    const u = await admin<Key>("updateKey", { id: r.key!.id, spec: {}, updateMask: ["refill"] });
    expect(u.refill).to.equal(RefillPeriod.REFILL_PERIOD_NONE);
  });
});
