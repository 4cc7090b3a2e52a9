import { create } from "@bufbuild/protobuf";
import { describe, expect, it } from "vitest";
import {
  ChatCompletionChunkSchema,
  ChatCompletionRequestSchema,
  ChatCompletionSchema,
  ModelSchema,
} from "../../gen/apikeyserver/v1/chat_pb.js";
import { BookSchema } from "../../gen/testing/transcode/v1/transcode_pb.js";
import { AppError } from "../../src/errors/index.js";
import { fromRestJson, toRestJson } from "../../src/http/index.js";

const toolCallCompletion = create(ChatCompletionSchema, {
  id: "chatcmpl-B9MBs8CjcvOU2jLn4n570S5qMJKcT",
  object: "chat.completion",
  created: 1741569952n,
  model: "gpt-4o-2024-08-06",
  choices: [
    {
      index: 0,
      message: {
        role: "assistant",
        toolCalls: [
          {
            id: "call_abc123",
            type: "function",
            function: { name: "get_current_weather", arguments: '{"location":"Boston, MA"}' },
          },
        ],
      },
      finishReason: "tool_calls",
    },
  ],
  usage: { promptTokens: 82, completionTokens: 17, totalTokens: 99 },
  serviceTier: "default",
});

describe("toRestJson", () => {
  it.each([
    {
      name: "a completion with tool calls renders OpenAI's nulls, zeros and numeric created",
      schema: ChatCompletionSchema,
      message: toolCallCompletion,
      json: {
        id: "chatcmpl-B9MBs8CjcvOU2jLn4n570S5qMJKcT",
        object: "chat.completion",
        created: 1741569952,
        model: "gpt-4o-2024-08-06",
        choices: [
          {
            index: 0,
            message: {
              role: "assistant",
              content: null,
              refusal: null,
              tool_calls: [
                {
                  id: "call_abc123",
                  type: "function",
                  function: { name: "get_current_weather", arguments: '{"location":"Boston, MA"}' },
                },
              ],
              annotations: [],
            },
            logprobs: null,
            finish_reason: "tool_calls",
          },
        ],
        usage: { prompt_tokens: 82, completion_tokens: 17, total_tokens: 99 },
        system_fingerprint: null,
        service_tier: "default",
      },
    },
    {
      name: "a text answer has no tool_calls key and writes logprobs with null for empty annotated lists",
      schema: ChatCompletionSchema,
      message: create(ChatCompletionSchema, {
        id: "c2",
        object: "chat.completion",
        created: 1n,
        model: "gpt-4o",
        systemFingerprint: "fp_1",
        choices: [
          {
            message: { role: "assistant", content: "Hi" },
            logprobs: {
              content: [
                {
                  token: "Hi",
                  logprob: -0.5,
                  bytes: [72, 105],
                  topLogprobs: [{ token: "Hi", logprob: -0.5 }],
                },
              ],
            },
            finishReason: "stop",
          },
        ],
      }),
      json: {
        id: "c2",
        object: "chat.completion",
        created: 1,
        model: "gpt-4o",
        system_fingerprint: "fp_1",
        choices: [
          {
            index: 0,
            message: { role: "assistant", content: "Hi", refusal: null, annotations: [] },
            logprobs: {
              content: [
                {
                  token: "Hi",
                  logprob: -0.5,
                  bytes: [72, 105],
                  top_logprobs: [{ token: "Hi", logprob: -0.5, bytes: null }],
                },
              ],
              refusal: null,
            },
            finish_reason: "stop",
          },
        ],
      },
    },
    {
      name: "a stream chunk writes finish_reason and logprobs as null and leaves the delta sparse",
      schema: ChatCompletionChunkSchema,
      message: create(ChatCompletionChunkSchema, {
        id: "c3",
        object: "chat.completion.chunk",
        created: 1741569952n,
        model: "gpt-4o",
        choices: [{ index: 0, delta: { content: "He" } }],
      }),
      json: {
        id: "c3",
        object: "chat.completion.chunk",
        created: 1741569952,
        model: "gpt-4o",
        choices: [{ index: 0, delta: { content: "He" }, logprobs: null, finish_reason: null }],
        system_fingerprint: null,
      },
    },
    {
      name: "an unsafe 64-bit integer stays a string",
      schema: ModelSchema,
      message: create(ModelSchema, { id: "m", object: "model", created: 2n ** 60n, ownedBy: "openai" }),
      json: { id: "m", object: "model", created: "1152921504606846976", owned_by: "openai" },
    },
    {
      name: "64-bit map values and uint64 become numbers; annotated nested lists and fields apply",
      schema: BookSchema,
      message: create(BookSchema, {
        name: "b",
        pages: 12n,
        counts: { a: 5n, b: 2n ** 63n },
        huge: 7n,
        author: { displayName: "Ann" },
        notes: ["n1"],
        editors: [{ displayName: "Ed", email: "e@x" }],
      }),
      json: {
        name: "b",
        title: "",
        pages: 12,
        genre: "GENRE_UNSPECIFIED",
        author: { display_name: "Ann", age: 0, email: null },
        subtitle: null,
        notes: ["n1"],
        tags: [],
        counts: { a: 5, b: "9223372036854775808" },
        editors: [{ display_name: "Ed", age: 0, email: "e@x" }],
        huge: 7,
      },
    },
  ])("$name", ({ schema, message, json }) => {
    expect(toRestJson(schema, message as never)).toStrictEqual(json);
  });

  it("round-trips an OpenAI request body, keeping seed as a number and the explicit nulls of Value fields", () => {
    const body = {
      model: "gpt-4o",
      messages: [
        { role: "user", content: "What is the weather?" },
        {
          role: "assistant",
          content: null,
          tool_calls: [{ id: "call_1", type: "function", function: { name: "w", arguments: "{}" } }],
        },
        { role: "tool", content: "sunny", tool_call_id: "call_1" },
      ],
      seed: 42,
      max_tokens: 100,
      tools: [{ type: "function", function: { name: "w", parameters: { type: "object", properties: {} } } }],
      tool_choice: "auto",
    };
    const message = fromRestJson(ChatCompletionRequestSchema, body);
    expect(message.seed).toBe(42n);
    expect(toRestJson(ChatCompletionRequestSchema, message)).toStrictEqual({ product: "", ...body });
  });
});

describe("fromRestJson", () => {
  it.each([
    { name: "unknown top-level field", json: { model: "m", bogus: 1 }, message: 'Unknown field "bogus"' },
    {
      name: "unknown nested field",
      json: { messages: [{ role: "user", nope: 1 }] },
      message: 'Unknown field "nope"',
    },
    {
      name: "wrong type, value not echoed",
      json: { max_tokens: "sk-secret-value-123" },
      message: 'Invalid value for field "max_tokens"',
    },
    { name: "fraction for an integer", json: { n: 1.5 }, message: 'Invalid value for field "n"' },
    { name: "not an object", json: [1, 2], message: "Invalid request body" },
  ])("rejects $name with invalid_argument naming the field", ({ json, message }) => {
    let thrown: unknown;
    try {
      fromRestJson(ChatCompletionRequestSchema, json);
    } catch (err) {
      thrown = err;
    }
    expect(thrown).toBeInstanceOf(AppError);
    expect((thrown as AppError).code).toBe("invalid_argument");
    expect((thrown as AppError).message).toBe(message);
  });

  it("accepts JSON (lowerCamelCase) names as well as proto names", () => {
    const message = fromRestJson(ChatCompletionRequestSchema, { maxTokens: 5, top_p: 0.5 });
    expect(message.maxTokens).toBe(5);
    expect(message.topP).toBe(0.5);
  });
});
