import type { MiddlewareHandler } from "hono";
import type { AppEnv } from "../env";
import { ApiError } from "../errors";

/** Far deeper than any request schema here, and a bound on the work (and path length) a body can cause. */
const MAX_DEPTH = 64;
/** The JSON media types the route validators accept (case-insensitive, with `+json` suffixes). */
const JSON_MEDIA_TYPE = /^application\/([a-z-.]+\+)?json(;\s*[a-zA-Z0-9-]+=([^;]+))*$/i;

/** Walks with an explicit stack: a deeply nested body cannot overflow the call stack. */
function firstProblem(root: unknown): string | null {
  const stack: { value: unknown; path: string; depth: number }[] = [{ value: root, path: "", depth: 0 }];
  while (stack.length > 0) {
    const { value, path, depth } = stack.pop() as (typeof stack)[number];
    if (depth > MAX_DEPTH) return path || "(root)";
    if (typeof value === "string") {
      if (!value.isWellFormed()) return path || "(root)";
    } else if (Array.isArray(value)) {
      for (const [index, item] of value.entries())
        stack.push({ value: item, path: path ? `${path}.${index}` : String(index), depth: depth + 1 });
    } else if (value && typeof value === "object") {
      for (const [key, item] of Object.entries(value)) {
        if (!key.isWellFormed()) return path || "(key)";
        stack.push({ value: item, path: path ? `${path}.${key}` : key, depth: depth + 1 });
      }
    }
  }
  return null;
}

/**
 * JSON may carry lone UTF-16 surrogates (`"\ud800"`), which D1 would silently store as U+FFFD: a
 * name would come back different from what was sent. Refuse them, and absurd nesting, up front.
 */
export const wellFormedJsonText: MiddlewareHandler<AppEnv> = async (c, next) => {
  if (JSON_MEDIA_TYPE.test(c.req.header("content-type") ?? "")) {
    let body: unknown;
    try {
      body = await c.req.json();
    } catch {
      // Invalid JSON: the route's validator answers it.
    }
    const path = firstProblem(body);
    if (path !== null) {
      throw new ApiError(
        "VALIDATION_FAILED",
        `Text must be well-formed Unicode and at most ${MAX_DEPTH} levels deep.`,
        {
          errors: [{ path, message: "contains a lone surrogate or is nested too deeply" }],
        },
      );
    }
  }
  await next();
};
