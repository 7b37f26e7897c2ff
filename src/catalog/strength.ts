/**
 * A strength estimate for a submitted secret. Provider-issued keys are random, so this mostly catches
 * hand-typed or truncated values; it is reported, and only the hard placeholder rules refuse a value.
 */
import { hasObviousRun } from "./placeholders";

export interface StrengthReport {
  /** 0-100, where 100 means at least 128 bits of estimated entropy (NIST SP 800-57 Pt. 1, §5.6.1). */
  score: number;
  /** Shannon entropy of the value's own character distribution. */
  entropy_bits_per_char: number;
  /** In code points. */
  length: number;
  /** How many of lower case, upper case, digits and other characters appear. */
  classes: number;
  issues: string[];
}

const FULL_SCORE_BITS = 128;
const WEAK_BITS = 64;
const SHORT_LENGTH = 16;
const LOW_VARIETY_BITS_PER_CHAR = 3;
const OBVIOUS_RUN_SCORE_CAP = 20;

export function shannonEntropyPerChar(chars: readonly string[]): number {
  if (chars.length === 0) return 0;
  const counts = new Map<string, number>();
  for (const char of chars) counts.set(char, (counts.get(char) ?? 0) + 1);
  let bits = 0;
  for (const count of counts.values()) {
    const p = count / chars.length;
    bits -= p * Math.log2(p);
  }
  return bits;
}

function characterClasses(value: string): number {
  return [/[a-z]/, /[A-Z]/, /[0-9]/, /[^a-zA-Z0-9]/].filter((re) => re.test(value)).length;
}

export function assessStrength(value: string): StrengthReport {
  const chars = Array.from(value);
  const perChar = shannonEntropyPerChar(chars);
  const estimatedBits = perChar * chars.length;
  const classes = characterClasses(value);
  const issues: string[] = [];
  let score = Math.min(100, Math.round((estimatedBits / FULL_SCORE_BITS) * 100));

  if (chars.length < SHORT_LENGTH) issues.push(`shorter than ${SHORT_LENGTH} characters`);
  if (chars.length > 0 && perChar < LOW_VARIETY_BITS_PER_CHAR) issues.push("low character variety");
  if (estimatedBits < WEAK_BITS) issues.push(`estimated entropy under ${WEAK_BITS} bits`);
  if (classes === 1) issues.push("uses a single character class");
  if (hasObviousRun(value)) {
    issues.push("contains a long repeated or sequential run");
    score = Math.min(score, OBVIOUS_RUN_SCORE_CAP);
  }

  return {
    score,
    entropy_bits_per_char: Math.round(perChar * 100) / 100,
    length: chars.length,
    classes,
    issues,
  };
}
