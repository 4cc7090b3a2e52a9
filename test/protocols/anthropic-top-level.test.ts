import { describe, expect, it } from "vitest";
import { AppError } from "../../src/errors/index.js";
import { scanTopLevel } from "../../src/protocols/anthropic/top-level.js";

// The Anthropic surface reads `model`, `stream` and `max_tokens` of a Messages body without parsing it
// (src/protocols/anthropic/top-level.ts): the same values JSON.parse would give, or the 400 of a body
// whose structure is broken.

const scan = (text: string) => scanTopLevel(Buffer.from(text));

describe("scanTopLevel", () => {
  it.each([
    ['{"model":"m","max_tokens":5,"stream":true}', { model: "m", stream: true, max_tokens: 5 }],
    [' { "max_tokens" : 7 , "model" : "a\\"b" } ', { model: 'a"b', stream: undefined, max_tokens: 7 }],
    ["{}", { model: undefined, stream: undefined, max_tokens: undefined }],
    [
      '{"messages":[{"content":"x\\\\","model":"inner"},{"a":[1,{"b":"}]\\""}]}],"model":"outer","stream":false}',
      { model: "outer", stream: false, max_tokens: undefined },
    ],
    [
      '{"model":"first","model":"last","max_tokens":1.5}',
      { model: "last", stream: undefined, max_tokens: 1.5 },
    ],
    ['{"system":"\\u0022","model":"m"}', { model: "m", stream: undefined, max_tokens: undefined }],
  ])("%s", async (text, expected) => {
    expect(await scan(text)).toEqual(expected);
    const parsed = JSON.parse(text) as Record<string, unknown>;
    expect(await scan(text)).toEqual({
      model: parsed["model"],
      stream: parsed["stream"],
      max_tokens: parsed["max_tokens"],
    });
  });

  it("walks a long body in slices and still finds a key after it", async () => {
    const long = `{"messages":[${Array.from({ length: 20_000 }, (_, i) => `{"t":"\\"${i}\\"[{"}`).join(",")}],"model":"m"}`;
    expect(await scan(long)).toEqual({ model: "m", stream: undefined, max_tokens: undefined });
  });

  it.each([
    "",
    "[]",
    '"model"',
    '{"model":"m"',
    '{"model":"m}',
    '{"model" "m"}',
    '{"model":}',
    '{"messages":[{"a":1}',
    '{"model":"m"} x',
    '{"model":"m",}',
    '{"model":mm}',
  ])("refuses %j: 400 Malformed JSON body", async (text) => {
    const err = await scan(text).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(AppError);
    expect((err as AppError).code).toBe("invalid_argument");
    expect((err as AppError).message).toBe("Malformed JSON body");
  });
});
