import { createRoute, z } from "@hono/zod-openapi";
import { eq } from "drizzle-orm";
import { requireScope } from "../auth/authenticate";
import { CONTROL_STATUSES, STANDARDS } from "../compliance/controls";
import { complianceReport, reportHtml } from "../compliance/report";
import { database } from "../db/client";
import { tenants } from "../db/schema";
import { AUTH_PROBLEMS, bearerSecurity, createRouter, NO_STORE, problems } from "../openapi/shared";

const ControlSchema = z.object({
  id: z.string(),
  title: z.string(),
  status: z.enum(CONTROL_STATUSES),
  evidence: z.array(z.object({ source: z.string(), summary: z.string() })),
});

const ReportSchema = z
  .object({
    standard: z.enum(STANDARDS),
    name: z.string(),
    generated_at: z.string(),
    summary: z.record(z.enum(CONTROL_STATUSES), z.number().int()),
    controls: z.array(ControlSchema),
  })
  .openapi("ComplianceReport");

const reportRoute = createRoute({
  tags: ["Compliance"],
  method: "get",
  path: "/report",
  operationId: "getComplianceReport",
  summary: "Each control of a standard, computed from the tenant's live state, with its evidence",
  description:
    "JSON by default; a printable HTML page with `format=html` or `Accept: text/html`. The audit chain is " +
    "verified on every call, so the report costs a walk of the tenant's audit log.",
  security: bearerSecurity,
  middleware: [requireScope("audit:read")] as const,
  request: {
    query: z.object({
      standard: z.enum(STANDARDS),
      format: z.enum(["json", "html"]).optional(),
    }),
  },
  responses: {
    200: {
      description: "The report.",
      content: {
        "application/json": { schema: ReportSchema },
        "text/html": { schema: z.string() },
      },
    },
    ...problems(...AUTH_PROBLEMS, "VALIDATION_FAILED", "SEALED"),
  },
});

export const complianceRoutes = createRouter().openapi(reportRoute, async (c) => {
  const { standard, format } = c.req.valid("query");
  const tenantId = c.get("principal").tenantId;
  const report = await complianceReport(c.env, tenantId, standard, Date.now());
  const html =
    format === "html" || (format === undefined && (c.req.header("accept") ?? "").includes("text/html"));
  if (!html) return c.json(report, 200);
  const tenant = await database(c.env.DB)
    .select({ name: tenants.name })
    .from(tenants)
    .where(eq(tenants.id, tenantId))
    .get();
  return c.html(reportHtml(report, tenant?.name ?? ""), 200, NO_STORE);
});
