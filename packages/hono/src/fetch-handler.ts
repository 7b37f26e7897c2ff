import type { VerifyVerdict } from "@keywarden/client";
import { denialResponse, judge, type KeywardenAuthOptions, withHeaders } from "./verdict";

export type ProtectedHandler<Env> = (
  request: Request,
  env: Env,
  ctx: ExecutionContext,
  verdict: VerifyVerdict,
) => Response | Promise<Response>;

/**
 * The same protection for a plain Workers `fetch` handler, without Hono: the handler runs only for a
 * verified key and receives its verdict. `options` may be a function of `env`, where the secrets are.
 *
 *   export default { fetch: protectFetch(handler, (env) => ({ baseUrl: env.KEYWARDEN_URL, rootKey: env.KEYWARDEN_ROOT_KEY })) };
 */
export function protectFetch<Env>(
  handler: ProtectedHandler<Env>,
  options: KeywardenAuthOptions | ((env: Env) => KeywardenAuthOptions),
): (request: Request, env: Env, ctx: ExecutionContext) => Promise<Response> {
  return async (request, env, ctx) => {
    const resolved = typeof options === "function" ? options(env) : options;
    const judgement = await judge(request, resolved);
    if (!judgement.allowed) return (resolved.onError ?? denialResponse)(judgement.denial, request);
    return withHeaders(await handler(request, env, ctx, judgement.verdict), judgement.headers);
  };
}
