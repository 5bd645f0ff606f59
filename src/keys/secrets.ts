// Secrets: generation, hashing, masking and at-rest encryption.
//
// An API key is "sk-" + 43 base62 characters drawn from 32 random bytes of
// crypto.randomBytes (256 bits). It is stored only as
//  - its SHA-256 (the lookup index; a fast hash is right for 256-bit random
//    secrets: there is nothing to brute-force), and
//  - the full value under AES-256-GCM with the master key, so operators can
//    reveal (copy) it later.
// No plaintext secret is ever written to disk or to a log.
import { createCipheriv, createDecipheriv, createHash, createHmac, hash, randomBytes, timingSafeEqual } from "node:crypto";
import { KEY_PREFIX, TOKEN_PREFIX } from "../domain/text.js";

/** The base62 alphabet (digits, upper, lower): key secrets, tokens, ids, reservation ids. */
export const BASE62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/** Base62 of the big-endian integer in `bytes`, left-padded to `width`. */
export function base62(bytes: Uint8Array, width: number): string {
  let n = 0n;
  for (const b of bytes) n = (n << 8n) | BigInt(b);
  let out = "";
  while (n > 0n) {
    out = BASE62[Number(n % 62n)] + out;
    n /= 62n;
  }
  return out.padStart(width, "0");
}

// The prefixes live with the one secret shape (redaction, refusal) in src/domain/text.ts.
export { KEY_PREFIX, TOKEN_PREFIX };

/** A new API key secret: "sk-" + base62(32 random bytes) (43 chars). */
export function generateKeySecret(): string {
  return KEY_PREFIX + base62(randomBytes(32), 43);
}

/** A new admin token secret: "aat-" + base62(32 random bytes). */
export function generateTokenSecret(): string {
  return TOKEN_PREFIX + base62(randomBytes(32), 43);
}

/** A new identifier: prefix + 20 base62 chars (112 random bits). */
export function generateId(prefix: string): string {
  return prefix + base62(randomBytes(14), 20);
}

/** SHA-256 of a secret, as raw bytes (the in-memory index form). */
export function hashSecretBytes(secret: string): Buffer {
  return createHash("sha256").update(secret, "utf8").digest();
}

/**
 * SHA-256 of a secret written into `out` (32 bytes), allocating no Buffer: the Check hot path
 * reuses one array. `hashSecretBytes` allocates an ArrayBuffer per call (~0.9 µs); the
 * "binary" (latin1) digest string is the same 32 bytes as char codes (~0.25 µs).
 */
export function hashSecretInto(secret: string, out: Uint8Array): Uint8Array {
  const d = hash("sha256", secret, "binary");
  for (let i = 0; i < 32; i++) out[i] = d.charCodeAt(i);
  return out;
}

/** SHA-256 of a secret, hex (the on-disk index form). */
export function hashSecret(secret: string): string {
  return hashSecretBytes(secret).toString("hex");
}

/** "sk-…a1B2": prefix + ellipsis + last 4. Never more of the secret. */
export function maskSecret(secret: string): string {
  const prefix = secret.startsWith(KEY_PREFIX) ? KEY_PREFIX : "";
  return `${prefix}…${secret.slice(-4)}`;
}

/** Constant-time equality of two hex digests (or any equal-length strings). */
export function constantTimeEqual(a: string, b: string): boolean {
  const ab = Buffer.from(a, "utf8");
  const bb = Buffer.from(b, "utf8");
  if (ab.length !== bb.length) {
    // Still spend the time of a comparison so length is not an oracle.
    timingSafeEqual(ab, ab);
    return false;
  }
  return timingSafeEqual(ab, bb);
}

/** AES-256-GCM with a 32-byte master key. Output: base64(iv[12] | tag[16] | ciphertext). */
export class SecretBox {
  readonly #key: Buffer;
  constructor(masterKey: Buffer) {
    if (masterKey.length !== 32) throw new TypeError("master key must be 32 bytes");
    this.#key = masterKey;
  }

  seal(plaintext: string, aad: string): string {
    const iv = randomBytes(12);
    const cipher = createCipheriv("aes-256-gcm", this.#key, iv);
    cipher.setAAD(Buffer.from(aad, "utf8"));
    const ct = Buffer.concat([cipher.update(plaintext, "utf8"), cipher.final()]);
    return Buffer.concat([iv, cipher.getAuthTag(), ct]).toString("base64");
  }

  /** Throws if the ciphertext was tampered with or sealed under another key or aad. */
  open(sealed: string, aad: string): string {
    const buf = Buffer.from(sealed, "base64");
    const decipher = createDecipheriv("aes-256-gcm", this.#key, buf.subarray(0, 12));
    decipher.setAAD(Buffer.from(aad, "utf8"));
    decipher.setAuthTag(buf.subarray(12, 28));
    return Buffer.concat([decipher.update(buf.subarray(28)), decipher.final()]).toString("utf8");
  }
}

/** Parses AISA_MASTER_KEY: 64 hex chars or base64 of 32 bytes. */
export function parseMasterKey(text: string): Buffer {
  const t = text.trim();
  const buf = /^[0-9a-fA-F]{64}$/.test(t) ? Buffer.from(t, "hex") : Buffer.from(t, "base64");
  if (buf.length !== 32) throw new Error("master key must be 32 bytes (64 hex chars or base64)");
  return buf;
}

/**
 * The master key's check value, kept in the store (meta "masterKeyCheck"): HMAC-SHA256 of a
 * constant under the key. It tells a wrong key at start, before any reveal fails, and says
 * nothing about the key itself.
 */
export function masterKeyCheckValue(masterKey: Buffer): string {
  return createHmac("sha256", masterKey).update("aisa-authz master key check v1").digest("hex");
}

/** Shortest operator token accepted (generated ones are 47 characters). */
export const MIN_TOKEN_LENGTH = 16;

/** Why `token` cannot be the operator token (null when it can). */
export function operatorTokenProblem(token: string): string | null {
  if (token.trim() === "") return "is empty";
  if (/[\s\x00-\x1f\x7f]/.test(token)) return "contains whitespace or control characters (it travels as `authorization: Bearer <token>`)";
  if (token.length < MIN_TOKEN_LENGTH) return `is ${token.length} characters long; it must have at least ${MIN_TOKEN_LENGTH}`;
  return null;
}
