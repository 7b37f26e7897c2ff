import { secretsEqual } from "../crypto/constant-time";
import { randomBytes } from "../crypto/random";

/** RFC 6238 TOTP with the parameters every authenticator app supports: HMAC-SHA1, 6 digits, 30 s steps. */
export const TOTP_STEP_SECONDS = 30;
const DIGITS = 6;
/** One step either side absorbs clock drift and typing time (RFC 6238 §5.2 recommends at most one). */
const WINDOW = 1;
const BASE32 = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";

export function newTotpSecret(): Uint8Array<ArrayBuffer> {
  return randomBytes(20); // 160 bits, the HMAC-SHA1 block-friendly size RFC 4226 §4 recommends
}

export function toBase32(bytes: Uint8Array): string {
  let bits = 0;
  let value = 0;
  let out = "";
  for (const byte of bytes) {
    value = (value << 8) | byte;
    bits += 8;
    while (bits >= 5) {
      out += BASE32[(value >>> (bits - 5)) & 31];
      bits -= 5;
    }
  }
  if (bits > 0) out += BASE32[(value << (5 - bits)) & 31];
  return out;
}

export function fromBase32(text: string): Uint8Array<ArrayBuffer> {
  const bytes: number[] = [];
  let bits = 0;
  let value = 0;
  for (const char of text.replace(/=+$/, "").toUpperCase()) {
    const index = BASE32.indexOf(char);
    if (index < 0) throw new TypeError("not base32");
    value = (value << 5) | index;
    bits += 5;
    if (bits >= 8) {
      bytes.push((value >>> (bits - 8)) & 255);
      bits -= 8;
    }
  }
  return new Uint8Array(bytes);
}

/** The HOTP value (RFC 4226 §5.3) for one time step. */
export async function totpAt(secret: Uint8Array<ArrayBuffer>, step: number): Promise<string> {
  const key = await crypto.subtle.importKey("raw", secret, { name: "HMAC", hash: "SHA-1" }, false, ["sign"]);
  const counter = new Uint8Array(8);
  new DataView(counter.buffer).setBigUint64(0, BigInt(step));
  const mac = new Uint8Array(await crypto.subtle.sign("HMAC", key, counter));
  const offset = (mac[19] as number) & 0x0f;
  const binary =
    (((mac[offset] as number) & 0x7f) << 24) |
    ((mac[offset + 1] as number) << 16) |
    ((mac[offset + 2] as number) << 8) |
    (mac[offset + 3] as number);
  return String(binary % 10 ** DIGITS).padStart(DIGITS, "0");
}

export function stepAt(nowMs: number): number {
  return Math.floor(nowMs / 1000 / TOTP_STEP_SECONDS);
}

/**
 * The time step `code` matches within the window, or null. Every candidate is compared in constant
 * time, and a step at or before `lastStep` is refused so an observed code cannot be replayed.
 */
export async function matchTotp(
  secret: Uint8Array<ArrayBuffer>,
  code: string,
  nowMs: number,
  lastStep: number,
): Promise<number | null> {
  if (!/^\d{6}$/.test(code)) return null;
  const current = stepAt(nowMs);
  let matched: number | null = null;
  for (let step = current - WINDOW; step <= current + WINDOW; step++) {
    if ((await secretsEqual(await totpAt(secret, step), code)) && step > lastStep && matched === null)
      matched = step;
  }
  return matched;
}

export function otpauthUri(secret: Uint8Array, account: string): string {
  const label = encodeURIComponent(`Keywarden:${account}`);
  return `otpauth://totp/${label}?secret=${toBase32(secret)}&issuer=Keywarden&algorithm=SHA1&digits=${DIGITS}&period=${TOTP_STEP_SECONDS}`;
}
