/**
 * Anomaly detection by hour of the week, pure (no I/O): docs/anomaly-detection.md has the reasoning.
 *
 * Each key has one baseline per hour of the week (168 slots, 0 = Monday 00:00 UTC). A slot sees one sample a
 * week: the key's verifications (volume) and failed verifications in that hour. The slot keeps an
 * exponentially weighted moving average (EWMA) and variance of both, updated incrementally (Finch, "Incremental
 * calculation of weighted mean and variance", 2009, section 9):
 *
 *     d     = x - mean
 *     mean' = mean + ALPHA * d
 *     var'  = (1 - ALPHA) * (var + ALPHA * d^2)
 *
 * and an hour is scored by its z-score against the slot:
 *
 *     z = (x - mean) / sqrt(max(var, mean, (RELATIVE_SD_FLOOR * mean)^2, 1))
 *
 * The floor keeps a perfectly regular key (variance 0) from turning every small wobble into an infinite z:
 * counts of independent requests vary at least like a Poisson count (variance = mean), real traffic at least a
 * few percent of its level, and never less than one request.
 */
import { HOUR_MS } from "./usage-counts";

export const WEEK_MS = 168 * HOUR_MS;
/** 1970-01-01 was a Thursday: epoch hour 0 is hour 72 of its week (Monday 00:00 = 0). */
const EPOCH_HOUR_OF_WEEK = 72;

/**
 * Weight of the newest week. One sample a week: 0.25 gives the last 4 weeks about two thirds of the weight
 * (half-life ln 0.5 / ln 0.75 = 2.4 weeks), so a key's traffic growing over a month is learned, while one odd
 * week does not redefine normal.
 */
export const ALPHA = 0.25;
/** A slot with fewer weekly samples than this says nothing yet: a key's first weeks never raise an anomaly. */
export const MIN_SAMPLES = 3;
/** The standard deviation is never taken below this share of the mean (see the floor above). */
export const RELATIVE_SD_FLOOR = 0.1;
/**
 * An anomalous hour is folded into the baseline capped at mean + CLAMP_Z standard deviations (winsorized), so a
 * one-off spike does not inflate the variance enough to hide the next one; a lasting change of level is still
 * learned within a few weeks (each capped week moves the mean up and widens the variance).
 */
export const CLAMP_Z = 4;
/** Weeks without a sample are folded as zeros, at most this many (after a year the slot is as good as new). */
export const MAX_CATCH_UP_WEEKS = 52;

export interface Moments {
  mean: number;
  variance: number;
}

/** One slot: both series, how many weeks it has seen, and the hour (first millisecond) folded in last. */
export interface SlotBaseline {
  samples: number;
  volume: Moments;
  failures: Moments;
  lastHour: number;
}

export interface HourSample {
  volume: number;
  failures: number;
}

/** 0 = Monday 00:00-00:59 UTC ... 167 = Sunday 23:00-23:59 UTC. */
export function hourOfWeek(at: number): number {
  return (Math.floor(at / HOUR_MS) + EPOCH_HOUR_OF_WEEK) % 168;
}

/** The standard deviation a score divides by: the estimate, but never below the floors above. */
export function effectiveDeviation(moments: Moments): number {
  const { mean, variance } = moments;
  return Math.sqrt(Math.max(variance, mean, (RELATIVE_SD_FLOOR * mean) ** 2, 1));
}

/** How many standard deviations `x` lies above the slot's mean (negative below it). */
export function zScore(x: number, moments: Moments): number {
  return (x - moments.mean) / effectiveDeviation(moments);
}

/** One EWMA step (formulas above). */
export function ewmaStep(moments: Moments, x: number): Moments {
  const d = x - moments.mean;
  return {
    mean: moments.mean + ALPHA * d,
    variance: (1 - ALPHA) * (moments.variance + ALPHA * d * d),
  };
}

/**
 * A slot no row exists for yet, for a key first used at `firstUse`: every week of the key's life before
 * `hour` in which this slot saw no request counts as a zero (folding zeros into an empty slot keeps mean and
 * variance at 0). So a key that has served for a month and was never used on Sunday nights has a baseline
 * there: four zeros, and a burst at that time is news. Without `firstUse` the slot is empty.
 */
export function emptySlot(hour: number, firstUse: number | null): SlotBaseline {
  const weeks = firstUse === null ? 0 : Math.max(0, Math.floor((hour - firstUse) / WEEK_MS));
  return {
    samples: Math.min(weeks, MAX_CATCH_UP_WEEKS),
    volume: { mean: 0, variance: 0 },
    failures: { mean: 0, variance: 0 },
    lastHour: hour - WEEK_MS,
  };
}

/**
 * The slot as it stands just before `hour` (same hour of the week): the weeks since its last sample in which
 * the key was not used at that hour are folded in as zeros. Usage rows exist only for hours with requests.
 */
export function catchUp(slot: SlotBaseline, hour: number): SlotBaseline {
  const missed = Math.min(Math.round((hour - slot.lastHour) / WEEK_MS) - 1, MAX_CATCH_UP_WEEKS);
  if (missed <= 0) return slot;
  let { volume, failures } = slot;
  for (let i = 0; i < missed; i++) {
    volume = ewmaStep(volume, 0);
    failures = ewmaStep(failures, 0);
  }
  return { samples: slot.samples + missed, volume, failures, lastHour: hour - WEEK_MS };
}

/** Caps an established slot's sample at mean + CLAMP_Z deviations before it is folded in. */
function winsorized(x: number, moments: Moments, samples: number): number {
  if (samples < MIN_SAMPLES) return x;
  return Math.min(x, moments.mean + CLAMP_Z * effectiveDeviation(moments));
}

/**
 * Folds the hour starting at `hour` into its slot. Folding an hour that is not newer than the slot's last one
 * returns the slot unchanged, so a repeated fold is harmless.
 */
export function foldHour(slot: SlotBaseline, hour: number, sample: HourSample): SlotBaseline {
  if (hour <= slot.lastHour) return slot;
  const current = catchUp(slot, hour);
  // The first week a slot sees is its mean (the usual EWMA start); starting from 0 would bias it low for weeks.
  if (current.samples === 0) {
    return {
      samples: 1,
      volume: { mean: sample.volume, variance: 0 },
      failures: { mean: sample.failures, variance: 0 },
      lastHour: hour,
    };
  }
  return {
    samples: current.samples + 1,
    volume: ewmaStep(current.volume, winsorized(sample.volume, current.volume, current.samples)),
    failures: ewmaStep(current.failures, winsorized(sample.failures, current.failures, current.samples)),
    lastHour: hour,
  };
}

export interface AnomalyVerdict {
  anomalous: boolean;
  z: number;
  expected: number;
}

/**
 * Is `count` (requests or failures in one hour) anomalous against the slot's series? Only when all three hold:
 * the slot has MIN_SAMPLES weeks (a baseline of one or two weeks is noise), the count reaches `minCount` (a
 * jump from 2 to 12 requests is a large z but no incident), and z >= `zThreshold`.
 */
export function assess(
  count: number,
  moments: Moments,
  samples: number,
  rule: { zThreshold: number; minCount: number },
): AnomalyVerdict {
  const z = zScore(count, moments);
  return {
    anomalous: samples >= MIN_SAMPLES && count >= rule.minCount && z >= rule.zThreshold,
    z,
    expected: moments.mean,
  };
}
