import { createRoute } from "@hono/zod-openapi";
import { auditActor } from "../audit/actor";
import { requireScope } from "../auth/authenticate";
import {
  AUTH_PROBLEMS,
  bearerSecurity,
  createRouter,
  jsonBody,
  jsonContent,
  problems,
} from "../openapi/shared";
import { importFromVaultKv } from "../portability/vault-kv-import";
import { VaultImportResultSchema, VaultImportSchema } from "../portability/vault-kv-schemas";

const importVault = createRoute({
  method: "post",
  path: "/",
  operationId: "importFromVault",
  tags: ["Export and import"],
  summary:
    "Import secrets from HashiCorp Vault KV version 2 into catalogue credentials (dry run for the plan)",
  description:
    "Reads each path (`GET /v1/{mount}/data/{path}`; a path ending in `/` is a folder, listed with `LIST /v1/{mount}/metadata/{path}`), maps the secret's keys to the service's fields (`field_map`, else the same names), validates them like any credential and matches them to the tenant's credentials by service, environment and name. `dry_run: true` answers the plan and writes nothing. Otherwise every new credential and new version is written in one audited batch, or, if any secret cannot be imported, nothing is (422, errors per path). Importing the same secrets again changes nothing. Vault's address must be https on 443 or 8443 at a public host; redirects are not followed. The token is used for this request only and never stored, logged or audited. See docs/vault-import.md.",
  security: bearerSecurity,
  middleware: [requireScope("credentials:write")] as const,
  request: { body: jsonBody(VaultImportSchema) },
  responses: {
    200: jsonContent(VaultImportResultSchema, "The plan (dry run) or what was imported."),
    ...problems(...AUTH_PROBLEMS, "VALIDATION_FAILED", "CONFLICT", "UPSTREAM_UNAVAILABLE", "SEALED"),
  },
});

export const vaultImportRoutes = createRouter().openapi(importVault, async (c) => {
  return c.json(await importFromVaultKv(c.env, auditActor(c), c.req.valid("json")), 200);
});
