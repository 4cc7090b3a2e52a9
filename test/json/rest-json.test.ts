import { readdirSync } from "node:fs";
import { create, fromBinary, toBinary, toJson, type JsonObject } from "@bufbuild/protobuf";
import { describe, expect, it } from "vitest";
import {
  ChatCompletionChunkSchema,
  ChatCompletionRequestSchema,
  ChatCompletionSchema,
  ModelSchema,
} from "../../gen/apikeyserver/v1/chat_pb.js";
import {
  HoldsTwoStringsSchema,
  NodeSchema,
  NodesSchema,
  NullWhenEmptyImplicitSchema,
  NullWhenEmptyListSchema,
  NullWhenEmptyNumberSchema,
  NullWhenEmptyOneofSchema,
  TwoStringsSchema,
  WideListSchema,
} from "../../gen/testing/restjson/v1/restjson_pb.js";
import { BookSchema } from "../../gen/testing/transcode/v1/transcode_pb.js";
import { AppError } from "../../src/errors/index.js";
import { fromAnswerJson, fromRestJson, readAnswer, readRequest, toRestJson } from "../../src/json/index.js";
import { fixture } from "../upstream/helpers.js";

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

/** Runs `read` and checks it threw AppError invalid_argument with exactly `message`. */
function expectInvalidArgument(read: () => unknown, message: string): void {
  let thrown: unknown;
  try {
    read();
  } catch (err) {
    thrown = err;
  }
  expect(thrown).toBeInstanceOf(AppError);
  expect((thrown as AppError).code).toBe("invalid_argument");
  expect((thrown as AppError).message).toBe(message);
}

// Every fixture of its kind, so a new one is covered without touching this file. The stream chunks are
// relayed one by one (test/e2e/chat-stream.test.ts), not read as a whole.
const fixtureNames = readdirSync(new URL("../fixtures/openai/", import.meta.url));
const requestFixtures = fixtureNames.filter((n) => n.startsWith("request-"));
const completionFixtures = fixtureNames.filter(
  (n) => n.startsWith("chat-completion-") && n !== "chat-completion-chunks.json",
);

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

  it("round-trips an OpenAI request body, keeping seed as a number and the explicit null of an unset content", () => {
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
    expectInvalidArgument(() => fromRestJson(ChatCompletionRequestSchema, json), message);
  });

  it("accepts JSON (lowerCamelCase) names as well as proto names", () => {
    const message = fromRestJson(ChatCompletionRequestSchema, { maxTokens: 5, top_p: 0.5 });
    expect(message.maxTokens).toBe(5);
    expect(message.topP).toBe(0.5);
  });
});

/** Freezes a JSON value all the way down, so a test proves the reader never writes to the caller's JSON. */
function deepFreeze<T>(value: T): T {
  if (typeof value === "object" && value !== null) {
    for (const v of Object.values(value)) deepFreeze(v);
    Object.freeze(value);
  }
  return value;
}

describe("json_union and json_list (typed oneofs with OpenAI's JSON shapes)", () => {
  it("finds the fixtures", () => {
    expect(requestFixtures).toContain("request-tools.json");
    expect(completionFixtures).toContain("chat-completion-tool-calls.json");
  });

  it.each(requestFixtures)(
    "the request fixture %s reads into typed fields and writes back exactly",
    (name) => {
      const body = deepFreeze(fixture(name));
      const message = fromRestJson(ChatCompletionRequestSchema, body);
      expect(message.messages[0]?.content.case).toBe("text");
      const { product, ...json } = toRestJson(ChatCompletionRequestSchema, message) as Record<
        string,
        unknown
      >;
      expect(product).toBe("");
      expect(json).toStrictEqual(body);
    },
  );

  it.each(completionFixtures)("the response fixture %s writes back exactly", (name) => {
    const body = fixture(name);
    expect(toRestJson(ChatCompletionSchema, fromRestJson(ChatCompletionSchema, body))).toStrictEqual(body);
  });

  const typedRequest = {
    model: "gpt-4o",
    messages: [
      { role: "user", content: "plain" },
      {
        role: "user",
        content: [
          { type: "text", text: "look" },
          { type: "image_url", image_url: { url: "u" } },
        ],
      },
      {
        role: "assistant",
        content: null,
        tool_calls: [{ id: "c", type: "function", function: { name: "f", arguments: "{}" } }],
      },
      { role: "user", content: "" },
    ],
    stop: "END",
    tool_choice: { type: "function", function: { name: "f" } },
    function_call: "auto",
  };

  it("reads each variant into its oneof member, and writes it back in OpenAI's shape", () => {
    const message = fromRestJson(ChatCompletionRequestSchema, deepFreeze(typedRequest));
    expect(message.messages.map((m) => m.content)).toMatchObject([
      { case: "text", value: "plain" },
      {
        case: "parts",
        value: {
          parts: [
            { type: "text", text: "look" },
            { type: "image_url", imageUrl: { url: "u" } },
          ],
        },
      },
      { case: undefined },
      { case: "text", value: "" },
    ]);
    expect(message.stop).toStrictEqual({ case: "stopSequence", value: "END" });
    expect(message.toolChoice).toMatchObject({
      case: "namedTool",
      value: { type: "function", function: { name: "f" } },
    });
    expect(message.functionCall).toStrictEqual({ case: "functionCallMode", value: "auto" });
    expect(toRestJson(ChatCompletionRequestSchema, message)).toStrictEqual({ product: "", ...typedRequest });
  });

  it("an absent content is written as null (OpenAI's own form); the other unions stay absent", () => {
    const message = fromRestJson(ChatCompletionRequestSchema, { messages: [{ role: "assistant" }] });
    expect(toRestJson(ChatCompletionRequestSchema, message)).toStrictEqual({
      product: "",
      messages: [{ role: "assistant", content: null }],
      model: "",
    });
  });

  it("stop as an array and tool_choice as a mode, under their JSON (lowerCamelCase) names too", () => {
    const message = fromRestJson(ChatCompletionRequestSchema, { stop: ["a", "b"], toolChoice: "required" });
    expect(message.stop).toMatchObject({ case: "stopSequences", value: { sequences: ["a", "b"] } });
    expect(message.toolChoice).toStrictEqual({ case: "toolChoiceMode", value: "required" });
    expect(toRestJson(ChatCompletionRequestSchema, message)).toMatchObject({
      stop: ["a", "b"],
      tool_choice: "required",
    });
  });

  it("protobuf's canonical JSON (Connect, buf curl, grpcurl) names the members instead", () => {
    const message = fromRestJson(ChatCompletionRequestSchema, typedRequest);
    expect(toJson(ChatCompletionRequestSchema, message, { useProtoFieldName: true })).toMatchObject({
      messages: [
        { role: "user", text: "plain" },
        {
          role: "user",
          parts: {
            parts: [
              { type: "text", text: "look" },
              { type: "image_url", image_url: { url: "u" } },
            ],
          },
        },
        { role: "assistant" },
        { role: "user", text: "" },
      ],
      stop_sequence: "END",
      named_tool: { type: "function", function: { name: "f" } },
      function_call_mode: "auto",
    });
  });

  it.each([
    {
      name: "a number for content",
      json: { messages: [{ role: "user", content: 5 }] },
      message: 'Invalid value for field "content"',
    },
    { name: "a boolean for stop", json: { stop: true }, message: 'Invalid value for field "stop"' },
    {
      name: "a number inside stop's array",
      json: { stop: ["a", 1] },
      message: 'Invalid value for field "stop"',
    },
    {
      name: "a string inside content's parts",
      json: { messages: [{ content: ["sk-secret"] }] },
      message: 'Invalid value for field "content"',
    },
    {
      name: "an array for tool_choice",
      json: { tool_choice: ["auto"] },
      message: 'Invalid value for field "tool_choice"',
    },
    {
      name: "an unknown key in a content part",
      json: { messages: [{ content: [{ type: "text", nope: 1 }] }] },
      message: 'Unknown field "nope"',
    },
    {
      name: "a wrong type inside a part",
      json: { messages: [{ content: [{ type: "image_url", image_url: "u" }] }] },
      message: "Invalid value for message apikeyserver.v1.ImageUrl",
    },
    {
      name: "a member's own name (protobuf JSON, not REST)",
      json: { messages: [{ role: "user", text: "hi" }] },
      message: 'Unknown field "text"',
    },
    {
      name: "a member's JSON name",
      json: { toolChoiceMode: "auto" },
      message: 'Unknown field "toolChoiceMode"',
    },
  ])("rejects $name with invalid_argument naming the key", ({ json, message }) => {
    expectInvalidArgument(() => fromRestJson(ChatCompletionRequestSchema, json), message);
  });

  const tree = {
    name: "root",
    text: undefined,
    value: "a",
    children: [
      { name: "n", value: 1.5, children: [], by_name: {}, size: 0 },
      { name: "b", value: true, children: [], by_name: {}, size: 0 },
      {
        name: "w",
        value: ["x", "y"],
        children: [{ name: "deep", value: { x: 1, y: 2 }, children: [], by_name: {}, size: 3 }],
        by_name: {},
        size: 0,
      },
    ],
    by_name: { k: { name: "m", value: [], children: [], by_name: {}, size: 7 } },
    size: "9007199254740993",
  };

  it("every member JSON type, in lists, maps and a recursive type, round-trips", () => {
    const { text: _text, ...json } = tree;
    const message = fromRestJson(NodeSchema, deepFreeze(json));
    expect(message.value).toStrictEqual({ case: "text", value: "a" });
    expect(message.children.map((c) => c.value.case)).toStrictEqual(["number", "flag", "words"]);
    expect(message.children[2]?.children[0]?.value).toMatchObject({ case: "point", value: { x: 1, y: 2 } });
    expect(message.byName["k"]?.value).toMatchObject({ case: "words", value: { words: [] } });
    // Everything comes back as it was, the unsafe 64-bit integer still a string.
    expect(toRestJson(NodeSchema, message)).toStrictEqual(json);
  });

  it("an unset union with the default presence is left out, and null reads as unset", () => {
    const message = fromRestJson(NodeSchema, { name: "x", value: null });
    expect(message.value.case).toBeUndefined();
    expect(toRestJson(NodeSchema, message)).toStrictEqual({ name: "x", children: [], by_name: {}, size: 0 });
  });

  it("a json_list message is a bare array at the top level too", () => {
    const json = [{ name: "a", value: "t", children: [], by_name: {}, size: 0 }];
    const message = fromRestJson(NodesSchema, json);
    expect(message.nodes[0]?.value).toStrictEqual({ case: "text", value: "t" });
    expect(toRestJson(NodesSchema, message)).toStrictEqual(json);
    expect(() => fromRestJson(NodesSchema, { nodes: [] })).toThrow('Invalid value for field "Nodes"');
  });

  it.each([
    {
      schema: TwoStringsSchema,
      error: "testing.restjson.v1.TwoStrings.value: json_union members a and b both read a JSON string",
    },
    {
      schema: HoldsTwoStringsSchema,
      error: "testing.restjson.v1.TwoStrings.value: json_union members a and b both read a JSON string",
    },
    {
      schema: WideListSchema,
      error: "testing.restjson.v1.WideList: json_list needs exactly one field, a repeated one",
    },
  ])("a misused option is a plain Error when the type is first used ($error)", ({ schema, error }) => {
    expect(() => toRestJson(schema, create(schema))).toThrow(new Error(error));
    expect(() => fromRestJson(schema, {})).toThrow(new Error(error));
    expect(() => toRestJson(schema, create(schema))).toThrow(new Error(error));
  });
});

describe('JSON_PRESENCE_NULL_WHEN_EMPTY (ChunkDelta.refusal: OpenAI\'s first delta has `"refusal": null`)', () => {
  const chunk = (delta: JsonObject): JsonObject => ({
    id: "c",
    object: "chat.completion.chunk",
    created: 1,
    model: "m",
    choices: [{ index: 0, delta, logprobs: null, finish_reason: null }],
    system_fingerprint: null,
  });
  /** The REST reader and the provider reader, each building the message. */
  const readers = [
    ["fromRestJson", (json: JsonObject) => fromRestJson(ChatCompletionChunkSchema, json)],
    ["fromAnswerJson", (json: JsonObject) => fromAnswerJson(ChatCompletionChunkSchema, json)],
  ] as const;

  it.each([
    ["null: set to the empty string", { role: "assistant", content: "", refusal: null }, ""],
    ["absent: unset", { content: "Hello" }, undefined],
    ["a string: that string", { refusal: "I can't" }, "I can't"],
  ])("%s, and written back exactly (REST reader and provider reader)", (_name, delta, refusal) => {
    for (const [name, read] of readers) {
      const message = read(chunk(delta));
      expect(message?.choices[0]?.delta?.refusal, name).toBe(refusal);
      expect(message?.choices[0]?.delta && Object.hasOwn(message.choices[0].delta, "refusal"), name).toBe(
        refusal !== undefined,
      );
      expect(message && toRestJson(ChatCompletionChunkSchema, message), name).toStrictEqual(chunk(delta));
    }
    // Normalizing (the JSON fast path) keeps the three states as they are.
    expect(readAnswer(ChatCompletionChunkSchema, chunk(delta))).toStrictEqual(chunk(delta));
    expect(readRequest(ChatCompletionChunkSchema, chunk(delta))).toStrictEqual(chunk(delta));
  });

  it('"" is normalized to `null`, as the writer writes a field set to ""; absent stays absent', () => {
    const written = toRestJson(
      ChatCompletionChunkSchema,
      create(ChatCompletionChunkSchema, { choices: [{ delta: { refusal: "" } }] }),
    ) as JsonObject;
    expect(written["choices"]).toStrictEqual([
      { index: 0, delta: { refusal: null }, logprobs: null, finish_reason: null },
    ]);
    expect(readAnswer(ChatCompletionChunkSchema, chunk({ refusal: "" }))).toStrictEqual(
      chunk({ refusal: null }),
    );
    expect(readRequest(ChatCompletionChunkSchema, chunk({ refusal: "" }))).toStrictEqual(
      chunk({ refusal: null }),
    );
    const unset = readAnswer(ChatCompletionChunkSchema, chunk({})) as JsonObject;
    const [choice] = unset["choices"] as { delta: JsonObject }[];
    expect(Object.hasOwn(choice?.delta ?? {}, "refusal")).toBe(false);
  });

  it("a value of another type is still refused as before (the engine's 400, a provider's misfit)", () => {
    const message = fromRestJson(ChatCompletionChunkSchema, chunk({ refusal: null }));
    expect(message.choices[0]?.delta?.refusal).toBe("");
    expectInvalidArgument(
      () => fromRestJson(ChatCompletionChunkSchema, chunk({ refusal: 1 })),
      'Invalid value for field "refusal"',
    );
    expect(readAnswer(ChatCompletionChunkSchema, chunk({ refusal: false }))).toBeUndefined();
  });

  it("over the protobuf wire (gRPC, Connect binary) the three states survive too", () => {
    const first = fromRestJson(ChatCompletionChunkSchema, chunk({ role: "assistant", refusal: null }));
    const decoded = fromBinary(ChatCompletionChunkSchema, toBinary(ChatCompletionChunkSchema, first));
    expect(decoded.choices[0]?.delta?.refusal).toBe("");
    expect(toRestJson(ChatCompletionChunkSchema, decoded)).toStrictEqual(
      chunk({ role: "assistant", refusal: null }),
    );
  });

  it.each([
    [NullWhenEmptyImplicitSchema, "testing.restjson.v1.NullWhenEmptyImplicit.text"],
    [NullWhenEmptyNumberSchema, "testing.restjson.v1.NullWhenEmptyNumber.count"],
    [NullWhenEmptyListSchema, "testing.restjson.v1.NullWhenEmptyList.words"],
    [NullWhenEmptyOneofSchema, "testing.restjson.v1.NullWhenEmptyOneof.word"],
  ] as const)(
    "on anything but an optional string it is a plain Error when the type is planned (%#)",
    (schema, field) => {
      const error = new Error(`${field}: NULL_WHEN_EMPTY needs an optional string`);
      expect(() => fromRestJson(schema, {})).toThrow(error);
      expect(() => toRestJson(schema, create(schema))).toThrow(error);
      expect(() => readAnswer(schema, {})).toThrow(error);
    },
  );
});
