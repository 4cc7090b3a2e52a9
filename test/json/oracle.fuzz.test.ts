import {
  toBinary,
  ScalarType,
  type DescField,
  type DescMessage,
  type JsonObject,
  type JsonValue,
} from "@bufbuild/protobuf";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import {
  ChatCompletionChunkSchema,
  ChatCompletionRequestSchema,
  ChatCompletionSchema,
  ListModelsResponseSchema,
} from "../../gen/apikeyserver/v1/chat_pb.js";
import { NodeSchema, NodesSchema, PlainSchema } from "../../gen/testing/restjson/v1/restjson_pb.js";
import {
  BookQuerySchema,
  BookSchema,
  UpdateBookRequestSchema,
} from "../../gen/testing/transcode/v1/transcode_pb.js";
import { AppError } from "../../src/errors/index.js";
import { fromAnswerJson, fromRestJson, readAnswer, readRequest, toRestJson } from "../../src/json/index.js";
import { fuzzOptions } from "../fuzz/fuzz-options.js";
import * as oracle from "../support/rest-json-oracle.js";

// The engine (src/json/) against @bufbuild/protobuf as the oracle: the REST form as it has always been
// read (test/support/rest-json-oracle.ts: protobuf's fromJson/toJson plus the json_options.proto plan).
// Random JSON shaped by each message type, mostly valid, with wrong types, numeric strings, JSON names,
// union members' own names, unknown keys, nulls and deep nesting mixed in: the engine must refuse exactly
// what the oracle refuses with the same message and param, and normalize to exactly what it writes.

const odd: JsonValue[] = [
  null,
  "",
  " 1",
  "1e3",
  "0x10",
  "NaN",
  "Infinity",
  "-0",
  "9007199254740993",
  "18446744073709551616",
  "\ud800",
  -0,
  1.5,
  2 ** 31,
  -(2 ** 31) - 1,
  2 ** 53,
  1e21,
  true,
  [],
  {},
  [null],
  ["a"],
  [{}],
  { a: 1 },
  "GENRE_FICTION",
  "nope",
];

function scalarArb(scalar: ScalarType): fc.Arbitrary<JsonValue> {
  switch (scalar) {
    case ScalarType.STRING:
      return fc.oneof(fc.string({ maxLength: 4 }), fc.constantFrom("", "user", "\ud800x"));
    case ScalarType.BOOL:
      return fc.boolean();
    case ScalarType.DOUBLE:
    case ScalarType.FLOAT:
      return fc.oneof(
        fc.double({ noNaN: true, noDefaultInfinity: true }),
        fc.constantFrom("NaN", "-Infinity", "2.5", 0),
      );
    default:
      return fc.oneof(fc.integer({ min: -5, max: 5 }), fc.constantFrom("7", 2 ** 40, "-3", 0));
  }
}

function anyJson(depth: number): fc.Arbitrary<JsonValue> {
  return depth > 0
    ? (fc.jsonValue({ maxDepth: 2 }) as fc.Arbitrary<JsonValue>)
    : fc.constantFrom(null, 1, "x");
}

function valueArb(field: DescField, depth: number): fc.Arbitrary<JsonValue> {
  const kind =
    field.fieldKind === "list" ? field.listKind : field.fieldKind === "map" ? field.mapKind : field.fieldKind;
  if (kind === "message") return messageArb(field.message as DescMessage, depth - 1);
  if (kind === "enum") {
    const values = (field.enum?.values ?? []).map((v) => v.name);
    return fc.oneof(fc.constantFrom(...values), fc.constantFrom(0, 1, 7, 2 ** 32));
  }
  return scalarArb(field.scalar as ScalarType);
}

function fieldArb(field: DescField, depth: number): fc.Arbitrary<JsonValue> {
  const single = valueArb(field, depth);
  const shaped =
    field.fieldKind === "list"
      ? fc.array(single, { maxLength: 3 })
      : field.fieldKind === "map"
        ? fc.dictionary(
            // The oracle loses a "__proto__" key of a map of messages with unions (it assigns it to a plain
            // object, setting the prototype); the engine keeps it, as protobuf's reader does.
            fc.constantFrom("a", "b", "\ud800", ...(field.mapKind === "message" ? [] : ["__proto__"])),
            single,
            { maxKeys: 2 },
          )
        : single;
  return fc.oneof({ weight: 8, arbitrary: shaped }, { weight: 1, arbitrary: fc.constantFrom(...odd) });
}

const memo = new Map<string, fc.Arbitrary<JsonValue>>();

function messageArb(desc: DescMessage, depth: number): fc.Arbitrary<JsonValue> {
  switch (desc.typeName) {
    case "google.protobuf.Struct":
      return fc.oneof(
        { weight: 6, arbitrary: fc.dictionary(fc.string({ maxLength: 3 }), anyJson(depth)) },
        { weight: 1, arbitrary: fc.constantFrom(...odd) },
      );
    case "google.protobuf.Value":
      return anyJson(depth);
    case "google.protobuf.ListValue":
      return fc.array(anyJson(depth), { maxLength: 2 });
  }
  if (depth <= 0) return fc.constantFrom({}, null, [], "x");
  const id = `${desc.typeName}@${String(depth)}`;
  const known = memo.get(id);
  if (known !== undefined) return known;
  // Keys: proto names mostly, JSON names, union keys (the oneof's name, its local name), members' own
  // names, and unknown keys.
  const entries: fc.Arbitrary<[string, JsonValue]>[] = [];
  for (const field of desc.fields) {
    const value = fieldArb(field, depth);
    entries.push(value.map((v): [string, JsonValue] => [field.name, v]));
    if (field.jsonName !== field.name)
      entries.push(value.map((v): [string, JsonValue] => [field.jsonName, v]));
  }
  for (const oneof of desc.oneofs) {
    const members = oneof.fields.map((f) => valueArb(f, depth));
    const value = fc.oneof(...members, fc.constantFrom(...odd));
    entries.push(value.map((v): [string, JsonValue] => [oneof.name, v]));
    entries.push(value.map((v): [string, JsonValue] => [oneof.localName, v]));
  }
  entries.push(fc.constantFrom<[string, JsonValue]>(["bogus", 1], ["__proto__", 1], ["Bogus", null]));
  const weighted = entries.map((arbitrary, i) => ({ arbitrary, weight: i === entries.length - 1 ? 1 : 6 }));
  const object = fc
    .array(fc.oneof(...weighted), { maxLength: 6 })
    .map(
      (pairs) =>
        JSON.parse(
          `{${pairs.map(([k, v]) => `${JSON.stringify(k)}:${JSON.stringify(v)}`).join(",")}}`,
        ) as JsonValue,
    );
  const listField = desc.fields[0];
  const arb =
    desc.fields.length === 1 &&
    listField?.fieldKind === "list" &&
    desc.typeName !== "apikeyserver.v1.ListModelsResponse"
      ? fc.oneof(fc.array(valueArb(listField, depth), { maxLength: 3 }), object)
      : object;
  memo.set(id, arb);
  return arb;
}

type Outcome = { ok: JsonValue } | { refused: { message: string; param: string | undefined } };

function outcome(run: () => JsonValue): Outcome {
  try {
    return { ok: run() };
  } catch (err) {
    if (!(err instanceof AppError)) throw err;
    return { refused: { message: err.message, param: err.param } };
  }
}

const requests: [string, DescMessage, number][] = [
  ["ChatCompletionRequest", ChatCompletionRequestSchema, 4],
  ["Node (unions, lists, maps, recursion)", NodeSchema, 4],
  ["Nodes (json_list at the top)", NodesSchema, 3],
  ["Plain (a plain oneof)", PlainSchema, 3],
  ["Book (enums, 64-bit, maps)", BookSchema, 3],
  ["BookQuery", BookQuerySchema, 3],
  ["UpdateBookRequest", UpdateBookRequestSchema, 3],
];

describe("the engine against @bufbuild/protobuf (oracle)", () => {
  it.each(requests)("a caller's %s: the same 400 or the same REST JSON", (_name, schema, depth) => {
    fc.assert(
      fc.property(messageArb(schema, depth), (json) => {
        const expected = outcome(() =>
          oracle.toRestJson(schema, oracle.fromRestJson(schema, structuredClone(json))),
        );
        const copy = structuredClone(json);
        const got = outcome(() => readRequest(schema, copy));
        expect(got).toStrictEqual(expected);
        // The message the engine builds is the one protobuf's reader builds, and writes the same JSON.
        if ("ok" in expected) {
          const mine = fromRestJson(schema, json);
          expect(toBinary(schema, mine)).toStrictEqual(toBinary(schema, oracle.fromRestJson(schema, json)));
          expect(toRestJson(schema, mine)).toStrictEqual(expected.ok);
        } else {
          // Refused JSON is left as it was.
          expect(copy).toStrictEqual(json);
        }
      }),
      fuzzOptions(400),
    );
  });

  it.each([
    ["ChatCompletion", ChatCompletionSchema],
    ["ChatCompletionChunk", ChatCompletionChunkSchema],
    ["ListModelsResponse", ListModelsResponseSchema],
  ] as const)(
    "a provider's %s: refused where protobuf refuses it, else the same REST JSON",
    (_name, schema) => {
      fc.assert(
        fc.property(messageArb(schema, 4), (json) => {
          let expected: JsonValue | undefined;
          try {
            expected = oracle.toRestJson(schema, oracle.fromProviderJson(schema, structuredClone(json)));
          } catch {
            expected = undefined;
          }
          const got =
            typeof json === "object" && json !== null && !Array.isArray(json)
              ? readAnswer(schema, structuredClone(json))
              : undefined;
          expect(got).toStrictEqual(expected);
          // A protobuf caller's answer: the message the engine builds is the one protobuf's reader builds.
          if (expected !== undefined) {
            const mine = fromAnswerJson(schema, structuredClone(json) as JsonObject);
            const theirs = oracle.fromProviderJson(schema, structuredClone(json));
            expect(mine && toBinary(schema, mine)).toStrictEqual(toBinary(schema, theirs));
          }
        }),
        fuzzOptions(400),
      );
    },
  );
});
