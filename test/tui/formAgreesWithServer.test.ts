// The form's live validation is the server's (issue 17, "one domain module"): for every input
// below, the TUI form (tui/state/keyForm.ts checkForm) refuses exactly what a real sidecar's
// CreateKey refuses — names (length, the text rules), model names and IP whitelist entries.
// No Ink: the form model against the service, over real gRPC.
import { expect } from "chai";
import { toMoney } from "../../src/display/format.js";
import { ApiError, GrpcAdminApi } from "../../tui/client.js";
import { buildSpec, checkForm, initialValues, type FieldId, type FormContext, type FormValues } from "../../tui/state/keyForm.js";
import { startTestSidecar, type TestSidecar } from "../helpers/sidecar.js";

const ctx: FormContext = { now: Date.now(), money: toMoney("500000", "USD"), groups: ["default"], pricedModels: [], accounts: [] };

const cases: { name: string; ok: boolean; field: FieldId; values: Partial<FormValues> }[] = [
  { name: "a plain name", ok: true, field: "name", values: { name: "prod api" } },
  { name: "a 128-character name", ok: true, field: "name", values: { name: "n".repeat(128) } },
  { name: "a 129-character name", ok: false, field: "name", values: { name: "n".repeat(129) } },
  { name: "a name padded to 129 with spaces (trimmed)", ok: true, field: "name", values: { name: ` ${"n".repeat(127)} ` } },
  { name: "a name with a bidi override", ok: false, field: "name", values: { name: "invoice\u202Egpj" } },
  { name: "a name with an escape", ok: false, field: "name", values: { name: "a\u001b]2;x\u0007" } },
  { name: "a CJK and emoji name", ok: true, field: "name", values: { name: "日本語のキー 🔑" } },
  { name: "a 128-character model", ok: true, field: "models", values: { models: "m".repeat(128) } },
  { name: "a 129-character model", ok: false, field: "models", values: { models: "m".repeat(129) } },
  { name: "a model with a zero-width joiner", ok: false, field: "models", values: { models: "gpt\u200D-4o" } },
  { name: "two plain models", ok: true, field: "models", values: { models: "gpt-4o, gpt-4o-mini" } },
  { name: "an IPv4 address", ok: true, field: "ips", values: { ips: "10.1.2.3" } },
  { name: "an IPv4 CIDR", ok: true, field: "ips", values: { ips: "10.0.0.0/8" } },
  { name: "an IPv6 CIDR", ok: true, field: "ips", values: { ips: "2001:db8::/32" } },
  { name: "an IPv4 with a leading zero", ok: false, field: "ips", values: { ips: "010.0.0.1" } },
  { name: "a short IPv4 form", ok: false, field: "ips", values: { ips: "127.1" } },
  { name: "a hex IPv4", ok: false, field: "ips", values: { ips: "0x7f.0.0.1" } },
  { name: "a prefix too long", ok: false, field: "ips", values: { ips: "1.2.3.4/33" } },
  { name: "a zone id", ok: false, field: "ips", values: { ips: "fe80::1%eth0" } },
  { name: "a host name", ok: false, field: "ips", values: { ips: "example.com" } },
  { name: "an IPv4-mapped IPv6", ok: true, field: "ips", values: { ips: "::ffff:10.0.0.1" } },
];

describe("tui: the key form refuses exactly what the server refuses (real sidecar)", function () {
  this.timeout(30_000);
  let s: TestSidecar;
  let api: GrpcAdminApi;
  before(async () => {
    s = await startTestSidecar();
    api = new GrpcAdminApi(s.adminAddress, s.adminToken);
  });
  after(async () => {
    api.close();
    await s.close();
  });

  for (const c of cases) {
    it(c.name, async () => {
      const values: FormValues = { ...initialValues(), name: "form-check", ...c.values };
      const formError = checkForm(values, ctx).errors[c.field] ?? null;
      let serverError: string | null = null;
      try {
        await api.createKey(buildSpec(values, ctx));
      } catch (err) {
        if (!(err instanceof ApiError) || err.code !== "INVALID_ARGUMENT") throw err;
        serverError = err.message;
      }
      expect([formError === null, serverError === null], `form: ${formError}; server: ${serverError}`).to.deep.equal([c.ok, c.ok]);
    });
  }
});
