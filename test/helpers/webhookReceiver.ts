// A webhook receiver for tests: a real HTTP server on 127.0.0.1:0 that records every delivery
// (path, event type, signature headers, raw body) and answers 204.
import * as http from "node:http";
import type { AddressInfo } from "node:net";

/** One delivery as the receiver saw it. */
export interface Post {
  path: string;
  type: string;
  signature: string;
  timestamp: string;
  body: string;
}

export interface WebhookReceiver {
  /** Every delivery so far, in arrival order. */
  readonly posts: Post[];
  readonly port: number;
  close(): Promise<void>;
}

export async function startWebhookReceiver(): Promise<WebhookReceiver> {
  const posts: Post[] = [];
  const server = http.createServer((req, res) => {
    let body = "";
    req.on("data", (c) => (body += c));
    req.on("end", () => {
      posts.push({ path: req.url ?? "", type: JSON.parse(body).type, signature: String(req.headers["x-aisa-signature"]), timestamp: String(req.headers["x-aisa-timestamp"]), body });
      res.writeHead(204).end();
    });
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  return {
    posts,
    port: (server.address() as AddressInfo).port,
    async close() {
      server.closeAllConnections();
      await new Promise<void>((r) => server.close(() => r()));
    },
  };
}

/** Polls `cond` every 25 ms until it holds; past `ms` it fails naming `what`. */
export async function until(what: string, cond: () => boolean | Promise<boolean>, ms = 20_000): Promise<void> {
  const end = Date.now() + ms;
  while (!(await cond())) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}
