import { createRoute, z } from "@hono/zod-openapi";
import { OPERATOR_AUTH_PROBLEMS, operatorAuth } from "../auth/bootstrap-token";
import { database } from "../db/client";
import { createRouter, jsonContent, NO_STORE, problems } from "../openapi/shared";
import { DATA_KEY_STATES } from "../vault/data-key-states";
import { KEK_PROVIDERS } from "../vault/kek-ref";
import { keyringStatus } from "../vault/keyring-status";

const count = (description: string) => z.number().int().min(0).describe(description);

const KekRefSchema = z
  .object({ provider: z.enum(KEK_PROVIDERS), version: z.number().int() })
  .openapi("KekRef");

const KekStatusSchema = z
  .object({
    provider: z.enum(KEK_PROVIDERS),
    version: z.number().int(),
    secret: z
      .string()
      .nullable()
      .describe(
        "The Workers secret holding this master version (MASTER_KEY, MASTER_KEY_<N>); null for Vault.",
      ),
    secret_present: z
      .boolean()
      .nullable()
      .describe("Whether that secret is set in this deployment (never its value); null for Vault."),
    data_keys: count("Tenant DEKs wrapped under this KEK, active and retiring."),
    retiring_data_keys: count("Of those, DEKs being retired: their rows are moving to the tenant's new DEK."),
    fields: count(
      "Sealed rows whose DEK is wrapped under this KEK, over every table that stores ciphertext. A row's " +
        "blobs are sealed together, so a row counts once however many fields it holds (a JSON map too).",
    ),
    system_keys: count("Deployment HMAC keys (session tokens, audit chain, ...) wrapped under this KEK."),
    current: z.boolean().describe("New DEKs are wrapped under this KEK (the target)."),
    removable: z
      .boolean()
      .describe(
        "Not the target and no data key or system key is wrapped under it: its secret (or, for Vault, " +
          "decryption with this key version) can be removed. Wait for this before deleting an old secret.",
      ),
  })
  .openapi("KekStatus");

const KeyringStatusSchema = z
  .object({
    target: z
      .object({
        provider: z.enum(KEK_PROVIDERS),
        version: z
          .number()
          .int()
          .nullable()
          .describe("For Vault, the Transit key's latest version; null while Vault cannot be reached."),
      })
      .nullable()
      .describe(
        "Where new DEKs are wrapped: KEK_PROVIDER, and KEK_VERSION or Vault's latest key version. Null when " +
          "the KEK settings are malformed (see `sealed`).",
      ),
    sealed: z
      .object({ code: z.literal("SEALED"), detail: z.string() })
      .nullable()
      .describe("Why every other route answers 503 SEALED; null when the keyring opens."),
    keks: z
      .array(KekStatusSchema)
      .describe("Every recorded master version, every KEK a stored key is wrapped under, and the target."),
    data_keys: z.object({
      active: count("Tenant DEKs new writes use (one per tenant)."),
      retiring: count("DEKs replaced by a rotation, deleted once their rows are re-encrypted."),
      rotation_due: count("Active DEKs whose rotation is due (schedule or encryption count reached)."),
    }),
    rotations: z.object({
      kek_rewrap: z
        .object({ run_id: z.string(), step: z.string(), started_at: z.string() })
        .nullable()
        .describe("The re-wrap of every DEK and system key under the target, while one runs."),
      data_keys_in_progress: count("Tenant DEK rotations running now."),
    }),
    tenants: z
      .object({
        items: z.array(
          z.object({
            tenant_id: z.string(),
            data_keys: z.array(
              z.object({
                version: z.number().int(),
                status: z.enum(DATA_KEY_STATES),
                kek: KekRefSchema,
                fields: count("Sealed rows under this DEK (a row counts once)."),
              }),
            ),
          }),
        ),
        next_cursor: z.string().nullable(),
      })
      .describe(
        "Tenants, by id, that still depend on something other than the target: a DEK wrapped under another " +
          "KEK, or a retiring DEK; each with all its DEKs. Empty when a rotation has finished.",
      ),
  })
  .openapi("KeyringStatus");

const getStatus = createRoute({
  method: "get",
  path: "/status",
  operationId: "getKeyringStatus",
  tags: ["Operator"],
  summary: "What depends on each key-encryption key (operator bootstrap token)",
  security: [{ bootstrapToken: [] }],
  description:
    "Answers while the service is sealed, with the reason: it reads the database and the configuration, " +
    "never a key. Secrets are named, never shown. Every call spends the client's sign-in attempt budget " +
    "before the token is compared, and a wrong token also spends its failed-authentication budget.",
  middleware: operatorAuth,
  request: {
    query: z.object({
      limit: z.coerce.number().int().min(1).max(100).default(50),
      cursor: z.string().max(200).optional(),
    }),
  },
  responses: {
    200: jsonContent(KeyringStatusSchema, "The keyring's state."),
    ...problems(...OPERATOR_AUTH_PROBLEMS, "BAD_REQUEST", "VALIDATION_FAILED"),
  },
});

export const keyringRoutes = createRouter().openapi(getStatus, async (c) => {
  const { limit, cursor } = c.req.valid("query");
  return c.json(await keyringStatus(c.env, database(c.env.DB), { limit, cursor }), 200, NO_STORE);
});
