import { crc32 } from "./crc32";
import { toHex, utf8 } from "./encoding";
import { BASE62_ALPHABET, randomBase62 } from "./random";

export type SecurityLevel = "basic" | "enhanced" | "enterprise";
export type KeyEnvironment = "live" | "test";

/** Bits of entropy per level (NIST SP 800-57 Pt 1 §5.6.1: 128 bits is the floor for new keys). */
export const ENTROPY_BITS: Record<SecurityLevel, number> = { basic: 128, enhanced: 192, enterprise: 256 };

const CHECKSUM_LENGTH = 6;
/** `last4`: the key's last characters, all inside the checksum. */
export const LAST4_LENGTH = 4;
/**
 * What `last4` can tell about the random part. The checksum is a function of the random part, so its last
 * characters may carry up to log2(62) bits each about it. Every level carries that many extra random bits, so
 * what stays unknown after display (a database dump holds `start` and `last4`) is still >= ENTROPY_BITS.
 */
export const DISPLAY_LEAK_BITS = LAST4_LENGTH * Math.log2(62);
/** Keys minted before DISPLAY_LEAK_BITS was added carry exactly ENTROPY_BITS.basic; they keep verifying. */
const MIN_RANDOM_LENGTH = randomLengthFor(ENTROPY_BITS.basic);
export const PREFIX_PATTERN = /^[a-z][a-z0-9]{0,7}$/;
const KEY_PATTERN = /^([a-z][a-z0-9]{0,7})_(live|test)_([0-9A-Za-z]+)$/;

/** Base62 characters needed to carry at least `bits` bits. */
export function randomLengthFor(bits: number): number {
  return Math.ceil(bits / Math.log2(62));
}

/** Length of a new key's random part: the level's bits, plus what display may reveal. */
export function randomLengthForLevel(level: SecurityLevel): number {
  return randomLengthFor(ENTROPY_BITS[level] + DISPLAY_LEAK_BITS);
}

const MAX_RANDOM_LENGTH = randomLengthForLevel("enterprise");

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
  const randomPart = randomBase62(randomLengthForLevel(level));
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

/**
 * What may be shown again after creation. `start` is the prefix and environment only: no random character,
 * since each one shown would take log2(62) bits off the key's strength. `last4` lies inside the checksum and
 * is paid for by DISPLAY_LEAK_BITS.
 */
export function displayParts(key: string): { start: string; last4: string } {
  const parsed = parseKey(key);
  return {
    start: parsed ? `${parsed.prefix}_${parsed.environment}_` : "",
    last4: key.slice(-LAST4_LENGTH),
  };
}
