import { OpenAPIHono, z } from "@hono/zod-openapi";
import type { AppEnv } from "../env";
import { ApiError, ERROR_STATUS, type ErrorCode } from "../errors";

export const ProblemSchema = z
  .object({
    type: z.string(),
    title: z.string(),
    status: z.number().int(),
    detail: z.string(),
    code: z.enum(Object.keys(ERROR_STATUS) as [ErrorCode, ...ErrorCode[]]),
    request_id: z.string(),
    errors: z.array(z.object({ path: z.string(), message: z.string() })).optional(),
  })
  .openapi("Problem");

/** Error responses a route can give, for its OpenAPI entry. */
export function problems(...codes: ErrorCode[]) {
  const byStatus = new Map<number, ErrorCode[]>();
  for (const code of codes)
    byStatus.set(ERROR_STATUS[code], [...(byStatus.get(ERROR_STATUS[code]) ?? []), code]);
  return Object.fromEntries(
    [...byStatus].map(([status, list]) => [
      status,
      {
        description: list.join(", "),
        content: { "application/problem+json": { schema: ProblemSchema } },
      },
    ]),
  );
}

export function jsonBody<T extends z.ZodType>(schema: T) {
  return { required: true, content: { "application/json": { schema } } };
}

export function jsonContent<T extends z.ZodType>(schema: T, description: string) {
  return { description, content: { "application/json": { schema } } };
}

/** Every sub-app shares this: validation failures become 422 problem+json without echoing input. */
export function createRouter() {
  return new OpenAPIHono<AppEnv>({
    defaultHook: (result) => {
      if (!result.success) {
        throw new ApiError("VALIDATION_FAILED", "The request did not match the schema.", {
          errors: result.error.issues.slice(0, 20).map((issue) => ({
            path: issue.path.map(String).join("."),
            message: issue.message,
          })),
        });
      }
    },
  });
}

// Any shape is accepted: a malformed id is simply not found, exactly like a missing one.
export const IdParam = z.object({ id: z.string().min(1).max(64) });

export const PageQuery = z.object({
  limit: z.coerce.number().int().min(1).max(100).default(20),
  cursor: z.string().max(200).optional(),
});

export const isoTime = (ms: number | null | undefined) => (ms == null ? null : new Date(ms).toISOString());

export const NO_STORE = { "cache-control": "no-store" } as const;

/**
 * What any route behind `requireScope` can answer before its handler runs: no or a bad credential, a
 * missing scope, or a spent request or failed-auth budget.
 */
export const AUTH_PROBLEMS = ["UNAUTHENTICATED", "FORBIDDEN", "RATE_LIMITED"] as const;

export const bearerSecurity: Record<string, string[]>[] = [{ bearerKey: [] }, { sessionCookie: [] }];
