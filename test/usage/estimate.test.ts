import { describe, expect, it } from "vitest";
import { countTokens } from "gpt-tokenizer";
import { estimatePromptTokens, estimateTextTokens, estimateUtf8Tokens } from "../../src/usage/estimate.js";

describe("token estimates", () => {
  it("counts a short text exactly with the o200k tokenizer", () => {
    expect(estimateTextTokens("Hello, world!")).toBe(countTokens("Hello, world!"));
    expect(estimateTextTokens("")).toBe(0);
  });

  it("counts special tokens spelled out in a text as text, never throws on them", () => {
    const special = "see <|endoftext|> and <|im_start|>";
    const asText = countTokens(special, { disallowedSpecial: new Set() });
    expect(() => countTokens(special)).toThrow(/special token/);
    expect(estimateTextTokens(special)).toBe(asText);
    expect(estimateUtf8Tokens(Buffer.from(special))).toBe(asText);
    expect(estimatePromptTokens({ messages: [{ role: "user", content: special }] })).toBe(3 + 3 + asText);
  });

  it("extrapolates a long text from its tokenized head, within 5% of the full count", () => {
    const text = Array.from({ length: 40_000 }, (_, i) => `word${i % 977} `).join("");
    const exact = countTokens(text);
    const estimate = estimateTextTokens(text);
    expect(text.length).toBeGreaterThan(65_536);
    expect(Math.abs(estimate - exact) / exact).toBeLessThan(0.05);
  });

  it("estimates a UTF-8 body from its head: exact when short, within 5% when long, 0 when empty", () => {
    expect(estimateUtf8Tokens(Buffer.from("Hello, world!"))).toBe(countTokens("Hello, world!"));
    expect(estimateUtf8Tokens(new Uint8Array(0))).toBe(0);
    const text = Array.from({ length: 200_000 }, (_, i) => `wörd${i % 977} `).join("");
    const exact = countTokens(text);
    const estimate = estimateUtf8Tokens(Buffer.from(text, "utf8"));
    expect(Math.abs(estimate - exact) / exact).toBeLessThan(0.05);
  });

  it("adds OpenAI's framing per message, text parts, images, tool calls and tools", () => {
    const plain = estimatePromptTokens({ messages: [{ role: "user", content: "Hello" }] });
    expect(plain).toBe(3 + 3 + countTokens("Hello"));
    const rich = estimatePromptTokens({
      messages: [
        {
          role: "user",
          content: [
            { type: "text", text: "Hello" },
            { type: "image_url", image_url: { url: "x" } },
          ],
        },
        {
          role: "assistant",
          content: null,
          tool_calls: [{ id: "c", type: "function", function: { name: "f", arguments: "{}" } }],
        },
      ],
      tools: [{ type: "function", function: { name: "f", parameters: {} } }],
    });
    expect(rich).toBeGreaterThan(plain + 255);
  });

  it("never throws on a body of an unexpected shape", () => {
    expect(estimatePromptTokens({ messages: "nope" })).toBe(3);
    expect(estimatePromptTokens({ messages: [null, 1, { content: 5 }] })).toBe(3 + 9);
  });
});
