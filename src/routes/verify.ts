import { createRoute } from "@hono/zod-openapi";
import { requestOrigin, requireScope } from "../auth/authenticate";
import { database } from "../db/client";
import { preparedJson } from "../http/security-headers";
import { VerifyKeyRequestSchema, VerifyKeyResponseSchema } from "../keys/key-schemas";
import { verifyKey } from "../keys/verify-key";
import { recordUsage } from "../monitoring/usage-recorder";
import {
  AUTH_PROBLEMS,
  bearerSecurity,
  createRouter,
  isoTime,
  jsonBody,
  jsonContent,
  problems,
} from "../openapi/shared";

const verifyRoute = createRoute({
  method: "post",
  path: "/",
  operationId: "verifyKey",
  tags: ["Keys"],
  summary: "Verify a key (the hot path). Always 200 with `valid` and `code` for an authorised caller.",
  security: bearerSecurity,
  middleware: [requireScope("keys:verify", { cachedAuth: true })] as const,
  request: { body: jsonBody(VerifyKeyRequestSchema) },
  responses: {
    200: jsonContent(VerifyKeyResponseSchema, "The verdict."),
    ...problems(...AUTH_PROBLEMS, "VALIDATION_FAILED"),
  },
});

export const verifyRoutes = createRouter().openapi(verifyRoute, async (c) => {
  const { tenantId } = c.get("principal");
  const body = c.req.valid("json");
  const db = database(c.env.DB);
  const now = Date.now();
  const outcome = await verifyKey(
    { db, limiter: c.env.KEY_LIMITER },
    { key: body.key, tenantId, requiredScopes: body.scopes, origin: requestOrigin(c), now },
  );
  const { record, limits, code } = outcome;
  recordUsage(c, { tenantId, keyId: record?.id ?? null, code }, now);
  if (!record) return preparedJson(c, { valid: false, code }, 200);
  return preparedJson(
    c,
    {
      valid: code === "VALID",
      code,
      key_id: record.id,
      name: record.name,
      environment: record.environment,
      scopes: [...record.scopes],
      expires_at: isoTime(record.expiresAt),
      metadata: record.metadata,
      ...(limits?.remaining !== undefined ? { remaining: limits.remaining } : {}),
      ...(limits?.ratelimit ? { ratelimit: limits.ratelimit } : {}),
      ...(record.rotatedToId ? { replaced_by: record.rotatedToId } : {}),
    },
    200,
  );
});
