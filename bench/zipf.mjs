// A Zipf sampler and a fixed scatter of ranks for the latency stage (bench/latency.mjs), drawn from a seeded
// stream (bench/seeded-random.mjs): the same seed gives the same sequence on every run and machine, so two runs
// of the stage send the same requests.

import { seededRandom } from "./seeded-random.mjs";

/**
 * Zipf(s) over ranks 0..n-1 (rank 0 the most popular): P(rank k) = (k+1)^-s / H(n, s). Sampled by inverting
 * the CDF, a table of n doubles searched by bisection (8 MB and ~20 steps a draw for n = 1,000,000). The
 * smallest probability, 1 / (n H) ~ 7e-8 for n = 10^6 and s = 1, is far above the 2^-32 step of the uniform
 * draw, so every rank can come out.
 */
export function zipf({ n, s = 1, seed }) {
  const cdf = new Float64Array(n);
  let total = 0;
  for (let k = 0; k < n; k++) {
    total += (k + 1) ** -s;
    cdf[k] = total;
  }
  for (let k = 0; k < n; k++) cdf[k] /= total;
  cdf[n - 1] = 1;
  const random = seededRandom(seed);
  return {
    n,
    /** H(n, s), the normalising constant. */
    harmonic: total,
    /** P(rank k). */
    probability: (k) => (k + 1) ** -s / total,
    /** The next rank: the first k with cdf[k] > u. */
    next() {
      const u = random();
      let low = 0;
      let high = n - 1;
      while (low < high) {
        const middle = (low + high) >>> 1;
        if (cdf[middle] > u) high = middle;
        else low = middle + 1;
      }
      return low;
    },
  };
}

/**
 * A fixed bijection of 0..n-1 (k -> (a k + b) mod n with a coprime to n), so popularity is not tied to the
 * order rows were inserted in: rank 0 is not the first row of the table. Exact for n up to 2^26 (a k + b stays
 * below 2^53).
 */
export function scatter(n, seed) {
  if (n > 2 ** 26) throw new Error("scatter: n too large");
  const random = seededRandom(seed);
  const gcd = (x, y) => (y === 0 ? x : gcd(y, x % y));
  let a = Math.floor(random() * n) | 1;
  while (gcd(a, n) !== 1) a += 2;
  const b = Math.floor(random() * n);
  return (k) => (a * k + b) % n;
}
