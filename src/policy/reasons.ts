// THE table: every verdict reason and what each edge makes of it.
// Transports (Envoy ext_authz, aisa.v1 Check) never invent codes or messages:
// they read this table. Changing a row changes every edge at once.

export const REASONS = [
  "ALLOWED",
  "KEY_MISSING",
  "KEY_INVALID",
  "KEY_DISABLED",
  "KEY_EXPIRED",
  "IP_NOT_ALLOWED",
  "MODEL_REQUIRED",
  "MODEL_MISMATCH",
  "MODEL_NOT_ALLOWED",
  "MODEL_NOT_PRICED",
  "ACCOUNT_BALANCE_EXHAUSTED",
  "KEY_QUOTA_EXHAUSTED",
  "GROUP_BUDGET_EXHAUSTED",
  "RATE_LIMITED",
  "MALFORMED_REQUEST",
] as const;

export type Reason = (typeof REASONS)[number];
export type DenyReason = Exclude<Reason, "ALLOWED">;

/** google.rpc.Code values used in CheckResponse.status. */
export const GrpcCode = {
  OK: 0,
  INVALID_ARGUMENT: 3,
  PERMISSION_DENIED: 7,
  RESOURCE_EXHAUSTED: 8,
  FAILED_PRECONDITION: 9,
  UNAVAILABLE: 14,
  UNAUTHENTICATED: 16,
} as const;

export interface ReasonInfo {
  /** google.rpc.Code in CheckResponse.status (in-band; never a gRPC error). */
  grpcCode: number;
  /** HTTP status Envoy answers the client with on deny. */
  httpStatus: number;
  /** Public message: safe for the key's holder, reveals nothing more. */
  message: string;
  /** OpenAI-shaped error.type. */
  errorType: string;
  /** OpenAI-shaped error.code. */
  errorCode: string;
  /** May the same request succeed later without operator action? */
  retryable: boolean;
}

// KEY_INVALID, KEY_DISABLED and KEY_EXPIRED all answer 401 with the code
// "invalid_api_key" (OpenAI's own behaviour for revoked keys). Disabled and
// expired keys get their own message: only someone who holds the secret can
// reach these rows, and telling them *why* saves a support ticket. An unknown
// and a deleted key are indistinguishable (same row).
export const REASON_TABLE: Readonly<Record<Reason, ReasonInfo>> = Object.freeze({
  ALLOWED: { grpcCode: GrpcCode.OK, httpStatus: 200, message: "allowed", errorType: "", errorCode: "", retryable: false },
  KEY_MISSING: {
    grpcCode: GrpcCode.UNAUTHENTICATED,
    httpStatus: 401,
    message: "You didn't provide an API key. Send it as 'Authorization: Bearer YOUR_KEY'.",
    errorType: "invalid_request_error",
    errorCode: "missing_api_key",
    retryable: false,
  },
  KEY_INVALID: {
    grpcCode: GrpcCode.UNAUTHENTICATED,
    httpStatus: 401,
    message: "Incorrect API key provided.",
    errorType: "invalid_request_error",
    errorCode: "invalid_api_key",
    retryable: false,
  },
  KEY_DISABLED: {
    grpcCode: GrpcCode.UNAUTHENTICATED,
    httpStatus: 401,
    message: "This API key has been disabled.",
    errorType: "invalid_request_error",
    errorCode: "invalid_api_key",
    retryable: false,
  },
  KEY_EXPIRED: {
    grpcCode: GrpcCode.UNAUTHENTICATED,
    httpStatus: 401,
    message: "This API key has expired.",
    errorType: "invalid_request_error",
    errorCode: "invalid_api_key",
    retryable: false,
  },
  IP_NOT_ALLOWED: {
    grpcCode: GrpcCode.PERMISSION_DENIED,
    httpStatus: 403,
    message: "This API key may not be used from your IP address.",
    errorType: "permission_error",
    errorCode: "ip_not_allowed",
    retryable: false,
  },
  MODEL_REQUIRED: {
    grpcCode: GrpcCode.INVALID_ARGUMENT,
    httpStatus: 400,
    message: "This API key is restricted to specific models; the request must name a model.",
    errorType: "invalid_request_error",
    errorCode: "model_required",
    retryable: false,
  },
  // The request names different models in its path, body or x-aisa-model header (or its path
  // is ambiguous): the upstream acts on one of them, so no decision about "the" model is safe.
  MODEL_MISMATCH: {
    grpcCode: GrpcCode.INVALID_ARGUMENT,
    httpStatus: 400,
    message: "The request names different models (in its path, body or x-aisa-model header) or its path is ambiguous; name one model.",
    errorType: "invalid_request_error",
    errorCode: "model_mismatch",
    retryable: false,
  },
  MODEL_NOT_ALLOWED: {
    grpcCode: GrpcCode.PERMISSION_DENIED,
    httpStatus: 403,
    message: "The model does not exist or this API key does not have access to it.",
    errorType: "invalid_request_error",
    errorCode: "model_not_found",
    retryable: false,
  },
  MODEL_NOT_PRICED: {
    grpcCode: GrpcCode.PERMISSION_DENIED,
    httpStatus: 403,
    message: "The model does not exist or this API key does not have access to it.",
    errorType: "invalid_request_error",
    errorCode: "model_not_found",
    retryable: false,
  },
  ACCOUNT_BALANCE_EXHAUSTED: {
    grpcCode: GrpcCode.RESOURCE_EXHAUSTED,
    httpStatus: 402,
    message: "Your account balance is exhausted. Add credit to continue.",
    errorType: "insufficient_quota",
    errorCode: "insufficient_quota",
    retryable: false,
  },
  KEY_QUOTA_EXHAUSTED: {
    grpcCode: GrpcCode.RESOURCE_EXHAUSTED,
    httpStatus: 429,
    message: "You exceeded this API key's quota.",
    errorType: "insufficient_quota",
    errorCode: "insufficient_quota",
    retryable: false,
  },
  // The key's group spent its budget for the current period (issue 19): the same answer as a
  // spent key quota (429 insufficient_quota, what OpenAI SDKs treat as "out of quota", not
  // retried), its own message; it clears at the group's next period boundary or when an
  // operator raises the budget.
  GROUP_BUDGET_EXHAUSTED: {
    grpcCode: GrpcCode.RESOURCE_EXHAUSTED,
    httpStatus: 429,
    message: "The budget of this API key's group is exhausted for the current period.",
    errorType: "insufficient_quota",
    errorCode: "insufficient_quota",
    retryable: false,
  },
  RATE_LIMITED: {
    grpcCode: GrpcCode.RESOURCE_EXHAUSTED,
    httpStatus: 429,
    message: "Rate limit reached for this API key. Retry after the time in the retry-after header.",
    errorType: "rate_limit_error",
    errorCode: "rate_limit_exceeded",
    retryable: true,
  },
  MALFORMED_REQUEST: {
    grpcCode: GrpcCode.INVALID_ARGUMENT,
    httpStatus: 400,
    message: "Malformed authorization request.",
    errorType: "invalid_request_error",
    errorCode: "invalid_request",
    retryable: false,
  },
});
