import { createRoute, z } from "@hono/zod-openapi";
import { commitWithAudit } from "../audit/audit-log";
import { OPERATOR_AUTH_PROBLEMS, operatorAuth } from "../auth/bootstrap-token";
import { ROLES } from "../auth/scopes";
import { PREFIX_PATTERN } from "../crypto/keys";
import { newId } from "../crypto/random";
import { database } from "../db/client";
import { apiKeys, dataKeys, tenants } from "../db/schema";
import { mintKey } from "../keys/issue-key";
import { CreatedKeySchema, DEFAULT_ROTATION_OVERLAP_SECONDS } from "../keys/key-schemas";
import { keyView } from "../keys/key-view";
import { createRouter, isoTime, jsonBody, jsonContent, NO_STORE, problems } from "../openapi/shared";
import { newTenantDek } from "../vault/data-keys";
import { unseal } from "../vault/keyring";

const CreateTenantSchema = z
  .strictObject({
    name: z.string().trim().min(1).max(100),
    key_prefix: z.string().regex(PREFIX_PATTERN).default("kw"),
  })
  .openapi("CreateTenant");

const TenantSchema = z
  .object({ id: z.string(), name: z.string(), key_prefix: z.string(), created_at: z.string() })
  .openapi("Tenant");

const createTenant = createRoute({
  method: "post",
  path: "/",
  operationId: "createTenant",
  tags: ["Tenants"],
  summary: "Create a tenant and its first admin key (operator bootstrap token)",
  security: [{ bootstrapToken: [] }],
  description:
    "Every call spends the client's sign-in attempt budget before the token is compared, and a wrong " +
    "token also spends its failed-authentication budget.",
  middleware: operatorAuth,
  request: { body: jsonBody(CreateTenantSchema) },
  responses: {
    201: jsonContent(
      z.object({
        tenant: TenantSchema,
        admin_key: z.string(),
        admin_key_details: CreatedKeySchema.omit({ key: true }),
      }),
      "The tenant, and its admin key in plaintext (shown once).",
    ),
    ...problems(...OPERATOR_AUTH_PROBLEMS, "VALIDATION_FAILED", "SEALED"),
  },
});

export const tenantRoutes = createRouter().openapi(createTenant, async (c) => {
  const body = c.req.valid("json");
  const db = database(c.env.DB);
  const keys = await unseal(c.env, db);
  const tenantId = newId("ten");
  const now = Date.now();
  const dek = await newTenantDek(keys, tenantId, now);
  const { key, row } = await mintKey(tenantId, {
    name: "Admin key",
    scopes: [...ROLES.admin],
    environment: "live",
    securityLevel: "enhanced",
    prefix: body.key_prefix,
    expiresAt: null,
    rotationDays: null,
    rotationOverlapSeconds: DEFAULT_ROTATION_OVERLAP_SECONDS,
    ipAllowlist: null,
    countryAllowlist: null,
    ratelimit: null,
    usageLimit: null,
    metadata: null,
    serviceId: null,
    createdBy: "operator",
  });
  const tenant = { id: tenantId, name: body.name, keyPrefix: body.key_prefix, createdAt: now };
  await commitWithAudit(
    c.env,
    { tenantId, actorType: "operator", actorId: "bootstrap", requestId: c.get("requestId") },
    [db.insert(tenants).values(tenant), db.insert(dataKeys).values(dek), db.insert(apiKeys).values(row)],
    [
      { action: "tenant.create", targetType: "tenant", targetId: tenantId, detail: { name: body.name } },
      { action: "key.create", targetType: "key", targetId: row.id, detail: { scopes: row.scopes } },
    ],
  );
  return c.json(
    {
      tenant: {
        id: tenantId,
        name: tenant.name,
        key_prefix: tenant.keyPrefix,
        created_at: isoTime(now) as string,
      },
      admin_key: key,
      admin_key_details: keyView(row),
    },
    201,
    NO_STORE,
  );
});
