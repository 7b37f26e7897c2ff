/**
 * Which success paths the generated bodies actually reached (e.g. "monitoring/test webhook unreachable"),
 * so a property file can check its properties exercised them rather than passing on rejections alone.
 * Emptied before each file (shared-state.ts): files of the shared project share this module.
 */
export const OUTCOMES = new Map<string, number>();

export function recordOutcome(outcome: string): void {
  OUTCOMES.set(outcome, (OUTCOMES.get(outcome) ?? 0) + 1);
}
