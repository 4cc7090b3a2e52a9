import { readFileSync } from "node:fs";
import { countTokens } from "gpt-tokenizer";
import type * as GptTokenizer from "gpt-tokenizer";
import { describe, expect, it, vi } from "vitest";

// One estimate tokenizes at most 65,536 characters, however large the prompt, and extrapolates the rest
// (src/usage/estimate.ts): an estimate runs on the event loop, for every call under a budget, every call cut
// short, every count_tokens and translated stream of the Anthropic surface (bodies up to 32 MiB).

/** Characters handed to the tokenizer, summed over the calls of the module under test. */
const tokenized = vi.hoisted(() => ({ chars: 0 }));
vi.mock("gpt-tokenizer", async (importOriginal) => {
  const actual = await importOriginal<typeof GptTokenizer>();
  return {
    ...actual,
    countTokens: (text: string, options?: Parameters<typeof actual.countTokens>[1]) => {
      tokenized.chars += text.length;
      return actual.countTokens(text, options);
    },
  };
});

const { estimatePromptTokens, estimateTextTokens, estimateTextsTokens } =
  await import("../../src/usage/estimate.js");

/** 64,000 characters of the repository's prose: natural text with code, tables and links. */
const prose = readFileSync(new URL("../../README.md", import.meta.url), "utf8")
  .repeat(2)
  .slice(0, 64_000);
const exact = (text: string) => countTokens(text, { disallowedSpecial: new Set() });
const budget = 65_536;

describe("one tokenizing budget per estimate", () => {
  it("a 2 MiB chat prompt (32 messages of 64,000 characters): 65,536 characters tokenized, within 5%", () => {
    const messages = Array.from({ length: 32 }, (_, i) => ({ role: "user", content: `${i} ${prose}` }));
    const full = 3 + messages.reduce((sum, m) => sum + 3 + exact(m.content), 0);
    tokenized.chars = 0;
    const estimate = estimatePromptTokens({ messages });
    expect(tokenized.chars).toBe(budget);
    expect(Math.abs(estimate - full) / full).toBeLessThan(0.05);
  });

  it("a 32 MB prompt of content parts, tool calls and tools: still 65,536 characters", () => {
    const part = { type: "text", text: prose };
    const messages = Array.from({ length: 500 }, () => ({
      role: "assistant",
      content: [part],
      tool_calls: [{ id: "c", type: "function", function: { name: "f", arguments: "{}" } }],
    }));
    tokenized.chars = 0;
    const estimate = estimatePromptTokens({
      messages,
      tools: [{ type: "function", function: { name: "f" } }],
    });
    expect(tokenized.chars).toBe(budget);
    expect(estimate).toBeGreaterThan(500 * exact(prose));
  });

  it("embedding inputs share one budget; a prompt under it is counted exactly, as before", () => {
    const inputs = Array.from({ length: 100 }, () => prose);
    const full = 100 * exact(prose);
    tokenized.chars = 0;
    const estimate = estimateTextsTokens(inputs);
    expect(tokenized.chars).toBe(budget);
    expect(Math.abs(estimate - full) / full).toBeLessThan(0.05);

    const small = [
      { role: "system", content: "Be brief." },
      { role: "user", content: "Hello <|endoftext|> there" },
    ];
    const smallExact = 3 + 3 + exact("Be brief.") + 3 + exact("Hello <|endoftext|> there");
    const proseExact = exact(prose);
    tokenized.chars = 0;
    expect(estimatePromptTokens({ messages: small })).toBe(smallExact);
    expect(estimateTextTokens(prose)).toBe(proseExact);
    // The calls above are the mock's (`exact` too): only the estimates' own characters are counted here.
    expect(tokenized.chars).toBe("Be brief.".length + "Hello <|endoftext|> there".length + prose.length);
  });
});
