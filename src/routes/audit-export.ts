import { createRoute, z } from "@hono/zod-openapi";
import { auditActor } from "../audit/actor";
import { openAuditExport } from "../audit/audit-export";
import { auditSealKey } from "../audit/audit-export-key";
import { requireScope } from "../auth/authenticate";
import { AUTH_PROBLEMS, bearerSecurity, createRouter, jsonContent, problems } from "../openapi/shared";

const tags = ["Audit"];

/**
 * Typed as a plain string on purpose: @hono/zod-openapi reads any `application/…json…` key as JSON and would
 * require a JSON response from the handler; NDJSON is a stream of lines, answered as a plain Response.
 */
const NDJSON: string = "application/x-ndjson";

const SeqQuery = z.coerce.number().int().min(1).max(Number.MAX_SAFE_INTEGER).optional();

const exportAudit = createRoute({
  method: "get",
  path: "/export",
  operationId: "exportAuditLog",
  tags,
  summary: "Export the tenant's audit log as signed NDJSON with its chain hashes and a seal",
  description:
    "Streams one line per audit row (`seq`, `time`, `actor`, `action`, `subject`, `request_id`, `detail`, `prev_hash`, `hash`, and `sig`: an Ed25519 signature over the line) and a final seal line (a JWS over the tenant, range, row count, first `prev_hash`, head hash and the deployment's chain verdict). `scripts/verify-audit-export.mjs` checks it offline with the key from `GET /api/v1/audit/export-key` (docs/audit-export.md). The range defaults to the whole retained log and is fixed when the export starts; at most 100,000 rows per export, and the seal's `to_seq` says where it stopped. A broken chain is exported and marked in the seal, never refused. Each export is audited (`audit.export`).",
  security: bearerSecurity,
  middleware: [requireScope("audit:read")] as const,
  request: {
    query: z
      .object({ from_seq: SeqQuery, to_seq: SeqQuery })
      .refine((q) => q.from_seq === undefined || q.to_seq === undefined || q.to_seq >= q.from_seq, {
        message: "to_seq must not be below from_seq",
        path: ["to_seq"],
      }),
  },
  responses: {
    200: {
      description: "NDJSON: the row lines, then the seal line.",
      content: { [NDJSON]: { schema: z.string() } },
    },
    ...problems(...AUTH_PROBLEMS, "VALIDATION_FAILED", "SEALED"),
  },
});

const JwkSchema = z
  .object({
    kty: z.literal("OKP"),
    crv: z.literal("Ed25519"),
    x: z.string(),
    kid: z.string().describe("RFC 7638 thumbprint; the seal's JWS header names it."),
    alg: z.literal("EdDSA"),
    use: z.literal("sig"),
  })
  .openapi("AuditExportKey");

const exportKey = createRoute({
  method: "get",
  path: "/export-key",
  operationId: "getAuditExportKey",
  tags,
  summary: "The public key that signs audit exports, as a JWK set",
  description:
    "Deployment-wide and public (it verifies, it cannot sign): pin it once and verify exports offline with `scripts/verify-audit-export.mjs --jwks <file>`. It stays the same across KEK rotations.",
  security: [],
  responses: {
    200: jsonContent(z.object({ keys: z.array(JwkSchema) }).openapi("AuditExportKeySet"), "The key set."),
    ...problems("SEALED"),
  },
});

export const auditExportRoutes = createRouter()
  .openapi(exportAudit, async (c) => {
    const { from_seq, to_seq } = c.req.valid("query");
    const stream = await openAuditExport(c.env, auditActor(c), { fromSeq: from_seq, toSeq: to_seq });
    return c.body(stream, 200, {
      "content-type": NDJSON,
      "content-disposition": 'attachment; filename="keywarden-audit.ndjson"',
    });
  })
  .openapi(exportKey, async (c) => {
    const { publicJwk } = await auditSealKey(c.env);
    return c.json({ keys: [publicJwk] }, 200);
  });
