import { createRoute, z } from "@hono/zod-openapi";
import { desc, eq } from "drizzle-orm";
import { requireScope } from "../auth/authenticate";
import { database } from "../db/client";
import { alertChannels, alertRules, securityPolicies } from "../db/schema";
import { ApiError } from "../errors";
import { RULE_KINDS } from "../monitoring/alert-kinds";
import {
  AUTH_PROBLEMS,
  bearerSecurity,
  createRouter,
  isoTime,
  jsonContent,
  problems,
} from "../openapi/shared";

const tags = ["Monitoring"];

const ChannelViewSchema = z
  .object({
    id: z.string(),
    kind: z.enum(["email", "slack", "webhook", "sms"]),
    name: z.string(),
    config: z.record(z.string(), z.string()).describe("Non-secret settings only; secrets stay encrypted."),
    secret_fields: z.array(z.string()).describe("Which settings are stored encrypted."),
    created_at: z.string(),
  })
  .openapi("AlertChannel");

const RuleViewSchema = z
  .object({
    id: z.string(),
    kind: z.enum(RULE_KINDS),
    service_id: z.string().nullable(),
    settings: z.record(z.string(), z.unknown()),
    channel_ids: z.array(z.string()),
    created_at: z.string(),
  })
  .openapi("AlertRule");

const PolicySchema = z
  .object({
    security_level: z.enum(["basic", "enhanced", "enterprise"]),
    environment: z.enum(["development", "staging", "production"]),
    rotation_policy: z.string(),
    rotation_days: z.number().int().nullable(),
    ip_allowlist: z.array(z.string()),
    country_allowlist: z.array(z.string()),
    require_2fa: z.boolean(),
    compliance: z.array(z.string()),
    wizard_id: z.string(),
    updated_at: z.string(),
  })
  .openapi("SecurityPolicy");

const read = <T extends Parameters<typeof createRoute>[0]>(config: T) =>
  createRoute({
    tags,
    security: bearerSecurity,
    middleware: [requireScope("monitoring:read")] as const,
    ...config,
  });

const channelsRoute = read({
  method: "get",
  path: "/monitoring/channels",
  summary: "The tenant's alert channels (secrets never shown)",
  responses: {
    200: jsonContent(z.object({ items: z.array(ChannelViewSchema) }), "Channels."),
    ...problems(...AUTH_PROBLEMS),
  },
});
const rulesRoute = read({
  method: "get",
  path: "/monitoring/rules",
  summary: "The tenant's alert rules",
  responses: {
    200: jsonContent(z.object({ items: z.array(RuleViewSchema) }), "Rules."),
    ...problems(...AUTH_PROBLEMS),
  },
});
const policyRoute = read({
  method: "get",
  path: "/security-policy",
  summary: "The tenant's security policy, as last committed by the wizard",
  responses: { 200: jsonContent(PolicySchema, "The policy."), ...problems(...AUTH_PROBLEMS, "NOT_FOUND") },
});

export const monitoringRoutes = createRouter()
  .openapi(channelsRoute, async (c) => {
    const rows = await database(c.env.DB)
      .select()
      .from(alertChannels)
      .where(eq(alertChannels.tenantId, c.get("principal").tenantId))
      .orderBy(desc(alertChannels.createdAt))
      .limit(100)
      .all();
    return c.json(
      {
        items: rows.map((row) => ({
          id: row.id,
          kind: row.kind,
          name: row.name,
          config: row.config,
          secret_fields: Object.keys(row.sealedSecrets).sort(),
          created_at: isoTime(row.createdAt) as string,
        })),
      },
      200,
    );
  })
  .openapi(rulesRoute, async (c) => {
    const rows = await database(c.env.DB)
      .select()
      .from(alertRules)
      .where(eq(alertRules.tenantId, c.get("principal").tenantId))
      .orderBy(desc(alertRules.createdAt))
      .limit(100)
      .all();
    return c.json(
      {
        items: rows.map((row) => ({
          id: row.id,
          kind: row.kind,
          service_id: row.serviceId,
          settings: row.settings,
          channel_ids: row.channelIds,
          created_at: isoTime(row.createdAt) as string,
        })),
      },
      200,
    );
  })
  .openapi(policyRoute, async (c) => {
    const row = await database(c.env.DB)
      .select()
      .from(securityPolicies)
      .where(eq(securityPolicies.tenantId, c.get("principal").tenantId))
      .get();
    if (!row) throw new ApiError("NOT_FOUND", "No security policy has been committed yet.");
    return c.json(
      {
        security_level: row.securityLevel,
        environment: row.environment,
        rotation_policy: row.rotationPolicy,
        rotation_days: row.rotationDays,
        ip_allowlist: row.ipAllowlist,
        country_allowlist: row.countryAllowlist,
        require_2fa: row.require2fa,
        compliance: row.compliance,
        wizard_id: row.wizardId,
        updated_at: isoTime(row.updatedAt) as string,
      },
      200,
    );
  });
