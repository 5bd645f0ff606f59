// The two baselines the bench compares the sidecar with, each run as its own process:
//   noop  — a grpc-js server (same options as the sidecar's data plane) whose Check answers a
//           fixed CheckResponse: the cost of grpc-js itself (decode, handler, encode). It also
//           serves aisa.v1.Authorizer with fixed replies (the Consume baseline). It encodes its
//           replies the way the sidecar does (reused writers, src/transport/serialize.ts), so
//           the Check/no-op ratio measures the sidecar's work, not a serializer difference.
//   noop-raw — the same grpc-js server, but its Check decodes nothing (the request stays a
//           Buffer) and answers pre-encoded bytes: the cost of grpc-js's call machinery alone
//           (issue 18's "decodes nothing" baseline).
//   floor — a raw node:http2 server answering pre-encoded gRPC bytes: the Node floor.
// Usage: node --import tsx bench/servers.ts noop|noop-raw|floor
// Prints one JSON line {"msg":"ready","address":"127.0.0.1:PORT"}; exits on SIGTERM.
import http2 from "node:http2";
import * as grpc from "@grpc/grpc-js";
import { AuthorizationService } from "../src/gen/envoy/service/auth/v3/external_auth.js";
import { AuthorizerService, CheckResponse as AppCheckResponse, ConsumeBatchResponse, ConsumeResponse, type ConsumeBatchRequest } from "../src/gen/aisa/v1/authorizer.js";
import { CheckResponse as EnvoyCheckResponse } from "../src/gen/envoy/service/auth/v3/external_auth.js";
import { withReusedWriters } from "../src/transport/serialize.js";
import { encodeFixedCheckResponse, fixedCheckResponse, grpcFrame } from "./lib/payloads.js";

const mode = process.argv[2];

function ready(port: number): void {
  process.stdout.write(JSON.stringify({ msg: "ready", mode, address: `127.0.0.1:${port}`, pid: process.pid }) + "\n");
}

/** Binds a grpc-js baseline on a free loopback port, says ready, and exits on SIGTERM. */
function serveGrpc(server: grpc.Server): void {
  server.bindAsync("127.0.0.1:0", grpc.ServerCredentials.createInsecure(), (err, port) => {
    if (err) throw err;
    ready(port);
  });
  process.on("SIGTERM", () => {
    server.tryShutdown(() => process.exit(0));
    // Load-generator connections may linger; a baseline holds no state worth draining.
    setTimeout(() => process.exit(0), 1000).unref();
  });
}

if (mode === "noop") {
  const fixed = fixedCheckResponse();
  const server = new grpc.Server({ "grpc.max_receive_message_length": 32 * 1024 * 1024 });
  server.addService(withReusedWriters(AuthorizationService, { check: EnvoyCheckResponse }), {
    check(_call: grpc.ServerUnaryCall<unknown, unknown>, callback: grpc.sendUnaryData<unknown>) {
      callback(null, fixed);
    },
  });
  const appCheck = AppCheckResponse.fromPartial({ allowed: true, reason: 1, httpStatus: 200, keyId: "key_0000000000000000000A", reservationId: "rsv_0" });
  const consumed = ConsumeResponse.fromPartial({ unitsCharged: "180", keyRemaining: "0", keyUnlimited: true, accountBalance: "1000000", replayed: false, keyId: "key_0000000000000000000A" });
  server.addService(withReusedWriters(AuthorizerService, { check: AppCheckResponse, consume: ConsumeResponse, consumeBatch: ConsumeBatchResponse }), {
    check(_call: grpc.ServerUnaryCall<unknown, unknown>, callback: grpc.sendUnaryData<unknown>) {
      callback(null, appCheck);
    },
    consume(_call: grpc.ServerUnaryCall<unknown, unknown>, callback: grpc.sendUnaryData<unknown>) {
      callback(null, consumed);
    },
    // The fixed reply, once per item (the batch is decoded, as grpc-js decodes every request).
    consumeBatch(call: grpc.ServerUnaryCall<ConsumeBatchRequest, unknown>, callback: grpc.sendUnaryData<unknown>) {
      callback(null, { results: call.request.items.map(() => ({ result: { $case: "ok", value: consumed } })) });
    },
  });
  serveGrpc(server);
} else if (mode === "noop-raw") {
  const reply = Buffer.from(encodeFixedCheckResponse());
  const server = new grpc.Server({ "grpc.max_receive_message_length": 32 * 1024 * 1024 });
  const check = AuthorizationService.check;
  server.addService(
    { check: { ...check, requestDeserialize: (b: Buffer) => b, responseSerialize: () => reply } },
    {
      check(_call: grpc.ServerUnaryCall<unknown, unknown>, callback: grpc.sendUnaryData<unknown>) {
        callback(null, reply);
      },
    },
  );
  serveGrpc(server);
} else if (mode === "floor") {
  const frame = grpcFrame(encodeFixedCheckResponse());
  const headers = { ":status": 200, "content-type": "application/grpc" };
  const trailers = { "grpc-status": "0" };
  const server = http2.createServer();
  server.on("stream", (stream) => {
    // Read the whole request (as any unary server must), then answer.
    stream.on("data", () => {});
    stream.on("end", () => {
      if (stream.destroyed) return;
      stream.respond(headers, { waitForTrailers: true });
      stream.once("wantTrailers", () => stream.sendTrailers(trailers));
      stream.end(frame);
    });
    stream.on("error", () => {});
  });
  server.listen(0, "127.0.0.1", () => ready((server.address() as { port: number }).port));
  process.on("SIGTERM", () => {
    server.close();
    process.exit(0);
  });
} else {
  process.stderr.write("usage: servers.ts noop|noop-raw|floor\n");
  process.exit(2);
}
