import { Code, ConnectError } from "@connectrpc/connect";
import { codeToHttpStatus } from "@connectrpc/connect/protocol-connect";
import { create } from "@bufbuild/protobuf";
import { DurationSchema } from "@bufbuild/protobuf/wkt";
import { ErrorInfoSchema, RetryInfoSchema } from "../../gen/google/rpc/error_details_pb.js";

/**
 * The closed set of failures the server reports to callers (docs/architecture.md, Errors). Inner layers throw `AppError` with
 * one of these codes; `toConnectError` is the one place that turns them into what goes on the wire.
 */
export const errorTable = {
  unauthenticated: { code: Code.Unauthenticated, http: 401, message: "Unauthorized" },
  forbidden: { code: Code.PermissionDenied, http: 403, message: "Forbidden" },
  product_not_found: { code: Code.NotFound, http: 404, message: "Product not found" },
  /** A model id asked for by path (the OpenAI surface's `models/{model}`) that the product does not list. */
  model_not_found: { code: Code.NotFound, http: 404, message: "Model not found" },
  /**
   * A stored response asked for by id (the Responses API's `responses/{id}`): none is ever stored; the
   * ErrorInfo metadata `hint` says to send the whole conversation.
   */
  response_not_found: { code: Code.NotFound, http: 404, message: "Response not found" },
  model_not_supported: { code: Code.InvalidArgument, http: 400, message: "Model not supported" },
  /** `stream: true` on the unary RPC; the ErrorInfo metadata `hint` names the RPC and REST route to use. */
  streaming_not_supported: { code: Code.InvalidArgument, http: 400, message: "Streaming not supported" },
  /** `stream: false` on the streaming RPC; the ErrorInfo metadata `hint` names the RPC and REST route to use. */
  streaming_required: { code: Code.InvalidArgument, http: 400, message: "Streaming required" },
  /** Malformed body or field; the AppError's own message says what is wrong and names the field. */
  invalid_argument: { code: Code.InvalidArgument, http: 400, message: "Invalid argument" },
  /**
   * The ErrorInfo metadata `limit_bytes` states the limit (requestTooLarge). Connect unary answers it with
   * HTTP 413 too (connect's status for RESOURCE_EXHAUSTED is 429).
   */
  request_too_large: {
    code: Code.ResourceExhausted,
    http: 413,
    connectHttp: 413,
    message: "Request too large",
  },
  /** No route for the path (REST). */
  route_not_found: { code: Code.NotFound, http: 404, message: "Not found" },
  /** A known REST path with another HTTP method; the AppError's headers carry `Allow`. */
  method_not_allowed: { code: Code.Unimplemented, http: 405, message: "Method not allowed" },
  unsupported_media_type: {
    code: Code.InvalidArgument,
    http: 415,
    message: "Content-Type must be application/json",
  },
  rate_limited: { code: Code.ResourceExhausted, http: 429, message: "Rate limit exceeded" },
  /**
   * A product or caller budget (docs/budgets.md) cannot fit the call's worst case; Retry-After is the time
   * until the window resets, the ErrorInfo metadata `scope` and `window` say which budget.
   */
  budget_exceeded: { code: Code.ResourceExhausted, http: 429, message: "Budget exceeded" },
  /** One caller has too many calls open at once; the ErrorInfo metadata `limit` states the limit. */
  too_many_concurrent_calls: {
    code: Code.ResourceExhausted,
    http: 429,
    message: "Too many concurrent calls",
  },
  upstream_error: { code: Code.Unavailable, http: 502, message: "Upstream service error" },
  /** The provider rejected the request itself; the AppError's message is the provider's, scrubbed. */
  upstream_rejected: { code: Code.InvalidArgument, http: 400, message: "Upstream rejected the request" },
  upstream_timeout: { code: Code.DeadlineExceeded, http: 504, message: "Upstream timeout" },
  not_ready: { code: Code.Unavailable, http: 503, message: "Service not ready" },
  internal: { code: Code.Internal, http: 500, message: "Internal server error" },
} as const satisfies Record<
  string,
  {
    /** The gRPC status and Connect code. */
    code: Code;
    /** The HTTP status of REST and the OpenAI surface. */
    http: number;
    /** The HTTP status of a Connect unary error answer, where it is not connect's for `code`. */
    connectHttp?: number;
    message: string;
  }
>;

export type AppErrorCode = keyof typeof errorTable;

/** Domain used in the google.rpc.ErrorInfo detail attached to every error we raise. */
export const errorDomain = "api-key-server";

export interface AppErrorOptions {
  /**
   * Public message; defaults to the table's. Only for the codes whose message varies (invalid_argument,
   * upstream_rejected); every other code's message is exactly the table's, which clients and log queries
   * match on (SPEC S7). A hint goes into `metadata`, never into the message.
   */
  readonly message?: string;
  /**
   * The request field at fault (`model`, `max_tokens`, `messages[0].role`), for invalid-argument codes. It
   * travels as `param` in the ErrorInfo metadata and becomes OpenAI's `error.param` on the OpenAI surface.
   */
  readonly param?: string;
  /**
   * Details for the caller beside the exact message: `hint` (which RPC or route to use), `limit_bytes`
   * (the body limit), `limit` (which rate limit tripped). They travel in the google.rpc.ErrorInfo metadata
   * (gRPC, Connect) and as `error.details` in the REST and OpenAI JSON bodies (src/protocols/http-error.ts).
   */
  readonly metadata?: Readonly<Record<string, string>>;
  /** For the log only; never sent to the caller. */
  readonly cause?: unknown;
  /**
   * For the log only: fields the access line adds (src/edge/access-log.ts), e.g. which rate limit
   * refused the call (`limit`: `requests_per_minute`, `tokens_per_minute`, `provider`) and its size.
   */
  readonly logFields?: Readonly<Record<string, string | number>>;
  /** For rate_limited: how long the caller should wait. */
  readonly retryAfterMs?: number;
  /** Extra response headers (rate-limit headers); REST sends them as headers, gRPC/Connect as metadata. */
  readonly headers?: Readonly<Record<string, string>>;
}

/** A failure with a stable code. Its message is safe to show to callers; `cause` is for logs only. */
export class AppError extends Error {
  override readonly name = "AppError";
  readonly code: AppErrorCode;
  readonly retryAfterMs: number | undefined;
  readonly headers: Readonly<Record<string, string>> | undefined;
  readonly param: string | undefined;
  readonly metadata: Readonly<Record<string, string>> | undefined;
  readonly logFields: Readonly<Record<string, string | number>> | undefined;

  constructor(code: AppErrorCode, options: AppErrorOptions = {}) {
    super(options.message ?? errorTable[code].message, { cause: options.cause });
    this.code = code;
    this.param = options.param;
    this.metadata = options.metadata;
    this.logFields = options.logFields;
    this.retryAfterMs = options.retryAfterMs;
    this.headers = options.headers;
  }
}

/**
 * Turns anything thrown into the ConnectError that goes on the wire. AppErrors keep their code and public
 * message and carry a google.rpc.ErrorInfo detail whose `reason` is the AppErrorCode (the REST writer maps
 * it back to the HTTP status of the error table, e.g. 502 versus 503 for the same UNAVAILABLE).
 * ConnectErrors pass through: a failure the server classifies (a body over the limit, after
 * decompression too) is an AppError where it arises (src/protocols/envelope.ts). Anything else becomes
 * INTERNAL "Internal server error" with no trace of its text.
 */
export function toConnectError(err: unknown): ConnectError {
  if (err instanceof ConnectError) return err;
  const app = err instanceof AppError ? err : new AppError("internal", { cause: err });
  const row = errorTable[app.code];
  const details = [
    {
      desc: ErrorInfoSchema,
      value: create(ErrorInfoSchema, {
        reason: app.code,
        domain: errorDomain,
        metadata: app.param === undefined ? { ...app.metadata } : { ...app.metadata, param: app.param },
      }),
    },
  ];
  if (app.retryAfterMs !== undefined) {
    const ms = Math.max(0, Math.ceil(app.retryAfterMs));
    details.push({
      desc: RetryInfoSchema,
      value: create(RetryInfoSchema, {
        retryDelay: create(DurationSchema, {
          seconds: BigInt(Math.floor(ms / 1000)),
          nanos: (ms % 1000) * 1_000_000,
        }),
      }),
    } as never);
  }
  const metadata = new Headers(app.headers ?? {});
  return new ConnectError(app.message, row.code, metadata, details, app);
}

/**
 * The HTTP status of a Connect unary error answer: the error table's where the error is one of ours and
 * its row says (`connectHttp`), otherwise connect's status for the code.
 */
export function connectHttpStatusOf(err: ConnectError): number {
  const row = err.cause instanceof AppError ? errorTable[err.cause.code] : undefined;
  return row !== undefined && "connectHttp" in row ? row.connectHttp : codeToHttpStatus(err.code);
}

/**
 * The 413 / RESOURCE_EXHAUSTED `Request too large` for a body over `limitBytes`: the message is the
 * table's, the limit travels as ErrorInfo metadata `limit_bytes` (`error.details` over REST).
 */
export function requestTooLarge(limitBytes: number | undefined, cause?: unknown): AppError {
  return new AppError("request_too_large", {
    ...(limitBytes === undefined ? {} : { metadata: { limit_bytes: String(limitBytes) } }),
    cause,
  });
}

/** The HTTP status for an AppErrorCode, for the REST writer. */
export function httpStatusOf(code: AppErrorCode): number {
  return errorTable[code].http;
}

/** Whether a string is one of the AppErrorCodes (for reading ErrorInfo.reason back). */
export function isAppErrorCode(value: string): value is AppErrorCode {
  return Object.hasOwn(errorTable, value);
}
