import type { Bindings } from "../env";
import { resolveOrphanedAlerts } from "./alert-lifecycle";
import { FOLD_LIMITS, type FoldLimits, foldClosedHours } from "./baselines";
import { counterEvaluations } from "./counter-rules";
import { COUNTER_LIMITS, type CounterLimits } from "./counter-snapshot";
import { relayOutbox } from "./outbox";
import { applyStateRules } from "./state-rules";

export interface AlertTickReport {
  fired: number;
  updated: number;
  resolved: number;
  suppressed: number;
  /** Events stamped as evaluated. */
  events: number;
  /** Open alerts resolved because their rule was deleted, disabled or replaced. */
  orphaned: number;
  relayed: number;
  /** D1 calls counted by the steps that count them. */
  d1Calls: number;
}

/**
 * One evaluation of every tenant's rules, on the cron with `now` = the scheduled time:
 * 1. fold the last closed hours into the per-key baselines (the anomaly rules compare against them);
 * 2. evaluate the counter rules (usage, failure rate, anomalies, new origins, auth failure bursts) and the
 *    state rules (expiry, rotation, live re-tests, channel health) and apply both through the lifecycle;
 * 3. resolve open alerts whose rule is gone;
 * 4. hand the new notifications to the Queue.
 * Each step is bounded (pages, caps, chunks) and leaves the rest for the next tick; `limits` sets the page
 * sizes and budgets of steps 1 and 2 (tests use small ones).
 */
export async function runAlertTick(
  env: Pick<Bindings, "DB" | "ALERT_QUEUE">,
  now: number,
  limits: { fold: FoldLimits; counters: CounterLimits } = { fold: FOLD_LIMITS, counters: COUNTER_LIMITS },
): Promise<AlertTickReport> {
  const fold = await foldClosedHours(env, now, limits.fold);
  const counters = await counterEvaluations(env, now, limits.counters);
  const applied = await applyStateRules(env, now, {}, counters);
  const orphaned = await resolveOrphanedAlerts(env, now);
  const relay = await relayOutbox(env, now);
  return {
    fired: applied.fired,
    updated: applied.updated,
    resolved: applied.resolved,
    suppressed: applied.suppressed,
    events: applied.events,
    orphaned,
    relayed: relay.relayed,
    d1Calls: fold.queries + applied.d1Calls + 1 + relay.d1Calls,
  };
}
