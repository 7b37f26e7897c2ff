/**
 * The state rules: conditions read from what is true now in the lifecycle's own tables (expiries, rotation
 * schedules and runs, live-test results, channel health), so an alert resolves by itself when the state
 * clears. The events a job records alongside its state change (rotation.failed, credential.test_failed,
 * rotation.pickup_missed...) are what makes the engine look at once (src/monitoring/evaluate-now.ts); the
 * events an evaluation took into account are stamped `alerted_at` in its last batch.
 */

import { database } from "../db/client";
import { inJsonList } from "../db/in-list";
import { events } from "../db/schema";
import type { Bindings } from "../env";
import type { RuleKind } from "./alert-kinds";
import { type ApplyReport, applyEvaluations } from "./alert-lifecycle";
import type { Evaluation } from "./evaluation";
import { loadRules } from "./rule-loader";
import { channelFailingEvaluations } from "./rules/channel-failing";
import { expiryEvaluations } from "./rules/expiry";
import { retestEvaluations } from "./rules/retest";
import { rotationEvaluations } from "./rules/rotation";
import type { StateQuery } from "./state-source";

export const STATE_RULE_KINDS = [
  "expiry_warning",
  "rotation",
  "retest_failing",
  "channel_failing",
] as const satisfies readonly RuleKind[];

/** Unalerted events stamped per evaluation (one JSON parameter). */
export const EVENTS_PER_STAMP = 500;

/** What every state rule of the tenants in `query` finds at `now`. */
export async function stateEvaluations(
  env: Pick<Bindings, "DB">,
  now: number,
  query: StateQuery = {},
): Promise<Evaluation[]> {
  const rules = await loadRules(database(env.DB), STATE_RULE_KINDS, query);
  if (rules.length === 0) return [];
  const found = await Promise.all([
    expiryEvaluations(env.DB, rules, now, query),
    rotationEvaluations(env.DB, rules, now, query),
    retestEvaluations(env.DB, rules, now, query),
    channelFailingEvaluations(env.DB, rules, now, query),
  ]);
  return found.flat();
}

/** Ids of events recorded by `now` that no evaluation has taken into account yet (oldest first, bounded). */
export async function unalertedEvents(env: Pick<Bindings, "DB">, now: number, query: StateQuery = {}) {
  const { results } = await env.DB.prepare(
    `SELECT id FROM events WHERE alerted_at IS NULL AND at <= ?1 AND (?2 IS NULL OR tenant_id = ?2)
     ORDER BY at LIMIT ?3`,
  )
    .bind(now, query.tenantId ?? null, EVENTS_PER_STAMP)
    .all<{ id: string }>();
  return results.map((row) => row.id);
}

/**
 * Reads the unalerted events first and the state second, so every stamped event's state change (committed in
 * the same batch as the event) is in what was evaluated; then applies the state rules and stamps the events
 * with the last batch. Combined with `extra` evaluations (the counter rules on the cron tick).
 */
export async function applyStateRules(
  env: Pick<Bindings, "DB">,
  now: number,
  query: StateQuery = {},
  extra: readonly Evaluation[] = [],
): Promise<ApplyReport & { events: number }> {
  const eventIds = await unalertedEvents(env, now, query);
  const evaluations = [...extra, ...(await stateEvaluations(env, now, query))];
  const report = await applyEvaluations(env, evaluations, now, {
    alongside: (db) =>
      eventIds.length > 0
        ? [db.update(events).set({ alertedAt: now }).where(inJsonList(events.id, eventIds))]
        : [],
  });
  return { ...report, events: eventIds.length };
}
