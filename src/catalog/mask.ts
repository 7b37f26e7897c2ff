/**
 * Display form of a secret: the first and last few characters around an ellipsis, like `sk_t…9xQa`.
 * At most a third of the value is ever shown (a sixth at each end, four characters at most), so the
 * hidden part keeps the bulk of the entropy; values under 12 characters are masked completely.
 * Works on code points so a surrogate pair is never split.
 */
const FULL_MASK = "••••";
const MAX_SHOWN_PER_END = 4;
const MIN_MASKABLE_LENGTH = 12;

export function maskValue(value: string): string {
  const chars = Array.from(value);
  if (chars.length < MIN_MASKABLE_LENGTH) return FULL_MASK;
  const shown = Math.min(MAX_SHOWN_PER_END, Math.floor(chars.length / 6));
  return `${chars.slice(0, shown).join("")}…${chars.slice(chars.length - shown).join("")}`;
}
