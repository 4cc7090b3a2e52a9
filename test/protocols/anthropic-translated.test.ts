import { readFileSync } from "node:fs";
import Anthropic, { BadRequestError, type APIError } from "@anthropic-ai/sdk";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startApp, type AppHarness } from "../support/app-harness.js";
import { canaryKey, canaryPieces } from "../support/e2e-clients.js";
import {
  behaviors,
  defaultCompletion,
  startMockProvider,
  toolArgumentChunks,
  type MockProvider,
} from "../support/mock-provider.js";
import { fixture } from "../upstream/helpers.js";
import { readmeSnippet, runSnippet } from "../support/readme-snippet.js";

// The official @anthropic-ai/sdk, unchanged, against products served by other providers (README,
// "Anthropic Messages API", translation rules): the Messages request goes through the chat core as an
// OpenAI chat body, and the provider's answer comes back as a Message or as Anthropic's event sequence.

type Json = Record<string, unknown>;
const chunks = fixture<Json[]>("chat-completion-chunks.json");
const toolCalls = fixture<Json>("chat-completion-tool-calls.json");
const gemini = (name: string): Json =>
  JSON.parse(readFileSync(new URL(`../fixtures/gemini/${name}`, import.meta.url), "utf8")) as Json;
const geminiText = gemini("text.json")["provider_response"] as Json;
const geminiEvents = gemini("stream.json")["provider_events"] as Json[];

let mock: MockProvider;
let app: AppHarness;
let token: string;
const seen: string[] = [];

beforeAll(async () => {
  mock = await startMockProvider();
  app = await startApp({
    products: {
      "product-openai": {
        providers: { openai: { api_key: canaryKey, base_url: `${mock.url}/v1`, models: ["gpt-4o-mini"] } },
      },
      "product-gemini": {
        providers: { gemini: { api_key: canaryKey, base_url: mock.url, models: ["gemini-2.5-flash"] } },
      },
      "product-echo": { providers: { echo: { models: ["echo-1"] } } },
      // The README snippet's product.
      "product-dev": { providers: { echo: { models: ["echo-1"] } } },
    },
  });
  token = await app.token({
    claims: { products: ["product-openai", "product-gemini", "product-echo", "product-dev"] },
  });
});
afterAll(async () => {
  await app.close();
  await mock.close();
  const all = seen.join("\n") + app.logs.text();
  for (const piece of [...canaryPieces, token]) expect(all).not.toContain(piece);
});

function sdk(product: string) {
  return new Anthropic({ baseURL: `${app.url}/anthropic/${product}`, apiKey: token, maxRetries: 0 });
}

const hello: Anthropic.MessageParam[] = [{ role: "user", content: "Hello" }];

describe("Anthropic SDK against an OpenAI-backed product (translated)", () => {
  it("messages.create: system, blocks and options translated; the answer is a Message", async () => {
    mock.setBehavior(behaviors.json(200, defaultCompletion));
    const before = mock.requests.length;
    // temperature, top_p and top_k are not in this SDK's types any more; the API still takes them.
    const message = await sdk("product-openai").messages.create({
      model: "gpt-4o-mini",
      max_tokens: 100,
      system: [{ type: "text", text: "Be brief.", cache_control: { type: "ephemeral" } }],
      temperature: 0.5,
      top_p: 0.9,
      top_k: 5,
      stop_sequences: ["END"],
      metadata: { user_id: "user-1" },
      thinking: { type: "enabled", budget_tokens: 1024 },
      messages: [
        { role: "user", content: [{ type: "text", text: "Hi", cache_control: { type: "ephemeral" } }] },
        {
          role: "assistant",
          content: [
            { type: "thinking", thinking: "hm", signature: "s" },
            { type: "text", text: "Hello" },
          ],
        },
        {
          role: "user",
          content: [
            { type: "text", text: "Look" },
            { type: "image", source: { type: "base64", media_type: "image/png", data: "iVBORw0KGgo=" } },
          ],
        },
      ],
    } as unknown as Anthropic.MessageCreateParamsNonStreaming);
    expect(message).toEqual({
      id: "msg_chatcmpl-mock",
      type: "message",
      role: "assistant",
      model: "gpt-4o-mini",
      content: [{ type: "text", text: "Hello!" }],
      stop_reason: "end_turn",
      stop_sequence: null,
      usage: { input_tokens: 9, output_tokens: 2 },
    });
    expect(mock.requests[before]?.body).toEqual({
      model: "gpt-4o-mini",
      messages: [
        { role: "system", content: "Be brief." },
        { role: "user", content: [{ type: "text", text: "Hi" }] },
        { role: "assistant", content: "Hello" },
        {
          role: "user",
          content: [
            { type: "text", text: "Look" },
            { type: "image_url", image_url: { url: "data:image/png;base64,iVBORw0KGgo=" } },
          ],
        },
      ],
      max_tokens: 100,
      temperature: 0.5,
      top_p: 0.9,
      stop: ["END"],
      user: "user-1",
    });
    expect(mock.requests[before]?.headers["authorization"]).toBe(`Bearer ${canaryKey}`);
  });

  it("messages.stream: Anthropic's event sequence, text and usage", async () => {
    mock.setBehavior(behaviors.sse(chunks));
    const stream = sdk("product-openai").messages.stream({
      model: "gpt-4o-mini",
      max_tokens: 100,
      messages: hello,
    });
    const types: string[] = [];
    let startInput: number | undefined;
    stream.on("streamEvent", (e) => {
      types.push(e.type);
      if (e.type === "message_start") startInput = e.message.usage.input_tokens;
    });
    const final = await stream.finalMessage();
    // message_start carries the server's estimate of the input (the provider counts only at the end: 9,
    // in message_delta); never 0, which clients that track their context would read as an empty prompt.
    expect(startInput).toBeGreaterThan(0);
    expect(types).toEqual([
      "message_start",
      "content_block_start",
      "content_block_delta",
      "content_block_stop",
      "message_delta",
      "message_stop",
    ]);
    expect(final.content).toEqual([{ type: "text", text: "Hello" }]);
    expect(final.stop_reason).toBe("end_turn");
    expect(final.usage).toMatchObject({ input_tokens: 9, output_tokens: 1 });
    const sent = mock.requests.at(-1)?.body as Json;
    expect(sent["stream"]).toBe(true);
  });

  it("a tool-use round trip: tool_calls become tool_use, tool_result goes back as a tool message", async () => {
    mock.setBehavior(behaviors.json(200, toolCalls));
    const tools: Anthropic.Tool[] = [
      {
        name: "get_current_weather",
        description: "Weather",
        input_schema: { type: "object", properties: { location: { type: "string" } } },
      },
      { type: "web_search_20250305", name: "web_search" } as unknown as Anthropic.Tool,
    ];
    const first = await sdk("product-openai").messages.create({
      model: "gpt-4o-mini",
      max_tokens: 100,
      tools,
      tool_choice: { type: "auto", disable_parallel_tool_use: true },
      messages: [{ role: "user", content: "Weather in Boston?" }],
    });
    expect(first.stop_reason).toBe("tool_use");
    expect(first.content).toEqual([
      { type: "tool_use", id: "call_abc123", name: "get_current_weather", input: { location: "Boston, MA" } },
    ]);
    // The server tool is dropped; the custom one is a function.
    expect((mock.requests.at(-1)?.body as Json)["tools"]).toEqual([
      {
        type: "function",
        function: {
          name: "get_current_weather",
          description: "Weather",
          parameters: { type: "object", properties: { location: { type: "string" } } },
        },
      },
    ]);
    expect((mock.requests.at(-1)?.body as Json)["tool_choice"]).toBe("auto");
    expect((mock.requests.at(-1)?.body as Json)["parallel_tool_calls"]).toBe(false);
    mock.setBehavior(behaviors.json(200, defaultCompletion));
    await sdk("product-openai").messages.create({
      model: "gpt-4o-mini",
      max_tokens: 100,
      tools,
      messages: [
        { role: "user", content: "Weather in Boston?" },
        { role: "assistant", content: first.content as Anthropic.ContentBlockParam[] },
        { role: "user", content: [{ type: "tool_result", tool_use_id: "call_abc123", content: "15 C" }] },
      ],
    });
    expect((mock.requests.at(-1)?.body as Json)["messages"]).toEqual([
      { role: "user", content: "Weather in Boston?" },
      {
        role: "assistant",
        content: null,
        tool_calls: [
          {
            id: "call_abc123",
            type: "function",
            function: { name: "get_current_weather", arguments: '{"location":"Boston, MA"}' },
          },
        ],
      },
      { role: "tool", tool_call_id: "call_abc123", content: "15 C" },
    ]);
  });

  it("a streamed tool call: content_block_start tool_use and input_json_delta", async () => {
    const base = { id: "chatcmpl-t", object: "chat.completion.chunk", created: 1, model: "gpt-4o-mini" };
    mock.setBehavior(
      behaviors.sse([
        {
          ...base,
          choices: [{ index: 0, delta: { role: "assistant", content: null }, finish_reason: null }],
        },
        {
          ...base,
          choices: [
            {
              index: 0,
              delta: {
                tool_calls: [
                  { index: 0, id: "call_1", type: "function", function: { name: "f", arguments: "" } },
                ],
              },
              finish_reason: null,
            },
          ],
        },
        ...toolArgumentChunks(base),
        { ...base, choices: [], usage: { prompt_tokens: 5, completion_tokens: 3, total_tokens: 8 } },
      ]),
    );
    const final = await sdk("product-openai")
      .messages.stream({
        model: "gpt-4o-mini",
        max_tokens: 100,
        tools: [{ name: "f", input_schema: { type: "object" } }],
        messages: hello,
      })
      .finalMessage();
    expect(final.content).toEqual([{ type: "tool_use", id: "call_1", name: "f", input: { a: 1 } }]);
    expect(final.stop_reason).toBe("tool_use");
    expect(final.usage).toMatchObject({ input_tokens: 5, output_tokens: 3 });
  });

  it("countTokens: an estimate, said so in a header", async () => {
    const before = mock.requests.length;
    const { data, response } = await sdk("product-openai")
      .messages.countTokens({
        model: "gpt-4o-mini",
        messages: [{ role: "user", content: "Hello there, how are you?" }],
      })
      .withResponse();
    expect(data.input_tokens).toBeGreaterThan(5);
    expect(response.headers.get("x-token-count")).toBe("estimate");
    expect(mock.requests.length).toBe(before);
  });

  it("what cannot be translated is refused with 400 naming the block, never a 500", async () => {
    const err = await sdk("product-openai")
      .messages.create({
        model: "gpt-4o-mini",
        max_tokens: 100,
        messages: [
          {
            role: "user",
            content: [{ type: "document", source: { type: "text", media_type: "text/plain", data: "x" } }],
          },
        ],
      })
      .then(
        () => undefined,
        (e: unknown) => e,
      );
    expect(err).toBeInstanceOf(BadRequestError);
    seen.push(JSON.stringify((err as APIError).error));
    expect((err as APIError).error).toEqual({
      type: "error",
      error: {
        type: "invalid_request_error",
        message: 'messages[0].content[0].type: "document" cannot be sent to this provider',
      },
    });
  });

  it("a provider stream cut after it started ends with event: error", async () => {
    mock.setBehavior(behaviors.sse(chunks.slice(0, 2), "reset"));
    const err = await sdk("product-openai")
      .messages.stream({ model: "gpt-4o-mini", max_tokens: 100, messages: hello })
      .finalMessage()
      .then(
        () => undefined,
        (e: unknown) => e,
      );
    expect((err as APIError).error).toEqual({
      type: "error",
      error: { type: "api_error", message: "Upstream service error" },
    });
  });
});

describe("Anthropic SDK against Gemini- and echo-backed products (translated)", () => {
  it("Gemini: messages.create and messages.stream", async () => {
    mock.setBehavior(behaviors.json(200, geminiText));
    const message = await sdk("product-gemini").messages.create({
      model: "gemini-2.5-flash",
      max_tokens: 100,
      system: "You are a cat.",
      messages: hello,
    });
    expect(message.content).toEqual([{ type: "text", text: "Meow! Hello there, human." }]);
    expect(mock.requests.at(-1)?.path).toContain("gemini-2.5-flash:generateContent");
    mock.setBehavior(behaviors.sse(geminiEvents, "truncate"));
    const final = await sdk("product-gemini")
      .messages.stream({ model: "gemini-2.5-flash", max_tokens: 100, messages: hello })
      .finalMessage();
    expect(final.content).toEqual([
      { type: "text", text: "Autumn moonlight—\na worm digs silently\ninto the chestnut." },
    ]);
    expect(final.stop_reason).toBe("end_turn");
  });

  it("echo: a plain turn, unary and streamed", async () => {
    const message = await sdk("product-echo").messages.create({
      model: "echo-1",
      max_tokens: 100,
      messages: hello,
    });
    expect(message.content[0]?.type).toBe("text");
    const final = await sdk("product-echo")
      .messages.stream({ model: "echo-1", max_tokens: 100, messages: hello })
      .finalMessage();
    expect(final.content[0]?.type).toBe("text");
    expect(final.usage.output_tokens).toBeGreaterThan(0);
  });
});

describe("README", () => {
  it("the Anthropic Messages API's Node snippet works verbatim (only the port differs) against echo", async () => {
    const snippet = await readmeSnippet("## Anthropic Messages API");
    expect(snippet).toContain('baseURL: "http://localhost:8000/anthropic/product-dev"');
    expect(snippet).toContain("client.messages.create(");
    // One line added to show what the snippet got.
    const shown = `${snippet}\nconsole.log(JSON.stringify([message.type, message.model, message.content]));\n`;
    const stdout = await runSnippet(shown, app.url, { TOKEN: token });
    expect(JSON.parse(stdout)).toEqual(["message", "echo-1", [{ type: "text", text: "Hello" }]]);
  });
});
