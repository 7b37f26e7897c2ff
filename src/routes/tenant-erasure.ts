import { createRoute, z } from "@hono/zod-openapi";
import { OPERATOR_AUTH_PROBLEMS, operatorAuth } from "../auth/bootstrap-token";
import { ERASURE_STATES, ERASURE_STEPS } from "../erasure/erasure-kinds";
import {
  type ErasureRow,
  findErasure,
  receiptIntact,
  requestErasure,
  signReceipt,
  startErasure,
} from "../erasure/tenant-erasure";
import { CLEARED_OBJECTS } from "../erasure/tenant-tables";
import { ApiError } from "../errors";
import { createRouter, isoTime, jsonContent, problems } from "../openapi/shared";

const TenantParam = z.object({ id: z.string().min(1).max(64) });

const ErasureStartedSchema = z
  .object({
    erasure_id: z.string(),
    tenant_id: z.string(),
    state: z.enum(ERASURE_STATES),
    requested_at: z.string(),
  })
  .openapi("TenantErasureStarted");

const ErasureReceiptSchema = z
  .object({
    erasure_id: z.string(),
    tenant_id: z.string(),
    state: z.enum(ERASURE_STATES),
    step: z.enum(ERASURE_STEPS).describe("Where the erasure is (docs/erasure.md)."),
    requested_at: z.string().describe("When every key of the tenant was disabled and its schedules cleared."),
    dek_destroyed_at: z
      .string()
      .nullable()
      .describe("When its data keys were destroyed: from then on none of its ciphertext decrypts."),
    rows_deleted_at: z.string().nullable().describe("When a first full pass left no row of the tenant."),
    completed_at: z.string().nullable(),
    data_keys_destroyed: z.number().int(),
    rows_deleted: z.record(z.string(), z.number().int()).describe("Rows deleted, by table."),
    objects_cleared: z
      .object(Object.fromEntries(CLEARED_OBJECTS.map((kind) => [kind, z.number().int()])))
      .describe("Durable Objects whose storage was cleared, by kind."),
    audit_chain_head: z
      .object({ seq: z.number().int(), mac: z.string() })
      .nullable()
      .describe("The tenant's last audit row before its log was deleted: its sequence number and chain MAC."),
    receipt_mac: z
      .string()
      .nullable()
      .describe("HMAC-SHA-256 of the completed receipt under a Keywarden system key."),
    receipt_intact: z
      .boolean()
      .nullable()
      .describe("Whether the stored receipt still matches its MAC; null while the erasure runs."),
    receipt_jws: z
      .string()
      .nullable()
      .describe(
        "A compact JWS (EdDSA, typ keywarden-erasure-receipt) whose payload is this receipt without " +
          "receipt_intact and receipt_jws, verifiable with the key of GET /api/v1/audit/export-key; null " +
          "unless the erasure completed and its receipt is intact.",
      ),
  })
  .openapi("TenantErasure");

const eraseTenant = createRoute({
  method: "delete",
  path: "/{id}",
  operationId: "eraseTenant",
  tags: ["Tenants"],
  summary: "Erase a tenant and everything it stored (operator bootstrap token)",
  security: [{ bootstrapToken: [] }],
  description:
    "Before answering, disables every key of the tenant, so its keys and sessions are refused on the next " +
    "call. A Workflow then destroys its data keys (crypto-shredding: none of its ciphertext decrypts from " +
    "then on), deletes its rows and Durable Object state in chunks, and writes a receipt: follow it on " +
    "GET /api/v1/tenants/{id}/erasure. Cannot be undone. A repeated call answers the same erasure. Every " +
    "call spends the client's sign-in attempt budget before the token is compared.",
  middleware: operatorAuth,
  request: { params: TenantParam },
  responses: {
    202: {
      ...jsonContent(ErasureStartedSchema, "The erasure (started now, or earlier)."),
      headers: z.object({ location: z.string().describe("The erasure's receipt.") }),
    },
    ...problems(...OPERATOR_AUTH_PROBLEMS, "NOT_FOUND", "VALIDATION_FAILED", "SEALED"),
  },
});

const getErasure = createRoute({
  method: "get",
  path: "/{id}/erasure",
  operationId: "getTenantErasure",
  tags: ["Tenants"],
  summary: "A tenant erasure's progress and receipt (operator bootstrap token)",
  security: [{ bootstrapToken: [] }],
  description:
    "Times, counts and the audit chain's last MAC: nothing the tenant stored. A completed, intact receipt " +
    "is signed (receipt_jws) with the key of GET /api/v1/audit/export-key, so anyone can verify it offline " +
    "(docs/erasure.md). Every call spends the client's sign-in attempt budget before the token is compared.",
  middleware: operatorAuth,
  request: { params: TenantParam },
  responses: {
    200: jsonContent(ErasureReceiptSchema, "The erasure."),
    ...problems(...OPERATOR_AUTH_PROBLEMS, "NOT_FOUND", "VALIDATION_FAILED", "SEALED"),
  },
});

const receiptPath = (tenantId: string) => `/api/v1/tenants/${encodeURIComponent(tenantId)}/erasure`;

type ReceiptView = z.infer<typeof ErasureReceiptSchema>;
type SignedPart = Omit<ReceiptView, "receipt_intact" | "receipt_jws">;

function receiptView(row: ErasureRow): SignedPart {
  return {
    erasure_id: row.id,
    tenant_id: row.tenantId,
    state: row.state,
    step: row.step,
    requested_at: isoTime(row.requestedAt) as string,
    dek_destroyed_at: isoTime(row.dekDestroyedAt),
    rows_deleted_at: isoTime(row.rowsDeletedAt),
    completed_at: isoTime(row.completedAt),
    data_keys_destroyed: row.dataKeysDestroyed,
    rows_deleted: row.rowsDeleted,
    objects_cleared: Object.fromEntries(CLEARED_OBJECTS.map((kind) => [kind, row.objectsCleared[kind] ?? 0])),
    audit_chain_head:
      row.auditHeadSeq === null || row.auditHeadHash === null
        ? null
        : { seq: row.auditHeadSeq, mac: row.auditHeadHash },
    receipt_mac: row.receiptMac,
  };
}

export const tenantErasureRoutes = createRouter()
  .openapi(eraseTenant, async (c) => {
    const { id } = c.req.valid("param");
    const row = await requestErasure(c.env, id, c.get("requestId"), Date.now());
    await startErasure(c.env, row);
    return c.json(
      {
        erasure_id: row.id,
        tenant_id: row.tenantId,
        state: row.state,
        requested_at: isoTime(row.requestedAt) as string,
      },
      202,
      { location: receiptPath(row.tenantId) },
    );
  })
  .openapi(getErasure, async (c) => {
    const row = await findErasure(c.env, c.req.valid("param").id);
    if (!row) throw new ApiError("NOT_FOUND", "No erasure was requested for this tenant.");
    const view = receiptView(row);
    const intact = await receiptIntact(c.env, row);
    const jws = intact ? await signReceipt(c.env, view) : null;
    return c.json({ ...view, receipt_intact: intact, receipt_jws: jws } satisfies ReceiptView, 200);
  });
