import { readFileSync } from "node:fs";
import Anthropic, {
  APIError,
  AuthenticationError,
  BadRequestError,
  InternalServerError,
  NotFoundError,
  PermissionDeniedError,
  RateLimitError,
} from "@anthropic-ai/sdk";
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import { hmacSigningFetch } from "../support/hmac-fetch.js";
import { startApp, type AppHarness } from "../support/app-harness.js";
import { canaryKey, canaryPieces } from "../support/e2e-clients.js";
import { behaviors, startMockProvider, type MockProvider } from "../support/mock-provider.js";

// The official @anthropic-ai/sdk, unchanged, against the Anthropic Messages surface of the composed server
// (README, "Anthropic Messages API") for a product served natively by the `anthropic` provider: the mock
// provider records what it received (the caller's body byte for byte, its anthropic-beta, never its token).

type Json = Record<string, unknown>;
const anthropicFixture = (name: string): Json =>
  JSON.parse(readFileSync(new URL(`../fixtures/anthropic/${name}`, import.meta.url), "utf8")) as Json;
const text = anthropicFixture("text.json")["provider_response"] as Json;
const streamEvents = anthropicFixture("stream.json")["provider_events"] as Json[];
const toolEvents = anthropicFixture("stream-tool-call.json")["provider_events"] as Json[];

/** Anthropic's framing: `event: <type>` and the JSON data. */
const frames = (events: readonly Json[]) =>
  events.map((e) => `event: ${String(e["type"])}\ndata: ${JSON.stringify(e)}\n\n`);

const model = "claude-sonnet-4-5";
const hmacKey = { keyId: "svc-hmac", secret: "secret-hmac-0123456789abcdef0123456789" };
let mock: MockProvider;
let app: AppHarness;
let token: string;
/** Every body and header a caller saw, for the leak check at the end. */
const seen: string[] = [];

beforeAll(async () => {
  mock = await startMockProvider(behaviors.json(200, text));
  app = await startApp({
    products: {
      "product-claude": {
        providers: {
          anthropic: { api_key: canaryKey, base_url: mock.url, models: [model, "claude-opus-5-5"] },
        },
        max_tokens: 64000,
      },
      "product-other": { providers: { echo: { models: ["echo-1"] } } },
    },
    hmac: { [hmacKey.keyId]: { secret: hmacKey.secret, products: ["product-claude"] } },
    env: { API_KEY_SERVER_MAX_TOKENS: "128000", API_KEY_SERVER_REQUEST_TIMEOUT_SECONDS: "2" },
  });
  token = await app.token({ claims: { products: ["product-claude"] } });
});
afterAll(async () => {
  await app.close();
  await mock.close();
  const all = seen.join("\n") + app.logs.text();
  for (const piece of [...canaryPieces, token]) expect(all).not.toContain(piece);
});

function sdk(options: Partial<ConstructorParameters<typeof Anthropic>[0]> = {}) {
  return new Anthropic({
    baseURL: `${app.url}/anthropic/product-claude`,
    apiKey: token,
    maxRetries: 0,
    ...options,
  });
}

async function failure(call: Promise<unknown>): Promise<APIError> {
  const err = await call.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(APIError);
  const api = err as APIError;
  seen.push(JSON.stringify(api.error), api.message, JSON.stringify([...(api.headers?.entries() ?? [])]));
  return api;
}

describe("Anthropic SDK against an Anthropic-backed product (native)", () => {
  it("messages.create: the body goes upstream byte for byte with the product's key and the caller's headers", async () => {
    mock.setBehavior(behaviors.json(200, text));
    const before = mock.requests.length;
    const { data, response } = await sdk()
      .messages.create(
        {
          model,
          max_tokens: 1024,
          system: [{ type: "text", text: "Be brief.", cache_control: { type: "ephemeral" } }],
          messages: [{ role: "user", content: "Hello, Claude" }],
        },
        { headers: { "anthropic-beta": "prompt-caching-2024-07-31,context-1m-2025-08-07" } },
      )
      .withResponse();
    expect(data).toEqual(text);
    expect(response.headers.get("request-id")).toMatch(/.+/);
    const got = mock.requests[before];
    expect(got?.path).toBe("/v1/messages");
    expect(got?.headers["x-api-key"]).toBe(canaryKey);
    expect(got?.headers["authorization"]).toBeUndefined();
    expect(got?.headers["anthropic-beta"]).toBe("prompt-caching-2024-07-31,context-1m-2025-08-07");
    expect(got?.headers["anthropic-version"]).toBe("2026-10-21");
    expect(JSON.stringify(got?.headers)).not.toContain(token);
    expect(got?.rawBody).toBe(
      JSON.stringify({
        model,
        max_tokens: 1024,
        system: [{ type: "text", text: "Be brief.", cache_control: { type: "ephemeral" } }],
        messages: [{ role: "user", content: "Hello, Claude" }],
      }),
    );
    const access = app.logs
      .records()
      .find((l) => l["protocol"] === "anthropic" && l["promptTokens"] !== undefined);
    const usage = text["usage"] as Json;
    expect(access).toMatchObject({
      product: "product-claude",
      model,
      promptTokens: usage["input_tokens"],
      completionTokens: usage["output_tokens"],
    });
  });

  it("messages.stream: events relayed one by one (ping included), the final message assembled", async () => {
    mock.setBehavior(behaviors.sseFrames(frames(streamEvents)));
    const before = mock.requests.length;
    const stream = sdk().messages.stream(
      { model, max_tokens: 512, messages: [{ role: "user", content: "Hello" }] },
      {
        query: { beta: "true" },
      },
    );
    const types: string[] = [];
    stream.on("streamEvent", (e) => types.push(e.type));
    const final = await stream.finalMessage();
    // The SDK does not surface pings; the raw stream below shows it relayed.
    expect(types).toEqual(streamEvents.map((e) => e["type"]).filter((t) => t !== "ping"));
    expect(final.content).toEqual([{ type: "text", text: "Hello!" }]);
    expect(mock.requests[before]?.path).toBe("/v1/messages?beta=true");
    expect((mock.requests[before]?.body as Json)["stream"]).toBe(true);
    const raw = await fetch(`${app.url}/anthropic/product-claude/v1/messages`, {
      method: "POST",
      headers: { authorization: `Bearer ${token}`, "content-type": "application/json" },
      body: JSON.stringify({
        model,
        max_tokens: 10,
        stream: true,
        messages: [{ role: "user", content: "Hi" }],
      }),
    });
    expect(raw.headers.get("content-type")).toBe("text/event-stream; charset=utf-8");
    expect(await raw.text()).toBe(frames(streamEvents).join(""));
  });

  it("a tool-use round trip: tool_use answered, tool_result sent back unchanged", async () => {
    mock.setBehavior(behaviors.sseFrames(frames(toolEvents)));
    const tools = [
      {
        name: "get_weather",
        description: "Weather",
        input_schema: { type: "object" as const, properties: { location: { type: "string" } } },
      },
    ];
    const first = await sdk()
      .messages.stream({
        model,
        max_tokens: 512,
        tools,
        messages: [{ role: "user", content: "Weather in SF?" }],
      })
      .finalMessage();
    const use = first.content.find((b) => b.type === "tool_use");
    expect(use).toBeDefined();
    mock.setBehavior(behaviors.json(200, text));
    const before = mock.requests.length;
    const messages: Anthropic.MessageParam[] = [
      { role: "user", content: "Weather in SF?" },
      { role: "assistant", content: first.content as Anthropic.ContentBlockParam[] },
      {
        role: "user",
        content: [
          { type: "tool_result", tool_use_id: use?.type === "tool_use" ? use.id : "", content: "15 C" },
        ],
      },
    ];
    const second = await sdk().messages.create({ model, max_tokens: 512, tools, messages });
    expect(second.content[0]).toEqual({ type: "text", text: "Hi! My name is Claude." });
    expect(mock.requests[before]?.body).toEqual({
      model,
      max_tokens: 512,
      tools,
      messages: JSON.parse(JSON.stringify(messages)) as unknown,
    });
  });

  it("countTokens is Anthropic's count, forwarded", async () => {
    mock.setBehavior(behaviors.json(200, { input_tokens: 42 }));
    const before = mock.requests.length;
    const { data, response } = await sdk()
      .messages.countTokens({ model, messages: [{ role: "user", content: "Hi" }] })
      .withResponse();
    expect(data).toEqual({ input_tokens: 42 });
    expect(response.headers.get("x-token-count")).toBe("provider");
    expect(mock.requests[before]?.path).toBe("/v1/messages/count_tokens");
    expect(mock.requests[before]?.headers["x-api-key"]).toBe(canaryKey);
  });

  it("models.list and models.retrieve: the product's models", async () => {
    const ids: string[] = [];
    for await (const m of sdk().models.list()) ids.push(m.id);
    expect(ids).toEqual([model, "claude-opus-5-5"]);
    expect((await sdk().models.retrieve(model)).id).toBe(model);
    const err = await failure(sdk().models.retrieve("gpt-4o"));
    expect(err).toBeInstanceOf(NotFoundError);
    expect(err.error).toEqual({
      type: "error",
      error: { type: "not_found_error", message: "Model not found" },
    });
  });

  it("x-api-key carries the JWT too (Claude Code with ANTHROPIC_API_KEY); both at once is 400", async () => {
    mock.setBehavior(behaviors.json(200, text));
    const viaApiKey = new Anthropic({
      baseURL: `${app.url}/anthropic/product-claude`,
      apiKey: null,
      defaultHeaders: { "x-api-key": token },
      maxRetries: 0,
    });
    const before = mock.requests.length;
    expect(
      (
        await viaApiKey.messages.create({
          model,
          max_tokens: 10,
          messages: [{ role: "user", content: "Hi" }],
        })
      ).id,
    ).toBe(text["id"]);
    expect(mock.requests[before]?.headers["x-api-key"]).toBe(canaryKey);
    const both = await failure(
      sdk({ defaultHeaders: { "x-api-key": token } }).messages.create({
        model,
        max_tokens: 10,
        messages: [{ role: "user", content: "Hi" }],
      }),
    );
    expect(both).toBeInstanceOf(BadRequestError);
    expect(both.error).toEqual({
      type: "error",
      error: {
        type: "invalid_request_error",
        message: "Ambiguous credentials (both an Authorization header and an x-api-key header are sent)",
      },
    });
  });

  it("HMAC works too: the SDK's fetch signs each request (path, beta query and body as sent); a bad signature is 401", async () => {
    mock.setBehavior(behaviors.sseFrames(frames(streamEvents)));
    let tamper = false;
    const signingFetch = hmacSigningFetch(hmacKey, () => tamper);
    const client = sdk({ apiKey: "unused", fetch: signingFetch });
    const before = mock.requests.length;
    const final = await client.messages
      .stream(
        { model, max_tokens: 10, messages: [{ role: "user", content: "Hi" }] },
        { query: { beta: "true" } },
      )
      .finalMessage();
    expect(final.content).toEqual([{ type: "text", text: "Hello!" }]);
    expect(mock.requests[before]?.headers["x-api-key-id"]).toBeUndefined();
    expect(mock.requests[before]?.headers["x-api-signature"]).toBeUndefined();
    tamper = true;
    const err = await failure(
      client.messages.create({ model, max_tokens: 10, messages: [{ role: "user", content: "Hi" }] }),
    );
    expect(err).toBeInstanceOf(AuthenticationError);
    expect(err.error).toEqual({
      type: "error",
      error: { type: "authentication_error", message: "Unauthorized" },
    });
  });

  it.each([
    [
      "no such model",
      { model: "gpt-4o" },
      BadRequestError,
      400,
      "invalid_request_error",
      "Model not supported",
    ],
    [
      "max_tokens over the cap",
      { max_tokens: 100_000, stream: true },
      BadRequestError,
      400,
      "invalid_request_error",
      "max_tokens exceeds the maximum of 64000 tokens",
    ],
  ] as const)("%s: %i", async (_name, change, type, status, errorType, message) => {
    const err = await failure(
      sdk().messages.create({
        model,
        max_tokens: 10,
        messages: [{ role: "user", content: "Hi" }],
        ...change,
      }),
    );
    expect(err).toBeInstanceOf(type);
    expect(err.status).toBe(status);
    expect(err.error).toMatchObject({ type: "error", error: { type: errorType, message } });
    expect(err.requestID).toMatch(/.+/);
  });

  it("authentication_error (401), permission_error (403), not_found_error for an unknown product (404)", async () => {
    const bad = await failure(
      sdk({ apiKey: "not-a-jwt" }).messages.create({
        model,
        max_tokens: 10,
        messages: [{ role: "user", content: "Hi" }],
      }),
    );
    expect(bad).toBeInstanceOf(AuthenticationError);
    expect(bad.error).toEqual({
      type: "error",
      error: { type: "authentication_error", message: "Unauthorized" },
    });
    const other = new Anthropic({
      baseURL: `${app.url}/anthropic/product-other`,
      apiKey: token,
      maxRetries: 0,
    });
    const forbidden = await failure(
      other.messages.create({ model: "echo-1", max_tokens: 10, messages: [{ role: "user", content: "Hi" }] }),
    );
    expect(forbidden).toBeInstanceOf(PermissionDeniedError);
    expect(forbidden.error).toEqual({
      type: "error",
      error: { type: "permission_error", message: "Forbidden" },
    });
    const none = new Anthropic({
      baseURL: `${app.url}/anthropic/no-such-product`,
      apiKey: token,
      maxRetries: 0,
    });
    const missing = await failure(
      none.messages.create({ model, max_tokens: 10, messages: [{ role: "user", content: "Hi" }] }),
    );
    expect(missing).toBeInstanceOf(NotFoundError);
    expect(missing.error).toEqual({
      type: "error",
      error: { type: "not_found_error", message: "Product not found" },
    });
  });

  it("provider errors in Anthropic's shape, key scrubbed: 400 passes the provider's message, 5xx api_error 502", async () => {
    mock.setBehavior(
      behaviors.json(400, {
        type: "error",
        error: { type: "invalid_request_error", message: `messages: bad role (key ${canaryKey})` },
      }),
    );
    const rejected = await failure(
      sdk().messages.create({ model, max_tokens: 10, messages: [{ role: "user", content: "Hi" }] }),
    );
    expect(rejected).toBeInstanceOf(BadRequestError);
    expect((rejected.error as Json)["error"]).toMatchObject({ type: "invalid_request_error" });
    expect(JSON.stringify(rejected.error)).toContain("messages: bad role");
    mock.setBehavior(
      behaviors.json(529, { type: "error", error: { type: "overloaded_error", message: "Overloaded" } }),
    );
    const overloaded = await failure(
      sdk().messages.create({ model, max_tokens: 10, messages: [{ role: "user", content: "Hi" }] }),
    );
    expect(overloaded).toBeInstanceOf(InternalServerError);
    expect(overloaded.status).toBe(502);
    expect(overloaded.error).toEqual({
      type: "error",
      error: { type: "api_error", message: "Upstream service error" },
    });
  });

  it("timeout: 504 overloaded_error", async () => {
    mock.setBehavior(behaviors.delay(5000, behaviors.json(200, text)));
    const err = await failure(
      sdk().messages.create({ model, max_tokens: 10, messages: [{ role: "user", content: "Hi" }] }),
    );
    expect(err.status).toBe(504);
    expect(err.error).toEqual({
      type: "error",
      error: { type: "overloaded_error", message: "Upstream timeout" },
    });
  });

  it("a 429 with retry-after: rate_limit_error, and the SDK retries after it and succeeds", async () => {
    mock.setBehavior(
      behaviors.choose((_req, index) =>
        index === mock.requests.length - 1 && retried++ === 0
          ? behaviors.json(
              429,
              { type: "error", error: { type: "rate_limit_error", message: "slow down" } },
              {
                "retry-after-ms": "50",
                "retry-after": "1",
              },
            )
          : behaviors.json(200, text),
      ),
    );
    let retried = 0;
    const once = await failure(
      sdk().messages.create({ model, max_tokens: 10, messages: [{ role: "user", content: "Hi" }] }),
    );
    expect(once).toBeInstanceOf(RateLimitError);
    expect(once.error).toEqual({
      type: "error",
      error: { type: "rate_limit_error", message: "Rate limit exceeded" },
    });
    expect(once.headers?.get("retry-after")).toBe("1");
    expect(once.headers?.get("retry-after-ms")).toBe("50");
    retried = 0;
    const before = mock.requests.length;
    const answer = await sdk({ maxRetries: 1 }).messages.create({
      model,
      max_tokens: 10,
      messages: [{ role: "user", content: "Hi" }],
    });
    expect(answer.id).toBe(text["id"]);
    expect(mock.requests.length - before).toBe(2);
  });

  it("Anthropic's own error event mid-stream ends the stream with our event: error, its text only in the log", async () => {
    const error = { type: "error", error: { type: "overloaded_error", message: `Overloaded ${canaryKey}` } };
    mock.setBehavior(behaviors.sseFrames([...frames(streamEvents.slice(0, 2)), ...frames([error])]));
    const res = await fetch(`${app.url}/anthropic/product-claude/v1/messages`, {
      method: "POST",
      headers: { authorization: `Bearer ${token}`, "content-type": "application/json" },
      body: JSON.stringify({
        model,
        max_tokens: 10,
        stream: true,
        messages: [{ role: "user", content: "Hi" }],
      }),
    });
    const text = await res.text();
    seen.push(text);
    expect(text).toBe(
      frames(streamEvents.slice(0, 2)).join("") +
        'event: error\ndata: {"type":"error","error":{"type":"api_error","message":"Upstream service error"}}\n\n',
    );
  });

  it("a stream that fails after it started ends with event: error", async () => {
    mock.setBehavior(behaviors.sseFrames(frames(streamEvents.slice(0, 3)), "reset"));
    const stream = sdk().messages.stream({
      model,
      max_tokens: 10,
      messages: [{ role: "user", content: "Hi" }],
    });
    const err = await stream.finalMessage().then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(APIError);
    expect((err as APIError).error).toEqual({
      type: "error",
      error: { type: "api_error", message: "Upstream service error" },
    });
  });

  it("a stream cut after its text is charged Anthropic's input count and the text relayed, estimated", async () => {
    // message_start (25 in, 1 out so far), the block start, a ping, "Hello" and "!", then the reset.
    mock.setBehavior(behaviors.sseFrames(frames(streamEvents.slice(0, 5)), "reset"));
    const mark = app.logs.lines.length;
    const stream = sdk().messages.stream({
      model,
      max_tokens: 10,
      messages: [{ role: "user", content: "Hi" }],
    });
    await stream.finalMessage().catch(() => undefined);
    const line = await vi.waitFor(() => {
      const found = app.logs
        .records()
        .slice(mark)
        .find((l) => l["protocol"] === "anthropic" && "httpRequest" in l);
      if (found === undefined) throw new Error("no access line yet");
      return found;
    });
    // "Hello!" is two o200k tokens, more than the 1 Anthropic had counted.
    expect(line).toMatchObject({
      product: "product-claude",
      promptTokens: 25,
      completionTokens: 2,
      totalTokens: 27,
      usageEstimated: true,
    });
  });
});
