// Types of bench/do-counter.mjs, for the TypeScript that imports it (test/perf/counting-env.ts).

export function observeNamespace<T extends object>(
  namespace: T,
  observer: { onCall(call: { method: string }): void },
): T;
