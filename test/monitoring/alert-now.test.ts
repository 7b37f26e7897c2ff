import { env } from "cloudflare:workers";
import { HttpResponse, http } from "msw";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { database } from "../../src/db/client";
import { failKeyRotation } from "../../src/lifecycle/key-rotation";
import type { RotationParams } from "../../src/lifecycle/rotation-params";
import { claimRunStatement } from "../../src/lifecycle/rotation-runs";
import { evaluateTenantNow } from "../../src/monitoring/evaluate-now";
import { stripeKey } from "../credentials/samples";
import { callJson, createKey, createTenant } from "../helpers/api";
import { network } from "../setup/network";

beforeAll(() => network.enable());
afterEach(() => network.resetHandlers());
afterAll(() => network.disable());

const STRIPE_URL = "https://api.stripe.com/v1/balance";

describe("evaluation at once after a critical event", () => {
  it("raises a credential that starts failing its live test as a critical alert without waiting for the cron", async () => {
    network.use(
      http.get(STRIPE_URL, () =>
        HttpResponse.json({ error: { type: "invalid_request_error" } }, { status: 401 }),
      ),
    );
    const tenant = await createTenant();
    const created = await callJson<{ id: string }>("POST", "/api/v1/credentials", {
      key: tenant.adminKey,
      body: { service: "stripe", environment: "development", fields: { secret_key: stripeKey() } },
    });
    const tested = await callJson<{ status: string }>("POST", `/api/v1/credentials/${created.body.id}/test`, {
      key: tenant.adminKey,
    });
    expect(tested.body.status).toBe("invalid");

    const alerts = await callJson<{
      items: { kind: string; severity: string; state: string; subject: unknown }[];
    }>("GET", "/api/v1/alerts", { key: tenant.adminKey });
    expect(alerts.body.items).toEqual([
      expect.objectContaining({
        kind: "retest_failing",
        severity: "critical",
        state: "firing",
        subject: { type: "credential", id: created.body.id },
      }),
    ]);
    // The event that triggered it is marked as taken into account.
    const event = await env.DB.prepare(
      "SELECT alerted_at FROM events WHERE tenant_id = ? AND kind = 'credential.test_failed'",
    )
      .bind(tenant.id)
      .first<{ alerted_at: number | null }>();
    expect(event?.alerted_at).not.toBeNull();

    // A second evaluation (a retried Workflow step, a later test) changes nothing.
    await evaluateTenantNow(env, tenant.id, Date.now());
    const count = await env.DB.prepare("SELECT count(*) AS n FROM alerts WHERE tenant_id = ?")
      .bind(tenant.id)
      .first<{ n: number }>();
    expect(count?.n).toBe(1);
  });

  it("raises a failed key rotation as a critical alert from the Workflow's fail step; a retried step adds nothing", async () => {
    const tenant = await createTenant();
    const key = await createKey(tenant);
    const now = Date.now();
    const params: RotationParams = {
      runId: `${key.id}-${now}`,
      tenantId: tenant.id,
      subjectType: "key",
      subjectId: key.id,
      now,
    };
    const db = database(env.DB);
    await db.batch([claimRunStatement(db, { ...params, id: params.runId, trigger: "manual" })]);

    await failKeyRotation(env, params, { step: "test", error: "successor_rejected" });
    // Workflows retry a step whose result was lost: the same failure recorded twice.
    await failKeyRotation(env, params, { step: "test", error: "successor_rejected" });

    const { results } = await env.DB.prepare(
      "SELECT kind, severity, state, subject_id, summary FROM alerts WHERE tenant_id = ?",
    )
      .bind(tenant.id)
      .all();
    expect(results).toEqual([
      {
        kind: "rotation",
        severity: "critical",
        state: "firing",
        subject_id: key.id,
        summary: `Key ${key.id} rotation failed at step test`,
      },
    ]);
  });
});
