export type { components, operations, paths } from "./api-types";
export {
  createKeywardenClient,
  type KeywardenClient,
  type KeywardenClientOptions,
  KeywardenError,
  type Problem,
  type VerifyCode,
  type VerifyKeyOptions,
  type VerifyVerdict,
} from "./client";
export { RETRY_DEFAULTS, type RetryOptions, retryAfterMs, retryingFetch } from "./retry";
