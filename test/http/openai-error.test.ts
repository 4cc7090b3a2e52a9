import { Code, ConnectError } from "@connectrpc/connect";
import { describe, expect, it } from "vitest";
import { AppError, errorTable, toConnectError, type AppErrorCode } from "../../src/errors/index.js";
import { openAiErrorFromConnect } from "../../src/protocols/openai/openai-error.js";

// OpenAI's error shape for every row of the README's error table, and for ConnectErrors raised outside it.

const typeOf: Record<AppErrorCode, string> = {
  unauthenticated: "authentication_error",
  forbidden: "permission_error",
  product_not_found: "invalid_request_error",
  model_not_found: "invalid_request_error",
  response_not_found: "invalid_request_error",
  route_not_found: "invalid_request_error",
  method_not_allowed: "invalid_request_error",
  unsupported_media_type: "invalid_request_error",
  model_not_supported: "invalid_request_error",
  streaming_not_supported: "invalid_request_error",
  streaming_required: "invalid_request_error",
  invalid_argument: "invalid_request_error",
  request_too_large: "invalid_request_error",
  rate_limited: "rate_limit_error",
  budget_exceeded: "rate_limit_error",
  too_many_concurrent_calls: "rate_limit_error",
  upstream_error: "server_error",
  upstream_rejected: "invalid_request_error",
  upstream_timeout: "server_error",
  not_ready: "server_error",
  internal: "server_error",
};
const paramOf: Partial<Record<AppErrorCode, string>> = {
  model_not_found: "model",
  model_not_supported: "model",
  streaming_not_supported: "stream",
  streaming_required: "stream",
};

describe("openAiErrorFromConnect", () => {
  it.each(Object.keys(errorTable) as AppErrorCode[])("%s → the table's status and message", (code) => {
    const answer = openAiErrorFromConnect(toConnectError(new AppError(code)));
    expect(answer.status).toBe(errorTable[code].http);
    expect(JSON.parse(answer.body)).toStrictEqual({
      error: { message: errorTable[code].message, type: typeOf[code], param: paramOf[code] ?? null, code },
    });
  });

  it("the field an AppError names is the param", () => {
    const err = toConnectError(
      new AppError("invalid_argument", { message: "max_tokens: bad", param: "max_tokens" }),
    );
    expect(JSON.parse(openAiErrorFromConnect(err).body)).toMatchObject({
      error: { message: "max_tokens: bad", param: "max_tokens", code: "invalid_argument" },
    });
  });

  it("429: Retry-After in whole seconds (rounded up) and retry-after-ms, plus the error's own headers", () => {
    const err = toConnectError(
      new AppError("rate_limited", { retryAfterMs: 1500, headers: { "ratelimit-limit": "60" } }),
    );
    const answer = openAiErrorFromConnect(err);
    expect(answer.status).toBe(429);
    expect(answer.headers).toStrictEqual({
      "retry-after": "2",
      "retry-after-ms": "1500",
      "ratelimit-limit": "60",
    });
  });

  it.each([
    { code: Code.Canceled, status: 499, type: "invalid_request_error", name: "cancelled" },
    { code: Code.DeadlineExceeded, status: 504, type: "server_error", name: "deadline_exceeded" },
    { code: Code.InvalidArgument, status: 400, type: "invalid_request_error", name: "invalid_argument" },
    { code: Code.Unimplemented, status: 501, type: "server_error", name: "unimplemented" },
  ])(
    "a ConnectError without our ErrorInfo ($name) goes by the canonical table",
    ({ code, status, type, name }) => {
      const answer = openAiErrorFromConnect(new ConnectError("said by connect", code));
      expect(answer.status).toBe(status);
      expect(JSON.parse(answer.body)).toStrictEqual({
        error: { message: "said by connect", type, param: null, code: name },
      });
      expect(answer.headers).toStrictEqual({});
    },
  );
});
