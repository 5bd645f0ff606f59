// Structured JSON logs (pino) with credentials redacted at the logger, so no
// call site can leak a key or token by accident.
import { pino, type Logger } from "pino";
import { redactSecrets } from "../domain/errors.js";

export const REDACT_PATHS = [
  "secret",
  "*.secret",
  "apiKey",
  "*.apiKey",
  "api_key",
  "*.api_key",
  "token",
  "*.token",
  "authorization",
  "*.authorization",
  "headers.authorization",
  'headers["x-api-key"]',
  'headers["api-key"]',
  'headers["x-goog-api-key"]',
  "*.headers.authorization",
  '*.headers["x-api-key"]',
  '*.headers["api-key"]',
  '*.headers["x-goog-api-key"]',
];

/** Replaces anything shaped like an API key or admin token in free text (the same rule as error messages). */
export const scrubSecrets = redactSecrets;

export function createLogger(level: string, destination?: NodeJS.WritableStream): Logger {
  return pino(
    {
      level,
      base: { service: "aisa-authz" },
      redact: { paths: REDACT_PATHS, censor: "[REDACTED]" },
      timestamp: pino.stdTimeFunctions.isoTime,
      formatters: { level: (label) => ({ level: label }) },
      hooks: {
        // Free-text messages are scrubbed too (e.g. an error message quoting input).
        logMethod(args, method) {
          const scrubbed = args.map((a) => (typeof a === "string" ? scrubSecrets(a) : a)) as typeof args;
          return method.apply(this, scrubbed);
        },
      },
      serializers: {
        err: (e: unknown) => {
          const s = pino.stdSerializers.err(e as Error);
          return { ...s, message: scrubSecrets(String(s.message ?? "")), stack: s.stack ? scrubSecrets(s.stack) : undefined };
        },
      },
    },
    destination ?? pino.destination({ fd: 1, sync: false }),
  );
}
