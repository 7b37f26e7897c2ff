/**
 * The exact UTF-16 code units, big-endian. UTF-8 would map every lone surrogate to U+FFFD and make
 * distinct strings compare equal.
 */
function codeUnits(text: string): Uint8Array<ArrayBuffer> {
  const out = new Uint8Array(text.length * 2);
  for (let i = 0; i < text.length; i++) {
    const unit = text.charCodeAt(i);
    out[2 * i] = unit >> 8;
    out[2 * i + 1] = unit & 0xff;
  }
  return out;
}

/**
 * Constant-time equality for secrets (OWASP ASVS 5.0 V11.2.4). Both sides are hashed first so the
 * comparison length never depends on the secret, then compared with the runtime's timingSafeEqual.
 */
export async function secretsEqual(a: string, b: string): Promise<boolean> {
  const [ha, hb] = await Promise.all([
    crypto.subtle.digest("SHA-256", codeUnits(a)),
    crypto.subtle.digest("SHA-256", codeUnits(b)),
  ]);
  return crypto.subtle.timingSafeEqual(ha, hb);
}

export function bytesEqual(a: ArrayBuffer | Uint8Array, b: ArrayBuffer | Uint8Array): boolean {
  if (a.byteLength !== b.byteLength) return false;
  return crypto.subtle.timingSafeEqual(a, b);
}
