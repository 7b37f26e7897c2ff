import { createRoute, z } from "@hono/zod-openapi";
import { requireScope } from "../auth/authenticate";
import { ApiError } from "../errors";
import { USAGE_BUCKETS } from "../monitoring/alert-kinds";
import { requestsOf, USAGE_COUNTERS, type UsageTotals } from "../monitoring/usage-counts";
import {
  MAX_TOP,
  queryUsage,
  tenantKnowsKey,
  USAGE_GROUPINGS,
  USAGE_ORDERS,
  usageRange,
} from "../monitoring/usage-query";
import {
  AUTH_PROBLEMS,
  bearerSecurity,
  createRouter,
  isoTime,
  jsonContent,
  problems,
} from "../openapi/shared";

/** RFC 3339 with an offset, or Unix time in seconds. */
export const TimeParam = z
  .union([z.string().regex(/^\d{1,11}$/), z.iso.datetime({ offset: true })])
  .transform((text) => (/^\d+$/.test(text) ? Number(text) * 1000 : Date.parse(text)))
  .optional();

const UsageQuerySchema = z.object({
  granularity: z.enum(USAGE_BUCKETS).default("day"),
  from: TimeParam.describe(
    "RFC 3339 time or Unix seconds. Rounded down to the start of its hour or day. Default: a day (hour) or 30 days (day) before `to`.",
  ),
  to: TimeParam.describe("RFC 3339 time or Unix seconds, exclusive. Default: now."),
  group_by: z.enum(USAGE_GROUPINGS).default("tenant"),
  key_id: z.string().min(1).max(64).optional(),
  service_id: z.string().min(1).max(64).optional(),
  top: z.coerce.number().int().min(1).max(MAX_TOP).default(25),
  order_by: z.enum(USAGE_ORDERS).default("requests"),
});

const CountsSchema = z
  .object({
    requests: z.number().int().describe("Verifications, whatever their outcome: valid + invalid."),
    ...Object.fromEntries(USAGE_COUNTERS.map((counter) => [counter, z.number().int()])),
  })
  .describe(
    "`valid` and one count per failure code (`invalid` is their sum); `auth_failed`: authentication to Keywarden refused with the key.",
  )
  .openapi("UsageCounts");

const UsageReportSchema = z
  .object({
    granularity: z.enum(USAGE_BUCKETS),
    from: z.string(),
    to: z.string(),
    group_by: z.enum(USAGE_GROUPINGS),
    order_by: z.enum(USAGE_ORDERS),
    groups: z.array(
      z.object({
        key_id: z
          .string()
          .nullable()
          .optional()
          .describe("group_by=key: null for malformed or unknown keys."),
        service_id: z
          .string()
          .nullable()
          .optional()
          .describe("group_by=service: null for keys of no service."),
        totals: CountsSchema,
        series: z
          .array(CountsSchema.extend({ start: z.string() }))
          .describe("Buckets with any count, oldest first."),
      }),
    ),
  })
  .openapi("UsageReport");

const usageRoute = createRoute({
  method: "get",
  path: "/",
  operationId: "getUsage",
  tags: ["Usage"],
  summary: "Verification counts per hour or day, by key, service or tenant, with the top N",
  description:
    "Counts from the usage recorder (docs/usage-analytics.md): written within seconds of each verify, hourly rows kept 35 days and daily rows for the security level's usage retention.",
  security: bearerSecurity,
  middleware: [requireScope("keys:read")] as const,
  request: { query: UsageQuerySchema },
  responses: {
    200: jsonContent(UsageReportSchema, "The report."),
    ...problems(...AUTH_PROBLEMS, "VALIDATION_FAILED", "NOT_FOUND"),
  },
});

const counts = (totals: UsageTotals) => ({ requests: requestsOf(totals), ...totals });

export const usageRoutes = createRouter().openapi(usageRoute, async (c) => {
  const { tenantId } = c.get("principal");
  const query = c.req.valid("query");
  const { from, to } = usageRange(query.granularity, query, Date.now());
  if (query.key_id !== undefined && !(await tenantKnowsKey(c.env.DB, tenantId, query.key_id))) {
    throw new ApiError("NOT_FOUND", "No such key.");
  }
  const groups = await queryUsage(c.env.DB, {
    tenantId,
    granularity: query.granularity,
    from,
    to,
    groupBy: query.group_by,
    keyId: query.key_id,
    serviceId: query.service_id,
    top: query.top,
    orderBy: query.order_by,
  });
  const label = query.group_by === "key" ? "key_id" : query.group_by === "service" ? "service_id" : null;
  return c.json(
    {
      granularity: query.granularity,
      from: isoTime(from) as string,
      to: isoTime(to) as string,
      group_by: query.group_by,
      order_by: query.order_by,
      groups: groups.map((group) => ({
        ...(label ? { [label]: group.group } : {}),
        totals: counts(group.totals),
        series: group.series.map((point) => ({
          start: isoTime(point.start) as string,
          ...counts(point.totals),
        })),
      })),
    },
    200,
  );
});
