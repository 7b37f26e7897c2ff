/** threat model case 16 for the entry points (bootstrap, verify, sign-in); see request-bodies-shared.ts. */
import { describeRequestBodyProperties } from "./request-bodies-shared";

describeRequestBodyProperties([
  "POST /api/v1/tenants",
  "POST /api/v1/keys/verify",
  "POST /api/v1/auth/session",
]);
