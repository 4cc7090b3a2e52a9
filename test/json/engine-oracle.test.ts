import { readdirSync, readFileSync } from "node:fs";
import type { DescMessage, JsonObject, JsonValue } from "@bufbuild/protobuf";
import { describe, expect, it } from "vitest";
import {
  ChatCompletionChunkSchema,
  ChatCompletionRequestSchema,
  ChatCompletionSchema,
} from "../../gen/apikeyserver/v1/chat_pb.js";
import { AppError } from "../../src/errors/index.js";
import { readAnswer, readRequest } from "../../src/json/index.js";
import { fromProviderJson, fromRestJson, toRestJson } from "../support/rest-json-oracle.js";
import { fixture } from "../upstream/helpers.js";

// The JSON engine (src/json/, docs/architecture.md "JSON in, JSON out") against the protobuf path it
// replaced, kept as the oracle (test/support/rest-json-oracle.ts: @bufbuild/protobuf's fromJson/toJson and
// the json_options.proto plan): whatever protobuf's reader takes, the engine takes, and its normalized
// JSON is what the REST JSON writer wrote for the message protobuf's reader built; whatever protobuf's
// reader refused, the engine refuses with the same 400 (test/json/oracle.fuzz.test.ts does it at random).

const clone = <T>(value: T): T => structuredClone(value);

/**
 * Request: fromRestJson (strict) then the writer; answer: fromProviderJson (protobuf's reader ignoring
 * unknown fields, a JSON_PRESENCE_NULL_WHEN_EMPTY field's `null` read as "") then the writer.
 */
function protobufPath(schema: DescMessage, json: JsonValue, request: boolean): JsonValue {
  const message = request ? fromRestJson(schema, clone(json)) : fromProviderJson(schema, clone(json));
  return toRestJson(schema, message);
}

/** The engine: a caller's request (refusing unknown keys) or a provider's answer (dropping them). */
function engine(schema: DescMessage, json: JsonObject, request: boolean): JsonValue | undefined {
  return request ? readRequest(schema, json) : readAnswer(schema, json);
}

function expectSame(schema: DescMessage, json: JsonObject, request: boolean): void {
  const fast = engine(schema, clone(json), request);
  expect(fast).toBeDefined();
  expect(fast).toStrictEqual(protobufPath(schema, json, request));
}

/** The AppError `read` throws, as the 400 it answers. */
function refusal(read: () => unknown): { message: string; param: string | undefined } | undefined {
  try {
    read();
  } catch (err) {
    if (err instanceof AppError) return { message: err.message, param: err.param };
    throw err;
  }
  return undefined;
}

const providerFixtures = ["anthropic", "gemini", "azure-openai"].flatMap((dir) =>
  readdirSync(new URL(`../fixtures/${dir}/`, import.meta.url))
    .filter((name) => name !== "errors.json")
    .map((name) => ({
      name: `${dir}/${name}`,
      json: JSON.parse(readFileSync(new URL(`../fixtures/${dir}/${name}`, import.meta.url), "utf8")) as {
        openai_request: JsonObject;
        openai_response?: JsonObject;
        openai_chunks?: JsonObject[];
      },
    })),
);

describe("the JSON engine gives what the protobuf path gives", () => {
  const answers = [
    "chat-completion-plain.json",
    "chat-completion-tool-calls.json",
    "chat-completion-refusal.json",
    "chat-completion-logprobs.json",
    "chat-completion-n2.json",
  ];
  it.each(answers)("answer %s", (name) => expectSame(ChatCompletionSchema, fixture(name), false));

  it("OpenAI's chunks (with `usage: null` and `refusal: null`)", () => {
    for (const chunk of fixture<JsonObject[]>("chat-completion-chunks.json")) {
      expectSame(ChatCompletionChunkSchema, chunk, false);
      // Field for field: the first delta's `"refusal": null` is kept, the later deltas stay without one
      // (`"usage": null` is the SSE writer's, which adds it: README "Streams over REST").
      const { usage, ...rest } = chunk;
      expect(readAnswer(ChatCompletionChunkSchema, clone(chunk))).toStrictEqual(
        usage === null ? rest : chunk,
      );
    }
  });

  it.each(providerFixtures)("$name: request, answer and chunks", ({ json }) => {
    expectSame(ChatCompletionRequestSchema, { ...json.openai_request, product: "p" }, true);
    if (json.openai_response) expectSame(ChatCompletionSchema, json.openai_response, false);
    for (const chunk of json.openai_chunks ?? []) expectSame(ChatCompletionChunkSchema, chunk, false);
  });

  it.each(["request-plain.json", "request-tools.json"])("request %s", (name) =>
    expectSame(ChatCompletionRequestSchema, { ...fixture(name), product: "p" }, true),
  );

  it("nulls, empty lists and missing implicit fields come out as the writer writes them", () => {
    expectSame(
      ChatCompletionRequestSchema,
      {
        product: "p",
        model: "m",
        messages: [
          { role: "user", content: null, tool_calls: [], name: null },
          { role: "user", content: [{ type: "text", text: "hi" }, { text: "no type" }] },
          { role: "assistant", content: "", function_call: { name: "f" } },
        ],
        temperature: null,
        tools: [],
        metadata: {},
        stop: ["a", "b"],
        tool_choice: "auto",
        function_call: null,
        seed: 0,
        stream: false,
        logit_bias: { "50256": -100 },
        response_format: { type: "json_schema", json_schema: { name: "s", schema: { type: "object" } } },
      },
      true,
    );
    expectSame(
      ChatCompletionSchema,
      {
        id: "x",
        choices: [{ message: { content: null, annotations: null }, logprobs: null, finish_reason: null }],
        usage: { prompt_tokens: 1 },
        created: 0,
        service_tier: null,
        system_fingerprint: null,
      },
      false,
    );
    expectSame(
      ChatCompletionChunkSchema,
      { id: "x", object: "chat.completion.chunk", choices: [{ delta: {}, index: 0 }], usage: null },
      false,
    );
  });

  it("a field the contract does not know: dropped from an answer, as the protobuf path drops it", () => {
    const answer: JsonObject = { ...fixture("chat-completion-plain.json"), brand_new: { a: 1 } };
    const choices = answer["choices"] as JsonObject[];
    answer["choices"] = choices.map((c) => ({ ...c, new_choice_field: true }));
    expectSame(ChatCompletionSchema, answer, false);
    const fast = readAnswer(ChatCompletionSchema, clone(answer)) as JsonObject;
    expect(fast).not.toHaveProperty("brand_new");
    expect((fast["choices"] as JsonObject[])[0]).not.toHaveProperty("new_choice_field");
  });
});

describe("what the old fast path declined: the engine answers as the protobuf path did", () => {
  const request = (extra: JsonObject): JsonObject => ({
    product: "p",
    model: "m",
    messages: [{ role: "user", content: "hi" }],
    ...extra,
  });
  it.each([
    ["an unknown request field", request({ brand_new: 1 })],
    ["an unknown message field", request({ messages: [{ role: "user", content: "hi", nope: 1 }] })],
    ["a lowerCamelCase name", request({ maxTokens: 5 })],
    ["a union member's own name", request({ messages: [{ role: "user", text: "hi" }] })],
    ["a 64-bit integer as a string", request({ seed: "5" })],
    ["a number out of int32 range", request({ max_tokens: 2 ** 31 })],
    ["a fraction for an integer", request({ n: 1.5 })],
    ["a string for a number", request({ temperature: "0.5" })],
    ["a null list item", request({ messages: [null] })],
    ["a union value of no member's type", request({ stop: 5 })],
    ["a wrong item in a json_list", request({ stop: ["a", 1] })],
    ["an array for a message", request({ response_format: [] })],
    ["not an object", [] as unknown as JsonObject],
  ])("%s", (_name, json) => {
    const before = JSON.stringify(json);
    const expected = refusal(() => fromRestJson(ChatCompletionRequestSchema, clone(json)));
    const got = refusal(() => readRequest(ChatCompletionRequestSchema, json));
    expect(got).toStrictEqual(expected);
    if (expected === undefined) {
      // protobuf's reader took it (a JSON name, a numeric string): the engine takes it too, normalized.
      expect(json).toStrictEqual(
        protobufPath(ChatCompletionRequestSchema, JSON.parse(before) as JsonObject, true),
      );
    } else {
      // Refusing leaves the caller's JSON as it was.
      expect(JSON.stringify(json)).toBe(before);
    }
  });

  it.each([
    ["choices not a list", { choices: {} }],
    ["a string index", { choices: [{ index: "0" }] }],
    ["created as a string", { created: "1" }],
    ["usage not an object", { usage: 5 }],
    ["a lowerCamelCase name", { systemFingerprint: "x" }],
  ])("answer: %s", (_name, json) => {
    let expected: JsonValue | undefined;
    try {
      expected = protobufPath(ChatCompletionSchema, json, false);
    } catch {
      // protobuf's reader refused it: a 502, as the engine's undefined is.
      expected = undefined;
    }
    expect(readAnswer(ChatCompletionSchema, json as JsonObject)).toStrictEqual(expected);
  });
});
