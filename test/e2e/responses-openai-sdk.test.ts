import OpenAI, {
  APIError,
  APIUserAbortError,
  AuthenticationError,
  BadRequestError,
  NotFoundError,
  PermissionDeniedError,
  RateLimitError,
} from "openai";
import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { startApp, type AppHarness } from "../support/app-harness.js";
import { canaryPieces, e2eProducts } from "../support/e2e-clients.js";
import {
  behaviors,
  defaultCompletion,
  startMockProvider,
  toolArgumentChunks,
  type MockProvider,
} from "../support/mock-provider.js";
import { fixture } from "../upstream/helpers.js";
import { readmeSnippet, runSnippet } from "../support/readme-snippet.js";

// OpenAI's Responses API (`POST /openai/<product>/v1/responses`) with the official `openai` SDK unchanged:
// against the echo provider and the mock speaking OpenAI's chat completions behind `product-dev`'s OpenAI
// models (README, "Responses API"): every request becomes a chat request on the chat core.

const chunks = fixture<Record<string, unknown>[]>("chat-completion-chunks.json");
const toolCalls = fixture<Record<string, unknown>>("chat-completion-tool-calls.json");

let mock: MockProvider;
let app: AppHarness;
let token: string;
const seen: string[] = [];

beforeAll(async () => {
  mock = await startMockProvider();
  app = await startApp({
    products: {
      ...e2eProducts(mock.url, 64),
      "product-limited": {
        providers: { echo: { models: ["echo-1"] } },
        rate_limit: { requests_per_minute: 1 },
      },
    },
    env: { API_KEY_SERVER_MAX_TOKENS: "2048" },
  });
  token = await app.token({ claims: { products: ["product-dev", "product-capped", "product-limited"] } });
});
afterAll(async () => {
  for (const piece of canaryPieces) {
    expect(seen.join("\n")).not.toContain(piece);
    expect(app.logs.text()).not.toContain(piece);
  }
  await app.close();
  await mock.close();
});
beforeEach(() => {
  mock.setBehavior(behaviors.json(200, defaultCompletion));
  mock.requests.length = 0;
});

function sdk(product = "product-dev", apiKey = token): OpenAI {
  return new OpenAI({ baseURL: `${app.url}/openai/${product}/v1`, apiKey, maxRetries: 0 });
}

async function failure(call: Promise<unknown>): Promise<APIError> {
  const err = await call.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(APIError);
  const apiError = err as APIError;
  seen.push(JSON.stringify(apiError.error ?? null), apiError.message);
  return apiError;
}

/** The access lines of the Responses surface. */
function accessLines(): Record<string, unknown>[] {
  return app.logs.records().filter((r) => r["surface"] === "responses" && r["httpRequest"] !== undefined);
}

describe("responses.create", () => {
  it("answers a string input from the echo provider: output_text, status, usage, store false", async () => {
    const response = await sdk().responses.create({ model: "echo-1", input: "Hello there" });
    seen.push(JSON.stringify(response));
    expect(response.object).toBe("response");
    expect(response.id).toMatch(/^resp_[0-9a-f]{32}$/);
    expect(response.status).toBe("completed");
    expect(response).toHaveProperty("store", false);
    expect(response.output_text).toBe("Hello there");
    expect(response.output).toHaveLength(1);
    const [item] = response.output;
    expect(item).toMatchObject({ type: "message", role: "assistant", status: "completed" });
    expect(response.usage?.total_tokens).toBe(
      (response.usage?.input_tokens ?? 0) + (response.usage?.output_tokens ?? 0),
    );
    expect(response.usage?.output_tokens).toBeGreaterThan(0);
    expect(response.incomplete_details).toBeNull();
  });

  it("sends the provider a chat request built from every served field, store false", async () => {
    const response = await sdk().responses.create({
      model: "gpt-4o-mini",
      instructions: "Be brief.",
      input: [
        { role: "developer", content: "Answer in English." },
        {
          role: "user",
          content: [
            { type: "input_text", text: "What is in this image?" },
            { type: "input_image", image_url: "https://example.com/cat.png", detail: "low" },
          ],
        },
      ],
      max_output_tokens: 50,
      temperature: 0.5,
      top_p: 0.9,
      reasoning: { effort: "low" },
      metadata: { ticket: "T-1" },
      store: true,
      include: ["reasoning.encrypted_content"],
      text: {
        format: {
          type: "json_schema",
          name: "answer",
          schema: { type: "object", properties: { a: { type: "string" } }, required: ["a"] },
          strict: true,
        },
      },
    });
    seen.push(JSON.stringify(response));
    expect(mock.requests).toHaveLength(1);
    expect(mock.requests[0]?.path).toBe("/v1/chat/completions");
    expect(mock.requests[0]?.body).toStrictEqual({
      model: "gpt-4o-mini",
      messages: [
        { role: "system", content: "Be brief." },
        { role: "system", content: "Answer in English." },
        {
          role: "user",
          content: [
            { type: "text", text: "What is in this image?" },
            { type: "image_url", image_url: { url: "https://example.com/cat.png", detail: "low" } },
          ],
        },
      ],
      max_completion_tokens: 50,
      temperature: 0.5,
      top_p: 0.9,
      reasoning_effort: "low",
      response_format: {
        type: "json_schema",
        json_schema: {
          name: "answer",
          schema: { type: "object", properties: { a: { type: "string" } }, required: ["a"] },
          strict: true,
        },
      },
      store: false,
    });
    // The response repeats the request as OpenAI's does, and says it was not stored.
    expect(response).toMatchObject({
      instructions: "Be brief.",
      max_output_tokens: 50,
      metadata: { ticket: "T-1" },
      model: "gpt-4o-mini",
      reasoning: { effort: "low" },
      store: false,
      temperature: 0.5,
      top_p: 0.9,
      text: { format: { type: "json_schema", name: "answer", strict: true } },
      output_text: "Hello!",
      usage: {
        input_tokens: 9,
        input_tokens_details: { cached_tokens: 0 },
        output_tokens: 2,
        output_tokens_details: { reasoning_tokens: 0 },
        total_tokens: 11,
      },
    });
    expect(accessLines().at(-1)).toMatchObject({
      surface: "responses",
      protocol: "openai",
      product: "product-dev",
      model: "gpt-4o-mini",
      totalTokens: 11,
    });
  });

  it("a length stop is status incomplete with incomplete_details max_output_tokens", async () => {
    const cut = structuredClone(defaultCompletion);
    cut.choices[0]!.finish_reason = "length";
    mock.setBehavior(behaviors.json(200, cut));
    const response = await sdk().responses.create({ model: "gpt-4o", input: "Hi", max_output_tokens: 2 });
    expect(response.status).toBe("incomplete");
    expect(response.incomplete_details).toStrictEqual({ reason: "max_output_tokens" });
  });

  it("a function tool round trip: function_call out, function_call_output back", async () => {
    mock.setBehavior(behaviors.json(200, toolCalls));
    const client = sdk();
    const tools = [
      {
        type: "function" as const,
        name: "get_current_weather",
        description: "The weather in a city",
        parameters: { type: "object", properties: { location: { type: "string" } }, required: ["location"] },
        strict: false,
      },
    ];
    const first = await client.responses.create({
      model: "gpt-4o-mini",
      input: "Weather in Boston?",
      tools,
      tool_choice: "auto",
      parallel_tool_calls: false,
    });
    seen.push(JSON.stringify(first));
    const call = first.output.find((o) => o.type === "function_call");
    expect(call).toMatchObject({
      type: "function_call",
      call_id: "call_abc123",
      name: "get_current_weather",
      arguments: '{\n"location": "Boston, MA"\n}',
      status: "completed",
    });
    expect(mock.requests[0]?.body).toMatchObject({
      tools: [
        {
          type: "function",
          function: {
            name: "get_current_weather",
            description: "The weather in a city",
            parameters: tools[0]?.parameters,
            strict: false,
          },
        },
      ],
      tool_choice: "auto",
      parallel_tool_calls: false,
    });

    mock.setBehavior(behaviors.json(200, defaultCompletion));
    if (call?.type !== "function_call") throw new Error("no function call");
    const second = await client.responses.create({
      model: "gpt-4o-mini",
      input: [
        { role: "user", content: "Weather in Boston?" },
        call,
        { type: "function_call_output", call_id: call.call_id, output: '{"temp": 21}' },
      ],
      tools,
    });
    expect(second.output_text).toBe("Hello!");
    expect(mock.requests[1]?.body).toMatchObject({
      messages: [
        { role: "user", content: "Weather in Boston?" },
        {
          role: "assistant",
          tool_calls: [
            {
              id: "call_abc123",
              type: "function",
              function: { name: "get_current_weather", arguments: '{\n"location": "Boston, MA"\n}' },
            },
          ],
        },
        { role: "tool", tool_call_id: "call_abc123", content: '{"temp": 21}' },
      ],
    });
  });
});

describe("responses.stream", () => {
  it("streams the named events with sequence numbers and the usage on response.completed", async () => {
    mock.setBehavior(behaviors.sse(chunks));
    const stream = sdk().responses.stream({ model: "gpt-4o-mini", input: "Say hello" });
    const events: { type: string; sequence_number: number }[] = [];
    let text = "";
    stream.on("response.output_text.delta", (e) => {
      text += e.delta;
    });
    for await (const event of stream) events.push(event);
    const final = await stream.finalResponse();
    seen.push(JSON.stringify(events));
    expect(events.map((e) => e.type)).toStrictEqual([
      "response.created",
      "response.in_progress",
      "response.output_item.added",
      "response.content_part.added",
      "response.output_text.delta",
      "response.output_text.done",
      "response.content_part.done",
      "response.output_item.done",
      "response.completed",
    ]);
    expect(events.map((e) => e.sequence_number)).toStrictEqual(events.map((_, i) => i));
    expect(text).toBe("Hello");
    expect(final.output_text).toBe("Hello");
    expect(final.status).toBe("completed");
    expect(final.usage).toMatchObject({ input_tokens: 9, output_tokens: 1, total_tokens: 10 });
    // The server asked for the usage itself, and never for storage.
    expect(mock.requests[0]?.body).toMatchObject({
      stream: true,
      stream_options: { include_usage: true },
      store: false,
    });
  });

  it("streams a function call: arguments deltas and done", async () => {
    const base = { id: "c1", object: "chat.completion.chunk", created: 1, model: "gpt-4o-mini" };
    mock.setBehavior(
      behaviors.sse([
        {
          ...base,
          choices: [
            {
              index: 0,
              delta: {
                role: "assistant",
                tool_calls: [
                  { index: 0, id: "call_1", type: "function", function: { name: "f", arguments: "" } },
                ],
              },
              finish_reason: null,
            },
          ],
        },
        ...toolArgumentChunks(base),
      ]),
    );
    const stream = sdk().responses.stream({
      model: "gpt-4o-mini",
      input: "Call f",
      tools: [{ type: "function", name: "f", parameters: { type: "object" }, strict: false }],
    });
    const types: string[] = [];
    for await (const event of stream) types.push(event.type);
    const final = await stream.finalResponse();
    expect(types).toStrictEqual([
      "response.created",
      "response.in_progress",
      "response.output_item.added",
      "response.function_call_arguments.delta",
      "response.function_call_arguments.delta",
      "response.function_call_arguments.done",
      "response.output_item.done",
      "response.completed",
    ]);
    expect(final.output).toMatchObject([
      { type: "function_call", call_id: "call_1", name: "f", arguments: '{"a":1}', status: "completed" },
    ]);
  });

  it("a provider failure mid-stream ends with an error event, never a silent end", async () => {
    mock.setBehavior(behaviors.sse(chunks.slice(0, 2), "reset"));
    const stream = sdk().responses.stream({ model: "gpt-4o-mini", input: "Say hello" });
    const types: string[] = [];
    const err = await failure(
      (async () => {
        for await (const event of stream) types.push(event.type);
      })(),
    );
    expect(types.slice(0, 2)).toStrictEqual(["response.created", "response.in_progress"]);
    expect(types).not.toContain("response.completed");
    expect(err.message).toContain("Upstream service error");
  });

  it("a length stop ends with response.incomplete; the access line has the stream's usage", async () => {
    const events: { type: string; response?: { status?: string; incomplete_details: unknown } }[] = [];
    const stream = await sdk().responses.create({
      model: "echo-1",
      input: "one two three four five six seven eight nine ten eleven twelve",
      max_output_tokens: 2,
      stream: true,
    });
    for await (const event of stream) events.push(event);
    const last = events.at(-1);
    expect(last?.type).toBe("response.incomplete");
    expect(last?.response).toMatchObject({
      status: "incomplete",
      incomplete_details: { reason: "max_output_tokens" },
    });
    const line = accessLines().at(-1);
    expect(line).toMatchObject({
      rpc: "apikeyserver.v1.ChatService/StreamChatCompletion",
      surface: "responses",
      model: "echo-1",
      httpRequest: { status: 200 },
    });
    expect(line?.["totalTokens"]).toBeGreaterThan(0);
  });

  it("an abort from the SDK's AbortController mid-stream reaches the provider", async () => {
    mock.setBehavior(behaviors.sse(chunks.slice(0, 2), "stall"));
    const abortedBefore = mock.aborted;
    const controller = new AbortController();
    const stream = await sdk().responses.create(
      { model: "gpt-4o-mini", input: "Say hello", stream: true },
      { signal: controller.signal },
    );
    const received: string[] = [];
    const reading = (async () => {
      for await (const event of stream) {
        received.push(event.type);
        if (event.type === "response.output_text.delta") controller.abort();
      }
    })().catch((e: unknown) => e);
    await mock.whenAborted(abortedBefore + 1);
    expect(mock.aborted).toBe(abortedBefore + 1);
    expect(received).not.toContain("response.completed");
    const outcome = await reading;
    expect(outcome === undefined || outcome instanceof APIUserAbortError).toBe(true);
  });

  it("the raw stream: event lines, no [DONE]", async () => {
    const res = await fetch(`${app.url}/openai/product-dev/v1/responses`, {
      method: "POST",
      headers: { authorization: `Bearer ${token}`, "content-type": "application/json" },
      body: JSON.stringify({ model: "echo-1", input: "one two", stream: true }),
    });
    expect(res.status).toBe(200);
    expect(res.headers.get("content-type")).toBe("text/event-stream; charset=utf-8");
    const text = await res.text();
    seen.push(text);
    expect(text).not.toContain("[DONE]");
    const frames = text.trim().split("\n\n");
    for (const [i, frame] of frames.entries()) {
      const [eventLine, dataLine] = frame.split("\n");
      const data = JSON.parse(dataLine!.slice("data: ".length)) as { type: string; sequence_number: number };
      expect(eventLine).toBe(`event: ${data.type}`);
      expect(data.sequence_number).toBe(i);
    }
    expect(frames.at(-1)).toContain("event: response.completed");
  });
});

describe("errors in OpenAI's shape", () => {
  it.each([
    ["an unknown field", { model: "echo-1", input: "x", background: true }, "background"],
    [
      "a tool type not served",
      { model: "echo-1", input: "x", tools: [{ type: "web_search" }] },
      "tools[0].type",
    ],
    [
      "an include not served",
      { model: "echo-1", input: "x", include: ["file_search_call.results"] },
      "include[0]",
    ],
    [
      "a content part not served",
      { model: "echo-1", input: [{ role: "user", content: [{ type: "input_file", file_id: "f" }] }] },
      "input[0].content[0].type",
    ],
    ["no input", { model: "echo-1" }, "input"],
    ["truncation auto", { model: "echo-1", input: "x", truncation: "auto" }, "truncation"],
  ])("%s → 400 naming it", async (_, body, param) => {
    const err = await failure(sdk().responses.create(body as never));
    expect(err).toBeInstanceOf(BadRequestError);
    expect(err.param).toBe(param);
    expect(err.code).toBe("invalid_argument");
    expect(err.message).toContain(param);
  });

  it("previous_response_id → 400 saying to send the whole conversation", async () => {
    const err = await failure(
      sdk().responses.create({ model: "echo-1", input: "x", previous_response_id: "resp_123" }),
    );
    expect(err).toBeInstanceOf(BadRequestError);
    expect(err.param).toBe("previous_response_id");
    expect((err.error as { message: string }).message).toBe(
      "previous_response_id: not supported: this server stores no responses; send the whole conversation in input",
    );
  });

  it.each([
    ["retrieve", (c: OpenAI) => c.responses.retrieve("resp_123")],
    ["delete", (c: OpenAI) => c.responses.delete("resp_123")],
    ["cancel", (c: OpenAI) => c.responses.cancel("resp_123")],
    ["input items", (c: OpenAI) => c.responses.inputItems.list("resp_123")],
  ])(
    "%s of a stored response → 404 Response not found, hint to send the whole conversation",
    async (_, call) => {
      const err = await failure(call(sdk()));
      expect(accessLines().at(-1)).toMatchObject({ surface: "responses", httpRequest: { status: 404 } });
      expect(err).toBeInstanceOf(NotFoundError);
      expect(err.error).toStrictEqual({
        message: "Response not found",
        type: "invalid_request_error",
        param: null,
        code: "response_not_found",
        details: [
          {
            "@type": "type.googleapis.com/google.rpc.ErrorInfo",
            reason: "response_not_found",
            domain: "api-key-server",
            metadata: {
              hint: "responses are not stored: send the whole conversation in input on each request",
            },
          },
        ],
      });
    },
  );

  it("max_output_tokens over the cap → 400 naming max_output_tokens", async () => {
    const err = await failure(
      sdk("product-capped").responses.create({ model: "gpt-4o", input: "x", max_output_tokens: 65 }),
    );
    expect(err).toBeInstanceOf(BadRequestError);
    expect(err.param).toBe("max_output_tokens");
    expect((err.error as { message: string }).message).toBe(
      "max_output_tokens exceeds the maximum of 64 tokens",
    );
  });

  it("a product the caller may not use → 403 Forbidden; an unknown one → 404 Product not found", async () => {
    const forbidden = await failure(sdk("product-other").responses.create({ model: "echo-1", input: "x" }));
    expect(forbidden).toBeInstanceOf(PermissionDeniedError);
    expect((forbidden.error as { message: string }).message).toBe("Forbidden");
    const unknown = await failure(sdk("product-nope").responses.create({ model: "echo-1", input: "x" }));
    expect(unknown).toBeInstanceOf(NotFoundError);
    expect((unknown.error as { message: string; code: string }).code).toBe("product_not_found");
  });

  it("GET …/responses → 405 with Allow: POST", async () => {
    const res = await fetch(`${app.url}/openai/product-dev/v1/responses`, {
      headers: { authorization: `Bearer ${token}` },
    });
    expect(res.status).toBe(405);
    expect(res.headers.get("allow")).toBe("POST");
    expect(((await res.json()) as { error: { code: string } }).error.code).toBe("method_not_allowed");
  });

  it("a model the product does not list → 400 Model not supported", async () => {
    const err = await failure(sdk().responses.create({ model: "gpt-5", input: "x" }));
    expect(err).toBeInstanceOf(BadRequestError);
    expect((err.error as { message: string }).message).toBe("Model not supported");
    expect(err.param).toBe("model");
  });

  it("a bad token → 401 Unauthorized, unary and streaming", async () => {
    const unary = await failure(
      sdk("product-dev", "not-a-jwt").responses.create({ model: "echo-1", input: "x" }),
    );
    expect(unary).toBeInstanceOf(AuthenticationError);
    expect((unary.error as { message: string }).message).toBe("Unauthorized");
    const streamed = await failure(
      sdk("product-dev", "not-a-jwt").responses.create({ model: "echo-1", input: "x", stream: true }),
    );
    expect(streamed).toBeInstanceOf(AuthenticationError);
  });

  it("the rate limit → 429 Rate limit exceeded with retry-after", async () => {
    const client = sdk("product-limited");
    await client.responses.create({ model: "echo-1", input: "x" });
    const err = await failure(client.responses.create({ model: "echo-1", input: "x", stream: true }));
    expect(err).toBeInstanceOf(RateLimitError);
    expect((err.error as { message: string }).message).toBe("Rate limit exceeded");
    expect(err.headers?.get("retry-after")).toMatch(/^\d+$/);
  });

  it("a provider 5xx → 502 Upstream service error, no key in the answer", async () => {
    mock.setBehavior(
      behaviors.json(500, { error: { message: "boom sk-canary-7fJ2mQ9xLw4RtYb8NvKp3ZQzX7" } }),
    );
    const err = await failure(sdk().responses.create({ model: "gpt-4o", input: "x" }));
    expect(err.status).toBe(502);
    expect((err.error as { message: string }).message).toBe("Upstream service error");
  });
});

describe("README", () => {
  it("the Responses API's Node snippet works verbatim (only the port differs) against echo", async () => {
    const snippet = await readmeSnippet("### Responses API");
    expect(snippet).toContain('baseURL: "http://localhost:8000/openai/product-dev/v1"');
    expect(snippet).toContain("client.responses.create(");
    expect(snippet).toContain("client.responses.stream(");
    expect(await runSnippet(snippet, app.url, { TOKEN: token })).toBe("Hello\nHello again\n");
  });
});
