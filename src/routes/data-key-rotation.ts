import { createRoute, z } from "@hono/zod-openapi";
import { OPERATOR_AUTH_PROBLEMS, operatorAuth } from "../auth/bootstrap-token";
import { createRouter, jsonContent, problems } from "../openapi/shared";
import { rotateDekNow } from "../vault/dek-rotation";

const rotateDataKey = createRoute({
  method: "post",
  path: "/tenants/{tenant_id}/data-key/rotate",
  operationId: "rotateTenantDataKey",
  tags: ["Operator"],
  summary: "Rotate a tenant's data encryption key now (operator bootstrap token)",
  security: [{ bootstrapToken: [] }],
  description:
    "Starts the rotation the cron starts on the DEK's 90-day schedule: new writes use the new DEK at once, " +
    "a background Workflow re-encrypts every stored field in chunks, and the old DEK is deleted once no " +
    "wizard can still hold a value under it (7 days). Follow it on GET /api/v1/keyring/status. Every call " +
    "spends the client's sign-in attempt budget before the token is compared.",
  middleware: operatorAuth,
  request: { params: z.object({ tenant_id: z.string().min(1).max(64) }) },
  responses: {
    202: jsonContent(
      z.object({ run_id: z.string().describe("The rotation run (and its Workflow instance).") }),
      "The rotation started.",
    ),
    ...problems(...OPERATOR_AUTH_PROBLEMS, "NOT_FOUND", "CONFLICT", "VALIDATION_FAILED", "SEALED"),
  },
});

export const dataKeyRotationRoutes = createRouter().openapi(rotateDataKey, async (c) => {
  const tenantId = c.req.valid("param").tenant_id;
  const { runId } = await rotateDekNow(
    c.env,
    { tenantId, actorType: "operator", actorId: "bootstrap", requestId: c.get("requestId") },
    Date.now(),
  );
  return c.json({ run_id: runId }, 202);
});
