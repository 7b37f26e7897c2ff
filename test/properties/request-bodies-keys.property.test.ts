/** threat model case 16 for the key-management endpoints; see request-bodies-shared.ts. */
import { describeRequestBodyProperties } from "./request-bodies-shared";

describeRequestBodyProperties([
  "POST /api/v1/keys",
  "PATCH /api/v1/keys/{id}",
  "POST /api/v1/keys/{id}/rotate",
]);
