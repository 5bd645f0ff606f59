// THE limits of what a key may hold, in one place: the service enforces them, the CLI and the
// TUI form check them as you type with these same values and functions, so a form's live
// validation can never disagree with the server. Pure; imports only other domain modules.
import { modelNameProblem, textProblem } from "./text.js";
import { explainIpProblem, normalizeIpEntry } from "./ip.js";

/** Key (and account, token) names: 1..128 characters after trimming. */
export const NAME_MAX = 128;
/** Model names: 1..128 characters, no whitespace (src/domain/text.ts modelNameProblem). */
export { MODEL_NAME_MAX } from "./text.js";
/** Models in one key's or group's list. */
export const MODELS_MAX = 512;
/** Entries in one key's IP whitelist. */
export const IPS_MAX = 256;
/** Metadata: entries, key length, value length. */
export const METADATA_ENTRIES_MAX = 32;
export const METADATA_KEY_MAX = 64;
export const METADATA_VALUE_MAX = 256;
/** The largest amount of a relative expiry ("9999d", "9999mo"). */
export const EXPIRY_AMOUNT_MAX = 9999;

/** Why a key name is refused (after trimming), or null. */
export function nameProblem(name: string): string | null {
  const s = name.trim();
  if (s.length === 0) return "must not be empty";
  if (s.length > NAME_MAX) return `must be at most ${NAME_MAX} characters (got ${s.length})`;
  return textProblem(s);
}

/** Why a model name is refused, or null (the same rule as the service's). */
export function modelProblem(name: string): string | null {
  return modelNameProblem(name.trim());
}

/** Why one IP whitelist entry is refused (in an operator's words), or null: exactly what the service accepts. */
export function ipEntryProblem(entry: string): string | null {
  try {
    normalizeIpEntry(entry);
    return null;
  } catch (err) {
    return explainIpProblem(entry, err instanceof Error ? err.message.replace(/^ip: /, "") : "not an IPv4/IPv6 address or CIDR");
  }
}
