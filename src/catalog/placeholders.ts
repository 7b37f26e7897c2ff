/**
 * Values that are shaped like a credential but are not one: documentation examples and placeholders.
 * Storing one would make every later probe fail (or, for a shared docs key, point at someone else's
 * sandbox), so they are refused outright.
 */

/**
 * Keys printed in providers' own documentation, copied into countless tutorials. They match the real
 * formats exactly, so only an exact list catches them.
 */
const WELL_KNOWN_EXAMPLES: ReadonlySet<string> = new Set([
  // Stripe's shared docs test keys (docs.stripe.com API reference samples, current and older).
  "sk_test_4eC39HqLyjWDarjtT1zdp7dc",
  "pk_test_TYooMQauvdEDq54NiTphI7jx",
  "sk_test_BQokikJOvBiI2HlWgH4olfQ2",
  "pk_test_6pRNASCoBOKtIshFeQd4XMUh",
  // AWS IAM user guide ("Managing access keys") and the SigV4 test suite.
  "AKIAIOSFODNN7EXAMPLE",
  "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
  "AKIDEXAMPLE",
  "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
  // Slack's token-types docs and GitHub's token docs.
  "xoxb-17653672481-19874698323-pdFZKVeTuE8sk7oOcBrzbqgy",
  "ghp_16C7e42F292c6912E7710c838347Ae178B4a",
]);

/** Words that only appear in placeholders ("your_api_key", "changeme", "...EXAMPLE..."). */
const PLACEHOLDER_TEXT =
  /your[_-]?(?:api[_-]?)?(?:key|secret|token)|api[_-]?key[_-]?here|change[_-]?me|replace[_-]?me|example|placeholder|dummy|redacted/i;

/**
 * A run of x's, as in `sk_test_xxxxxxxx`. Case-sensitive (all lower or all upper), which keeps the chance
 * of flagging a genuine 100-character base62 key near 1e-5.
 */
const X_RUN = /x{4}|X{4}/;

/**
 * A run this long of one repeated character, or of consecutive code points (`12345678`, `abcdefgh`,
 * `hgfedcba`), is a typed-in filler, not randomness. At 8, a genuine 64-character hex secret trips it
 * with probability below 1e-6.
 */
const OBVIOUS_RUN_LENGTH = 8;

export type PlaceholderFinding = "known_example" | "placeholder_text" | "obvious_run";

export function isWellKnownExample(value: string): boolean {
  return WELL_KNOWN_EXAMPLES.has(value);
}

export function hasPlaceholderText(value: string): boolean {
  return PLACEHOLDER_TEXT.test(value) || X_RUN.test(value);
}

/** Longest run of one repeated character or of consecutive code points (ascending or descending). */
export function longestObviousRun(value: string): number {
  const codes = Array.from(value, (char) => char.codePointAt(0) ?? 0);
  let longest = codes.length > 0 ? 1 : 0;
  for (const step of [0, 1, -1]) {
    let run = 1;
    for (let i = 1; i < codes.length; i++) {
      run = (codes[i] ?? 0) - (codes[i - 1] ?? 0) === step ? run + 1 : 1;
      if (run > longest) longest = run;
    }
  }
  return longest;
}

export function hasObviousRun(value: string): boolean {
  return longestObviousRun(value) >= OBVIOUS_RUN_LENGTH;
}

/**
 * What makes a value a non-credential. Obvious runs are only judged on secret fields: identifiers such as
 * a 10-digit customer id can legitimately read `1234567890`.
 */
export function findPlaceholder(value: string, secret: boolean): PlaceholderFinding | null {
  if (isWellKnownExample(value)) return "known_example";
  if (hasPlaceholderText(value)) return "placeholder_text";
  if (secret && hasObviousRun(value)) return "obvious_run";
  return null;
}
