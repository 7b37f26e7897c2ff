import { findService } from "../catalog";
import type { ServiceDefinition } from "../catalog/types";
import { ApiError } from "../errors";

/** The catalogue entry for `id`, or a 422 that points at the request field that named it. */
export function requireService(id: string, path = "service"): ServiceDefinition {
  const service = findService(id);
  if (!service) {
    throw new ApiError("VALIDATION_FAILED", "Unknown service.", {
      errors: [{ path, message: "not in the catalogue" }],
    });
  }
  return service;
}
