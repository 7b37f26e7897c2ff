import { createRoute, z } from "@hono/zod-openapi";
import { and, eq } from "drizzle-orm";
import { auditActor } from "../audit/actor";
import { commitWithAudit } from "../audit/audit-log";
import { requireScope } from "../auth/authenticate";
import { assertMayManageKey } from "../auth/scopes";
import { assertStepUp } from "../auth/step-up";
import { database } from "../db/client";
import { apiKeys } from "../db/schema";
import { ApiError } from "../errors";
import {
  DeliveryEndpointBodySchema,
  DeliveryEndpointSchema,
  deliveryEndpointView,
  findDeliveryEndpoint,
  RegisteredDeliveryEndpointSchema,
  registerDeliveryEndpoint,
  removeDeliveryEndpointStatements,
} from "../lifecycle/delivery-endpoint";
import { claimPickup, readPickup } from "../lifecycle/key-handoff";
import {
  AUTH_PROBLEMS,
  bearerSecurity,
  createRouter,
  IdParam,
  jsonBody,
  jsonContent,
  NO_STORE,
  problems,
} from "../openapi/shared";

const ENDPOINT_PATH = "/rotation/delivery-endpoint";

const PickedUpSchema = z
  .union([
    z.object({ key_id: z.string(), key: z.string().describe("The new key's plaintext. Shown once.") }),
    z.object({
      key_id: z.string(),
      jwe: z
        .string()
        .describe("The undelivered JWE (compact) to the tenant's public key, when webhook delivery failed."),
    }),
  ])
  .openapi("PickedUpKey");

const putEndpoint = createRoute({
  method: "put",
  path: ENDPOINT_PATH,
  operationId: "setDeliveryEndpoint",
  tags: ["Rotation"],
  summary: "Register or replace where rotated keys are delivered",
  description:
    "Rotated issued keys are POSTed to `url` as a JWE encrypted to `public_jwk`, signed per Standard Webhooks " +
    "with the returned `signing_secret` (shown once; a new one on every PUT). The URL must be https on port " +
    "443 or 8443 and a public host. The key decides who can read every future rotated key, so this needs " +
    "step-up (a fresh two-factor code in `x-keywarden-totp` when the caller enrolled TOTP or the tenant " +
    "requires 2FA).",
  security: bearerSecurity,
  middleware: [requireScope("admin")] as const,
  request: { body: jsonBody(DeliveryEndpointBodySchema) },
  responses: {
    200: jsonContent(RegisteredDeliveryEndpointSchema, "The endpoint, with its signing secret (shown once)."),
    ...problems(...AUTH_PROBLEMS, "VALIDATION_FAILED", "SEALED", "KEY_UNAVAILABLE"),
  },
});

const getEndpoint = createRoute({
  method: "get",
  path: ENDPOINT_PATH,
  operationId: "getDeliveryEndpoint",
  tags: ["Rotation"],
  summary: "The tenant's delivery endpoint (without its signing secret)",
  security: bearerSecurity,
  middleware: [requireScope("admin")] as const,
  responses: {
    200: jsonContent(DeliveryEndpointSchema, "The endpoint."),
    ...problems(...AUTH_PROBLEMS, "NOT_FOUND"),
  },
});

const deleteEndpoint = createRoute({
  method: "delete",
  path: ENDPOINT_PATH,
  operationId: "deleteDeliveryEndpoint",
  tags: ["Rotation"],
  summary: "Remove the delivery endpoint: later rotated keys wait sealed for one-time pickup",
  security: bearerSecurity,
  middleware: [requireScope("admin")] as const,
  responses: {
    204: { description: "Removed." },
    ...problems(...AUTH_PROBLEMS, "NOT_FOUND", "SEALED"),
  },
});

const pickUpKey = createRoute({
  method: "post",
  path: "/keys/{id}/pickup",
  operationId: "pickUpKey",
  tags: ["Keys"],
  summary: "Pick up an automatically rotated key, once",
  description:
    "`id` is the new key's id. Returns its plaintext once and destroys the stored copy in the same audited " +
    "write; a second pickup, another tenant's key or a key whose overlap has ended is 404. When webhook " +
    "delivery failed, the undelivered JWE is returned instead of the plaintext. Only a caller holding every " +
    "Keywarden scope of the key may pick it up (403), after step-up (401/403, see Create a key).",
  security: bearerSecurity,
  middleware: [requireScope("keys:write")] as const,
  request: { params: IdParam },
  responses: {
    200: jsonContent(PickedUpSchema, "The key (or its JWE). Shown once."),
    ...problems(...AUTH_PROBLEMS, "NOT_FOUND", "INTEGRITY_ERROR", "SEALED"),
  },
});

export const keyDeliveryRoutes = createRouter()
  .openapi(putEndpoint, async (c) => {
    const { tenantId } = c.get("principal");
    const db = database(c.env.DB);
    await assertStepUp(c, db);
    const registered = await registerDeliveryEndpoint(c.env, db, tenantId, c.req.valid("json"), Date.now());
    await commitWithAudit(c.env, auditActor(c), registered.statements, [registered.event]);
    return c.json(
      { ...(await deliveryEndpointView(registered.row)), signing_secret: registered.signingSecret },
      200,
      NO_STORE,
    );
  })
  .openapi(getEndpoint, async (c) => {
    const row = await findDeliveryEndpoint(database(c.env.DB), c.get("principal").tenantId);
    if (!row) throw new ApiError("NOT_FOUND", "No delivery endpoint is registered.");
    return c.json(await deliveryEndpointView(row), 200);
  })
  .openapi(deleteEndpoint, async (c) => {
    const { tenantId } = c.get("principal");
    const db = database(c.env.DB);
    if (!(await findDeliveryEndpoint(db, tenantId)))
      throw new ApiError("NOT_FOUND", "No delivery endpoint is registered.");
    await commitWithAudit(c.env, auditActor(c), removeDeliveryEndpointStatements(db, tenantId), [
      { action: "delivery_endpoint.delete", targetType: "delivery_endpoint", targetId: tenantId },
    ]);
    return c.body(null, 204);
  })
  .openapi(pickUpKey, async (c) => {
    const principal = c.get("principal");
    const db = database(c.env.DB);
    const { id } = c.req.valid("param");
    const key = await db
      .select({ scopes: apiKeys.scopes })
      .from(apiKeys)
      .where(and(eq(apiKeys.tenantId, principal.tenantId), eq(apiKeys.id, id)))
      .get();
    if (!key) throw new ApiError("NOT_FOUND", "No such key.");
    assertMayManageKey(principal, key.scopes);
    await assertStepUp(c, db);
    const candidate = await readPickup(c.env, db, principal.tenantId, id, Date.now());
    return c.json(await claimPickup(c.env, auditActor(c), candidate), 200, NO_STORE);
  });
