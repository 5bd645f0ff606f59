// In-process cost of each step of an Envoy Check, without gRPC or the network:
// decode (ts-proto) → toAuthInput → Authorizer.check (hash, lookup, policy, reserve) →
// allowResponse/denyResponse → encode (the data plane's reused-writer serializer). Runs as its
// own process (one core, no load generator beside it), so its ns/op are steadier than
// end-to-end figures on a shared machine.
// Usage: node --import tsx bench/hotpath.ts '{"iterations":200000}'
// Prints one JSON line (HotPathResult) on stdout.
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { DEFAULT_ACCOUNT, DEFAULT_GROUP, type KeyRecord } from "../src/domain/types.js";
import { CheckRequest, CheckResponse } from "../src/gen/envoy/service/auth/v3/external_auth.js";
import { generateId, generateKeySecret, hashSecret } from "../src/keys/secrets.js";
import { Authorizer } from "../src/service/authorizer.js";
import { LevelStore } from "../src/store/level/levelStore.js";
import { toAuthInput } from "../src/transport/envoy/toAuthInput.js";
import { reusedWriterSerializer } from "../src/transport/serialize.js";
import { allowResponse, denyResponse } from "../src/transport/envoy/toCheckResponse.js";
import { BENCH_MODEL, encodeEnvoyCheck, envoyCheckRequest } from "./lib/payloads.js";

export interface HotPathResult {
  iterations: number;
  /** ns per request for each step, allow path. */
  allow: Record<"decode" | "toAuthInput" | "check" | "response" | "encode" | "total", number>;
  /** ns per request, whole pipeline, for each deny path. */
  deny: Record<"invalid" | "ip" | "quota", number>;
  /** ns per request, whole pipeline, allow of a key with rpm and tpm limits (x-ratelimit-* headers and limits metadata). */
  allowLimited?: number;
  /** The same requests rendered without the figures (what the limits cost before issue 19 item 4). */
  allowLimitedBare?: number;
}

function keyRecord(secret: string, over: Partial<KeyRecord> = {}): KeyRecord {
  const now = Date.now();
  const id = generateId("key_");
  return {
    id,
    name: "hotpath",
    accountId: DEFAULT_ACCOUNT,
    group: DEFAULT_GROUP,
    status: "enabled",
    unlimited: true,
    quotaTotal: 0,
    expiresAt: null,
    models: [],
    ips: [],
    createdAt: now,
    updatedAt: now,
    limits: { rpm: 0, tpm: 0, concurrency: 0 },
    refill: "none",
    metadata: {},
    secretHash: hashSecret(secret),
    secretEnc: "",
    masked: "sk-…",
    prevSecretHash: null,
    prevSecretExpiresAt: null,
    ...over,
  };
}

async function main(): Promise<void> {
  const spec = JSON.parse(process.argv[2] ?? "{}") as { iterations?: number };
  const iterations = spec.iterations ?? 200_000;
  const dir = await mkdtemp(join(tmpdir(), "aisa-hotpath-"));
  const store = new LevelStore({ dir });
  try {
    await store.open(Date.now());
    const audit = { actor: "bench", action: "seed", target: "*" };
    await store.adjustBalance(DEFAULT_ACCOUNT, 1e15, audit);
    await store.setPrice({ model: BENCH_MODEL, inputPerMillion: 75_000, outputPerMillion: 300_000, perRequest: 0 }, audit);
    const allowSecret = generateKeySecret();
    const ipSecret = generateKeySecret();
    const quotaSecret = generateKeySecret();
    const limitedSecret = generateKeySecret();
    await store.importKeys(
      [
        keyRecord(allowSecret),
        keyRecord(ipSecret, { ips: ["10.0.0.0/8"] }),
        keyRecord(quotaSecret, { unlimited: false, quotaTotal: 0 }),
        keyRecord(limitedSecret, { limits: { rpm: 1_000_000_000, tpm: 1_000_000_000, concurrency: 0 } }),
      ],
      audit,
    );
    const authorizer = new Authorizer({
      store,
      reservationTtlMs: 600_000,
      policy: { denyUnpricedModels: true, defaultEstimateUnits: 1000, inputEstimateTokens: 1000, defaultMaxTokens: 1024 },
    });
    /** The embedded engine decides synchronously: a promise here would be a bug. */
    const checkNow = (input: Parameters<Authorizer["check"]>[0], now: number) => {
      const out = authorizer.check(input, now);
      if (out instanceof Promise) throw new Error("the embedded engine answered asynchronously");
      return out;
    };
    const hops = { xffTrustedHops: 0 };
    // The sidecar's own response serializer (src/transport/serialize.ts), as grpc-js calls it.
    const encode = reusedWriterSerializer(CheckResponse);
    const bytes = (secret: string) => encodeEnvoyCheck(envoyCheckRequest({ secret }));
    const allowBytes = bytes(allowSecret);

    // Allow path, step by step (each step timed over the whole loop, then divided).
    const t = { decode: 0, toAuthInput: 0, check: 0, response: 0, encode: 0, total: 0 };
    const run = (n: number, measure: boolean) => {
      let sink = 0;
      for (let i = 0; i < n; i++) {
        const a = process.hrtime.bigint();
        const req = CheckRequest.decode(allowBytes);
        const b = process.hrtime.bigint();
        const { input, credentialHeaders, credentialQueryParams } = toAuthInput(req, hops);
        const c = process.hrtime.bigint();
        const out = checkNow(input, Date.now());
        const d = process.hrtime.bigint();
        const res = out.allowed
          ? allowResponse({ keyId: out.keyId, accountId: out.accountId, group: out.group, reservationId: out.reservationId, credentialHeaders, credentialQueryParams, figures: out.figures })
          : denyResponse(out.reason as never, { figures: out.figures, hit: out.hit });
        const e = process.hrtime.bigint();
        sink += encode(res).length;
        const f = process.hrtime.bigint();
        if (!out.allowed) throw new Error(`allow path denied: ${out.reason}`);
        if (measure) {
          t.decode += Number(b - a);
          t.toAuthInput += Number(c - b);
          t.check += Number(d - c);
          t.response += Number(e - d);
          t.encode += Number(f - e);
          t.total += Number(f - a);
        }
      }
      return sink;
    };
    run(Math.min(20_000, iterations), false);
    run(iterations, true);
    const allow = Object.fromEntries(Object.entries(t).map(([k, v]) => [k, v / iterations])) as HotPathResult["allow"];

    const whole = (b: Buffer, reason: string) => {
      const loop = (n: number) => {
        const s = process.hrtime.bigint();
        for (let i = 0; i < n; i++) {
          const { input } = toAuthInput(CheckRequest.decode(b), hops);
          const out = checkNow(input, Date.now());
          if (out.reason !== reason) throw new Error(`expected ${reason}, got ${out.reason}`);
          encode(denyResponse(out.reason as never, { keyId: out.keyId, accountId: out.accountId, group: out.group, figures: out.figures, hit: out.hit }));
        }
        return Number(process.hrtime.bigint() - s) / n;
      };
      loop(Math.min(20_000, iterations));
      return loop(iterations);
    };
    const deny = {
      invalid: whole(bytes(generateKeySecret()), "KEY_INVALID"),
      ip: whole(bytes(ipSecret), "IP_NOT_ALLOWED"),
      quota: whole(bytes(quotaSecret), "KEY_QUOTA_EXHAUSTED"),
    };
    const limitedBytes = bytes(limitedSecret);
    const limitedLoop = (n: number, render = true) => {
      const s = process.hrtime.bigint();
      for (let i = 0; i < n; i++) {
        const { input, credentialHeaders, credentialQueryParams } = toAuthInput(CheckRequest.decode(limitedBytes), hops);
        const out = checkNow(input, Date.now());
        if (!out.allowed) throw new Error(`limited allow path denied: ${out.reason}`);
        encode(allowResponse({ keyId: out.keyId, accountId: out.accountId, group: out.group, reservationId: out.reservationId, credentialHeaders, credentialQueryParams, figures: render ? out.figures : undefined }));
      }
      return Number(process.hrtime.bigint() - s) / n;
    };
    limitedLoop(Math.min(20_000, iterations));
    const allowLimited = limitedLoop(iterations);
    const allowLimitedBare = limitedLoop(iterations, false);
    const out: HotPathResult = { iterations, allow, deny, allowLimited, allowLimitedBare };
    process.stdout.write(JSON.stringify(out) + "\n");
  } finally {
    await store.close();
    await rm(dir, { recursive: true, force: true });
  }
}

main().catch((err) => {
  process.stderr.write(`hotpath failed: ${err?.stack ?? err}\n`);
  process.exit(1);
});
