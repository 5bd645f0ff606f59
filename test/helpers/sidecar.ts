// Test helpers: a real sidecar in this process (real LevelDB in a temp dir,
// real gRPC servers on 127.0.0.1:0) and real gRPC clients.
import { removeAtEnd, removeDir, tempDir } from "./tmp.js";
import { Writable } from "node:stream";
import * as grpc from "@grpc/grpc-js";
import { pino } from "pino";
import { startSidecar, type Sidecar, type StartOptions } from "../../src/main.js";
import * as adminPb from "../../src/gen/aisa/v1/admin.js";
import * as authorizerPb from "../../src/gen/aisa/v1/authorizer.js";

const { AdminClient } = adminPb;
const { AuthorizerClient } = authorizerPb;
type AdminClient = adminPb.AdminClient;
type AuthorizerClient = authorizerPb.AuthorizerClient;

export { tempDir, removeDir };

/** Captures log lines in memory (tests assert on redaction, never on wording). */
export class LogSink extends Writable {
  readonly lines: string[] = [];
  override _write(chunk: Buffer, _enc: string, cb: () => void): void {
    this.lines.push(...chunk.toString("utf8").split("\n").filter(Boolean));
    cb();
  }
}

export interface TestSidecar extends Sidecar {
  dir: string;
  logs: LogSink;
  admin: AdminClient;
  authorizer: AuthorizerClient;
  meta(token?: string): grpc.Metadata;
  close(): Promise<void>;
}

/**
 * A sidecar on `cfg.dataDir`, or on a temp dir of its own: that one stays after close() (a test may
 * restart on it or read its files) and is removed at the end of the run (removeAtEnd), or at once
 * when the start fails.
 */
export async function startTestSidecar(cfg: StartOptions = {}): Promise<TestSidecar> {
  const dir = cfg.dataDir ?? removeAtEnd(await tempDir());
  const logs = new LogSink();
  const logger = pino({ level: "info" }, logs);
  let s: Sidecar;
  try {
    s = await startSidecar({
      dataDir: dir,
      listen: "127.0.0.1:0",
      envoyListen: "127.0.0.1:0",
      httpListen: "127.0.0.1:0",
      adminListen: "127.0.0.1:0",
      metricsListen: "127.0.0.1:0",
      logger,
      ...cfg,
    });
  } catch (err) {
    if (cfg.dataDir === undefined) await removeDir(dir);
    throw err;
  }
  const admin = new AdminClient(s.adminAddress, grpc.credentials.createInsecure());
  const authorizer = new AuthorizerClient(s.dataAddress, grpc.credentials.createInsecure());
  return Object.assign(s, {
    dir,
    logs,
    admin,
    authorizer,
    meta(token = s.adminToken) {
      const m = new grpc.Metadata();
      if (token) m.set("authorization", `Bearer ${token}`);
      return m;
    },
    async close() {
      admin.close();
      authorizer.close();
      await s.stop();
    },
  });
}


/** ts-proto encoders want complete messages: fill defaults with <Method>Request.fromPartial. */
function complete(method: string, req: unknown): unknown {
  const name = `${method[0]!.toUpperCase()}${method.slice(1)}Request`;
  for (const mod of [adminPb, authorizerPb] as Record<string, any>[]) {
    if (mod[name]?.fromPartial) return mod[name].fromPartial(req);
  }
  return req;
}

/** Promisifies a unary call of a ts-proto grpc-js client (partial requests allowed). */
export function call<Req, Res>(
  client: any,
  method: string,
  req: Req,
  meta: grpc.Metadata = new grpc.Metadata(),
): Promise<Res> {
  return new Promise((resolve, reject) => {
    client[method](complete(method, req), meta, { deadline: Date.now() + 10_000 }, (err: grpc.ServiceError | null, res: Res) => (err ? reject(err) : resolve(res)));
  });
}

/** Expects a gRPC error with `code`; returns it. */
export async function expectGrpcError(p: Promise<unknown>, code: grpc.status): Promise<grpc.ServiceError> {
  try {
    await p;
  } catch (err) {
    const e = err as grpc.ServiceError;
    if (e.code !== code) throw new Error(`expected gRPC ${grpc.status[code]}, got ${grpc.status[e.code]}: ${e.details}`);
    return e;
  }
  throw new Error(`expected gRPC ${grpc.status[code]}, but the call succeeded`);
}
