export { type ProtectedHandler, protectFetch } from "./fetch-handler";
export { type KeywardenVariables, keywardenAuth } from "./middleware";
export {
  bearerKey,
  type Denial,
  denialFor,
  denialResponse,
  type Judgement,
  judge,
  type KeywardenAuthOptions,
  type KeywardenConnection,
  rateLimitHeaders,
} from "./verdict";
