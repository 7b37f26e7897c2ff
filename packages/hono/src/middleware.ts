import type { VerifyVerdict } from "@keywarden/client";
import type { Context, Env } from "hono";
import { createMiddleware } from "hono/factory";
import { denialResponse, judge, type KeywardenAuthOptions } from "./verdict";

/** What the middleware adds to the context: `c.var.keywarden` is the verdict of the caller's key. */
export interface KeywardenVariables {
  keywarden: VerifyVerdict;
}
type KeywardenEnv = { Variables: KeywardenVariables };

/**
 * Hono middleware that lets a request through only with a key Keywarden verifies (and that holds
 * `options.scopes`), then puts the verdict on `c.var.keywarden` and the key's RateLimit fields on the
 * response. Options may depend on the request's context, which is where Workers keep secrets:
 * `keywardenAuth<{ Bindings: Env }>((c) => ({ baseUrl: c.env.KEYWARDEN_URL, rootKey: c.env.KEYWARDEN_ROOT_KEY }))`.
 */
export function keywardenAuth<E extends Env = Env>(
  options: KeywardenAuthOptions | ((c: Context<E & KeywardenEnv>) => KeywardenAuthOptions),
) {
  return createMiddleware<E & KeywardenEnv>(async (c, next) => {
    const resolved = typeof options === "function" ? options(c) : options;
    const judgement = await judge(c.req.raw, resolved);
    if (!judgement.allowed) {
      return (resolved.onError ?? denialResponse)(judgement.denial, c.req.raw);
    }
    c.set("keywarden", judgement.verdict);
    await next();
    for (const [name, value] of judgement.headers) c.header(name, value);
  });
}
