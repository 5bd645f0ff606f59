// Regenerates src/gen/ from proto/ with ts-proto (npm `protoc`, no network).
// src/gen/ is committed and never edited by hand.
import { execFileSync } from "node:child_process";
import { readdirSync, rmSync, statSync } from "node:fs";
import { join, relative } from "node:path";

const root = new URL("..", import.meta.url).pathname;
const protoDir = join(root, "proto");
const out = join(root, "src", "gen");

function walk(dir) {
  return readdirSync(dir).flatMap((name) => {
    const p = join(dir, name);
    return statSync(p).isDirectory() ? walk(p) : p.endsWith(".proto") ? [p] : [];
  });
}

const files = walk(protoDir).map((p) => relative(protoDir, p)).sort();
rmSync(out, { recursive: true, force: true });
execFileSync("mkdir", ["-p", out]);
execFileSync(
  join(root, "node_modules", ".bin", "protoc"),
  [
    `--plugin=protoc-gen-ts_proto=${join(root, "node_modules", ".bin", "protoc-gen-ts_proto")}`,
    `-I`, protoDir,
    `--ts_proto_out=${out}`,
    "--ts_proto_opt=outputServices=grpc-js,esModuleInterop=true,env=node,importSuffix=.js,useOptionals=messages,oneof=unions-value,forceLong=string",
    ...files,
  ],
  { stdio: "inherit", cwd: root },
);
console.log(`generated ${files.length} proto files into src/gen/`);
