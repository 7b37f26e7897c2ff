// Seeded random numbers for the bench (bench/zipf.mjs, bench/latency.mjs) and the tests' synthetic data
// (test/catalog/samples.ts, test/monitoring/anomaly.test.ts). Deterministic: the same seed gives the same
// sequence on every run and machine.

/** mulberry32: a small 32-bit PRNG, uniform in [0, 1). Plenty for drawing ranks and samples; not for anything secret. */
export function seededRandom(seed) {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4_294_967_296;
  };
}
