export const BASE62_ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/**
 * Uniform base62 string from the CSPRNG. Rejection sampling (bytes >= 248 are dropped) avoids the
 * modulo bias a plain `byte % 62` would add (NIST SP 800-90A §A.5).
 */
export function randomBase62(length: number): string {
  let out = "";
  while (out.length < length) {
    const bytes = crypto.getRandomValues(new Uint8Array(length * 2));
    for (const byte of bytes) {
      if (byte >= 248) continue;
      out += BASE62_ALPHABET[byte % 62];
      if (out.length === length) break;
    }
  }
  return out;
}

/** Opaque resource id: a type prefix and 128 random bits, so ids cannot be enumerated. */
export function newId(kind: string): string {
  return `${kind}_${randomBase62(22)}`;
}

export function randomBytes(length: number): Uint8Array<ArrayBuffer> {
  return crypto.getRandomValues(new Uint8Array(length));
}
