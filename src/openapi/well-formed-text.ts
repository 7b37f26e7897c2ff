import type { MiddlewareHandler } from "hono";
import type { AppEnv } from "../env";
import { ApiError } from "../errors";

function firstIllFormed(value: unknown, path: string): string | null {
  if (typeof value === "string") return value.isWellFormed() ? null : path;
  if (Array.isArray(value)) {
    for (const [index, item] of value.entries()) {
      const found = firstIllFormed(item, path ? `${path}.${index}` : String(index));
      if (found !== null) return found;
    }
    return null;
  }
  if (value && typeof value === "object") {
    for (const [key, item] of Object.entries(value)) {
      if (!key.isWellFormed()) return path || "(key)";
      const found = firstIllFormed(item, path ? `${path}.${key}` : key);
      if (found !== null) return found;
    }
  }
  return null;
}

/**
 * JSON may carry lone UTF-16 surrogates (`"\ud800"`), which D1 would silently store as U+FFFD: a
 * name would come back different from what was sent. Refuse them up front instead of losing data.
 */
export const wellFormedJsonText: MiddlewareHandler<AppEnv> = async (c, next) => {
  if (c.req.header("content-type")?.startsWith("application/json")) {
    let body: unknown;
    try {
      body = await c.req.json();
    } catch {
      // Invalid JSON: the route's validator answers it.
    }
    const path = firstIllFormed(body, "");
    if (path !== null) {
      throw new ApiError("VALIDATION_FAILED", "Text must be well-formed Unicode.", {
        errors: [{ path, message: "contains a lone surrogate" }],
      });
    }
  }
  await next();
};
