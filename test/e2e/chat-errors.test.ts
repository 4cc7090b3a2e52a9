import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createApp, type App } from "../../src/app.js";
import type { SecretStore, Secrets } from "../../src/secrets/index.js";
import { startApp, type AppHarness } from "../support/app-harness.js";
import {
  canaryKey,
  canaryPieces,
  createE2eClients,
  e2eProducts,
  protocols,
  type CodeName,
  type E2eClients,
  type Outcome,
  type Protocol,
} from "../support/e2e-clients.js";
import { captureLog } from "../support/log-capture.js";
import { behaviors, startMockProvider, type Behavior, type MockProvider } from "../support/mock-provider.js";

// SPEC S7: every row of the error table, over REST, Connect and gRPC, against the composed server; upstream
// failures come from the misbehaving mock provider, which holds the canary key of product-dev.

const hello = { model: "gpt-4o-mini", messages: [{ role: "user", content: "Hello" }] };

/** OpenAI's own 401 quotes the key it refused (masked in the middle, first and last characters kept). */
const openAi401 = {
  error: {
    message: `Incorrect API key provided: ${canaryKey.slice(0, 8)}****************${canaryKey.slice(-4)}. You can find your API key at https://platform.openai.com/account/api-keys.`,
    type: "invalid_request_error",
    param: null,
    code: "invalid_api_key",
  },
};
const providerError = (message: string) => ({
  error: { message, type: "invalid_request_error", param: "messages", code: null },
});

interface Row {
  readonly name: string;
  readonly product?: string;
  readonly body?: Record<string, unknown>;
  /** "none": no authorization; "other": a caller allowed product-other only; "garbage": a non-JWT bearer. */
  readonly caller?: "none" | "other" | "garbage";
  readonly provider?: Behavior;
  readonly status: number;
  readonly code: CodeName;
  readonly message: string;
  /** The provider was (true) or was not (false) called; undefined: not checked. */
  readonly upstream?: boolean;
  /** The hint beside the exact message: ErrorInfo metadata `hint` (gRPC, Connect), `error.details` (REST). */
  readonly hint?: string;
}

const rows: readonly Row[] = [
  {
    name: "auth failed: no credentials",
    caller: "none",
    status: 401,
    code: "UNAUTHENTICATED",
    message: "Unauthorized",
    upstream: false,
  },
  {
    name: "auth failed: a bearer that is not a JWT",
    caller: "garbage",
    status: 401,
    code: "UNAUTHENTICATED",
    message: "Unauthorized",
    upstream: false,
  },
  {
    name: "product not allowed for the caller",
    caller: "other",
    status: 403,
    code: "PERMISSION_DENIED",
    message: "Forbidden",
    upstream: false,
  },
  {
    name: "unknown product",
    product: "product-nope",
    status: 404,
    code: "NOT_FOUND",
    message: "Product not found",
    upstream: false,
  },
  // S7 order: authentication first (no product or model is revealed to a stranger), the grant before the model.
  {
    name: "no credentials, unknown product and model",
    product: "product-nope",
    caller: "none",
    body: { ...hello, model: "nope" },
    status: 401,
    code: "UNAUTHENTICATED",
    message: "Unauthorized",
    upstream: false,
  },
  {
    name: "not allowed beats an unknown model",
    caller: "other",
    body: { ...hello, model: "nope" },
    status: 403,
    code: "PERMISSION_DENIED",
    message: "Forbidden",
    upstream: false,
  },
  // S7 order: the product is checked before the grant, so an unknown product is 404 even for a stranger.
  {
    name: "unknown product, caller without grants",
    product: "product-nope",
    caller: "other",
    status: 404,
    code: "NOT_FOUND",
    message: "Product not found",
    upstream: false,
  },
  {
    name: "model not in the product's list",
    body: { ...hello, model: "gpt-3.5-turbo" },
    status: 400,
    code: "INVALID_ARGUMENT",
    message: "Model not supported",
    upstream: false,
  },
  // S7 order: the model is checked before stream and max tokens.
  {
    name: "model not in the list beats stream:true",
    body: { ...hello, model: "nope", stream: true, max_tokens: 999_999 },
    status: 400,
    code: "INVALID_ARGUMENT",
    message: "Model not supported",
    upstream: false,
  },
  {
    name: "stream: true on the unary RPC",
    body: { ...hello, stream: true },
    status: 400,
    code: "INVALID_ARGUMENT",
    message: "Streaming not supported",
    hint: "use StreamChatCompletion (REST: POST /v1/chat/product-dev:stream)",
    upstream: false,
  },
  {
    name: "stream:true beats the token cap",
    body: { ...hello, stream: true, max_tokens: 999_999 },
    status: 400,
    code: "INVALID_ARGUMENT",
    message: "Streaming not supported",
    hint: "use StreamChatCompletion (REST: POST /v1/chat/product-dev:stream)",
    upstream: false,
  },
  {
    name: "max_tokens above API_KEY_SERVER_MAX_TOKENS",
    body: { ...hello, max_tokens: 2049 },
    status: 400,
    code: "INVALID_ARGUMENT",
    message: "max_tokens exceeds the maximum of 2048 tokens",
    upstream: false,
  },
  {
    name: "max_completion_tokens above the global cap",
    body: { ...hello, max_completion_tokens: 5000 },
    status: 400,
    code: "INVALID_ARGUMENT",
    message: "max_completion_tokens exceeds the maximum of 2048 tokens",
    upstream: false,
  },
  {
    name: "max_tokens above the product's lower cap",
    product: "product-capped",
    body: { ...hello, max_tokens: 101 },
    status: 400,
    code: "INVALID_ARGUMENT",
    message: "max_tokens exceeds the maximum of 100 tokens",
    upstream: false,
  },
  // A missing model is a malformed request, not a model the product does not list.
  {
    name: "malformed field: no model",
    body: { messages: hello.messages },
    status: 400,
    code: "INVALID_ARGUMENT",
    message: 'Missing required field "model"',
    upstream: false,
  },
  {
    name: "malformed field: an empty model",
    body: { ...hello, model: "" },
    status: 400,
    code: "INVALID_ARGUMENT",
    message: 'Missing required field "model"',
    upstream: false,
  },
  {
    name: "malformed field: no messages",
    body: { model: "gpt-4o-mini", messages: [] },
    status: 400,
    code: "INVALID_ARGUMENT",
    message: "messages: must contain at least one message",
    upstream: false,
  },
  {
    name: "malformed field: a message without role",
    body: { model: "gpt-4o-mini", messages: [{ content: "hi" }] },
    status: 400,
    code: "INVALID_ARGUMENT",
    message: "messages[0].role: is required",
    upstream: false,
  },
  {
    name: "provider 429",
    provider: behaviors.json(429, providerError("Rate limit reached for gpt-4o-mini"), {
      "retry-after": "7",
    }),
    status: 429,
    code: "RESOURCE_EXHAUSTED",
    message: "Rate limit exceeded",
    upstream: true,
  },
  {
    name: "provider 500",
    provider: behaviors.json(500, providerError("The server had an error")),
    status: 502,
    code: "UNAVAILABLE",
    message: "Upstream service error",
    upstream: true,
  },
  {
    name: "provider 503 HTML page",
    provider: behaviors.html(503),
    status: 502,
    code: "UNAVAILABLE",
    message: "Upstream service error",
    upstream: true,
  },
  {
    name: "provider 401 quoting the key",
    provider: behaviors.json(401, openAi401),
    status: 502,
    code: "UNAVAILABLE",
    message: "Upstream service error",
    upstream: true,
  },
  {
    name: "provider 403",
    provider: behaviors.json(403, providerError(`key ${canaryKey} is not allowed in this region`)),
    status: 502,
    code: "UNAVAILABLE",
    message: "Upstream service error",
    upstream: true,
  },
  {
    name: "provider 200 with invalid JSON",
    provider: behaviors.invalidJson(),
    status: 502,
    code: "UNAVAILABLE",
    message: "Upstream service error",
    upstream: true,
  },
  {
    name: "provider 200 JSON that is not a completion",
    provider: behaviors.json(200, { choices: "many" }),
    status: 502,
    code: "UNAVAILABLE",
    message: "Upstream service error",
    upstream: true,
  },
  {
    name: "provider resets the connection",
    provider: behaviors.reset(),
    status: 502,
    code: "UNAVAILABLE",
    message: "Upstream service error",
    upstream: true,
  },
  {
    name: "provider resets mid-body",
    provider: behaviors.reset('{"id": "chatcmpl-1", "choi'),
    status: 502,
    code: "UNAVAILABLE",
    message: "Upstream service error",
    upstream: true,
  },
  {
    name: "provider redirects (never followed)",
    provider: behaviors.redirect("http://127.0.0.1:1/v1/chat/completions"),
    status: 502,
    code: "UNAVAILABLE",
    message: "Upstream service error",
    upstream: true,
  },
  {
    name: "provider 400, message passed on",
    provider: behaviors.json(400, providerError("Invalid value for 'temperature': must be <= 2.")),
    status: 400,
    code: "INVALID_ARGUMENT",
    message: "Invalid value for 'temperature': must be <= 2.",
    upstream: true,
  },
  {
    name: "provider 404, message passed on",
    provider: behaviors.json(
      404,
      providerError("The model `gpt-4o-mini` does not exist or you do not have access to it."),
    ),
    status: 400,
    code: "INVALID_ARGUMENT",
    message: "The model `gpt-4o-mini` does not exist or you do not have access to it.",
    upstream: true,
  },
  {
    name: "provider 422 quoting the key, message scrubbed",
    provider: behaviors.json(422, providerError(`Unprocessable: key ${canaryKey} rejected the tool schema`)),
    status: 400,
    code: "INVALID_ARGUMENT",
    message: "Unprocessable: key [REDACTED] rejected the tool schema",
    upstream: true,
  },
  {
    name: "provider slower than API_KEY_SERVER_REQUEST_TIMEOUT_SECONDS",
    provider: behaviors.delay(2500, behaviors.json(200, { id: "late" })),
    status: 504,
    code: "DEADLINE_EXCEEDED",
    message: "Upstream timeout",
    upstream: true,
  },
  {
    name: "provider stalls mid-body past the timeout",
    provider: behaviors.stall(),
    status: 504,
    code: "DEADLINE_EXCEEDED",
    message: "Upstream timeout",
    upstream: true,
  },
];

/** The ErrorInfo reason (AppErrorCode) each row must carry over gRPC and Connect. */
function reasonOf(row: Row): string {
  const byStatus: Record<number, string> = {
    401: "unauthenticated",
    403: "forbidden",
    404: "product_not_found",
    429: "rate_limited",
    502: "upstream_error",
    504: "upstream_timeout",
  };
  if (row.status !== 400) return byStatus[row.status] ?? "?";
  if (row.message === "Model not supported") return "model_not_supported";
  if (row.message === "Streaming not supported") return "streaming_not_supported";
  return row.upstream === true ? "upstream_rejected" : "invalid_argument";
}

/** What every caller-visible output and log must never contain. */
function expectNoCanary(text: string): void {
  for (const piece of canaryPieces) expect(text).not.toContain(piece);
}

/** `details`: the ErrorInfo metadata the body must carry beside the exact message (none: no `details`). */
function expectRestErrorBody(
  outcome: Outcome,
  status: number,
  code: CodeName,
  message: string,
  details?: { reason: string; metadata: Record<string, string> },
): void {
  const error = { code: status, status: code, message };
  expect(outcome.body).toEqual({
    error:
      details === undefined
        ? error
        : {
            ...error,
            details: [
              { "@type": "type.googleapis.com/google.rpc.ErrorInfo", domain: "api-key-server", ...details },
            ],
          },
    detail: message,
  });
  expect(outcome.headers["content-type"]).toBe("application/json");
}

describe("S7 error table end to end over REST, Connect and gRPC", () => {
  let mock: MockProvider;
  let app: AppHarness;
  let clients: E2eClients;
  const seen: string[] = [];

  beforeAll(async () => {
    mock = await startMockProvider();
    app = await startApp({
      products: e2eProducts(mock.url),
      env: {
        API_KEY_SERVER_MAX_TOKENS: "2048",
        API_KEY_SERVER_REQUEST_TIMEOUT_SECONDS: "1",
        API_KEY_SERVER_MAX_BODY_BYTES: "16384",
      },
    });
    clients = createE2eClients(app.url);
  });
  afterAll(async () => {
    clients.close();
    await app.close();
    await mock.close();
  });

  async function authorization(caller: Row["caller"]): Promise<string | undefined> {
    switch (caller) {
      case "none":
        return undefined;
      case "garbage":
        return "Bearer not-a-jwt";
      case "other":
        return `Bearer ${await app.token({ claims: { products: ["product-other"] } })}`;
      default:
        return `Bearer ${await app.token({ claims: { products: ["product-dev", "product-capped"] } })}`;
    }
  }

  const cases = protocols.flatMap((protocol) => rows.map((row) => ({ protocol, ...row })));

  it.each(cases)("$protocol: $name → $status $code $message", async (row) => {
    mock.setBehavior(row.provider ?? behaviors.json(500, { error: "must not be called" }));
    const before = mock.requests.length;
    const outcome = await clients.chat(row.protocol, row.product ?? "product-dev", row.body ?? hello, {
      authorization: await authorization(row.caller),
    });
    seen.push(outcome.raw, JSON.stringify(outcome.headers));

    expect({ code: outcome.code, message: outcome.message }).toEqual({
      code: row.code,
      message: row.message,
    });
    if (row.protocol === "rest") {
      expect(outcome.status).toBe(row.status);
      expectRestErrorBody(
        outcome,
        row.status,
        row.code,
        row.message,
        row.hint === undefined
          ? undefined
          : { reason: reasonOf(row), metadata: { hint: row.hint, param: "stream" } },
      );
    } else if (row.hint !== undefined) {
      expect(outcome.errorMetadata).toEqual({ hint: row.hint, param: "stream" });
    }
    if (row.protocol === "rest") {
      if (row.status === 429) expect(outcome.headers["retry-after"]).toBe("7");
    } else {
      // gRPC and Connect carry our AppError code in google.rpc.ErrorInfo: 502 and 503 stay apart although
      // both are UNAVAILABLE, and the provider's retry hint travels as RetryInfo.
      expect(outcome.reason).toBe(reasonOf(row));
      expect(outcome.retryDelayMs).toBe(row.status === 429 ? 7000 : undefined);
    }
    if (row.upstream !== undefined) expect(mock.requests.length > before).toBe(row.upstream);
    expectNoCanary(outcome.raw);
    expectNoCanary(JSON.stringify(outcome.headers));
  });

  it.each(["rest", "connect", "grpc"] as const)(
    "%s: provider 401/403/5xx and transport failures are logged at ERROR with the provider status",
    async (protocol: Protocol) => {
      for (const [behavior, upstreamStatus] of [
        [behaviors.json(401, openAi401), 401],
        [behaviors.json(503, providerError("overloaded")), 503],
        [behaviors.reset(), undefined],
      ] as const) {
        mock.setBehavior(behavior);
        const from = app.logs.lines.length;
        const outcome = await clients.chat(protocol, "product-dev", hello, {
          authorization: await authorization(undefined),
        });
        expect(outcome.code).toBe("UNAVAILABLE");
        const records = app.logs.lines.slice(from).map((l) => JSON.parse(l) as Record<string, unknown>);
        const upstream = records.find((r) => r["message"] === "Upstream call failed");
        expect(upstream).toMatchObject({ severity: "ERROR", code: "upstream_error", provider: "openai" });
        expect(upstream?.["upstreamStatus"]).toBe(upstreamStatus);
        const access = records.find(
          (r) => r["message"] === "apikeyserver.v1.ChatService/CreateChatCompletion 502",
        );
        expect(access).toMatchObject({ severity: "ERROR", product: "product-dev", model: "gpt-4o-mini" });
      }
    },
  );

  it.each([
    ["a field OpenAI does not have", { ...hello, foo: 1 }, "foo"],
    ["a field of the wrong type", { ...hello, temperature: "hot" }, "temperature"],
    ["messages that are not a list", { model: "gpt-4o-mini", messages: "hi" }, "messages"],
  ])("rest: %s is 400 INVALID_ARGUMENT naming the field", async (_name, body, field) => {
    const outcome = await clients.chat("rest", "product-dev", body, {
      authorization: await authorization(undefined),
    });
    expect(outcome.status).toBe(400);
    expect(outcome.code).toBe("INVALID_ARGUMENT");
    expect(outcome.message).toContain(field);
  });

  it.each([
    ["malformed JSON", "{", "application/json", 400, "INVALID_ARGUMENT", "Malformed JSON body"],
    ["a JSON array", "[]", "application/json", 400, "INVALID_ARGUMENT", "Request body must be a JSON object"],
    [
      "not JSON at all",
      "model=gpt-4o",
      "application/x-www-form-urlencoded",
      415,
      "INVALID_ARGUMENT",
      "Content-Type must be application/json",
    ],
  ])("rest: %s → %i %s", async (_name, body, contentType, status, code, message) => {
    const res = await fetch(`${app.url}/v1/chat/product-dev`, {
      method: "POST",
      headers: { "content-type": contentType, authorization: (await authorization(undefined)) ?? "" },
      body,
    });
    expect(res.status).toBe(status);
    expect(await res.json()).toEqual({ error: { code: status, status: code, message }, detail: message });
  });

  // The body limit: every protocol refuses before parsing with the error table's row (413 over REST).
  it.each(protocols)(
    "%s: a body over API_KEY_SERVER_MAX_BODY_BYTES is RESOURCE_EXHAUSTED Request too large",
    async (protocol) => {
      const before = mock.requests.length;
      const outcome = await clients.chat(
        protocol,
        "product-dev",
        { model: "gpt-4o-mini", messages: [{ role: "user", content: "x".repeat(20_000) }] },
        { authorization: await authorization(undefined) },
      );
      seen.push(outcome.raw);
      expect(outcome.code).toBe("RESOURCE_EXHAUSTED");
      expect(outcome.message).toBe("Request too large");
      // The limit is stated in the details, never in the message.
      if (protocol === "rest") {
        expect(outcome.status).toBe(413);
        expectRestErrorBody(outcome, 413, "RESOURCE_EXHAUSTED", "Request too large", {
          reason: "request_too_large",
          metadata: { limit_bytes: "16384" },
        });
      } else {
        expect(outcome.errorMetadata).toEqual({ limit_bytes: "16384" });
      }
      expect(mock.requests.length).toBe(before);
    },
  );

  it("no response, header or log line ever contained the canary key or its first/last 4 characters", () => {
    expect(seen.length).toBeGreaterThan(rows.length * 3);
    for (const text of seen) expectNoCanary(text);
    expect(app.logs.lines.length).toBeGreaterThan(rows.length * 3);
    expectNoCanary(app.logs.text());
    // And the key did reach the provider, so the canary was really in play.
    expect(mock.requests.some((r) => r.headers.authorization === `Bearer ${canaryKey}`)).toBe(true);
  });
});

describe("S7 rows that need a special server: secrets not loaded, anything unexpected", () => {
  const logs = captureLog("debug");
  let base: AppHarness;
  let app: App;
  let url: string;
  let clients: E2eClients;
  let mode: "not-ready" | "boom" = "not-ready";

  beforeAll(async () => {
    // The harness provides a JWT key and loaded secrets; this second app reads them through a store that
    // reports "not loaded yet" or whose product lookup fails in a way no code path expects.
    base = await startApp();
    const store: SecretStore = {
      current(): Secrets | undefined {
        const current = base.secrets.current();
        if (mode === "not-ready" || current === undefined) return undefined;
        const products = new Map(current.products);
        products.get = () => {
          throw new TypeError("products map exploded");
        };
        return { ...current, products };
      },
      start: () => Promise.resolve(),
      stop: () => Promise.resolve(),
      onChange: () => () => undefined,
    };
    app = createApp({ config: base.config, logger: logs.logger, secrets: store, version: "test" });
    const { port } = await app.listen(0, "127.0.0.1");
    url = `http://127.0.0.1:${port}`;
    clients = createE2eClients(url);
  });
  afterAll(async () => {
    clients.close();
    await app.close(1000);
    await base.close();
  });

  const body = { model: "echo-1", messages: [{ role: "user", content: "Hello" }] };

  it.each(protocols)("%s: secrets not loaded yet → 503 UNAVAILABLE Service not ready", async (protocol) => {
    mode = "not-ready";
    const outcome = await clients.chat(protocol, "product-dev", body, {
      authorization: `Bearer ${await base.token()}`,
    });
    expect({ code: outcome.code, message: outcome.message }).toEqual({
      code: "UNAVAILABLE",
      message: "Service not ready",
    });
    if (protocol === "rest") {
      expect(outcome.status).toBe(503);
      expectRestErrorBody(outcome, 503, "UNAVAILABLE", "Service not ready");
    } else {
      // Same gRPC code as other rows; ErrorInfo tells them apart.
      expect(outcome.reason).toBe("not_ready");
    }
  });

  it.each(protocols)(
    "%s: anything unexpected → 500 INTERNAL Internal server error, cause in the log only",
    async (protocol) => {
      mode = "boom";
      const from = logs.lines.length;
      const outcome = await clients.chat(protocol, "product-dev", body, {
        authorization: `Bearer ${await base.token()}`,
      });
      expect({ code: outcome.code, message: outcome.message }).toEqual({
        code: "INTERNAL",
        message: "Internal server error",
      });
      expect(outcome.raw).not.toContain("exploded");
      if (protocol === "rest") {
        expect(outcome.status).toBe(500);
        expectRestErrorBody(outcome, 500, "INTERNAL", "Internal server error");
      } else {
        // Same gRPC code as other rows; ErrorInfo tells them apart.
        expect(outcome.reason).toBe("internal");
      }
      const text = logs.lines.slice(from).join("");
      expect(text).toContain("products map exploded");
      expect(text).toContain('"severity":"ERROR"');
    },
  );
});
