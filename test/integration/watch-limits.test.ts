// WatchUsage streams are capped per admin token and in total (issue 13, finding 4): the stream
// past a cap is refused RESOURCE_EXHAUSTED naming the limit; closing a stream frees its slot.
import { expect } from "chai";
import * as grpc from "@grpc/grpc-js";
import { status } from "@grpc/grpc-js";
import { WatchUsageRequest, type CreateTokenResponse, type UsageEvent } from "../../src/gen/aisa/v1/admin.js";
import { call, removeDir, startTestSidecar, type TestSidecar } from "../helpers/sidecar.js";

/** Opens a WatchUsage stream and waits for its first message (admitted) or its error (refused). */
function open(s: TestSidecar, token: string): Promise<{ stream: grpc.ClientReadableStream<UsageEvent>; error?: grpc.ServiceError }> {
  const stream = s.admin.watchUsage(WatchUsageRequest.fromPartial({}), s.meta(token));
  return new Promise((resolve, reject) => {
    const t = setTimeout(() => reject(new Error("no message and no error within 10 s")), 10_000);
    stream.once("data", () => {
      clearTimeout(t);
      resolve({ stream });
    });
    stream.once("error", (error: grpc.ServiceError) => {
      clearTimeout(t);
      resolve({ stream, error });
    });
  });
}

function cancel(stream: grpc.ClientReadableStream<UsageEvent>): void {
  stream.on("error", () => {}); // CANCELLED, expected
  stream.cancel();
}

describe("WatchUsage stream caps", function () {
  this.timeout(60_000);
  let s: TestSidecar;
  const streams: grpc.ClientReadableStream<UsageEvent>[] = [];
  before(async () => {
    s = await startTestSidecar({ watchStreamsPerToken: 3, watchStreamsTotal: 5 });
  });
  after(async () => {
    for (const st of streams) cancel(st);
    await s.close();
    await removeDir(s.dir);
  });

  it("per token: the 4th stream of a read-only token is RESOURCE_EXHAUSTED naming the limit; closing one frees its slot", async () => {
    const ro = (await call<unknown, CreateTokenResponse>(s.admin, "createToken", { name: "watcher", readOnly: true }, s.meta())).secret;
    for (let i = 0; i < 3; i++) {
      const r = await open(s, ro);
      expect(r.error, r.error?.details).to.equal(undefined);
      streams.push(r.stream);
    }
    const refused = await open(s, ro);
    expect(refused.error?.code).to.equal(status.RESOURCE_EXHAUSTED);
    expect(refused.error?.details).to.include("at most 3 per token").and.include("--watch-streams-per-token");
    // Close one; the server notices the cancel and the slot is free again (bounded retries).
    cancel(streams.shift()!);
    let again: Awaited<ReturnType<typeof open>> | undefined;
    for (let i = 0; i < 50; i++) {
      again = await open(s, ro);
      if (!again.error) break;
      expect(again.error.code).to.equal(status.RESOURCE_EXHAUSTED);
      await new Promise((r) => setTimeout(r, 100));
    }
    expect(again?.error, again?.error?.details).to.equal(undefined);
    streams.push(again!.stream);
  });

  it("in total: past 5 open streams any token is RESOURCE_EXHAUSTED naming the total limit", async () => {
    // 3 open (the read-only token's); the operator opens 2 more, the 3rd is over the total.
    for (let i = 0; i < 2; i++) {
      const r = await open(s, s.adminToken);
      expect(r.error, r.error?.details).to.equal(undefined);
      streams.push(r.stream);
    }
    const refused = await open(s, s.adminToken);
    expect(refused.error?.code).to.equal(status.RESOURCE_EXHAUSTED);
    expect(refused.error?.details).to.include("at most 5 in total").and.include("--watch-streams-total");
  });
});
