import { createOpenAI } from "@ai-sdk/openai";
import { ChatOpenAI } from "@langchain/openai";
import { generateText, jsonSchema, stepCountIs, streamText, tool } from "ai";
import OpenAI from "openai";
import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { startApp, type AppHarness } from "../support/app-harness.js";
import { canaryKey, canaryPieces } from "../support/e2e-clients.js";
import {
  behaviors,
  defaultCompletion,
  startMockProvider,
  type Behavior,
  type MockProvider,
} from "../support/mock-provider.js";
import { fixture } from "../upstream/helpers.js";
import {
  providerFixture,
  wires,
  type StreamFixture,
  type UnaryFixture,
} from "../upstream/provider-fixtures.js";

// The clients that speak OpenAI's Responses API by default, unchanged, against `/openai/<product>/v1`:
// the Vercel AI SDK's default OpenAI provider (`createOpenAI({baseURL, apiKey})("model")`), LangChain's
// ChatOpenAI with `useResponsesApi: true`, and the official SDK against an Anthropic-backed and a
// Gemini-backed product (the mock speaking their wire formats; README, "Responses API").

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
      "product-dev": {
        providers: {
          openai: { api_key: canaryKey, base_url: `${mock.url}/v1`, models: ["gpt-4o-mini"] },
          echo: { models: ["echo-1"] },
        },
      },
      "p-anthropic": {
        max_tokens: 1024,
        providers: { anthropic: { api_key: canaryKey, base_url: mock.url, models: ["claude-sonnet-4-5"] } },
      },
      "p-azure": {
        providers: {
          azure: {
            kind: "azure-openai",
            api_key: canaryKey,
            base_url: mock.url,
            models: ["gpt-4o"],
            deployments: { "gpt-4o": "prod-gpt4o" },
          },
        },
      },
      "p-gemini": {
        max_tokens: 800,
        providers: {
          gemini: { api_key: canaryKey, base_url: `${mock.url}/v1beta`, models: ["gemini-2.5-flash"] },
        },
      },
    },
  });
  token = await app.token({ claims: { products: "*" } });
});
afterAll(async () => {
  // Every client called the Responses API, and every access line says so.
  const lines = app.logs.records().filter((r) => r["protocol"] === "openai");
  expect(lines).toHaveLength(23);
  for (const line of lines) {
    expect(line).toMatchObject({ surface: "responses", httpRequest: { requestMethod: "POST" } });
    expect((line["httpRequest"] as { requestUrl: string }).requestUrl).toMatch(/\/v1\/responses$/);
  }
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

const baseURL = (product: string) => `${app.url}/openai/${product}/v1`;

describe("Vercel AI SDK, default provider (the Responses API)", () => {
  const model = (id: string, product = "product-dev") =>
    createOpenAI({ baseURL: baseURL(product), apiKey: token })(id);

  it("generateText against echo", async () => {
    const result = await generateText({ model: model("echo-1"), prompt: "Hello from Vercel", maxRetries: 0 });
    seen.push(JSON.stringify(result.response.body ?? null));
    expect(result.text).toBe("Hello from Vercel");
    expect(result.finishReason).toBe("stop");
    expect(result.usage.outputTokens).toBeGreaterThan(0);
  });

  it("streamText against the mock: the text and the usage", async () => {
    mock.setBehavior(behaviors.sse(chunks));
    const result = streamText({ model: model("gpt-4o-mini"), prompt: "Say hello", maxRetries: 0 });
    let text = "";
    for await (const part of result.textStream) text += part;
    expect(text).toBe("Hello");
    expect(await result.finishReason).toBe("stop");
    expect(await result.usage).toMatchObject({ inputTokens: 9, outputTokens: 1, totalTokens: 10 });
    expect(mock.requests[0]?.path).toBe("/v1/chat/completions");
  });

  it("a tool call: the model calls the tool, the SDK runs it and sends its output back", async () => {
    mock.setBehavior(
      behaviors.choose((_, index) =>
        index === 0 ? behaviors.json(200, toolCalls) : behaviors.json(200, defaultCompletion),
      ),
    );
    const executed: unknown[] = [];
    const result = await generateText({
      model: model("gpt-4o-mini"),
      prompt: "Weather in Boston?",
      maxRetries: 0,
      stopWhen: stepCountIs(2),
      tools: {
        get_current_weather: tool({
          description: "The weather in a city",
          inputSchema: jsonSchema<{ location: string }>({
            type: "object",
            properties: { location: { type: "string" } },
            required: ["location"],
          }),
          execute: (input) => {
            executed.push(input);
            return Promise.resolve({ temperature: 21 });
          },
        }),
      },
    });
    expect(executed).toStrictEqual([{ location: "Boston, MA" }]);
    expect(result.text).toBe("Hello!");
    expect(mock.requests).toHaveLength(2);
    const second = mock.requests[1]?.body as { messages: Record<string, unknown>[] };
    expect(second.messages.at(-1)).toMatchObject({
      role: "tool",
      tool_call_id: "call_abc123",
      content: JSON.stringify({ temperature: 21 }),
    });
  });
});

describe("LangChain ChatOpenAI with useResponsesApi", () => {
  const chat = (model: string) =>
    new ChatOpenAI({
      model,
      apiKey: token,
      configuration: { baseURL: baseURL("product-dev") },
      useResponsesApi: true,
      maxRetries: 0,
    });

  it("invoke", async () => {
    const answer = await chat("echo-1").invoke("Hello from LangChain");
    expect(answer.text).toBe("Hello from LangChain");
    expect(answer).toHaveProperty("usage_metadata.output_tokens", expect.any(Number) as unknown);
  });

  it("stream", async () => {
    mock.setBehavior(behaviors.sse(chunks));
    let text = "";
    for await (const chunk of await chat("gpt-4o-mini").stream("Say hello")) text += chunk.text;
    expect(text).toBe("Hello");
    expect(mock.requests[0]?.body).toMatchObject({ stream: true, store: false });
  });

  it("a bound tool: the tool call comes back", async () => {
    mock.setBehavior(behaviors.json(200, toolCalls));
    const answer = await chat("gpt-4o-mini")
      .bindTools([
        {
          type: "function",
          function: {
            name: "get_current_weather",
            description: "The weather in a city",
            parameters: { type: "object", properties: { location: { type: "string" } } },
          },
        },
      ])
      .invoke("Weather in Boston?");
    expect(answer.tool_calls).toMatchObject([
      { name: "get_current_weather", args: { location: "Boston, MA" }, id: "call_abc123" },
    ]);
  });
});

/** A translating provider's fixtures as the mock serves them. */
interface ProviderCase {
  readonly kind: "anthropic" | "gemini" | "azure-openai";
  readonly product: string;
  readonly model: string;
}

const providerCases: ProviderCase[] = [
  { kind: "anthropic", product: "p-anthropic", model: "claude-sonnet-4-5" },
  { kind: "gemini", product: "p-gemini", model: "gemini-2.5-flash" },
  { kind: "azure-openai", product: "p-azure", model: "gpt-4o" },
];

/** How each provider's wire carries a tool result. */
const toolResultMark = {
  anthropic: "tool_result",
  gemini: "functionResponse",
  "azure-openai": '"role":"tool"',
};

function unary(kind: string, name: string): { behavior: Behavior; fixture: UnaryFixture } {
  const f = providerFixture<UnaryFixture>(kind, name);
  return { behavior: behaviors.json(200, f.provider_response), fixture: f };
}

function messageText(f: UnaryFixture): string {
  const choices = f.openai_response["choices"] as { message: { content: string | null } }[];
  return choices[0]?.message.content ?? "";
}

describe.each(providerCases)(
  "the official SDK against a $kind-backed product",
  ({ kind, product, model }) => {
    const sdk = () => new OpenAI({ baseURL: baseURL(product), apiKey: token, maxRetries: 0 });

    it("responses.create", async () => {
      const { behavior, fixture: f } = unary(kind, "text.json");
      mock.setBehavior(behavior);
      const response = await sdk().responses.create({ model, input: "Hello" });
      seen.push(JSON.stringify(response));
      expect(response.output_text).toBe(messageText(f));
      expect(response.status).toBe("completed");
      const usage = f.openai_response["usage"] as { prompt_tokens: number; completion_tokens: number };
      expect(response.usage).toMatchObject({
        input_tokens: usage.prompt_tokens,
        output_tokens: usage.completion_tokens,
      });
      expect(mock.requests[0]?.path).toBe(wires[kind].path(model, false));
    });

    it("responses.stream", async () => {
      const f = providerFixture<StreamFixture>(kind, "stream.json");
      mock.setBehavior(wires[kind].stream(f.provider_events));
      const stream = sdk().responses.stream({ model, input: "Hello" });
      const types: string[] = [];
      for await (const event of stream) types.push(event.type);
      const final = await stream.finalResponse();
      const expected = f.openai_chunks
        .map((c) => (c["choices"] as { delta: { content?: string } }[])[0]?.delta.content ?? "")
        .join("");
      expect(final.output_text).toBe(expected);
      expect(types[0]).toBe("response.created");
      expect(types.at(-1)).toBe("response.completed");
      expect(types).toContain("response.output_text.delta");
      expect(final.usage?.total_tokens).toBeGreaterThan(0);
      expect(mock.requests[0]?.path).toBe(wires[kind].path(model, true));
    });

    it("reasoning.effort: reasoning_effort where the provider takes it, else a 400 naming it", async () => {
      mock.setBehavior(unary(kind, "text.json").behavior);
      const outcome = await sdk()
        .responses.create({ model, input: "x", reasoning: { effort: "high" } })
        .then(
          (r) => r,
          (e: unknown) => e,
        );
      if (kind === "azure-openai") {
        expect(outcome).toMatchObject({ status: "completed", reasoning: { effort: "high" } });
        expect(mock.requests[0]?.body).toMatchObject({ reasoning_effort: "high", store: false });
        return;
      }
      expect(outcome).toBeInstanceOf(OpenAI.BadRequestError);
      const { error } = outcome as InstanceType<typeof OpenAI.BadRequestError>;
      expect(error).toMatchObject({
        message: `reasoning.effort: not supported by provider kind "${kind}"`,
        code: "invalid_argument",
        param: "reasoning.effort",
      });
      expect(mock.requests).toHaveLength(0);
    });

    it("a function-tool round trip", async () => {
      const call = unary(kind, "tool-call.json");
      const text = unary(kind, "text.json");
      mock.setBehavior(behaviors.choose((_, index) => (index === 0 ? call.behavior : text.behavior)));
      const client = sdk();
      const tools = [
        {
          type: "function" as const,
          name: "get_weather",
          description: "Get the current weather in a given location",
          parameters: {
            type: "object",
            properties: { location: { type: "string" } },
            required: ["location"],
          },
          strict: false,
        },
      ];
      const first = await client.responses.create({ model, input: "Weather?", tools });
      seen.push(JSON.stringify(first));
      const fc = first.output.find((o) => o.type === "function_call");
      if (fc?.type !== "function_call") throw new Error("no function call");
      expect(fc.name).toBe("get_weather");
      const second = await client.responses.create({
        model,
        input: [
          { role: "user", content: "Weather?" },
          ...(first.output as OpenAI.Responses.ResponseInputItem[]),
          { type: "function_call_output", call_id: fc.call_id, output: '{"temperature": 21}' },
        ],
        tools,
      });
      expect(second.output_text).toBe(messageText(text.fixture));
      // The provider got the tool result in its own wire format.
      expect(mock.requests[1]?.rawBody).toContain("temperature");
      expect(mock.requests[1]?.rawBody).toContain(toolResultMark[kind]);
    });
  },
);

describe("a streamed tool call from Anthropic", () => {
  it("text, then the function call's arguments as deltas, then response.completed", async () => {
    const f = providerFixture<StreamFixture>("anthropic", "stream-tool-call.json");
    mock.setBehavior(wires.anthropic.stream(f.provider_events));
    const stream = new OpenAI({
      baseURL: baseURL("p-anthropic"),
      apiKey: token,
      maxRetries: 0,
    }).responses.stream({
      model: "claude-sonnet-4-5",
      input: "Weather in San Francisco?",
      tools: [{ type: "function", name: "get_weather", parameters: { type: "object" }, strict: false }],
    });
    const types: string[] = [];
    for await (const event of stream) types.push(event.type);
    const final = await stream.finalResponse();
    seen.push(JSON.stringify(final));
    const calls = f.openai_chunks.flatMap(
      (c) =>
        (c["choices"] as { delta: { tool_calls?: { id?: string; function: { arguments: string } }[] } }[])[0]
          ?.delta.tool_calls ?? [],
    );
    expect(final.output).toMatchObject([
      { type: "message", content: [{ type: "output_text", text: "Okay, let's check the weather." }] },
      {
        type: "function_call",
        call_id: calls[0]?.id,
        name: "get_weather",
        arguments: calls.map((c) => c.function.arguments).join(""),
        status: "completed",
      },
    ]);
    expect(types.filter((t) => t === "response.output_item.done")).toHaveLength(2);
    expect(types).toContain("response.function_call_arguments.done");
    expect(types.at(-1)).toBe("response.completed");
  });
});
