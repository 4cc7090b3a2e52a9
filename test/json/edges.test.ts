import { create, type DescMessage, type JsonValue } from "@bufbuild/protobuf";
import { describe, expect, it } from "vitest";
import { ChatCompletionRequestSchema } from "../../gen/apikeyserver/v1/chat_pb.js";
import {
  IntKeysSchema,
  NodeSchema,
  PlainSchema,
  WithBytesSchema,
  WithTimestampSchema,
} from "../../gen/testing/restjson/v1/restjson_pb.js";
import { AppError } from "../../src/errors/index.js";
import { compileJsonPlans, fromRestJson, readRequest, toRestJson } from "../../src/json/index.js";
import * as oracle from "../support/rest-json-oracle.js";

// What random JSON (oracle.fuzz.test.ts) rarely reaches, each against the oracle (the protobuf-es path
// test/support/rest-json-oracle.ts): protobuf's recursion limit of 100 in messages, Struct values and list
// values, plain oneofs, and the types the engine refuses when it plans them.

type Outcome = { ok: JsonValue } | { refused: { message: string; param: string | undefined } };

function run(read: () => JsonValue): Outcome {
  try {
    return { ok: read() };
  } catch (err) {
    if (!(err instanceof AppError)) throw err;
    return { refused: { message: err.message, param: err.param } };
  }
}

function expectAsOracle(schema: DescMessage, json: JsonValue): Outcome {
  const expected = run(() => oracle.toRestJson(schema, oracle.fromRestJson(schema, structuredClone(json))));
  expect(run(() => readRequest(schema, structuredClone(json)))).toStrictEqual(expected);
  return expected;
}

/** `{"a": {"a": ... leaf}}`, `depth` objects deep. */
function nestedObjects(depth: number, leaf: JsonValue): JsonValue {
  let value = leaf;
  for (let i = 0; i < depth; i++) value = { a: value };
  return value;
}

function nestedArrays(depth: number): JsonValue {
  let value: JsonValue = 1;
  for (let i = 0; i < depth; i++) value = [value];
  return value;
}

/** A Node whose `children` nest `depth` levels, the deepest holding `leaf` as its value. */
function nestedNodes(depth: number, leaf: JsonValue): JsonValue {
  let value: JsonValue = { value: leaf };
  for (let i = 0; i < depth; i++) value = { children: [value] };
  return value;
}

const around = (n: number): number[] => [n - 3, n - 2, n - 1, n, n + 1, n + 2];

describe("protobuf's recursion limit (100), with the oracle's 400 at every depth around it", () => {
  const tool = (parameters: JsonValue): JsonValue => ({
    model: "m",
    tools: [{ type: "function", function: { name: "f", parameters } }],
  });

  it.each(around(97))("a Struct (tool parameters) holding objects %i deep", (depth) => {
    expectAsOracle(ChatCompletionRequestSchema, tool(nestedObjects(depth, 1)));
  });

  it.each(around(97))("a Struct holding arrays %i deep", (depth) => {
    expectAsOracle(ChatCompletionRequestSchema, tool({ x: nestedArrays(depth) }));
  });

  it.each(around(99))("messages %i deep (the request's own type refused as the body)", (depth) => {
    expectAsOracle(NodeSchema, nestedNodes(depth, "t"));
  });

  it.each(around(98))("a union member's message (Point) %i deep", (depth) => {
    expectAsOracle(NodeSchema, nestedNodes(depth, { x: 1 }));
  });

  it.each(around(98))("a union member's json_list (Words) %i deep", (depth) => {
    expectAsOracle(NodeSchema, nestedNodes(depth, ["w"]));
  });

  it("the refusals say which type, or that the body is wrong, and never echo a value", () => {
    expect(expectAsOracle(ChatCompletionRequestSchema, tool(nestedObjects(120, "sk-secret")))).toStrictEqual({
      refused: { message: "Invalid request body", param: undefined },
    });
    expect(expectAsOracle(NodeSchema, nestedNodes(120, "t"))).toStrictEqual({
      refused: { message: "Invalid request body", param: undefined },
    });
    expect(expectAsOracle(NodeSchema, nestedNodes(99, { x: 1 }))).toStrictEqual({
      refused: { message: "Invalid value for message testing.restjson.v1.Point", param: undefined },
    });
  });
});

describe("a plain oneof (read by its members' own names)", () => {
  it.each<[string, JsonValue]>([
    ["one member", { word: "w", ratio: 0.5 }],
    ["a message member", { point: { x: 1 } }],
    ["a 64-bit member as a string", { count: "12" }],
    ["two members", { word: "w", point: {} }],
    ["two members, one by its JSON name", { count: 1, word: "w" }],
    ["a scalar member's null does not count", { word: null, point: { y: 2 } }],
    ["a message member's null does count", { point: null, word: "w" }],
    ["a member set under both its names", { word: "w", Word: "x" }],
    ["a zero member is written", { count: 0 }],
  ])("%s: as the oracle", (_name, json) => {
    expectAsOracle(PlainSchema, json);
  });

  it("two members: 400 naming the oneof", () => {
    expect(expectAsOracle(PlainSchema, { word: "w", point: {} })).toStrictEqual({
      refused: { message: 'Invalid value for field "choice"', param: "choice" },
    });
  });

  it("a message holding a member writes it, and only it", () => {
    const message = fromRestJson(PlainSchema, { count: "12" });
    expect(message.choice).toStrictEqual({ case: "count", value: 12n });
    expect(toRestJson(PlainSchema, message)).toStrictEqual({ count: 12, ratio: 0 });
  });
});

describe("the REST JSON writer", () => {
  it("refuses a Struct holding NaN or an infinity (a binary caller can send one; JSON cannot say it)", () => {
    for (const x of [Number.NaN, Number.POSITIVE_INFINITY]) {
      const request = create(ChatCompletionRequestSchema, {
        tools: [{ type: "function", function: { name: "f", parameters: { x } } }],
      });
      expect(() => toRestJson(ChatCompletionRequestSchema, request)).toThrow(
        new Error("google.protobuf.Value cannot be NaN or Infinity"),
      );
      expect(() => oracle.toRestJson(ChatCompletionRequestSchema, request)).toThrow(
        "google.protobuf.Value cannot be NaN or Infinity",
      );
    }
  });

  it("writes NaN and infinities of a double as protobuf's JSON strings, as the oracle does", () => {
    const request = create(ChatCompletionRequestSchema, { temperature: Number.NaN, topP: -Infinity });
    const json = toRestJson(ChatCompletionRequestSchema, request);
    expect(json).toMatchObject({ temperature: "NaN", top_p: "-Infinity" });
    expect(json).toStrictEqual(oracle.toRestJson(ChatCompletionRequestSchema, request));
  });

  it("keeps protobuf's key order (field numbers) until a union or an added null asks for declaration order", () => {
    const plain = create(ChatCompletionRequestSchema, { model: "m", product: "p" });
    expect(JSON.stringify(toRestJson(ChatCompletionRequestSchema, plain))).toBe(
      JSON.stringify(oracle.toRestJson(ChatCompletionRequestSchema, plain)),
    );
    const withUnion = fromRestJson(ChatCompletionRequestSchema, { model: "m", stop: "x", seed: 1 });
    expect(JSON.stringify(toRestJson(ChatCompletionRequestSchema, withUnion))).toBe(
      JSON.stringify(oracle.toRestJson(ChatCompletionRequestSchema, withUnion)),
    );
  });
});

describe("types the engine does not take are refused when the plan is made (at start-up)", () => {
  it.each([
    [WithBytesSchema, "testing.restjson.v1.WithBytes.data: the REST JSON engine does not take bytes"],
    [IntKeysSchema, "testing.restjson.v1.IntKeys.by_number: the REST JSON engine takes string map keys only"],
    [
      WithTimestampSchema,
      "google.protobuf.Timestamp: the REST JSON engine does not take this well-known type",
    ],
  ] as const)("%#: %s", (schema, error) => {
    expect(() => compileJsonPlans([schema])).toThrow(new Error(error));
    // Not cached half-made: every use throws the same.
    expect(() => readRequest(schema, {})).toThrow(new Error(error));
    expect(() => toRestJson(schema, create(schema))).toThrow(new Error(error));
  });
});
