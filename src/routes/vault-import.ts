import { createRoute } from "@hono/zod-openapi";
import { auditActor } from "../audit/actor";
import { requireScope } from "../auth/authenticate";
import { ApiError } from "../errors";
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
    "Reads each path (`GET /v1/{mount}/data/{path}`; a path ending in `/` is a folder, listed with `LIST /v1/{mount}/metadata/{path}`), maps the secret's keys to the service's fields (`field_map`, else the same names), validates them like any credential and matches them to the tenant's credentials by service, environment and name. `dry_run: true` answers the plan and writes nothing. Otherwise every new credential and new version is written in one audited batch, or, if any secret cannot be imported, nothing is (422, errors per path). Importing the same secrets again changes nothing. Vault's address must be https on 443 or 8443 at a public host; redirects are not followed. The token is used for this request only and never stored, logged or audited. Needs `credentials:write` and `credentials:reveal`: the plan compares values with the stored ones. See docs/vault-import.md.",
  security: bearerSecurity,
  middleware: [requireScope("credentials:write")] as const,
  request: { body: jsonBody(VaultImportSchema) },
  responses: {
    200: jsonContent(VaultImportResultSchema, "The plan (dry run) or what was imported."),
    ...problems(...AUTH_PROBLEMS, "VALIDATION_FAILED", "CONFLICT", "UPSTREAM_UNAVAILABLE", "SEALED"),
  },
});

export const vaultImportRoutes = createRouter().openapi(importVault, async (c) => {
  // The plan compares Vault's values with the stored ones ("unchanged" or "update"): against a Vault the
  // caller runs, that answers whether a guessed secret is the stored one. Only a caller who may read the
  // secrets anyway may ask.
  if (!c.get("principal").scopes.has("credentials:reveal"))
    throw new ApiError(
      "FORBIDDEN",
      "This call needs the `credentials:write` and `credentials:reveal` scopes.",
    );
  return c.json(await importFromVaultKv(c.env, auditActor(c), c.req.valid("json")), 200);
});
