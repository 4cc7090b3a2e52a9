import { create, toBinary } from "@bufbuild/protobuf";
import { describe, expect, it } from "vitest";
import { ChatCompletionRequestSchema, TokenLogprobSchema } from "../../gen/apikeyserver/v1/chat_pb.js";
import {
  checkBinaryValues,
  checkJsonValues,
  maxRequestDepth,
  maxRequestValues,
} from "../../src/lib/message-limits.js";

const json = (text: string, max?: number) => () => checkJsonValues(Buffer.from(text), max);
const tooComplex = {
  code: "invalid_argument",
  message: `Request too complex (more than ${maxRequestValues} values or ${maxRequestDepth} levels of nesting)`,
};

describe("checkJsonValues", () => {
  it("counts 1 + the {, [ and , outside strings", () => {
    // object, array, 1, 2, 3: five values.
    expect(json('{"a":[1,2,3]}', 5)).not.toThrow();
    expect(json('{"a":[1,2,3]}', 4)).toThrow(expect.objectContaining(tooComplex));
    expect(json("1", 1)).not.toThrow();
  });

  it("does not count what is inside strings, escaped quotes included", () => {
    const text = JSON.stringify({ a: `${",{[".repeat(10_000)}\\"\\\\",[{` });
    expect(json(text, 3)).not.toThrow();
    // After a string ending in an escaped backslash, the commas count again.
    expect(json(`["\\\\",1,2,3]`, 4)).toThrow(expect.objectContaining(tooComplex));
    expect(json(`["\\\\",1,2,3]`, 5)).not.toThrow();
  });

  it("stops at the limit on a body of many tiny values", () => {
    const text = `[${Array(maxRequestValues).fill("{}").join(",")}]`;
    expect(json(text)).toThrow(expect.objectContaining(tooComplex));
    expect(
      json(
        `[${Array(maxRequestValues / 2 - 1)
          .fill("0")
          .join(",")}]`,
      ),
    ).not.toThrow();
  });

  it("leaves malformed JSON to the parser", () => {
    expect(json('{"a":"unterminated, [, {', 2)).not.toThrow();
  });
});

describe("checkBinaryValues", () => {
  const bytes = (n: number): Uint8Array =>
    toBinary(
      ChatCompletionRequestSchema,
      create(ChatCompletionRequestSchema, {
        model: "m",
        messages: Array.from({ length: n }, () => ({ role: "user" })),
      }),
    );

  it("counts every field on the wire at any depth", () => {
    // model, then per message: the message and its role.
    expect(() => checkBinaryValues(ChatCompletionRequestSchema, bytes(10), 21)).not.toThrow();
    expect(() => checkBinaryValues(ChatCompletionRequestSchema, bytes(10), 20)).toThrow(
      expect.objectContaining(tooComplex),
    );
  });

  it("follows Struct values, map entries and unknown fields", () => {
    const message = create(ChatCompletionRequestSchema, {
      functions: [{ a: 1 }],
      logitBias: { "1": 2, "3": 4 },
    });
    const wire = Buffer.concat([
      toBinary(ChatCompletionRequestSchema, message),
      Buffer.from([0xf8, 0x3e, 0x01]), // unknown field 999, varint
    ]);
    // functions(1) + fields entry(1) + key(1) + Value(1) + number_value(1) = 5; two logit_bias entries
    // with key and value = 6; the unknown field = 1.
    expect(() => checkBinaryValues(ChatCompletionRequestSchema, wire, 12)).not.toThrow();
    expect(() => checkBinaryValues(ChatCompletionRequestSchema, wire, 11)).toThrow(
      expect.objectContaining(tooComplex),
    );
  });

  it("counts each element of a packed list", () => {
    // TokenLogprob.bytes (field 3, repeated int32, packed): three one-byte varints and one of two bytes.
    const wire = Buffer.from([0x1a, 0x05, 0x01, 0x02, 0x03, 0x80, 0x01]);
    expect(() => checkBinaryValues(TokenLogprobSchema, wire, 5)).not.toThrow();
    expect(() => checkBinaryValues(TokenLogprobSchema, wire, 4)).toThrow(expect.objectContaining(tooComplex));
  });

  it("refuses nesting deeper than the limit", () => {
    // Groups of an unknown field (1000) nest without a descriptor: start-group tags, then end-group tags.
    const nested = (depth: number) =>
      Buffer.concat([
        Buffer.alloc(2 * depth).fill(Buffer.from([0xc3, 0x3e])),
        Buffer.alloc(2 * depth).fill(Buffer.from([0xc4, 0x3e])),
      ]);
    expect(() => checkBinaryValues(ChatCompletionRequestSchema, nested(maxRequestDepth))).not.toThrow();
    expect(() => checkBinaryValues(ChatCompletionRequestSchema, nested(maxRequestDepth + 1))).toThrow(
      expect.objectContaining(tooComplex),
    );
  });

  it("leaves a truncated or malformed body to the decoder", () => {
    expect(() =>
      checkBinaryValues(ChatCompletionRequestSchema, Buffer.from([0x12, 0x05, 0x00])),
    ).not.toThrow();
    expect(() => checkBinaryValues(ChatCompletionRequestSchema, Buffer.from([0x0f]))).not.toThrow();
  });
});
