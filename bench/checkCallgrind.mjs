// Instructions per Envoy Check through the Envoy endpoint, counted by valgrind in ONE process:
// the endpoint (ROOT/dist: createH2UnaryServer + createEnvoyH2Methods over an Authorizer and a
// LevelStore holding one key, as main.ts wires them) and a node:http2 client sending the bench's
// request (8 headers, a 1 KB chat body; 16 in flight, `grpc-timeout: 10S`). The client is the
// same code for every build, so the difference between two builds is the endpoint's. Nothing
// else runs in the process (no metrics, usage, scheduler), so the count per Check does not
// depend on how long valgrind takes (a whole sidecar under valgrind spends a share that grows
// with wall time in its timers: its counts moved by ±20 % between runs of one build).
// Run with N = 0 and N = 3000 for each build (`node scripts/build.mjs` first), divide the
// difference of the two "Collected" totals by N. Each run sends 1000 warm-up Checks first.
//   valgrind --tool=callgrind --callgrind-out-file=/dev/null node bench/checkCallgrind.mjs ROOT 0
//   valgrind --tool=callgrind --callgrind-out-file=/dev/null node bench/checkCallgrind.mjs ROOT 3000
import http2 from "node:http2";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
const [root, nArg] = process.argv.slice(2);
const N = Number(nArg);
const d = (p) => import(join(root, "dist/src", p));
const { LevelStore } = await d("store/level/levelStore.js");
const { hashSecret, maskSecret } = await d("keys/secrets.js");
const { Authorizer } = await d("service/authorizer.js");
const { createEnvoyCheck } = await d("transport/envoy/authorizationService.js");
const { createEnvoyH2Methods } = await d("transport/envoy/h2Methods.js");
const { HealthState } = await d("transport/health.js");
const { createH2UnaryServer } = await d("transport/h2unary.js");
const { CheckRequest } = await d("gen/envoy/service/auth/v3/external_auth.js");

const dir = mkdtempSync(join(tmpdir(), "check-cg-"));
const store = new LevelStore({ dir });
await store.open(Date.now());
const actor = { actor: "operator", action: "Bench", target: "t" };
await store.adjustBalance("default", 1e15, actor);
await store.setPrice({ model: "gpt-4o-mini", inputPerMillion: 75_000, outputPerMillion: 300_000, perRequest: 0 }, actor);
const secret = "sk-cg-check-abcdefghijklmnopqrstuvwxyz0123456789";
await store.insertKey({ id: "key_cgcheck0000000000001", name: "k", accountId: "default", group: "default", status: "enabled", unlimited: true, quotaTotal: 0, expiresAt: null, models: [], ips: [], createdAt: 1, updatedAt: 1, limits: { rpm: 0, tpm: 0, concurrency: 0 }, refill: "none", metadata: {}, secretHash: hashSecret(secret), secretEnc: "c2VhbGVk", masked: maskSecret(secret), prevSecretHash: null, prevSecretExpiresAt: null }, actor);
const authorizer = new Authorizer({ store, reservationTtlMs: 10_000, policy: { denyUnpricedModels: true, defaultEstimateUnits: 1000, inputEstimateTokens: 1000, defaultMaxTokens: 1024 } });
const methods = createEnvoyH2Methods({ decide: createEnvoyCheck({ authorizer, xffTrustedHops: 0, clock: Date.now }), health: new HealthState(), onLatency: () => {} });
const server = createH2UnaryServer({ methods, maxReceiveMessageBytes: 4 << 20, toStatus: (e) => ({ code: 13, details: String(e) }) });
const port = await server.listen("127.0.0.1", 0);

// The bench's request (bench/lib/payloads.ts envoyCheckRequest), model after a 1 KB of messages.
const messages = [
  { role: "system", content: "You are a helpful assistant for an online store. Answer briefly and cite the order number when relevant." },
  { role: "user", content: "Hi! I ordered a pair of running shoes last week (order #48213) and they have not arrived yet. Can you check?" },
  { role: "assistant", content: "Of course. Order #48213 shipped on Monday with tracking 1Z999AA10123456784; the carrier shows it out for delivery today." },
  { role: "user", content: "Great, thanks. One more thing: " + "could you also tell me whether the return window is 30 days? ".repeat(8) },
];
const body = JSON.stringify({ messages, model: "gpt-4o-mini", max_tokens: 256, temperature: 0.2, stream: false });
const msg = CheckRequest.encode(
  CheckRequest.fromPartial({
    attributes: {
      source: { address: { address: { $case: "socketAddress", value: { address: "203.0.113.7", portSpecifier: { $case: "portValue", value: 51234 } } } } },
      destination: { address: { address: { $case: "socketAddress", value: { address: "10.0.0.10", portSpecifier: { $case: "portValue", value: 8443 } } } } },
      request: {
        time: new Date(1764270000000),
        http: {
          id: "4815162342",
          method: "POST",
          headers: { ":authority": "api.aisa.example", ":method": "POST", ":path": "/v1/chat/completions", ":scheme": "https", authorization: `Bearer ${secret}`, "content-type": "application/json", "content-length": String(body.length), "user-agent": "OpenAI/Python 1.54.0", accept: "application/json", "x-request-id": "6f1c2a9e-3b7d-4c1e-9a52-0000000012d5", "x-forwarded-for": "203.0.113.7", "x-forwarded-proto": "https" },
          path: "/v1/chat/completions",
          host: "api.aisa.example",
          scheme: "https",
          size: String(body.length),
          protocol: "HTTP/1.1",
          body,
        },
      },
    },
  }),
).finish();
const frame = Buffer.alloc(5 + msg.length);
frame.writeUInt32BE(msg.length, 1);
frame.set(msg, 5);

const client = http2.connect(`http://127.0.0.1:${port}`);
const HEADERS = { ":method": "POST", ":path": "/envoy.service.auth.v3.Authorization/Check", "content-type": "application/grpc", te: "trailers", "grpc-timeout": "10S" };
function one() {
  return new Promise((resolve, reject) => {
    const req = client.request(HEADERS);
    let bytes = 0;
    req.on("data", (c) => (bytes += c.length));
    req.on("trailers", (t) => (t["grpc-status"] === "0" && bytes > 100 ? resolve() : reject(new Error(`grpc-status ${t["grpc-status"]}`))));
    req.on("error", reject);
    req.end(frame);
  });
}
async function run(n) {
  let next = 0;
  await Promise.all(
    Array.from({ length: 16 }, async () => {
      while (next < n) {
        next++;
        await one();
      }
    }),
  );
}
await run(1000); // warm-up, both N
await run(N);
client.close();
await server.close(1000);
await store.close();
rmSync(dir, { recursive: true, force: true });
