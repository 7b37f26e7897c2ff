import { DurableObject } from "cloudflare:workers";

export interface LimitPolicy {
  /** Bumped when the owner changes limits; a new version resets the counters once. */
  limitsVersion: number;
  ratelimit: { limit: number; windowMs: number } | null;
  usage: { limit: number; refillAmount: number | null; refillIntervalMs: number | null } | null;
}

export interface LimitDecision {
  ratelimited: boolean;
  usageExceeded: boolean;
  ratelimit?: { limit: number; remaining: number; reset: number };
  remaining?: number;
}

interface LimiterState {
  limitsVersion: number;
  windowStart: number;
  windowCount: number;
  remaining: number | null;
  lastRefillAt: number;
}

/**
 * One instance per issued key. A Durable Object runs one request at a time, so the counters are
 * exact under any concurrency across isolates and locations (an in-isolate counter would not be).
 */
export class KeyLimiter extends DurableObject<Env> {
  consume(policy: LimitPolicy, now: number = Date.now()): LimitDecision {
    const kv = this.ctx.storage.kv;
    let state = kv.get<LimiterState>("state");
    if (!state || state.limitsVersion !== policy.limitsVersion) {
      state = {
        limitsVersion: policy.limitsVersion,
        windowStart: 0,
        windowCount: 0,
        remaining: policy.usage?.limit ?? null,
        lastRefillAt: now,
      };
    }
    const decision: LimitDecision = { ratelimited: false, usageExceeded: false };

    if (policy.ratelimit) {
      const { limit, windowMs } = policy.ratelimit;
      const windowStart = now - (now % windowMs);
      if (windowStart !== state.windowStart) {
        state.windowStart = windowStart;
        state.windowCount = 0;
      }
      decision.ratelimited = state.windowCount >= limit;
      if (!decision.ratelimited) state.windowCount += 1;
      decision.ratelimit = {
        limit,
        remaining: Math.max(0, limit - state.windowCount),
        reset: windowStart + windowMs,
      };
    }

    if (policy.usage && !decision.ratelimited) {
      const { refillAmount, refillIntervalMs } = policy.usage;
      if (
        refillAmount !== null &&
        refillIntervalMs !== null &&
        now - state.lastRefillAt >= refillIntervalMs
      ) {
        state.remaining = refillAmount;
        state.lastRefillAt = now;
      }
      const remaining = state.remaining ?? 0;
      decision.usageExceeded = remaining <= 0;
      state.remaining = decision.usageExceeded ? 0 : remaining - 1;
      decision.remaining = state.remaining;
    }

    kv.put("state", state);
    return decision;
  }

  /** Tenant erasure (src/erasure/): the key's counters go with its row. */
  erase(): Promise<void> {
    return this.ctx.storage.deleteAll();
  }

  /** Current counters without consuming, for the key's GET view. */
  peek(policy: LimitPolicy): { remaining: number | null } {
    const state = this.ctx.storage.kv.get<LimiterState>("state");
    if (!state || state.limitsVersion !== policy.limitsVersion)
      return { remaining: policy.usage?.limit ?? null };
    return { remaining: state.remaining };
  }
}
