import { expect } from "chai";
import { normalizeIpEntry, parseClientIp, toCidrRange } from "../../src/domain/ip.js";
import type { PriceRecord } from "../../src/domain/types.js";
import { ceilDiv, estimateUnits, evaluatePolicy } from "../../src/policy/evaluate.js";
import { REASONS } from "../../src/policy/reasons.js";
import type { AuthInput, PolicyConfig, PolicyInput, PolicyKey, RateView, Verdict } from "../../src/policy/types.js";

const NOW = Date.UTC(2025, 10, 27, 12, 0, 0);
const ranges = (...s: string[]) => s.map((x) => toCidrRange(normalizeIpEntry(x)));

const CONFIG: PolicyConfig = {
  denyUnpricedModels: true,
  defaultEstimateUnits: 1000,
  inputEstimateTokens: 1000,
  defaultMaxTokens: 4096,
};

// gpt-4o-mini: 150 units per 1M input tokens, 600 per 1M output tokens, 2 per request.
const PRICE: PriceRecord = { model: "gpt-4o-mini", inputPerMillion: 150_000, outputPerMillion: 600_000, perRequest: 2 };

function request(over: Partial<AuthInput> = {}): AuthInput {
  return {
    credential: "sk-test",
    clientIp: parseClientIp("10.1.2.3"),
    model: "gpt-4o-mini",
    modelDeclared: false,
    modelConflict: false,
    maxTokens: 100,
    estimatedUnits: null,
    malformed: null,
    ...over,
  };
}

function key(over: Partial<PolicyKey> = {}): PolicyKey {
  return {
    id: "key_1",
    accountId: "acct_1",
    group: "default",
    enabled: true,
    expiresAt: null,
    models: null,
    ips: null,
    unlimited: true,
    quotaAvailable: 0,
    limits: { rpm: 0, tpm: 0, concurrency: 0 },
    ...over,
  };
}

const RATE: RateView = { requestsInWindow: 0, tokensInWindow: 0, open: 0, windowResetMs: 0 };

type Over = {
  request?: Partial<AuthInput>;
  key?: Partial<PolicyKey> | undefined;
  noKey?: boolean;
  group?: PolicyInput["group"];
  account?: PolicyInput["account"] | null;
  price?: PriceRecord | null;
  rate?: Partial<RateView>;
  config?: Partial<PolicyConfig>;
  now?: number;
};

function input(o: Over = {}): PolicyInput {
  return {
    now: o.now ?? NOW,
    request: request(o.request),
    key: o.noKey ? undefined : key(o.key),
    group: "group" in o ? o.group : { ratioPpm: 1_000_000, models: null },
    account: o.account === null ? undefined : (o.account ?? { available: 1_000_000_000 }),
    price: o.price === null ? undefined : (o.price ?? PRICE),
    rate: { ...RATE, ...o.rate },
    config: { ...CONFIG, ...o.config },
  };
}

// Estimate for PRICE, 1000 input tokens, 100 output tokens, ratio 1.0:
// 2 + (1000·150000 + 100·600000)/1e6 = 2 + 150 + 60 = 212.
const BASE_ESTIMATE = 212;

interface Case {
  name: string;
  in: Over;
  want: Verdict["reason"];
  retryAfterMs?: number;
  estimate?: number;
}

const cases: Case[] = [
  { name: "allowed: unrestricted key, priced model", in: {}, want: "ALLOWED", estimate: BASE_ESTIMATE },

  // one case per reason
  { name: "MALFORMED_REQUEST", in: { request: { malformed: "no http" } }, want: "MALFORMED_REQUEST" },
  { name: "KEY_MISSING", in: { request: { credential: null } }, want: "KEY_MISSING" },
  { name: "KEY_INVALID", in: { noKey: true }, want: "KEY_INVALID" },
  { name: "KEY_DISABLED", in: { key: { enabled: false } }, want: "KEY_DISABLED" },
  { name: "KEY_EXPIRED", in: { key: { expiresAt: NOW - 1 } }, want: "KEY_EXPIRED" },
  { name: "IP_NOT_ALLOWED", in: { key: { ips: ranges("192.168.0.0/16") } }, want: "IP_NOT_ALLOWED" },
  { name: "MODEL_REQUIRED", in: { key: { models: new Set(["gpt-4o-mini"]) }, request: { model: null } }, want: "MODEL_REQUIRED" },
  { name: "MODEL_NOT_ALLOWED", in: { key: { models: new Set(["gpt-4o"]) } }, want: "MODEL_NOT_ALLOWED" },
  { name: "MODEL_NOT_PRICED", in: { price: null }, want: "MODEL_NOT_PRICED" },
  { name: "MODEL_MISMATCH", in: { request: { modelConflict: true } }, want: "MODEL_MISMATCH" },

  // model sources (issue 13 #7)
  { name: "sources disagree → MODEL_MISMATCH for a restricted key too", in: { key: { models: new Set(["gpt-4o-mini"]) }, request: { modelConflict: true } }, want: "MODEL_MISMATCH" },
  { name: "a mismatch beats an unpriced model", in: { price: null, request: { modelConflict: true } }, want: "MODEL_MISMATCH" },
  { name: "IP beats a mismatch", in: { key: { ips: ranges("192.168.0.0/16") }, request: { modelConflict: true } }, want: "IP_NOT_ALLOWED" },
  { name: "a header-declared model does not pass a key's model list → MODEL_REQUIRED", in: { key: { models: new Set(["gpt-4o-mini"]) }, request: { modelDeclared: true } }, want: "MODEL_REQUIRED" },
  { name: "a header-declared model does not pass a group's model list", in: { group: { ratioPpm: 1_000_000, models: new Set(["gpt-4o-mini"]) }, request: { modelDeclared: true } }, want: "MODEL_REQUIRED" },
  { name: "a header-declared model prices an unrestricted key's request", in: { request: { modelDeclared: true } }, want: "ALLOWED", estimate: BASE_ESTIMATE },
  { name: "ACCOUNT_BALANCE_EXHAUSTED", in: { account: { available: 100 } }, want: "ACCOUNT_BALANCE_EXHAUSTED" },
  { name: "KEY_QUOTA_EXHAUSTED", in: { key: { unlimited: false, quotaAvailable: 100 } }, want: "KEY_QUOTA_EXHAUSTED" },
  {
    name: "RATE_LIMITED (rpm)",
    in: { key: { limits: { rpm: 10, tpm: 0, concurrency: 0 } }, rate: { requestsInWindow: 10, windowResetMs: 4200 } },
    want: "RATE_LIMITED",
    retryAfterMs: 4200,
  },

  // ordering: the first failing check decides
  { name: "malformed beats a missing credential", in: { request: { malformed: "x", credential: null } }, want: "MALFORMED_REQUEST" },
  { name: "missing credential beats unknown key", in: { request: { credential: null }, noKey: true }, want: "KEY_MISSING" },
  { name: "disabled AND expired → KEY_DISABLED", in: { key: { enabled: false, expiresAt: NOW - 1 } }, want: "KEY_DISABLED" },
  {
    name: "expired beats IP",
    in: { key: { expiresAt: NOW - 1, ips: ranges("192.168.0.0/16") } },
    want: "KEY_EXPIRED",
  },
  {
    name: "IP beats model",
    in: { key: { ips: ranges("192.168.0.0/16"), models: new Set(["gpt-4o"]) } },
    want: "IP_NOT_ALLOWED",
  },
  {
    name: "model beats balance",
    in: { key: { models: new Set(["gpt-4o"]) }, account: { available: 0 } },
    want: "MODEL_NOT_ALLOWED",
  },
  { name: "unpriced beats balance", in: { price: null, account: { available: 0 } }, want: "MODEL_NOT_PRICED" },
  {
    name: "balance beats quota",
    in: { account: { available: 0 }, key: { unlimited: false, quotaAvailable: 0 } },
    want: "ACCOUNT_BALANCE_EXHAUSTED",
  },
  {
    name: "quota beats rate limit",
    in: { key: { unlimited: false, quotaAvailable: 0, limits: { rpm: 1, tpm: 0, concurrency: 0 } }, rate: { requestsInWindow: 5 } },
    want: "KEY_QUOTA_EXHAUSTED",
  },

  // expiry boundaries
  { name: "expiresAt exactly now → expired", in: { key: { expiresAt: NOW } }, want: "KEY_EXPIRED" },
  { name: "expiresAt now+1 → allowed", in: { key: { expiresAt: NOW + 1 } }, want: "ALLOWED" },
  { name: "expiresAt null → never expires", in: { key: { expiresAt: null }, now: 8.64e15 }, want: "ALLOWED" },

  // IP
  { name: "IP inside whitelist", in: { key: { ips: ranges("10.0.0.0/8") } }, want: "ALLOWED" },
  { name: "IPv6 inside whitelist", in: { key: { ips: ranges("10.0.0.0/8", "2001:db8::/32") }, request: { clientIp: parseClientIp("2001:db8::9") } }, want: "ALLOWED" },
  { name: "IPv4-mapped client vs IPv4 whitelist", in: { key: { ips: ranges("10.0.0.0/8") }, request: { clientIp: parseClientIp("::ffff:10.9.9.9") } }, want: "ALLOWED" },
  { name: "no client IP (pipe) with a whitelist → deny", in: { key: { ips: ranges("0.0.0.0/0", "::/0") }, request: { clientIp: null } }, want: "IP_NOT_ALLOWED" },
  { name: "no client IP without a whitelist → fine", in: { request: { clientIp: null } }, want: "ALLOWED" },
  { name: "an empty whitelist admits nobody (fail closed)", in: { key: { ips: [] } }, want: "IP_NOT_ALLOWED" },

  // models
  { name: "model in key list", in: { key: { models: new Set(["gpt-4o-mini", "gpt-4o"]) } }, want: "ALLOWED" },
  { name: "group list restricts too", in: { group: { ratioPpm: 1_000_000, models: new Set(["gpt-4o"]) } }, want: "MODEL_NOT_ALLOWED" },
  {
    name: "must be in BOTH key and group lists",
    in: { key: { models: new Set(["gpt-4o-mini"]) }, group: { ratioPpm: 1_000_000, models: new Set(["gpt-4o"]) } },
    want: "MODEL_NOT_ALLOWED",
  },
  {
    name: "in both lists",
    in: { key: { models: new Set(["gpt-4o-mini"]) }, group: { ratioPpm: 1_000_000, models: new Set(["gpt-4o-mini", "gpt-4o"]) } },
    want: "ALLOWED",
  },
  { name: "group list and no model → MODEL_REQUIRED", in: { group: { ratioPpm: 1_000_000, models: new Set(["gpt-4o"]) }, request: { model: null } }, want: "MODEL_REQUIRED" },
  { name: "model names are case-sensitive", in: { key: { models: new Set(["GPT-4o-mini"]) } }, want: "MODEL_NOT_ALLOWED" },
  { name: "an empty model list admits no model", in: { key: { models: new Set() } }, want: "MODEL_NOT_ALLOWED" },
  { name: "unknown group: no list, ratio 1.0", in: { group: undefined }, want: "ALLOWED", estimate: BASE_ESTIMATE },
  {
    name: "no model, no restriction: default estimate",
    in: { request: { model: null }, price: null },
    want: "ALLOWED",
    estimate: CONFIG.defaultEstimateUnits,
  },
  {
    name: "unpriced model allowed by config: default estimate",
    in: { price: null, config: { denyUnpricedModels: false } },
    want: "ALLOWED",
    estimate: CONFIG.defaultEstimateUnits,
  },

  // estimate
  { name: "caller estimate wins over price", in: { request: { estimatedUnits: 7 } }, want: "ALLOWED", estimate: 7 },
  { name: "caller estimate 0 → price", in: { request: { estimatedUnits: 0 } }, want: "ALLOWED", estimate: BASE_ESTIMATE },
  { name: "caller estimate < 0 → price", in: { request: { estimatedUnits: -5 } }, want: "ALLOWED", estimate: BASE_ESTIMATE },
  {
    name: "max_tokens absent → defaultMaxTokens",
    in: { request: { maxTokens: null } },
    want: "ALLOWED",
    // 2 + 150 + 4096·0.6 = 2 + 150 + 2457.6 → 2609.6 → 2610
    estimate: 2610,
  },
  {
    name: "group ratio 1.5 applied before the single ceil",
    in: { group: { ratioPpm: 1_500_000, models: null } },
    want: "ALLOWED",
    estimate: 318, // 212 × 1.5
  },
  {
    name: "group ratio 0.333333 rounds up once",
    in: { group: { ratioPpm: 333_333, models: null } },
    want: "ALLOWED",
    estimate: 71, // 212 × 0.333333 = 70.666596 → 71
  },

  // balance / quota boundaries
  { name: "balance exactly the estimate → allowed", in: { account: { available: BASE_ESTIMATE } }, want: "ALLOWED" },
  { name: "balance estimate−1 → exhausted", in: { account: { available: BASE_ESTIMATE - 1 } }, want: "ACCOUNT_BALANCE_EXHAUSTED" },
  { name: "unknown account → exhausted", in: { account: null }, want: "ACCOUNT_BALANCE_EXHAUSTED" },
  { name: "negative balance (overdraft) → exhausted", in: { account: { available: -10 } }, want: "ACCOUNT_BALANCE_EXHAUSTED" },
  {
    name: "estimate 0 on a zero balance → exhausted",
    in: { account: { available: 0 }, price: { ...PRICE, inputPerMillion: 0, outputPerMillion: 0, perRequest: 0 } },
    want: "ACCOUNT_BALANCE_EXHAUSTED",
  },
  {
    name: "estimate 0 on a positive balance → allowed",
    in: { account: { available: 1 }, price: { ...PRICE, inputPerMillion: 0, outputPerMillion: 0, perRequest: 0 } },
    want: "ALLOWED",
    estimate: 0,
  },
  { name: "quota exactly the estimate → allowed", in: { key: { unlimited: false, quotaAvailable: BASE_ESTIMATE } }, want: "ALLOWED" },
  { name: "quota estimate−1 → exhausted", in: { key: { unlimited: false, quotaAvailable: BASE_ESTIMATE - 1 } }, want: "KEY_QUOTA_EXHAUSTED" },
  {
    name: "quota 0 with estimate 0 → exhausted",
    in: { key: { unlimited: false, quotaAvailable: 0 }, request: { estimatedUnits: null }, price: { ...PRICE, inputPerMillion: 0, outputPerMillion: 0, perRequest: 0 } },
    want: "KEY_QUOTA_EXHAUSTED",
  },
  { name: "unlimited key ignores quota", in: { key: { unlimited: true, quotaAvailable: -1000 } }, want: "ALLOWED" },

  // group budget (issue 19): units − spent − reserved must cover the estimate, like a quota
  { name: "group budget exactly the estimate → allowed", in: { group: { ratioPpm: 1_000_000, models: null, budget: { units: BASE_ESTIMATE + 10, spent: 10, reserved: 0 } } }, want: "ALLOWED" },
  { name: "group budget estimate−1 → exhausted", in: { group: { ratioPpm: 1_000_000, models: null, budget: { units: BASE_ESTIMATE + 10, spent: 10, reserved: 1 } } }, want: "GROUP_BUDGET_EXHAUSTED" },
  {
    name: "group budget overspent, estimate 0 → exhausted",
    in: { group: { ratioPpm: 1_000_000, models: null, budget: { units: 100, spent: 100, reserved: 0 } }, price: { ...PRICE, inputPerMillion: 0, outputPerMillion: 0, perRequest: 0 } },
    want: "GROUP_BUDGET_EXHAUSTED",
  },
  {
    name: "key quota is named before the group budget",
    in: { key: { unlimited: false, quotaAvailable: 0 }, group: { ratioPpm: 1_000_000, models: null, budget: { units: 100, spent: 100, reserved: 0 } } },
    want: "KEY_QUOTA_EXHAUSTED",
  },
  { name: "an unlimited key is still held to its group budget", in: { key: { unlimited: true }, group: { ratioPpm: 1_000_000, models: null, budget: { units: 1, spent: 0, reserved: 0 } } }, want: "GROUP_BUDGET_EXHAUSTED" },

  // rate limits
  { name: "rpm: one below the limit → allowed", in: { key: { limits: { rpm: 10, tpm: 0, concurrency: 0 } }, rate: { requestsInWindow: 9 } }, want: "ALLOWED" },
  {
    name: "rpm reached, reset soon → retry-after at least 1 s",
    in: { key: { limits: { rpm: 10, tpm: 0, concurrency: 0 } }, rate: { requestsInWindow: 10, windowResetMs: 20 } },
    want: "RATE_LIMITED",
    retryAfterMs: 1000,
  },
  {
    name: "tpm reached",
    in: { key: { limits: { rpm: 0, tpm: 1000, concurrency: 0 } }, rate: { tokensInWindow: 1000, windowResetMs: 30_500 } },
    want: "RATE_LIMITED",
    retryAfterMs: 30_500,
  },
  { name: "tpm one below → allowed", in: { key: { limits: { rpm: 0, tpm: 1000, concurrency: 0 } }, rate: { tokensInWindow: 999 } }, want: "ALLOWED" },
  {
    name: "concurrency reached → 1 s",
    in: { key: { limits: { rpm: 0, tpm: 0, concurrency: 2 } }, rate: { open: 2, windowResetMs: 50_000 } },
    want: "RATE_LIMITED",
    retryAfterMs: 1000,
  },
  {
    name: "several limits: the longest wait",
    in: { key: { limits: { rpm: 1, tpm: 0, concurrency: 1 } }, rate: { requestsInWindow: 1, open: 1, windowResetMs: 12_000 } },
    want: "RATE_LIMITED",
    retryAfterMs: 12_000,
  },
  {
    name: "fractional / NaN reset → whole ms, at least 1 s",
    in: { key: { limits: { rpm: 1, tpm: 0, concurrency: 0 } }, rate: { requestsInWindow: 1, windowResetMs: Number.NaN } },
    want: "RATE_LIMITED",
    retryAfterMs: 1000,
  },
  {
    name: "fractional reset is rounded up",
    in: { key: { limits: { rpm: 1, tpm: 0, concurrency: 0 } }, rate: { requestsInWindow: 1, windowResetMs: 1500.2 } },
    want: "RATE_LIMITED",
    retryAfterMs: 1501,
  },
  { name: "limits 0 = none", in: { rate: { requestsInWindow: 1e9, tokensInWindow: 1e12, open: 1e6 } }, want: "ALLOWED" },
];

describe("evaluatePolicy", () => {
  for (const c of cases) {
    it(c.name, () => {
      const v = evaluatePolicy(input(c.in));
      expect(v.reason).to.equal(c.want);
      expect(v.allowed).to.equal(c.want === "ALLOWED");
      if (v.allowed) {
        if (c.estimate !== undefined) expect(v.estimateUnits).to.equal(c.estimate);
        expect(Number.isSafeInteger(v.estimateUnits)).to.equal(true);
      } else {
        expect(v.retryAfterMs).to.equal(c.retryAfterMs ?? 0);
      }
    });
  }

  it("covers every deny reason of the table", () => {
    const covered = new Set(cases.map((c) => c.want));
    for (const r of REASONS) expect(covered.has(r), r).to.equal(true);
  });

  it("is deterministic and does not mutate its input", () => {
    const i = input({ key: { ips: ranges("10.0.0.0/8"), models: new Set(["gpt-4o-mini"]) } });
    const snapshot = JSON.stringify(i, (_k, v) => (v instanceof Set ? [...v] : v instanceof Uint8Array ? [...v] : v));
    const a = evaluatePolicy(i);
    const b = evaluatePolicy(i);
    expect(a).to.deep.equal(b);
    expect(JSON.stringify(i, (_k, v) => (v instanceof Set ? [...v] : v instanceof Uint8Array ? [...v] : v))).to.equal(snapshot);
  });
});

describe("estimateUnits", () => {
  const cfg = { inputEstimateTokens: 1000, defaultMaxTokens: 4096 };
  const ref = (p: PriceRecord, maxTokens: number | null, ratio: number, c = cfg): bigint => {
    const out = BigInt(maxTokens ?? c.defaultMaxTokens);
    const n =
      (BigInt(p.perRequest) * 1_000_000n + BigInt(c.inputEstimateTokens) * BigInt(p.inputPerMillion) + out * BigInt(p.outputPerMillion)) *
      BigInt(ratio);
    return (n + 1_000_000_000_000n - 1n) / 1_000_000_000_000n;
  };

  const table: [string, PriceRecord, number | null, number, number][] = [
    ["zero price", { model: "m", inputPerMillion: 0, outputPerMillion: 0, perRequest: 0 }, 100, 1_000_000, 0],
    ["per-request only", { model: "m", inputPerMillion: 0, outputPerMillion: 0, perRequest: 5 }, 100, 1_000_000, 5],
    ["1 unit per 1M output, 1 token → rounds up to 1", { model: "m", inputPerMillion: 0, outputPerMillion: 1, perRequest: 0 }, 1, 1_000_000, 1],
    ["exact multiple does not round up", { model: "m", inputPerMillion: 0, outputPerMillion: 1_000_000, perRequest: 0 }, 3, 1_000_000, 3],
    ["exact + 1e-12 rounds up", { model: "m", inputPerMillion: 0, outputPerMillion: 1_000_000, perRequest: 0 }, 3, 1_000_001, 4],
    ["ratio 0 → 0", PRICE, 100, 0, 0],
    ["base", PRICE, 100, 1_000_000, BASE_ESTIMATE],
    ["default max tokens", PRICE, null, 1_000_000, 2610],
    ["max_tokens 0 is honoured", PRICE, 0, 1_000_000, 152],
  ];
  for (const [name, price, maxTokens, ratio, want] of table) {
    it(name, () => {
      expect(estimateUnits(price, maxTokens, ratio, cfg)).to.equal(want);
      expect(BigInt(want)).to.equal(ref(price, maxTokens, ratio));
    });
  }

  it("large values take the BigInt path and stay exact", () => {
    // 1e9 output tokens × 9e9 units/M × ratio 3.000001 — far beyond 2^53 before division.
    const p: PriceRecord = { model: "m", inputPerMillion: 7_777_777, outputPerMillion: 9_000_000_001, perRequest: 123_456_789 };
    const want = ref(p, 1_000_000_000, 3_000_001);
    expect(BigInt(estimateUnits(p, 1_000_000_000, 3_000_001, cfg))).to.equal(want);
  });

  it("saturates at MAX_SAFE_INTEGER instead of losing precision silently", () => {
    const p: PriceRecord = { model: "m", inputPerMillion: 0, outputPerMillion: Number.MAX_SAFE_INTEGER, perRequest: 0 };
    expect(estimateUnits(p, Number.MAX_SAFE_INTEGER, 1_000_000, cfg)).to.equal(Number.MAX_SAFE_INTEGER);
  });

  it("fractional or invalid prices are rounded up / treated as 0, never throw", () => {
    const p: PriceRecord = { model: "m", inputPerMillion: Number.NaN, outputPerMillion: 999_999.5, perRequest: -3 };
    // in 0, out ceil(999999.5)=1_000_000 per M × 10 tokens = 10, per-request 0
    expect(estimateUnits(p, 10, 1_000_000, cfg)).to.equal(10);
  });

  it("matches the BigInt reference on 5000 random inputs (fast path and fallback)", () => {
    let s = 12345;
    const rnd = (max: number) => {
      s = (Math.imul(s, 1103515245) + 12345) >>> 0;
      return Math.floor((s / 4294967296) * max);
    };
    for (let n = 0; n < 5000; n++) {
      const scale = [1, 1e3, 1e6, 1e9][rnd(4)]!;
      const p: PriceRecord = {
        model: "m",
        inputPerMillion: rnd(scale),
        outputPerMillion: rnd(scale),
        perRequest: rnd(1000),
      };
      const maxTokens = rnd(3) === 0 ? null : rnd([10, 10_000, 1_000_000][rnd(3)]!);
      const ratio = rnd(3_000_000);
      const c = { inputEstimateTokens: rnd(100_000), defaultMaxTokens: rnd(100_000) };
      expect(BigInt(estimateUnits(p, maxTokens, ratio, c)), JSON.stringify({ p, maxTokens, ratio, c })).to.equal(ref(p, maxTokens, ratio, c));
    }
  });
});

describe("ceilDiv", () => {
  const table: [bigint, bigint, bigint][] = [
    [0n, 7n, 0n],
    [1n, 7n, 1n],
    [7n, 7n, 1n],
    [8n, 7n, 2n],
    [14n, 7n, 2n],
    [-1n, 7n, 0n],
    [-7n, 7n, -1n],
    [-8n, 7n, -1n],
    [10n ** 30n + 1n, 10n ** 12n, 10n ** 18n + 1n],
  ];
  for (const [n, d, want] of table) {
    it(`ceil(${n} / ${d}) = ${want}`, () => expect(ceilDiv(n, d)).to.equal(want));
  }
});
