/**
 * Every property runs from one seed chosen in vitest.config.ts: a fixed one in `npm test` (the same
 * inputs every run, so the suite passes every time or fails every time), a random one in
 * `npm run test:deep`. On failure fast-check's message carries `{ seed, path }`; replay one
 * counterexample with `FC_SEED=<seed> FC_PATH=<path> npx vitest run <file> -t "<test>"` (add the
 * `FC_RUNS` the failing run printed, if any).
 */
import fc from "fast-check";
import { inject } from "vitest";

declare module "vitest" {
  export interface ProvidedContext {
    fcSeed: number;
    fcPath: string;
    fcRunsFactor: number;
  }
}

const path = inject("fcPath");
fc.configureGlobal({
  seed: inject("fcSeed"),
  ...(path ? { path, endOnFailure: true } : {}),
});

/**
 * A property's number of runs in this suite: `n` in `npm test`, `n` times FC_RUNS (10 by default)
 * in `npm run test:deep`. Call sites keep the count `npm test` guarantees, e.g. the 1,000 bodies
 * per endpoint of threat model case 16.
 */
export function runs(n: number): number {
  return n * inject("fcRunsFactor");
}
