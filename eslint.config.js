// Lint: typescript-eslint's recommended rules plus the import boundaries that
// keep the architecture honest (see README "Architecture").
import tseslint from "typescript-eslint";

const noIo = ["node:fs", "node:fs/promises", "fs", "node:net", "node:http", "node:http2", "node:child_process", "level", "classic-level", "@grpc/grpc-js", "@grpc/proto-loader", "pino", "prom-client"];

export default tseslint.config(
  { ignores: ["node_modules/**", "dist/**", "src/gen/**", "data/**", "bench/results/**"] },
  ...tseslint.configs.recommended,
  {
    rules: {
      "@typescript-eslint/no-unused-vars": ["error", { argsIgnorePattern: "^_", varsIgnorePattern: "^_" }],
      "@typescript-eslint/no-explicit-any": "off",
    },
  },
  {
    // Only the LevelDB engine imports level. (First: the specific blocks below
    // replace this rule for their files, and each repeats the ban on level.)
    files: ["src/**/*.ts"],
    ignores: ["src/store/level/**"],
    rules: {
      "no-restricted-imports": ["error", { paths: [{ name: "level", message: "only src/store/level imports level" }] }],
    },
  },
  {
    // The policy is pure: no I/O, no clock, no gRPC, no store.
    files: ["src/policy/**/*.ts", "src/domain/**/*.ts"],
    rules: {
      "no-restricted-imports": ["error", {
        paths: noIo.map((name) => ({ name, message: "policy/domain code does no I/O" })),
        patterns: [
          { group: ["**/store/**", "**/transport/**", "**/service/**", "**/gen/**"], message: "policy/domain imports only domain code" },
        ],
      }],
      "no-restricted-properties": ["error", { object: "Date", property: "now", message: "pass `now` in" }],
    },
  },
  {
    // The key book is engine-independent: no I/O, no storage engine, no service or transport
    // (an engine persists what it holds; a second engine uses the same book).
    files: ["src/store/book/**/*.ts"],
    rules: {
      "no-restricted-imports": ["error", {
        paths: noIo.map((name) => ({ name, message: "the key book does no I/O: engines persist it" })),
        patterns: [
          { group: ["**/store/level/**", "**/transport/**", "**/service/**", "**/gen/**"], message: "the key book imports only domain, policy and store types" },
        ],
      }],
    },
  },
  {
    // Engines and the key book own no timer: they expose steps that the service layer's
    // scheduler (src/service/scheduler.ts, composed in main.ts) runs.
    files: ["src/store/**/*.ts"],
    rules: {
      "no-restricted-globals": ["error", { name: "setInterval", message: "the store owns no timer: expose a step for service/scheduler.ts" }],
    },
  },
  {
    // The usage vocabulary and its alerts are pure (history, query and live hold the state).
    files: ["src/service/usage/counters.ts", "src/service/usage/alerts.ts"],
    rules: {
      "no-restricted-imports": ["error", {
        paths: noIo.map((name) => ({ name, message: "usage counters and alerts are pure" })),
        patterns: [{ group: ["**/transport/**", "**/gen/**", "**/store/level/**", "**/store/book/**"], message: "usage counters and alerts are pure" }],
      }],
      "no-restricted-properties": ["error", { object: "Date", property: "now", message: "pass `now` in" }],
    },
  },
  {
    // Transports translate at the edge and know storage only through interfaces.
    files: ["src/transport/**/*.ts"],
    rules: {
      "no-restricted-imports": ["error", {
        paths: ["level", "classic-level"].map((name) => ({ name, message: "transports never touch storage engines" })),
        patterns: [{ group: ["**/store/level/**", "**/store/memory/**"], message: "transports use store interfaces only" }],
      }],
    },
  },
  {
    // The TUI and CLI are gRPC clients only: they never open the store.
    files: ["tui/**/*.ts", "tui/**/*.tsx", "src/cli/**/*.ts"],
    rules: {
      "no-restricted-imports": ["error", {
        paths: ["level", "classic-level"].map((name) => ({ name, message: "the TUI and CLI never open the store" })),
        patterns: [{ group: ["**/store/**", "**/service/**"], message: "the TUI and CLI are gRPC clients only" }],
      }],
    },
  },
  {
    // The TUI's screen state, its rules and its actions are plain modules, tested without Ink;
    // React and Ink only in the hooks (use*.ts). (Restates the block above: a later block's rule replaces it.)
    files: ["tui/state/**/*.ts"],
    ignores: ["tui/state/use*.ts"],
    rules: {
      "no-restricted-imports": ["error", {
        paths: [
          ...["level", "classic-level"].map((name) => ({ name, message: "the TUI and CLI never open the store" })),
          ...["ink", "react"].map((name) => ({ name, message: "tui/state is tested without Ink: React and Ink only in use*.ts hooks" })),
        ],
        patterns: [{ group: ["**/store/**", "**/service/**"], message: "the TUI and CLI are gRPC clients only" }],
      }],
    },
  },
);
