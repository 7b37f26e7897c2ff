/** An erasure is `erasing` from the request until its receipt is written, then `completed`. It is never undone. */
export const ERASURE_STATES = ["erasing", "completed"] as const;
export type ErasureState = (typeof ERASURE_STATES)[number];

/**
 * Where an erasure is, in order (docs/erasure.md): the tenant is refused everywhere (`refused`), its DEKs are
 * destroyed (`shredded`), its rows and Durable Object state are deleted (`rows`), the Workflow waits until no
 * wizard session or in-flight request can still write for it (`settling`), sweeps once more (`sweep`), and
 * writes the receipt (`completed`).
 */
export const ERASURE_STEPS = ["refused", "shredded", "rows", "settling", "sweep", "completed"] as const;
export type ErasureStep = (typeof ERASURE_STEPS)[number];
