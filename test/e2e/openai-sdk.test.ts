import { once } from "node:events";
import * as http2 from "node:http2";
import OpenAI, {
  APIError,
  APIUserAbortError,
  AuthenticationError,
  BadRequestError,
  InternalServerError,
  NotFoundError,
  PermissionDeniedError,
  RateLimitError,
} from "openai";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { hmacSigningFetch } from "../support/hmac-fetch.js";
import { startApp, type AppHarness } from "../support/app-harness.js";
import { canaryKey, canaryPieces, e2eProducts, relayedChunks } from "../support/e2e-clients.js";
import {
  behaviors,
  defaultCompletion,
  startMockProvider,
  type MockProvider,
  type RecordedRequest,
} from "../support/mock-provider.js";
import { fixture } from "../upstream/helpers.js";
import { readmeSnippet, runSnippet } from "../support/readme-snippet.js";

// The official `openai` npm SDK, unchanged, against the OpenAI-compatible base URL `/openai/<product>/v1`
// of the composed server (README, "OpenAI-compatible base URL"): the mock provider behind `product-dev`'s
// OpenAI models, and the built-in echo provider (what a newcomer gets with no key).

const chunks = fixture<Record<string, unknown>[]>("chat-completion-chunks.json");
const toolCalls = fixture<Record<string, unknown>>("chat-completion-tool-calls.json");
const hello = [{ role: "user" as const, content: "Hello" }];
const hmacKey = { keyId: "svc-hmac", secret: "secret-hmac-0123456789abcdef0123456789" };

let mock: MockProvider;
let app: AppHarness;
let token: string;
/** Every body and header a caller saw, for the leak check at the end. */
const seen: string[] = [];

beforeAll(async () => {
  mock = await startMockProvider();
  app = await startApp({
    products: {
      ...e2eProducts(mock.url),
      "product-limited": {
        providers: { echo: { models: ["echo-1"] } },
        rate_limit: { requests_per_minute: 1 },
      },
    },
    hmac: { [hmacKey.keyId]: { secret: hmacKey.secret, products: ["product-dev"] } },
    env: {
      API_KEY_SERVER_MAX_TOKENS: "2048",
      API_KEY_SERVER_MAX_BODY_BYTES: "65536",
      API_KEY_SERVER_REQUEST_TIMEOUT_SECONDS: "1",
    },
  });
  token = await app.token({ claims: { products: ["product-dev", "product-limited"] } });
});
afterAll(async () => {
  await app.close();
  await mock.close();
});

/** The SDK as a user sets it up: the base URL of a product and the caller's JWT as the API key. */
function sdk(product = "product-dev", options: Partial<ConstructorParameters<typeof OpenAI>[0]> = {}) {
  return new OpenAI({ baseURL: `${app.url}/openai/${product}/v1`, apiKey: token, maxRetries: 0, ...options });
}

/** Runs a call expected to fail; returns the SDK's error (and records it for the leak check). */
async function failure(call: Promise<unknown>): Promise<APIError> {
  const err = await call.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(APIError);
  const api = err as APIError;
  seen.push(JSON.stringify(api.error), JSON.stringify(Object.fromEntries(api.headers ?? new Headers())));
  return api;
}

const relayed = relayedChunks(chunks);

describe("the openai SDK against the mock provider", () => {
  it("chat.completions.create: OpenAI's answer, the body forwarded with the product's key", async () => {
    mock.setBehavior(behaviors.json(200, defaultCompletion));
    const before = mock.requests.length;
    const completion = await sdk().chat.completions.create({ model: "gpt-4o-mini", messages: hello });
    expect(completion).toStrictEqual(defaultCompletion);
    expect(mock.requests.length).toBe(before + 1);
    expect(mock.requests.at(-1)?.body).toStrictEqual({
      model: "gpt-4o-mini",
      messages: hello,
      max_completion_tokens: 2048,
    });
    expect(mock.requests.at(-1)?.headers["authorization"]).toBe(`Bearer ${canaryKey}`);
  });

  it("a stream read to the end: every chunk as OpenAI sent it, usage last", async () => {
    mock.setBehavior(behaviors.sse(chunks));
    const stream = await sdk().chat.completions.create({
      model: "gpt-4o-mini",
      messages: hello,
      stream: true,
      stream_options: { include_usage: true },
    });
    const received: unknown[] = [];
    for await (const chunk of stream) received.push(chunk);
    expect(received).toStrictEqual(relayed);
    expect(mock.requests.at(-1)?.body).toMatchObject({
      stream: true,
      stream_options: { include_usage: true },
    });
  });

  it("the stream's bytes: data: {chunk} per chunk, usage null before the usage chunk, then data: [DONE]", async () => {
    mock.setBehavior(behaviors.sse(chunks));
    const res = await fetch(`${app.url}/openai/product-dev/v1/chat/completions`, {
      method: "POST",
      headers: { authorization: `Bearer ${token}`, "content-type": "application/json" },
      body: JSON.stringify({
        model: "gpt-4o-mini",
        messages: hello,
        stream: true,
        stream_options: { include_usage: true },
      }),
    });
    expect(res.status).toBe(200);
    expect(res.headers.get("content-type")).toBe("text/event-stream; charset=utf-8");
    const text = await res.text();
    const events = text.split("\n\n");
    expect(events.pop()).toBe("");
    expect(events.pop()).toBe("data: [DONE]");
    expect(events.every((e) => e.startsWith("data: {") && !e.includes("\n"))).toBe(true);
    const parsed = events.map((e) => JSON.parse(e.slice("data: ".length)) as Record<string, unknown>);
    expect(parsed).toStrictEqual(relayed);
    expect(parsed.map((c) => Object.hasOwn(c, "usage") && c["usage"] === null)).toEqual([
      true,
      true,
      true,
      false,
    ]);
  });

  it("without include_usage no chunk has a usage key", async () => {
    mock.setBehavior(behaviors.sse(relayed.slice(0, 3).map(({ usage: _usage, ...rest }) => rest)));
    const stream = await sdk().chat.completions.create({
      model: "gpt-4o-mini",
      messages: hello,
      stream: true,
    });
    const received: Record<string, unknown>[] = [];
    for await (const chunk of stream) received.push(chunk as unknown as Record<string, unknown>);
    expect(received).toHaveLength(3);
    expect(received.some((c) => Object.hasOwn(c, "usage"))).toBe(false);
  });

  it("a tool call round trip: the assistant's tool_calls, then a tool message", async () => {
    const client = sdk();
    const tools = [
      {
        type: "function" as const,
        function: {
          name: "get_current_weather",
          parameters: {
            type: "object",
            properties: { location: { type: "string" } },
            required: ["location"],
          },
        },
      },
    ];
    const question = { role: "user" as const, content: "What's the weather like in Boston today?" };
    mock.setBehavior(behaviors.json(200, toolCalls));
    const first = await client.chat.completions.create({ model: "gpt-4o-mini", messages: [question], tools });
    expect(first).toStrictEqual(toolCalls);
    const call = first.choices[0]?.message.tool_calls?.[0];
    if (call?.type !== "function") throw new Error("expected a function tool call");
    expect(call.function.name).toBe("get_current_weather");

    mock.setBehavior(behaviors.json(200, defaultCompletion));
    const assistant = first.choices[0]?.message;
    if (assistant?.tool_calls === undefined) throw new Error("expected tool calls");
    const messages = [
      question,
      { role: "assistant" as const, content: assistant.content, tool_calls: assistant.tool_calls },
      { role: "tool" as const, tool_call_id: call.id, content: '{"temperature": 22}' },
    ];
    const second = await client.chat.completions.create({ model: "gpt-4o-mini", messages, tools });
    expect(second.choices[0]?.message.content).toBe("Hello!");
    // The provider got the conversation exactly as the SDK sent it: null content beside tool_calls kept.
    const upstream = mock.requests.at(-1)?.body as { messages: unknown[]; tools: unknown[] };
    expect(upstream.messages).toStrictEqual(messages);
    expect(upstream.tools).toStrictEqual(tools);
  });

  it("models.list and models.retrieve: the product's models; an unlisted one is NotFoundError", async () => {
    const client = sdk();
    const list = await client.models.list();
    expect(list.data).toStrictEqual([
      { id: "gpt-4o", object: "model", created: 0, owned_by: "openai" },
      { id: "gpt-4o-mini", object: "model", created: 0, owned_by: "openai" },
      { id: "echo-1", object: "model", created: 0, owned_by: "echo" },
    ]);
    expect(await client.models.retrieve("gpt-4o")).toStrictEqual({
      id: "gpt-4o",
      object: "model",
      created: 0,
      owned_by: "openai",
    });
    const err = await failure(client.models.retrieve("gpt-3.5-turbo"));
    expect(err).toBeInstanceOf(NotFoundError);
    expect(err.error).toStrictEqual({
      message: "Model not found",
      type: "invalid_request_error",
      param: "model",
      code: "model_not_found",
    });
  });

  type ErrorRow = {
    readonly name: string;
    readonly call: () => Promise<unknown>;
    readonly provider?: Parameters<MockProvider["setBehavior"]>[0];
    readonly class: abstract new (...args: never[]) => APIError;
    readonly status: number;
    readonly error: { message: string; type: string; param: string | null; code: string; details?: unknown };
  };
  const create = (product: string, body: Record<string, unknown>, apiKey?: string) => () =>
    sdk(product, apiKey === undefined ? {} : { apiKey }).chat.completions.create({
      model: "gpt-4o-mini",
      messages: hello,
      ...body,
    });
  const errorRows: readonly ErrorRow[] = [
    {
      name: "a token that is not a JWT",
      call: create("product-dev", {}, "not-a-token"),
      class: AuthenticationError,
      status: 401,
      error: { message: "Unauthorized", type: "authentication_error", param: null, code: "unauthenticated" },
    },
    {
      name: "a product the caller may not use",
      call: create("product-other", { model: "echo-1" }),
      class: PermissionDeniedError,
      status: 403,
      error: { message: "Forbidden", type: "permission_error", param: null, code: "forbidden" },
    },
    {
      name: "an unknown product",
      call: create("product-nope", {}),
      class: NotFoundError,
      status: 404,
      error: {
        message: "Product not found",
        type: "invalid_request_error",
        param: null,
        code: "product_not_found",
      },
    },
    {
      name: "a model not in the product's list",
      call: create("product-dev", { model: "gpt-3.5-turbo" }),
      class: BadRequestError,
      status: 400,
      error: {
        message: "Model not supported",
        type: "invalid_request_error",
        param: "model",
        code: "model_not_supported",
      },
    },
    {
      name: "no model at all",
      call: create("product-dev", { model: undefined }),
      class: BadRequestError,
      status: 400,
      error: {
        message: 'Missing required field "model"',
        type: "invalid_request_error",
        param: "model",
        code: "invalid_argument",
      },
    },
    {
      name: "max_tokens above the cap",
      call: create("product-dev", { max_tokens: 4096 }),
      class: BadRequestError,
      status: 400,
      error: {
        message: "max_tokens exceeds the maximum of 2048 tokens",
        type: "invalid_request_error",
        param: "max_tokens",
        code: "invalid_argument",
      },
    },
    {
      name: "a field the contract does not know",
      call: create("product-dev", { not_an_openai_field: 1 }),
      class: BadRequestError,
      status: 400,
      error: {
        message: 'Unknown field "not_an_openai_field"',
        type: "invalid_request_error",
        param: "not_an_openai_field",
        code: "invalid_argument",
      },
    },
    {
      name: "a body over API_KEY_SERVER_MAX_BODY_BYTES",
      call: create("product-dev", { messages: [{ role: "user", content: "x".repeat(70_000) }] }),
      class: APIError,
      status: 413,
      error: {
        message: "Request too large",
        type: "invalid_request_error",
        param: null,
        code: "request_too_large",
        // The limit, beside the exact message (src/protocols/openai/openai-error.ts).
        details: [
          {
            "@type": "type.googleapis.com/google.rpc.ErrorInfo",
            reason: "request_too_large",
            domain: "api-key-server",
            metadata: { limit_bytes: "65536" },
          },
        ],
      },
    },
    {
      name: "the provider's 400, quoting the key",
      call: create("product-dev", {}),
      provider: behaviors.json(400, { error: { message: `Bad value near ${canaryKey}` } }),
      class: BadRequestError,
      status: 400,
      error: {
        message: "Bad value near [REDACTED]",
        type: "invalid_request_error",
        param: null,
        code: "upstream_rejected",
      },
    },
    {
      name: "the provider's 500",
      call: create("product-dev", {}),
      provider: behaviors.json(500, { error: { message: "boom" } }),
      class: InternalServerError,
      status: 502,
      error: { message: "Upstream service error", type: "server_error", param: null, code: "upstream_error" },
    },
    {
      name: "the provider's 401 (our key is bad)",
      call: create("product-dev", {}),
      provider: behaviors.json(401, { error: { message: `Incorrect API key provided: ${canaryKey}` } }),
      class: InternalServerError,
      status: 502,
      error: { message: "Upstream service error", type: "server_error", param: null, code: "upstream_error" },
    },
    {
      name: "the provider slower than API_KEY_SERVER_REQUEST_TIMEOUT_SECONDS",
      call: create("product-dev", {}),
      provider: behaviors.delay(1500, behaviors.json(200, defaultCompletion)),
      class: InternalServerError,
      status: 504,
      error: { message: "Upstream timeout", type: "server_error", param: null, code: "upstream_timeout" },
    },
  ];

  it.each(errorRows)("$name → $status, the SDK's matching class, OpenAI's error body", async (row) => {
    mock.setBehavior(row.provider ?? behaviors.json(500, { error: "must not be called" }));
    const err = await failure(row.call());
    expect(err).toBeInstanceOf(row.class);
    expect(err.status).toBe(row.status);
    expect(err.error).toStrictEqual(row.error);
    expect(err.message).toBe(`${row.status} ${row.error.message}`);
    expect(err.code).toBe(row.error.code);
    expect(err.headers?.get("content-type")).toBe("application/json");
  });

  it("our own rate limit → RateLimitError with Retry-After (and retry-after-ms) from the limiter", async () => {
    const client = sdk("product-limited");
    await client.chat.completions.create({ model: "echo-1", messages: hello });
    const err = await failure(client.chat.completions.create({ model: "echo-1", messages: hello }));
    expect(err).toBeInstanceOf(RateLimitError);
    expect(err.status).toBe(429);
    expect(err.error).toStrictEqual({
      message: "Rate limit exceeded",
      type: "rate_limit_error",
      param: null,
      code: "rate_limited",
    });
    const seconds = Number(err.headers?.get("retry-after"));
    const ms = Number(err.headers?.get("retry-after-ms"));
    expect(seconds).toBeGreaterThanOrEqual(59);
    expect(seconds).toBeLessThanOrEqual(60);
    expect(Math.ceil(ms / 1000)).toBe(seconds);
    expect(err.headers?.get("ratelimit-limit")).toBe("1");
  });

  it("a provider 429 with Retry-After: the SDK's own retry waits for it, then succeeds", async () => {
    let calls = 0;
    mock.setBehavior(
      behaviors.handler((_req: RecordedRequest, res) => {
        calls++;
        const [status, body, headers] =
          calls === 1
            ? [429, { error: { message: "slow down" } }, { "retry-after": "1" }]
            : [200, defaultCompletion, {}];
        res.writeHead(status, { "content-type": "application/json", ...headers });
        res.end(JSON.stringify(body));
      }),
    );
    const started = performance.now();
    const { data, response } = await sdk("product-dev", { maxRetries: 1 })
      .chat.completions.create({ model: "gpt-4o-mini", messages: hello })
      .withResponse();
    expect(data).toStrictEqual(defaultCompletion);
    expect(response.status).toBe(200);
    expect(calls).toBe(2);
    // The SDK waited as it was told (a lower bound, not a speed assertion): our 429 said one second.
    expect(performance.now() - started).toBeGreaterThanOrEqual(950);
    const lines = app.logs
      .records()
      .filter((l) => l["rpc"] === "apikeyserver.v1.ChatService/CreateChatCompletion");
    expect(lines.slice(-2).map((l) => (l["httpRequest"] as { status: number }).status)).toEqual([429, 200]);
    // One access line per request, from the edge layer, naming the surface and the caller's own path.
    expect(
      lines.slice(-2).map((l) => [l["protocol"], (l["httpRequest"] as { requestUrl: string }).requestUrl]),
    ).toEqual([
      ["openai", "/openai/product-dev/v1/chat/completions"],
      ["openai", "/openai/product-dev/v1/chat/completions"],
    ]);
  });

  it("an abort from the SDK's AbortController mid-stream reaches the provider", async () => {
    mock.setBehavior(behaviors.sse(chunks.slice(0, 2), "stall"));
    const abortedBefore = mock.aborted;
    const controller = new AbortController();
    const stream = await sdk().chat.completions.create(
      { model: "gpt-4o-mini", messages: hello, stream: true },
      { signal: controller.signal },
    );
    const received: unknown[] = [];
    const reading = (async () => {
      for await (const chunk of stream) {
        received.push(chunk);
        if (received.length === 2) controller.abort();
      }
    })().catch((e: unknown) => e);
    await mock.whenAborted(abortedBefore + 1);
    expect(mock.aborted).toBe(abortedBefore + 1);
    expect(received).toHaveLength(2);
    const outcome = await reading;
    expect(outcome === undefined || outcome instanceof APIUserAbortError).toBe(true);
  });

  it("an abort of a unary call waiting on the provider reaches the provider", async () => {
    mock.setBehavior(behaviors.stall());
    const abortedBefore = mock.aborted;
    const requested = mock.requests.length;
    const controller = new AbortController();
    const call = sdk()
      .chat.completions.create({ model: "gpt-4o-mini", messages: hello }, { signal: controller.signal })
      .catch((e: unknown) => e);
    await mock.whenRequested(requested + 1);
    controller.abort();
    expect(await call).toBeInstanceOf(APIUserAbortError);
    await mock.whenAborted(abortedBefore + 1);
    expect(mock.aborted).toBe(abortedBefore + 1);
  });

  it("a stream the provider breaks off ends in the SDK's APIError, not like a finished one", async () => {
    mock.setBehavior(behaviors.sse(chunks.slice(0, 2), "truncate"));
    const stream = await sdk().chat.completions.create({
      model: "gpt-4o-mini",
      messages: hello,
      stream: true,
    });
    const received: unknown[] = [];
    const err = await (async () => {
      for await (const chunk of stream) received.push(chunk);
    })().then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(received).toHaveLength(2);
    expect(err).toBeInstanceOf(APIError);
    expect((err as APIError).error).toStrictEqual({
      message: "Upstream service error",
      type: "server_error",
      param: null,
      code: "upstream_error",
    });
  });

  it("HMAC works too: the SDK's fetch signs each request", async () => {
    mock.setBehavior(behaviors.json(200, defaultCompletion));
    const signingFetch = hmacSigningFetch(hmacKey);
    const client = sdk("product-dev", { apiKey: "unused", fetch: signingFetch });
    expect(await client.chat.completions.create({ model: "gpt-4o-mini", messages: hello })).toStrictEqual(
      defaultCompletion,
    );
    expect((await client.models.list()).data.map((m) => m.id)).toContain("echo-1");
  });
});

describe("the openai SDK against the echo provider (no key needed)", () => {
  it("chat.completions.create answers with the last user message and usage", async () => {
    const completion = await sdk().chat.completions.create({ model: "echo-1", messages: hello });
    expect(completion.object).toBe("chat.completion");
    expect(completion.choices[0]?.message).toMatchObject({ role: "assistant", content: "Hello" });
    expect(completion.usage?.total_tokens).toBeGreaterThan(0);
  });

  it("a stream read to the end with usage: text, finish, usage last", async () => {
    const stream = await sdk().chat.completions.create({
      model: "echo-1",
      messages: [{ role: "user", content: "Hello there" }],
      stream: true,
      stream_options: { include_usage: true },
    });
    const received = [];
    for await (const chunk of stream) received.push(chunk);
    expect(received.flatMap((c) => c.choices.map((x) => x.delta.content ?? "")).join("")).toBe("Hello there");
    expect(received.at(-1)?.choices).toEqual([]);
    expect(received.at(-1)?.usage?.total_tokens).toBeGreaterThan(0);
    expect(received.slice(0, -1).every((c) => c.usage === null)).toBe(true);
  });

  it("a tool call round trip's second leg: the tool's answer is accepted", async () => {
    const completion = await sdk().chat.completions.create({
      model: "echo-1",
      messages: [
        { role: "user", content: "Weather in Boston?" },
        {
          role: "assistant",
          content: null,
          tool_calls: [{ id: "call_1", type: "function", function: { name: "weather", arguments: "{}" } }],
        },
        { role: "tool", tool_call_id: "call_1", content: "22 degrees" },
      ],
    });
    expect(completion.choices[0]?.finish_reason).toBe("stop");
  });

  it("models.list and models.retrieve", async () => {
    const client = sdk();
    expect((await client.models.list()).data.map((m) => m.id)).toContain("echo-1");
    expect(await client.models.retrieve("echo-1")).toStrictEqual({
      id: "echo-1",
      object: "model",
      created: 0,
      owned_by: "echo",
    });
  });

  it("an unlisted model is BadRequestError naming the param", async () => {
    const err = await failure(sdk().chat.completions.create({ model: "echo-2", messages: hello }));
    expect(err).toBeInstanceOf(BadRequestError);
    expect(err.param).toBe("model");
  });
});

describe("the surface itself", () => {
  it.each([
    { method: "GET", path: "/openai/product-dev/v1/nope", status: 404, code: "route_not_found", allow: null },
    { method: "GET", path: "/openai/product-dev", status: 404, code: "route_not_found", allow: null },
    {
      method: "GET",
      path: "/openai/product-dev/v1/chat/completions",
      status: 405,
      code: "method_not_allowed",
      allow: "POST",
    },
    {
      method: "POST",
      path: "/openai/product-dev/v1/models",
      status: 405,
      code: "method_not_allowed",
      allow: "GET",
    },
  ])("$method $path → $status in OpenAI's shape", async ({ method, path, status, code, allow }) => {
    const res = await fetch(app.url + path, { method, headers: { authorization: `Bearer ${token}` } });
    expect(res.status).toBe(status);
    expect(res.headers.get("allow")).toBe(allow);
    const body = (await res.json()) as { error: { code: string; type: string; param: unknown } };
    expect(body.error.code).toBe(code);
    // The refusal has its access line too (the edge layer logs every request).
    const line = app.logs
      .records()
      .findLast((l) => (l["httpRequest"] as { requestUrl?: string } | undefined)?.requestUrl === path);
    expect(line).toMatchObject({ protocol: "openai", httpRequest: { status } });
    expect(body.error.type).toBe("invalid_request_error");
    expect(body.error.param).toBeNull();
  });

  it.each([
    {
      name: "malformed JSON",
      body: "{",
      type: "application/json",
      status: 400,
      message: "Malformed JSON body",
      code: "invalid_argument",
    },
    {
      name: "not an object",
      body: "[1]",
      type: "application/json",
      status: 400,
      message: "Request body must be a JSON object",
      code: "invalid_argument",
    },
    {
      name: "not JSON",
      body: "hi",
      type: "text/plain",
      status: 415,
      message: "Content-Type must be application/json",
      code: "unsupported_media_type",
    },
  ])("$name → $status $message", async ({ body, type, status, message, code }) => {
    const res = await fetch(`${app.url}/openai/product-dev/v1/chat/completions`, {
      method: "POST",
      headers: { authorization: `Bearer ${token}`, "content-type": type },
      body,
    });
    expect(res.status).toBe(status);
    expect(await res.json()).toStrictEqual({
      error: { message, type: "invalid_request_error", param: null, code },
    });
  });

  it("a stream refused before its first chunk is a plain error answer (the SDK's class, not a stream)", async () => {
    const err = await failure(
      sdk("product-dev", { apiKey: "not-a-token" }).chat.completions.create({
        model: "echo-1",
        messages: hello,
        stream: true,
      }),
    );
    expect(err).toBeInstanceOf(AuthenticationError);
  });

  it("the surface answers over h2c too (the one port's HTTP/2 side), stream and [DONE] included", async () => {
    const session = http2.connect(app.url);
    try {
      const stream = session.request({
        ":method": "POST",
        ":path": "/openai/product-dev/v1/chat/completions",
        authorization: `Bearer ${token}`,
        "content-type": "application/json",
      });
      stream.end(JSON.stringify({ model: "echo-1", messages: hello, stream: true }));
      const [headers] = (await once(stream, "response")) as [http2.IncomingHttpHeaders];
      stream.setEncoding("utf8");
      let text = "";
      for await (const chunk of stream) text += chunk as string;
      expect(headers[":status"]).toBe(200);
      expect(headers["content-type"]).toBe("text/event-stream; charset=utf-8");
      expect(text.endsWith("data: [DONE]\n\n")).toBe(true);
      expect(text).toContain('"content":"Hello"');
    } finally {
      session.close();
    }
  });

  it("the README's Node snippet works verbatim (only the port differs) against echo", async () => {
    const snippet = await readmeSnippet("## OpenAI-compatible base URL");
    expect(snippet).toContain('baseURL: "http://localhost:8000/openai/product-dev/v1"');
    expect(await runSnippet(snippet, app.url, { TOKEN: token })).toBe("Hello\n");
  });

  it("no answer, header or log line contained the canary key or its first/last 4 characters", () => {
    expect(seen.length).toBeGreaterThan(20);
    for (const text of seen) for (const piece of canaryPieces) expect(text).not.toContain(piece);
    for (const piece of canaryPieces) expect(app.logs.text()).not.toContain(piece);
  });
});
