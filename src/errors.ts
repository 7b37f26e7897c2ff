import type { ContentfulStatusCode } from "hono/utils/http-status";
import { preparedProblem } from "./http/security-headers";

/**
 * The closed list of error codes. Clients switch on `code`, never on `title` or `detail`,
 * so a code once published keeps its meaning (RFC 9457 §3.1 "type" is derived from it).
 */
export const ERROR_STATUS = {
  BAD_REQUEST: 400,
  VALIDATION_FAILED: 422,
  UNAUTHENTICATED: 401,
  FORBIDDEN: 403,
  NOT_FOUND: 404,
  METHOD_NOT_ALLOWED: 405,
  CONFLICT: 409,
  PRECONDITION_FAILED: 412,
  PRECONDITION_REQUIRED: 428,
  PAYLOAD_TOO_LARGE: 413,
  UNSUPPORTED_MEDIA_TYPE: 415,
  RATE_LIMITED: 429,
  INTEGRITY_ERROR: 500,
  INTERNAL: 500,
  UPSTREAM_UNAVAILABLE: 502,
  SEALED: 503,
  KEY_UNAVAILABLE: 503,
} as const satisfies Record<string, ContentfulStatusCode>;

export type ErrorCode = keyof typeof ERROR_STATUS;

const TITLES: Record<ErrorCode, string> = {
  BAD_REQUEST: "Bad request",
  VALIDATION_FAILED: "Validation failed",
  UNAUTHENTICATED: "Authentication required",
  FORBIDDEN: "Forbidden",
  NOT_FOUND: "Not found",
  METHOD_NOT_ALLOWED: "Method not allowed",
  CONFLICT: "Conflict",
  PRECONDITION_FAILED: "Precondition failed",
  PRECONDITION_REQUIRED: "Precondition required",
  PAYLOAD_TOO_LARGE: "Payload too large",
  UNSUPPORTED_MEDIA_TYPE: "Unsupported media type",
  RATE_LIMITED: "Too many requests",
  INTEGRITY_ERROR: "Stored data failed its integrity check",
  INTERNAL: "Internal error",
  UPSTREAM_UNAVAILABLE: "Upstream unavailable",
  SEALED: "Service is sealed",
  KEY_UNAVAILABLE: "Encryption key unavailable",
};

export interface ProblemExtras {
  /** Per-field messages for VALIDATION_FAILED. Never echoes submitted values. */
  errors?: { path: string; message: string }[];
  retryAfterSeconds?: number;
}

/** The one error type the app throws on purpose. Everything else becomes a generic INTERNAL. */
export class ApiError extends Error {
  readonly status: ContentfulStatusCode;

  constructor(
    readonly code: ErrorCode,
    readonly detail: string = TITLES[code],
    readonly extras: ProblemExtras = {},
  ) {
    super(`${code}: ${detail}`);
    this.name = "ApiError";
    this.status = ERROR_STATUS[code];
  }
}

export interface ProblemBody {
  type: string;
  title: string;
  status: number;
  detail: string;
  code: ErrorCode;
  request_id: string;
  errors?: { path: string; message: string }[];
}

export function problemBody(error: ApiError, requestId: string): ProblemBody {
  return {
    type: `https://keywarden.dev/problems/${error.code.toLowerCase().replaceAll("_", "-")}`,
    title: TITLES[error.code],
    status: error.status,
    detail: error.detail,
    code: error.code,
    request_id: requestId,
    ...(error.extras.errors ? { errors: error.extras.errors } : {}),
  };
}

export function problemResponse(error: ApiError, requestId: string): Response {
  const response = preparedProblem(JSON.stringify(problemBody(error, requestId)), error.status, requestId);
  if (error.extras.retryAfterSeconds !== undefined) {
    response.headers.set("retry-after", String(Math.max(1, Math.ceil(error.extras.retryAfterSeconds))));
  }
  return response;
}
