/** Secrets Keywarden creates itself (e.g. a webhook signing secret the tenant pastes into the provider). */
import type { GeneratableField, GeneratedAlphabet } from "./types";

export const ALPHABETS: Readonly<Record<GeneratedAlphabet, string>> = {
  hex: "0123456789abcdef",
  base62: "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz",
  base64url: "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_",
};

/**
 * `length` characters drawn uniformly from `alphabet` by the CSPRNG. Bytes at or above the largest
 * multiple of the alphabet size are rejected, so `byte % size` carries no modulo bias
 * (NIST SP 800-90A Rev. 1, Appendix A.5.1, "simple discard method").
 */
export function randomString(alphabet: string, length: number): string {
  const size = alphabet.length;
  if (size < 2 || size > 256) throw new RangeError("alphabet must have 2 to 256 characters");
  if (!Number.isInteger(length) || length < 0) throw new RangeError("length must be a non-negative integer");
  const limit = 256 - (256 % size);
  let out = "";
  while (out.length < length) {
    // getRandomValues fills at most 65,536 bytes per call (WebCrypto §10.1.1 QuotaExceededError).
    const bytes = crypto.getRandomValues(
      new Uint8Array(Math.min(65_536, Math.max(16, (length - out.length) * 2))),
    );
    for (const byte of bytes) {
      if (byte >= limit) continue;
      out += alphabet[byte % size];
      if (out.length === length) break;
    }
  }
  return out;
}

export function generateFieldValue(spec: GeneratableField): string {
  return (spec.prefix ?? "") + randomString(ALPHABETS[spec.alphabet], spec.length);
}

/** Entropy of a generated value in bits (the prefix adds none). */
export function generatedEntropyBits(spec: GeneratableField): number {
  return spec.length * Math.log2(ALPHABETS[spec.alphabet].length);
}
