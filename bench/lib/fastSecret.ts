// A key secret's shape for bench seeding.
import { randomBytes } from "node:crypto";

const BASE62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/**
 * "sk-" + 43 base62 chars from random bytes. (The product's generateKeySecret uses an exact
 * BigInt base62 conversion; for a million bench keys the byte % 62 shortcut is fine: the
 * secret's only role here is to be hashed and sealed.)
 */
export function fastSecret(): string {
  const b = randomBytes(43);
  let s = "sk-";
  for (let i = 0; i < 43; i++) s += BASE62[b[i]! % 62];
  return s;
}
