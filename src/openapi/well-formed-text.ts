import type { Context, Next } from "hono";
import type { AppEnv } from "../env";
import { ApiError } from "../errors";

/** Far deeper than any request schema here, and a bound on the work (and path length) a body can cause. */
const MAX_DEPTH = 64;
/** The JSON media types the route validators accept (case-insensitive, with `+json` suffixes). */
const JSON_MEDIA_TYPE = /^application\/([a-z-.]+\+)?json(;\s*[a-zA-Z0-9-]+=([^;]+))*$/i;

/**
 * The path to the first lone surrogate or over-deep value, or null. Recursion is bounded by MAX_DEPTH, so a
 * deeply nested body cannot overflow the stack; the path is only built on the way out of a failure.
 */
function firstProblem(value: unknown, depth: number): string[] | null {
  if (depth > MAX_DEPTH) return [];
  if (typeof value === "string") return value.isWellFormed() ? null : [];
  if (typeof value !== "object" || value === null) return null;
  if (Array.isArray(value)) {
    for (let index = 0; index < value.length; index++) {
      const path = firstProblem(value[index], depth + 1);
      if (path) return [String(index), ...path];
    }
    return null;
  }
  for (const key in value) {
    if (!key.isWellFormed()) return ["(key)"];
    const path = firstProblem((value as Record<string, unknown>)[key], depth + 1);
    if (path) return [key, ...path];
  }
  return null;
}

/** "a.0.b"; a bad key names the object holding it, "(key)" at the top; "(root)" for the body itself. */
function describe(path: string[]): string {
  if (path.at(-1) === "(key)" && path.length > 1) path.pop();
  return path.length ? path.join(".") : "(root)";
}

/**
 * JSON may carry lone UTF-16 surrogates (`"\ud800"`), which D1 would silently store as U+FFFD: a
 * name would come back different from what was sent. Refuse them, and absurd nesting, up front. The body is
 * parsed once here; the route's validator reads the same parsed value (Hono caches it).
 */
export async function wellFormedJsonText(c: Context<AppEnv>, next: Next): Promise<void> {
  if (JSON_MEDIA_TYPE.test(c.req.raw.headers.get("content-type") ?? "")) {
    let body: unknown;
    try {
      body = await c.req.json();
    } catch {
      // Invalid JSON: the route's validator answers it.
    }
    const path = firstProblem(body, 0);
    if (path !== null) {
      throw new ApiError(
        "VALIDATION_FAILED",
        `Text must be well-formed Unicode and at most ${MAX_DEPTH} levels deep.`,
        {
          errors: [{ path: describe(path), message: "contains a lone surrogate or is nested too deeply" }],
        },
      );
    }
  }
  await next();
}
