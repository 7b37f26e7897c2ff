import type { MiddlewareHandler } from "hono";
import type { AppEnv } from "../env";
import { API_PREFIX, stampHeaders } from "./security-headers";

/** A caller's own request id is kept if it is short and plain, as Hono's requestId middleware does. */
const CALLER_REQUEST_ID = /^[\w\-=]{1,64}$/;

/**
 * First in the chain, for every request: the request id (`x-request-id`, also in every problem body and
 * error log) and every response header, in one middleware so a request pays for one step, not three.
 */
export const edgeHeaders: MiddlewareHandler<AppEnv> = async (c, next) => {
  const incoming = c.req.raw.headers.get("x-request-id");
  const requestId = incoming !== null && CALLER_REQUEST_ID.test(incoming) ? incoming : crypto.randomUUID();
  c.set("requestId", requestId);
  await next();
  stampHeaders(c.res, requestId, c.req.path.startsWith(API_PREFIX));
};
