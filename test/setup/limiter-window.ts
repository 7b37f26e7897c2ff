/**
 * Cloudflare's rate-limit bindings (and miniflare's stand-in) count fixed windows aligned to the wall
 * clock, so a burst that happens to straddle a window boundary sees two budgets. A test asserting exact
 * counts runs its burst through `inOneWindow`: if the window changed while it ran, the burst is
 * repeated once from scratch (with fresh clients or tenants). A burst takes far less than a window, so
 * the repeat cannot straddle a boundary too. The clock reads bracket every limiter call: workerd's
 * `Date.now()` is one process-wide clock that only moves forward between I/O events.
 */
import type { RateLimitBinding } from "../../vitest.config";

export async function inOneWindow<T>(periodSeconds: number, burst: () => Promise<T>): Promise<T> {
  const windowOf = (ms: number) => Math.floor(ms / (periodSeconds * 1000));
  for (let attempt = 0; attempt < 2; attempt++) {
    const start = windowOf(Date.now());
    const result = await burst();
    if (windowOf(Date.now()) === start) return result;
  }
  throw new Error(`two bursts in a row straddled a ${periodSeconds} s window: the burst is too slow`);
}

declare module "vitest" {
  export interface ProvidedContext {
    wranglerRatelimits: RateLimitBinding[];
    testTenantLimit: number;
  }
}
