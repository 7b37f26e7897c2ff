import type { MiddlewareHandler } from "hono";
import { bodyLimit } from "hono/body-limit";
import type { AppEnv } from "../env";
import { ApiError } from "../errors";
import { wellFormedJsonText } from "../openapi/well-formed-text";
import { IMPORT_MAX_BODY_BYTES, IMPORT_PATH } from "../portability/limits";

export const MAX_BODY_BYTES = 64 * 1024;

const tooLarge = (path: string) =>
  path === IMPORT_PATH
    ? new ApiError("PAYLOAD_TOO_LARGE", `Imports are limited to ${IMPORT_MAX_BODY_BYTES} bytes.`)
    : new ApiError("PAYLOAD_TOO_LARGE", `Bodies are limited to ${MAX_BODY_BYTES} bytes.`);

const limits = {
  api: bodyLimit({ maxSize: MAX_BODY_BYTES, onError: (c) => Promise.reject(tooLarge(c.req.path)) }),
  // An import carries a whole tenant's export: its own, larger cap (src/portability/limits.ts).
  import: bodyLimit({ maxSize: IMPORT_MAX_BODY_BYTES, onError: (c) => Promise.reject(tooLarge(c.req.path)) }),
};

/**
 * Every /api body: the size cap, then the well-formed-text check, in one middleware step. A declared
 * Content-Length settles the cap without opening the body stream (HTTP/1.1 framing ends the body there);
 * a chunked body is counted as it streams, by Hono's bodyLimit.
 */
export const apiBody: MiddlewareHandler<AppEnv> = async (c, next) => {
  const headers = c.req.raw.headers;
  const declared = headers.has("transfer-encoding") ? null : headers.get("content-length");
  const length = declared === null ? Number.NaN : Number(declared);
  const max = c.req.path === IMPORT_PATH ? IMPORT_MAX_BODY_BYTES : MAX_BODY_BYTES;
  if (Number.isSafeInteger(length) && length >= 0) {
    if (length > max) throw tooLarge(c.req.path);
    return wellFormedJsonText(c, next);
  }
  // No usable declared length (chunked, absent, or not a plain count): count the body as it streams.
  await (c.req.path === IMPORT_PATH ? limits.import : limits.api)(c, () => wellFormedJsonText(c, next));
};
