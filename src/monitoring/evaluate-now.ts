import type { Bindings } from "../env";
import { relayOutbox } from "./outbox";
import { applyStateRules } from "./state-rules";

/**
 * Evaluates one tenant's state rules at once, then hands the notifications to the Queue: called after a
 * critical event (rotation.failed, rotation.pickup_missed, credential.test_failed) has committed, so a failure
 * pages within seconds instead of at the next cron tick. Safe to call twice (a Workflow step retried): the
 * alert de-duplicates and its outbox rows are unique per alert, channel and transition.
 *
 * Never throws: the event is recorded and the cron tick evaluates it anyway, so a failure here must not fail
 * the job that recorded it.
 */
export async function evaluateTenantNow(
  env: Pick<Bindings, "DB" | "ALERT_QUEUE">,
  tenantId: string,
  now: number,
): Promise<void> {
  try {
    await applyStateRules(env, now, { tenantId });
    await relayOutbox(env, now);
  } catch (error) {
    console.error(
      // The cron tick evaluates the same events again.
      JSON.stringify({ event: "alert_evaluation_failed", tenant_id: tenantId, error: String(error) }),
    );
  }
}
