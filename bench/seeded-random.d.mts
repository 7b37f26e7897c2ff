// Types of bench/seeded-random.mjs, for the TypeScript that imports it (test/catalog/samples.ts,
// test/monitoring/anomaly.test.ts).

/** mulberry32: a small 32-bit PRNG, uniform in [0, 1). Not for anything secret. */
export function seededRandom(seed: number): () => number;
