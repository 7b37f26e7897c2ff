/** GET /api/v1/monitoring/channels/{id}/deliveries: a channel's delivery log and health, tenant-scoped. */
import { HttpResponse, http } from "msw";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { newSigningSecret } from "../../src/monitoring/standard-webhooks";
import { callJson, createKey, createTenant } from "../helpers/api";
import { network } from "../setup/network";
import { consume, queueDelivery, storeAlert, storeChannel } from "./delivery-fixtures";

beforeAll(() => network.enable());
afterEach(() => network.resetHandlers());
afterAll(() => network.disable());

const HOOK = "https://hooks.example.com/log";

interface DeliveryList {
  channel: { id: string; health: string; consecutive_failures: number; last_error: string | null };
  items: {
    id: string;
    state: string;
    attempts: number;
    last_status: number | null;
    last_error: string | null;
  }[];
  next_cursor: string | null;
}

async function channelWithLog(name: string) {
  const tenant = await createTenant(name);
  const channelId = await storeChannel(
    tenant,
    "webhook",
    { url: HOOK },
    { signing_secret: newSigningSecret() },
  );
  const delivered = await queueDelivery(tenant, await storeAlert(tenant), channelId, "fired", 1_000);
  const failing = await queueDelivery(tenant, await storeAlert(tenant), channelId, "fired", 2_000);
  const pending = await queueDelivery(tenant, await storeAlert(tenant), channelId, "fired", 3_000);
  let answers = [204, 503];
  network.use(http.post(HOOK, () => new HttpResponse(null, { status: answers.shift() ?? 503 })));
  await consume([{ tenantId: tenant.id, deliveryId: delivered }]);
  await consume([{ tenantId: tenant.id, deliveryId: failing }]);
  answers = [];
  return { tenant, channelId, delivered, failing, pending };
}

describe("GET /monitoring/channels/{id}/deliveries", () => {
  it("lists the channel's deliveries newest first with attempts, status and reason, and its health", async () => {
    const { tenant, channelId, delivered, failing, pending } = await channelWithLog("deliveries-log");
    const readOnly = await createKey(tenant, { role: "read_only" });

    const { status, body } = await callJson<DeliveryList>(
      "GET",
      `/api/v1/monitoring/channels/${channelId}/deliveries`,
      { key: readOnly.key },
    );

    expect(status).toBe(200);
    expect(body.channel).toMatchObject({ id: channelId, health: "healthy", consecutive_failures: 0 });
    expect(body.items.map((item) => item.id)).toEqual([pending, failing, delivered]);
    expect(body.items[0]).toMatchObject({ state: "pending", attempts: 0, last_status: null });
    expect(body.items[1]).toMatchObject({
      state: "retrying",
      attempts: 1,
      last_status: 503,
      last_error: "http_503",
    });
    expect(body.items[2]).toMatchObject({
      state: "delivered",
      attempts: 1,
      last_status: 204,
      last_error: null,
    });
    expect(body.next_cursor).toBeNull();
  });

  it("pages with a cursor and filters by state", async () => {
    const { tenant, channelId, delivered, failing, pending } = await channelWithLog("deliveries-pages");
    const path = `/api/v1/monitoring/channels/${channelId}/deliveries`;

    const first = await callJson<DeliveryList>("GET", `${path}?limit=2`, { key: tenant.adminKey });
    const second = await callJson<DeliveryList>("GET", `${path}?limit=2&cursor=${first.body.next_cursor}`, {
      key: tenant.adminKey,
    });
    const retrying = await callJson<DeliveryList>("GET", `${path}?state=retrying`, { key: tenant.adminKey });

    expect(first.body.items.map((item) => item.id)).toEqual([pending, failing]);
    expect(second.body.items.map((item) => item.id)).toEqual([delivered]);
    expect(second.body.next_cursor).toBeNull();
    expect(retrying.body.items.map((item) => item.id)).toEqual([failing]);
  });

  it("answers 404 for another tenant's channel, exactly as for a missing one", async () => {
    const { channelId } = await channelWithLog("deliveries-owner");
    const other = await createTenant("deliveries-other");

    const foreign = await callJson("GET", `/api/v1/monitoring/channels/${channelId}/deliveries`, {
      key: other.adminKey,
    });
    const missing = await callJson("GET", "/api/v1/monitoring/channels/chan_missing/deliveries", {
      key: other.adminKey,
    });

    expect(foreign.status).toBe(404);
    expect(missing.status).toBe(404);
    expect(foreign.body).toMatchObject({ type: (missing.body as { type: string }).type });
  });

  it("requires monitoring:read", async () => {
    const tenant = await createTenant("deliveries-scope");
    const channelId = await storeChannel(tenant, "email", { to: "ops@example.com" });
    const keysOnly = await createKey(tenant, { scopes: ["keys:read"] });

    const refused = await callJson("GET", `/api/v1/monitoring/channels/${channelId}/deliveries`, {
      key: keysOnly.key,
    });
    const anonymous = await callJson("GET", `/api/v1/monitoring/channels/${channelId}/deliveries`);

    expect(refused.status).toBe(403);
    expect(anonymous.status).toBe(401);
  });
});
