import { z } from "@hono/zod-openapi";
import {
  CredentialEnvironmentSchema,
  CredentialSecurityLevelSchema,
} from "../credentials/credential-schemas";
import { CREDENTIAL, MOUNT, NAMESPACE } from "../vault/vault-config";

/** Paths (folders expanded) one import may read: every secret is read, validated and written in one batch. */
export const MAX_VAULT_SECRETS = 100;
export const MAX_VAULT_PATHS = 50;

/** No `.` or `..` segment: fetch would resolve it and the request would leave `<mount>/data/`. */
const noDotSegments = (value: string) =>
  value.split("/").every((segment) => segment !== "." && segment !== "..");

/**
 * A secret (`payments/stripe`) or, ending in `/`, a folder whose secrets are all imported (`payments/`; `/` is
 * the mount's top level). Segments are percent-encoded when sent; empty and dot segments are refused.
 */
const VaultPath = z
  .string()
  .min(1)
  .max(512)
  .regex(/^[^\p{Cc}]+$/u, "must not contain control characters")
  .refine((value) => value === "/" || (!value.startsWith("/") && !value.replace(/\/$/, "").includes("//")), {
    message: "must be a path below the mount: no leading or doubled `/`",
  })
  .refine(noDotSegments, { message: "must not contain `.` or `..` segments" });

const VaultPathEntrySchema = z
  .strictObject({
    path: VaultPath,
    service: z
      .string()
      .min(1)
      .max(64)
      .describe("The catalogue service the secret holds (GET /api/v1/services)."),
    environment: CredentialEnvironmentSchema,
    security_level: CredentialSecurityLevelSchema.default("enhanced"),
    name: z
      .string()
      .trim()
      .min(1)
      .max(100)
      .optional()
      .describe(
        "The credential's name; default the secret's path. Not for a folder (each secret takes its path).",
      ),
    version: z
      .number()
      .int()
      .min(1)
      .optional()
      .describe("A KV version to import; default the latest. Not for a folder."),
    field_map: z
      .record(z.string().min(1).max(64), z.string().min(1).max(256))
      .refine((value) => Object.keys(value).length <= 20, "must have at most 20 entries")
      .optional()
      .describe(
        'Catalogue field → Vault key, e.g. {"secret_key": "STRIPE_SECRET_KEY"}. Fields not named here are read from the Vault key of the same name.',
      ),
  })
  .refine((entry) => !entry.path.endsWith("/") || (entry.name === undefined && entry.version === undefined), {
    message:
      "a folder takes no name or version: each of its secrets is named by its path, at its latest version",
    path: ["path"],
  });

export const VaultImportSchema = z
  .strictObject({
    address: z.string().min(1).max(2048).describe("Vault's origin: https://host[:8443], a public address."),
    token: z
      .string()
      .min(1)
      .max(1024)
      .regex(CREDENTIAL, "must be visible ASCII")
      .describe(
        "A Vault token with read (and list, for folders) on the paths. Used for this request only: never stored, logged or audited.",
      ),
    namespace: z.string().max(256).regex(NAMESPACE).optional().describe("Sent as X-Vault-Namespace."),
    mount: z
      .string()
      .min(1)
      .max(128)
      .regex(MOUNT)
      .refine(noDotSegments, { message: "must not contain `.` or `..` segments" })
      .describe("Where the KV version 2 engine is mounted, e.g. `secret`."),
    paths: z.array(VaultPathEntrySchema).min(1).max(MAX_VAULT_PATHS),
    dry_run: z.boolean().default(false).describe("Read and validate everything, write nothing: the plan."),
  })
  .openapi("VaultImport");

export type VaultImportRequest = z.infer<typeof VaultImportSchema>;

export const VAULT_IMPORT_ACTIONS = ["create", "update", "unchanged", "invalid", "skipped"] as const;
export type VaultImportAction = (typeof VAULT_IMPORT_ACTIONS)[number];

export const VaultImportItemSchema = z
  .object({
    path: z.string().describe("The secret's path below the mount (a skipped sub-folder ends with `/`)."),
    vault_version: z.number().int().optional(),
    service: z.string(),
    environment: CredentialEnvironmentSchema,
    name: z.string().optional(),
    action: z.enum(VAULT_IMPORT_ACTIONS),
    credential_id: z
      .string()
      .optional()
      .describe("The credential updated or left unchanged; after an import, also the one created."),
    fields: z.array(z.string()).optional().describe("The catalogue fields the secret fills (names only)."),
    ignored_keys: z.array(z.string()).optional().describe("Keys of the secret no field takes (names only)."),
    warnings: z.array(z.string()).optional(),
    errors: z.array(z.object({ path: z.string(), message: z.string() })).optional(),
  })
  .openapi("VaultImportItem");

export type VaultImportItem = z.infer<typeof VaultImportItemSchema>;

export const VaultImportResultSchema = z
  .object({
    dry_run: z.boolean(),
    summary: z.record(z.enum(VAULT_IMPORT_ACTIONS), z.number().int()),
    items: z.array(VaultImportItemSchema),
  })
  .openapi("VaultImportResult");

export type VaultImportResult = z.infer<typeof VaultImportResultSchema>;
