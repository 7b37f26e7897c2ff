// Types of bench/d1-counter.mjs, for the TypeScript that imports it (test/perf/counting-env.ts).

export interface D1CallStart {
  /** "SELECT api_keys", "batch: SELECT a + INSERT b", "exec: DELETE x", ... */
  kind: string;
  /** Statements in the call: 1, or a batch's length. */
  statements: number;
}

export interface D1Call extends D1CallStart {
  /** Wall time the caller waited, injected delay included. */
  ms: number;
  ok: boolean;
}

export interface D1Observer {
  onCall?(call: D1Call): void;
  onStart?(call: D1CallStart): void;
  delayMs?: number;
}

export function kindOf(sql: string): string;
export function observeD1(db: D1Database, observer?: D1Observer): D1Database;
