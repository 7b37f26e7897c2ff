import { crc32 } from "./crc32";
import { toHex, utf8 } from "./encoding";
import { BASE62_ALPHABET, randomBase62 } from "./random";

export type SecurityLevel = "basic" | "enhanced" | "enterprise";
export type KeyEnvironment = "live" | "test";

/** Bits of entropy per level (NIST SP 800-57 Pt 1 §5.6.1: 128 bits is the floor for new keys). */
export const ENTROPY_BITS: Record<SecurityLevel, number> = { basic: 128, enhanced: 192, enterprise: 256 };

const CHECKSUM_LENGTH = 6;
const MIN_RANDOM_LENGTH = randomLengthFor(128);
const MAX_RANDOM_LENGTH = randomLengthFor(256);
export const PREFIX_PATTERN = /^[a-z][a-z0-9]{0,7}$/;
const KEY_PATTERN = /^([a-z][a-z0-9]{0,7})_(live|test)_([0-9A-Za-z]+)$/;

/** Base62 characters needed to carry at least `bits` bits. */
export function randomLengthFor(bits: number): number {
  return Math.ceil(bits / Math.log2(62));
}

function checksumOf(randomPart: string): string {
  let value = crc32(randomPart);
  let out = "";
  for (let i = 0; i < CHECKSUM_LENGTH; i++) {
    out = BASE62_ALPHABET[value % 62] + out;
    value = Math.floor(value / 62);
  }
  return out;
}

export interface ParsedKey {
  prefix: string;
  environment: KeyEnvironment;
  randomPart: string;
}

export function generateKey(prefix: string, environment: KeyEnvironment, level: SecurityLevel): string {
  if (!PREFIX_PATTERN.test(prefix)) throw new TypeError("invalid key prefix");
  const randomPart = randomBase62(randomLengthFor(ENTROPY_BITS[level]));
  return `${prefix}_${environment}_${randomPart}${checksumOf(randomPart)}`;
}

/**
 * Shape and checksum check with no I/O. Like GitHub's token checksums, this rejects typos and
 * garbage before any storage read, so brute-force noise never reaches D1.
 */
export function parseKey(key: string): ParsedKey | null {
  if (key.length > 8 + 6 + MAX_RANDOM_LENGTH + CHECKSUM_LENGTH) return null;
  const match = KEY_PATTERN.exec(key);
  if (!match) return null;
  const [, prefix, environment, body] = match as unknown as [string, string, KeyEnvironment, string];
  const randomLength = body.length - CHECKSUM_LENGTH;
  if (randomLength < MIN_RANDOM_LENGTH || randomLength > MAX_RANDOM_LENGTH) return null;
  const randomPart = body.slice(0, randomLength);
  if (checksumOf(randomPart) !== body.slice(randomLength)) return null;
  return { prefix, environment, randomPart };
}

/**
 * SHA-256 of the whole key. Keys carry >= 128 random bits, so an unsalted fast hash is enough:
 * there is nothing to brute-force (OWASP Password Storage CS: slow hashes are for low-entropy input).
 */
export async function hashKey(key: string): Promise<string> {
  return toHex(await crypto.subtle.digest("SHA-256", utf8(key)));
}

/** What may be shown again after creation: never enough to reconstruct the key. */
export function displayParts(key: string): { start: string; last4: string } {
  const parsed = parseKey(key);
  const head = parsed ? `${parsed.prefix}_${parsed.environment}_` : "";
  return { start: `${head}${key.slice(head.length, head.length + 4)}`, last4: key.slice(-4) };
}
