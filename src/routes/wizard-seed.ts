import { createRoute, z } from "@hono/zod-openapi";
import { and, desc, eq } from "drizzle-orm";
import { auditActor } from "../audit/actor";
import { commitWithAudit } from "../audit/audit-log";
import { requireScope } from "../auth/authenticate";
import { runProbe } from "../catalog/run-probe";
import { generateFieldValue, validateCredential } from "../catalog/validate";
import { CredentialSchema, ProbeResultSchema } from "../credentials/credential-schemas";
import { credentialViews, probeView } from "../credentials/credential-view";
import { credentialsWithCurrentVersion } from "../credentials/current-versions";
import { providerFetch } from "../credentials/provider-fetch";
import { requireService } from "../credentials/require-service";
import { database } from "../db/client";
import { apiKeys, credentials } from "../db/schema";
import { ApiError } from "../errors";
import { mintKeyWithBackup } from "../keys/issue-key";
import { KeySchema } from "../keys/key-schemas";
import { keyViews } from "../keys/key-view";
import { serviceKeySettings } from "../keys/service-key";
import {
  AUTH_PROBLEMS,
  bearerSecurity,
  createRouter,
  isoTime,
  jsonBody,
  jsonContent,
  NO_STORE,
  problems,
} from "../openapi/shared";
import { keySettingsUnderPolicy, levelAtLeastPolicy, tenantKeyDefaults } from "../policy/security-policy";
import {
  COMPLIANCE_STANDARDS,
  canonicalRotationPolicy,
  ENVIRONMENTS,
  ROTATION_POLICIES,
  type RotationPolicy,
  rotationDays,
  SECURITY_LEVELS,
  SEED_ROTATION_SPELLINGS,
} from "../wizard/security-levels";

const tags = ["Wizard (seed API)"];
const EnvironmentSchema = z.enum(ENVIRONMENTS);
const LevelSchema = z.enum(["basic", "enhanced", "enterprise"]);
const PolicySchema = z.enum(Object.keys(ROTATION_POLICIES) as [RotationPolicy, ...RotationPolicy[]]);
/** The seed's clients spell the policies with a hyphen ("90-days"); both spellings mean the same policy. */
const SeedPolicySchema = z.preprocess(canonicalRotationPolicy, PolicySchema).openapi({
  enum: [...Object.keys(ROTATION_POLICIES), ...Object.keys(SEED_ROTATION_SPELLINGS)],
  description: `A rotation policy. The seed's spellings (${Object.entries(SEED_ROTATION_SPELLINGS)
    .map(([seed, id]) => `\`${seed}\` for \`${id}\``)
    .join(", ")}) are accepted and mean the same policies.`,
});

const securityConfigurationsRoute = createRoute({
  method: "get",
  path: "/security-configurations",
  operationId: "getWizardSecurityConfigurations",
  security: [],
  tags,
  summary: "Security levels and what each turns on; environments, rotation policies, compliance standards",
  responses: {
    200: jsonContent(
      z.object({
        security_levels: z.array(z.object({ id: LevelSchema }).passthrough()),
        environments: z.array(EnvironmentSchema),
        rotation_policies: z.array(z.object({ id: PolicySchema, days: z.number().nullable() })),
        compliance_standards: z.array(
          z.object({ id: z.string(), name: z.string(), description: z.string() }),
        ),
      }),
      "The options.",
    ),
  },
});

const validateRoute = createRoute({
  method: "post",
  path: "/api-keys/validate",
  operationId: "validateWizardCredential",
  tags,
  summary:
    "Check a credential's format, strength and environment (and optionally test it live) without storing it",
  security: bearerSecurity,
  middleware: [requireScope("wizard")] as const,
  request: {
    body: jsonBody(
      z
        .strictObject({
          service_id: z.string().max(64),
          fields: z.record(z.string().max(64), z.string().max(4096)),
          environment: EnvironmentSchema,
          security_level: LevelSchema.default("enhanced"),
          live_check: z.boolean().default(false),
        })
        .openapi("ValidateCredential"),
    ),
  },
  responses: {
    200: jsonContent(
      z.object({
        service_id: z.string(),
        valid: z.boolean(),
        fields: z.array(
          z.object({
            field: z.string(),
            format_ok: z.boolean(),
            strength: z.object({ score: z.number() }).passthrough().nullable(),
            errors: z.array(z.string()),
          }),
        ),
        environment: z.object({
          detected: z.enum(["test", "live"]).nullable(),
          mismatch: z.boolean(),
          refused: z.boolean(),
        }),
        errors: z.array(z.string()),
        warnings: z.array(z.string()),
        live_check: ProbeResultSchema.nullable(),
      }),
      "The checks' results; nothing is stored.",
    ),
    ...problems(...AUTH_PROBLEMS, "VALIDATION_FAILED"),
  },
});

const GeneratedKeySchema = z
  .object({
    service_id: z.string(),
    service_name: z.string(),
    key_id: z.string(),
    key: z.string(),
    backup_key: z.object({ id: z.string(), key: z.string() }).nullable(),
    generated_secrets: z.record(z.string(), z.string()),
    environment: EnvironmentSchema,
    security_level: LevelSchema,
    expires_at: z.string().nullable(),
    next_rotation_at: z
      .string()
      .nullable()
      .describe("When the key rotation policy rotates this key (a schedule: the key does not expire then)."),
  })
  .openapi("GeneratedKey");

const generateRoute = createRoute({
  method: "post",
  path: "/api-keys/generate",
  operationId: "generateWizardKeys",
  tags,
  summary:
    "Issue one scoped Keywarden key per service, plus the secrets the catalogue says Keywarden can generate",
  description:
    "The tenant's committed security policy is a floor: a lower `security_level` is raised to the " +
    "policy's level (entropy, backup key, rotation ceiling), and keys inherit the policy's IP and country " +
    "allowlists. Each generated key reports the level it was actually issued at.",
  security: bearerSecurity,
  middleware: [requireScope("keys:write")] as const,
  request: {
    body: jsonBody(
      z
        .strictObject({
          service_ids: z.array(z.string().max(64)).min(1).max(20),
          security_configuration: z.strictObject({
            environment: EnvironmentSchema,
            security_level: LevelSchema,
            key_rotation_policy: SeedPolicySchema,
            custom_rotation_days: z.number().int().min(1).max(365).optional(),
          }),
        })
        .openapi("GenerateKeys"),
    ),
  },
  responses: {
    201: jsonContent(z.object({ generated_keys: z.array(GeneratedKeySchema) }), "Plaintext shown once."),
    ...problems(...AUTH_PROBLEMS, "VALIDATION_FAILED", "SEALED"),
  },
});

const tenantOverviewRoute = createRoute({
  method: "get",
  path: "/api-keys/tenant/{tenantId}",
  operationId: "getWizardTenantOverview",
  tags,
  summary: "The caller's own tenant's keys and credentials, masked (any other tenant is 404)",
  security: bearerSecurity,
  middleware: [requireScope("keys:read")] as const,
  request: { params: z.object({ tenantId: z.string().max(64) }) },
  responses: {
    200: jsonContent(
      z.object({ tenant_id: z.string(), keys: z.array(KeySchema), credentials: z.array(CredentialSchema) }),
      "Masked overview.",
    ),
    ...problems(...AUTH_PROBLEMS, "NOT_FOUND"),
  },
});

export const wizardSeedRoutes = createRouter()
  .openapi(securityConfigurationsRoute, (c) =>
    c.json(
      {
        security_levels: Object.entries(SECURITY_LEVELS).map(([id, level]) => ({
          id: id as z.infer<typeof LevelSchema>,
          ...level,
        })),
        environments: [...ENVIRONMENTS],
        rotation_policies: Object.entries(ROTATION_POLICIES).map(([id, days]) => ({
          id: id as RotationPolicy,
          days,
        })),
        compliance_standards: COMPLIANCE_STANDARDS.map((standard) => ({ ...standard })),
      },
      200,
    ),
  )
  .openapi(validateRoute, async (c) => {
    const body = c.req.valid("json");
    const service = requireService(body.service_id, "service_id");
    const result = validateCredential(service, body.fields, {
      environment: body.environment,
      securityLevel: body.security_level,
    });
    // Only a well-formed set is sent to the provider: malformed input never leaves the edge.
    const liveCheck =
      body.live_check && result.ok
        ? await runProbe(service, body.fields, { fetch: providerFetch(c.env), environment: body.environment })
        : null;
    return c.json(
      {
        service_id: service.id,
        valid: result.ok && (liveCheck === null || liveCheck.status !== "invalid"),
        fields: result.fields,
        environment: result.environment,
        errors: result.errors,
        warnings: result.warnings,
        live_check: liveCheck ? probeView(liveCheck) : null,
      },
      200,
    );
  })
  .openapi(generateRoute, async (c) => {
    const principal = c.get("principal");
    const { service_ids, security_configuration: config } = c.req.valid("json");
    const services = [...new Set(service_ids)].map((id, index) => requireService(id, `service_ids.${index}`));
    const db = database(c.env.DB);
    const { prefix, policy } = await tenantKeyDefaults(db, principal.tenantId);
    // The rotation ceiling is the effective level's, so a level raised by the policy also caps the period.
    const level = levelAtLeastPolicy(config.security_level, policy);
    const days = rotationDays(level, config.key_rotation_policy, config.custom_rotation_days);
    const issued = [];
    for (const service of services) {
      const settings = keySettingsUnderPolicy(
        serviceKeySettings(service, {
          environment: config.environment,
          securityLevel: config.security_level,
          prefix,
          rotationDays: days,
          metadata: { environment: config.environment, rotation_policy: config.key_rotation_policy },
          createdBy: principal.keyId,
        }),
        policy,
      );
      const minted = await mintKeyWithBackup(principal.tenantId, settings);
      const secrets = Object.fromEntries(
        service.generatable.map((spec) => [spec.field, generateFieldValue(spec)]),
      );
      issued.push({ service, minted, secrets });
    }
    await commitWithAudit(
      c.env,
      auditActor(c),
      // One statement per row: D1 caps bound parameters per statement at 100.
      issued.flatMap((entry) => entry.minted.rows).map((row) => db.insert(apiKeys).values(row)),
      issued.flatMap(({ service, minted }) =>
        minted.rows.map((row) => ({
          action: "key.create",
          targetType: "key",
          targetId: row.id,
          detail: {
            service: service.id,
            scopes: row.scopes,
            security_level: row.securityLevel,
            via: "wizard.generate",
          },
        })),
      ),
    );
    return c.json(
      {
        generated_keys: issued.map(({ service, minted, secrets }) => ({
          service_id: service.id,
          service_name: service.name,
          key_id: minted.primary.row.id,
          key: minted.primary.key,
          backup_key: minted.backup ? { id: minted.backup.row.id, key: minted.backup.key } : null,
          generated_secrets: secrets,
          environment: config.environment,
          security_level: minted.primary.row.securityLevel,
          expires_at: isoTime(minted.primary.row.expiresAt),
          next_rotation_at: isoTime(minted.primary.row.nextRotationAt),
        })),
      },
      201,
      NO_STORE,
    );
  })
  .openapi(tenantOverviewRoute, async (c) => {
    const { tenantId } = c.get("principal");
    if (c.req.valid("param").tenantId !== tenantId) throw new ApiError("NOT_FOUND", "No such tenant.");
    const db = database(c.env.DB);
    const keys = await db
      .select()
      .from(apiKeys)
      .where(eq(apiKeys.tenantId, tenantId))
      .orderBy(desc(apiKeys.createdAt))
      .limit(100)
      .all();
    const creds = await credentialsWithCurrentVersion(db)
      .where(and(eq(credentials.tenantId, tenantId), eq(credentials.status, "active")))
      .orderBy(desc(credentials.createdAt))
      .limit(100)
      .all();
    return c.json(
      {
        tenant_id: tenantId,
        keys: await keyViews(db, tenantId, keys),
        credentials: await credentialViews(db, tenantId, creds),
      },
      200,
    );
  });
