import { describe, expect, it } from "vitest";
import { seededRandom } from "../../bench/seeded-random.mjs";
import {
  ALPHA,
  assess,
  catchUp,
  emptySlot,
  ewmaStep,
  foldHour,
  hourOfWeek,
  MIN_SAMPLES,
  type Moments,
  type SlotBaseline,
  WEEK_MS,
} from "../../src/monitoring/anomaly";
import { parseRuleSettings } from "../../src/monitoring/rule-schemas";

const HOUR = 3_600_000;
/** Monday 2030-01-14 00:00 UTC: hour 0 of a week. */
const MONDAY = Date.UTC(2030, 0, 14);
const volumeRule = (() => {
  const s = parseRuleSettings("anomaly_volume", {});
  return { zThreshold: s.z_threshold, minCount: s.min_count };
})();
const failureRule = (() => {
  const s = parseRuleSettings("anomaly_failures", {});
  return { zThreshold: s.z_threshold, minCount: s.min_count };
})();

/**
 * A business API key's usual hour: weekday office-hour peaks, evening ramps, quiet nights and weekends,
 * never used on Sunday nights; traffic grows 2% a week. ±15% noise per hour, 1-2% failures.
 */
function usualVolume(at: number, week: number): number {
  const how = hourOfWeek(at);
  const day = Math.floor(how / 24);
  const hour = how % 24;
  const weekend = day >= 5;
  let level: number;
  if (day === 6 && hour < 6) level = 0;
  else if (weekend) level = hour >= 9 && hour < 18 ? 120 : 15;
  else if (hour >= 9 && hour < 17) level = day === 0 ? 1400 : 1200;
  else if (hour >= 7 && hour < 21) level = 450;
  else level = 60;
  return level * 1.02 ** week;
}

interface Traffic {
  volume: number;
  failures: number;
}

function trafficAt(at: number, week: number, random: () => number): Traffic {
  const base = usualVolume(at, week);
  const volume = Math.round(base * (0.85 + 0.3 * random()));
  const failures = Math.round(volume * (0.01 + 0.01 * random()));
  return { volume, failures };
}

/**
 * The key's baselines after `weeks` weeks of traffic from MONDAY, as the cron builds them: only hours with
 * requests have a usage row and are folded; a slot without a row starts from the key's first day of use.
 */
function learn(weeks: number, seed: number): Map<number, SlotBaseline> {
  const random = seededRandom(seed);
  const slots = new Map<number, SlotBaseline>();
  for (let at = MONDAY; at < MONDAY + weeks * WEEK_MS; at += HOUR) {
    const sample = trafficAt(at, Math.floor((at - MONDAY) / WEEK_MS), random);
    if (sample.volume === 0) continue;
    const slot = slots.get(hourOfWeek(at)) ?? emptySlot(at, MONDAY);
    slots.set(hourOfWeek(at), foldHour(slot, at, sample));
  }
  return slots;
}

/** The slot of hour `at` as the counter rules score it. */
function slotAt(slots: Map<number, SlotBaseline>, at: number): SlotBaseline {
  return catchUp(slots.get(hourOfWeek(at)) ?? emptySlot(at, MONDAY), at);
}

describe("anomaly detection: EWMA by hour of week", () => {
  it("numbers the hours of the week from Monday 00:00 UTC", () => {
    expect(hourOfWeek(MONDAY)).toBe(0);
    expect(hourOfWeek(MONDAY + 14 * HOUR + 59 * 60_000)).toBe(14);
    expect(hourOfWeek(MONDAY + 6 * 24 * HOUR + 23 * HOUR)).toBe(167);
    expect(hourOfWeek(MONDAY + WEEK_MS)).toBe(0);
    expect(hourOfWeek(0)).toBe(72); // 1970-01-01 was a Thursday
  });

  it("keeps the exponentially weighted mean and variance of the series (Finch 2009)", () => {
    const xs = [120, 80, 95, 300, 110, 105, 90];
    let moments: Moments = { mean: xs[0] as number, variance: 0 };
    for (const x of xs.slice(1)) moments = ewmaStep(moments, x);
    // Weights: the first sample (1 - a)^(n-1), then a (1 - a)^(n-i); they sum to 1.
    const n = xs.length;
    const weights = xs.map((_, i) => (i === 0 ? (1 - ALPHA) ** (n - 1) : ALPHA * (1 - ALPHA) ** (n - 1 - i)));
    expect(weights.reduce((a, b) => a + b, 0)).toBeCloseTo(1, 12);
    const mean = xs.reduce((sum, x, i) => sum + (weights[i] as number) * x, 0);
    const variance = xs.reduce((sum, x, i) => sum + (weights[i] as number) * (x - mean) ** 2, 0);
    expect(moments.mean).toBeCloseTo(mean, 9);
    expect(moments.variance).toBeCloseTo(variance, 9);
  });

  it("folding the same hour twice changes nothing", () => {
    const slot = foldHour(emptySlot(MONDAY, MONDAY), MONDAY, { volume: 100, failures: 2 });
    expect(foldHour(slot, MONDAY, { volume: 5000, failures: 900 })).toBe(slot);
    expect(foldHour(slot, MONDAY - WEEK_MS, { volume: 5000, failures: 900 })).toBe(slot);
  });

  it("counts the weeks a slot saw no request as zeros, so a key idle at that hour has a baseline there", () => {
    const once = foldHour(emptySlot(MONDAY, MONDAY), MONDAY, { volume: 400, failures: 0 });
    const threeWeeksLater = catchUp(once, MONDAY + 3 * WEEK_MS);
    expect(threeWeeksLater.samples).toBe(3);
    expect(threeWeeksLater.volume.mean).toBeCloseTo(400 * (1 - ALPHA) ** 2, 9);
    // A slot the key never used, a month after its first use: four quiet weeks.
    expect(emptySlot(MONDAY + 4 * WEEK_MS + 3 * HOUR, MONDAY)).toMatchObject({
      samples: 4,
      volume: { mean: 0, variance: 0 },
    });
  });

  for (const seed of [1, 2, 3]) {
    it(`raises nothing over a normal week of weekly seasonality after six weeks of it (seed ${seed})`, () => {
      const slots = learn(6, seed);
      const random = seededRandom(seed * 1000 + 7);
      const raised: string[] = [];
      for (let at = MONDAY + 6 * WEEK_MS; at < MONDAY + 7 * WEEK_MS; at += HOUR) {
        const sample = trafficAt(at, 6, random);
        const slot = slotAt(slots, at);
        const volume = assess(sample.volume, slot.volume, slot.samples, volumeRule);
        const failures = assess(sample.failures, slot.failures, slot.samples, failureRule);
        if (volume.anomalous) raised.push(`volume at hour ${hourOfWeek(at)}: z ${volume.z}`);
        if (failures.anomalous) raised.push(`failures at hour ${hourOfWeek(at)}: z ${failures.z}`);
      }
      expect(raised).toEqual([]);
    });
  }

  it("raises a spike of 4x the usual Tuesday 14:00 volume, and not the normal hour after it", () => {
    const slots = learn(6, 11);
    const tuesday14 = MONDAY + 6 * WEEK_MS + 24 * HOUR + 14 * HOUR;
    const usual = usualVolume(tuesday14, 6);
    const spike = assess(Math.round(usual * 4), slotAt(slots, tuesday14).volume, 6, volumeRule);
    expect(spike.anomalous).toBe(true);
    expect(spike.z).toBeGreaterThanOrEqual(volumeRule.zThreshold);
    const next = tuesday14 + HOUR;
    const slot = slotAt(slots, next);
    expect(assess(Math.round(usualVolume(next, 6)), slot.volume, slot.samples, volumeRule).anomalous).toBe(
      false,
    );
  });

  it("raises a burst at an hour the key is never used (Sunday 03:00)", () => {
    const slots = learn(6, 12);
    const sunday3 = MONDAY + 6 * WEEK_MS + 6 * 24 * HOUR + 3 * HOUR;
    const slot = slotAt(slots, sunday3);
    expect(slot.samples).toBe(6);
    expect(slot.volume.mean).toBe(0);
    expect(assess(300, slot.volume, slot.samples, volumeRule).anomalous).toBe(true);
    // Below min_count it is a blip, not an incident.
    expect(assess(volumeRule.minCount - 1, slot.volume, slot.samples, volumeRule).anomalous).toBe(false);
  });

  it("raises a failure surge on a key whose volume is normal", () => {
    const slots = learn(6, 13);
    const wednesday11 = MONDAY + 6 * WEEK_MS + 2 * 24 * HOUR + 11 * HOUR;
    const slot = slotAt(slots, wednesday11);
    // Usually 1-2% of ~1,200 fail; 300 failures is a broken client or a key being probed.
    expect(assess(300, slot.failures, slot.samples, failureRule).anomalous).toBe(true);
  });

  it(`says nothing before a slot has ${MIN_SAMPLES} weeks of history, however large the spike`, () => {
    const slots = learn(MIN_SAMPLES - 1, 14);
    const at = MONDAY + (MIN_SAMPLES - 1) * WEEK_MS + 10 * HOUR;
    const slot = slotAt(slots, at);
    expect(slot.samples).toBe(MIN_SAMPLES - 1);
    expect(assess(100_000, slot.volume, slot.samples, volumeRule).anomalous).toBe(false);
  });

  it("folds a spike capped, so the same spike a week later is still raised", () => {
    const slots = learn(6, 15);
    const at = MONDAY + 6 * WEEK_MS + 24 * HOUR + 14 * HOUR;
    const spike = { volume: Math.round(usualVolume(at, 6) * 5), failures: 10 };
    const after = foldHour(slotAt(slots, at), at, spike);
    const weekLater = catchUp(after, at + WEEK_MS);
    expect(assess(spike.volume, weekLater.volume, weekLater.samples, volumeRule).anomalous).toBe(true);
  });
});
